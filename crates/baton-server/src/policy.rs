//! The policy over HTTP: read the active version, replace it (validated, its `[[test]]` cases
//! run; `?dry_run=true` only says what would change), list versions, and simulate a
//! transcript against the active policy or a candidate one.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::check::run_tests;
use baton_core::decide::{BotMeta, ConversationView};
use baton_core::policy::{Policy, Trigger};
use baton_core::replay::{self, ScriptTurn, Transcript};
use baton_store::Store;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, App, Engine, authenticate, body_bytes, limit_of, parse_json, wire};

/// Most turns a simulated transcript may hold.
pub const MAX_SIMULATED_TURNS: usize = 200;

fn summary(engine: &Engine) -> Value {
    json!({
        "hash": engine.policy.hash,
        "version": engine.policy.version,
        "triggers": engine.policy.triggers.iter().map(|t| json!({
            "id": t.id, "when": t.when.source(), "action": t.action.as_str(), "priority": t.priority, "reason": t.reason,
        })).collect::<Vec<_>>(),
        "tests": engine.policy.tests.len(),
    })
}

pub(crate) async fn get_policy<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    let engine = app.engine();
    let stored = app.store.active_policy().await?;
    let mut out = summary(&engine);
    out["text"] = json!(engine.text);
    out["activated_at"] = json!(
        stored
            .filter(|p| p.hash == engine.policy.hash)
            .map(|p| p.activated_at)
    );
    Ok(axum::Json(out).into_response())
}

pub(crate) async fn list_versions<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    q: Result<Query<crate::ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    let limit = limit_of(q)?;
    let rows = app.store.policies(limit).await?;
    Ok(axum::Json(json!({"versions": rows.iter().map(|p| json!({
        "hash": p.hash, "created_at": p.created_at, "activated_at": p.activated_at, "active": p.active,
    })).collect::<Vec<_>>()}))
    .into_response())
}

#[derive(Deserialize)]
pub(crate) struct PutQuery {
    dry_run: Option<bool>,
}

fn same_trigger(a: &Trigger, b: &Trigger) -> bool {
    a.when.source() == b.when.source()
        && a.reason == b.reason
        && a.priority == b.priority
        && a.action == b.action
        && a.cooldown == b.cooldown
        && a.min_turns == b.min_turns
}

/// What replacing `old` by `new` changes, trigger by trigger.
fn diff(old: &Policy, new: &Policy) -> Value {
    let find = |p: &Policy, id: &str| p.triggers.iter().position(|t| t.id == id);
    let added: Vec<&str> = new
        .triggers
        .iter()
        .filter(|t| find(old, &t.id).is_none())
        .map(|t| t.id.as_str())
        .collect();
    let removed: Vec<&str> = old
        .triggers
        .iter()
        .filter(|t| find(new, &t.id).is_none())
        .map(|t| t.id.as_str())
        .collect();
    let changed: Vec<&str> = new
        .triggers
        .iter()
        .filter(|t| find(old, &t.id).is_some_and(|i| !same_trigger(&old.triggers[i], t)))
        .map(|t| t.id.as_str())
        .collect();
    let crit = |p: &Policy| {
        p.qualification
            .iter()
            .map(|c| (c.name.clone(), c.when.source().to_string()))
            .collect::<Vec<_>>()
    };
    json!({
        "changed": old.hash != new.hash,
        "triggers": {"added": added, "removed": removed, "changed": changed},
        "qualification_changed": crit(old) != crit(new),
        "scoring_changed": old.scoring.iter().map(|r| (r.name.as_str(), r.when.source(), r.points)).collect::<Vec<_>>()
            != new.scoring.iter().map(|r| (r.name.as_str(), r.when.source(), r.points)).collect::<Vec<_>>(),
        "messages_changed": old.messages != new.messages,
    })
}

fn policy_text(body: &Bytes) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_policy",
            "the policy must be UTF-8 TOML text",
        )
        .field("policy")
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_policy",
            "the body is empty: send the policy's TOML text",
        )
        .field("policy"));
    }
    Ok(text.to_string())
}

/// Loads a candidate policy: 400 with every problem, or with every failing test case.
fn candidate(text: &str) -> Result<(Engine, usize), ApiError> {
    let engine = Engine::load("policy.toml", text).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_policy", &e).field("policy")
    })?;
    let results = run_tests(&engine.policy, &engine.detector);
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "policy.toml:{}: test {:?}: {}",
                r.line,
                r.name,
                r.failures.join("; ")
            )
        })
        .collect();
    if !failed.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "policy_tests_failed",
            &format!(
                "{} of the policy's [[test]] cases failed:\n{}",
                failed.len(),
                failed.join("\n")
            ),
        )
        .field("policy"));
    }
    Ok((engine, results.len()))
}

pub(crate) async fn put_policy<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    q: Result<Query<PutQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?.require_admin()?;
    let Query(q) = q.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", &e.to_string()).field("dry_run")
    })?;
    let text = policy_text(&body_bytes(body)?)?;
    let (engine, tests) = candidate(&text)?;
    let current = app.engine();
    let mut out = json!({
        "dry_run": q.dry_run.unwrap_or(false),
        "hash": engine.policy.hash,
        "previous_hash": current.policy.hash,
        "tests_passed": tests,
        "diff": diff(&current.policy, &engine.policy),
    });
    if q.dry_run != Some(true) {
        let at = jiff::Timestamp::now().to_string();
        app.store
            .activate_policy(&engine.policy.hash, &text, &at)
            .await?;
        tracing::info!(hash = %engine.policy.hash, "policy activated");
        app.set_engine(engine);
        out["active"] = json!(true);
        out["activated_at"] = json!(at);
    }
    Ok(axum::Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimTurn {
    role: String,
    text: String,
    bot: Option<SimBot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimBot {
    confidence: Option<f64>,
    intent: Option<String>,
    #[serde(default)]
    fallback: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateBody {
    turns: Vec<SimTurn>,
    /// A candidate policy's TOML text; default: the active policy.
    policy: Option<String>,
    #[serde(default)]
    contact: std::collections::HashMap<String, String>,
    #[serde(default)]
    account: std::collections::HashMap<String, String>,
    page: Option<String>,
    /// When the first turn happens (RFC 3339); default: now.
    at: Option<String>,
}

pub(crate) async fn simulate<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    let body = body_bytes(body)?;
    let req: SimulateBody = parse_json(&body, "a simulation request")?;
    if req.turns.is_empty() || req.turns.len() > MAX_SIMULATED_TURNS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            &format!("turns must hold 1 to {MAX_SIMULATED_TURNS} turns"),
        )
        .field("turns"));
    }
    let mut turns = Vec::with_capacity(req.turns.len());
    for (i, t) in req.turns.iter().enumerate() {
        let role = crate::turn_role_and_text(&t.role, &t.text, &format!("turns[{i}]."))?;
        turns.push(ScriptTurn {
            role,
            text: t.text.clone(),
            bot: t.bot.as_ref().map(|b| BotMeta {
                confidence: b.confidence,
                intent: b.intent.clone(),
                fallback: b.fallback,
            }),
            at: None,
        });
    }
    let at = match &req.at {
        None => jiff::Timestamp::now(),
        Some(s) => s.parse().map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                &format!("at must be an RFC 3339 time such as 2026-11-23T15:00:00Z: {e}"),
            )
            .field("at")
        })?,
    };
    let engine = match &req.policy {
        Some(text) => std::sync::Arc::new(Engine::load("policy.toml", text).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_policy", &e).field("policy")
        })?),
        None => app.engine(),
    };
    let mut start = ConversationView::new();
    start.contact = req.contact;
    start.account = req.account;
    start.page = req.page;
    let transcript = Transcript { turns, start };
    let steps = replay::run(&engine.policy, &engine.detector, &transcript, at);
    let out: Vec<Value> = steps
        .iter()
        .map(|s| {
            let mut v = match &s.decision {
                Ok(d) => {
                    let mut v = wire::trace(d);
                    v["message"] = json!(
                        d.message
                            .as_deref()
                            .map(|m| baton_core::decide::with_eta(m, None))
                    );
                    v["brief"] = d.brief.as_ref().map_or(Value::Null, wire::brief);
                    v
                }
                Err(e) => json!({"conflict": e.to_string()}),
            };
            v["turn"] = json!(s.index);
            v["at"] = json!(s.at.to_string());
            v
        })
        .collect();
    Ok(axum::Json(json!({
        "policy_hash": engine.policy.hash,
        "handed_over_at": steps.iter().find(|s| s.hands_over()).map(|s| s.index),
        "steps": out,
    }))
    .into_response())
}
