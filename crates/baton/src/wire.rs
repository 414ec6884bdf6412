//! The JSON shape of `baton detect` output (SPEC §11), borrowed from the detector's types.

use baton_detect::{Authority, Entity, Evidence, Signals};
use serde::Serialize;

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
