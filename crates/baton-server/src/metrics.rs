//! `/metrics` (Prometheus text, this node's counters since it started) and
//! `/v1/metrics/summary` (counts over the whole store, every node's work included).

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_core::decide::Decision;
use baton_store::Store;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::{ApiError, App, authenticate};

type Labels = Vec<(&'static str, String)>;

fn latency() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// This node's counters.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    decisions: Family<Labels, Counter>,
    handoffs: Family<Labels, Counter>,
    decide_seconds: Histogram,
    signals_read: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("baton");
        let requests = Family::<Labels, Counter>::default();
        let request_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let decisions = Family::<Labels, Counter>::default();
        let handoffs = Family::<Labels, Counter>::default();
        let decide_seconds = latency();
        let signals_read = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            request_seconds.clone(),
        );
        registry.register(
            "decisions",
            "Decisions stored, by action and trigger",
            decisions.clone(),
        );
        registry.register(
            "handoffs_created",
            "Handoffs created, by trigger",
            handoffs.clone(),
        );
        registry.register(
            "decide_duration_seconds",
            "Time spent in decide(), detectors included",
            decide_seconds.clone(),
        );
        registry.register(
            "turn_signals_read",
            "Visitor turns of conversations read back from the store, by where their signals \
             came from: stored with the turn, or detected again (older turns, other detectors)",
            signals_read.clone(),
        );
        Metrics {
            signals_read,
            registry,
            requests,
            request_seconds,
            decisions,
            handoffs,
            decide_seconds,
        }
    }

    /// A decision was stored (and with it, maybe, a handoff).
    pub fn decided(&self, d: &Decision, created_handoff: bool) {
        let trigger = d.trigger.clone().unwrap_or_default();
        self.decisions
            .get_or_create(&vec![
                ("action", d.action.as_str().to_string()),
                ("trigger", trigger.clone()),
            ])
            .inc();
        if created_handoff {
            self.handoffs
                .get_or_create(&vec![("trigger", trigger)])
                .inc();
        }
    }

    /// A conversation was read back: this many of its visitor turns' signals were decoded
    /// from the store, this many detected again.
    pub fn signals_read(&self, stored: u64, detected: u64) {
        for (source, n) in [("stored", stored), ("detected", detected)] {
            if n > 0 {
                self.signals_read
                    .get_or_create(&vec![("source", source.to_string())])
                    .inc_by(n);
            }
        }
    }

    pub fn decide_seconds(&self, d: Duration) {
        self.decide_seconds.observe(d.as_secs_f64());
    }

    fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Counts every request by the route it matched (never by raw path: ids would explode the
/// label space).
pub(crate) async fn track<S: Store>(
    State(app): State<App<S>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    app.metrics
        .requests
        .get_or_create(&vec![
            ("route", route.clone()),
            ("method", method),
            ("status", status),
        ])
        .inc();
    app.metrics
        .request_seconds
        .get_or_create(&vec![("route", route)])
        .observe(started.elapsed().as_secs_f64());
    response
}

pub(crate) async fn prometheus<S: Store>(State(app): State<App<S>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

pub(crate) async fn summary<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    let s = app.store.summary().await?;
    let map = |v: &[(String, i64)]| {
        v.iter()
            .map(|(k, n)| (k.clone(), json!(n)))
            .collect::<serde_json::Map<_, _>>()
    };
    let handoff_rate = if s.conversations > 0 {
        s.handoffs as f64 / s.conversations as f64
    } else {
        0.0
    };
    Ok(axum::Json(json!({
        "conversations": s.conversations,
        "conversations_by_state": map(&s.by_state),
        "turns": s.turns,
        "handoffs": s.handoffs,
        "handoffs_by_trigger": map(&s.handoffs_by_trigger),
        "decisions_by_action": map(&s.decisions_by_action),
        "handoffs_per_conversation": (handoff_rate * 10_000.0).round() / 10_000.0,
        // Whether the ETAs Baton told visitors held: kept when a rep accepted in time,
        // broken when one accepted late or nobody did.
        "eta": {
            "promised": s.eta_promised,
            "kept": s.eta_kept,
            "broken": s.eta_broken,
            "share_kept": (s.eta_kept + s.eta_broken > 0)
                .then(|| (s.eta_kept as f64 / (s.eta_kept + s.eta_broken) as f64 * 10_000.0).round() / 10_000.0),
        },
        "policy_hash": app.engine().policy.hash,
    }))
    .into_response())
}
