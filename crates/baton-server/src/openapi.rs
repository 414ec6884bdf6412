//! The OpenAPI 3.1 document served at `/v1/openapi.json`, written by hand next to the routes;
//! a test checks that every route the router serves is described here and nothing else is.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn error_ref() -> Value {
    json!({"$ref": "#/components/responses/Error"})
}

fn errors(codes: &[&str]) -> serde_json::Map<String, Value> {
    codes.iter().map(|c| (c.to_string(), error_ref())).collect()
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn responses(success: Value, codes: &[&str]) -> Value {
    let mut m = errors(codes);
    m.insert("200".into(), success);
    Value::Object(m)
}

fn id_param(what: &str) -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": what,
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}})
}

fn idempotency_param() -> Value {
    json!({"name": "Idempotency-Key", "in": "header", "required": false,
           "description": "A retry with the same key and body answers the first answer and stores nothing; the same key with another body is refused (422).",
           "schema": {"type": "string", "maxLength": 255}})
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// The document.
pub fn document() -> Value {
    let decision = json!({"$ref": "#/components/schemas/Decision"});
    let conv = "The conversation id: the bot's own session id";
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Baton",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Decides when a chatbot must hand a conversation to a human, and hands it over with its context. Every route but health, metrics and this document needs `Authorization: Bearer KEY` (keys from `baton keys create`); changing the policy needs an admin key.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/health": {"get": {"summary": "Liveness", "security": [],
                "responses": responses(ok("Up", json!({"type": "object", "properties": {"status": {"const": "ok"}}})), &[])}},
            "/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                "responses": responses(ok("The OpenAPI document", json!({"type": "object"})), &[])}},
            "/metrics": {"get": {"summary": "Prometheus / OpenMetrics text: this node's request, decision and handoff counters and latencies", "security": [],
                "responses": {"200": {"description": "OpenMetrics text", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}}},
            "/v1/metrics/summary": {"get": {"summary": "Counts over the whole store",
                "responses": responses(ok("Counts", json!({"type": "object"})), &["401"])}},
            "/v1/conversations/{id}/turns": {"post": {
                "summary": "A visitor or bot message: answers what the bot must do",
                "parameters": [id_param(conv), idempotency_param()],
                "requestBody": json_body(json!({"$ref": "#/components/schemas/Turn"})),
                "responses": responses(ok("The decision", decision.clone()), &["400", "401", "409", "413", "422"]),
            }},
            "/v1/conversations/{id}/events": {"post": {
                "summary": "A behavioural signal (page view, form fill, attribution, custom signal); read by the next decision",
                "parameters": [id_param(conv), idempotency_param()],
                "requestBody": json_body(json!({"$ref": "#/components/schemas/Event"})),
                "responses": responses(ok("Stored", json!({"type": "object", "properties": {
                    "conversation_id": {"type": "string"}, "type": {"type": "string"}, "state": {"type": "string"}, "epoch": {"type": "integer"}}})),
                    &["400", "401", "413", "422"]),
            }},
            "/v1/conversations/{id}/handoff": {"post": {
                "summary": "An explicit request for a person. Off-hours triggers of the policy still apply; while a human owns the conversation the answer is `hold` and nothing new is created.",
                "parameters": [id_param(conv), idempotency_param()],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                    "by": {"enum": ["user", "visitor", "bot"], "default": "bot"},
                    "reason": {"type": "string", "maxLength": 2048},
                    "epoch": {"type": "integer", "minimum": 0}}}}}},
                "responses": responses(ok("The decision", decision.clone()), &["400", "401", "409", "413", "422"]),
            }},
            "/v1/conversations/{id}": {"get": {
                "summary": "State, epoch, transcript with each turn's signals, events, conversation signals, lead, brief, every decision's trace, handoffs",
                "parameters": [id_param(conv)],
                "responses": responses(ok("The conversation", json!({"type": "object"})), &["400", "401", "404"]),
            }},
            "/v1/handoffs": {"get": {
                "summary": "Handoffs, newest first",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}],
                "responses": responses(ok("Handoffs with their briefs", json!({"type": "object", "properties": {"handoffs": {"type": "array", "items": {"$ref": "#/components/schemas/Handoff"}}}})), &["400", "401"]),
            }},
            "/v1/handoffs/{id}": {"get": {
                "summary": "One handoff with its brief",
                "parameters": [id_param("The handoff id")],
                "responses": responses(ok("The handoff", json!({"$ref": "#/components/schemas/Handoff"})), &["400", "401", "404"]),
            }},
            "/v1/policy": {
                "get": {"summary": "The active policy: hash, triggers, TOML text",
                    "responses": responses(ok("The policy", json!({"type": "object"})), &["401"])},
                "put": {"summary": "Replace the policy (admin). The TOML is checked and its [[test]] cases run; `?dry_run=true` answers what would change and stores nothing.",
                    "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean", "default": false}}],
                    "requestBody": {"required": true, "content": {"application/toml": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}}},
                    "responses": responses(ok("Valid: the diff, and whether it is now active", json!({"type": "object"})), &["400", "401", "403", "413"])},
            },
            "/v1/policy/versions": {"get": {"summary": "Stored policy versions, most recently activated first",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}],
                "responses": responses(ok("Versions", json!({"type": "object"})), &["400", "401"])}},
            "/v1/policy/simulate": {"post": {
                "summary": "A transcript in, the decision trace of every turn out (the active policy, or `policy` given as TOML text). Stores nothing.",
                "requestBody": json_body(json!({"type": "object", "required": ["turns"], "additionalProperties": false, "properties": {
                    "turns": {"type": "array", "minItems": 1, "maxItems": 200, "items": {"type": "object", "required": ["role", "text"], "properties": {
                        "role": {"enum": ["user", "bot"]}, "text": {"type": "string"}, "bot": {"$ref": "#/components/schemas/BotMeta"}}}},
                    "policy": {"type": "string", "description": "A candidate policy's TOML text"},
                    "contact": {"type": "object", "additionalProperties": {"type": "string"}},
                    "account": {"type": "object", "additionalProperties": {"type": "string"}},
                    "page": {"type": "string"},
                    "at": {"type": "string", "format": "date-time", "description": "When the first turn happens; turns are 30 s apart"}}})),
                "responses": responses(ok("One step per turn", json!({"type": "object"})), &["400", "401", "413"]),
            }},
            "/v1/handoffs/{id}/routing": {"get": {
                "summary": "The handoff's one trace: the decision that created it (every trigger with its value), then routes evaluated, targets, every rep considered with the reason each was or was not eligible, each offer with its outcome and timing, SLA breaches, ETA promised and kept, outcome",
                "parameters": [id_param("The handoff id")],
                "responses": responses(ok("The routing record and offers", json!({"type": "object"})), &["400", "401", "404"]),
            }},
            "/v1/handoffs/{id}/{action}": {"post": {
                "summary": "A rep's answer: `accept` or `decline` a pending offer; `resolve` (outcome, reason, converted, value, verdict) or `hand-back` (note) a conversation the rep holds. A rep key acts for its rep; an admin key names the rep.",
                "parameters": [id_param("The handoff id"), {"name": "action", "in": "path", "required": true, "schema": {"enum": ["accept", "decline", "resolve", "hand-back"]}}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                    "rep": {"type": "string"}, "outcome": {"type": "string"}, "reason": {"type": "string"}, "converted": {"type": "boolean"},
                    "value": {"type": "number"}, "verdict": {"enum": ["right", "too_early", "too_late", "wrong_queue", "unneeded"]}, "note": {"type": "string"}}}}}},
                "responses": responses(ok("The handoff now", json!({"type": "object"})), &["400", "401", "403", "404", "409", "422"]),
            }},
            "/v1/handoffs/{id}/slots": {"get": {
                "summary": "The soonest free meeting slots with a rep of the handoff's route, in the reps' working hours",
                "parameters": [id_param("The handoff id")],
                "responses": responses(ok("Slots", json!({"type": "object"})), &["400", "401", "404"]),
            }},
            "/v1/handoffs/{id}/meeting": {"post": {
                "summary": "Books a slot with a rep (it must be free and in the rep's hours)",
                "parameters": [id_param("The handoff id")],
                "requestBody": json_body(json!({"type": "object", "required": ["start", "rep"], "additionalProperties": false, "properties": {
                    "start": {"type": "string", "format": "date-time"}, "rep": {"type": "string"}}})),
                "responses": {"201": {"description": "Booked"}, "400": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}},
            }},
            "/v1/reps": {"get": {"summary": "Reps with attributes, presence, load and queues",
                "responses": responses(ok("Reps", json!({"type": "object"})), &["401"])}},
            "/v1/reps/{id}": {
                "get": {"summary": "One rep (admin or the rep's own key)", "parameters": [id_param("The rep id")],
                    "responses": responses(ok("The rep", json!({"type": "object"})), &["401", "403", "404"])},
                "put": {"summary": "Create or replace a rep's attributes (admin)", "parameters": [id_param("The rep id")],
                    "requestBody": json_body(json!({"$ref": "#/components/schemas/Rep"})),
                    "responses": responses(ok("The rep", json!({"type": "object"})), &["400", "401", "403", "422"])},
            },
            "/v1/reps/{id}/presence": {"put": {
                "summary": "available, busy, away or offline; also the heartbeat (a rep silent for the policy's `away_after` is marked away). Becoming available offers waiting handoffs at once, most urgent and oldest first.",
                "parameters": [id_param("The rep id")],
                "requestBody": json_body(json!({"type": "object", "required": ["presence"], "properties": {"presence": {"enum": ["available", "busy", "away", "offline"]}}})),
                "responses": responses(ok("The rep", json!({"type": "object"})), &["400", "401", "403", "404", "422"]),
            }},
            "/v1/reps/{id}/stream": {"get": {
                "summary": "Server-sent events for a rep: offer, offer_ended, accepted, visitor_message, sla_breached, reassigned, meeting_booked, presence. Reconnect with Last-Event-ID to get what was missed.",
                "parameters": [id_param("The rep id")],
                "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
            }},
            "/v1/conversations/{id}/stream": {"get": {
                "summary": "Server-sent events for the visitor side: state, eta, rep_joined, message, fallback, meeting_booked, handed_back. Reconnect with Last-Event-ID to get what was missed.",
                "parameters": [id_param(conv)],
                "responses": {"200": {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
            }},
            "/v1/conversations/{id}/messages": {"post": {
                "summary": "The rep who holds the conversation writes to the visitor (pushed on the conversation's stream)",
                "parameters": [id_param(conv)],
                "requestBody": json_body(json!({"type": "object", "required": ["text"], "additionalProperties": false, "properties": {"rep": {"type": "string"}, "text": {"type": "string"}}})),
                "responses": {"202": {"description": "Sent"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}},
            }},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": ["string", "null"]}}},
                    "state": {"type": "string", "description": "409 only: the conversation's owner now"},
                    "epoch": {"type": "integer", "description": "409 only: the conversation's epoch now"}}},
                "BotMeta": {"type": "object", "additionalProperties": false, "properties": {
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1}, "intent": {"type": "string"}, "fallback": {"type": "boolean"}}},
                "Turn": {"type": "object", "required": ["role", "text"], "additionalProperties": false, "properties": {
                    "role": {"enum": ["user", "bot"]},
                    "text": {"type": "string", "minLength": 1, "maxLength": 16384},
                    "epoch": {"type": "integer", "minimum": 0, "description": "The epoch the writer believes current; stale: 409"},
                    "contact": {"type": "object", "additionalProperties": {"type": "string"}},
                    "account": {"type": "object", "additionalProperties": {"type": "string"}},
                    "page": {"type": "string"},
                    "bot": {"$ref": "#/components/schemas/BotMeta"}}},
                "Event": {"oneOf": [
                    {"type": "object", "required": ["type", "page"], "properties": {"type": {"const": "page_view"}, "page": {"type": "string"}}},
                    {"type": "object", "required": ["type", "form"], "properties": {"type": {"const": "form_fill"}, "form": {"type": "string"},
                        "fields": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}}},
                    {"type": "object", "required": ["type"], "properties": {"type": {"const": "attribution"}, "source": {"type": "string"}, "campaign": {"type": "string"}, "referrer": {"type": "string"}}},
                    {"type": "object", "required": ["type", "name", "value"], "properties": {"type": {"const": "signal"}, "name": {"type": "string"}, "value": {"type": ["string", "number", "boolean"]}}},
                ]},
                "Decision": {"type": "object", "properties": {
                    "action": {"enum": ["continue", "handoff", "hold", "schedule", "follow_up"]},
                    "state": {"enum": ["bot", "queued", "offered", "human", "resolved", "handed_back", "scheduled", "follow_up", "abandoned"]},
                    "epoch": {"type": "integer"},
                    "message": {"type": ["string", "null"], "description": "What the bot shows the visitor"},
                    "eta_seconds": {"type": ["integer", "null"]},
                    "handoff_id": {"type": ["string", "null"]},
                    "trigger": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "lead_score": {"type": "number"},
                    "triggers": {"type": "array", "items": {"type": "string"}, "description": "Every trigger that matched, in priority order"},
                    "signals": {"type": "object", "description": "The conversation's signals, as `baton detect` prints them"},
                    "policy_hash": {"type": "string"}}},
                "Rep": {"type": "object", "additionalProperties": false, "properties": {
                    "name": {"type": "string"},
                    "skills": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "skill name to level"},
                    "territories": {"type": "array", "items": {"type": "string"}},
                    "languages": {"type": "array", "items": {"type": "string"}},
                    "products": {"type": "array", "items": {"type": "string"}},
                    "deal_band": {"type": "string"},
                    "time_zone": {"type": "string", "description": "IANA"},
                    "hours": {"type": "string", "description": "A calendar of the policy's [hours]: when the rep works"},
                    "capacity": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
                    "on_call": {"type": "boolean"},
                    "weight": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
                    "manager": {"type": "string"},
                    "email": {"type": "string"}}},
                "Handoff": {"type": "object", "properties": {
                    "id": {"type": "string"}, "conversation_id": {"type": "string"}, "seq": {"type": "integer"},
                    "trigger": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]}, "priority": {"type": ["integer", "null"]},
                    "state": {"type": "string"}, "created_at": {"type": "string"}, "brief": {"type": "object"}}},
            },
        },
    })
}

pub(crate) async fn serve() -> Response {
    axum::Json(document()).into_response()
}
