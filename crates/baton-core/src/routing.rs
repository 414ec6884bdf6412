//! Routing (SPEC §6): which route a handoff takes, and which rep of a queue is offered it.
//!
//! Pure: the reps, their presence and load, the fairness ledger and the clock are parameters.
//! The server keeps that state and stores every change; this module only chooses, and says
//! why each rep was or was not chosen.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::expr::{
    Compiler, EvalError, Expr, Layered, Object, Schema, Scope, Shared, Type, Val, val,
};
use crate::hours::Calendar;

/// How a queue orders the reps that can take a handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Fewest offers from this queue relative to the rep's weight, then the longest since the
    /// last one: over time each rep gets a share in proportion to its weight.
    RoundRobin,
    /// Lowest load relative to capacity, then as round robin.
    LeastBusy,
    /// The longest since the rep's last offer from any queue, then as round robin.
    LongestIdle,
    /// Highest level in the queue's skill, then least busy.
    BestSkill,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastBusy => "least_busy",
            Strategy::LongestIdle => "longest_idle",
            Strategy::BestSkill => "best_skill",
        }
    }
}

/// What happens when no live handoff is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Offer the visitor meeting slots with an eligible rep.
    Schedule,
    /// Promise an e-mail follow-up.
    FollowUp,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Schedule => "schedule",
            Fallback::FollowUp => "follow_up",
        }
    }

    /// The conversation's owner while this fallback is pending.
    pub fn state(self) -> crate::decide::State {
        match self {
            Fallback::Schedule => crate::decide::State::Scheduled,
            Fallback::FollowUp => crate::decide::State::FollowUp,
        }
    }
}

/// A `[[queue]]`.
#[derive(Debug)]
pub struct Queue {
    pub id: String,
    /// Over `rep`: who belongs to the queue at all (evaluated when a rep or the policy changes).
    pub members: Option<Expr>,
    /// Over `rep` and `handoff`: whether this rep suits this handoff.
    pub matches: Option<Expr>,
    pub strategy: Strategy,
    /// The skill `best_skill` ranks by.
    pub skill: Option<String>,
    /// How long a rep has to accept an offer.
    pub accept_timeout: SignedDuration,
    /// Time to accept before the SLA is breached.
    pub sla_accept: Option<SignedDuration>,
    /// Time from acceptance to the rep's first message.
    pub sla_first_message: Option<SignedDuration>,
    /// The calendar SLA clocks run in; none: wall-clock time.
    pub sla_hours: Option<String>,
}

/// One target of a route.
#[derive(Debug)]
pub struct Target {
    /// Index into [`Routing::queues`].
    pub queue: usize,
    /// How long the handoff waits at this target before moving to the next.
    pub timeout: SignedDuration,
    /// Over `handoff` and `queue` (`queue.available`, `queue.waiting`): skip this target.
    pub skip_if: Option<Expr>,
    /// Overrides the handoff's priority while at this target.
    pub priority: Option<i64>,
}

/// A `[[route]]`: the first whose `when` holds takes the handoff.
#[derive(Debug)]
pub struct Route {
    pub id: String,
    /// Over `handoff`; none: matches every handoff (the default route).
    pub when: Option<Expr>,
    pub targets: Vec<Target>,
}

/// The routing part of a policy.
#[derive(Debug)]
pub struct Routing {
    pub queues: Vec<Queue>,
    pub routes: Vec<Route>,
    /// Live handoffs only while this calendar is open.
    pub hours: Option<String>,
    /// What to offer the visitor out of hours.
    pub after_hours: Fallback,
    /// What to offer when every target timed out or was skipped.
    pub unattended: Fallback,
    /// A rep with no heartbeat for this long is marked away.
    pub away_after: SignedDuration,
    /// A rep who lets this many offers in a row time out is marked away.
    pub missed_offers_away: u32,
    /// Length of a bookable meeting slot.
    pub slot: SignedDuration,
}

impl Default for Routing {
    fn default() -> Routing {
        Routing {
            queues: Vec::new(),
            routes: Vec::new(),
            hours: None,
            after_hours: Fallback::Schedule,
            unattended: Fallback::FollowUp,
            away_after: SignedDuration::from_mins(5),
            missed_offers_away: 2,
            slot: SignedDuration::from_mins(30),
        }
    }
}

impl Routing {
    pub fn queue(&self, id: &str) -> Option<usize> {
        self.queues.iter().position(|q| q.id == id)
    }
}

/// `rep.*` as expressions see it.
pub fn rep_type() -> Type {
    let list = || Type::List(Box::new(Type::String));
    Object::new("rep")
        .field("id", Type::String, "the rep's id")
        .field("name", Type::String, "display name")
        .field(
            "skills",
            Type::Map(Box::new(Type::Int)),
            "skill name to level",
        )
        .field("territories", list(), "territories covered")
        .field("languages", list(), "languages spoken")
        .field("products", list(), "product lines")
        .field(
            "deal_band",
            Type::String,
            "deal band, e.g. smb, mid, enterprise",
        )
        .field("on_call", Type::Bool, "on call for escalations")
        .field("capacity", Type::Int, "conversations at once")
        .field("load", Type::Int, "offers pending plus conversations open")
        .into_type()
}

/// `handoff.*` as expressions see it.
pub fn handoff_type() -> Type {
    let list = || Type::List(Box::new(Type::String));
    let map = || Type::Map(Box::new(Type::String));
    Object::new("handoff")
        .field("id", Type::String, "the handoff's id")
        .field("trigger", Type::String, "the trigger that fired")
        .field("reason", Type::String, "its reason code")
        .field("priority", Type::Int, "its priority")
        .field("lead_score", Type::Double, "the lead score")
        .field(
            "language",
            Type::String,
            "the visitor's language (contact.language, default en)",
        )
        .field(
            "territory",
            Type::String,
            "contact.territory, region or country",
        )
        .field(
            "product",
            Type::String,
            "account.product or contact.product",
        )
        .field("tier", Type::String, "account.tier")
        .field(
            "deal_size",
            Type::Double,
            "the stated budget, or account.deal_size",
        )
        .field("intents", list(), "sales intents")
        .field("topics", list(), "sensitive topics")
        .field("contact", map(), "contact fields")
        .field("account", map(), "account fields")
        .into_type()
}

/// `queue.*` for `skip_if`.
pub fn queue_type() -> Type {
    Object::new("queue")
        .field("id", Type::String, "the target's queue")
        .field(
            "available",
            Type::Int,
            "members who could take the handoff now",
        )
        .field("waiting", Type::Int, "handoffs waiting in the queue")
        .into_type()
}

/// A compiler for routing expressions that may use the given names (`rep`, `handoff`,
/// `queue`) and the policy's calendars.
pub fn compiler(names: &[&str], calendars: &BTreeMap<String, Calendar>) -> Compiler {
    let mut root = Object::new("routing");
    for n in names {
        let (ty, doc) = match *n {
            "rep" => (rep_type(), "the rep considered"),
            "handoff" => (handoff_type(), "the handoff routed"),
            _ => (queue_type(), "the target's queue"),
        };
        root = root.field(n, ty, doc);
    }
    Compiler::new(Schema {
        root,
        calendars: calendars.keys().cloned().collect(),
        vocab: crate::policy::vocab(),
    })
}

/// A rep's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Available,
    Busy,
    Away,
    Offline,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Available => "available",
            Presence::Busy => "busy",
            Presence::Away => "away",
            Presence::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Presence> {
        Some(match s {
            "available" => Presence::Available,
            "busy" => Presence::Busy,
            "away" => Presence::Away,
            "offline" => Presence::Offline,
            _ => return None,
        })
    }
}

/// A rep's attributes, as an admin writes them (API or team file).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rep {
    #[serde(default)]
    pub name: String,
    /// Skill name to level (1-10 by convention).
    #[serde(default)]
    pub skills: BTreeMap<String, i64>,
    #[serde(default)]
    pub territories: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default)]
    pub deal_band: Option<String>,
    /// IANA time zone, for meeting slots; default the working-hours calendar's.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A calendar of the policy's `[hours]`: the rep works while it is open; none: always.
    #[serde(default)]
    pub hours: Option<String>,
    #[serde(default = "one")]
    pub capacity: u32,
    #[serde(default)]
    pub on_call: bool,
    /// Share of round-robin offers relative to other reps (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Who is told when this rep's handoffs breach their SLA.
    #[serde(default)]
    pub manager: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

fn one() -> u32 {
    1
}

impl Rep {
    /// Checks what serde cannot: non-empty skills names, a capacity, a known calendar.
    pub fn validate(&self, calendars: &BTreeMap<String, Calendar>) -> Result<(), String> {
        if self.capacity == 0 || self.capacity > 1000 {
            return Err("capacity must be between 1 and 1000".into());
        }
        if self.weight == 0 || self.weight > 1000 {
            return Err("weight must be between 1 and 1000".into());
        }
        if let Some(h) = &self.hours
            && !calendars.contains_key(h)
        {
            return Err(format!(
                "hours {h:?} is not a calendar of the policy's [hours]"
            ));
        }
        if let Some(tz) = &self.time_zone
            && jiff::tz::TimeZone::get(tz).is_err()
        {
            return Err(format!("time_zone {tz:?} is not an IANA time zone"));
        }
        Ok(())
    }

    /// The rep as CEL sees it (`rep.*`), but for `load`, which changes between offers and is
    /// laid over it when bound ([`RepState::value`]).
    fn shared(&self, id: &str) -> Shared {
        let skills: std::collections::HashMap<_, Val> = self
            .skills
            .iter()
            .map(|(k, v)| (cel::common::types::CelMapKey::from(k.clone()), val::int(*v)))
            .collect();
        crate::expr::shared(vec![
            ("id", val::string(id)),
            ("name", val::string(&self.name)),
            ("skills", Box::new(cel::common::types::CelMap::from(skills))),
            ("territories", val::strings(&self.territories)),
            ("languages", val::strings(&self.languages)),
            ("products", val::strings(&self.products)),
            (
                "deal_band",
                val::string(self.deal_band.as_deref().unwrap_or("")),
            ),
            ("on_call", val::bool(self.on_call)),
            ("capacity", val::int(i64::from(self.capacity))),
        ])
    }
}

/// A team file (`baton serve --team FILE`): `[[rep]]` tables, each an `id` and a rep's
/// attributes. Every problem is reported with its rep; calendars are checked against the
/// policy's.
pub fn parse_team(
    text: &str,
    calendars: &BTreeMap<String, Calendar>,
) -> Result<Vec<(String, Rep)>, Vec<String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        rep: Vec<toml::Table>,
    }
    let file: File = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
    let mut out: Vec<(String, Rep)> = Vec::new();
    let mut errors = Vec::new();
    for (i, mut t) in file.rep.into_iter().enumerate() {
        let id = match t.remove("id") {
            Some(toml::Value::String(s)) if !s.is_empty() => s,
            _ => {
                errors.push(format!("rep #{}: needs an `id` (a string)", i + 1));
                continue;
            }
        };
        if out.iter().any(|(o, _)| o == &id) {
            errors.push(format!("rep {id:?} is listed twice"));
            continue;
        }
        match toml::Value::Table(t).try_into::<Rep>() {
            Ok(rep) => match rep.validate(calendars) {
                Ok(()) => out.push((id, rep)),
                Err(e) => errors.push(format!("rep {id:?}: {e}")),
            },
            Err(e) => errors.push(format!("rep {id:?}: {}", e.message())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A rep as the router sees it now.
#[derive(Debug, Clone)]
pub struct RepState {
    pub id: String,
    rep: Rep,
    /// `rep.*` for expressions, built when the attributes change rather than on every offer.
    shared: Shared,
    pub presence: Presence,
    /// Offers pending plus conversations accepted and not yet resolved.
    pub load: u32,
    /// The last offer made to this rep, from any queue.
    pub last_offer: Option<Timestamp>,
}

impl RepState {
    /// A rep, offline, with nothing offered yet.
    pub fn new(id: &str, rep: Rep) -> RepState {
        RepState {
            id: id.to_string(),
            shared: rep.shared(id),
            rep,
            presence: Presence::Offline,
            load: 0,
            last_offer: None,
        }
    }

    pub fn rep(&self) -> &Rep {
        &self.rep
    }

    /// New attributes.
    pub fn set_rep(&mut self, rep: Rep) {
        self.shared = rep.shared(&self.id);
        self.rep = rep;
    }

    /// The rep as expressions see it (`rep.*`), with its current load.
    pub fn value(&self) -> Val {
        Layered::bind(&self.shared, "load", i64::from(self.load))
    }
}

/// The fairness ledger: offers made per `(queue, rep)`, and when the last one was.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: std::collections::HashMap<
        String,
        std::collections::HashMap<String, (u64, Option<Timestamp>)>,
    >,
}

impl Ledger {
    pub fn record(&mut self, queue: &str, rep: &str, at: Timestamp) {
        let e = self
            .entries
            .entry(queue.to_string())
            .or_default()
            .entry(rep.to_string())
            .or_insert((0, None));
        e.0 += 1;
        e.1 = Some(at);
    }

    /// `(offers, last offer)` of a rep in a queue.
    pub fn get(&self, queue: &str, rep: &str) -> (u64, Option<Timestamp>) {
        self.entries
            .get(queue)
            .and_then(|m| m.get(rep))
            .copied()
            .unwrap_or((0, None))
    }
}

/// Why a rep was or was not offered a handoff.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Chosen,
    NotMember,
    /// Declined this handoff, or let its offer time out.
    AlreadyTried,
    Presence(Presence),
    AtCapacity {
        load: u32,
        capacity: u32,
    },
    OutsideHours,
    /// The queue's `match` is false for this handoff.
    NoMatch,
    MatchFailed(String),
    /// Eligible, but another rep came first in the queue's order.
    RankedLower,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Chosen => f.write_str("chosen"),
            Reason::NotMember => f.write_str("not a member of the queue"),
            Reason::AlreadyTried => f.write_str("already declined or missed this handoff"),
            Reason::Presence(p) => write!(f, "presence is {}", p.as_str()),
            Reason::AtCapacity { load, capacity } => write!(f, "at capacity ({load}/{capacity})"),
            Reason::OutsideHours => f.write_str("outside working hours"),
            Reason::NoMatch => f.write_str("the queue's match is false for this handoff"),
            Reason::MatchFailed(e) => write!(f, "match failed: {e}"),
            Reason::RankedLower => {
                f.write_str("available, ranked after the chosen rep (match not evaluated)")
            }
        }
    }
}

/// One rep considered for a handoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Considered {
    /// Index into the reps given to [`choose`].
    pub rep: usize,
    pub reason: Reason,
}

/// The outcome of [`choose`].
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index into the reps given.
    pub rep: Option<usize>,
    /// Every member of the queue, with its reason; the chosen one first.
    pub considered: Vec<Considered>,
}

impl Choice {
    /// Members who could take the handoff now (the chosen one included).
    pub fn eligible(&self) -> usize {
        self.considered
            .iter()
            .filter(|c| matches!(c.reason, Reason::Chosen | Reason::RankedLower))
            .count()
    }
}

/// Whether `rep` works at `now` by its own calendar.
pub fn working(rep: &Rep, calendars: &BTreeMap<String, Calendar>, now: Timestamp) -> bool {
    rep.hours
        .as_ref()
        .and_then(|h| calendars.get(h))
        .is_none_or(|c| c.is_open(now))
}

/// Chooses the rep of `queue` to offer a handoff to. `members[i]` says whether `reps[i]`
/// belongs to the queue; `tried` holds the reps who already declined or missed this handoff.
/// `scope` has `handoff` bound; `rep` is bound here for each candidate the queue's `match`
/// is evaluated on, in the strategy's order, until one matches.
#[allow(clippy::too_many_arguments)]
pub fn choose(
    queue: &Queue,
    reps: &[RepState],
    members: &[bool],
    tried: &[String],
    ledger: &Ledger,
    calendars: &BTreeMap<String, Calendar>,
    scope: &mut Scope,
    now: Timestamp,
) -> Choice {
    let mut considered = Vec::new();
    let mut candidates: Vec<usize> = Vec::new();
    for (i, r) in reps.iter().enumerate() {
        let reason = if !members.get(i).copied().unwrap_or(false) {
            continue;
        } else if tried.iter().any(|t| t == &r.id) {
            Reason::AlreadyTried
        } else if r.presence != Presence::Available {
            Reason::Presence(r.presence)
        } else if r.load >= r.rep.capacity {
            Reason::AtCapacity {
                load: r.load,
                capacity: r.rep.capacity,
            }
        } else if !working(&r.rep, calendars, now) {
            Reason::OutsideHours
        } else {
            candidates.push(i);
            continue;
        };
        considered.push(Considered { rep: i, reason });
    }
    let key = |i: &usize| {
        let r = &reps[*i];
        let (count, last) = ledger.get(&queue.id, &r.id);
        // Offers per unit of weight, in millionths, so integer order is exact enough.
        let share = count * 1_000_000 / u64::from(r.rep.weight.max(1));
        let load = u64::from(r.load) * 1_000_000 / u64::from(r.rep.capacity.max(1));
        let skill = queue
            .skill
            .as_ref()
            .and_then(|s| r.rep.skills.get(s))
            .copied()
            .unwrap_or(0);
        let never = Timestamp::MIN;
        match queue.strategy {
            Strategy::RoundRobin => (0, 0, share, last.unwrap_or(never), r.id.as_str()),
            Strategy::LeastBusy => (0, load, share, last.unwrap_or(never), r.id.as_str()),
            Strategy::LongestIdle => (0, 0, 0, r.last_offer.unwrap_or(never), r.id.as_str()),
            Strategy::BestSkill => (-skill, load, share, last.unwrap_or(never), r.id.as_str()),
        }
    };
    candidates.sort_by_cached_key(key);
    let mut chosen = None;
    for i in candidates {
        if chosen.is_some() {
            considered.push(Considered {
                rep: i,
                reason: Reason::RankedLower,
            });
            continue;
        }
        let reason = match &queue.matches {
            None => Reason::Chosen,
            Some(m) => {
                scope.set("rep", reps[i].value());
                match scope.eval_bool(m) {
                    Ok(true) => Reason::Chosen,
                    Ok(false) => Reason::NoMatch,
                    Err(EvalError(e)) => Reason::MatchFailed(e),
                }
            }
        };
        if reason == Reason::Chosen {
            chosen = Some(i);
            considered.insert(
                0,
                Considered {
                    rep: i,
                    reason: Reason::Chosen,
                },
            );
        } else {
            considered.push(Considered { rep: i, reason });
        }
    }
    Choice {
        rep: chosen,
        considered,
    }
}

/// The facts about a handoff that routing reads (`handoff.*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandoffFacts {
    pub id: String,
    pub trigger: String,
    pub reason: String,
    pub priority: i64,
    pub lead_score: f64,
    pub language: String,
    pub territory: String,
    pub product: String,
    pub tier: String,
    pub deal_size: f64,
    pub intents: Vec<String>,
    pub topics: Vec<String>,
    pub contact: BTreeMap<String, String>,
    pub account: BTreeMap<String, String>,
}

impl HandoffFacts {
    pub fn value(&self) -> Val {
        val::object(vec![
            ("id", val::string(&self.id)),
            ("trigger", val::string(&self.trigger)),
            ("reason", val::string(&self.reason)),
            ("priority", val::int(self.priority)),
            ("lead_score", val::double(self.lead_score)),
            ("language", val::string(&self.language)),
            ("territory", val::string(&self.territory)),
            ("product", val::string(&self.product)),
            ("tier", val::string(&self.tier)),
            ("deal_size", val::double(self.deal_size)),
            ("intents", val::strings(&self.intents)),
            ("topics", val::strings(&self.topics)),
            ("contact", val::string_map(&self.contact)),
            ("account", val::string_map(&self.account)),
        ])
    }
}

/// The routing facts of a handoff, from the decision that created it.
pub fn facts_of(
    id: &str,
    d: &crate::decide::Decision,
    view: &crate::decide::ConversationView,
) -> HandoffFacts {
    let get = |m: &BTreeMap<String, String>, keys: &[&str]| {
        keys.iter()
            .find_map(|k| m.get(*k).filter(|v| !v.is_empty()).cloned())
            .unwrap_or_default()
    };
    let contact: BTreeMap<String, String> = view
        .contact
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let account: BTreeMap<String, String> = view
        .account
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let budget = d
        .signals
        .qualification
        .budget
        .as_ref()
        .map(|b| b.amount)
        .or_else(|| account.get("deal_size").and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let language = get(&contact, &["language", "lang"]);
    HandoffFacts {
        id: id.to_string(),
        trigger: d.trigger.clone().unwrap_or_default(),
        reason: d.reason.clone().unwrap_or_default(),
        priority: d.priority.unwrap_or(0),
        lead_score: d.lead_score,
        language: if language.is_empty() {
            "en".into()
        } else {
            language.to_lowercase()
        },
        territory: get(&contact, &["territory", "region", "country"]),
        product: {
            let p = get(&account, &["product"]);
            if p.is_empty() {
                get(&contact, &["product"])
            } else {
                p
            }
        },
        tier: get(&account, &["tier"]),
        deal_size: budget,
        intents: d.signals.intents.iter().map(|s| s.to_string()).collect(),
        topics: d.signals.topics.iter().map(|s| s.to_string()).collect(),
        contact,
        account,
    }
}

/// Where a handoff would go, as `baton replay` shows it: its route, the route's queues in
/// order, and, given a team (everyone available, nobody busy), the first target with a rep
/// able to take it and the rep its strategy picks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub route: Option<String>,
    pub queues: Vec<String>,
    /// `(queue, rep)`.
    pub rep: Option<(String, String)>,
}

/// [`Plan`] for a handoff: `compiler` is the policy's routing compiler.
pub fn plan(
    routing: &Routing,
    compiler: &Compiler,
    calendars: &std::sync::Arc<BTreeMap<String, Calendar>>,
    facts: &HandoffFacts,
    team: &[RepState],
    now: Timestamp,
) -> Plan {
    let Ok(mut scope) = compiler.scope(
        [("handoff".to_string(), facts.value())],
        calendars.clone(),
        now,
    ) else {
        return Plan::default();
    };
    let Some(r) = route(routing, &scope).0 else {
        return Plan::default();
    };
    let targets = &routing.routes[r].targets;
    let mut plan = Plan {
        route: Some(routing.routes[r].id.clone()),
        queues: targets
            .iter()
            .map(|t| routing.queues[t.queue].id.clone())
            .collect(),
        rep: None,
    };
    let ledger = Ledger::default();
    for t in targets {
        let queue = &routing.queues[t.queue];
        let members: Vec<bool> = team
            .iter()
            .map(|rep| match &queue.members {
                None => true,
                Some(m) => {
                    scope.set("rep", rep.value());
                    scope.eval_bool(m).unwrap_or(false)
                }
            })
            .collect();
        let choice = choose(
            queue,
            team,
            &members,
            &[],
            &ledger,
            calendars,
            &mut scope,
            now,
        );
        if let Some(i) = choice.rep {
            plan.rep = Some((queue.id.clone(), team[i].id.clone()));
            break;
        }
    }
    plan
}

/// How one route was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteEval {
    pub route: String,
    pub matched: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The first route whose `when` holds (scope has `handoff` bound), with every route evaluated
/// up to it.
pub fn route(routing: &Routing, scope: &Scope) -> (Option<usize>, Vec<RouteEval>) {
    let mut evals = Vec::new();
    for (i, r) in routing.routes.iter().enumerate() {
        let (matched, note) = match &r.when {
            None => (true, None),
            Some(w) => match scope.eval_bool(w) {
                Ok(b) => (b, None),
                Err(e) => (false, Some(format!("evaluation failed: {e}"))),
            },
        };
        evals.push(RouteEval {
            route: r.id.clone(),
            matched,
            note,
        });
        if matched {
            return (Some(i), evals);
        }
    }
    (None, evals)
}

/// `queue.*` for `skip_if`.
pub fn queue_value(id: &str, available: usize, waiting: usize) -> Val {
    val::object(vec![
        ("id", val::string(id)),
        ("available", val::int(available as i64)),
        ("waiting", val::int(waiting as i64)),
    ])
}

/// Estimated seconds until a rep accepts: the handoffs ahead of this one, shared among the
/// eligible reps' free places, each taking the recent mean time to accept (or the queue's
/// accept timeout when nothing was accepted yet). `None` when no eligible rep is available.
pub fn eta_seconds(
    ahead: usize,
    free_places: usize,
    mean_accept: Option<SignedDuration>,
    accept_timeout: SignedDuration,
) -> Option<u64> {
    if free_places == 0 {
        return None;
    }
    let per = mean_accept.unwrap_or(accept_timeout / 2).as_secs().max(1) as u64;
    let rounds = (ahead / free_places) as u64 + 1;
    Some(rounds * per)
}

/// Up to `count` meeting slots of `length` starting from `from`, within any of the reps'
/// working calendars and clear of their booked meetings: `(start, rep index)`, soonest first.
pub fn slots(
    reps: &[(&Rep, &[(Timestamp, Timestamp)])],
    calendars: &BTreeMap<String, Calendar>,
    from: Timestamp,
    length: SignedDuration,
    count: usize,
    horizon: SignedDuration,
) -> Vec<(Timestamp, usize)> {
    let mut out = Vec::new();
    if reps.is_empty() || count == 0 {
        // Nobody to meet: not 672 half hours to look through for nothing.
        return out;
    }
    // Slots start on the next whole half hour.
    let step = SignedDuration::from_mins(30);
    let secs = from.as_second();
    let start = secs - secs.rem_euclid(1800) + 1800;
    let Ok(mut t) = Timestamp::from_second(start) else {
        return out;
    };
    let Ok(end) = from.checked_add(horizon) else {
        return out;
    };
    while t < end && out.len() < count {
        let Ok(slot_end) = t.checked_add(length) else {
            break;
        };
        for (i, (rep, booked)) in reps.iter().enumerate() {
            let cal = rep.hours.as_ref().and_then(|h| calendars.get(h));
            let open = match cal {
                Some(c) => c.is_open(t) && c.open_duration(t, slot_end) >= length,
                // A rep without a calendar can be booked in office hours only when the policy
                // says so; without one, any time.
                None => true,
            };
            let free = booked.iter().all(|(s, e)| slot_end <= *s || t >= *e);
            if open && free {
                out.push((t, i));
                break;
            }
        }
        let Ok(next) = t.checked_add(step) else {
            break;
        };
        t = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiler() -> Compiler {
        super::compiler(&["rep", "handoff"], &BTreeMap::new())
    }

    fn rep(id: &str, langs: &[&str], capacity: u32, load: u32) -> RepState {
        let mut r = RepState::new(
            id,
            Rep {
                name: id.into(),
                skills: BTreeMap::from([("pricing".to_string(), id.len() as i64)]),
                territories: vec![],
                languages: langs.iter().map(|s| s.to_string()).collect(),
                products: vec![],
                deal_band: None,
                time_zone: None,
                hours: None,
                capacity,
                on_call: false,
                weight: 1,
                manager: None,
                email: None,
            },
        );
        r.presence = Presence::Available;
        r.load = load;
        r
    }

    fn queue(c: &Compiler, strategy: Strategy, matches: Option<&str>) -> Queue {
        Queue {
            id: "q".into(),
            members: None,
            matches: matches.map(|m| c.compile(m, Some(&Type::Bool)).expect("compiles")),
            strategy,
            skill: Some("pricing".into()),
            accept_timeout: SignedDuration::from_secs(30),
            sla_accept: None,
            sla_first_message: None,
            sla_hours: None,
        }
    }

    fn scope(c: &Compiler, language: &str) -> Scope<'static> {
        let h = HandoffFacts {
            language: language.into(),
            ..HandoffFacts::default()
        };
        c.scope(
            [("handoff".to_string(), h.value())],
            Default::default(),
            Timestamp::UNIX_EPOCH,
        )
        .expect("scope")
    }

    #[test]
    fn a_rep_value_is_shared_with_its_load_laid_over() {
        let c = compiler();
        let e = c
            .compile(
                "rep.load < rep.capacity && handoff.language in rep.languages \
                 && rep.skills['pricing'] == 3 && rep.id == 'ana' && has(rep.on_call)",
                Some(&Type::Bool),
            )
            .expect("compiles");
        let mut r = rep("ana", &["en", "fr"], 2, 0);
        let mut sc = scope(&c, "fr");
        for (load, expect) in [(0, true), (1, true), (2, false)] {
            r.load = load;
            sc.set("rep", r.value());
            assert_eq!(sc.eval_bool(&e), Ok(expect), "load {load}");
        }
        // New attributes are seen at once.
        let mut attrs = r.rep().clone();
        attrs.languages = vec!["de".into()];
        r.set_rep(attrs);
        r.load = 0;
        sc.set("rep", r.value());
        assert_eq!(sc.eval_bool(&e), Ok(false));
    }

    #[test]
    fn match_capacity_presence_and_tried_are_each_explained() {
        let c = compiler();
        let q = queue(
            &c,
            Strategy::RoundRobin,
            Some("handoff.language in rep.languages"),
        );
        let mut reps = vec![
            rep("ana", &["en"], 1, 1),
            rep("ben", &["de"], 2, 0),
            rep("cy", &["de"], 2, 0),
            rep("dee", &["de"], 2, 0),
            rep("abe", &["en"], 2, 0),
        ];
        reps[2].presence = Presence::Away;
        let members = vec![true; reps.len()];
        let tried = vec!["dee".to_string()];
        let mut s = scope(&c, "de");
        let choice = choose(
            &q,
            &reps,
            &members,
            &tried,
            &Ledger::default(),
            &BTreeMap::new(),
            &mut s,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(choice.rep, Some(1));
        let reason = |id: &str| {
            let i = reps.iter().position(|r| r.id == id).expect("rep");
            choice
                .considered
                .iter()
                .find(|c| c.rep == i)
                .map(|c| c.reason.clone())
        };
        assert_eq!(
            reason("ana"),
            Some(Reason::AtCapacity {
                load: 1,
                capacity: 1
            })
        );
        assert_eq!(reason("ben"), Some(Reason::Chosen));
        assert_eq!(reason("cy"), Some(Reason::Presence(Presence::Away)));
        assert_eq!(reason("dee"), Some(Reason::AlreadyTried));
        assert_eq!(reason("abe"), Some(Reason::NoMatch));
        assert_eq!(choice.considered[0].reason, Reason::Chosen);
    }

    #[test]
    fn round_robin_follows_the_ledger_and_weights() {
        let c = compiler();
        let q = queue(&c, Strategy::RoundRobin, None);
        let mut reps = vec![rep("a", &[], 5, 0), rep("b", &[], 5, 0)];
        reps[1].rep.weight = 2;
        let members = vec![true; 2];
        let mut ledger = Ledger::default();
        let mut counts = [0; 2];
        let mut s = scope(&c, "en");
        for k in 0..30 {
            let at = Timestamp::from_second(k).expect("ts");
            let ch = choose(
                &q,
                &reps,
                &members,
                &[],
                &ledger,
                &BTreeMap::new(),
                &mut s,
                at,
            );
            let i = ch.rep.expect("someone");
            counts[i] += 1;
            ledger.record("q", &reps[i].id, at);
        }
        assert_eq!(counts, [10, 20]);
    }

    #[test]
    fn least_busy_and_best_skill_order() {
        let c = compiler();
        let reps = vec![
            rep("al", &[], 4, 3),
            rep("bo", &[], 4, 1),
            rep("carl", &[], 4, 2),
        ];
        let members = vec![true; 3];
        let mut s = scope(&c, "en");
        let pick = |q: &Queue, s: &mut Scope| {
            choose(
                q,
                &reps,
                &members,
                &[],
                &Ledger::default(),
                &BTreeMap::new(),
                s,
                Timestamp::UNIX_EPOCH,
            )
            .rep
        };
        assert_eq!(pick(&queue(&c, Strategy::LeastBusy, None), &mut s), Some(1));
        // Skill level is the id's length here: "carl" has 4.
        assert_eq!(pick(&queue(&c, Strategy::BestSkill, None), &mut s), Some(2));
    }

    #[test]
    fn a_team_file_is_read_and_checked() {
        let good = r#"
[[rep]]
id = "maya"
name = "Maya"
skills = { support = 7, sales = 4 }
languages = ["en", "fr"]
capacity = 3

[[rep]]
id = "raj"
on_call = true
"#;
        let team = parse_team(good, &BTreeMap::new()).expect("valid");
        assert_eq!(team.len(), 2);
        assert_eq!(team[0].0, "maya");
        assert_eq!(team[0].1.skills.get("support"), Some(&7));
        assert_eq!(team[1].1.capacity, 1);
        let bad = r#"
[[rep]]
name = "no id"
[[rep]]
id = "x"
skillz = {}
[[rep]]
id = "y"
capacity = 0
[[rep]]
id = "z"
hours = "nowhere"
"#;
        let errs = parse_team(bad, &BTreeMap::new()).expect_err("invalid");
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[1].contains("skillz"), "{errs:?}");
        assert!(errs[3].contains("nowhere"), "{errs:?}");
    }

    #[test]
    fn eta_grows_with_the_queue_and_needs_a_free_place() {
        let t = SignedDuration::from_secs(60);
        assert_eq!(eta_seconds(0, 0, None, t), None);
        assert_eq!(
            eta_seconds(0, 2, Some(SignedDuration::from_secs(20)), t),
            Some(20)
        );
        assert_eq!(
            eta_seconds(4, 2, Some(SignedDuration::from_secs(20)), t),
            Some(60)
        );
    }

    #[test]
    fn slots_skip_booked_meetings() {
        let r = rep("a", &[], 1, 0).rep;
        let from = Timestamp::from_second(3600).expect("ts");
        let booked = [(
            Timestamp::from_second(5400).expect("ts"),
            Timestamp::from_second(7200).expect("ts"),
        )];
        let got = slots(
            &[(&r, &booked[..])],
            &BTreeMap::new(),
            from,
            SignedDuration::from_mins(30),
            3,
            SignedDuration::from_hours(24),
        );
        let starts: Vec<i64> = got.iter().map(|(t, _)| t.as_second()).collect();
        assert_eq!(starts, [7200, 9000, 10800]);
    }
}
