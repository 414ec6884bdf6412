//! Baton's pure core: the pieces of the decision engine that need no I/O.
//!
//! Architecture invariant: no tokio, no sqlx, no axum, no clock. Time is always a parameter.

pub mod brief;
pub mod check;
pub mod decide;
pub mod expr;
pub mod hours;
pub mod policy;
pub mod replay;
pub mod routing;
pub mod stored;
