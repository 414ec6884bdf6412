//! Baton's HTTP API (SPEC §8), the only crate that knows HTTP.
//!
//! Built so far: `POST /v1/conversations/{id}/turns` (with `Idempotency-Key`),
//! `GET /v1/conversations/{id}`, `GET /v1/handoffs`, `GET /v1/handoffs/{id}`, `GET /v1/health`.
//! Every route but health needs an API key (`Authorization: Bearer ...`). Errors are
//! `{"error": {"code", "message", "field"}}` with the right status, and a rejected request
//! stores nothing.

mod error;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_core::decide::{
    BotMeta, ConversationView, DecideError, NewTurn, PastTurn, State as Owner, decide,
};
use baton_core::policy::Policy;
use baton_detect::{Detector, Role};
use baton_store::{Commit, Detail, Store};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest turn text accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 16 * 1024;
/// Deepest nesting of arrays and objects accepted in a body.
pub const MAX_JSON_DEPTH: usize = 16;

/// The deepest nesting of `[` and `{` in a JSON text, strings skipped.
fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What every handler shares.
pub struct App<S> {
    pub store: Arc<S>,
    pub policy: Arc<Policy>,
    pub detector: Arc<Detector>,
}

impl<S> Clone for App<S> {
    fn clone(&self) -> Self {
        App {
            store: self.store.clone(),
            policy: self.policy.clone(),
            detector: self.detector.clone(),
        }
    }
}

/// The routes.
pub fn router<S: Store>(app: App<S>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/conversations/{id}/turns", post(post_turn::<S>))
        .route("/v1/conversations/{id}", get(get_conversation::<S>))
        .route("/v1/handoffs", get(list_handoffs::<S>))
        .route("/v1/handoffs/{id}", get(get_handoff::<S>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Serves until `shutdown` completes; tests bind port 0 and pass the listener in.
pub async fn run<S: Store>(
    listener: tokio::net::TcpListener,
    app: App<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The hex SHA-256 of an API key: what the store keeps.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// The role of the caller's API key.
async fn authenticate<S: Store>(app: &App<S>, headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "an API key is needed: Authorization: Bearer KEY (create one with `baton keys create`)"))?;
    let key = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the Authorization header must be `Bearer KEY`",
            )
        })?;
    match app.store.find_key(&key_hash(key)).await? {
        Some((_, role)) => Ok(role),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown API key",
        )),
    }
}

fn valid_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "an id is 1 to 128 characters among letters, digits and - _ . :",
        )
        .field("id"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TurnBody {
    role: String,
    text: String,
    epoch: Option<u64>,
    contact: Option<HashMap<String, String>>,
    account: Option<HashMap<String, String>>,
    page: Option<String>,
    bot: Option<BotBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotBody {
    confidence: Option<f64>,
    intent: Option<String>,
    #[serde(default)]
    fallback: bool,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let depth = json_depth(body);
    if depth > MAX_JSON_DEPTH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            &format!("the body nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let field = e.to_string().split('`').nth(1).map(str::to_string);
        let mut err = ApiError::new(
            StatusCode::BAD_REQUEST,
            if e.is_data() {
                "invalid_field"
            } else {
                "invalid_json"
            },
            &format!("the body is not a valid turn: {e}"),
        );
        if let Some(f) = field {
            err = err.field(&f);
        }
        err
    })
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Rebuilds the engine's view of a stored conversation.
fn view_of(row: &baton_store::ConversationRow) -> ConversationView {
    let mut view = ConversationView::new();
    view.state = Owner::parse(&row.state).unwrap_or(Owner::Bot);
    view.epoch = row.epoch.max(0) as u64;
    view.contact = serde_json::from_str(&row.contact).unwrap_or_default();
    view.account = serde_json::from_str(&row.account).unwrap_or_default();
    view.page = row.page.clone();
    view.turns = row
        .turns
        .iter()
        .map(|t| PastTurn {
            role: if t.role == "bot" {
                Role::Bot
            } else {
                Role::User
            },
            text: t.text.clone(),
            at: t.at.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            signals: None,
        })
        .collect();
    view.fired = row
        .decisions
        .iter()
        .filter_map(|d| Some((d.trigger.clone()?, d.at.parse().ok()?)))
        .collect();
    view
}

async fn post_turn<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    valid_id(&id)?;
    let body = body.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the body is larger than {MAX_BODY_BYTES} bytes ({e})"),
        )
    })?;
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 255 visible characters",
                    )
                    .field("Idempotency-Key")
                })?;
            Some((key.to_string(), key_hash(&String::from_utf8_lossy(&body))))
        }
    };
    // A retry answers what the first request was answered, and stores nothing.
    if let Some((key, hash)) = &idempotency
        && let Some((stored_hash, response)) = app.store.idempotent(&id, key).await?
    {
        return replay(hash, &stored_hash, response);
    }
    let req: TurnBody = parse_json(&body)?;
    let role = match req.role.as_str() {
        "user" => Role::User,
        "bot" => Role::Bot,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                &format!("role must be \"user\" or \"bot\", not {other:?}"),
            )
            .field("role"));
        }
    };
    let chars = req.text.chars().count();
    if req.text.trim().is_empty() || chars > MAX_TEXT_CHARS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            &format!("text must hold 1 to {MAX_TEXT_CHARS} characters (got {chars})"),
        )
        .field("text"));
    }
    if let Some(c) = req.bot.as_ref().and_then(|b| b.confidence)
        && !(0.0..=1.0).contains(&c)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "bot.confidence must be between 0 and 1",
        )
        .field("bot.confidence"));
    }

    let row = app.store.conversation(&id, Detail::ForDecision).await?;
    let mut view = row.as_ref().map(view_of).unwrap_or_default();
    if let Some(c) = &req.contact {
        view.contact.extend(c.clone());
    }
    if let Some(a) = &req.account {
        view.account.extend(a.clone());
    }
    if req.page.is_some() {
        view.page.clone_from(&req.page);
    }
    let at = now();
    let turn = NewTurn {
        role,
        text: req.text.clone(),
        epoch: req.epoch,
        bot: req.bot.as_ref().map(|b| BotMeta {
            confidence: b.confidence,
            intent: b.intent.clone(),
            fallback: b.fallback,
        }),
    };
    let decision = match decide(&app.policy, &app.detector, &view, &turn, at) {
        Ok(d) => d,
        Err(DecideError::Conflict {
            state,
            epoch,
            message,
        }) => return Err(ApiError::conflict(&message, state.as_str(), epoch)),
    };
    let handoff_id = (decision.brief.is_some()).then(|| uuid::Uuid::now_v7().to_string());
    let response = wire::decision(&decision, handoff_id.as_deref());
    let response_text = response.to_string();
    let commit = baton_store::NewTurn {
        conversation_id: id.clone(),
        expected_epoch: view.epoch as i64,
        state: decision.state.as_str().to_string(),
        epoch: decision.epoch as i64,
        contact: serde_json::to_string(&view.contact).unwrap_or_else(|_| "{}".into()),
        account: serde_json::to_string(&view.account).unwrap_or_else(|_| "{}".into()),
        page: req.page.clone(),
        role: req.role.clone(),
        text: req.text.clone(),
        at: at.to_string(),
        signals: decision
            .turn_signals
            .as_ref()
            .map(|s| wire::signals(s).to_string()),
        action: decision.action.as_str().to_string(),
        trigger: decision.trigger.clone(),
        reason: decision.reason.clone(),
        priority: decision.priority,
        policy_hash: decision.policy_hash.clone(),
        trace: wire::trace(&decision).to_string(),
        handoff: handoff_id
            .clone()
            .zip(decision.brief.as_ref().map(|b| wire::brief(b).to_string())),
        idempotency: idempotency
            .clone()
            .map(|(k, h)| (k, h, response_text.clone())),
    };
    match app.store.commit_turn(&commit).await? {
        Commit::Done { .. } => Ok((
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            response_text,
        )
            .into_response()),
        Commit::Conflict { state, epoch } => Err(ApiError::conflict(
            "the conversation changed owner while this turn was decided; fetch it and retry",
            &state,
            epoch.max(0) as u64,
        )),
        Commit::Replay {
            request_hash,
            response,
        } => replay(
            &idempotency.map(|(_, h)| h).unwrap_or_default(),
            &request_hash,
            response,
        ),
    }
}

fn replay(hash: &str, stored_hash: &str, response: String) -> Result<Response, ApiError> {
    if hash != stored_hash {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different body",
        )
        .field("Idempotency-Key"));
    }
    Ok((
        StatusCode::OK,
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (
                axum::http::HeaderName::from_static("idempotent-replayed"),
                "true",
            ),
        ],
        response,
    )
        .into_response())
}

async fn get_conversation<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    valid_id(&id)?;
    let row = app
        .store
        .conversation(&id, Detail::Full)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation", &id))?;
    Ok(axum::Json(wire::conversation(&row)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list_handoffs<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    let Query(q) = q.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", &e.to_string()).field("limit")
    })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "limit must be between 1 and 500",
        )
        .field("limit"));
    }
    let rows = app.store.handoffs(limit).await?;
    Ok(axum::Json(
        serde_json::json!({"handoffs": rows.iter().map(wire::handoff).collect::<Vec<_>>()}),
    )
    .into_response())
}

async fn get_handoff<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    valid_id(&id)?;
    let row = app
        .store
        .handoff(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("handoff", &id))?;
    Ok(axum::Json(wire::handoff(&row)).into_response())
}
