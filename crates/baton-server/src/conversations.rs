//! The bot's side of the API: turns, events and explicit handoffs, and the conversation view.
//!
//! Each write follows the same steps: authenticate, validate (nothing is stored from a
//! rejected request), answer a retried `Idempotency-Key` from the store, load the
//! conversation, decide (pure), and commit the entry with its decision in one transaction
//! guarded by the epoch.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::decide::{
    BotMeta, ConversationView, DecideError, Decision, Event, HandoffRequest, NewTurn, PastTurn,
    State as Owner, decide, decide_handoff,
};
use baton_detect::Role;
use baton_store::{Commit, ConversationRow, DecisionRecord, Detail, Entry, NewEntry, Store};
use serde::Deserialize;

use crate::{ApiError, App, authenticate, body_bytes, key_hash, parse_json, valid_id, wire};

/// Longest page, form, signal name or value accepted in an event, in characters.
pub const MAX_FIELD_CHARS: usize = 2048;
/// Most fields in a form fill.
pub const MAX_FORM_FIELDS: usize = 64;

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message).field(field)
}

/// The event a stored row holds, if it is one that shapes the view.
fn event_of(kind: &str, data: &str) -> Option<Event> {
    let mut value: serde_json::Value = serde_json::from_str(data).ok()?;
    value
        .as_object_mut()?
        .insert("type".into(), serde_json::Value::String(kind.to_string()));
    serde_json::from_value::<EventBody>(value)
        .ok()?
        .into_event()
}

/// Rebuilds the engine's view of a stored conversation, each visitor turn with its own signals
/// ([`crate::Engine::stored_turn_signals`]), and counts how many were decoded and how many
/// detected again.
pub(crate) fn view_of(
    row: &ConversationRow,
    engine: &crate::Engine,
) -> (ConversationView, [u64; 2]) {
    let mut read = [0, 0];
    let mut view = ConversationView::new();
    view.state = Owner::parse(&row.state).unwrap_or(Owner::Bot);
    view.epoch = row.epoch.max(0) as u64;
    view.contact = serde_json::from_str(&row.contact).unwrap_or_default();
    view.account = serde_json::from_str(&row.account).unwrap_or_default();
    // Events first (in order), then what the turns set: the page a turn names is newer.
    for e in &row.events {
        if let Some(event) = event_of(&e.kind, &e.data) {
            view.apply(&event);
        }
    }
    if row.page.is_some() {
        view.page.clone_from(&row.page);
    }
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
            signals: (t.role != "bot").then(|| {
                let (s, decoded) = engine.stored_turn_signals(t);
                read[usize::from(!decoded)] += 1;
                s
            }),
        })
        .collect();
    view.fired = row
        .decisions
        .iter()
        .filter_map(|d| Some((d.trigger.clone()?, d.at.parse().ok()?)))
        .collect();
    // The bot's stint starts after the last turn a person answered (`ConversationView::since`).
    if let Some(last) = row
        .decisions
        .iter()
        .filter(|d| d.action != "continue")
        .map(|d| d.seq)
        .max()
    {
        view.since = row.turns.iter().take_while(|t| t.seq <= last).count();
    }
    (view, read)
}

/// `(key, hash of the body)` from the `Idempotency-Key` header.
fn idempotency_of(headers: &HeaderMap, body: &[u8]) -> Result<Option<(String, String)>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
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
    Ok(Some((
        key.to_string(),
        key_hash(&String::from_utf8_lossy(body)),
    )))
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

/// How a write request starts.
enum Opened {
    /// New: its body and `(Idempotency-Key, body hash)`.
    Fresh(Bytes, Option<(String, String)>),
    /// Already answered under this key: the same answer.
    Replayed(Response),
}

/// What every write does first: authenticate, check the id and the body size, and answer a
/// request already answered under its `Idempotency-Key` the same way.
async fn open_write<S: Store>(
    app: &App<S>,
    id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Opened, ApiError> {
    authenticate(app, headers).await?;
    valid_id(id)?;
    let body = body_bytes(body)?;
    let idempotency = idempotency_of(headers, &body)?;
    if let Some((key, hash)) = &idempotency
        && let Some((stored_hash, response)) = app.store.idempotent(id, key).await?
    {
        return replay(hash, &stored_hash, response).map(Opened::Replayed);
    }
    Ok(Opened::Fresh(body, idempotency))
}

/// A conversation as this node last saw it: the engine's view (with each past turn's
/// signals, so they are not detected again), how many entries it held, its last handoff.
/// Kept in [`App`]'s cache; a commit names `count`, so a view that missed another node's (or
/// another request's) entry is refused as stale and reloaded, never decided on.
#[derive(Clone)]
pub(crate) struct Known {
    pub view: ConversationView,
    pub count: i64,
    pub last_handoff: Option<String>,
}

/// The conversation from the cache, or from the store when `fresh` or not cached.
async fn known<S: Store>(
    app: &App<S>,
    id: &str,
    fresh: bool,
) -> Result<std::sync::Arc<Known>, ApiError> {
    if !fresh && let Some(k) = app.conversations.get(id) {
        return Ok(k);
    }
    let row = app.store.conversation(id, Detail::ForDecision).await?;
    let k = match row {
        Some(r) => Known {
            view: {
                // Once here, not at every later decision.
                let engine = app.engine();
                let (mut view, [stored, detected]) = view_of(&r, &engine);
                app.metrics.signals_read(stored, detected);
                // The bot turns' readings.
                baton_core::decide::fill_signals(&engine.detector, &mut view, now());
                view
            },
            count: r.turn_count,
            last_handoff: r.handoffs.last().map(|h| h.id.clone()),
        },
        None => Known {
            view: ConversationView::new(),
            count: 0,
            last_handoff: None,
        },
    };
    let k = std::sync::Arc::new(k);
    app.conversations.insert(id.to_string(), k.clone());
    Ok(k)
}

/// What a write stores besides its entry.
struct Write<'a> {
    id: &'a str,
    known: &'a Known,
    /// The view the decision was made on (the known one with the request's contact, account
    /// and page).
    view: &'a ConversationView,
    at: jiff::Timestamp,
    page: Option<String>,
    entry: Entry,
    idempotency: Option<(String, String)>,
}

/// How a write ended.
enum Wrote {
    /// Stored; answer with the response.
    Done { seq: i64, response: Response },
    /// Another entry came first: reload and decide again.
    Stale,
    /// The conversation changed owner meanwhile: a writer that named no epoch decides again
    /// on the new owner; one that did gets this 409.
    Moved(ApiError),
}

/// Commits an entry with its decision (if any, with its signals as JSON), or says what
/// happened meanwhile (a conflict, a replay, a stale view).
async fn commit<S: Store>(
    app: &App<S>,
    w: &Write<'_>,
    decided: Option<(&Decision, &serde_json::value::RawValue)>,
    handoff_id: Option<&str>,
    response_text: String,
) -> Result<Wrote, ApiError> {
    let decision = decided.map(|(d, _)| d);
    let (state, epoch) = decision.map_or((w.view.state, w.view.epoch), |d| (d.state, d.epoch));
    let entry = NewEntry {
        conversation_id: w.id.to_string(),
        expected_epoch: w.view.epoch as i64,
        expected_count: Some(w.known.count),
        state: state.as_str().to_string(),
        epoch: epoch as i64,
        contact: serde_json::to_string(&w.view.contact).unwrap_or_else(|_| "{}".into()),
        account: serde_json::to_string(&w.view.account).unwrap_or_else(|_| "{}".into()),
        page: w.page.clone(),
        at: w.at.to_string(),
        entry: w.entry.clone(),
        decision: decided.map(|(d, signals)| DecisionRecord {
            action: d.action.as_str().to_string(),
            trigger: d.trigger.clone(),
            reason: d.reason.clone(),
            priority: d.priority,
            policy_hash: d.policy_hash.clone(),
            trace: wire::text(&wire::trace_out(d, signals)),
        }),
        handoff: handoff_id.map(str::to_string).zip(
            decision
                .and_then(|d| d.brief.as_ref())
                .map(|b| wire::brief(b).to_string()),
        ),
        idempotency: w
            .idempotency
            .clone()
            .map(|(k, h)| (k, h, response_text.clone())),
    };
    match app.store.commit(&entry).await? {
        Commit::Done { seq } => {
            if let Some(d) = decision {
                app.metrics.decided(d, handoff_id.is_some());
            }
            Ok(Wrote::Done {
                seq,
                response: (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    response_text,
                )
                    .into_response(),
            })
        }
        Commit::Stale => Ok(Wrote::Stale),
        Commit::Conflict { state, epoch } => {
            app.conversations.remove(w.id);
            Ok(Wrote::Moved(ApiError::conflict(
                "the conversation changed owner while this request was decided; fetch it and retry",
                &state,
                epoch.max(0) as u64,
            )))
        }
        Commit::Replay {
            request_hash,
            response,
        } => replay(
            &w.idempotency
                .as_ref()
                .map(|(_, h)| h.clone())
                .unwrap_or_default(),
            &request_hash,
            response,
        )
        .map(|response| Wrote::Done { seq: -1, response }),
    }
}

/// A router step moved a conversation's owner (it adds no entry, so only the state and the
/// epoch change): the cached view follows if it was at the epoch the step expected, and is
/// forgotten (reloaded at its next use) otherwise. Reloading after every router step made a
/// conversation waiting for a rep detect all its past turns again at its next turn.
pub(crate) fn owner_moved<S: Store>(
    app: &App<S>,
    id: &str,
    expected_epoch: i64,
    state: &str,
    epoch: i64,
) {
    let Some(k) = app.conversations.get(id) else {
        return;
    };
    match Owner::parse(state) {
        Some(s) if k.view.epoch as i64 == expected_epoch && epoch >= 0 => {
            let mut k = take_known(app, id, k);
            k.view.state = s;
            k.view.epoch = epoch as u64;
            app.conversations
                .insert(id.to_string(), std::sync::Arc::new(k));
        }
        _ => {
            app.conversations.remove(id);
        }
    }
}

/// Takes the cached conversation to change it: the cache's copy is dropped first, so that
/// ours is usually the only one left and is reused rather than copied.
fn take_known<S: Store>(app: &App<S>, id: &str, known: std::sync::Arc<Known>) -> Known {
    app.conversations.remove(id);
    std::sync::Arc::try_unwrap(known).unwrap_or_else(|shared| (*shared).clone())
}

/// What a stored decision changed, to remember.
struct Decided<'a> {
    seq: i64,
    at: jiff::Timestamp,
    /// The view decided on, when the request changed it (contact, account, page).
    view: Option<ConversationView>,
    turn: Option<PastTurn>,
    decision: &'a Decision,
    handoff_id: Option<&'a str>,
}

/// Remembers the conversation as it is after a stored decision.
fn remember_decided<S: Store>(
    app: &App<S>,
    id: &str,
    known: std::sync::Arc<Known>,
    d: Decided<'_>,
) {
    if d.seq < 0 {
        // A replayed answer: the cache may be behind; reload next time.
        app.conversations.remove(id);
        return;
    }
    let mut k = take_known(app, id, known);
    if let Some(v) = d.view {
        k.view = v;
    }
    k.view.record(d.decision, d.turn, d.at);
    k.count = d.seq + 1;
    if let Some(h) = d.handoff_id {
        k.last_handoff = Some(h.to_string());
    }
    app.conversations
        .insert(id.to_string(), std::sync::Arc::new(k));
}

/// The open handoff a decision that created none still belongs to.
fn open_handoff(known: &Known, d: &Decision) -> Option<String> {
    if d.state.human_side() {
        known.last_handoff.clone()
    } else {
        None
    }
}

/// What a decision answers with: the handoff it creates (a new id), the ETA promised for it,
/// its signals as JSON (for the answer and the stored trace) and the answer's body.
struct Answer {
    handoff_id: Option<String>,
    eta: Option<u64>,
    signals_json: Box<serde_json::value::RawValue>,
    response: String,
}

async fn answer<S: Store>(
    app: &App<S>,
    known: &Known,
    view: &ConversationView,
    decision: &Decision,
) -> Answer {
    let handoff_id = decision
        .brief
        .is_some()
        .then(|| uuid::Uuid::now_v7().to_string());
    let shown_id = handoff_id.clone().or_else(|| open_handoff(known, decision));
    let eta = match handoff_id.as_deref() {
        Some(h) if decision.state == baton_core::decide::State::Queued => {
            app.estimate_eta(&baton_core::routing::facts_of(h, decision, view))
                .await
        }
        _ => None,
    };
    let signals_json = wire::signals_json(decision);
    let response = wire::text(&wire::decision_out(
        decision,
        &signals_json,
        shown_id.as_deref(),
        eta,
    ));
    Answer {
        handoff_id,
        eta,
        signals_json,
        response,
    }
}

/// How many times a write is decided again after losing a race to another entry.
const ATTEMPTS: usize = 16;

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the conversation kept changing while this request was decided; retry it",
    )
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

fn check_maps(req: &TurnBody) -> Result<(), ApiError> {
    for (name, map) in [("contact", &req.contact), ("account", &req.account)] {
        if let Some(m) = map {
            if m.len() > MAX_FORM_FIELDS {
                return Err(invalid(
                    name,
                    &format!("{name} may hold at most {MAX_FORM_FIELDS} fields"),
                ));
            }
            if m.iter()
                .any(|(k, v)| k.chars().count() > 128 || v.chars().count() > MAX_FIELD_CHARS)
            {
                return Err(invalid(
                    name,
                    &format!(
                        "{name} keys are at most 128 characters and values at most {MAX_FIELD_CHARS}"
                    ),
                ));
            }
        }
    }
    if req
        .page
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_FIELD_CHARS)
    {
        return Err(invalid(
            "page",
            &format!("page is at most {MAX_FIELD_CHARS} characters"),
        ));
    }
    Ok(())
}

pub(crate) async fn post_turn<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let (body, idempotency) = match open_write(&app, &id, &headers, body).await? {
        Opened::Fresh(body, idempotency) => (body, idempotency),
        Opened::Replayed(r) => return Ok(r),
    };
    let req: TurnBody = parse_json(&body, "a turn")?;
    let role = crate::turn_role_and_text(&req.role, &req.text, "")?;
    if let Some(c) = req.bot.as_ref().and_then(|b| b.confidence)
        && !(0.0..=1.0).contains(&c)
    {
        return Err(invalid(
            "bot.confidence",
            "bot.confidence must be between 0 and 1",
        ));
    }
    check_maps(&req)?;

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
    let engine = app.engine();
    let _turn = app.lock_conversation(&id).await;
    for attempt in 0..ATTEMPTS {
        let known = known(&app, &id, attempt > 0).await?;
        // Copied only when the request changes something.
        let mut view = std::borrow::Cow::Borrowed(&known.view);
        if let Some(c) = &req.contact {
            view.to_mut().contact.extend(c.clone());
        }
        if let Some(a) = &req.account {
            view.to_mut().account.extend(a.clone());
        }
        if req.page.is_some() {
            view.to_mut().page.clone_from(&req.page);
        }
        let at = now();
        let started = std::time::Instant::now();
        let decided = decide(&engine.policy, &engine.detector, &view, &turn, at);
        app.metrics.decide_seconds(started.elapsed());
        let mut decision = match decided {
            Ok(d) => d,
            // The cached view may be behind the store (another node or the router moved
            // the owner): a conflict is answered only on a view fresh from the store.
            Err(DecideError::Conflict { .. }) if attempt == 0 => continue,
            Err(e) => return Err(conflict(e)),
        };
        let Answer {
            handoff_id,
            eta,
            signals_json,
            response,
        } = answer(&app, &known, &view, &decision).await;
        let write = Write {
            id: &id,
            known: &known,
            view: &view,
            at,
            page: req.page.clone(),
            entry: Entry::Turn {
                role: req.role.clone(),
                text: req.text.clone(),
                detected: decision
                    .turn_signals
                    .as_ref()
                    .filter(|_| role == Role::User)
                    .map(|s| engine.codec.encode(s, &req.text)),
            },
            idempotency: idempotency.clone(),
        };
        match commit(
            &app,
            &write,
            Some((&decision, &signals_json)),
            handoff_id.as_deref(),
            response,
        )
        .await?
        {
            Wrote::Stale => continue,
            // A visitor's message is never refused for a change of owner it could not know of.
            Wrote::Moved(_) if req.epoch.is_none() && role == Role::User => continue,
            Wrote::Moved(e) => return Err(e),
            Wrote::Done { seq, response } => {
                route_after_commit(&app, &id, handoff_id.as_deref(), &decision, &view, eta);
                // Only a rep who holds the conversation (or is being offered it) has a stream
                // to tell; a queued conversation's turns do not touch the router.
                if role == Role::User
                    && matches!(
                        view.state,
                        baton_core::decide::State::Human | baton_core::decide::State::Offered
                    )
                {
                    crate::routing::visitor_message(&app, &id, &req.text).await;
                }
                let view = match view {
                    std::borrow::Cow::Owned(v) => Some(v),
                    std::borrow::Cow::Borrowed(_) => None,
                };
                let turn = PastTurn {
                    role,
                    text: req.text.clone(),
                    at,
                    signals: decision.turn_signals.take(),
                };
                let decided = Decided {
                    seq,
                    at,
                    view,
                    turn: Some(turn),
                    decision: &decision,
                    handoff_id: handoff_id.as_deref(),
                };
                remember_decided(&app, &id, known, decided);
                return Ok(response);
            }
        }
    }
    Err(busy())
}

/// A committed decision that created a live handoff: route it (in the background; the visitor's
/// stream and the rep's hear of the offer).
fn route_after_commit<S: Store>(
    app: &App<S>,
    id: &str,
    handoff_id: Option<&str>,
    decision: &Decision,
    view: &ConversationView,
    eta_promised: Option<u64>,
) {
    let Some(h) = handoff_id else {
        return;
    };
    let scheduled = match decision.state {
        baton_core::decide::State::Queued => None,
        baton_core::decide::State::Scheduled => Some(baton_core::routing::Fallback::Schedule),
        baton_core::decide::State::FollowUp => Some(baton_core::routing::Fallback::FollowUp),
        _ => return,
    };
    let facts = baton_core::routing::facts_of(h, decision, view);
    let (app, id, h, epoch) = (
        app.clone(),
        id.to_string(),
        h.to_string(),
        decision.epoch as i64,
    );
    tokio::spawn(async move {
        let routed = match scheduled {
            None => {
                app.handoff_created(&h, &id, epoch, facts, eta_promised)
                    .await
            }
            Some(how) => app.handoff_scheduled(&h, &id, epoch, facts, how).await,
        };
        if let Err(e) = routed {
            tracing::warn!(handoff = %h, "routing failed: {e:?}");
        }
    });
}

fn conflict(e: DecideError) -> ApiError {
    match e {
        DecideError::Conflict {
            state,
            epoch,
            message,
        } => ApiError::conflict(&message, state.as_str(), epoch),
    }
}

/// `POST /v1/conversations/{id}/events`: one behavioural signal. The names trackers commonly
/// use are accepted too (`url` for `page`, `form_submit` for `form_fill`, `custom` for
/// `signal`...); the event is stored as sent and read with the same names.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum EventBody {
    #[serde(alias = "pageview", alias = "page_viewed")]
    PageView {
        #[serde(alias = "url", alias = "path")]
        page: String,
    },
    #[serde(alias = "form_submit", alias = "form_submitted", alias = "form")]
    FormFill {
        #[serde(alias = "form_id", alias = "name")]
        form: String,
        #[serde(default, alias = "data", alias = "values")]
        fields: BTreeMap<String, serde_json::Value>,
    },
    #[serde(alias = "source", alias = "utm")]
    Attribution {
        #[serde(alias = "utm_source")]
        source: Option<String>,
        #[serde(alias = "utm_campaign")]
        campaign: Option<String>,
        #[serde(alias = "referer")]
        referrer: Option<String>,
    },
    #[serde(alias = "custom", alias = "custom_signal")]
    Signal {
        name: String,
        value: serde_json::Value,
    },
}

/// A JSON scalar as the string the policy reads.
fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl EventBody {
    fn kind(&self) -> &'static str {
        match self {
            EventBody::PageView { .. } => "page_view",
            EventBody::FormFill { .. } => "form_fill",
            EventBody::Attribution { .. } => "attribution",
            EventBody::Signal { .. } => "signal",
        }
    }

    fn into_event(self) -> Option<Event> {
        Some(match self {
            EventBody::PageView { page } => Event::PageView { page },
            EventBody::FormFill { form, fields } => Event::FormFill {
                form,
                fields: fields
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
                    .collect(),
            },
            EventBody::Attribution {
                source,
                campaign,
                referrer,
            } => Event::Attribution {
                source,
                campaign,
                referrer,
            },
            EventBody::Signal { name, value } => Event::Signal {
                name,
                value: scalar(&value)?,
            },
        })
    }

    /// Every string within bounds, scalars where scalars are expected.
    fn check(&self) -> Result<(), ApiError> {
        let long = |s: &str| s.trim().is_empty() || s.chars().count() > MAX_FIELD_CHARS;
        let msg = format!("must hold 1 to {MAX_FIELD_CHARS} characters");
        match self {
            EventBody::PageView { page } if long(page) => {
                Err(invalid("page", &format!("page {msg}")))
            }
            EventBody::FormFill { form, fields } => {
                if long(form) {
                    return Err(invalid("form", &format!("form {msg}")));
                }
                if fields.len() > MAX_FORM_FIELDS {
                    return Err(invalid(
                        "fields",
                        &format!("a form fill carries at most {MAX_FORM_FIELDS} fields"),
                    ));
                }
                for (k, v) in fields {
                    let ok =
                        !long(k) && scalar(v).is_some_and(|s| s.chars().count() <= MAX_FIELD_CHARS);
                    if !ok {
                        return Err(invalid(
                            &format!("fields.{k}"),
                            &format!(
                                "form fields are strings, numbers or booleans of at most {MAX_FIELD_CHARS} characters"
                            ),
                        ));
                    }
                }
                Ok(())
            }
            EventBody::Attribution {
                source,
                campaign,
                referrer,
            } => {
                for (name, v) in [
                    ("source", source),
                    ("campaign", campaign),
                    ("referrer", referrer),
                ] {
                    if v.as_deref().is_some_and(long) {
                        return Err(invalid(name, &format!("{name} {msg}")));
                    }
                }
                if source.is_none() && campaign.is_none() && referrer.is_none() {
                    return Err(invalid(
                        "source",
                        "an attribution event names a source, a campaign or a referrer",
                    ));
                }
                Ok(())
            }
            EventBody::Signal { name, value } => {
                if long(name) {
                    return Err(invalid("name", &format!("name {msg}")));
                }
                if scalar(value).is_none_or(|s| s.chars().count() > MAX_FIELD_CHARS) {
                    return Err(invalid(
                        "value",
                        &format!(
                            "value is a string, a number or a boolean of at most {MAX_FIELD_CHARS} characters"
                        ),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

pub(crate) async fn post_event<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let (body, idempotency) = match open_write(&app, &id, &headers, body).await? {
        Opened::Fresh(body, idempotency) => (body, idempotency),
        Opened::Replayed(r) => return Ok(r),
    };
    let value: serde_json::Value = parse_json(&body, "an event")?;
    let event: EventBody = serde_json::from_value(value.clone()).map_err(|e| {
        invalid(
            "type",
            &format!("the body is not an event (page_view, form_fill, attribution, signal): {e}"),
        )
    })?;
    event.check()?;
    let kind = event.kind();
    let mut data = value;
    if let Some(m) = data.as_object_mut() {
        m.remove("type");
    }
    let stored_event = event.into_event();
    // An event changes no owner; if anything changes meanwhile, it is simply written again.
    let _turn = app.lock_conversation(&id).await;
    for attempt in 0..ATTEMPTS {
        let known = known(&app, &id, attempt > 0).await?;
        let response = serde_json::json!({
            "conversation_id": id,
            "type": kind,
            "state": known.view.state.as_str(),
            "epoch": known.view.epoch,
        });
        let write = Write {
            id: &id,
            known: &known,
            view: &known.view,
            at: now(),
            page: None,
            entry: Entry::Event {
                kind: kind.to_string(),
                data: data.to_string(),
            },
            idempotency: idempotency.clone(),
        };
        match commit(&app, &write, None, None, response.to_string()).await {
            Ok(Wrote::Stale | Wrote::Moved(_)) => continue,
            Err(e) => return Err(e),
            Ok(Wrote::Done { seq, response }) => {
                if seq < 0 {
                    app.conversations.remove(&id);
                } else {
                    let mut k = take_known(&app, &id, known);
                    if let Some(e) = &stored_event {
                        k.view.apply(e);
                    }
                    k.count = seq + 1;
                    app.conversations.insert(id.clone(), std::sync::Arc::new(k));
                }
                return Ok(response);
            }
        }
    }
    Err(busy())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HandoffBody {
    /// `user` (the visitor pressed "talk to a person") or `bot` (default).
    by: Option<String>,
    reason: Option<String>,
    epoch: Option<u64>,
}

pub(crate) async fn post_handoff<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let (body, idempotency) = match open_write(&app, &id, &headers, body).await? {
        Opened::Fresh(body, idempotency) => (body, idempotency),
        Opened::Replayed(r) => return Ok(r),
    };
    let req: HandoffBody = if body.iter().all(u8::is_ascii_whitespace) {
        HandoffBody::default()
    } else {
        parse_json(&body, "a handoff request")?
    };
    let by = match req.by.as_deref() {
        None | Some("bot") => Role::Bot,
        Some("user" | "visitor") => Role::User,
        Some(other) => {
            return Err(invalid(
                "by",
                &format!("by must be \"user\" or \"bot\", not {other:?}"),
            ));
        }
    };
    if req
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_FIELD_CHARS)
    {
        return Err(invalid(
            "reason",
            &format!("reason is at most {MAX_FIELD_CHARS} characters"),
        ));
    }
    let engine = app.engine();
    let request = HandoffRequest {
        by,
        note: req.reason.clone(),
        epoch: req.epoch,
    };
    let data = serde_json::json!({"by": if by == Role::User { "user" } else { "bot" }, "reason": req.reason}).to_string();
    let _turn = app.lock_conversation(&id).await;
    for attempt in 0..ATTEMPTS {
        let known = known(&app, &id, attempt > 0).await?;
        let at = now();
        let started = std::time::Instant::now();
        let decided = decide_handoff(&engine.policy, &engine.detector, &known.view, &request, at);
        app.metrics.decide_seconds(started.elapsed());
        let decision = match decided {
            Ok(d) => d,
            Err(DecideError::Conflict { .. }) if attempt == 0 => continue,
            Err(e) => return Err(conflict(e)),
        };
        let Answer {
            handoff_id,
            eta,
            signals_json,
            response,
        } = answer(&app, &known, &known.view, &decision).await;
        let write = Write {
            id: &id,
            known: &known,
            view: &known.view,
            at,
            page: None,
            entry: Entry::Event {
                kind: "handoff_request".into(),
                data: data.clone(),
            },
            idempotency: idempotency.clone(),
        };
        match commit(
            &app,
            &write,
            Some((&decision, &signals_json)),
            handoff_id.as_deref(),
            response,
        )
        .await?
        {
            Wrote::Stale => continue,
            Wrote::Moved(_) if req.epoch.is_none() => continue,
            Wrote::Moved(e) => return Err(e),
            Wrote::Done { seq, response } => {
                route_after_commit(
                    &app,
                    &id,
                    handoff_id.as_deref(),
                    &decision,
                    &known.view,
                    eta,
                );
                let decided = Decided {
                    seq,
                    at,
                    view: None,
                    turn: None,
                    decision: &decision,
                    handoff_id: handoff_id.as_deref(),
                };
                remember_decided(&app, &id, known, decided);
                return Ok(response);
            }
        }
    }
    Err(busy())
}

pub(crate) async fn get_conversation<S: Store>(
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
    Ok(axum::Json(wire::conversation(&row, &app.engine())).into_response())
}
