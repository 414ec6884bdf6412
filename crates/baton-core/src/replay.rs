//! Whole recorded conversations run turn by turn through a policy, as the live service would
//! run them: what `POST /v1/policy/simulate` and `baton replay` share.
//!
//! Each turn is decided on the conversation so far; the decision's new owner and epoch carry
//! to the next turn, fired triggers start their cooldowns, and a bot turn while a human owns
//! the conversation is refused (recorded as a conflict, left out of the transcript), exactly
//! as the API refuses it.

use jiff::{SignedDuration, Timestamp};

use baton_detect::{Detector, Role};

use crate::decide::{BotMeta, ConversationView, DecideError, Decision, NewTurn, PastTurn, decide};
use crate::policy::Policy;

/// One recorded turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptTurn {
    pub role: Role,
    pub text: String,
    pub bot: Option<BotMeta>,
    /// When it happened; default: [`TURN_GAP`] after the previous turn.
    pub at: Option<Timestamp>,
}

/// A recorded conversation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    pub turns: Vec<ScriptTurn>,
    /// The view before the first turn (contact, account, page, events already applied).
    pub start: ConversationView,
}

/// The time between turns that carry no time of their own.
pub const TURN_GAP: SignedDuration = SignedDuration::from_secs(30);

/// What happened to one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The turn's position in the transcript.
    pub index: usize,
    pub at: Timestamp,
    pub decision: Result<Decision, DecideError>,
}

impl Step {
    /// `handoff`, `schedule` or `follow_up` with a new owner: the moment a human was brought in.
    pub fn hands_over(&self) -> bool {
        self.decision.as_ref().is_ok_and(|d| d.brief.is_some())
    }
}

/// Runs every turn of `t`; the first happens at `first_at` unless it carries its own time.
pub fn run(policy: &Policy, detector: &Detector, t: &Transcript, first_at: Timestamp) -> Vec<Step> {
    let mut view = t.start.clone();
    let mut at = first_at;
    let mut steps = Vec::with_capacity(t.turns.len());
    for (index, turn) in t.turns.iter().enumerate() {
        at = match turn.at {
            Some(when) => when,
            None if index == 0 => first_at,
            None => at.checked_add(TURN_GAP).unwrap_or(at),
        };
        let new = NewTurn {
            role: turn.role,
            text: turn.text.clone(),
            epoch: None,
            bot: turn.bot.clone(),
        };
        let decision = decide(policy, detector, &view, &new, at);
        if let Ok(d) = &decision {
            if let Some(c) = turn.bot.as_ref().and_then(|b| b.confidence) {
                view.bot_confidence = Some(c);
            }
            let past = PastTurn {
                role: turn.role,
                text: turn.text.clone(),
                at,
                signals: d.turn_signals.clone(),
            };
            view.record(d, Some(past), at);
        }
        steps.push(Step {
            index,
            at,
            decision,
        });
    }
    steps
}

/// The role names transcripts use: `user`, `visitor`, `customer`... for the visitor, `bot` for
/// the bot, and the names of [`Role::parse`].
pub fn role_of(name: &str) -> Role {
    Role::parse(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version = 1
[[trigger]]
id = "asked"
when = "signals.human_request"
reason = "asked"
priority = 10
action = "handoff"
"#;

    fn turn(role: Role, text: &str) -> ScriptTurn {
        ScriptTurn {
            role,
            text: text.into(),
            bot: None,
            at: None,
        }
    }

    #[test]
    fn a_handoff_carries_to_later_turns() {
        let policy = Policy::load("p.toml", POLICY).expect("policy");
        let detector = Detector::new();
        let t = Transcript {
            turns: vec![
                turn(Role::User, "hello"),
                turn(Role::Bot, "Hi! How can I help?"),
                turn(Role::User, "can I talk to a real person please"),
                turn(Role::Bot, "Sure, one moment"),
                turn(Role::User, "thanks"),
            ],
            start: ConversationView::new(),
        };
        let start: Timestamp = "2026-11-23T15:00:00Z".parse().expect("time");
        let steps = run(&policy, &detector, &t, start);
        let actions: Vec<String> = steps
            .iter()
            .map(|s| match &s.decision {
                Ok(d) => d.action.as_str().to_string(),
                Err(_) => "conflict".to_string(),
            })
            .collect();
        assert_eq!(
            actions,
            ["continue", "continue", "handoff", "conflict", "hold"]
        );
        assert_eq!(steps.iter().filter(|s| s.hands_over()).count(), 1);
        assert_eq!(steps[4].at, start + SignedDuration::from_secs(120));
    }
}
