//! Baton's HTTP API (SPEC §8), the only crate that knows HTTP.
//!
//! Routes: turns, events and explicit handoffs (`conversations.rs`), the policy (`policy.rs`),
//! metrics (`metrics.rs`), the OpenAPI document (`openapi.rs`). Every route but
//! `/v1/health`, `/metrics` and `/v1/openapi.json` needs an API key
//! (`Authorization: Bearer ...`); changing the policy needs an admin key. Errors are
//! `{"error": {"code", "message", "field"}}` with the right status, and a rejected request
//! stores nothing.

// The OpenAPI document is one `json!` literal, deeper than the default limit.
#![recursion_limit = "512"]

mod conversations;
mod error;
mod metrics;
pub mod openapi;
mod policy;
mod routing;
pub mod wire;

use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use baton_core::policy::Policy;
use baton_detect::Detector;
use baton_store::Store;
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

/// A policy with the detectors it configures and the text it was loaded from.
pub struct Engine {
    pub policy: Policy,
    pub detector: Detector,
    /// Stores a visitor turn's signals with it and reads them back, for these detectors.
    pub codec: baton_core::stored::SignalCodec,
    /// The TOML text, as stored and served by `GET /v1/policy`.
    pub text: String,
}

impl Engine {
    /// Loads and checks a policy; the error lists every problem, one per line.
    pub fn load(name: &str, text: &str) -> Result<Engine, String> {
        let policy = Policy::load(name, text).map_err(|e| e.to_string())?;
        let detector = policy.detector()?;
        let codec =
            baton_core::stored::SignalCodec::new(&detector, &format!("{:?}", policy.detectors));
        let engine = Engine {
            policy,
            detector,
            codec,
            text: text.to_string(),
        };
        engine.warm();
        Ok(engine)
    }

    /// A stored visitor turn's own signals: decoded from those stored with it when these
    /// detectors wrote them (`true`), else detected again as of the day the turn came
    /// (`false`: turns stored before migration 0009, or another `[detectors]` section), as
    /// they were when it arrived.
    pub fn stored_turn_signals(&self, t: &baton_store::TurnRow) -> (baton_detect::Signals, bool) {
        if let Some(s) = t
            .detected
            .as_deref()
            .and_then(|b| self.codec.decode(b, &t.text, &self.detector))
        {
            return (s, true);
        }
        let day =
            t.at.parse::<jiff::Timestamp>()
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date();
        (self.detector.message(&t.text, day), false)
    }

    /// Decides one made-up visitor turn and forgets it, so that the work done once on first
    /// use (the detectors' shared tables and patterns, about 70 ms in a process, 1.5 to 3 ms
    /// more for each new policy's own patterns) is done before the engine serves: otherwise the
    /// first turns after a start all waited for it (BENCHMARKS.md, ninth session).
    fn warm(&self) {
        let turn = baton_core::decide::NewTurn {
            role: baton_detect::Role::User,
            text: "Hi! I'm the CTO at a 40-person company; what does the team plan cost? \
                   Budget is about $5k and we need it live next month. Mail me at cto@example.com :)"
                .to_string(),
            epoch: None,
            bot: None,
        };
        let _ = baton_core::decide::decide(
            &self.policy,
            &self.detector,
            &baton_core::decide::ConversationView::new(),
            &turn,
            jiff::Timestamp::now(),
        );
    }
}

/// Turns this node keeps in memory by default, in the conversations it decided on lately
/// (about 2.0 KB each in the load test: some 600 MB at most, the bound 200,000 turns gave when
/// a turn took 2.9 to 3.4 KB).
pub const DEFAULT_CACHED_TURNS: u64 = 300_000;

/// Room for `turns` turns, half of it for the conversations used more than once lately. The
/// cache's default keeps 97% for those (it favours frequency); conversations favour recency: one
/// turn after another for some minutes, then none, so a conversation that has ended, used often
/// while it lasted, would otherwise keep its room while the new ones are pushed out.
fn conversation_cache(turns: u64) -> ConversationCache {
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity((turns / 8).max(1) as usize)
        .weight_capacity(turns.max(1))
        .hot_allocation(CACHE_HOT_SHARE)
        .build()
        .unwrap_or_else(|e| unreachable!("constant cache options: {e}"));
    quick_cache::sync::Cache::with_options(
        options,
        TurnWeight,
        Default::default(),
        Default::default(),
    )
}

/// The share of the conversation cache for conversations used more than once lately.
const CACHE_HOT_SHARE: f64 = 0.5;

/// A cached conversation weighs its turns (and one for itself).
#[derive(Clone)]
struct TurnWeight;

impl quick_cache::Weighter<String, Arc<conversations::Known>> for TurnWeight {
    fn weight(&self, _: &String, k: &Arc<conversations::Known>) -> u64 {
        1 + k.view.turns.len() as u64
    }
}

type ConversationCache = quick_cache::sync::Cache<String, Arc<conversations::Known>, TurnWeight>;
/// How long a checked API key is trusted without asking the store again.
pub const KEY_CACHE_SECONDS: u64 = 60;

/// What every handler shares.
pub struct App<S> {
    pub store: Arc<S>,
    engine: Arc<RwLock<Arc<Engine>>>,
    metrics: Arc<metrics::Metrics>,
    /// The conversations this node decided on lately (see [`conversations::Known`]): a cache,
    /// never the truth; every commit is checked against the store.
    conversations: Arc<ConversationCache>,
    /// Key hash → (role, when checked).
    keys: Arc<quick_cache::sync::Cache<String, (String, String, std::time::Instant)>>,
    /// Reps, offers and timers (SPEC §6).
    pub(crate) router: Arc<routing::Router>,
    /// Writes to one conversation on this node take turns (striped by id), so they queue
    /// instead of racing each other's compare-and-set; other nodes are still caught by it.
    write_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
}

/// Stripes of [`App`]'s per-conversation write locks.
const WRITE_LOCK_STRIPES: usize = 4096;

impl<S> Clone for App<S> {
    fn clone(&self) -> Self {
        App {
            store: self.store.clone(),
            engine: self.engine.clone(),
            metrics: self.metrics.clone(),
            conversations: self.conversations.clone(),
            keys: self.keys.clone(),
            router: self.router.clone(),
            write_locks: self.write_locks.clone(),
        }
    }
}

impl<S: Store> App<S> {
    pub fn new(store: S, engine: Engine) -> App<S> {
        App::with_cache(store, engine, DEFAULT_CACHED_TURNS)
    }

    /// With room for `turns` turns in the conversation cache (0 turns it off).
    pub fn with_cache(store: S, engine: Engine, turns: u64) -> App<S> {
        App {
            store: Arc::new(store),
            engine: Arc::new(RwLock::new(Arc::new(engine))),
            metrics: Arc::new(metrics::Metrics::new()),
            conversations: Arc::new(conversation_cache(turns)),
            keys: Arc::new(quick_cache::sync::Cache::new(1024)),
            router: Arc::new(routing::Router::new()),
            write_locks: Arc::new(
                (0..WRITE_LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
        }
    }

    /// Waits for this node's other writes to the conversation to finish.
    pub(crate) async fn lock_conversation(&self, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::Hasher;
        let mut h = std::hash::DefaultHasher::new();
        h.write(id.as_bytes());
        self.write_locks[(h.finish() as usize) % self.write_locks.len()]
            .lock()
            .await
    }

    /// The active policy and detectors; a decision keeps the one it started with.
    pub fn engine(&self) -> Arc<Engine> {
        match self.engine.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_engine(&self, engine: Engine) {
        // Cached views hold signals detected with the old policy's [detectors].
        self.conversations.clear();
        let engine = Arc::new(engine);
        match self.engine.write() {
            Ok(mut e) => *e = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }
}

/// The routes.
pub fn router<S: Store>(app: App<S>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::prometheus::<S>))
        .route("/v1/metrics/summary", get(metrics::summary::<S>))
        .route(
            "/v1/conversations/{id}/turns",
            post(conversations::post_turn::<S>),
        )
        .route(
            "/v1/conversations/{id}/events",
            post(conversations::post_event::<S>),
        )
        .route(
            "/v1/conversations/{id}/handoff",
            post(conversations::post_handoff::<S>),
        )
        .route(
            "/v1/conversations/{id}",
            get(conversations::get_conversation::<S>),
        )
        .route("/v1/handoffs", get(list_handoffs::<S>))
        .route("/v1/handoffs/{id}", get(get_handoff::<S>))
        .route("/v1/handoffs/{id}/routing", get(routing::get_routing::<S>))
        .route("/v1/handoffs/{id}/slots", get(routing::get_slots::<S>))
        .route(
            "/v1/handoffs/{id}/meeting",
            post(routing::post_meeting::<S>),
        )
        .route("/v1/handoffs/{id}/{action}", post(routing::act::<S>))
        .route("/v1/reps", get(routing::list_reps::<S>))
        .route(
            "/v1/reps/{id}",
            get(routing::get_rep::<S>).put(routing::put_rep::<S>),
        )
        .route("/v1/reps/{id}/presence", put(routing::put_presence::<S>))
        .route("/v1/reps/{id}/stream", get(routing::rep_stream::<S>))
        .route(
            "/v1/conversations/{id}/stream",
            get(routing::conversation_stream::<S>),
        )
        .route(
            "/v1/conversations/{id}/messages",
            post(routing::post_message::<S>),
        )
        .route(
            "/v1/policy",
            get(policy::get_policy::<S>).put(policy::put_policy::<S>),
        )
        .route("/v1/policy/versions", get(policy::list_versions::<S>))
        .route("/v1/policy/simulate", post(policy::simulate::<S>))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::track::<S>,
        ))
        .with_state(app)
}

/// Serves until `shutdown` completes; tests bind port 0 and pass the listener in.
pub async fn run<S: Store>(
    listener: tokio::net::TcpListener,
    app: App<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let notices = routing::spawn_notices(app.clone())
        .await
        .map_err(|e| std::io::Error::other(format!("listening for other nodes' streams: {e:?}")))?;
    let timers = routing::spawn_timers(app.clone());
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await;
    timers.abort();
    if let Some(n) = notices {
        n.abort();
    }
    served
}

/// The hex SHA-256 of an API key: what the store keeps.
pub fn key_hash(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; the API is described at /v1/openapi.json",
    )
}

/// Who is calling: the name and role of their API key.
pub(crate) struct Caller {
    pub role: String,
    /// The key's name: for a `rep` key, the rep's id.
    pub name: String,
}

impl Caller {
    /// Acting for a rep needs an admin key or that rep's own key.
    pub(crate) fn require_rep(&self, rep: &str) -> Result<(), ApiError> {
        if self.role == "admin" || (self.role == "rep" && self.name == rep) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "this needs an admin key or rep {rep:?}'s own key (`baton keys create --role rep --name {rep}`)"
                ),
            ))
        }
    }

    /// Changing configuration needs an admin key.
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == "admin" {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "this needs an admin key; this key's role is {:?} (create one with `baton keys create --role admin`)",
                    self.role
                ),
            ))
        }
    }
}

/// The caller's API key, checked against the store.
pub(crate) async fn authenticate<S: Store>(
    app: &App<S>,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
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
    let hash = key_hash(key);
    if let Some((role, name, at)) = app.keys.get(&hash)
        && at.elapsed().as_secs() < KEY_CACHE_SECONDS
    {
        return Ok(Caller { role, name });
    }
    match app.store.find_key(&hash).await? {
        Some((name, role)) => {
            app.keys.insert(
                hash,
                (role.clone(), name.clone(), std::time::Instant::now()),
            );
            Ok(Caller { role, name })
        }
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown API key",
        )),
    }
}

pub(crate) fn valid_id(id: &str) -> Result<(), ApiError> {
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

/// The body, or 413 when it is over the limit.
pub(crate) fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the body is larger than {MAX_BODY_BYTES} bytes ({e})"),
        )
    })
}

/// Parses a JSON body of type `T`; `what` names it in the error ("a turn").
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
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
            &format!("the body is not {what}: {e}"),
        );
        if let Some(f) = field {
            err = err.field(&f);
        }
        err
    })
}

/// A turn's role (`user` or `bot`) and text (1 to [`MAX_TEXT_CHARS`] characters), checked;
/// `prefix` names where the turn sits in the body (`"turns[2]."`).
pub(crate) fn turn_role_and_text(
    role: &str,
    text: &str,
    prefix: &str,
) -> Result<baton_detect::Role, ApiError> {
    let role = match role {
        "user" => baton_detect::Role::User,
        "bot" => baton_detect::Role::Bot,
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                &format!("role must be \"user\" or \"bot\", not {other:?}"),
            )
            .field(&format!("{prefix}role")));
        }
    };
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_TEXT_CHARS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            &format!("text must hold 1 to {MAX_TEXT_CHARS} characters (got {chars})"),
        )
        .field(&format!("{prefix}text")));
    }
    Ok(role)
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

/// `?limit=N`, 1 to 500, default 50.
pub(crate) fn limit_of(
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<i64, ApiError> {
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
    Ok(limit)
}

async fn list_handoffs<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    let limit = limit_of(q)?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn key_hash_is_the_lowercase_hex_sha256() {
        // FIPS 180-2's "abc" example: keys stored by earlier versions still match.
        assert_eq!(
            super::key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
