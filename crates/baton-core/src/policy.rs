//! The policy file (SPEC §4): TOML, versioned, conditions in CEL.
//!
//! Loading parses the TOML with the position of every value, builds the evaluation schema
//! (including the policy's own qualification criteria and calendars), and checks every
//! expression. All problems are reported together, each with the file, line and column it is
//! at, so an admin fixes a policy in one round.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use crate::expr::{Compiler, Expr, Object, Schema, Type, line_column};
use crate::hours::Calendar;
use crate::routing::{self, Fallback, Routing, Strategy};

/// The policy format this build reads.
pub const VERSION: i64 = 1;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// What a trigger asks for when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Hand the conversation to a human now.
    Handoff,
    /// Offer the visitor a meeting.
    Schedule,
    /// Promise an e-mail follow-up.
    FollowUp,
    /// Keep the visitor with the bot.
    Nurture,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Handoff => "handoff",
            Action::Schedule => "schedule",
            Action::FollowUp => "follow_up",
            Action::Nurture => "nurture",
        }
    }
}

/// A checked trigger.
#[derive(Debug)]
pub struct Trigger {
    pub id: String,
    pub when: Expr,
    pub reason: String,
    /// Higher fires first.
    pub priority: i64,
    pub action: Action,
    /// A trigger that fired stays quiet this long in the same conversation.
    pub cooldown: Option<SignedDuration>,
    /// The trigger is not evaluated before this many visitor turns.
    pub min_turns: u32,
}

/// A checked lead-score component: `points` when `when` holds.
#[derive(Debug)]
pub struct ScoreRule {
    pub name: String,
    pub when: Expr,
    pub points: f64,
}

/// A checked qualification criterion.
#[derive(Debug)]
pub struct Criterion {
    pub name: String,
    pub when: Expr,
}

/// A `[[segment]]`: when `when` holds (first match, file order), its criteria and triggers
/// are used instead of the policy's. Both lists are complete (the policy's, with the
/// segment's overrides applied) so that deciding only picks one.
#[derive(Debug)]
pub struct Segment {
    pub id: String,
    pub when: Expr,
    pub qualification: Vec<Criterion>,
    /// Sorted by priority, highest first.
    pub triggers: Vec<Trigger>,
}

/// A validated policy, ready for `decide()`.
#[derive(Debug)]
pub struct Policy {
    pub version: i64,
    /// SHA-256 of the file's bytes, in hex: stored with each version and recorded on every
    /// decision.
    pub hash: String,
    pub detectors: Detectors,
    pub qualification: Vec<Criterion>,
    pub scoring: Vec<ScoreRule>,
    /// Sorted by priority, highest first; ties keep file order.
    pub triggers: Vec<Trigger>,
    /// In file order; the first whose condition holds applies.
    pub segments: Vec<Segment>,
    pub calendars: Arc<BTreeMap<String, Calendar>>,
    pub messages: BTreeMap<String, String>,
    pub tests: Vec<TestCase>,
    pub compiler: Compiler,
    /// `[routing]`, `[[queue]]` and `[[route]]`.
    pub routing: Arc<Routing>,
    /// Checks and evaluates routing expressions: `rep`, `handoff` and `queue`.
    pub routing_compiler: Compiler,
}

/// A `[[test]]` case: a transcript and the decision expected on its last turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: String,
    /// `(role, text)`; the last one is the turn decided on.
    pub turns: Vec<(String, String)>,
    /// When the last turn happens; default [`DEFAULT_TEST_TIME`].
    pub at: jiff::Timestamp,
    pub contact: BTreeMap<String, String>,
    pub account: BTreeMap<String, String>,
    pub page: Option<String>,
    /// `continue`, `handoff`, `schedule`, `follow_up` or `hold`.
    pub expect_action: String,
    pub expect_trigger: Option<String>,
    pub expect_reason: Option<String>,
    /// Line of the case in the file, for reports.
    pub line: u32,
}

/// A Monday at 15:00 UTC: inside office hours on both sides of the Atlantic.
pub const DEFAULT_TEST_TIME: &str = "2026-11-23T15:00:00Z";

/// The `[detectors]` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detectors {
    pub frustration_threshold: Option<f64>,
    pub vader_floor: Option<f64>,
    /// `(signal, phrase)` pairs.
    pub phrases: Vec<(String, String)>,
}

// ---- the file as written

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Spanned<i64>,
    #[serde(default)]
    detectors: Option<DetectorsFile>,
    #[serde(default)]
    qualification: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    scoring: BTreeMap<String, ScoreFile>,
    #[serde(default)]
    trigger: Vec<TriggerFile>,
    #[serde(default)]
    hours: BTreeMap<String, Spanned<HoursFile>>,
    #[serde(default)]
    messages: BTreeMap<String, String>,
    #[serde(default)]
    segment: Vec<SegmentFile>,
    #[serde(default)]
    routing: Option<RoutingFile>,
    #[serde(default)]
    queue: Vec<QueueFile>,
    #[serde(default)]
    route: Vec<RouteFile>,
    #[serde(default)]
    test: Vec<Spanned<TestFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutingFile {
    hours: Option<Spanned<String>>,
    after_hours: Option<Fallback>,
    unattended: Option<Fallback>,
    away_after: Option<Spanned<String>>,
    missed_offers_away: Option<u32>,
    slot: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFile {
    id: Spanned<String>,
    members: Option<Spanned<String>>,
    #[serde(rename = "match")]
    matches: Option<Spanned<String>>,
    #[serde(default = "round_robin")]
    strategy: Strategy,
    skill: Option<String>,
    accept_timeout: Option<Spanned<String>>,
    sla_accept: Option<Spanned<String>>,
    sla_first_message: Option<Spanned<String>>,
    sla_hours: Option<Spanned<String>>,
}

fn round_robin() -> Strategy {
    Strategy::RoundRobin
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    id: Spanned<String>,
    when: Option<Spanned<String>>,
    targets: Vec<TargetFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    queue: Spanned<String>,
    timeout: Option<Spanned<String>>,
    skip_if: Option<Spanned<String>>,
    priority: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    name: String,
    turns: Vec<TestTurnFile>,
    at: Option<String>,
    #[serde(default)]
    contact: BTreeMap<String, String>,
    #[serde(default)]
    account: BTreeMap<String, String>,
    page: Option<String>,
    expect: ExpectFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestTurnFile {
    role: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    action: String,
    trigger: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorsFile {
    frustration_threshold: Option<f64>,
    vader_floor: Option<f64>,
    #[serde(default)]
    phrases: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreFile {
    when: Spanned<String>,
    points: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerFile {
    id: Spanned<String>,
    when: Spanned<String>,
    reason: String,
    #[serde(default)]
    priority: i64,
    action: Action,
    cooldown: Option<Spanned<String>>,
    #[serde(default)]
    min_turns: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentFile {
    id: Spanned<String>,
    when: Spanned<String>,
    #[serde(default)]
    qualification: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    trigger: Vec<SegmentTriggerFile>,
}

/// A trigger of a segment: an existing id with the fields to change (`enabled = false` drops
/// it), or a new trigger with `when`, `reason` and `action`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentTriggerFile {
    id: Spanned<String>,
    when: Option<Spanned<String>>,
    reason: Option<String>,
    priority: Option<i64>,
    action: Option<Action>,
    cooldown: Option<Spanned<String>>,
    min_turns: Option<u32>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoursFile {
    time_zone: String,
    #[serde(default)]
    weekdays: Vec<String>,
    #[serde(default)]
    monday: Option<Vec<String>>,
    #[serde(default)]
    tuesday: Option<Vec<String>>,
    #[serde(default)]
    wednesday: Option<Vec<String>>,
    #[serde(default)]
    thursday: Option<Vec<String>>,
    #[serde(default)]
    friday: Option<Vec<String>>,
    #[serde(default)]
    saturday: Vec<String>,
    #[serde(default)]
    sunday: Vec<String>,
    #[serde(default)]
    holidays: Vec<String>,
}

/// Parses a duration written as `90s`, `10m`, `2h`, `1d` or `1h30m`.
/// The values `signals.topics`, `signals.intents` (and `handoff.topics`, `handoff.intents`)
/// can hold: what the detectors give.
pub fn vocab() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("topics", baton_detect::TOPICS),
        ("intents", baton_detect::INTENTS),
    ]
}

pub fn parse_duration(s: &str) -> Option<SignedDuration> {
    let mut total = 0i64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        any = true;
    }
    (num.is_empty() && any).then(|| SignedDuration::from_secs(total))
}

/// SHA-256 of a policy's bytes, in hex.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Policy {
    /// Whether the calendar `name` is open at `at`; no calendar (or an unknown one, which
    /// validation refuses) is always open.
    pub fn calendar_open(&self, name: &Option<String>, at: jiff::Timestamp) -> bool {
        name.as_ref()
            .and_then(|n| self.calendars.get(n))
            .is_none_or(|c| c.is_open(at))
    }

    /// The detectors this policy asks for (its `[detectors]` section).
    pub fn detector(&self) -> Result<baton_detect::Detector, String> {
        let mut config = baton_detect::DetectorConfig::default();
        if let Some(t) = self.detectors.frustration_threshold {
            config.thresholds.frustration = t;
        }
        if let Some(f) = self.detectors.vader_floor {
            config.thresholds.vader_floor = f;
        }
        config.extra_phrases = self.detectors.phrases.clone();
        baton_detect::Detector::with_config(&config).map_err(|e| format!("[detectors]: {e}"))
    }
}

/// The documented evaluation context (README "Policy reference").
pub fn base_schema() -> Object {
    let list_str = || Type::List(Box::new(Type::String));
    let signals = Object::new("signals")
        .field(
            "human_request",
            Type::Bool,
            "the visitor asked for a person",
        )
        .field("frustration", Type::Bool, "the visitor is frustrated")
        .field(
            "frustration_score",
            Type::Double,
            "the score behind `frustration`",
        )
        .field(
            "confusion",
            Type::Bool,
            "the visitor says they do not understand",
        )
        .field("loop", Type::Bool, "the conversation goes round in circles")
        .field("sentiment", Type::Double, "-1 (negative) to 1 (positive)")
        .field(
            "sentiment_trend",
            Type::Double,
            "last visitor turn minus the mean of earlier ones",
        )
        .field("intents", list_str(), "sales intents of the conversation")
        .field("topics", list_str(), "sensitive topics of the conversation")
        .field(
            "bot_fallbacks_in_row",
            Type::Int,
            "bot fallbacks at the end of the conversation",
        )
        .field(
            "bot_fallbacks",
            Type::Int,
            "bot fallbacks in the conversation",
        )
        .field(
            "bot_confidence",
            Type::Double,
            "the bot's confidence in its last answer (1 when not reported)",
        )
        .field(
            "unanswered_questions",
            Type::Int,
            "visitor questions the bot did not answer",
        )
        .field(
            "repeated_questions",
            Type::Int,
            "visitor turns repeating an earlier one",
        );
    let budget = Object::new("lead.budget")
        .field("known", Type::Bool, "a budget was stated")
        .field("amount", Type::Double, "the amount (0 when unknown)")
        .field("currency", Type::String, "ISO 4217 code, or \"\"")
        .field("period", Type::String, "month, year, week, quarter or \"\"");
    let timeline = Object::new("lead.timeline")
        .field("known", Type::Bool, "a timeline was stated")
        .field(
            "days",
            Type::Int,
            "days until the decision (-1 when unknown)",
        );
    let lead = Object::new("lead")
        .field("score", Type::Double, "the lead score from [scoring]")
        .field("budget", budget.into_type(), "")
        .field("timeline", timeline.into_type(), "")
        .field(
            "authority",
            Type::String,
            "decision_maker, influencer or unknown",
        )
        .field("company_size", Type::Int, "employees (0 when unknown)");
    let conversation = Object::new("conversation")
        .field("turns", Type::Int, "turns so far")
        .field("user_turns", Type::Int, "visitor turns so far")
        .field("duration_seconds", Type::Int, "time since the first turn")
        .field("page", Type::String, "the page the visitor is on")
        .field("pages_viewed", list_str(), "pages viewed (events)")
        .field("source", Type::String, "traffic source (events)")
        .field("campaign", Type::String, "campaign (events)")
        .field("referrer", Type::String, "referring page or site (events)")
        .field("forms", list_str(), "forms filled, in order (events)")
        .field(
            "custom",
            Type::Map(Box::new(Type::Dyn)),
            "custom signals sent as events, by name (string values)",
        );
    let contact = Object::new("contact")
        .field("name", Type::String, "")
        .field("email", Type::String, "")
        .field("phone", Type::String, "")
        .field("company", Type::String, "")
        .field("location", Type::String, "")
        .field("time_zone", Type::String, "");
    let account = Object::new("account")
        .field(
            "tier",
            Type::String,
            "the account's tier, from the bot or the CRM",
        )
        .field(
            "custom",
            Type::Map(Box::new(Type::Dyn)),
            "any other field the bot sends",
        );
    let turn = Object::new("turn")
        .field("role", Type::String, "user or bot")
        .field("text", Type::String, "the new turn's text")
        .field("index", Type::Int, "its position in the conversation");
    let now = Object::new("now")
        .field("unix", Type::Int, "seconds since 1970-01-01 UTC")
        .field("iso", Type::String, "RFC 3339, UTC");
    Object::new("context")
        .field("signals", signals.into_type(), "")
        .field("lead", lead.into_type(), "")
        .field("conversation", conversation.into_type(), "")
        .field("contact", contact.into_type(), "")
        .field("account", account.into_type(), "")
        .field("turn", turn.into_type(), "")
        .field("now", now.into_type(), "")
        .field(
            "hours",
            Object::new("hours").into_type(),
            "calendars: hours.open(\"name\")",
        )
}

struct Loader<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<PolicyError>,
}

/// A checked expression compiled again (for a segment that keeps a trigger or criterion).
fn recompile(l: &mut Loader<'_>, compiler: &Compiler, e: &Expr, what: &str) -> Option<Expr> {
    match compiler.compile(e.source(), Some(&Type::Bool)) {
        Ok(e) => Some(e),
        Err(err) => {
            l.at(0..0, format!("{what}: {err}"));
            None
        }
    }
}

/// The segments with their complete criteria and triggers.
fn segments(
    l: &mut Loader<'_>,
    compiler: &Compiler,
    raw: Vec<SegmentFile>,
    qualification: &[Criterion],
    triggers: &[Trigger],
) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for s in raw {
        let id = s.id.get_ref().clone();
        if id.trim().is_empty() {
            l.at(s.id.span(), "a segment needs a non-empty id".into());
        } else if seen.contains(&id) {
            l.at(s.id.span(), format!("segment id {id:?} is used twice"));
        }
        seen.push(id.clone());
        let when = l.expr(compiler, &format!("segment {id:?}"), &s.when, &Type::Bool);
        for (name, src) in &s.qualification {
            if !qualification.iter().any(|c| &c.name == name) {
                l.at(
                    src.span(),
                    format!(
                        "segment {id:?}: no criterion {name:?} in [qualification] (a segment changes criteria, it does not add them)"
                    ),
                );
            }
        }
        let mut crit = Vec::new();
        for c in qualification {
            let what = format!("segment {id:?} [qualification] {}", c.name);
            let e = match s.qualification.get(&c.name) {
                Some(src) => l.expr(compiler, &what, src, &Type::Bool),
                None => recompile(l, compiler, &c.when, &what),
            };
            if let Some(e) = e {
                crit.push(Criterion {
                    name: c.name.clone(),
                    when: e,
                });
            }
        }
        let mut trig = Vec::new();
        for t in triggers {
            let over = s.trigger.iter().find(|o| o.id.get_ref() == &t.id);
            if over.is_some_and(|o| !o.enabled) {
                continue;
            }
            let what = format!("segment {id:?} trigger {:?}", t.id);
            let when = match over.and_then(|o| o.when.as_ref()) {
                Some(src) => l.expr(compiler, &what, src, &Type::Bool),
                None => recompile(l, compiler, &t.when, &what),
            };
            let cooldown = match over.and_then(|o| o.cooldown.as_ref()) {
                Some(c) => l.cooldown(c),
                None => t.cooldown,
            };
            if let Some(when) = when {
                trig.push(Trigger {
                    id: t.id.clone(),
                    when,
                    reason: over
                        .and_then(|o| o.reason.clone())
                        .unwrap_or_else(|| t.reason.clone()),
                    priority: over.and_then(|o| o.priority).unwrap_or(t.priority),
                    action: over.and_then(|o| o.action).unwrap_or(t.action),
                    cooldown,
                    min_turns: over.and_then(|o| o.min_turns).unwrap_or(t.min_turns),
                });
            }
        }
        for o in &s.trigger {
            let tid = o.id.get_ref();
            if triggers.iter().any(|t| &t.id == tid) {
                continue;
            }
            let (Some(src), Some(reason), Some(action)) = (&o.when, &o.reason, o.action) else {
                l.at(
                    o.id.span(),
                    format!(
                        "segment {id:?}: trigger {tid:?} is not in the policy, so it needs `when`, `reason` and `action`"
                    ),
                );
                continue;
            };
            if !o.enabled {
                continue;
            }
            let cooldown = o.cooldown.as_ref().and_then(|c| l.cooldown(c));
            if let Some(when) = l.expr(
                compiler,
                &format!("segment {id:?} trigger {tid:?}"),
                src,
                &Type::Bool,
            ) {
                trig.push(Trigger {
                    id: tid.clone(),
                    when,
                    reason: reason.clone(),
                    priority: o.priority.unwrap_or(0),
                    action,
                    cooldown,
                    min_turns: o.min_turns.unwrap_or(0),
                });
            }
        }
        trig.sort_by_key(|t| std::cmp::Reverse(t.priority));
        if let Some(when) = when {
            out.push(Segment {
                id,
                when,
                qualification: crit,
                triggers: trig,
            });
        }
    }
    out
}

impl Loader<'_> {
    /// A `cooldown` value, or an error at its position.
    fn cooldown(&mut self, c: &Spanned<String>) -> Option<SignedDuration> {
        let d = parse_duration(c.get_ref());
        if d.is_none() {
            self.at(
                c.span(),
                format!(
                    "cooldown {:?} is not a duration such as \"10m\" or \"1h30m\"",
                    c.get_ref()
                ),
            );
        }
        d
    }

    fn at(&mut self, span: Range<usize>, message: String) {
        let (line, column) = line_column(self.text, span.start);
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            column,
            message,
        });
    }

    /// Checks one expression written as a TOML string; positions point into the file.
    fn expr(
        &mut self,
        compiler: &Compiler,
        what: &str,
        src: &Spanned<String>,
        want: &Type,
    ) -> Option<Expr> {
        match compiler.compile(src.get_ref(), Some(want)) {
            Ok(e) => Some(e),
            Err(e) => {
                let span = src.span();
                // Inside a basic or literal one-line string the expression starts one byte in;
                // map the error's line and column back to the file.
                let raw = &self.text[span.clone()];
                let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
                    3
                } else {
                    1
                };
                let inner_start = span.start + quote;
                let offset = byte_of(src.get_ref(), e.line, e.column);
                let pos = if raw.contains('\\') {
                    span.start
                } else {
                    inner_start + offset
                };
                self.at(pos..pos, format!("{what}: {}", e.message));
                None
            }
        }
    }
}

fn byte_of(s: &str, line: u32, column: u32) -> usize {
    let mut offset = 0;
    for (i, l) in s.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            return offset
                + l.chars()
                    .take(column.saturating_sub(1) as usize)
                    .map(char::len_utf8)
                    .sum::<usize>();
        }
        offset += l.len();
    }
    offset
}

impl Policy {
    /// Loads and checks a policy; `file` names it in error messages.
    pub fn load(file: &str, text: &str) -> Result<Policy, PolicyErrors> {
        let mut l = Loader {
            file,
            text,
            errors: Vec::new(),
        };
        let raw: File = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                l.at(span, e.message().trim().to_string());
                return Err(PolicyErrors(l.errors));
            }
        };
        if *raw.version.get_ref() != VERSION {
            l.at(
                raw.version.span(),
                format!(
                    "version {} is not supported; this Baton reads version {VERSION}",
                    raw.version.get_ref()
                ),
            );
        }

        // Calendars first: expressions may name them.
        let mut calendars = BTreeMap::new();
        for (name, h) in &raw.hours {
            let hf = h.get_ref();
            let weekday =
                |d: &Option<Vec<String>>| d.clone().unwrap_or_else(|| hf.weekdays.clone());
            let week = [
                weekday(&hf.monday),
                weekday(&hf.tuesday),
                weekday(&hf.wednesday),
                weekday(&hf.thursday),
                weekday(&hf.friday),
                hf.saturday.clone(),
                hf.sunday.clone(),
            ];
            let refs: Vec<Vec<&str>> = week
                .iter()
                .map(|d| d.iter().map(String::as_str).collect())
                .collect();
            let days: [&[&str]; 7] = std::array::from_fn(|i| refs[i].as_slice());
            let hol: Vec<&str> = hf.holidays.iter().map(String::as_str).collect();
            match Calendar::new(&hf.time_zone, days, &hol) {
                Ok(c) => {
                    calendars.insert(name.clone(), c);
                }
                Err(e) => l.at(h.span(), format!("[hours.{name}]: {e}")),
            }
        }

        // The criteria become fields of `lead.criteria`, so triggers and scores can use them.
        let mut root = base_schema();
        let mut criteria_obj = Object::new("lead.criteria");
        for name in raw.qualification.keys() {
            criteria_obj = criteria_obj.field(name, Type::Bool, "a [qualification] criterion");
        }
        if let Some((Type::Object(lead), doc)) = root.fields.get("lead").cloned() {
            let lead = (*lead).clone().field(
                "criteria",
                criteria_obj.into_type(),
                "[qualification] criteria",
            );
            root.fields.insert("lead".into(), (lead.into_type(), doc));
        }
        let compiler = Compiler::new(Schema {
            root,
            calendars: calendars.keys().cloned().collect(),
            vocab: vocab(),
        });

        let mut qualification = Vec::new();
        for (name, src) in &raw.qualification {
            if let Some(e) = l.expr(
                &compiler,
                &format!("[qualification] {name}"),
                src,
                &Type::Bool,
            ) {
                qualification.push(Criterion {
                    name: name.clone(),
                    when: e,
                });
            }
        }
        let mut scoring = Vec::new();
        for (name, s) in &raw.scoring {
            if let Some(e) = l.expr(
                &compiler,
                &format!("[scoring] {name}"),
                &s.when,
                &Type::Bool,
            ) {
                scoring.push(ScoreRule {
                    name: name.clone(),
                    when: e,
                    points: s.points,
                });
            }
        }
        let mut triggers = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for t in raw.trigger {
            let id = t.id.get_ref().clone();
            if id.trim().is_empty() {
                l.at(t.id.span(), "a trigger needs a non-empty id".into());
            } else if seen.contains(&id) {
                l.at(t.id.span(), format!("trigger id {id:?} is used twice"));
            }
            seen.push(id.clone());
            let cooldown = t.cooldown.as_ref().and_then(|c| l.cooldown(c));
            if let Some(when) = l.expr(&compiler, &format!("trigger {id:?}"), &t.when, &Type::Bool)
            {
                triggers.push(Trigger {
                    id,
                    when,
                    reason: t.reason,
                    priority: t.priority,
                    action: t.action,
                    cooldown,
                    min_turns: t.min_turns,
                });
            }
        }
        triggers.sort_by_key(|t| std::cmp::Reverse(t.priority));
        let segments = self::segments(&mut l, &compiler, raw.segment, &qualification, &triggers);

        let detectors = raw
            .detectors
            .map(|d| Detectors {
                frustration_threshold: d.frustration_threshold,
                vader_floor: d.vader_floor,
                phrases: d
                    .phrases
                    .into_iter()
                    .flat_map(|(s, ps)| ps.into_iter().map(move |p| (s.clone(), p)))
                    .collect(),
            })
            .unwrap_or_default();
        let mut tests = Vec::new();
        for t in &raw.test {
            let span = t.span();
            let tf = t.get_ref();
            let (line, _) = line_column(text, span.start);
            let at = match &tf.at {
                Some(s) => match s.parse::<jiff::Timestamp>() {
                    Ok(ts) => ts,
                    Err(_) => {
                        l.at(
                            span.clone(),
                            format!("test {:?}: `at` {s:?} is not an RFC 3339 time", tf.name),
                        );
                        continue;
                    }
                },
                None => DEFAULT_TEST_TIME
                    .parse()
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            };
            if !["continue", "handoff", "schedule", "follow_up", "hold"]
                .contains(&tf.expect.action.as_str())
            {
                l.at(span.clone(), format!("test {:?}: expected action {:?} is not continue, handoff, schedule, follow_up or hold", tf.name, tf.expect.action));
            }
            if let Some(id) = &tf.expect.trigger
                && !triggers.iter().any(|t| &t.id == id)
                && !segments
                    .iter()
                    .any(|s| s.triggers.iter().any(|t| &t.id == id))
            {
                l.at(
                    span.clone(),
                    format!("test {:?}: no trigger {id:?} in this policy", tf.name),
                );
            }
            match tf.turns.last() {
                None => l.at(span.clone(), format!("test {:?} has no turns", tf.name)),
                Some(last) if last.role != "user" && last.role != "bot" => l.at(
                    span.clone(),
                    format!(
                        "test {:?}: role {:?} is not user or bot",
                        tf.name, last.role
                    ),
                ),
                _ => {}
            }
            tests.push(TestCase {
                name: tf.name.clone(),
                turns: tf
                    .turns
                    .iter()
                    .map(|t| (t.role.clone(), t.text.clone()))
                    .collect(),
                at,
                contact: tf.contact.clone(),
                account: tf.account.clone(),
                page: tf.page.clone(),
                expect_action: tf.expect.action.clone(),
                expect_trigger: tf.expect.trigger.clone(),
                expect_reason: tf.expect.reason.clone(),
                line,
            });
        }
        let routing_compiler = routing::compiler(&["rep", "handoff", "queue"], &calendars);
        let routing = routing_of(&mut l, &calendars, raw.routing, raw.queue, raw.route);

        if !l.errors.is_empty() {
            return Err(PolicyErrors(l.errors));
        }
        Ok(Policy {
            version: *raw.version.get_ref(),
            hash: content_hash(text.as_bytes()),
            detectors,
            qualification,
            scoring,
            triggers,
            segments,
            calendars: Arc::new(calendars),
            messages: raw.messages,
            tests,
            compiler,
            routing: Arc::new(routing),
            routing_compiler,
        })
    }
}

/// The routing sections, checked: every expression against the names it may use, every
/// duration, every queue a target names, the calendars.
fn routing_of(
    l: &mut Loader<'_>,
    calendars: &BTreeMap<String, Calendar>,
    file: Option<RoutingFile>,
    queues: Vec<QueueFile>,
    routes: Vec<RouteFile>,
) -> Routing {
    let calendar_names: Vec<&str> = calendars.keys().map(String::as_str).collect();
    let members_c = routing::compiler(&["rep"], calendars);
    let match_c = routing::compiler(&["rep", "handoff"], calendars);
    let when_c = routing::compiler(&["handoff"], calendars);
    let skip_c = routing::compiler(&["handoff", "queue"], calendars);
    let mut out = Routing::default();
    let duration = |l: &mut Loader<'_>, what: &str, d: &Spanned<String>| {
        let v = parse_duration(d.get_ref()).filter(|v| v.as_secs() > 0);
        if v.is_none() {
            l.at(
                d.span(),
                format!(
                    "{what} {:?} is not a positive duration such as \"30s\", \"10m\" or \"1h30m\"",
                    d.get_ref()
                ),
            );
        }
        v
    };
    let calendar = |l: &mut Loader<'_>, what: &str, c: &Spanned<String>| {
        if calendar_names.contains(&c.get_ref().as_str()) {
            Some(c.get_ref().clone())
        } else {
            l.at(
                c.span(),
                format!(
                    "{what}: no calendar {:?} in [hours] (known: {})",
                    c.get_ref(),
                    calendar_names.join(", ")
                ),
            );
            None
        }
    };
    if let Some(f) = file {
        out.hours = f
            .hours
            .as_ref()
            .and_then(|h| calendar(l, "[routing] hours", h));
        out.after_hours = f.after_hours.unwrap_or(out.after_hours);
        out.unattended = f.unattended.unwrap_or(out.unattended);
        if let Some(d) = &f.away_after {
            out.away_after = duration(l, "[routing] away_after", d).unwrap_or(out.away_after);
        }
        if let Some(d) = &f.slot {
            out.slot = duration(l, "[routing] slot", d).unwrap_or(out.slot);
        }
        out.missed_offers_away = f.missed_offers_away.unwrap_or(out.missed_offers_away);
    }
    for q in &queues {
        let id = q.id.get_ref().clone();
        if out.queues.iter().any(|o| o.id == id) {
            l.at(q.id.span(), format!("queue {id:?} is defined twice"));
            continue;
        }
        if q.strategy == Strategy::BestSkill && q.skill.is_none() {
            l.at(
                q.id.span(),
                format!("queue {id:?}: strategy best_skill needs `skill`"),
            );
        }
        let members = q
            .members
            .as_ref()
            .and_then(|m| l.expr(&members_c, &format!("queue {id:?} members"), m, &Type::Bool));
        let matches = q
            .matches
            .as_ref()
            .and_then(|m| l.expr(&match_c, &format!("queue {id:?} match"), m, &Type::Bool));
        let accept_timeout = q
            .accept_timeout
            .as_ref()
            .and_then(|d| duration(l, &format!("queue {id:?} accept_timeout"), d))
            .unwrap_or(SignedDuration::from_secs(60));
        out.queues.push(routing::Queue {
            members,
            matches,
            strategy: q.strategy,
            skill: q.skill.clone(),
            accept_timeout,
            sla_accept: q
                .sla_accept
                .as_ref()
                .and_then(|d| duration(l, &format!("queue {id:?} sla_accept"), d)),
            sla_first_message: q
                .sla_first_message
                .as_ref()
                .and_then(|d| duration(l, &format!("queue {id:?} sla_first_message"), d)),
            sla_hours: q
                .sla_hours
                .as_ref()
                .and_then(|c| calendar(l, &format!("queue {id:?} sla_hours"), c)),
            id,
        });
    }
    let mut default_seen: Option<String> = None;
    for r in &routes {
        let id = r.id.get_ref().clone();
        if out.routes.iter().any(|o| o.id == id) {
            l.at(r.id.span(), format!("route {id:?} is defined twice"));
            continue;
        }
        if let Some(d) = &default_seen {
            l.at(
                r.id.span(),
                format!("route {id:?} can never match: route {d:?} before it has no `when` and takes every handoff"),
            );
        }
        if r.targets.is_empty() {
            l.at(r.id.span(), format!("route {id:?} has no targets"));
        }
        let when = r
            .when
            .as_ref()
            .and_then(|w| l.expr(&when_c, &format!("route {id:?} when"), w, &Type::Bool));
        if r.when.is_none() {
            default_seen = Some(id.clone());
        }
        let mut targets = Vec::new();
        for t in &r.targets {
            let Some(queue) = out.queue(t.queue.get_ref()) else {
                l.at(
                    t.queue.span(),
                    format!("route {id:?}: no [[queue]] {:?}", t.queue.get_ref()),
                );
                continue;
            };
            let timeout = t
                .timeout
                .as_ref()
                .and_then(|d| duration(l, &format!("route {id:?} timeout"), d))
                .unwrap_or(SignedDuration::from_mins(5));
            let skip_if = t
                .skip_if
                .as_ref()
                .and_then(|s| l.expr(&skip_c, &format!("route {id:?} skip_if"), s, &Type::Bool));
            targets.push(routing::Target {
                queue,
                timeout,
                skip_if,
                priority: t.priority,
            });
        }
        out.routes.push(routing::Route { id, when, targets });
    }
    if out.routes.is_empty()
        && let Some(q) = queues.first()
    {
        l.at(
            q.id.span(),
            "queues but no [[route]]: no handoff could reach them".into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1

[detectors]
frustration_threshold = 1.2
phrases = { human_request = ["beam me up"] }

[qualification]
budget_ok = "lead.budget.amount >= 10000.0"
decision_maker = "lead.authority == 'decision_maker'"

[scoring]
pricing = { when = "'pricing' in signals.intents", points = 20 }
budget = { when = "lead.criteria.budget_ok", points = 30 }

[[trigger]]
id = "explicit_request"
when = "signals.human_request"
reason = "visitor_asked_for_human"
priority = 100
action = "handoff"

[[trigger]]
id = "after_hours"
when = "signals.human_request && !hours.open('sales')"
reason = "after_hours"
priority = 200
action = "schedule"
cooldown = "1h"

[hours.sales]
time_zone = "America/New_York"
weekdays = ["09:00-12:00", "13:00-17:00"]
holidays = ["2026-12-25"]

[messages]
handoff = "Connecting you with {rep}."
"#;

    #[test]
    fn loads_a_valid_policy() {
        let p = Policy::load("policy.toml", GOOD).expect("valid policy");
        assert_eq!(
            p.triggers.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["after_hours", "explicit_request"]
        );
        assert_eq!(p.triggers[0].cooldown, Some(SignedDuration::from_hours(1)));
        assert_eq!(
            p.detectors.phrases,
            vec![("human_request".to_string(), "beam me up".to_string())]
        );
        assert!(p.calendars.contains_key("sales"));
        assert_eq!(p.hash.len(), 64);
        assert_ne!(
            p.hash,
            Policy::load("policy.toml", &GOOD.replace("points = 20", "points = 25"))
                .expect("valid")
                .hash
        );
    }

    #[test]
    fn reports_every_problem_with_its_position() {
        let bad = GOOD
            .replace(
                "lead.budget.amount >= 10000.0",
                "lead.budget.amout >= 10000.0",
            )
            .replace("!hours.open('sales')", "!hours.open('night')")
            .replace("cooldown = \"1h\"", "cooldown = \"an hour\"");
        let errs = Policy::load("policy.toml", &bad).expect_err("invalid").0;
        assert_eq!(errs.len(), 3, "{errs:?}");
        let field = errs
            .iter()
            .find(|e| e.message.contains("amout"))
            .expect("field error");
        assert_eq!(field.line, 9);
        assert_eq!(
            &bad.lines().nth(8).expect("line 9")[field.column as usize - 1..][..1],
            "."
        );
        assert!(
            errs.iter()
                .any(|e| e.message.contains("no calendar named \"night\""))
        );
        assert!(
            errs.iter()
                .any(|e| e.message.contains("an hour") && e.line == 29)
        );
        assert!(errs.iter().all(|e| e.file == "policy.toml"));
    }

    #[test]
    fn rejects_bad_toml_unknown_keys_versions_and_duplicates() {
        let e = Policy::load("p.toml", "version = 1\n[[trigger]]\nid = \n")
            .expect_err("bad toml")
            .to_string();
        assert!(e.starts_with("p.toml:3:"), "{e}");
        let e = Policy::load("p.toml", "version = 1\nvesion = 2\n")
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("vesion"), "{e}");
        let e = Policy::load("p.toml", "version = 2\n")
            .expect_err("version")
            .to_string();
        assert!(e.contains("version 2 is not supported"), "{e}");
        let dup = "version = 1\n[[trigger]]\nid = \"a\"\nwhen = \"true\"\nreason = \"r\"\naction = \"handoff\"\n[[trigger]]\nid = \"a\"\nwhen = \"true\"\nreason = \"r\"\naction = \"nurture\"\n";
        assert!(
            Policy::load("p.toml", dup)
                .expect_err("dup")
                .to_string()
                .contains("used twice")
        );
        let bad_action = "version = 1\n[[trigger]]\nid = \"a\"\nwhen = \"true\"\nreason = \"r\"\naction = \"escalate\"\n";
        assert!(Policy::load("p.toml", bad_action).is_err());
        let bad_hours = "version = 1\n[hours.x]\ntime_zone = \"Nowhere/City\"\n";
        assert!(
            Policy::load("p.toml", bad_hours)
                .expect_err("tz")
                .to_string()
                .contains("unknown time zone")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(SignedDuration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(SignedDuration::from_mins(90)));
        assert_eq!(parse_duration("2d"), Some(SignedDuration::from_hours(48)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn the_default_policys_conditions_take_the_quicker_way() {
        let text = include_str!("../../../examples/policy.toml");
        let p = Policy::load("policy.toml", text).expect("the default policy loads");
        let mut conditions: Vec<&Expr> = Vec::new();
        conditions.extend(p.qualification.iter().map(|c| &c.when));
        conditions.extend(p.scoring.iter().map(|r| &r.when));
        conditions.extend(p.triggers.iter().map(|t| &t.when));
        for s in &p.segments {
            conditions.push(&s.when);
            conditions.extend(s.qualification.iter().map(|c| &c.when));
            conditions.extend(s.triggers.iter().map(|t| &t.when));
        }
        assert!(conditions.len() > 20);
        for e in conditions {
            assert!(e.is_quick(), "{}", e.source());
        }
    }
}

#[cfg(test)]
mod routing_tests {
    use super::*;

    #[test]
    fn routing_sections_are_checked_with_positions() {
        let text = include_str!("../../../examples/policy.toml");
        let p = Policy::load("policy.toml", text).expect("the default policy loads");
        assert_eq!(p.routing.queues.len(), 5);
        assert_eq!(
            p.routing.routes.last().map(|r| r.id.as_str()),
            Some("default")
        );
        assert_eq!(p.routing.hours.as_deref(), Some("support"));

        let bad = r#"version = 1
[hours.sales]
time_zone = "UTC"
weekdays = ["09:00-17:00"]
[[queue]]
id = "a"
members = "handoff.language == 'en'"
accept_timeout = "soon"
[[route]]
id = "all"
targets = [{ queue = "b" }]
[[route]]
id = "late"
when = "rep.load > 1"
targets = [{ queue = "a", skip_if = "queue.availble == 0" }]
"#;
        let errs = Policy::load("bad.toml", bad).expect_err("rejected").0;
        let got: Vec<String> = errs
            .iter()
            .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
            .collect();
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(
            got[0].starts_with("7:12 queue \"a\" members: unknown name `handoff`"),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("11:22 route \"all\": no [[queue]] \"b\""))
        );
        assert!(
            got.iter()
                .any(|g| g.contains("route \"late\" can never match"))
        );
        assert!(
            got.iter()
                .any(|g| g.contains("`queue` has no field `availble`"))
        );
    }
}
