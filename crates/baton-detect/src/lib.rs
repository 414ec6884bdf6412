//! Baton's detectors: what a good human supervisor would notice in a chat, computed on every
//! visitor message in microseconds, offline and deterministically, each flag with its evidence.
//!
//! ```
//! use baton_detect::Detector;
//! let d = Detector::new();
//! let today = jiff::civil::date(2026, 11, 21);
//! let s = d.message("Can I talk to a real person? I'm the CTO, budget is $50k.", today);
//! assert!(s.human_request);
//! assert_eq!(s.qualification.budget.as_ref().map(|b| b.amount), Some(50_000.0));
//! ```
//!
//! Architecture invariant: this crate is pure. It does no I/O, reads no clock (the caller
//! passes "today"), and keeps no state between calls; a [`Detector`] is built once and shared.

mod affect;
mod classify;
mod dialogue;
pub mod entities;
mod human;
mod qualify;
mod rules;
mod text;
mod typo;

use std::borrow::Cow;

use jiff::civil::Date;

pub use affect::AffectThresholds;
pub use classify::{INTENTS, TOPICS};
pub use entities::{Entity, EntityType};
pub use qualify::{Authority, Budget, CompanySize, Qualification, Timeline};
pub use rules::Evidence;
pub use text::slice_chars;

use rules::RuleSet;
use text::Normalized;

/// A turn's text as the detectors read it (normalised, with the way back to the original).
/// Opaque; [`Detector::message`] and [`Detector::read`] make one.
#[derive(Debug, Clone)]
pub struct Reading(std::sync::Arc<Normalized>);

impl PartialEq for Reading {
    fn eq(&self, other: &Reading) -> bool {
        self.0.norm == other.0.norm
    }
}

/// Who wrote a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The visitor.
    User,
    /// The chatbot.
    Bot,
    /// A human rep.
    Human,
}

impl Role {
    /// Reads the role names transcripts commonly use. The visitor is `user`, `customer`,
    /// `visitor`, `client`, `caller` or `human` (as chat logs name the person talking to a
    /// model); a human rep is `rep`, `operator`, `staff`, `human_agent` or `live_agent`; every
    /// other name (`bot`, `assistant`, `system`, `agent`, `model`, ...) is the bot's side.
    pub fn parse(s: &str) -> Role {
        match s.trim().to_ascii_lowercase().as_str() {
            "user" | "customer" | "visitor" | "client" | "caller" | "human" | "usr" | "guest"
            | "prospect" | "lead" => Role::User,
            "rep" | "operator" | "staff" | "human_agent" | "live_agent" | "representative" => {
                Role::Human
            }
            _ => Role::Bot,
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, Copy)]
pub struct Turn<'a> {
    pub role: Role,
    pub text: &'a str,
}

/// Counters over the turns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationSignals {
    /// Visitor turns so far.
    pub user_turns: usize,
    /// Bot turns that were fallbacks ("Sorry, I didn't understand"), counted back from the end.
    pub bot_fallbacks_in_row: usize,
    /// Bot fallbacks in the whole conversation.
    pub bot_fallbacks: usize,
    /// Visitor questions the bot met with a fallback or never answered.
    pub unanswered_questions: usize,
    /// Visitor turns that repeat or rephrase an earlier one.
    pub repeated_questions: usize,
    /// Visitor turns that correct the bot.
    pub corrections: usize,
    /// Sentiment of the last visitor turn minus the mean of the earlier ones (0 with one turn).
    pub sentiment_trend: f64,
}

/// Every signal of SPEC §3 that text can give, with its evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    pub human_request: bool,
    pub frustration: bool,
    pub confusion: bool,
    /// The conversation goes round in circles (`loop` on the wire).
    pub looping: bool,
    /// From -1 (very negative) to 1.
    pub sentiment: f64,
    /// The frustration score behind the flag (the flag is raised at the threshold).
    pub frustration_score: f64,
    pub intents: Vec<&'static str>,
    pub topics: Vec<&'static str>,
    pub entities: Vec<Entity>,
    pub qualification: Qualification,
    pub conversation: ConversationSignals,
    pub evidence: Vec<Evidence>,
    /// The message's normalised text, kept so that reading the conversation on later turns
    /// does not normalise it again ([`Detector::conversation_cached`]).
    pub reading: Option<Reading>,
}

/// Extra phrases per signal and thresholds: the policy's `[detectors]` section.
#[derive(Debug, Clone, Default)]
pub struct DetectorConfig {
    pub thresholds: AffectThresholds,
    /// `(signal, phrase)`: signal is `human_request`, `frustration`, `confusion`, an intent or a
    /// topic name. Phrases match whole words, case- and apostrophe-insensitively.
    pub extra_phrases: Vec<(String, String)>,
}

/// An error in a [`DetectorConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The detectors, compiled once.
#[derive(Debug)]
pub struct Detector {
    human: RuleSet,
    affect: affect::AffectDetector,
    classes: RuleSet,
    authority: RuleSet,
    corrections: RuleSet,
    fallbacks: RuleSet,
    extra: Option<(RuleSet, Vec<&'static str>)>,
    thresholds: AffectThresholds,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

/// How much of one message the detectors read.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// Visitor turns read back for a loop.
const LOOP_WINDOW: usize = 4;
/// Similarity at which two visitor turns ask the same thing.
const REPEAT_SIMILARITY: f64 = 0.5;

impl Detector {
    /// The detectors with default thresholds and phrases.
    pub fn new() -> Detector {
        Detector {
            human: human::rules(),
            affect: affect::AffectDetector::new(),
            classes: classify::rules(),
            authority: qualify::authority_rules(),
            corrections: dialogue::correction_rules(),
            fallbacks: dialogue::fallback_rules(),
            extra: None,
            thresholds: AffectThresholds::default(),
        }
    }

    /// The detectors with a policy's thresholds and extra phrases.
    pub fn with_config(config: &DetectorConfig) -> Result<Detector, ConfigError> {
        let mut d = Detector::new();
        d.thresholds = config.thresholds;
        if !config.extra_phrases.is_empty() {
            let mut rules = Vec::new();
            let mut labels = Vec::new();
            for (signal, phrase) in &config.extra_phrases {
                let label: &'static str = ["human_request", "frustration", "confusion"]
                    .iter()
                    .chain(INTENTS)
                    .chain(TOPICS)
                    .copied()
                    .find(|s| s == signal)
                    .ok_or_else(|| {
                        ConfigError(format!("unknown signal {signal:?} for phrase {phrase:?}"))
                    })?;
                let norm = Normalized::new(phrase).norm;
                if !norm.chars().any(char::is_alphanumeric) {
                    return Err(ConfigError(format!(
                        "phrase {phrase:?} for {signal} has no words"
                    )));
                }
                rules.push(("custom/phrase", format!(r"\b{}\b", regex::escape(&norm))));
                labels.push(label);
            }
            d.extra = Some((RuleSet::new(&rules), labels));
        }
        Ok(d)
    }

    /// Signals of one visitor message; `today` anchors relative dates ("next quarter").
    ///
    /// A message longer than [`MAX_MESSAGE_BYTES`] is read up to that point (a paste, not a
    /// chat turn); spans still index the original text.
    pub fn message(&self, text: &str, today: Date) -> Signals {
        let whole = text.len();
        let text = &text[..text::floor_boundary(text, MAX_MESSAGE_BYTES)];
        let n = Normalized::new(text);
        let mut s = Signals::default();

        let human = human::detect(&self.human, &n, text);
        s.human_request = !human.is_empty();
        s.evidence.extend(human);

        let a = self.affect.detect(&n, text, &self.thresholds);
        s.frustration = a.frustration;
        s.confusion = a.confusion;
        s.sentiment = a.sentiment;
        s.frustration_score = a.frustration_score;
        s.evidence.extend(a.evidence);

        let c = classify::detect(&self.classes, &n, text);
        s.intents = c.intents;
        s.topics = c.topics;
        s.evidence.extend(c.evidence);

        let corrections = self.corrections.hits(&n.norm);
        if !corrections.is_empty() {
            s.looping = true;
            s.conversation.corrections = 1;
            s.evidence.extend(
                corrections
                    .iter()
                    .map(|h| h.evidence(&n, text, "loop", None)),
            );
        }

        if let Some((rules, labels)) = &self.extra {
            for h in rules.hits(&n.norm) {
                let label = labels[h.index];
                match label {
                    "human_request" => s.human_request = true,
                    "frustration" => s.frustration = true,
                    "confusion" => s.confusion = true,
                    l if INTENTS.contains(&l) => push_unique(&mut s.intents, l),
                    l => push_unique(&mut s.topics, l),
                }
                s.evidence
                    .push(h.evidence(&n, text, signal_of(label), Some(label)));
            }
        }

        s.entities = entities::extract(text);
        s.qualification = Qualification {
            budget: qualify::budget(text, &s.entities),
            timeline: qualify::timeline(text, &s.entities, today),
            company_size: qualify::company_size(&s.entities),
            ..Qualification::default()
        };
        let (authority, evidence) = qualify::authority(&self.authority, &n, text);
        s.qualification.authority = authority;
        s.qualification.authority_evidence = evidence;
        s.conversation.user_turns = 1;
        // Kept only when it is the whole message, as the conversation reading needs it.
        if text.len() == whole {
            s.reading = Some(Reading(std::sync::Arc::new(n)));
        }
        s
    }

    /// A turn's text as the conversation reading needs it: for a bot turn, whose signals are
    /// not computed, to keep with it like a visitor turn's [`Signals::reading`].
    pub fn read(&self, text: &str) -> Reading {
        Reading(std::sync::Arc::new(Normalized::new(text)))
    }

    /// Signals of a conversation as of its last visitor turn.
    pub fn conversation(&self, turns: &[Turn<'_>], today: Date) -> Signals {
        self.conversation_cached(turns, &[], today)
    }

    /// [`Detector::conversation_cached`] for a conversation whose earlier part was already
    /// answered by a person (a handoff, a schedule, a follow-up): the flags (human request,
    /// frustration, confusion, loops), intents, topics and the bot's behaviour are read from
    /// `turns[since..]` only, so that a request honoured once is not honoured again, while the
    /// facts the visitor stated (budget, timeline, authority, company size) stay known from the
    /// whole conversation. Evidence keeps its index in the whole conversation.
    pub fn conversation_since(
        &self,
        turns: &[Turn<'_>],
        cached: &[Option<&Signals>],
        today: Date,
        since: usize,
    ) -> Signals {
        if since == 0 {
            return self.conversation_cached(turns, cached, today);
        }
        let since = since.min(turns.len());
        let recent_cached = cached.get(since..).unwrap_or(&[]);
        let mut s = self.conversation_cached(&turns[since..], recent_cached, today);
        for e in &mut s.evidence {
            e.turn += since;
        }
        if let Some(e) = &mut s.qualification.authority_evidence {
            e.turn += since;
        }
        // Earlier facts, each from the latest visitor turn that gave it: only the turns'
        // own signals are read, not the whole conversation again.
        let q = &mut s.qualification;
        for (i, t) in turns[..since].iter().enumerate().rev() {
            if q.budget.is_some()
                && q.timeline.is_some()
                && q.company_size.is_some()
                && q.authority != Authority::Unknown
            {
                break;
            }
            if t.role != Role::User {
                continue;
            }
            let own;
            let sig = match cached.get(i).copied().flatten() {
                Some(c) => c,
                None => {
                    own = self.message(t.text, today);
                    &own
                }
            };
            let f = &sig.qualification;
            if q.budget.is_none() {
                q.budget.clone_from(&f.budget);
            }
            if q.timeline.is_none() {
                q.timeline.clone_from(&f.timeline);
            }
            if q.company_size.is_none() {
                q.company_size.clone_from(&f.company_size);
            }
            if q.authority == Authority::Unknown && f.authority != Authority::Unknown {
                q.authority = f.authority;
                q.authority_evidence = f.authority_evidence.clone().map(|mut e| {
                    e.turn = i;
                    e
                });
            }
        }
        s
    }

    /// [`Detector::conversation`], reusing the message signals already computed for earlier
    /// turns: `cached[i]`, when present, is what [`Detector::message`] returned for `turns[i]`
    /// (a service computes each turn's signals once, when it arrives, and stores them).
    pub fn conversation_cached(
        &self,
        turns: &[Turn<'_>],
        cached: &[Option<&Signals>],
        today: Date,
    ) -> Signals {
        let Some(last_user) = turns.iter().rposition(|t| t.role == Role::User) else {
            // No visitor turn: only the bot's behaviour can be read.
            let mut s = Signals::default();
            let norms = readings(turns, cached);
            self.read_bot_turns(turns, &norms, &mut s);
            return s;
        };
        // Every turn is normalised once, for the loop and the bot readings alike.
        let turns = &turns[..=last_user];
        let norms = readings(turns, cached);
        let mut per_turn: Vec<(usize, Cow<'_, Signals>, &Normalized)> = Vec::new();
        for (i, t) in turns.iter().enumerate() {
            if t.role == Role::User {
                let sig = match cached.get(i).copied().flatten() {
                    Some(c) => Cow::Borrowed(c),
                    None => Cow::Owned(self.message(t.text, today)),
                };
                per_turn.push((i, sig, &norms[i]));
            }
        }
        let Some((last_i, last, _)) = per_turn.last() else {
            return Signals::default();
        };
        let last_i = *last_i;
        let mut s = Signals {
            evidence: Vec::new(),
            ..(**last).clone()
        };
        let recent = &per_turn[per_turn.len().saturating_sub(3)..];
        s.frustration = recent.iter().any(|(_, t, _)| t.frustration);
        s.confusion = per_turn[per_turn.len().saturating_sub(2)..]
            .iter()
            .any(|(_, t, _)| t.confusion);
        s.human_request = per_turn.iter().any(|(_, t, _)| t.human_request);
        let flag = |e: &&Evidence| {
            matches!(
                e.signal,
                "human_request" | "frustration" | "confusion" | "loop"
            )
        };
        let at_turn = |i: usize| {
            move |e: &Evidence| Evidence {
                turn: i,
                ..e.clone()
            }
        };
        for (i, t, _) in &per_turn {
            s.evidence
                .extend(t.evidence.iter().filter(flag).map(at_turn(*i)));
        }
        s.evidence.extend(
            last.evidence
                .iter()
                .filter(|e| !flag(e))
                .map(at_turn(last_i)),
        );
        // Facts stated earlier stay known: take each from the latest turn that gave it.
        for (_, t, _) in per_turn.iter().rev() {
            let q = &t.qualification;
            if s.qualification.budget.is_none() {
                s.qualification.budget.clone_from(&q.budget);
            }
            if s.qualification.timeline.is_none() {
                s.qualification.timeline.clone_from(&q.timeline);
            }
            if s.qualification.company_size.is_none() {
                s.qualification.company_size.clone_from(&q.company_size);
            }
            if s.qualification.authority == Authority::Unknown {
                s.qualification.authority = q.authority;
                s.qualification
                    .authority_evidence
                    .clone_from(&q.authority_evidence);
            }
            for i in &t.intents {
                push_unique(&mut s.intents, i);
            }
        }

        // Loops: the visitor repeats or rephrases a recent question, or corrects the bot.
        let mut repeated = 0;
        for (k, (ti, _, n)) in per_turn.iter().enumerate() {
            let start = k.saturating_sub(LOOP_WINDOW);
            if let Some((_, _, _)) = per_turn[start..k]
                .iter()
                .find(|(_, _, prev)| dialogue::similarity(prev, n) >= REPEAT_SIMILARITY)
            {
                repeated += 1;
                if k + 3 >= per_turn.len() {
                    s.looping = true;
                    let text = turns[*ti].text;
                    let span = 0..text.chars().count();
                    s.evidence.push(Evidence {
                        signal: "loop",
                        label: None,
                        text: text.to_string(),
                        span,
                        rule: Cow::Borrowed("loop/repeated_question"),
                        turn: *ti,
                    });
                }
            }
        }
        s.conversation.repeated_questions = repeated;
        s.conversation.corrections = per_turn
            .iter()
            .filter(|(_, t, _)| t.conversation.corrections > 0)
            .count();
        s.looping |= per_turn[per_turn.len().saturating_sub(2)..]
            .iter()
            .any(|(_, t, _)| t.looping);
        s.conversation.user_turns = per_turn.len();

        self.read_bot_turns(turns, &norms, &mut s);

        let sentiments: Vec<f64> = per_turn.iter().map(|(_, t, _)| t.sentiment).collect();
        let last_sent = sentiments[sentiments.len() - 1];
        if sentiments.len() > 1 {
            let earlier = &sentiments[..sentiments.len() - 1];
            s.conversation.sentiment_trend =
                last_sent - earlier.iter().sum::<f64>() / earlier.len() as f64;
        }
        let recent_min = sentiments[sentiments.len().saturating_sub(3)..]
            .iter()
            .copied()
            .fold(1.0, f64::min);
        let penalty = if s.looping { 0.15 } else { 0.0 }
            + 0.1 * s.conversation.bot_fallbacks_in_row.min(3) as f64;
        s.sentiment = (0.6 * last_sent + 0.4 * recent_min - penalty).clamp(-1.0, 1.0);
        s
    }

    /// Bot fallbacks, the bot repeating itself, and questions left unanswered.
    fn read_bot_turns(&self, turns: &[Turn<'_>], norms: &[Cow<'_, Normalized>], s: &mut Signals) {
        let mut in_row = 0;
        let mut total = 0;
        let mut unanswered = 0;
        let mut open_question = false;
        let mut prev_bot: Option<&Normalized> = None;
        let mut bot_repeats = false;
        for (i, t) in turns.iter().enumerate() {
            match t.role {
                Role::User => {
                    if open_question {
                        unanswered += 1;
                    }
                    open_question = dialogue::is_question(&norms[i]);
                }
                Role::Bot => {
                    let n = &norms[i];
                    let hits = self.fallbacks.hits(&n.norm);
                    if hits.is_empty() {
                        in_row = 0;
                        open_question = false;
                    } else {
                        in_row += 1;
                        total += 1;
                        for h in &hits {
                            let mut e = h.evidence(n, t.text, "bot_fallback", None);
                            e.turn = i;
                            s.evidence.push(e);
                        }
                    }
                    if let Some(p) = &prev_bot
                        && n.word_count() >= 4
                        && dialogue::similarity(p, n) >= 0.8
                    {
                        bot_repeats = true;
                        s.evidence.push(Evidence {
                            signal: "loop",
                            label: None,
                            text: t.text.to_string(),
                            span: 0..t.text.chars().count(),
                            rule: Cow::Borrowed("loop/bot_repeats_itself"),
                            turn: i,
                        });
                    }
                    prev_bot = Some(n);
                }
                Role::Human => {
                    in_row = 0;
                    open_question = false;
                }
            }
        }
        if open_question && turns.last().is_some_and(|t| t.role == Role::Bot) {
            unanswered += 1;
        }
        s.conversation.bot_fallbacks_in_row = in_row;
        s.conversation.bot_fallbacks = total;
        s.conversation.unanswered_questions = unanswered;
        if total >= 2 || bot_repeats {
            s.looping = true;
        }
    }
}

fn push_unique(v: &mut Vec<&'static str>, x: &'static str) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn signal_of(label: &'static str) -> &'static str {
    if INTENTS.contains(&label) {
        "intent"
    } else if TOPICS.contains(&label) {
        "topic"
    } else {
        label
    }
}

/// Every turn's normalised text: kept with its cached signals, or made now.
fn readings<'a>(turns: &[Turn<'_>], cached: &[Option<&'a Signals>]) -> Vec<Cow<'a, Normalized>> {
    turns
        .iter()
        .enumerate()
        .map(|(i, t)| {
            match cached
                .get(i)
                .copied()
                .flatten()
                .and_then(|s| s.reading.as_ref())
            {
                Some(r) => Cow::Borrowed(&*r.0),
                None => Cow::Owned(Normalized::new(t.text)),
            }
        })
        .collect()
}
