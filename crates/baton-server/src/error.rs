//! One API error type: a status, a stable code, a message, and the field at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// For 409: where the conversation is now.
    current: Option<(String, u64)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: &str) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
            field: None,
            current: None,
        }
    }

    pub fn field(mut self, field: &str) -> ApiError {
        self.field = Some(field.to_string());
        self
    }

    /// 404 for an unknown id.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no {what} {id:?}"),
        )
        .field("id")
    }

    /// 409: the writer's epoch is stale, or a human owns the conversation.
    pub fn conflict(message: &str, state: &str, epoch: u64) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.to_string(),
            field: Some("epoch".into()),
            current: Some((state.to_string(), epoch)),
        }
    }
}

impl From<baton_store::StoreError> for ApiError {
    fn from(e: baton_store::StoreError) -> ApiError {
        // The cause is logged; the client gets a generic answer.
        tracing::error!(error = %e, "store failure");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be completed; it was not stored",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            json!({"error": {"code": self.code, "message": self.message, "field": self.field}});
        if let Some((state, epoch)) = self.current {
            body["state"] = json!(state);
            body["epoch"] = json!(epoch);
        }
        (self.status, axum::Json(body)).into_response()
    }
}
