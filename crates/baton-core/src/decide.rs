//! `decide()`: policy + conversation + new turn + now → what the bot must do, and why.
//!
//! Pure and synchronous: the caller loads the conversation, passes the time, and stores the
//! decision. The ownership state machine of SPEC §2 lives here: once a conversation is handed
//! off, the bot is told `hold`, a bot turn is refused as a conflict, and every change of owner
//! increments the epoch.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use baton_detect::{Authority, Detector, Role, Signals, Turn};
use jiff::Timestamp;

use crate::brief::{Brief, build_brief};
use crate::expr::{Fact, Facts, Lookup, Plain, Strs, Val, val};
use crate::policy::{Action, Policy};

/// Who owns the conversation (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Bot,
    Queued,
    Offered,
    Human,
    Resolved,
    HandedBack,
    Scheduled,
    FollowUp,
    Abandoned,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Bot => "bot",
            State::Queued => "queued",
            State::Offered => "offered",
            State::Human => "human",
            State::Resolved => "resolved",
            State::HandedBack => "handed_back",
            State::Scheduled => "scheduled",
            State::FollowUp => "follow_up",
            State::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "bot" => State::Bot,
            "queued" => State::Queued,
            "offered" => State::Offered,
            "human" => State::Human,
            "resolved" => State::Resolved,
            "handed_back" => State::HandedBack,
            "scheduled" => State::Scheduled,
            "follow_up" => State::FollowUp,
            "abandoned" => State::Abandoned,
            _ => return None,
        })
    }

    /// A human owns the conversation or is about to take it: the bot must stay silent.
    pub fn human_side(self) -> bool {
        matches!(self, State::Queued | State::Offered | State::Human)
    }
}

/// A turn already in the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct PastTurn {
    pub role: Role,
    pub text: String,
    pub at: Timestamp,
    /// The message signals computed when the turn arrived ([`Decision::turn_signals`]);
    /// `None` has them computed again.
    pub signals: Option<Signals>,
}

/// What the bot reports about its own turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotMeta {
    pub confidence: Option<f64>,
    pub intent: Option<String>,
    pub fallback: bool,
}

/// The new turn to decide on.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTurn {
    pub role: Role,
    pub text: String,
    /// The epoch the writer believes current; a stale one is a conflict.
    pub epoch: Option<u64>,
    pub bot: Option<BotMeta>,
}

/// An explicit request for a person, from the bot or the visitor (`POST .../handoff`), decided
/// by [`decide_handoff`].
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffRequest {
    /// Who asked: the visitor ([`Role::User`]) or the bot.
    pub by: Role,
    /// Why, in the caller's words; shown to the rep, never interpreted.
    pub note: Option<String>,
    /// The epoch the caller believes current; a stale one is a conflict.
    pub epoch: Option<u64>,
}

/// Something besides a message that happened in the conversation: SPEC §3's behavioural
/// signals, sent as events. Folded into the view with [`ConversationView::apply`]; events do
/// not decide by themselves, the next turn reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The visitor opened a page; it becomes the current page.
    PageView { page: String },
    /// The visitor filled a form; contact fields among `fields` (name, email, phone, company,
    /// location, time_zone) fill the contact.
    FormFill {
        form: String,
        fields: BTreeMap<String, String>,
    },
    /// Where the visitor came from.
    Attribution {
        source: Option<String>,
        campaign: Option<String>,
        referrer: Option<String>,
    },
    /// A named value of the caller's own (`conversation.custom.NAME`, a string).
    Signal { name: String, value: String },
}

/// The contact fields a form fill or the turn API may set.
pub const CONTACT_FIELDS: [&str; 6] =
    ["name", "email", "phone", "company", "location", "time_zone"];

/// What Baton knows of a conversation before the new turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationView {
    pub state: State,
    pub epoch: u64,
    pub turns: Vec<PastTurn>,
    /// Where the bot's current stint starts: `turns[..since]` were already answered by a
    /// person or a promise of one (a decision that handed off, held, scheduled or followed
    /// up), so requests, frustration and loops are read from `turns[since..]` only, and a
    /// trigger that was already true on the facts known before fires again only on something
    /// new ([`Detector::conversation_since`]). 0 for a conversation the bot never gave away.
    pub since: usize,
    /// When each trigger last fired, for cooldowns.
    pub fired: Vec<(String, Timestamp)>,
    pub contact: HashMap<String, String>,
    pub account: HashMap<String, String>,
    pub page: Option<String>,
    pub pages_viewed: Vec<String>,
    pub source: Option<String>,
    pub campaign: Option<String>,
    pub referrer: Option<String>,
    /// Forms filled, in order.
    pub forms: Vec<String>,
    /// Custom signals sent as events, last value wins.
    pub custom: HashMap<String, String>,
    /// The bot's last reported confidence.
    pub bot_confidence: Option<f64>,
}

impl ConversationView {
    /// A conversation that has not started: the bot owns it at epoch 0.
    pub fn new() -> ConversationView {
        ConversationView {
            state: State::Bot,
            epoch: 0,
            turns: Vec::new(),
            since: 0,
            fired: Vec::new(),
            contact: HashMap::new(),
            account: HashMap::new(),
            page: None,
            pages_viewed: Vec::new(),
            source: None,
            campaign: None,
            referrer: None,
            forms: Vec::new(),
            custom: HashMap::new(),
            bot_confidence: None,
        }
    }

    /// Folds an event into what is known.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::PageView { page } => {
                self.page = Some(page.clone());
                self.pages_viewed.push(page.clone());
            }
            Event::FormFill { form, fields } => {
                self.forms.push(form.clone());
                for k in CONTACT_FIELDS {
                    if let Some(v) = fields.get(k).filter(|v| !v.trim().is_empty()) {
                        self.contact.insert(k.to_string(), v.clone());
                    }
                }
            }
            Event::Attribution {
                source,
                campaign,
                referrer,
            } => {
                for (slot, v) in [
                    (&mut self.source, source),
                    (&mut self.campaign, campaign),
                    (&mut self.referrer, referrer),
                ] {
                    if v.is_some() {
                        slot.clone_from(v);
                    }
                }
            }
            Event::Signal { name, value } => {
                self.custom.insert(name.clone(), value.clone());
            }
        }
    }
}

impl ConversationView {
    /// Takes in a decision made on this view (and the turn it was made on, if any), as a
    /// service's cache or a replay keeps the conversation going without reading it again.
    pub fn record(&mut self, d: &Decision, turn: Option<PastTurn>, at: Timestamp) {
        if let Some(t) = turn {
            self.turns.push(t);
        }
        self.state = d.state;
        self.epoch = d.epoch;
        if let Some(t) = &d.trigger {
            self.fired.push((t.clone(), at));
        }
        if d.action != Outcome::Continue {
            self.since = self.turns.len();
        }
    }
}

impl Default for ConversationView {
    fn default() -> Self {
        ConversationView::new()
    }
}

/// The answer to the bot (SPEC §8 `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Handoff,
    Hold,
    Schedule,
    FollowUp,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Continue => "continue",
            Outcome::Handoff => "handoff",
            Outcome::Hold => "hold",
            Outcome::Schedule => "schedule",
            Outcome::FollowUp => "follow_up",
        }
    }
}

/// One trigger as evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEval {
    pub id: String,
    /// `Some(value)`, or `None` when it was not evaluated (min_turns, cooldown) or failed.
    pub value: Option<bool>,
    /// Why it was skipped or failed, if it was.
    pub note: Option<String>,
    pub fired: bool,
}

/// A qualification criterion as evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionEval {
    pub name: String,
    /// `Some(met)`, or `None` when the facts it reads are unknown.
    pub met: Option<bool>,
}

/// Everything decided about one turn, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Outcome,
    /// The conversation's owner after this turn.
    pub state: State,
    pub epoch: u64,
    /// The `[[segment]]` whose criteria and triggers were used, if one matched.
    pub segment: Option<String>,
    /// The trigger that decided, if any.
    pub trigger: Option<String>,
    pub reason: Option<String>,
    pub priority: Option<i64>,
    /// Every trigger, in the order evaluated (priority, highest first).
    pub triggers: Vec<TriggerEval>,
    pub lead_score: f64,
    pub criteria: Vec<CriterionEval>,
    /// For the visitor, when the bot should show something.
    pub message: Option<String>,
    pub signals: Signals,
    /// The signals of the new turn on its own, to store with it and pass back in
    /// [`PastTurn::signals`] on later turns (for a bot turn, only its reading).
    pub turn_signals: Option<Signals>,
    /// The policy version used.
    pub policy_hash: String,
    /// Present when the conversation is handed over (or scheduled / followed up).
    pub brief: Option<Brief>,
}

impl Decision {
    /// The ids of every trigger that held, in priority order.
    pub fn fired(&self) -> Vec<&str> {
        self.triggers
            .iter()
            .filter(|t| t.fired)
            .map(|t| t.id.as_str())
            .collect()
    }
}

/// Why no decision could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideError {
    /// The writer named an older epoch, or the bot spoke while a human owns the conversation.
    Conflict {
        state: State,
        epoch: u64,
        message: String,
    },
}

impl fmt::Display for DecideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecideError::Conflict { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for DecideError {}

/// The evaluation context of SPEC §4 for one turn, read when an expression reads it
/// ([`Facts`]): a decision builds only the values its policy's conditions read.
/// `lead.criteria` is set once qualification has run and `lead.score` once scoring has (0
/// before), since scoring reads the criteria and triggers read the score.
struct TurnFacts<'a> {
    view: &'a ConversationView,
    turn: &'a NewTurn,
    sig: &'a Signals,
    now: Timestamp,
    criteria: OnceLock<Vec<(String, bool)>>,
    /// The score's bits (`f64::to_bits`).
    score: AtomicU64,
    /// Read by many conditions: built once.
    intents: OnceLock<Val>,
    topics: OnceLock<Val>,
}

impl<'a> TurnFacts<'a> {
    fn new(
        view: &'a ConversationView,
        turn: &'a NewTurn,
        sig: &'a Signals,
        now: Timestamp,
    ) -> TurnFacts<'a> {
        TurnFacts {
            view,
            turn,
            sig,
            now,
            criteria: OnceLock::new(),
            score: AtomicU64::new(0f64.to_bits()),
            intents: OnceLock::new(),
            topics: OnceLock::new(),
        }
    }

    fn signals(&self, field: &str) -> Option<Plain<'_>> {
        let sig = self.sig;
        let c = &sig.conversation;
        Some(match field {
            "human_request" => Plain::Bool(sig.human_request),
            "frustration" => Plain::Bool(sig.frustration),
            "frustration_score" => Plain::Double(sig.frustration_score),
            "confusion" => Plain::Bool(sig.confusion),
            "loop" => Plain::Bool(sig.looping),
            "sentiment" => Plain::Double(sig.sentiment),
            "sentiment_trend" => Plain::Double(c.sentiment_trend),
            "intents" => Plain::Strs(Strs::Static(&sig.intents)),
            "topics" => Plain::Strs(Strs::Static(&sig.topics)),
            "bot_fallbacks_in_row" => Plain::Int(c.bot_fallbacks_in_row as i64),
            "bot_fallbacks" => Plain::Int(c.bot_fallbacks as i64),
            "bot_confidence" => Plain::Double(
                self.turn
                    .bot
                    .as_ref()
                    .and_then(|b| b.confidence)
                    .or(self.view.bot_confidence)
                    .unwrap_or(1.0),
            ),
            "unanswered_questions" => Plain::Int(c.unanswered_questions as i64),
            "repeated_questions" => Plain::Int(c.repeated_questions as i64),
            _ => return None,
        })
    }

    fn lead(&self, field: &str) -> Option<Plain<'_>> {
        let q = &self.sig.qualification;
        let budget = q.budget.as_ref();
        let s = |v: &'static str| Plain::Str(v.into());
        Some(match field {
            "score" => Plain::Double(f64::from_bits(self.score.load(Ordering::Relaxed))),
            "budget.known" => Plain::Bool(budget.is_some()),
            "budget.amount" => Plain::Double(budget.map_or(0.0, |b| b.amount)),
            "budget.currency" => s(budget.and_then(|b| b.currency).unwrap_or("")),
            "budget.period" => s(budget.and_then(|b| b.period).unwrap_or("")),
            "timeline.known" => Plain::Bool(q.timeline.is_some()),
            "timeline.days" => Plain::Int(q.timeline.as_ref().map_or(-1, |t| t.days)),
            "authority" => s(q.authority.as_str()),
            "company_size" => Plain::Int(q.company_size.as_ref().map_or(0, |c| c.employees as i64)),
            _ => {
                // The criteria evaluated so far (none before qualification).
                let name = field.strip_prefix("criteria.")?;
                let (_, met) = self.criteria.get()?.iter().find(|(k, _)| k == name)?;
                Plain::Bool(*met)
            }
        })
    }

    fn conversation(&self, field: &str) -> Option<Plain<'_>> {
        let view = self.view;
        let opt = |s: &'a Option<String>| Plain::Str(s.as_deref().unwrap_or("").into());
        Some(match field {
            "turns" => Plain::Int(view.turns.len() as i64 + 1),
            "user_turns" => Plain::Int(self.sig.conversation.user_turns as i64),
            "duration_seconds" => {
                let first = view.turns.first().map_or(self.now, |t| t.at);
                Plain::Int(self.now.duration_since(first).as_secs().max(0))
            }
            "page" => opt(&view.page),
            "pages_viewed" => Plain::Strs(Strs::Owned(&view.pages_viewed)),
            "source" => opt(&view.source),
            "campaign" => opt(&view.campaign),
            "referrer" => opt(&view.referrer),
            "forms" => Plain::Strs(Strs::Owned(&view.forms)),
            _ => return None,
        })
    }
}

impl<'a> Facts for TurnFacts<'a> {
    fn plain(&self, path: &str) -> Option<Plain<'_>> {
        let (head, field) = path.split_once('.')?;
        let get = |m: &'a HashMap<String, String>, k: &str| {
            Plain::Str(m.get(k).map_or("", String::as_str).into())
        };
        Some(match head {
            "signals" => return self.signals(field),
            "lead" => return self.lead(field),
            "conversation" => return self.conversation(field),
            "contact" if CONTACT_FIELDS.contains(&field) => get(&self.view.contact, field),
            "account" if field == "tier" => get(&self.view.account, "tier"),
            "turn" => match field {
                "role" => Plain::Str(
                    if self.turn.role == Role::Bot {
                        "bot"
                    } else {
                        "user"
                    }
                    .into(),
                ),
                "text" => Plain::Str(self.turn.text.as_str().into()),
                "index" => Plain::Int(self.view.turns.len() as i64),
                _ => return None,
            },
            "now" => match field {
                "unix" => Plain::Int(self.now.as_second()),
                "iso" => Plain::Str(self.now.to_string().into()),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn get(&self, path: &str) -> Option<Fact<'_>> {
        // Lists read by many conditions are built once; maps and objects are built here; the
        // rest is what `plain` answers. A top-level name alone is an object, which `Lookup`
        // builds from its fields.
        let v = match path {
            "signals.intents" => {
                let list = self.intents.get_or_init(|| val::strings(&self.sig.intents));
                return Some(Fact::Borrowed(list.as_ref()));
            }
            "signals.topics" => {
                let list = self.topics.get_or_init(|| val::strings(&self.sig.topics));
                return Some(Fact::Borrowed(list.as_ref()));
            }
            "account.custom" => val::string_map(&self.view.account),
            "conversation.custom" => val::string_map(&self.view.custom),
            "lead.criteria" => val::object(
                self.criteria
                    .get()
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|(k, v)| (k.as_str(), val::bool(*v)))
                    .collect(),
            ),
            _ => self.plain(path)?.to_val(),
        };
        Some(Fact::Owned(v))
    }
}

/// Fills a message's `{eta}`: "in about N minutes" from a live estimate, "shortly" without one
/// (the decision engine leaves `{eta}` for the router, which knows the queues).
pub fn with_eta(message: &str, eta_seconds: Option<u64>) -> std::borrow::Cow<'_, str> {
    if !message.contains("{eta}") {
        return std::borrow::Cow::Borrowed(message);
    }
    let phrase = match eta_seconds {
        None => "shortly".to_string(),
        Some(s) if s < 60 => "in under a minute".to_string(),
        Some(s) => {
            let minutes = s.div_ceil(60);
            format!(
                "in about {minutes} minute{}",
                if minutes == 1 { "" } else { "s" }
            )
        }
    };
    std::borrow::Cow::Owned(message.replace("{eta}", &phrase))
}

/// Fills `{name}`-style placeholders; unknown ones are left as written.
pub fn render(template: &str, values: &HashMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                let key = &rest[open + 1..open + close];
                match values.get(key) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[open..=open + close]),
                }
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Default visitor messages, used when `[messages]` does not set them.
fn default_message(key: &str) -> &'static str {
    match key {
        "handoff" => {
            "Thanks{comma_name}. I'm bringing in a member of our team who can help with this; they should join {eta}. They'll have our conversation in front of them, so you won't need to repeat yourself."
        }
        "waiting" => "A member of our team will be with you shortly.",
        "schedule" => {
            "Our team isn't available right now. I can book you a time to talk with them."
        }
        "follow_up" => {
            "Our team isn't available right now. Leave your e-mail and they'll follow up with you."
        }
        _ => "",
    }
}

fn message(policy: &Policy, key: &str, view: &ConversationView, reason: &str) -> String {
    let template = policy
        .messages
        .get(key)
        .map_or(default_message(key), String::as_str);
    let name = view.contact.get("name").cloned().unwrap_or_default();
    let mut values: HashMap<&str, String> = HashMap::new();
    values.insert(
        "comma_name",
        if name.is_empty() {
            String::new()
        } else {
            format!(", {name}")
        },
    );
    values.insert(
        "name",
        if name.is_empty() {
            "there".into()
        } else {
            name
        },
    );
    values.insert("reason", reason.replace('_', " "));
    render(template, &values)
}

/// Decides what the bot must do about `turn`.
pub fn decide(
    policy: &Policy,
    detector: &Detector,
    view: &ConversationView,
    turn: &NewTurn,
    now: Timestamp,
) -> Result<Decision, DecideError> {
    evaluate(policy, detector, view, turn, false, now)
}

/// The trigger id recorded when an explicit request is honoured although no trigger of the
/// policy asked for a person.
pub const EXPLICIT_TRIGGER: &str = "explicit_handoff";

/// Decides an explicit request for a person. The policy is evaluated as if the visitor had
/// asked (`signals.human_request` is true), so its off-hours triggers still turn the request
/// into a meeting or a follow-up; when no trigger hands off, schedules or follows up, the
/// request is honoured with a handoff by [`EXPLICIT_TRIGGER`]. While a human owns the
/// conversation or is about to, the answer is `hold` and nothing new is created, so a retried
/// request never hands off twice.
pub fn decide_handoff(
    policy: &Policy,
    detector: &Detector,
    view: &ConversationView,
    req: &HandoffRequest,
    now: Timestamp,
) -> Result<Decision, DecideError> {
    let turn = NewTurn {
        role: req.by,
        text: req.note.clone().unwrap_or_default(),
        epoch: req.epoch,
        bot: None,
    };
    evaluate(policy, detector, view, &turn, true, now)
}

/// What is kept of a turn for later decisions ([`PastTurn::signals`]): a visitor turn's
/// signals; of any other turn only its reading.
pub fn signals_of(
    detector: &Detector,
    role: Role,
    text: &str,
    today: jiff::civil::Date,
) -> Signals {
    match role {
        Role::User => detector.message(text, today),
        _ => Signals {
            reading: Some(detector.read(text)),
            ..Signals::default()
        },
    }
}

/// Fills the signals of past turns that have none (a conversation loaded from the store), so
/// that later decisions do not detect them again, each time, as [`decide`] would.
pub fn fill_signals(detector: &Detector, view: &mut ConversationView, now: Timestamp) {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    for t in &mut view.turns {
        if t.signals.is_none() {
            t.signals = Some(signals_of(detector, t.role, &t.text, today));
        }
    }
}

/// The one decision procedure; `explicit` is a handoff request, whose text is not a message.
fn evaluate(
    policy: &Policy,
    detector: &Detector,
    view: &ConversationView,
    turn: &NewTurn,
    explicit: bool,
    now: Timestamp,
) -> Result<Decision, DecideError> {
    if let Some(e) = turn.epoch
        && e != view.epoch
    {
        return Err(DecideError::Conflict {
            state: view.state,
            epoch: view.epoch,
            message: format!(
                "epoch {e} is stale: the conversation is at epoch {} ({})",
                view.epoch,
                view.state.as_str()
            ),
        });
    }
    if turn.role == Role::Bot && view.state.human_side() && !explicit {
        return Err(DecideError::Conflict {
            state: view.state,
            epoch: view.epoch,
            message: format!(
                "the conversation is {}: the bot must not speak (epoch {})",
                view.state.as_str(),
                view.epoch
            ),
        });
    }

    // Detectors over the whole conversation, new turn included.
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut turns: Vec<Turn<'_>> = view
        .turns
        .iter()
        .map(|t| Turn {
            role: t.role,
            text: &t.text,
        })
        .collect();
    if !explicit {
        turns.push(Turn {
            role: turn.role,
            text: &turn.text,
        });
    }
    let turn_signals = (!explicit).then(|| signals_of(detector, turn.role, &turn.text, today));
    let mut cached: Vec<Option<&Signals>> = view.turns.iter().map(|t| t.signals.as_ref()).collect();
    if !explicit {
        cached.push(turn_signals.as_ref());
    }
    let mut signals = detector.conversation_since(&turns, &cached, today, view.since);
    if explicit {
        signals.human_request = true;
    }
    if turn.bot.as_ref().is_some_and(|b| b.fallback) && turn.role == Role::Bot {
        signals.conversation.bot_fallbacks_in_row += 1;
        signals.conversation.bot_fallbacks += 1;
    }

    let mut decision = Decision {
        action: Outcome::Continue,
        state: view.state,
        epoch: view.epoch,
        segment: None,
        trigger: None,
        reason: None,
        priority: None,
        triggers: Vec::new(),
        lead_score: 0.0,
        criteria: Vec::new(),
        message: None,
        signals: Signals::default(),
        turn_signals: None,
        policy_hash: policy.hash.clone(),
        brief: None,
    };

    // A human owns it (or is about to): the visitor's turn goes to them; the bot holds.
    if view.state.human_side() {
        decision.action = Outcome::Hold;
        if view.state != State::Human {
            decision.message = Some(message(policy, "waiting", view, ""));
        }
        decision.signals = signals;
        decision.turn_signals = turn_signals;
        return Ok(decision);
    }

    // Qualification, then scoring, then triggers: each stage can read the one before.
    // One scope per decision, over facts that take in `lead.criteria` after qualification
    // and `lead.score` after scoring.
    let facts = Lookup::new(&policy.compiler, TurnFacts::new(view, turn, &signals, now));
    let Ok(sc) = policy
        .compiler
        .scope_over(&facts, policy.calendars.clone(), now)
    else {
        drop(facts);
        decision.signals = signals;
        decision.turn_signals = turn_signals;
        return Ok(decision);
    };
    // The first segment that matches brings its own criteria and triggers.
    let segment = policy
        .segments
        .iter()
        .find(|s| sc.eval_bool(&s.when).unwrap_or(false));
    let (qualification, triggers) = match segment {
        Some(s) => (&s.qualification, &s.triggers),
        None => (&policy.qualification, &policy.triggers),
    };
    decision.segment = segment.map(|s| s.id.clone());
    let (criteria, score) = lead_stages(policy, qualification, &sc, &facts.facts);
    decision.criteria = criteria;
    decision.lead_score = score;
    // In a later stint, what was already true on the facts known before (no new request,
    // intent, topic or loop) was answered then: such a trigger waits for something new. The
    // facts-only scope is built the first time a trigger holds, not on every turn.
    let base_signals = std::cell::OnceCell::new();
    let base_facts = std::cell::OnceCell::new();
    let base_scope = || {
        let base = base_signals.get_or_init(|| Signals {
            qualification: signals.qualification.clone(),
            conversation: baton_detect::ConversationSignals {
                user_turns: signals.conversation.user_turns,
                ..Default::default()
            },
            ..Signals::default()
        });
        let facts = base_facts
            .get_or_init(|| Lookup::new(&policy.compiler, TurnFacts::new(view, turn, base, now)));
        let b = policy
            .compiler
            .scope_over(facts, policy.calendars.clone(), now)
            .ok()?;
        lead_stages(policy, qualification, &b, &facts.facts);
        Some(b)
    };
    let mut standing: Option<Option<crate::expr::Scope<'_>>> = None;

    let user_turns = signals.conversation.user_turns as u32;
    let mut chosen: Option<usize> = None;
    for (i, t) in triggers.iter().enumerate() {
        let mut eval = TriggerEval {
            id: t.id.clone(),
            value: None,
            note: None,
            fired: false,
        };
        if user_turns < t.min_turns {
            eval.note = Some(format!(
                "min_turns {} not reached ({user_turns})",
                t.min_turns
            ));
        } else if let Some((_, at)) = t.cooldown.and_then(|cd| {
            view.fired
                .iter()
                .find(|(id, at)| id == &t.id && now.duration_since(*at) < cd)
        }) {
            eval.note = Some(format!("cooling down since {at}"));
        } else {
            match sc.eval_bool(&t.when) {
                Ok(true)
                    if t.action != Action::Nurture
                        && view.since > 0
                        && standing
                            .get_or_insert_with(base_scope)
                            .as_mut()
                            .is_some_and(|b| b.eval_bool(&t.when).unwrap_or(false)) =>
                {
                    eval.value = Some(true);
                    eval.note = Some(
                        "already true before the conversation came back to the bot; \
                         waits for something new"
                            .into(),
                    );
                }
                Ok(v) => {
                    eval.value = Some(v);
                    eval.fired = v;
                    if v && chosen.is_none() {
                        chosen = Some(i);
                    }
                }
                Err(e) => eval.note = Some(format!("evaluation failed: {e}")),
            }
        }
        decision.triggers.push(eval);
    }

    // An explicit request is honoured even when the policy would keep the bot.
    let explicit_wins = explicit && chosen.is_none_or(|i| triggers[i].action == Action::Nurture);
    if explicit_wins {
        decision.trigger = Some(EXPLICIT_TRIGGER.into());
        decision.reason = Some("explicit_request".into());
        decision.priority = Some(triggers.first().map_or(100, |t| t.priority));
        decision.action = Outcome::Handoff;
        if view.state != State::Queued {
            decision.state = State::Queued;
            decision.epoch = view.epoch + 1;
        }
        decision.message = Some(message(policy, "handoff", view, "explicit_request"));
        decision.brief = Some(build_brief(view, turn, explicit, &signals, &decision));
    } else if let Some(i) = chosen {
        let t = &triggers[i];
        decision.trigger = Some(t.id.clone());
        decision.reason = Some(t.reason.clone());
        decision.priority = Some(t.priority);
        // A meeting or a follow-up is already pending because nobody could take the
        // conversation live, and still nobody can: the visitor is told again what happens
        // next, and no second handoff is created (the router would only fall back again).
        let pending = matches!(view.state, State::Scheduled | State::FollowUp);
        let pending_fallback = pending
            && t.action == Action::Handoff
            && !policy.calendar_open(&policy.routing.hours, now);
        let action = if pending_fallback {
            decision.triggers[i].note = Some(format!(
                "out of live hours with a {} pending: no second handoff",
                view.state.as_str()
            ));
            match policy.routing.after_hours {
                crate::routing::Fallback::Schedule => Action::Schedule,
                crate::routing::Fallback::FollowUp => Action::FollowUp,
            }
        } else if pending && matches!(t.action, Action::Schedule | Action::FollowUp) {
            // An off-hours trigger while a meeting or a follow-up is pending already: the
            // visitor is told again what is pending, and nothing is created twice.
            decision.triggers[i].note = Some(format!(
                "a {} is pending: no second handoff",
                view.state.as_str()
            ));
            if view.state == State::Scheduled {
                Action::Schedule
            } else {
                Action::FollowUp
            }
        } else {
            t.action
        };
        let (outcome, state, key) = match action {
            Action::Handoff => (Outcome::Handoff, State::Queued, Some("handoff")),
            Action::Schedule => (Outcome::Schedule, State::Scheduled, Some("schedule")),
            Action::FollowUp => (Outcome::FollowUp, State::FollowUp, Some("follow_up")),
            Action::Nurture => (Outcome::Continue, view.state, None),
        };
        decision.action = outcome;
        if state != view.state {
            decision.state = state;
            decision.epoch = view.epoch + 1;
        }
        if let Some(k) = key {
            decision.message = Some(message(policy, k, view, &t.reason));
            // A new handoff only when the owner changes: a visitor who writes again while a
            // meeting or a follow-up is pending is told again, and nothing is created twice.
            if state != view.state {
                decision.brief = Some(build_brief(view, turn, explicit, &signals, &decision));
            }
        }
    }
    // The scopes borrow the signals.
    drop(standing);
    drop(sc);
    drop(facts);
    decision.signals = signals;
    decision.turn_signals = turn_signals;
    Ok(decision)
}

/// Qualification, then scoring, in `sc`: the criteria as evaluated and the lead score, each
/// set in `facts` after its stage, since scoring reads the criteria and triggers read the
/// score.
fn lead_stages(
    policy: &Policy,
    qualification: &[crate::policy::Criterion],
    sc: &crate::expr::Scope<'_>,
    facts: &TurnFacts<'_>,
) -> (Vec<CriterionEval>, f64) {
    let mut evals = Vec::with_capacity(qualification.len());
    let mut criteria: Vec<(String, bool)> = Vec::with_capacity(qualification.len());
    for c in qualification {
        let met = sc.eval_bool(&c.when).ok();
        evals.push(CriterionEval {
            name: c.name.clone(),
            met,
        });
        criteria.push((c.name.clone(), met.unwrap_or(false)));
    }
    // Once per facts: each decision (and its facts-only scope) runs these stages once.
    let _ = facts.criteria.set(criteria);
    let mut score = 0.0;
    for r in &policy.scoring {
        if sc.eval_bool(&r.when).unwrap_or(false) {
            score += r.points;
        }
    }
    facts.score.store(score.to_bits(), Ordering::Relaxed);
    (evals, score)
}

/// The authority a human reads.
pub fn authority_label(a: Authority) -> &'static str {
    match a {
        Authority::DecisionMaker => "decision maker",
        Authority::Influencer => "influencer",
        Authority::Unknown => "unknown",
    }
}
