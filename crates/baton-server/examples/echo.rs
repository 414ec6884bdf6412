//! The ceiling for the turn API benchmark (BENCHMARKS.md): a bare axum server that parses a
//! JSON body and answers it back, on the same runtime settings as `baton serve`.
//!
//! cargo run --release -p baton-server --example echo -- 127.0.0.1:8081

use axum::Json;
use axum::routing::post;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let app = axum::Router::new().route(
        "/v1/conversations/{id}/turns",
        post(|Json(body): Json<serde_json::Value>| async move { Json(body) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("echo: serving on http://{addr}");
    axum::serve(listener, app).await
}
