//! The brief (SPEC §5): what a rep reads before taking over, so the visitor never repeats
//! themselves. Extractive: every line comes from the conversation or the signals, no LLM.

use baton_detect::{EntityType, Role, Signals};

use crate::decide::{ConversationView, Decision, NewTurn, authority_label};

/// One criterion's state for the rep.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionLine {
    pub name: String,
    /// `met`, `not_met` or `unknown`.
    pub status: &'static str,
}

/// The context that travels with a handoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Brief {
    /// Five to ten lines a rep can read in ten seconds.
    pub summary: Vec<String>,
    /// Contact fields known (name, email, phone, company, location, time zone), from the bot
    /// and from what the visitor wrote.
    pub contact: Vec<(String, String)>,
    /// Page, source, campaign.
    pub source: Vec<(String, String)>,
    pub intents: Vec<String>,
    pub topics: Vec<String>,
    pub criteria: Vec<CriterionLine>,
    pub lead_score: f64,
    pub sentiment: f64,
    pub sentiment_trend: f64,
    pub questions: Vec<String>,
    pub concerns: Vec<String>,
    pub bot_tried: Vec<String>,
    pub trigger: Option<String>,
    pub reason: Option<String>,
    pub next_action: String,
    pub bridge_message: String,
    /// `(role, text)` of every turn, the new one included.
    pub transcript: Vec<(String, String)>,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::User => "visitor",
        Role::Bot => "bot",
        Role::Human => "rep",
    }
}

fn is_question(text: &str) -> bool {
    let t = text.trim().to_lowercase();
    t.ends_with('?')
        || [
            "how ", "what ", "why ", "when ", "where ", "which ", "who ", "can ", "could ", "do ",
            "does ", "is ", "are ",
        ]
        .iter()
        .any(|w| t.starts_with(w))
}

fn push_unique(v: &mut Vec<(String, String)>, k: &str, val: String) {
    if !val.is_empty() && !v.iter().any(|(key, _)| key == k) {
        v.push((k.to_string(), val));
    }
}

pub(crate) fn build_brief(
    view: &ConversationView,
    turn: &NewTurn,
    explicit: bool,
    sig: &Signals,
    d: &Decision,
) -> Brief {
    let mut transcript: Vec<(String, String)> = view
        .turns
        .iter()
        .map(|t| (role_name(t.role).to_string(), t.text.clone()))
        .collect();
    // An explicit request's note is not part of the conversation.
    if !explicit {
        transcript.push((role_name(turn.role).to_string(), turn.text.clone()));
    }
    let visitor: Vec<&str> = transcript
        .iter()
        .filter(|(r, _)| r == "visitor")
        .map(|(_, t)| t.as_str())
        .collect();

    let mut contact: Vec<(String, String)> = Vec::new();
    for k in ["name", "email", "phone", "company", "location", "time_zone"] {
        if let Some(v) = view.contact.get(k) {
            push_unique(&mut contact, k, v.clone());
        }
    }
    // What the visitor wrote in this turn fills the gaps (earlier turns were briefed then).
    for e in &sig.entities {
        let key = match e.kind {
            EntityType::Email => "email",
            EntityType::Phone => "phone",
            EntityType::Person => "name",
            EntityType::Org => "company",
            EntityType::Location => "location",
            _ => continue,
        };
        push_unique(&mut contact, key, e.value.clone());
    }
    let mut source = Vec::new();
    for (k, v) in [
        ("page", &view.page),
        ("source", &view.source),
        ("campaign", &view.campaign),
    ] {
        if let Some(v) = v {
            push_unique(&mut source, k, v.clone());
        }
    }

    let questions: Vec<String> = visitor
        .iter()
        .filter(|t| is_question(t))
        .map(|t| t.to_string())
        .collect();
    let mut concerns: Vec<String> = Vec::new();
    for e in &sig.evidence {
        if matches!(e.signal, "frustration" | "confusion" | "topic" | "loop")
            && !concerns.contains(&e.text)
            && !e.text.is_empty()
        {
            concerns.push(e.text.clone());
        }
    }
    concerns.truncate(8);
    let bot_turns: Vec<&str> = transcript
        .iter()
        .filter(|(r, _)| r == "bot")
        .map(|(_, t)| t.as_str())
        .collect();
    let mut bot_tried: Vec<String> = bot_turns
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|t| t.to_string())
        .collect();
    if sig.conversation.bot_fallbacks > 0 {
        bot_tried.push(format!(
            "{} fallback answer(s), {} in a row at the end",
            sig.conversation.bot_fallbacks, sig.conversation.bot_fallbacks_in_row
        ));
    }

    let criteria: Vec<CriterionLine> = d
        .criteria
        .iter()
        .map(|c| CriterionLine {
            name: c.name.clone(),
            status: match c.met {
                Some(true) => "met",
                Some(false) => "not_met",
                None => "unknown",
            },
        })
        .collect();

    let subject = sig
        .topics
        .first()
        .or(sig.intents.first())
        .map(|s| s.replace('_', " "))
        .unwrap_or_else(|| "your question".into());
    let next_action = if sig.frustration || sig.human_request {
        "Acknowledge the wait, take over at once, and answer the last question directly."
            .to_string()
    } else if !sig.topics.is_empty() {
        format!("Handle the {subject} matter; verify identity before discussing account details.")
    } else if sig.intents.iter().any(|i| {
        matches!(
            *i,
            "demo_request" | "pricing" | "purchase_intent" | "contact_sales"
        )
    }) {
        "Qualify quickly, then offer a demo or a pricing walkthrough.".to_string()
    } else {
        "Answer the visitor's last question; the bot could not.".to_string()
    };
    let name = contact
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone());
    let bridge_message = match &name {
        Some(n) => format!("Hi {n}, I've read our chat and can take it from here on {subject}."),
        None => format!("Hi, I've read our chat and can take it from here on {subject}."),
    };

    let q = &sig.qualification;
    let mut summary = Vec::new();
    if let Some(first) = visitor.first() {
        summary.push(format!("Visitor opened with: \"{}\"", clip(first, 140)));
    }
    if visitor.len() > 1
        && let Some(last) = visitor.last()
    {
        summary.push(format!("Last said: \"{}\"", clip(last, 140)));
    }
    if !sig.intents.is_empty() || !sig.topics.is_empty() {
        let mut all: Vec<&str> = sig.intents.clone();
        all.extend(&sig.topics);
        summary.push(format!("About: {}", all.join(", ").replace('_', " ")));
    }
    let mut facts = Vec::new();
    if let Some(b) = &q.budget {
        facts.push(format!(
            "budget {}{}{}",
            b.amount,
            b.currency.map(|c| format!(" {c}")).unwrap_or_default(),
            b.period.map(|p| format!("/{p}")).unwrap_or_default()
        ));
    }
    if let Some(t) = &q.timeline {
        facts.push(format!("timeline {} days", t.days));
    }
    if q.authority != baton_detect::Authority::Unknown {
        facts.push(authority_label(q.authority).to_string());
    }
    if let Some(c) = &q.company_size {
        facts.push(format!("{} employees", c.employees));
    }
    if !facts.is_empty() {
        summary.push(format!(
            "Lead: {} (score {:.0})",
            facts.join(", "),
            d.lead_score
        ));
    }
    let mood = if sig.frustration {
        "frustrated"
    } else if sig.confusion {
        "confused"
    } else if sig.sentiment > 0.3 {
        "positive"
    } else {
        "neutral"
    };
    summary.push(format!(
        "Mood: {mood} (sentiment {:.2}, trend {:+.2})",
        sig.sentiment, sig.conversation.sentiment_trend
    ));
    if sig.conversation.bot_fallbacks > 0 || sig.looping {
        summary.push(format!(
            "The bot struggled: {} fallback(s){}",
            sig.conversation.bot_fallbacks,
            if sig.looping {
                ", the conversation looped"
            } else {
                ""
            }
        ));
    }
    if let Some(r) = &d.reason {
        summary.push(format!(
            "Handed over because: {} (trigger {})",
            r.replace('_', " "),
            d.trigger.as_deref().unwrap_or("-")
        ));
    }
    summary.push(format!("Next: {next_action}"));

    Brief {
        summary,
        contact,
        source,
        intents: sig.intents.iter().map(|s| s.to_string()).collect(),
        topics: sig.topics.iter().map(|s| s.to_string()).collect(),
        criteria,
        lead_score: d.lead_score,
        sentiment: sig.sentiment,
        sentiment_trend: sig.conversation.sentiment_trend,
        questions,
        concerns,
        bot_tried,
        trigger: d.trigger.clone(),
        reason: d.reason.clone(),
        next_action,
        bridge_message,
        transcript,
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}
