//! decide() with the default policy: its own test cases, the ownership state machine, the
//! trace, cooldowns and the brief.

use std::sync::LazyLock;

use baton_core::check::run_tests;
use baton_core::decide::{
    ConversationView, DecideError, NewTurn, Outcome, PastTurn, State, decide,
};
use baton_core::policy::Policy;
use baton_detect::{Detector, Role};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::load(
        "examples/policy.toml",
        include_str!("../../../examples/policy.toml"),
    )
    .expect("the default policy is valid")
});
static DETECTOR: LazyLock<Detector> = LazyLock::new(Detector::new);

fn monday_afternoon() -> Timestamp {
    "2026-11-23T15:00:00Z".parse().expect("timestamp")
}

fn user(text: &str) -> NewTurn {
    NewTurn {
        role: Role::User,
        text: text.into(),
        epoch: None,
        bot: None,
    }
}

fn bot(text: &str, epoch: Option<u64>) -> NewTurn {
    NewTurn {
        role: Role::Bot,
        text: text.into(),
        epoch,
        bot: None,
    }
}

/// Applies a decision to the view, as the store will.
fn apply(
    view: &mut ConversationView,
    turn: &NewTurn,
    d: &baton_core::decide::Decision,
    at: Timestamp,
) {
    let past = PastTurn {
        role: turn.role,
        text: turn.text.clone(),
        at,
        signals: d.turn_signals.clone(),
    };
    view.record(d, Some(past), at);
}

/// The rep hands the conversation back, as the router does: a new owner, a new epoch.
fn hand_back(view: &mut ConversationView) {
    view.state = State::HandedBack;
    view.epoch += 1;
}

#[test]
fn after_a_hand_back_only_something_new_hands_off_again() {
    let now = monday_afternoon();
    let mut view = ConversationView::new();
    let t = user("Can I talk to a real person please?");
    let d = decide(&POLICY, &DETECTOR, &view, &t, now).expect("decision");
    assert_eq!(d.trigger.as_deref(), Some("explicit_request"));
    apply(&mut view, &t, &d, now);
    let t = user("my invoice shows the wrong amount");
    let d = decide(&POLICY, &DETECTOR, &view, &t, now).expect("decision");
    assert_eq!(d.action, Outcome::Hold);
    apply(&mut view, &t, &d, now);
    hand_back(&mut view);

    // The bot speaks again and the visitor thanks it: the old request is not honoured twice.
    let later = now.checked_add(SignedDuration::from_mins(5)).expect("ts");
    let b = bot("Glad that's sorted. Anything else?", Some(view.epoch));
    let d = decide(&POLICY, &DETECTOR, &view, &b, later).expect("decision");
    assert_eq!(d.action, Outcome::Continue, "{:?}", d.trigger);
    apply(&mut view, &b, &d, later);
    let t = user("no that's all, thanks");
    let d = decide(&POLICY, &DETECTOR, &view, &t, later).expect("decision");
    assert_eq!(d.action, Outcome::Continue, "{:?}", d.trigger);
    assert!(!d.signals.human_request);
    apply(&mut view, &t, &d, later);

    // A new request is.
    let t = user("actually, can I speak with someone again?");
    let d = decide(&POLICY, &DETECTOR, &view, &t, later).expect("decision");
    assert_eq!(
        (d.action, d.trigger.as_deref()),
        (Outcome::Handoff, Some("explicit_request"))
    );
    assert!(d.signals.evidence.iter().all(|e| e.turn >= view.since));
}

#[test]
fn a_lead_qualified_before_a_hand_back_waits_for_something_new() {
    let now = monday_afternoon();
    let mut view = ConversationView::new();
    let t = user("I'm the CTO, we have a budget of $80,000 and need to roll this out next month");
    let d = decide(&POLICY, &DETECTOR, &view, &t, now).expect("decision");
    assert_eq!(d.action, Outcome::Handoff, "{:?}", d.triggers);
    let first = d.trigger.clone();
    apply(&mut view, &t, &d, now);
    hand_back(&mut view);

    let t = user("ok, thank you");
    let d = decide(&POLICY, &DETECTOR, &view, &t, now).expect("decision");
    assert_eq!(d.action, Outcome::Continue, "{:?}", d.triggers);
    let waiting = d
        .triggers
        .iter()
        .find(|e| Some(&e.id) == first.as_ref())
        .expect("the trigger is evaluated");
    assert_eq!(waiting.value, Some(true));
    assert!(!waiting.fired);
    assert!(waiting.note.as_deref().is_some_and(|n| n.contains("new")));
    // The facts stay known to the lead.
    assert!(d.criteria.iter().any(|c| c.met == Some(true)));
}

#[test]
fn the_default_policy_passes_its_own_tests() {
    let failures: Vec<String> = run_tests(&POLICY, &DETECTOR)
        .into_iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {:?} ({})", r.name, r.failures, r.got))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(POLICY.tests.len() >= 10);
}

#[test]
fn after_handoff_the_bot_holds_and_stale_writers_conflict() {
    let now = monday_afternoon();
    let mut view = ConversationView::new();
    view.contact.insert("name".into(), "Alex".into());
    let t = user("I want to talk to a person");
    let d = decide(&POLICY, &DETECTOR, &view, &t, now).expect("decision");
    assert_eq!(d.action, Outcome::Handoff);
    assert_eq!((d.state, d.epoch), (State::Queued, 1));
    assert!(
        d.message.as_deref().is_some_and(|m| m.contains("Alex")),
        "{:?}",
        d.message
    );
    assert_eq!(d.policy_hash, POLICY.hash);
    let brief = d.brief.clone().expect("a handoff carries a brief");
    assert!(
        brief.summary.len() >= 3 && brief.summary.len() <= 10,
        "{:#?}",
        brief.summary
    );
    assert_eq!(
        brief.transcript.last().map(|(_, t)| t.as_str()),
        Some("I want to talk to a person")
    );
    assert!(brief.bridge_message.starts_with("Hi Alex"));
    apply(&mut view, &t, &d, now);

    // The visitor keeps typing: the bot holds and shows the waiting notice.
    let d2 = decide(&POLICY, &DETECTOR, &view, &user("hello? anyone?"), now).expect("decision");
    assert_eq!(d2.action, Outcome::Hold);
    assert_eq!(d2.epoch, 1);
    assert!(d2.message.is_some());

    // The bot tries to speak with the old epoch, or with none: refused, state reported.
    for epoch in [Some(0), None] {
        match decide(
            &POLICY,
            &DETECTOR,
            &view,
            &bot("Can I help with anything else?", epoch),
            now,
        ) {
            Err(DecideError::Conflict { state, epoch, .. }) => {
                assert_eq!((state, epoch), (State::Queued, 1))
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    // A visitor turn naming a wrong epoch is refused too.
    let mut stale = user("still there?");
    stale.epoch = Some(7);
    assert!(matches!(
        decide(&POLICY, &DETECTOR, &view, &stale, now),
        Err(DecideError::Conflict { .. })
    ));
}

#[test]
fn the_trace_records_every_trigger_and_respects_cooldown_and_min_turns() {
    let now = monday_afternoon();
    let view = ConversationView::new();
    let d = decide(
        &POLICY,
        &DETECTOR,
        &view,
        &user("this is useless, get me a human"),
        now,
    )
    .expect("decision");
    assert_eq!(d.triggers.len(), POLICY.triggers.len());
    let fired: Vec<&str> = d.fired();
    assert!(
        fired.contains(&"explicit_request") && fired.contains(&"frustration"),
        "{fired:?}"
    );
    assert_eq!(d.trigger.as_deref(), Some("explicit_request"));
    // bot_failing waits for two visitor turns.
    let bf = d
        .triggers
        .iter()
        .find(|t| t.id == "bot_failing")
        .expect("evaluated");
    assert!(
        bf.note.as_deref().is_some_and(|n| n.contains("min_turns")),
        "{bf:?}"
    );
    assert!(
        d.criteria
            .iter()
            .any(|c| c.name == "budget_ok" && c.met == Some(false))
    );
}

#[test]
fn cooldown_keeps_a_trigger_quiet() {
    let mut policy_text = include_str!("../../../examples/policy.toml").to_string();
    policy_text = policy_text.replace(
        "id = \"explicit_request\"\n",
        "id = \"explicit_request\"\ncooldown = \"10m\"\n",
    );
    let policy = Policy::load("p.toml", &policy_text).expect("valid");
    let now = monday_afternoon();
    let mut view = ConversationView::new();
    view.state = State::HandedBack;
    view.fired.push((
        "explicit_request".into(),
        now - SignedDuration::from_mins(5),
    ));
    let d = decide(&policy, &DETECTOR, &view, &user("agent please"), now).expect("decision");
    let t = d
        .triggers
        .iter()
        .find(|t| t.id == "explicit_request")
        .expect("evaluated");
    assert!(
        t.note
            .as_deref()
            .is_some_and(|n| n.contains("cooling down")),
        "{t:?}"
    );
    assert_ne!(d.trigger.as_deref(), Some("explicit_request"));
    let later = decide(
        &policy,
        &DETECTOR,
        &view,
        &user("agent please"),
        now + SignedDuration::from_mins(6),
    )
    .expect("decision");
    assert_eq!(later.trigger.as_deref(), Some("explicit_request"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the visitor and the bot say, the epoch never goes back, it moves exactly when
    /// the owner changes, and once a human side owns the conversation the bot never gets
    /// `continue` again.
    #[test]
    fn ownership_invariants(script in prop::collection::vec((any::<bool>(), prop::sample::select(vec![
        "hi", "how much is it?", "agent please", "this is useless", "Sorry, I didn't understand that.",
        "we have a budget of $80k, I'm the CEO, need it by next month", "ok", "thanks!", "why was I charged twice",
    ])), 1..12)) {
        let mut view = ConversationView::new();
        let mut at = monday_afternoon();
        for (is_bot, text) in script {
            let turn = if is_bot { bot(text, Some(view.epoch)) } else { user(text) };
            let before = (view.state, view.epoch);
            match decide(&POLICY, &DETECTOR, &view, &turn, at) {
                Ok(d) => {
                    prop_assert!(d.epoch >= before.1);
                    prop_assert_eq!(d.epoch != before.1, d.state != before.0);
                    if before.0.human_side() {
                        prop_assert_eq!(d.action, Outcome::Hold);
                    }
                    apply(&mut view, &turn, &d, at);
                }
                Err(DecideError::Conflict { state, epoch, .. }) => {
                    prop_assert!(is_bot && state.human_side());
                    prop_assert_eq!(epoch, view.epoch);
                }
            }
            at += SignedDuration::from_secs(20);
        }
    }
}

#[test]
fn writing_again_while_a_meeting_is_pending_creates_nothing_new() {
    let saturday_night: Timestamp = "2026-11-22T03:00:00Z".parse().expect("ts");
    let mut view = ConversationView::new();
    let t = user("Could we book a demo for our team?");
    let d = decide(&POLICY, &DETECTOR, &view, &t, saturday_night).expect("decision");
    assert_eq!(
        (d.action, d.state, d.epoch),
        (Outcome::Schedule, State::Scheduled, 1)
    );
    assert!(d.brief.is_some());
    apply(&mut view, &t, &d, saturday_night);
    let again = decide(
        &POLICY,
        &DETECTOR,
        &view,
        &user("can we do the demo on Monday?"),
        saturday_night,
    )
    .expect("decision");
    assert_eq!((again.state, again.epoch), (State::Scheduled, 1));
    assert!(again.brief.is_none(), "a second handoff was created");
}

/// A conversation loaded from the store has no per-turn signals: filling them once
/// (`fill_signals`) gives the same decision as detecting them again at every turn.
#[test]
fn filled_signals_decide_as_detected_ones() {
    let at = monday_afternoon();
    let history = [
        (
            Role::User,
            "hi, we're evaluating tools for our 80-person support team",
        ),
        (Role::Bot, "Great! What would you like to know?"),
        (
            Role::User,
            "how much is the enterprise plan? budget is about $40k a year",
        ),
        (
            Role::Bot,
            "Sorry, I didn't understand that. Could you rephrase?",
        ),
        (Role::User, "how much is the enterprise plan"),
    ];
    let mut bare = ConversationView::new();
    for (i, (role, text)) in history.iter().enumerate() {
        bare.turns.push(PastTurn {
            role: *role,
            text: (*text).into(),
            at: at - SignedDuration::from_mins(10 - i as i64),
            signals: None,
        });
    }
    let mut filled = bare.clone();
    baton_core::decide::fill_signals(&DETECTOR, &mut filled, at);
    assert!(filled.turns.iter().all(|t| t.signals.is_some()));
    for t in [
        user("I still can't find it, this is frustrating"),
        bot("Let me check.", None),
    ] {
        let a = decide(&POLICY, &DETECTOR, &bare, &t, at).expect("decision");
        let b = decide(&POLICY, &DETECTOR, &filled, &t, at).expect("decision");
        assert_eq!(a, b);
    }
}

/// The router fell back to a meeting because nobody could take the conversation live. While
/// live hours stay closed, a trigger that asks for a live handoff tells the visitor again
/// about the meeting and creates no second handoff; once they open, it hands off.
#[test]
fn a_pending_meeting_out_of_live_hours_is_not_handed_off_again() {
    let saturday_night: Timestamp = "2026-11-22T03:00:00Z".parse().expect("ts");
    let mut view = ConversationView::new();
    for text in ["hello", "where do I find my invoices"] {
        view.turns.push(PastTurn {
            role: Role::User,
            text: text.into(),
            at: saturday_night - SignedDuration::from_mins(5),
            signals: None,
        });
    }
    view.state = State::Scheduled;
    view.epoch = 2;
    // The bot is failing (its last answer had low confidence): `bot_failing` hands off.
    view.bot_confidence = Some(0.1);
    let t = user("hmm ok");
    let d = decide(&POLICY, &DETECTOR, &view, &t, saturday_night).expect("decision");
    assert_eq!(
        (d.action, d.state, d.epoch),
        (Outcome::Schedule, State::Scheduled, 2)
    );
    assert!(d.brief.is_none(), "a second handoff was created");
    assert_eq!(d.trigger.as_deref(), Some("bot_failing"));
    let eval = d
        .triggers
        .iter()
        .find(|e| e.id == "bot_failing")
        .expect("evaluated");
    assert!(eval.fired);
    assert!(
        eval.note
            .as_deref()
            .is_some_and(|n| n.contains("no second handoff"))
    );
    assert!(d.message.is_some());

    let d = decide(&POLICY, &DETECTOR, &view, &t, monday_afternoon()).expect("decision");
    assert_eq!(
        (d.action, d.state, d.epoch),
        (Outcome::Handoff, State::Queued, 3)
    );
    assert!(d.brief.is_some());

    // The default policy's own off-hours trigger (a follow-up) while a meeting is pending:
    // the visitor hears of the meeting again, and no follow-up handoff is created beside it.
    view.bot_confidence = None;
    let t = user("can I talk to someone from support please");
    let d = decide(&POLICY, &DETECTOR, &view, &t, saturday_night).expect("decision");
    assert_eq!(
        (d.action, d.state, d.epoch),
        (Outcome::Schedule, State::Scheduled, 2),
        "{:?}",
        d.triggers
    );
    assert!(d.brief.is_none(), "a second handoff was created");
    assert!(d.message.is_some());
}

const SEGMENTED: &str = r#"
version = 1
[qualification]
budget_ok = "lead.budget.amount >= 10000.0"
[[trigger]]
id = "qualified"
when = "lead.criteria.budget_ok"
reason = "qualified"
priority = 10
action = "handoff"
[[trigger]]
id = "pricing"
when = "'pricing' in signals.intents"
reason = "pricing"
priority = 5
action = "handoff"
[[segment]]
id = "enterprise"
when = "account.tier == 'enterprise'"
[segment.qualification]
budget_ok = "lead.budget.amount >= 100000.0"
[[segment.trigger]]
id = "pricing"
enabled = false
[[segment.trigger]]
id = "security_review"
when = "'compliance' in signals.topics"
reason = "security_review"
priority = 50
action = "schedule"
"#;

#[test]
fn a_segment_brings_its_own_criteria_and_triggers() {
    let policy = Policy::load("segmented.toml", SEGMENTED).expect("valid");
    let turn = user("What does it cost? Our budget is $40,000 a year.");
    let mut view = ConversationView::new();
    let d = decide(&policy, &DETECTOR, &view, &turn, monday_afternoon()).expect("decision");
    assert_eq!(
        (d.segment.as_deref(), d.trigger.as_deref()),
        (None, Some("qualified"))
    );

    view.account.insert("tier".into(), "enterprise".into());
    let d = decide(&policy, &DETECTOR, &view, &turn, monday_afternoon()).expect("decision");
    assert_eq!(d.segment.as_deref(), Some("enterprise"));
    assert_eq!(d.action, Outcome::Continue, "{:?}", d.triggers);
    assert_eq!(
        d.triggers.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["security_review", "qualified"],
        "pricing is dropped, the new trigger is added by priority"
    );
    assert_eq!(d.criteria[0].met, Some(false));
    let d = decide(
        &policy,
        &DETECTOR,
        &view,
        &user("we need your SOC 2 report for our compliance review"),
        monday_afternoon(),
    )
    .expect("decision");
    assert_eq!(
        (d.action, d.trigger.as_deref()),
        (Outcome::Schedule, Some("security_review"))
    );
}

#[test]
fn a_bad_segment_is_reported_where_it_is_written() {
    let bad = SEGMENTED
        .replace(
            "[segment.qualification]\nbudget_ok",
            "[segment.qualification]\nbudget_okay",
        )
        .replace("reason = \"security_review\"\n", "");
    let err = Policy::load("segmented.toml", &bad)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("segmented.toml:21:15: segment \"enterprise\": no criterion \"budget_okay\""),
        "{err}"
    );
    assert!(err.contains("trigger \"security_review\" is not in the policy, so it needs `when`, `reason` and `action`"), "{err}");
    let bad = SEGMENTED.replace("account.tier == 'enterprise'", "account.tier == 3");
    let err = Policy::load("segmented.toml", &bad)
        .expect_err("invalid")
        .to_string();
    assert!(err.contains("segmented.toml:19:"), "{err}");
}

#[test]
fn a_topic_or_intent_the_detectors_never_give_is_an_error() {
    let bad = SEGMENTED.replace(
        "'compliance' in signals.topics",
        "'security' in signals.topics",
    );
    let err = Policy::load("segmented.toml", &bad)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains(
            "\"security\" is never among the topics; they are billing, refund, account_security"
        ),
        "{err}"
    );
    let bad = SEGMENTED.replace(
        "'pricing' in signals.intents",
        "'prices' in signals.intents",
    );
    let err = Policy::load("segmented.toml", &bad)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("\"prices\" is never among the intents"),
        "{err}"
    );
    // Routes are checked the same way.
    let routed = format!(
        "{SEGMENTED}\n[[queue]]\nid = \"q\"\n[[route]]\nid = \"r\"\nwhen = \"'legal_stuff' in handoff.topics\"\ntargets = [{{ queue = \"q\" }}]\n"
    );
    let err = Policy::load("segmented.toml", &routed)
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("\"legal_stuff\" is never among the topics"),
        "{err}"
    );
}

/// One condition per part of SPEC §4's context, each true on the view below: the values are
/// read when a condition reads them, so each path is read here at least once, as a field, as
/// an object (`has`) and inside a comprehension.
const EVERY_FIELD: &str = r#"
version = 1
[qualification]
budget_ok = "lead.budget.amount >= 10000.0"
before_qualification = "!has(lead.criteria.budget_ok) && lead.score == 0.0"
[scoring]
both = { when = "lead.criteria.budget_ok && lead.criteria.before_qualification && lead.score == 0.0", points = 10 }
[[trigger]]
id = "signals"
when = "!signals.human_request && !signals.frustration && signals.frustration_score >= 0.0 && !signals.confusion && !signals.loop && signals.sentiment >= -1.0 && signals.sentiment_trend >= -2.0 && signals.bot_fallbacks_in_row == 0 && signals.bot_fallbacks == 0 && signals.bot_confidence == 0.4 && signals.unanswered_questions >= 0 && signals.repeated_questions == 0"
reason = "r"
priority = 1
action = "nurture"
[[trigger]]
id = "lists"
when = "'pricing' in signals.intents && signals.intents.exists(i, i == 'pricing') && size(signals.topics) == 0 && !('billing' in signals.topics)"
reason = "r"
priority = 1
action = "nurture"
[[trigger]]
id = "objects"
when = "has(signals.loop) && has(lead.budget.amount) && has(contact.email) && lead.budget.amount == 40000.0 && has(lead.criteria.before_qualification)"
reason = "r"
priority = 1
action = "nurture"
[[trigger]]
id = "lead"
when = "lead.score == 10.0 && lead.criteria.budget_ok && lead.budget.known && lead.budget.currency == 'USD' && lead.budget.period == 'year' && !lead.timeline.known && lead.timeline.days == -1 && lead.authority == 'unknown' && lead.company_size == 0"
reason = "r"
priority = 1
action = "nurture"
[[trigger]]
id = "contact_account"
when = "contact.email == 'ada@example.com' && contact.name == '' && account.tier == 'pro' && account.custom['region'] == 'eu' && account.custom.tier == 'pro'"
reason = "r"
priority = 1
action = "nurture"
[[trigger]]
id = "conversation"
when = "conversation.turns == 2 && conversation.user_turns == 2 && conversation.duration_seconds == 60 && conversation.page == '/pricing' && '/home' in conversation.pages_viewed && conversation.source == 'ads' && conversation.campaign == '' && conversation.referrer == '' && size(conversation.forms) == 0 && conversation.custom.plan == 'pro'"
reason = "r"
priority = 1
action = "nurture"
[[trigger]]
id = "turn_now"
when = "turn.role == 'user' && turn.text == 'Our budget is $40,000 a year, what does it cost?' && turn.index == 1 && now.unix == 1795446000 && now.iso == '2026-11-23T15:00:00Z'"
reason = "r"
priority = 1
action = "nurture"
[[trigger]]
id = "false"
when = "signals.human_request"
reason = "r"
priority = 1
action = "nurture"
"#;

#[test]
fn every_field_of_the_context_reads_as_documented() {
    let policy = Policy::load("every_field.toml", EVERY_FIELD).expect("valid");
    let now = monday_afternoon();
    let mut view = ConversationView::new();
    view.turns.push(PastTurn {
        role: Role::User,
        text: "hello".into(),
        at: now - SignedDuration::from_secs(60),
        signals: None,
    });
    view.contact
        .insert("email".into(), "ada@example.com".into());
    view.account.insert("tier".into(), "pro".into());
    view.account.insert("region".into(), "eu".into());
    view.page = Some("/pricing".into());
    view.pages_viewed = vec!["/home".into(), "/pricing".into()];
    view.source = Some("ads".into());
    view.custom.insert("plan".into(), "pro".into());
    view.bot_confidence = Some(0.4);
    let turn = user("Our budget is $40,000 a year, what does it cost?");
    let d = decide(&policy, &DETECTOR, &view, &turn, now).expect("decision");
    let values: Vec<(&str, Option<bool>, Option<&str>)> = d
        .triggers
        .iter()
        .map(|t| (t.id.as_str(), t.value, t.note.as_deref()))
        .collect();
    let expected: Vec<(&str, Option<bool>, Option<&str>)> = [
        "signals",
        "lists",
        "objects",
        "lead",
        "contact_account",
        "conversation",
        "turn_now",
    ]
    .into_iter()
    .map(|id| (id, Some(true), None))
    .chain([("false", Some(false), None)])
    .collect();
    assert_eq!(values, expected);
    assert_eq!(d.lead_score, 10.0);
    assert_eq!(
        d.criteria.iter().map(|c| c.met).collect::<Vec<_>>(),
        [Some(true), Some(true)]
    );
}
