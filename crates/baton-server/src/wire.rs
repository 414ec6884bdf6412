//! Wire formats: the JSON the API and `baton detect` answer with, built from the engine's
//! types at the edge (the engine has no serde).

use baton_detect::{Authority, Entity, Evidence, Signals};
use serde::Serialize;

/// The JSON shape of `baton detect` output (SPEC §11), borrowed from the detector's types.
#[derive(Serialize)]
pub struct DetectOut<'a> {
    human_request: bool,
    frustration: bool,
    confusion: bool,
    #[serde(rename = "loop")]
    looping: bool,
    sentiment: f64,
    intents: &'a [&'static str],
    topics: &'a [&'static str],
    entities: Vec<EntityOut<'a>>,
    evidence: Vec<EvidenceOut<'a>>,
    lead: LeadOut<'a>,
    conversation: ConversationOut,
    frustration_score: f64,
}

#[derive(Serialize)]
struct EntityOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    start: usize,
    end: usize,
    value: &'a str,
}

#[derive(Serialize)]
struct EvidenceOut<'a> {
    signal: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'static str>,
    start: usize,
    end: usize,
    text: &'a str,
    rule: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    turn: usize,
}

#[derive(Serialize)]
struct LeadOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<TimelineOut>,
    authority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_size: Option<CompanySizeOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    evidence: Vec<EvidenceOut<'a>>,
}

#[derive(Serialize)]
struct BudgetOut {
    amount: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<&'static str>,
}

#[derive(Serialize)]
struct TimelineOut {
    days: i64,
    date: String,
}

#[derive(Serialize)]
struct CompanySizeOut {
    employees: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    min: Option<u64>,
}

#[derive(Serialize)]
struct ConversationOut {
    user_turns: usize,
    bot_fallbacks_in_row: usize,
    bot_fallbacks: usize,
    unanswered_questions: usize,
    repeated_questions: usize,
    corrections: usize,
    sentiment_trend: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn evidence(e: &Evidence) -> EvidenceOut<'_> {
    EvidenceOut {
        signal: e.signal,
        label: e.label,
        start: e.span.start,
        end: e.span.end,
        text: &e.text,
        rule: &e.rule,
        turn: e.turn,
    }
}

fn entity(e: &Entity) -> EntityOut<'_> {
    EntityOut {
        kind: e.kind.as_str(),
        start: e.span.start,
        end: e.span.end,
        value: &e.value,
    }
}

impl<'a> DetectOut<'a> {
    pub fn new(s: &'a Signals) -> DetectOut<'a> {
        let q = &s.qualification;
        let lead_evidence = [
            q.budget.as_ref().map(|b| &b.evidence),
            q.timeline.as_ref().map(|t| &t.evidence),
            q.authority_evidence.as_ref(),
            q.company_size.as_ref().map(|c| &c.evidence),
        ];
        DetectOut {
            human_request: s.human_request,
            frustration: s.frustration,
            confusion: s.confusion,
            looping: s.looping,
            sentiment: round4(s.sentiment),
            intents: &s.intents,
            topics: &s.topics,
            entities: s.entities.iter().map(entity).collect(),
            evidence: s.evidence.iter().map(evidence).collect(),
            lead: LeadOut {
                budget: q.budget.as_ref().map(|b| BudgetOut {
                    amount: b.amount,
                    min: b.min,
                    currency: b.currency,
                    period: b.period,
                }),
                timeline: q.timeline.as_ref().map(|t| TimelineOut {
                    days: t.days,
                    date: t.date.to_string(),
                }),
                authority: if q.authority == Authority::Unknown {
                    "unknown"
                } else {
                    q.authority.as_str()
                },
                company_size: q.company_size.as_ref().map(|c| CompanySizeOut {
                    employees: c.employees,
                    min: c.min,
                }),
                evidence: lead_evidence.into_iter().flatten().map(evidence).collect(),
            },
            conversation: ConversationOut {
                user_turns: s.conversation.user_turns,
                bot_fallbacks_in_row: s.conversation.bot_fallbacks_in_row,
                bot_fallbacks: s.conversation.bot_fallbacks,
                unanswered_questions: s.conversation.unanswered_questions,
                repeated_questions: s.conversation.repeated_questions,
                corrections: s.conversation.corrections,
                sentiment_trend: round4(s.conversation.sentiment_trend),
            },
            frustration_score: round4(s.frustration_score),
        }
    }
}

/// The signals of a turn or a conversation, as `baton detect` prints them (SPEC §11).
pub fn signals(s: &Signals) -> serde_json::Value {
    serde_json::to_value(DetectOut::new(s)).unwrap_or(serde_json::Value::Null)
}

/// The answer to a turn (SPEC §8), serialized straight from the decision.
#[derive(Serialize)]
pub struct DecisionOut<'a> {
    action: &'static str,
    state: &'static str,
    epoch: u64,
    message: Option<std::borrow::Cow<'a, str>>,
    eta_seconds: Option<u64>,
    handoff_id: Option<&'a str>,
    trigger: Option<&'a str>,
    reason: Option<&'a str>,
    lead_score: f64,
    triggers: Vec<&'a str>,
    signals: &'a serde_json::value::RawValue,
    policy_hash: &'a str,
}

/// A decision's signals as JSON, written once for both the answer and the stored trace.
pub fn signals_json(d: &baton_core::decide::Decision) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&DetectOut::new(&d.signals))
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned())
}

/// The answer to a turn; `eta_seconds`, when the router could estimate it, also fills the
/// message's `{eta}`.
pub fn decision_out<'a>(
    d: &'a baton_core::decide::Decision,
    signals: &'a serde_json::value::RawValue,
    handoff_id: Option<&'a str>,
    eta_seconds: Option<u64>,
) -> DecisionOut<'a> {
    DecisionOut {
        action: d.action.as_str(),
        state: d.state.as_str(),
        epoch: d.epoch,
        message: d
            .message
            .as_deref()
            .map(|m| baton_core::decide::with_eta(m, eta_seconds)),
        eta_seconds,
        handoff_id,
        trigger: d.trigger.as_deref(),
        reason: d.reason.as_deref(),
        lead_score: d.lead_score,
        triggers: d.fired(),
        signals,
        policy_hash: &d.policy_hash,
    }
}

/// A trigger in the stored trace, which leaves out what most triggers share: a `value` of
/// false, `fired` false and no `note` (on a turn about three quarters of a trace's triggers
/// say nothing else). [`full_trace`] puts them back; an explicit `"value": null` (not
/// evaluated) stays.
#[derive(Serialize)]
struct TriggerOut<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    value: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fired: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

fn is_false(v: &Option<bool>) -> bool {
    *v == Some(false)
}

#[derive(Serialize)]
struct CriterionOut<'a> {
    name: &'a str,
    met: Option<bool>,
}

/// The decision trace as stored: the segment, every trigger with its value or why it was
/// skipped, the criteria, the conversation's signals. The policy's hash is in a column of its
/// own and the triggers leave out their defaults; [`full_trace`] gives the API's shape.
#[derive(Serialize)]
pub struct TraceOut<'a> {
    action: &'static str,
    state: &'static str,
    epoch: u64,
    segment: Option<&'a str>,
    trigger: Option<&'a str>,
    reason: Option<&'a str>,
    priority: Option<i64>,
    lead_score: f64,
    triggers: Vec<TriggerOut<'a>>,
    criteria: Vec<CriterionOut<'a>>,
    signals: &'a serde_json::value::RawValue,
}

pub fn trace_out<'a>(
    d: &'a baton_core::decide::Decision,
    signals: &'a serde_json::value::RawValue,
) -> TraceOut<'a> {
    TraceOut {
        action: d.action.as_str(),
        state: d.state.as_str(),
        epoch: d.epoch,
        segment: d.segment.as_deref(),
        trigger: d.trigger.as_deref(),
        reason: d.reason.as_deref(),
        priority: d.priority,
        lead_score: d.lead_score,
        triggers: d
            .triggers
            .iter()
            .map(|t| TriggerOut {
                id: &t.id,
                value: t.value,
                fired: t.fired,
                note: t.note.as_deref(),
            })
            .collect(),
        criteria: d
            .criteria
            .iter()
            .map(|c| CriterionOut {
                name: &c.name,
                met: c.met,
            })
            .collect(),
        signals,
    }
}

/// The trace as a JSON value, in the API's shape.
pub fn trace(d: &baton_core::decide::Decision) -> serde_json::Value {
    full_trace(
        serde_json::to_value(trace_out(d, &signals_json(d))).unwrap_or(serde_json::Value::Null),
        &d.policy_hash,
    )
}

/// A stored trace (see [`TraceOut`]) in the API's shape: with the policy's hash, and every
/// trigger with its `value`, `fired` and `note`. A trace stored in that shape already (before
/// traces were stored compactly) comes out unchanged.
pub fn stored_trace(stored: &str, policy_hash: &str) -> serde_json::Value {
    full_trace(json_or_null(stored), policy_hash)
}

fn full_trace(mut trace: serde_json::Value, policy_hash: &str) -> serde_json::Value {
    let Some(t) = trace.as_object_mut() else {
        return trace;
    };
    t.entry("policy_hash").or_insert_with(|| policy_hash.into());
    if let Some(triggers) = t.get_mut("triggers").and_then(|v| v.as_array_mut()) {
        for trigger in triggers.iter_mut().filter_map(|v| v.as_object_mut()) {
            trigger.entry("value").or_insert(false.into());
            trigger.entry("fired").or_insert(false.into());
            trigger.entry("note").or_insert(serde_json::Value::Null);
        }
    }
    trace
}

/// Serializes what the wire types describe (they hold only strings, numbers and lists, so
/// this cannot fail).
pub fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// The brief (SPEC §5).
pub fn brief(b: &baton_core::brief::Brief) -> serde_json::Value {
    let pairs = |v: &[(String, String)]| {
        v.iter()
            .map(|(k, x)| (k.clone(), serde_json::Value::String(x.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({
        "summary": b.summary,
        "contact": pairs(&b.contact),
        "source": pairs(&b.source),
        "intents": b.intents,
        "topics": b.topics,
        "criteria": b.criteria.iter().map(|c| serde_json::json!({"name": c.name, "status": c.status})).collect::<Vec<_>>(),
        "lead_score": b.lead_score,
        "sentiment": b.sentiment,
        "sentiment_trend": b.sentiment_trend,
        "questions": b.questions,
        "concerns": b.concerns,
        "bot_tried": b.bot_tried,
        "trigger": b.trigger,
        "reason": b.reason,
        "next_action": b.next_action,
        "bridge_message": b.bridge_message,
        "transcript": b.transcript.iter().map(|(r, t)| serde_json::json!({"role": r, "text": t})).collect::<Vec<_>>(),
    })
}

fn json_or_null(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

/// A stored conversation: state, epoch, transcript with each turn's signals, events, the
/// latest conversation signals and lead, the latest brief, decision traces, handoffs.
///
/// A visitor's turn is shown with its own signals: decoded from those stored with it when the
/// engine's detectors wrote them, else detected again here as of the day it came (turns stored
/// before migration 0009, or another `[detectors]` section). Turns stored before 3715847 carry
/// their signals as JSON. What each decision read, turn by turn, is in its trace.
pub fn conversation(c: &baton_store::ConversationRow, engine: &crate::Engine) -> serde_json::Value {
    let last = c
        .decisions
        .last()
        .map(|d| stored_trace(&d.trace, &d.policy_hash));
    // A visitor turn's signals as stored with it, or detected again (as of the day it came).
    let reading = |t: &baton_store::TurnRow| match (&t.signals, t.role.as_str()) {
        (Some(stored), _) => json_or_null(stored),
        (None, "user") => {
            let (signals, _) = engine.stored_turn_signals(t);
            serde_json::to_value(DetectOut::new(&signals)).unwrap_or(serde_json::Value::Null)
        }
        (None, _) => serde_json::Value::Null,
    };
    let lead = last.as_ref().map(|t| {
        serde_json::json!({
            "score": t["lead_score"],
            "criteria": t["criteria"],
            "facts": t["signals"]["lead"],
        })
    });
    serde_json::json!({
        "id": c.id,
        "state": c.state,
        "epoch": c.epoch,
        "contact": json_or_null(&c.contact),
        "account": json_or_null(&c.account),
        "page": c.page,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "transcript": c.turns.iter().map(|t| serde_json::json!({
            "seq": t.seq, "role": t.role, "text": t.text, "at": t.at,
            "signals": reading(t),
        })).collect::<Vec<_>>(),
        "events": c.events.iter().map(|e| serde_json::json!({
            "seq": e.seq, "type": e.kind, "data": json_or_null(&e.data), "at": e.at,
        })).collect::<Vec<_>>(),
        "signals": last.as_ref().map(|t| t["signals"].clone()),
        "lead": lead,
        "brief": c.handoffs.last().map(|h| json_or_null(&h.brief)),
        "handoffs": c.handoffs.iter().map(|h| serde_json::json!({
            "id": h.id, "seq": h.seq, "trigger": h.trigger, "reason": h.reason, "state": h.state, "created_at": h.created_at,
        })).collect::<Vec<_>>(),
        "decisions": c.decisions.iter().map(|d| serde_json::json!({
            "seq": d.seq, "action": d.action, "epoch": d.epoch, "trigger": d.trigger, "reason": d.reason,
            "policy_hash": d.policy_hash, "at": d.at, "trace": stored_trace(&d.trace, &d.policy_hash),
        })).collect::<Vec<_>>(),
    })
}

/// A stored handoff with its brief.
pub fn handoff(h: &baton_store::HandoffRow) -> serde_json::Value {
    serde_json::json!({
        "id": h.id,
        "conversation_id": h.conversation_id,
        "seq": h.seq,
        "trigger": h.trigger,
        "reason": h.reason,
        "priority": h.priority,
        "state": h.state,
        "created_at": h.created_at,
        "brief": json_or_null(&h.brief),
    })
}
