//! Routing and offers (SPEC §6, §7): reps and presence, offers with accept timeouts, targets
//! with timeouts, SLA clocks, fallbacks, the live streams.
//!
//! One router per node. Its state (reps, open handoffs, the fairness ledger) lives in memory
//! behind one lock, and every step is stored with [`Store::apply`] before the lock is released,
//! so memory never runs ahead of the database; at start the state is rebuilt from the store.
//! Timers are rows: a restart loses none and fires late ones at once, and each fires once
//! ([`Store::finish_timer`]). The database also refuses a second pending offer for a handoff.
//! Routing from several nodes at once over one PostgreSQL is not supported yet: each node
//! would keep its own view of the reps' load.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::policy::Policy;
use baton_core::routing::{
    self, Fallback, HandoffFacts, Ledger, Presence, Reason, Rep, RepState, Routing,
};
use baton_store::{
    Applied, HandoffChange, MeetingRow, OfferRow, RoutingChange, StateChange, Store, TimerRow,
};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{ApiError, App, authenticate, body_bytes, parse_json, valid_id};

/// Timer kinds.
const ACCEPT: &str = "accept";
const TARGET: &str = "target";
const SLA_ACCEPT: &str = "sla_accept";
const SLA_FIRST_MESSAGE: &str = "sla_first_message";
const PRESENCE: &str = "presence";

/// How long a node holds a claimed timer before another may take it.
const LEASE_MS: i64 = 30_000;

/// A stream event as it is pushed to listeners.
#[derive(Debug, Clone)]
pub(crate) struct Pushed {
    pub seq: i64,
    pub stream: String,
    pub kind: String,
    pub data: String,
}

/// The router's record of a handoff, stored as the handoff's `routing` JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Doc {
    pub conversation_id: String,
    pub epoch: i64,
    pub facts: HandoffFacts,
    pub priority: i64,
    pub created_ms: i64,
    pub route: Option<String>,
    pub target: usize,
    pub target_since_ms: i64,
    /// Reps who declined or missed it at the current target.
    pub tried: Vec<String>,
    /// Reps it was taken back from (accepted, then silent past the first-message SLA): never
    /// offered it again, at any target.
    #[serde(default)]
    pub passed_over: Vec<String>,
    pub offer: Option<String>,
    pub rep: Option<String>,
    pub accepted_ms: Option<i64>,
    pub first_message_ms: Option<i64>,
    pub sla_breaches: Vec<String>,
    /// The ETA promised to the visitor, seconds, and when.
    pub eta_promised: Option<(u64, i64)>,
    /// Whether it was kept: a rep accepted within it (`true`), or the handoff went to a
    /// fallback or was taken by nobody in time (`false`). `None` while still open.
    #[serde(default)]
    pub eta_kept: Option<bool>,
    pub fallback: Option<String>,
    pub slots: Vec<(i64, String)>,
    pub outcome: Option<serde_json::Value>,
    pub note: Option<String>,
    /// Every step, for the handoff's decision trace.
    pub trace: Vec<serde_json::Value>,
}

/// An open handoff in memory.
#[derive(Debug, Clone)]
struct Open {
    id: String,
    state: String,
    doc: Doc,
}

impl Open {
    /// A handoff just created by a decision, in `state`.
    fn new(
        id: &str,
        state: &str,
        conversation_id: &str,
        epoch: i64,
        facts: HandoffFacts,
        at: i64,
    ) -> Open {
        Open {
            id: id.to_string(),
            state: state.to_string(),
            doc: Doc {
                conversation_id: conversation_id.to_string(),
                epoch,
                priority: facts.priority,
                facts,
                created_ms: at,
                target_since_ms: at,
                ..Doc::default()
            },
        }
    }
}

/// The first route that takes the handoff, every route evaluated traced as `routed`.
fn route_of(policy: &Policy, o: &mut Open, at: i64) -> Option<usize> {
    let routing = &policy.routing;
    let (chosen, evals) = match policy.routing_compiler.scope(
        [("handoff".to_string(), o.doc.facts.value())],
        policy.calendars.clone(),
        ts(at),
    ) {
        Ok(s) => routing::route(routing, &s),
        Err(_) => (None, Vec::new()),
    };
    trace(
        o,
        at,
        "routed",
        json!({"routes": evals, "route": chosen.map(|i| routing.routes[i].id.clone())}),
    );
    chosen
}

#[derive(Default)]
struct RouterState {
    loaded: bool,
    reps: Vec<RepState>,
    heartbeat_ms: BTreeMap<String, i64>,
    missed: BTreeMap<String, i64>,
    ledger: Ledger,
    open: BTreeMap<String, Open>,
    /// Queue id → membership per rep, for the policy hash and reps they were computed for.
    members: BTreeMap<String, Vec<bool>>,
    members_key: String,
    /// Recent accept times (ms), for the ETA.
    accept_times: Vec<i64>,
    /// The handoffs queued at each queue, in the order they are offered: built when first
    /// needed for a policy, then kept up to date as handoffs change (rebuilding it for every
    /// new handoff, or counting by scanning every open handoff, made routing quadratic).
    waiting: Option<Waiting>,
    /// Handoffs loaded from the store before any router step named them (created, not yet
    /// routed): `route_new` still routes them.
    unrouted: std::collections::BTreeSet<String>,
}

/// Handoffs queued per queue, most urgent then oldest first, for one policy.
#[derive(Default)]
struct Waiting {
    policy: String,
    by_queue: std::collections::HashMap<String, std::collections::BTreeSet<WaitKey>>,
    /// Handoff id → the queue and key it is filed under.
    filed: std::collections::HashMap<String, (String, WaitKey)>,
    /// Handoffs changed since the index was last brought up to date.
    dirty: Vec<String>,
}

/// Higher priority first, then older, then by id (for a total order).
type WaitKey = (std::cmp::Reverse<i64>, i64, String);

fn wait_key(o: &Open) -> WaitKey {
    (
        std::cmp::Reverse(o.doc.priority),
        o.doc.created_ms,
        o.id.clone(),
    )
}

impl Waiting {
    fn file(&mut self, routing: &Routing, o: &Open) {
        if o.state != "queued" {
            return;
        }
        if let Some(q) = current_queue(routing, o) {
            let key = wait_key(o);
            self.by_queue
                .entry(q.to_string())
                .or_default()
                .insert(key.clone());
            self.filed.insert(o.id.clone(), (q.to_string(), key));
        }
    }

    fn unfile(&mut self, id: &str) {
        if let Some((q, key)) = self.filed.remove(id)
            && let Some(set) = self.by_queue.get_mut(&q)
        {
            set.remove(&key);
        }
    }
}

impl RouterState {
    fn put(&mut self, id: String, o: Open) {
        if let Some(w) = &mut self.waiting {
            w.dirty.push(id.clone());
        }
        self.open.insert(id, o);
    }

    fn take(&mut self, id: &str) {
        if let Some(w) = &mut self.waiting {
            w.dirty.push(id.to_string());
        }
        self.open.remove(id);
    }

    /// The waiting index, up to date for `policy`.
    fn waiting(&mut self, policy: &Policy) -> &Waiting {
        if self
            .waiting
            .as_ref()
            .is_none_or(|w| w.policy != policy.hash)
        {
            let mut w = Waiting {
                policy: policy.hash.clone(),
                ..Waiting::default()
            };
            for o in self.open.values() {
                w.file(&policy.routing, o);
            }
            self.waiting = Some(w);
        }
        let open = &self.open;
        let Some(w) = self.waiting.as_mut() else {
            unreachable!("the index was just built")
        };
        for id in std::mem::take(&mut w.dirty) {
            w.unfile(&id);
            if let Some(o) = open.get(&id) {
                w.file(&policy.routing, o);
            }
        }
        w
    }

    /// How many handoffs are queued at `queue`.
    fn waiting_count(&mut self, policy: &Policy, queue: &str) -> usize {
        self.waiting(policy)
            .by_queue
            .get(queue)
            .map_or(0, std::collections::BTreeSet::len)
    }

    /// How many handoffs queued at `queue` come before `o` (more urgent, or as urgent and
    /// older).
    fn waiting_ahead(&mut self, policy: &Policy, queue: &str, o: &Open) -> usize {
        let own = (
            std::cmp::Reverse(o.doc.priority),
            o.doc.created_ms,
            String::new(),
        );
        self.waiting(policy)
            .by_queue
            .get(queue)
            .map_or(0, |set| set.range(..own).count())
    }
}

/// The node's router.
pub(crate) struct Router {
    state: tokio::sync::Mutex<RouterState>,
    /// The routing version (see [`baton_store::RoutingLock`]) the state reflects: the one read
    /// when it was loaded, plus one for each change this node stored since. Another node's
    /// change makes the stored version differ, and the state is loaded again.
    version: std::sync::atomic::AtomicI64,
    /// Other nodes share the store: live streams read their events from it.
    shared: std::sync::atomic::AtomicBool,
    /// New handoffs waiting for the router (see `handoff_created`).
    pending: std::sync::Mutex<Vec<Open>>,
    pub wake: tokio::sync::Notify,
    pub events: tokio::sync::broadcast::Sender<Pushed>,
}

impl Router {
    /// This node stored a change to routing state.
    fn wrote(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The router state, held by this node alone: its own lock, and where nodes share the store,
/// the store's routing lock (released when this is dropped).
struct RouterGuard<'a> {
    st: tokio::sync::MutexGuard<'a, RouterState>,
    _shared: Option<baton_store::RoutingLock>,
}

impl std::ops::Deref for RouterGuard<'_> {
    type Target = RouterState;
    fn deref(&self) -> &RouterState {
        &self.st
    }
}

impl std::ops::DerefMut for RouterGuard<'_> {
    fn deref_mut(&mut self) -> &mut RouterState {
        &mut self.st
    }
}

impl Router {
    pub fn new() -> Router {
        Router {
            state: tokio::sync::Mutex::new(RouterState::default()),
            version: std::sync::atomic::AtomicI64::new(-1),
            shared: std::sync::atomic::AtomicBool::new(false),
            pending: std::sync::Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            events: tokio::sync::broadcast::channel(4096).0,
        }
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn rfc3339(ms: i64) -> String {
    ts(ms).to_string()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What a step of the router stores, and whom to tell.
struct Step {
    change: RoutingChange,
}

impl Step {
    fn new(at_ms: i64) -> Step {
        Step {
            change: RoutingChange {
                at: rfc3339(at_ms),
                ..RoutingChange::default()
            },
        }
    }

    fn event(&mut self, stream: String, kind: &str, data: serde_json::Value) {
        self.change
            .events
            .push((stream, kind.to_string(), data.to_string()));
    }

    /// The conversation changes owner: its epoch moves on.
    fn own(&mut self, o: &mut Open, state: &str) {
        // A second change of the same conversation in one step keeps the first's expectation.
        match self
            .change
            .conversations
            .iter_mut()
            .find(|c| c.conversation_id == o.doc.conversation_id)
        {
            Some(c) => {
                c.state = state.to_string();
                c.epoch = o.doc.epoch + 1;
            }
            None => self.change.conversations.push(StateChange {
                conversation_id: o.doc.conversation_id.clone(),
                expected_epoch: o.doc.epoch,
                state: state.to_string(),
                epoch: o.doc.epoch + 1,
            }),
        }
        o.doc.epoch += 1;
        let stream = format!("conversation:{}", o.doc.conversation_id);
        self.event(
            stream,
            "state",
            json!({"state": state, "epoch": o.doc.epoch, "handoff_id": o.id}),
        );
    }

    fn handoff(&mut self, o: &Open) {
        let row = HandoffChange {
            id: o.id.clone(),
            state: o.state.clone(),
            routing: serde_json::to_string(&o.doc).unwrap_or_else(|_| "{}".into()),
            eta_promised: o.doc.eta_promised.map(|(e, _)| e as i64),
            eta_kept: o.doc.eta_kept,
        };
        match self.change.handoffs.iter_mut().find(|h| h.id == o.id) {
            Some(h) => *h = row,
            None => self.change.handoffs.push(row),
        }
    }
}

fn trace(o: &mut Open, at_ms: i64, step: &str, detail: serde_json::Value) {
    let mut v = json!({"at": rfc3339(at_ms), "step": step});
    if let (Some(m), serde_json::Value::Object(d)) = (v.as_object_mut(), detail) {
        m.extend(d);
    }
    o.doc.trace.push(v);
}

impl<S: Store> App<S> {
    /// Stores a router step; on success pushes its stream events and moves the owner of the
    /// cached conversations it changed.
    async fn store_step(&self, step: Step) -> Result<bool, ApiError> {
        match self.store.apply(&step.change).await? {
            Applied::Done { events } => {
                self.router.wrote();
                for c in &step.change.conversations {
                    crate::conversations::owner_moved(
                        self,
                        &c.conversation_id,
                        c.expected_epoch,
                        &c.state,
                        c.epoch,
                    );
                }
                for (seq, (stream, kind, data)) in events.into_iter().zip(step.change.events) {
                    let _ = self.router.events.send(Pushed {
                        seq,
                        stream,
                        kind,
                        data,
                    });
                }
                self.router.wake.notify_one();
                Ok(true)
            }
            Applied::Conflict => Ok(false),
        }
    }

    /// Stores a step with the handoffs it changed, then keeps in memory those still open and
    /// forgets the settled ones; on a conflict nothing is kept and the state is reloaded at the
    /// next use.
    async fn settle(
        &self,
        st: &mut RouterState,
        mut step: Step,
        opens: Vec<Open>,
    ) -> Result<bool, ApiError> {
        for o in &opens {
            step.handoff(o);
        }
        if !self.store_step(step).await? {
            st.loaded = false;
            return Ok(false);
        }
        for o in opens {
            if matches!(o.state.as_str(), "queued" | "offered" | "human") {
                st.put(o.id.clone(), o);
            } else {
                st.take(&o.id);
            }
        }
        Ok(true)
    }

    /// The router state, loaded from the store once, and again whenever another node changed
    /// routing state since (nodes sharing PostgreSQL take turns through the store's lock).
    async fn router_state(&self) -> Result<RouterGuard<'_>, ApiError> {
        use std::sync::atomic::Ordering::SeqCst;
        let mut st = self.router.state.lock().await;
        let shared = self.store.routing_lock().await?;
        if let Some(l) = &shared
            && l.version != self.router.version.load(SeqCst)
        {
            st.loaded = false;
        }
        if !st.loaded {
            if let Some(l) = &shared {
                // Read before the state: a change made meanwhile only causes another load.
                self.router.version.store(l.version, SeqCst);
            }
            let reps = self.store.reps().await?;
            st.reps.clear();
            for r in reps {
                let rep: Rep = serde_json::from_str(&r.attrs).map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        &format!("stored rep {} is unreadable: {e}", r.id),
                    )
                })?;
                st.heartbeat_ms.insert(r.id.clone(), r.heartbeat_ms);
                st.missed.insert(r.id.clone(), r.missed);
                let mut state = RepState::new(&r.id, rep);
                state.presence = Presence::parse(&r.presence).unwrap_or(Presence::Offline);
                st.reps.push(state);
            }
            st.open.clear();
            st.unrouted.clear();
            st.waiting = None;
            for (h, doc) in self.store.open_handoffs().await? {
                let mut doc: Doc = serde_json::from_str(&doc).unwrap_or_default();
                if doc.conversation_id.is_empty() {
                    // Created before routing knew it: take it from the handoff row.
                    st.unrouted.insert(h.id.clone());
                    doc.conversation_id = h.conversation_id.clone();
                    doc.created_ms = h
                        .created_at
                        .parse::<Timestamp>()
                        .map_or_else(|_| now_ms(), |t| t.as_millisecond());
                    doc.priority = h.priority.unwrap_or(0);
                    if let Some(c) = self
                        .store
                        .conversation(&h.conversation_id, baton_store::Detail::ForDecision)
                        .await?
                    {
                        doc.epoch = c.epoch;
                    }
                }
                let holder = if h.state == "human" {
                    doc.rep.clone()
                } else {
                    None
                };
                if let Some(rep) = holder
                    && let Some(r) = st.reps.iter_mut().find(|r| r.id == rep)
                {
                    r.load += 1;
                }
                st.put(
                    h.id.clone(),
                    Open {
                        id: h.id,
                        state: h.state,
                        doc,
                    },
                );
            }
            // The ledger starts again from the pending offers (a reload must not count them
            // twice).
            st.ledger = Ledger::default();
            for o in self.store.offers(None).await? {
                if let Some(r) = st.reps.iter_mut().find(|r| r.id == o.rep_id) {
                    r.load += 1;
                    r.last_offer = Some(ts(o.offered_ms));
                }
                st.ledger.record(&o.queue, &o.rep_id, ts(o.offered_ms));
            }
            forget_members(&mut st);
            st.loaded = true;
        }
        // Whoever reads the state sees each rep's queues for the policy now active.
        refresh_members(&mut st, &self.engine().policy);
        Ok(RouterGuard {
            st,
            _shared: shared,
        })
    }
}

/// Membership of every rep in every queue, for the policy it was computed for: recomputed when
/// the policy changes, and after [`forget_members`] (the reps changed).
fn refresh_members(st: &mut RouterState, policy: &Policy) {
    if st.members_key == policy.hash {
        return;
    }
    st.members.clear();
    for q in &policy.routing.queues {
        let mut row = Vec::with_capacity(st.reps.len());
        for r in &st.reps {
            let ok = match &q.members {
                None => true,
                Some(m) => policy
                    .routing_compiler
                    .scope(
                        [("rep".to_string(), r.value())],
                        policy.calendars.clone(),
                        Timestamp::now(),
                    )
                    .and_then(|s| s.eval_bool(m))
                    .unwrap_or(false),
            };
            row.push(ok);
        }
        st.members.insert(q.id.clone(), row);
    }
    st.members_key = policy.hash.clone();
}

/// Forces membership to be recomputed (a rep's attributes changed).
fn forget_members(st: &mut RouterState) {
    st.members.clear();
    st.members_key.clear();
}

/// Whether this node's router state holds what a timer is about.
fn knows(st: &RouterState, t: &TimerRow) -> bool {
    match t.kind.as_str() {
        ACCEPT => st
            .open
            .values()
            .any(|o| o.doc.offer.as_deref() == Some(t.subject.as_str())),
        PRESENCE => {
            let rep = t.subject.trim_start_matches("presence#");
            st.reps.iter().any(|r| r.id == rep)
        }
        _ => {
            let id = t.subject.split('#').next().unwrap_or_default();
            st.open.contains_key(id)
        }
    }
}

/// Time after `from` at which `d` of SLA time has passed, in the queue's calendar if any.
fn sla_due(policy: &Policy, hours: &Option<String>, from: Timestamp, d: SignedDuration) -> i64 {
    match hours.as_ref().and_then(|h| policy.calendars.get(h)) {
        Some(c) => c
            .add_open_duration(from, d)
            .map_or(from.as_millisecond() + d.as_millis() as i64, |t| {
                t.as_millisecond()
            }),
        None => from.as_millisecond() + d.as_millis() as i64,
    }
}

impl<S: Store> App<S> {
    /// A handoff was created by a decision: route it. Handoffs created while the router is
    /// busy wait in `pending` and are routed together, in one stored step (one sync to disk for
    /// the lot); if that step conflicts, each is routed on its own.
    pub(crate) async fn handoff_created(
        &self,
        handoff_id: &str,
        conversation_id: &str,
        epoch: i64,
        facts: HandoffFacts,
        eta_promised: Option<u64>,
    ) -> Result<(), ApiError> {
        let at = now_ms();
        let mut o = Open::new(handoff_id, "queued", conversation_id, epoch, facts, at);
        // The promise made in the decision's answer, kept or not at acceptance.
        o.doc.eta_promised = eta_promised.map(|e| (e, at));
        match self.router.pending.lock() {
            Ok(mut p) => p.push(o),
            Err(poisoned) => poisoned.into_inner().push(o),
        }
        let mut st = self.router_state().await?;
        let batch: Vec<Open> = match self.router.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        if batch.is_empty() {
            // Routed by whoever held the router meanwhile.
            return Ok(());
        }
        if self.route_new(&mut st, batch.clone()).await? {
            return Ok(());
        }
        for o in batch {
            if !st.loaded {
                drop(st);
                st = self.router_state().await?;
            }
            // Still a conflict: the conversation moved; the next look at it routes again.
            self.route_new(&mut st, vec![o]).await?;
        }
        Ok(())
    }

    /// Routes new handoffs in one stored step; false if it conflicted (nothing stored, the
    /// in-memory state marked for reloading).
    /// A handoff the decision itself turned into a meeting offer or a follow-up (an off-hours
    /// trigger): no rep is offered it, but its record names the route it would take and, for a
    /// meeting, the soonest slots with the reps who could take it, which the visitor's stream
    /// hears of.
    pub(crate) async fn handoff_scheduled(
        &self,
        handoff_id: &str,
        conversation_id: &str,
        epoch: i64,
        facts: HandoffFacts,
        how: Fallback,
    ) -> Result<(), ApiError> {
        let engine = self.engine();
        let policy = &engine.policy;
        let mut st = self.router_state().await?;
        let at = now_ms();
        let state = how.state().as_str();
        let mut o = Open::new(handoff_id, state, conversation_id, epoch, facts, at);
        o.doc.route = route_of(policy, &mut o, at).map(|i| policy.routing.routes[i].id.clone());
        let mut step = Step::new(at);
        announce_fallback(&mut st, policy, &mut o, how, "policy", at, &mut step);
        step.handoff(&o);
        self.store_step(step).await?;
        Ok(())
    }

    async fn route_new(&self, st: &mut RouterState, batch: Vec<Open>) -> Result<bool, ApiError> {
        let engine = self.engine();
        let routing = engine.policy.routing.clone();
        let at = now_ms();
        let mut step = Step::new(at);
        let mut routed = Vec::new();
        for mut o in batch {
            // Routed already, unless the state was loaded between its commit and now.
            if st.open.contains_key(&o.id) && !st.unrouted.remove(&o.id) {
                continue;
            }
            if routing.routes.is_empty() {
                trace(
                    &mut o,
                    at,
                    "unrouted",
                    json!({"why": "the policy has no [[route]]"}),
                );
            } else if !engine.policy.calendar_open(&routing.hours, ts(at)) {
                self.fallback(
                    st,
                    &engine.policy,
                    &mut o,
                    routing.after_hours,
                    "after_hours",
                    at,
                    &mut step,
                );
            } else {
                match route_of(&engine.policy, &mut o, at) {
                    Some(i) => {
                        o.doc.route = Some(routing.routes[i].id.clone());
                        o.doc.target = 0;
                        self.enter_target(st, &engine.policy, &mut o, at, &mut step);
                    }
                    None => self.fallback(
                        st,
                        &engine.policy,
                        &mut o,
                        routing.unattended,
                        "no_route",
                        at,
                        &mut step,
                    ),
                }
            }
            routed.push(o);
        }
        if routed.is_empty() {
            return Ok(true);
        }
        self.settle(st, step, routed).await
    }

    /// The handoff arrives at its current target: start the target's clocks, then offer.
    fn enter_target(
        &self,
        st: &mut RouterState,
        policy: &Policy,
        o: &mut Open,
        at: i64,
        step: &mut Step,
    ) {
        let routing = &policy.routing;
        let Some(route) = o
            .doc
            .route
            .as_ref()
            .and_then(|r| routing.routes.iter().find(|x| &x.id == r))
        else {
            return;
        };
        loop {
            let Some(target) = route.targets.get(o.doc.target) else {
                self.fallback(
                    st,
                    policy,
                    o,
                    routing.unattended,
                    "targets_exhausted",
                    at,
                    step,
                );
                return;
            };
            let queue = &routing.queues[target.queue];
            o.doc.target_since_ms = at;
            o.doc.tried.clone_from(&o.doc.passed_over);
            if let Some(p) = target.priority {
                o.doc.priority = p;
            }
            if let Some(skip) = &target.skip_if {
                refresh_members(st, policy);
                let available = self.available(st, policy, &queue.id, o, at);
                let waiting = st.waiting_count(policy, &queue.id);
                let skip_now = policy
                    .routing_compiler
                    .scope(
                        [
                            ("handoff".to_string(), o.doc.facts.value()),
                            (
                                "queue".to_string(),
                                routing::queue_value(&queue.id, available, waiting),
                            ),
                        ],
                        policy.calendars.clone(),
                        ts(at),
                    )
                    .and_then(|s| s.eval_bool(skip))
                    .unwrap_or(false);
                if skip_now {
                    trace(
                        o,
                        at,
                        "skipped",
                        json!({"target": o.doc.target, "queue": queue.id, "available": available, "waiting": waiting}),
                    );
                    o.doc.target += 1;
                    continue;
                }
            }
            trace(
                o,
                at,
                "target",
                json!({"target": o.doc.target, "queue": queue.id, "timeout_s": target.timeout.as_secs()}),
            );
            step.change.cancel_timers.push(format!("{}#target", o.id));
            step.change.timers.push(TimerRow {
                id: new_id(),
                kind: TARGET.into(),
                subject: format!("{}#target", o.id),
                due_ms: at + target.timeout.as_millis() as i64,
            });
            if let Some(sla) = queue.sla_accept
                && o.doc.target == 0
            {
                step.change.timers.push(TimerRow {
                    id: new_id(),
                    kind: SLA_ACCEPT.into(),
                    subject: format!("{}#sla", o.id),
                    due_ms: sla_due(policy, &queue.sla_hours, ts(o.doc.created_ms), sla),
                });
            }
            self.offer_next(st, policy, o, at, step);
            return;
        }
    }

    /// Members of a queue who could take this handoff now.
    fn available(
        &self,
        st: &RouterState,
        policy: &Policy,
        queue: &str,
        o: &Open,
        at: i64,
    ) -> usize {
        let Some(q) = policy
            .routing
            .queue(queue)
            .map(|i| &policy.routing.queues[i])
        else {
            return 0;
        };
        let Some(members) = st.members.get(queue) else {
            return 0;
        };
        let Ok(mut scope) = policy.routing_compiler.scope(
            [("handoff".to_string(), o.doc.facts.value())],
            policy.calendars.clone(),
            ts(at),
        ) else {
            return 0;
        };
        routing::choose(
            q,
            &st.reps,
            members,
            &o.doc.tried,
            &st.ledger,
            &policy.calendars,
            &mut scope,
            ts(at),
        )
        .eligible()
    }

    /// Offers the handoff to the next rep of its current target, or leaves it waiting.
    fn offer_next(
        &self,
        st: &mut RouterState,
        policy: &Policy,
        o: &mut Open,
        at: i64,
        step: &mut Step,
    ) {
        let Some(queue) = current_queue(&policy.routing, o).map(str::to_string) else {
            return;
        };
        let Some(q) = policy
            .routing
            .queue(&queue)
            .map(|i| &policy.routing.queues[i])
        else {
            return;
        };
        refresh_members(st, policy);
        let members = st.members.get(&queue).cloned().unwrap_or_default();
        let Ok(mut scope) = policy.routing_compiler.scope(
            [("handoff".to_string(), o.doc.facts.value())],
            policy.calendars.clone(),
            ts(at),
        ) else {
            return;
        };
        let choice = routing::choose(
            q,
            &st.reps,
            &members,
            &o.doc.tried,
            &st.ledger,
            &policy.calendars,
            &mut scope,
            ts(at),
        );
        let considered: Vec<serde_json::Value> = choice
            .considered
            .iter()
            .map(|c| json!({"rep": st.reps[c.rep].id, "reason": c.reason.to_string(), "eligible": matches!(c.reason, Reason::Chosen | Reason::RankedLower)}))
            .collect();
        let Some(i) = choice.rep else {
            let eta = self.eta(st, policy, &queue, o, at);
            trace(
                o,
                at,
                "waiting",
                json!({"queue": queue, "considered": considered, "eta_seconds": eta}),
            );
            if o.state != "queued" {
                o.state = "queued".into();
                step.own(o, "queued");
            }
            if let (Some(e), None) = (eta, o.doc.eta_promised) {
                o.doc.eta_promised = Some((e, at));
            }
            step.event(
                format!("conversation:{}", o.doc.conversation_id),
                "eta",
                json!({"handoff_id": o.id, "eta_seconds": eta, "queue": queue}),
            );
            return;
        };
        let offer = OfferRow {
            id: new_id(),
            handoff_id: o.id.clone(),
            rep_id: st.reps[i].id.clone(),
            queue: queue.clone(),
            state: "pending".into(),
            offered_ms: at,
            answered_ms: None,
        };
        st.reps[i].load += 1;
        st.reps[i].last_offer = Some(ts(at));
        st.ledger.record(&queue, &offer.rep_id, ts(at));
        o.doc.offer = Some(offer.id.clone());
        trace(
            o,
            at,
            "offered",
            json!({"queue": queue, "rep": offer.rep_id, "offer_id": offer.id, "strategy": q.strategy.as_str(), "considered": considered, "accept_timeout_s": q.accept_timeout.as_secs()}),
        );
        step.change.timers.push(TimerRow {
            id: new_id(),
            kind: ACCEPT.into(),
            subject: offer.id.clone(),
            due_ms: at + q.accept_timeout.as_millis() as i64,
        });
        step.event(
            format!("rep:{}", offer.rep_id),
            "offer",
            json!({"offer_id": offer.id, "handoff_id": o.id, "conversation_id": o.doc.conversation_id, "queue": queue, "trigger": o.doc.facts.trigger, "reason": o.doc.facts.reason, "priority": o.doc.priority, "expires_at": rfc3339(at + q.accept_timeout.as_millis() as i64)}),
        );
        step.change.offers.push(offer);
        if o.state != "offered" {
            o.state = "offered".into();
            step.own(o, "offered");
        }
    }

    /// Seconds until a rep is likely to accept, from live state.
    fn eta(
        &self,
        st: &mut RouterState,
        policy: &Policy,
        queue: &str,
        o: &Open,
        at: i64,
    ) -> Option<u64> {
        let q = policy
            .routing
            .queue(queue)
            .map(|i| &policy.routing.queues[i])?;
        let members = st.members.get(queue)?;
        // Places free now: available members at work, less what they already hold.
        let free: usize = st
            .reps
            .iter()
            .zip(members)
            .filter(|(r, m)| {
                **m && r.presence == Presence::Available
                    && routing::working(r.rep(), &policy.calendars, ts(at))
            })
            .map(|(r, _)| r.rep().capacity.saturating_sub(r.load) as usize)
            .sum();
        let ahead = st.waiting_ahead(policy, queue, o);
        let mean = (!st.accept_times.is_empty()).then(|| {
            SignedDuration::from_millis(
                st.accept_times.iter().sum::<i64>() / st.accept_times.len() as i64,
            )
        });
        routing::eta_seconds(ahead, free, mean, q.accept_timeout)
    }

    /// No live handoff: offer meeting slots or an e-mail follow-up, and say so.
    #[allow(clippy::too_many_arguments)]
    fn fallback(
        &self,
        st: &mut RouterState,
        policy: &Policy,
        o: &mut Open,
        how: Fallback,
        why: &str,
        at: i64,
        step: &mut Step,
    ) {
        let state = how.state().as_str();
        o.state = state.into();
        step.change.cancel_timers.push(format!("{}#target", o.id));
        step.change.cancel_timers.push(format!("{}#sla", o.id));
        step.own(o, state);
        announce_fallback(st, policy, o, how, why, at, step);
    }
}

/// Records a fallback in the handoff and tells the visitor's stream: for a meeting, with the
/// soonest slots. Slots here are computed inside a router step, without reading the reps'
/// meetings; `GET /slots` reads them, and booking refuses a taken slot.
#[allow(clippy::too_many_arguments)]
fn announce_fallback(
    st: &mut RouterState,
    policy: &Policy,
    o: &mut Open,
    how: Fallback,
    why: &str,
    at: i64,
    step: &mut Step,
) {
    o.doc.fallback = Some(how.as_str().to_string());
    if o.doc.eta_promised.is_some() && o.doc.eta_kept.is_none() {
        // The visitor was told a person would come; none did.
        o.doc.eta_kept = Some(false);
    }
    if how == Fallback::Schedule {
        refresh_members(st, policy);
        let reps = meeting_reps(st, policy, o, at);
        o.doc.slots = slots_for(st, policy, &reps, at, 3, &BTreeMap::new());
    }
    let slots: Vec<serde_json::Value> = o
        .doc
        .slots
        .iter()
        .map(|(t, r)| slot_json(*t, None, r, &o.doc.facts))
        .collect();
    trace(
        o,
        at,
        "fallback",
        json!({"action": how.as_str(), "why": why, "slots": slots}),
    );
    step.event(
        format!("conversation:{}", o.doc.conversation_id),
        "fallback",
        json!({"handoff_id": o.id, "action": how.as_str(), "why": why, "slots": slots}),
    );
}

/// A slot as the visitor and the API see it: UTC, and local time in the visitor's time zone
/// (contact `time_zone`) when it is known.
fn slot_json(
    start_ms: i64,
    end_ms: Option<i64>,
    rep: &str,
    facts: &HandoffFacts,
) -> serde_json::Value {
    let mut v = json!({"start": rfc3339(start_ms), "rep": rep});
    if let Some(e) = end_ms {
        v["end"] = json!(rfc3339(e));
    }
    if let Some(tz) = facts
        .contact
        .get("time_zone")
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
    {
        let local = ts(start_ms).to_zoned(tz);
        v["local"] = json!(local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
        v["local_label"] = json!(local.strftime("%A %-d %B, %H:%M %Z").to_string());
        v["time_zone"] = json!(local.time_zone().iana_name().unwrap_or_default());
    }
    v
}

/// The soonest meeting slots with `reps` (indexes into `st.reps`, from [`meeting_reps`]),
/// clear of `booked` (meetings per rep id; a rep not in it counts as free).
fn slots_for(
    st: &RouterState,
    policy: &Policy,
    reps: &[usize],
    at: i64,
    count: usize,
    booked: &BTreeMap<String, Vec<(Timestamp, Timestamp)>>,
) -> Vec<(i64, String)> {
    let pairs: Vec<(&Rep, &[(Timestamp, Timestamp)])> = reps
        .iter()
        .map(|i| {
            let r = &st.reps[*i];
            (r.rep(), booked.get(&r.id).map_or(&[][..], Vec::as_slice))
        })
        .collect();
    routing::slots(
        &pairs,
        &policy.calendars,
        ts(at),
        policy.routing.slot,
        count,
        SignedDuration::from_hours(24 * 14),
    )
    .into_iter()
    .map(|(t, i)| (t.as_millisecond(), st.reps[reps[i]].id.clone()))
    .collect()
}

/// The reps a meeting about this handoff may be booked with: members of its route's queues
/// whose `match` suits it (indexes into `st.reps`).
fn meeting_reps(st: &RouterState, policy: &Policy, o: &Open, at: i64) -> Vec<usize> {
    if st.reps.is_empty() {
        return Vec::new();
    }
    let routing = &policy.routing;
    let scope = policy.routing_compiler.scope(
        [("handoff".to_string(), o.doc.facts.value())],
        policy.calendars.clone(),
        ts(at),
    );
    let route = o
        .doc
        .route
        .as_ref()
        .and_then(|r| routing.routes.iter().position(|x| &x.id == r))
        .or_else(|| {
            scope
                .as_ref()
                .ok()
                .and_then(|s| routing::route(routing, s).0)
        });
    let queues: Vec<&str> = route
        .map(|r| {
            routing.routes[r]
                .targets
                .iter()
                .map(|t| routing.queues[t.queue].id.as_str())
                .collect()
        })
        .unwrap_or_default();
    // Members of the route's queues whose `match` suits this handoff.
    let mut reps: Vec<usize> = Vec::new();
    let mut scope = scope.ok();
    for q in queues {
        let matches = routing
            .queue(q)
            .and_then(|i| routing.queues[i].matches.as_ref());
        if let Some(m) = st.members.get(q) {
            for (i, is) in m.iter().enumerate() {
                if !*is || reps.contains(&i) {
                    continue;
                }
                let suits = match (matches, scope.as_mut()) {
                    (None, _) => true,
                    (Some(e), Some(s)) => {
                        s.set("rep", st.reps[i].value());
                        s.eval_bool(e).unwrap_or(false)
                    }
                    (Some(_), None) => false,
                };
                if suits {
                    reps.push(i);
                }
            }
        }
    }
    reps
}

fn current_queue<'a>(routing: &'a Routing, o: &Open) -> Option<&'a str> {
    let route = routing
        .routes
        .iter()
        .find(|r| Some(&r.id) == o.doc.route.as_ref())?;
    let t = route.targets.get(o.doc.target)?;
    Some(routing.queues[t.queue].id.as_str())
}

impl<S: Store> App<S> {
    /// Seconds until a rep is likely to accept a new handoff with these facts, from the live
    /// state of its route's first queue; `None` when out of hours, unrouted, or nobody could
    /// take it now.
    pub(crate) async fn estimate_eta(&self, facts: &HandoffFacts) -> Option<u64> {
        let engine = self.engine();
        let policy = &engine.policy;
        let at = now_ms();
        if policy.routing.routes.is_empty() || !policy.calendar_open(&policy.routing.hours, ts(at))
        {
            return None;
        }
        // An estimate must not hold the turn up: if the router is busy storing a step for
        // longer than this, the answer says "shortly" instead.
        let mut st = tokio::time::timeout(std::time::Duration::from_millis(5), self.router_state())
            .await
            .ok()?
            .ok()?;
        let scope = policy
            .routing_compiler
            .scope(
                [("handoff".to_string(), facts.value())],
                policy.calendars.clone(),
                ts(at),
            )
            .ok()?;
        let route = routing::route(&policy.routing, &scope).0?;
        let o = Open {
            id: facts.id.clone(),
            state: "queued".into(),
            doc: Doc {
                facts: facts.clone(),
                priority: facts.priority,
                created_ms: at,
                route: Some(policy.routing.routes[route].id.clone()),
                ..Doc::default()
            },
        };
        let queue = current_queue(&policy.routing, &o)?.to_string();
        refresh_members(&mut st, policy);
        self.eta(&mut st, policy, &queue, &o, at)
    }
}

// ---- events from outside: reps, timers

impl<S: Store> App<S> {
    /// Offers waiting handoffs, most urgent and oldest first, to whoever can take them.
    async fn drain(&self, st: &mut RouterState) -> Result<(), ApiError> {
        let engine = self.engine();
        let mut waiting: Vec<(i64, i64, String)> = st
            .open
            .values()
            .filter(|o| o.state == "queued" && o.doc.route.is_some())
            .map(|o| (-o.doc.priority, o.doc.created_ms, o.id.clone()))
            .collect();
        waiting.sort();
        for (_, _, id) in waiting {
            let Some(mut o) = st.open.get(&id).cloned() else {
                continue;
            };
            let at = now_ms();
            let mut step = Step::new(at);
            self.offer_next(st, &engine.policy, &mut o, at, &mut step);
            if o.doc.offer.is_none() || o.state != "offered" {
                // Still nobody: do not store a waiting step for every rep change.
                continue;
            }
            if !self.settle(st, step, vec![o]).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A pending offer ends (declined or timed out): free the rep and offer the next one.
    async fn offer_ended(
        &self,
        st: &mut RouterState,
        offer: OfferRow,
        how: &str,
    ) -> Result<bool, ApiError> {
        let (offer_id, rep_id) = (offer.id.as_str(), offer.rep_id.as_str());
        let engine = self.engine();
        let Some(mut o) = st
            .open
            .values()
            .find(|o| o.doc.offer.as_deref() == Some(offer_id))
            .cloned()
        else {
            return Ok(false);
        };
        if o.state != "offered" {
            return Ok(false);
        }
        let at = now_ms();
        let mut step = Step::new(at);
        let offered_ms = offer.offered_ms;
        step.change.offers.push(OfferRow {
            state: how.to_string(),
            answered_ms: Some(at),
            ..offer.clone()
        });
        step.change.cancel_timers.push(offer_id.to_string());
        if let Some(r) = st.reps.iter_mut().find(|r| r.id == rep_id) {
            r.load = r.load.saturating_sub(1);
        }
        if how == "timed_out" {
            let missed = st.missed.entry(rep_id.to_string()).or_insert(0);
            *missed += 1;
            let missed = *missed;
            let away = missed >= i64::from(engine.policy.routing.missed_offers_away);
            let mut presence = Presence::Available.as_str();
            if let Some(r) = st.reps.iter_mut().find(|r| r.id == rep_id) {
                if away {
                    r.presence = Presence::Away;
                }
                presence = r.presence.as_str();
            }
            step.change
                .reps
                .push((rep_id.to_string(), presence.to_string(), missed));
            if away {
                step.event(format!("rep:{rep_id}"), "presence", json!({"presence": "away", "why": format!("{missed} offers in a row timed out")}));
            }
        } else {
            st.missed.insert(rep_id.to_string(), 0);
        }
        step.event(
            format!("rep:{rep_id}"),
            "offer_ended",
            json!({"offer_id": offer_id, "handoff_id": o.id, "how": how}),
        );
        trace(
            &mut o,
            at,
            how,
            json!({"rep": rep_id, "offer_id": offer_id, "after_ms": at - offered_ms}),
        );
        o.doc.tried.push(rep_id.to_string());
        o.doc.offer = None;
        self.offer_next(st, &engine.policy, &mut o, at, &mut step);
        self.settle(st, step, vec![o]).await
    }

    /// Fires one claimed timer.
    async fn fire(&self, t: &TimerRow) -> Result<(), ApiError> {
        let engine = self.engine();
        let mut st = self.router_state().await?;
        if !knows(&st, t) {
            // Another node may have made the handoff, the offer or the rep since this node
            // read its state: read it again, so that the timer this node claimed (it fires
            // once across nodes) still has its effect.
            st.loaded = false;
            drop(st);
            st = self.router_state().await?;
        }
        let at = now_ms();
        match t.kind.as_str() {
            ACCEPT => {
                // Only the offers of the handoff holding this one, not every pending offer.
                let Some(handoff) = st
                    .open
                    .values()
                    .find(|o| o.doc.offer.as_deref() == Some(t.subject.as_str()))
                    .map(|o| o.id.clone())
                else {
                    return Ok(());
                };
                let offer = self
                    .store
                    .offers(Some(&handoff))
                    .await?
                    .into_iter()
                    .find(|x| x.id == t.subject && x.state == "pending");
                if let Some(offer) = offer {
                    self.offer_ended(&mut st, offer, "timed_out").await?;
                }
            }
            TARGET => {
                let id = t.subject.trim_end_matches("#target").to_string();
                let Some(mut o) = st.open.get(&id).cloned() else {
                    return Ok(());
                };
                if !matches!(o.state.as_str(), "queued" | "offered") {
                    return Ok(());
                }
                let mut step = Step::new(at);
                self.cancel_offer(&mut st, &mut o, at, &mut step).await?;
                let target = o.doc.target;
                trace(&mut o, at, "target_timeout", json!({ "target": target }));
                o.doc.target += 1;
                self.enter_target(&mut st, &engine.policy, &mut o, at, &mut step);
                self.settle(&mut st, step, vec![o]).await?;
            }
            SLA_ACCEPT | SLA_FIRST_MESSAGE => {
                let id = t
                    .subject
                    .trim_end_matches("#sla")
                    .trim_end_matches("#first")
                    .to_string();
                let Some(mut o) = st.open.get(&id).cloned() else {
                    return Ok(());
                };
                let breached = if t.kind == SLA_ACCEPT {
                    o.state != "human"
                } else {
                    o.state == "human" && o.doc.first_message_ms.is_none()
                };
                if !breached {
                    return Ok(());
                }
                let mut step = Step::new(at);
                o.doc.sla_breaches.push(t.kind.clone());
                // Tell the on-call reps and the managers of the queue's reps.
                let mut told: Vec<String> = st
                    .reps
                    .iter()
                    .filter(|r| r.rep().on_call)
                    .map(|r| r.id.clone())
                    .collect();
                if let Some(rep) = &o.doc.rep
                    && let Some(m) = st
                        .reps
                        .iter()
                        .find(|r| &r.id == rep)
                        .and_then(|r| r.rep().manager.clone())
                {
                    told.push(m);
                }
                told.sort();
                told.dedup();
                trace(
                    &mut o,
                    at,
                    "sla_breached",
                    json!({"sla": t.kind, "notified": told}),
                );
                for r in &told {
                    step.event(format!("rep:{r}"), "sla_breached", json!({"handoff_id": o.id, "conversation_id": o.doc.conversation_id, "sla": t.kind}));
                }
                let mut freed = false;
                if t.kind == SLA_ACCEPT && matches!(o.state.as_str(), "queued" | "offered") {
                    // Escalate: the next target now.
                    self.cancel_offer(&mut st, &mut o, at, &mut step).await?;
                    o.doc.target += 1;
                    self.enter_target(&mut st, &engine.policy, &mut o, at, &mut step);
                } else if t.kind == SLA_FIRST_MESSAGE
                    && let Some(holder) = o.doc.rep.take()
                {
                    // The rep accepted but never wrote: the visitor is not left waiting on
                    // them. The handoff is taken back and goes to the route's next target.
                    trace(&mut o, at, "reassigned", json!({"from": holder}));
                    step.event(
                        format!("rep:{holder}"),
                        "reassigned",
                        json!({"handoff_id": o.id, "conversation_id": o.doc.conversation_id, "why": SLA_FIRST_MESSAGE}),
                    );
                    if let Some(r) = st.reps.iter_mut().find(|r| r.id == holder) {
                        r.load = r.load.saturating_sub(1);
                    }
                    o.doc.accepted_ms = None;
                    o.doc.passed_over.push(holder);
                    o.state = "queued".into();
                    step.own(&mut o, "queued");
                    o.doc.target += 1;
                    self.enter_target(&mut st, &engine.policy, &mut o, at, &mut step);
                    freed = true;
                }
                self.settle(&mut st, step, vec![o]).await?;
                if freed {
                    self.drain(&mut st).await?;
                }
            }
            PRESENCE => {
                let rep = t.subject.trim_start_matches("presence#").to_string();
                let beat = st.heartbeat_ms.get(&rep).copied().unwrap_or(0);
                let away_after = engine.policy.routing.away_after.as_millis() as i64;
                let silent = at - beat >= away_after;
                let available = st
                    .reps
                    .iter()
                    .any(|r| r.id == rep && r.presence == Presence::Available);
                if silent && available {
                    let mut step = Step::new(at);
                    if let Some(r) = st.reps.iter_mut().find(|r| r.id == rep) {
                        r.presence = Presence::Away;
                    }
                    let missed = st.missed.get(&rep).copied().unwrap_or(0);
                    step.change.reps.push((rep.clone(), "away".into(), missed));
                    step.event(
                        format!("rep:{rep}"),
                        "presence",
                        json!({"presence": "away", "why": "no heartbeat"}),
                    );
                    self.store_step(step).await?;
                } else if available {
                    let mut step = Step::new(at);
                    step.change.timers.push(TimerRow {
                        id: new_id(),
                        kind: PRESENCE.into(),
                        subject: format!("presence#{rep}"),
                        due_ms: beat + away_after,
                    });
                    self.store_step(step).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Withdraws a pending offer (the handoff moves on).
    async fn cancel_offer(
        &self,
        st: &mut RouterState,
        o: &mut Open,
        at: i64,
        step: &mut Step,
    ) -> Result<(), ApiError> {
        if let Some(offer_id) = o.doc.offer.take() {
            if let Some(offer) = self
                .store
                .offers(Some(&o.id))
                .await?
                .into_iter()
                .find(|x| x.id == offer_id)
            {
                if let Some(r) = st.reps.iter_mut().find(|r| r.id == offer.rep_id) {
                    r.load = r.load.saturating_sub(1);
                }
                step.event(
                    format!("rep:{}", offer.rep_id),
                    "offer_ended",
                    json!({"offer_id": offer.id, "handoff_id": o.id, "how": "cancelled"}),
                );
                step.change.offers.push(OfferRow {
                    state: "cancelled".into(),
                    answered_ms: Some(at),
                    ..offer
                });
            }
            step.change.cancel_timers.push(offer_id);
        }
        Ok(())
    }

    /// Fires due timers until none is left; returns when the next one is due.
    pub(crate) async fn fire_due(&self) -> Result<Option<i64>, ApiError> {
        loop {
            let at = now_ms();
            let due = self.store.claim_timers(at, at + LEASE_MS, 64).await?;
            if due.is_empty() {
                return Ok(self.store.next_timer().await?);
            }
            for t in &due {
                if let Err(e) = self.fire(t).await {
                    tracing::warn!(timer = %t.id, kind = %t.kind, "timer failed: {e:?}");
                    continue;
                }
                self.store.finish_timer(&t.id, at).await?;
            }
        }
    }
}

/// Where nodes share the store: forwards the other nodes' stream notices to this node's live
/// streams, which then read the new events from the store.
pub(crate) async fn spawn_notices<S: Store>(
    app: App<S>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ApiError> {
    let Some(mut notices) = app.store.stream_notices().await? else {
        return Ok(None);
    };
    app.router
        .shared
        .store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(Some(tokio::spawn(async move {
        while let Some((seq, stream)) = notices.recv().await {
            let _ = app.router.events.send(Pushed {
                seq,
                stream,
                kind: String::new(),
                data: String::new(),
            });
        }
    })))
}

/// Runs the node's timers until the process ends.
pub(crate) fn spawn_timers<S: Store>(app: App<S>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let next = match app.fire_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("timers: {e:?}");
                    Some(now_ms() + 1000)
                }
            };
            // Timers added by another node are found within a second.
            let wait = next.map_or(1000, |n| (n - now_ms()).clamp(0, 1000));
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait as u64)) => {}
                _ = app.router.wake.notified() => {}
            }
        }
    })
}

// ---- HTTP

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceBody {
    presence: String,
}

/// `PUT /v1/reps/{id}`: creates or replaces a rep's attributes.
pub(crate) async fn put_rep<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?.require_admin()?;
    valid_id(&id)?;
    let body = body_bytes(body)?;
    let rep: Rep = parse_json(&body, "a rep")?;
    let engine = app.engine();
    rep.validate(&engine.policy.calendars)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_rep", &m))?;
    let attrs = serde_json::to_string(&rep).unwrap_or_default();
    let mut st = app.router_state().await?;
    let at = now_ms();
    let row = app.store.put_rep(&id, &attrs, at, &rfc3339(at)).await?;
    app.router.wrote();
    match st.reps.iter_mut().find(|r| r.id == id) {
        Some(r) => r.set_rep(rep.clone()),
        None => {
            st.heartbeat_ms.insert(id.clone(), at);
            let mut state = RepState::new(&id, rep.clone());
            state.presence = Presence::parse(&row.presence).unwrap_or(Presence::Offline);
            st.reps.push(state);
        }
    }
    forget_members(&mut st);
    refresh_members(&mut st, &engine.policy);
    app.drain(&mut st).await?;
    Ok(axum::Json(rep_out(&st, &id)).into_response())
}

fn rep_out(st: &RouterState, id: &str) -> serde_json::Value {
    match st.reps.iter().find(|r| r.id == id) {
        Some(r) => json!({
            "id": r.id,
            "attributes": r.rep(),
            "presence": r.presence.as_str(),
            "load": r.load,
            "missed_offers": st.missed.get(id).copied().unwrap_or(0),
            "queues": st.members.iter().filter(|(_, m)| st.reps.iter().position(|x| x.id == id).is_some_and(|i| m.get(i).copied().unwrap_or(false))).map(|(q, _)| q.clone()).collect::<Vec<_>>(),
        }),
        None => json!(null),
    }
}

/// `GET /v1/reps/{id}`.
pub(crate) async fn get_rep<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?.require_rep(&id)?;
    valid_id(&id)?;
    let st = app.router_state().await?;
    if !st.reps.iter().any(|r| r.id == id) {
        return Err(ApiError::not_found("rep", &id));
    }
    Ok(axum::Json(rep_out(&st, &id)).into_response())
}

/// `GET /v1/reps`.
pub(crate) async fn list_reps<S: Store>(
    State(app): State<App<S>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    let st = app.router_state().await?;
    let reps: Vec<serde_json::Value> = st.reps.iter().map(|r| rep_out(&st, &r.id)).collect();
    Ok(axum::Json(json!({ "reps": reps })).into_response())
}

/// `PUT /v1/reps/{id}/presence`: available, busy, away, offline. Also the heartbeat.
pub(crate) async fn put_presence<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?.require_rep(&id)?;
    valid_id(&id)?;
    let body = body_bytes(body)?;
    let b: PresenceBody = parse_json(&body, "a presence")?;
    let presence = Presence::parse(&b.presence).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_presence",
            "presence must be available, busy, away or offline",
        )
        .field("presence")
    })?;
    let engine = app.engine();
    let mut st = app.router_state().await?;
    if !st.reps.iter().any(|r| r.id == id) {
        return Err(ApiError::not_found("rep", &id));
    }
    let at = now_ms();
    app.store
        .set_presence(&id, presence.as_str(), at, &rfc3339(at))
        .await?;
    app.router.wrote();
    st.heartbeat_ms.insert(id.clone(), at);
    st.missed.insert(id.clone(), 0);
    if let Some(r) = st.reps.iter_mut().find(|r| r.id == id) {
        r.presence = presence;
    }
    if presence == Presence::Available {
        let mut step = Step::new(at);
        step.change.cancel_timers.push(format!("presence#{id}"));
        step.change.timers.push(TimerRow {
            id: new_id(),
            kind: PRESENCE.into(),
            subject: format!("presence#{id}"),
            due_ms: at + engine.policy.routing.away_after.as_millis() as i64,
        });
        step.event(
            format!("rep:{id}"),
            "presence",
            json!({"presence": "available"}),
        );
        app.store_step(step).await?;
        app.drain(&mut st).await?;
    }
    Ok(axum::Json(rep_out(&st, &id)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActBody {
    /// The rep acting; taken from a rep key when omitted.
    rep: Option<String>,
    outcome: Option<String>,
    reason: Option<String>,
    converted: Option<bool>,
    value: Option<f64>,
    verdict: Option<String>,
    note: Option<String>,
}

const VERDICTS: [&str; 5] = ["right", "too_early", "too_late", "wrong_queue", "unneeded"];

/// The conversation's owner and epoch as stored now, for a 409 that has no fresher copy at
/// hand (every 409 names them); 404 if there is no such conversation.
async fn owner_now<S: Store>(app: &App<S>, conversation: &str) -> Result<(String, u64), ApiError> {
    app.store
        .conversation(conversation, baton_store::Detail::ForDecision)
        .await?
        .map(|c| (c.state, c.epoch.max(0) as u64))
        .ok_or_else(|| ApiError::not_found("conversation", conversation))
}

/// `POST /v1/handoffs/{id}/{accept|decline|resolve|hand-back}`.
pub(crate) async fn act<S: Store>(
    State(app): State<App<S>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&app, &headers).await?;
    valid_id(&id)?;
    let body = body_bytes(body)?;
    let b: ActBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActBody::default()
    } else {
        parse_json(&body, "a handoff action")?
    };
    let rep = match (&b.rep, caller.role.as_str()) {
        (Some(r), _) => r.clone(),
        (None, "rep") => caller.name.clone(),
        (None, _) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_field",
                "name the acting rep: {\"rep\": \"ID\"}",
            )
            .field("rep"));
        }
    };
    caller.require_rep(&rep)?;
    if let Some(v) = &b.verdict
        && !VERDICTS.contains(&v.as_str())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_verdict",
            &format!("verdict must be one of {}", VERDICTS.join(", ")),
        )
        .field("verdict"));
    }
    let mut st = app.router_state().await?;
    let Some(o) = st.open.get(&id).cloned() else {
        return match app.store.handoff(&id).await? {
            Some(h) => {
                drop(st);
                let (state, epoch) = owner_now(&app, &h.conversation_id).await?;
                Err(ApiError::conflict(
                    &format!("handoff {id} is {}; nothing to {action}", h.state),
                    &state,
                    epoch,
                ))
            }
            None => Err(ApiError::not_found("handoff", &id)),
        };
    };
    let at = now_ms();
    let offer = match &o.doc.offer {
        Some(offer_id) => app
            .store
            .offers(Some(&id))
            .await?
            .into_iter()
            .find(|x| &x.id == offer_id),
        None => None,
    };
    let offered_to_rep = offer
        .as_ref()
        .is_some_and(|x| x.rep_id == rep && x.state == "pending");
    if matches!(action.as_str(), "accept" | "decline") && !offered_to_rep {
        return Err(ApiError::conflict(
            &format!(
                "handoff {id} is not offered to rep {rep} (it is {})",
                o.state
            ),
            &o.state,
            o.doc.epoch.max(0) as u64,
        ));
    }
    match action.as_str() {
        "accept" => {
            let offer = offer.expect("checked above");
            let mut o = o;
            let mut step = Step::new(at);
            step.change.offers.push(OfferRow {
                state: "accepted".into(),
                answered_ms: Some(at),
                ..offer.clone()
            });
            step.change.cancel_timers.push(offer.id.clone());
            step.change.cancel_timers.push(format!("{id}#target"));
            step.change.cancel_timers.push(format!("{id}#sla"));
            o.doc.offer = None;
            o.doc.rep = Some(rep.clone());
            o.doc.accepted_ms = Some(at);
            o.state = "human".into();
            let engine = app.engine();
            let name = st
                .reps
                .iter()
                .find(|r| r.id == rep)
                .map(|r| r.rep().name.clone())
                .unwrap_or_default();
            let kept = o
                .doc
                .eta_promised
                .map(|(eta, since)| at - since <= (eta as i64) * 1000);
            if o.doc.eta_kept.is_none() {
                o.doc.eta_kept = kept;
            }
            let waited = at - o.doc.created_ms;
            trace(
                &mut o,
                at,
                "accepted",
                json!({"rep": rep, "after_ms": at - offer.offered_ms, "time_to_human_ms": waited, "eta_kept": kept}),
            );
            if let Some(q) = engine
                .policy
                .routing
                .queue(&offer.queue)
                .map(|i| &engine.policy.routing.queues[i])
                && let Some(d) = q.sla_first_message
            {
                step.change.timers.push(TimerRow {
                    id: new_id(),
                    kind: SLA_FIRST_MESSAGE.into(),
                    subject: format!("{id}#first"),
                    due_ms: sla_due(&engine.policy, &q.sla_hours, ts(at), d),
                });
            }
            step.own(&mut o, "human");
            step.event(
                format!("conversation:{}", o.doc.conversation_id),
                "rep_joined",
                json!({"handoff_id": id, "rep": rep, "name": name}),
            );
            step.event(
                format!("rep:{rep}"),
                "accepted",
                json!({"handoff_id": id, "conversation_id": o.doc.conversation_id}),
            );
            if !app.settle(&mut st, step, vec![o.clone()]).await? {
                return Err(ApiError::conflict(
                    "the conversation changed meanwhile; try again",
                    &o.state,
                    o.doc.epoch.max(0) as u64,
                ));
            }
            st.accept_times.push(at - offer.offered_ms);
            if st.accept_times.len() > 50 {
                st.accept_times.remove(0);
            }
            st.missed.insert(rep.clone(), 0);
            Ok(axum::Json(handoff_out(&id, &o)).into_response())
        }
        "decline" => {
            let offer = offer.expect("checked above");
            app.offer_ended(&mut st, offer, "declined").await?;
            let o = st.open.get(&id).cloned().unwrap_or(o);
            Ok(axum::Json(handoff_out(&id, &o)).into_response())
        }
        "resolve" | "hand-back" => {
            if o.state != "human" || o.doc.rep.as_deref() != Some(rep.as_str()) {
                return Err(ApiError::conflict(
                    &format!("handoff {id} is not held by rep {rep} (it is {})", o.state),
                    &o.state,
                    o.doc.epoch.max(0) as u64,
                ));
            }
            let mut o = o;
            let mut step = Step::new(at);
            let (state, step_name) = if action == "resolve" {
                ("resolved", "resolved")
            } else {
                ("handed_back", "handed_back")
            };
            if action == "resolve" && b.outcome.is_none() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "missing_field",
                    "resolve needs an outcome",
                )
                .field("outcome"));
            }
            o.doc.outcome = Some(
                json!({"outcome": b.outcome, "reason": b.reason, "converted": b.converted, "value": b.value, "verdict": b.verdict}),
            );
            o.doc.note = b.note.clone();
            o.state = state.into();
            trace(
                &mut o,
                at,
                step_name,
                json!({"rep": rep, "outcome": b.outcome, "verdict": b.verdict, "note": b.note}),
            );
            step.change.cancel_timers.push(format!("{id}#first"));
            step.own(&mut o, state);
            if action == "hand-back" {
                step.event(
                    format!("conversation:{}", o.doc.conversation_id),
                    "handed_back",
                    json!({"handoff_id": id, "note": b.note}),
                );
            }
            if !app.settle(&mut st, step, vec![o.clone()]).await? {
                return Err(ApiError::conflict(
                    "the conversation changed meanwhile; try again",
                    &o.state,
                    o.doc.epoch.max(0) as u64,
                ));
            }
            if let Some(r) = st.reps.iter_mut().find(|r| r.id == rep) {
                r.load = r.load.saturating_sub(1);
            }
            app.drain(&mut st).await?;
            Ok(axum::Json(handoff_out(&id, &o)).into_response())
        }
        _ => Err(ApiError::not_found("action", &action)),
    }
}

fn handoff_out(id: &str, o: &Open) -> serde_json::Value {
    json!({
        "id": id,
        "state": o.state,
        "conversation_id": o.doc.conversation_id,
        "epoch": o.doc.epoch,
        "rep": o.doc.rep,
        "route": o.doc.route,
        "target": o.doc.target,
        "offer_id": o.doc.offer,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    rep: Option<String>,
    text: String,
}

/// `POST /v1/conversations/{id}/messages`: the rep who holds the conversation writes to the
/// visitor.
pub(crate) async fn post_message<S: Store>(
    State(app): State<App<S>>,
    Path(conversation): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&app, &headers).await?;
    valid_id(&conversation)?;
    let body = body_bytes(body)?;
    let b: MessageBody = parse_json(&body, "a message")?;
    let rep = b
        .rep
        .clone()
        .or_else(|| (caller.role == "rep").then(|| caller.name.clone()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_field",
                "name the rep: {\"rep\": \"ID\"}",
            )
            .field("rep")
        })?;
    caller.require_rep(&rep)?;
    if b.text.trim().is_empty() || b.text.len() > crate::MAX_TEXT_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
            "text must be non-empty and at most the text limit",
        )
        .field("text"));
    }
    let mut st = app.router_state().await?;
    let Some(mut o) = st
        .open
        .values()
        .find(|o| o.doc.conversation_id == conversation && o.state == "human")
        .cloned()
    else {
        drop(st);
        // Say where the conversation stands, or that there is none.
        let (state, epoch) = owner_now(&app, &conversation).await?;
        return Err(ApiError::conflict(
            &format!("no rep holds this conversation (it is {state})"),
            &state,
            epoch,
        ));
    };
    if o.doc.rep.as_deref() != Some(rep.as_str()) {
        return Err(ApiError::conflict(
            &format!("rep {rep} does not hold this conversation"),
            &o.state,
            o.doc.epoch.max(0) as u64,
        ));
    }
    let at = now_ms();
    let mut step = Step::new(at);
    if o.doc.first_message_ms.is_none() {
        o.doc.first_message_ms = Some(at);
        let after = o.doc.accepted_ms.map(|a| at - a);
        trace(
            &mut o,
            at,
            "first_message",
            json!({"rep": rep, "after_accept_ms": after}),
        );
        step.change.cancel_timers.push(format!("{}#first", o.id));
    }
    step.event(
        format!("conversation:{conversation}"),
        "message",
        json!({"rep": rep, "text": b.text, "handoff_id": o.id}),
    );
    if !app.settle(&mut st, step, vec![o]).await? {
        drop(st);
        let (state, epoch) = owner_now(&app, &conversation).await?;
        return Err(ApiError::conflict(
            "the conversation changed meanwhile; try again",
            &state,
            epoch,
        ));
    }
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"status": "sent"}))).into_response())
}

/// Visitor turns while a rep holds the conversation reach the rep's stream.
pub(crate) async fn visitor_message<S: Store>(app: &App<S>, conversation: &str, text: &str) {
    let Ok(st) = app.router_state().await else {
        return;
    };
    let Some(o) = st.open.values().find(|o| {
        o.doc.conversation_id == conversation && matches!(o.state.as_str(), "human" | "offered")
    }) else {
        return;
    };
    let Some(rep) = o.doc.rep.clone() else {
        return;
    };
    let mut step = Step::new(now_ms());
    step.event(
        format!("rep:{rep}"),
        "visitor_message",
        json!({"conversation_id": conversation, "handoff_id": o.id, "text": text}),
    );
    drop(st);
    let _ = app.store_step(step).await;
}

/// `GET /v1/handoffs/{id}/routing`: the handoff's routing trace.
pub(crate) async fn get_routing<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    valid_id(&id)?;
    let doc = app
        .store
        .handoff_routing(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("handoff", &id))?;
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap_or(json!({}));
    // The decision that created the handoff: every trigger with its value, the one that fired.
    let decision = app
        .store
        .handoff_decision(&id)
        .await?
        .map(|d| crate::wire::stored_trace(&d.trace, &d.policy_hash))
        .map(|mut t| {
            // The signals are on the conversation; the trace here is about the decision.
            if let Some(o) = t.as_object_mut() {
                o.remove("signals");
            }
            t
        });
    let offers: Vec<serde_json::Value> = app
        .store
        .offers(Some(&id))
        .await?
        .into_iter()
        .map(|o| json!({"id": o.id, "rep": o.rep_id, "queue": o.queue, "state": o.state, "offered_at": rfc3339(o.offered_ms), "answered_at": o.answered_ms.map(rfc3339), "after_ms": o.answered_ms.map(|a| a - o.offered_ms)}))
        .collect();
    Ok(axum::Json(
        json!({"handoff_id": id, "decision": decision, "routing": doc, "offers": offers}),
    )
    .into_response())
}

/// `GET /v1/handoffs/{id}/slots`: the soonest meeting slots with a suitable rep.
pub(crate) async fn get_slots<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    valid_id(&id)?;
    let engine = app.engine();
    let st = app.router_state().await?;
    let doc = app
        .store
        .handoff_routing(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("handoff", &id))?;
    let doc: Doc = serde_json::from_str(&doc).unwrap_or_default();
    let o = Open {
        id: id.clone(),
        state: String::new(),
        doc,
    };
    let at = now_ms();
    // The meetings of the reps who could take it, read once each.
    let reps = meeting_reps(&st, &engine.policy, &o, at);
    let mut booked = BTreeMap::new();
    for &i in &reps {
        let id = &st.reps[i].id;
        let meetings = app.store.meetings(id, at).await?;
        booked.insert(
            id.clone(),
            meetings
                .iter()
                .map(|m| (ts(m.starts_ms), ts(m.ends_ms)))
                .collect::<Vec<_>>(),
        );
    }
    let len = engine.policy.routing.slot.as_millis() as i64;
    let free: Vec<serde_json::Value> = slots_for(&st, &engine.policy, &reps, at, 12, &booked)
        .iter()
        .map(|(t, rep)| slot_json(*t, Some(t + len), rep, &o.doc.facts))
        .collect();
    Ok(axum::Json(json!({"handoff_id": id, "slots": free})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeetingBody {
    start: String,
    rep: String,
}

/// `POST /v1/handoffs/{id}/meeting`: books a slot; the rep is assigned.
pub(crate) async fn post_meeting<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    valid_id(&id)?;
    let body = body_bytes(body)?;
    let b: MeetingBody = parse_json(&body, "a meeting")?;
    let start: Timestamp = b.start.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_start",
            "start must be an RFC 3339 time",
        )
        .field("start")
    })?;
    let engine = app.engine();
    let st = app.router_state().await?;
    let Some(rep) = st.reps.iter().find(|r| r.id == b.rep) else {
        return Err(ApiError::not_found("rep", &b.rep));
    };
    let doc = app
        .store
        .handoff_routing(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("handoff", &id))?;
    let mut doc: Doc = serde_json::from_str(&doc).unwrap_or_default();
    let h = app
        .store
        .handoff(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("handoff", &id))?;
    if h.state != "scheduled" && h.state != "follow_up" && h.state != "queued" {
        drop(st);
        let (state, epoch) = owner_now(&app, &h.conversation_id).await?;
        return Err(ApiError::conflict(
            &format!(
                "handoff {id} is {}; a meeting is booked for a waiting or scheduled handoff",
                h.state
            ),
            &state,
            epoch,
        ));
    }
    // Only with a rep who could take it: a member of its route's queues who suits it.
    let view = Open {
        id: id.clone(),
        state: h.state.clone(),
        doc: doc.clone(),
    };
    if !meeting_reps(&st, &engine.policy, &view, now_ms())
        .iter()
        .any(|i| st.reps[*i].id == b.rep)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rep_not_eligible",
            &format!(
                "rep {} is not in a queue of this handoff's route, or does not suit it; GET the slots for the reps who do",
                b.rep
            ),
        )
        .field("rep"));
    }
    let len = engine.policy.routing.slot;
    let end = start.checked_add(len).unwrap_or(start);
    let open = rep
        .rep()
        .hours
        .as_ref()
        .and_then(|c| engine.policy.calendars.get(c))
        .is_none_or(|c| c.is_open(start) && c.open_duration(start, end) >= len);
    let clash = app
        .store
        .meetings(&b.rep, start.as_millisecond())
        .await?
        .iter()
        .any(|m| !(end.as_millisecond() <= m.starts_ms || start.as_millisecond() >= m.ends_ms));
    if !open || clash || start <= Timestamp::now() {
        drop(st);
        let (state, epoch) = owner_now(&app, &h.conversation_id).await?;
        return Err(ApiError::conflict(
            "that slot is not free with this rep; GET the slots again",
            &state,
            epoch,
        ));
    }
    let at = now_ms();
    let mut step = Step::new(at);
    let meeting = MeetingRow {
        id: new_id(),
        handoff_id: id.clone(),
        rep_id: b.rep.clone(),
        starts_ms: start.as_millisecond(),
        ends_ms: end.as_millisecond(),
        created_at: rfc3339(at),
    };
    doc.rep = Some(b.rep.clone());
    let mut o = Open {
        id: id.clone(),
        state: "scheduled".into(),
        doc,
    };
    trace(
        &mut o,
        at,
        "meeting_booked",
        json!({"rep": b.rep, "start": start.to_string()}),
    );
    step.change.meetings.push(meeting.clone());
    step.event(
        format!("rep:{}", b.rep),
        "meeting_booked",
        json!({"handoff_id": id, "start": start.to_string(), "end": end.to_string()}),
    );
    step.event(
        format!("conversation:{}", o.doc.conversation_id),
        "meeting_booked",
        json!({"handoff_id": id, "rep": b.rep, "start": start.to_string()}),
    );
    step.handoff(&o);
    drop(st);
    app.store_step(step).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"meeting_id": meeting.id, "handoff_id": id, "rep": b.rep, "start": start.to_string(), "end": end.to_string()}))).into_response())
}

// ---- streams

/// Sends one event; false once the listener has gone.
async fn send_event(
    tx: &tokio::sync::mpsc::Sender<axum::response::sse::Event>,
    seq: i64,
    kind: String,
    data: String,
) -> bool {
    let event = axum::response::sse::Event::default()
        .id(seq.to_string())
        .event(kind)
        .data(data);
    tx.send(event).await.is_ok()
}

/// Sends every stored event of `stream` after `last`, page by page; false once the listener
/// has gone or the store failed.
async fn send_stored<S: Store>(
    app: &App<S>,
    stream: &str,
    last: &mut i64,
    tx: &tokio::sync::mpsc::Sender<axum::response::sse::Event>,
) -> bool {
    loop {
        let Ok(rows) = app.store.stream_events(stream, *last, 500).await else {
            return false;
        };
        if rows.is_empty() {
            return true;
        }
        for r in rows {
            *last = r.seq;
            if !send_event(tx, r.seq, r.kind, r.data).await {
                return false;
            }
        }
    }
}

fn stream_response<S: Store>(app: App<S>, stream: String, headers: &HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let after: i64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
    let mut live = app.router.events.subscribe();
    tokio::spawn(async move {
        // Subscribed first, then the stored backlog: nothing falls between the two.
        let mut last = after;
        if !send_stored(&app, &stream, &mut last, &tx).await {
            return;
        }
        loop {
            let sent = match live.recv().await {
                // A notice (empty kind), or any event where other nodes write too: read the
                // store, in the order of its sequence numbers.
                Ok(p)
                    if p.stream == stream
                        && p.seq > last
                        && (p.kind.is_empty()
                            || app.router.shared.load(std::sync::atomic::Ordering::SeqCst)) =>
                {
                    send_stored(&app, &stream, &mut last, &tx).await
                }
                Ok(p) if p.stream == stream && p.seq > last => {
                    last = p.seq;
                    send_event(&tx, p.seq, p.kind, p.data).await
                }
                Ok(_) => true,
                // Fell behind: read what was missed from the store.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    send_stored(&app, &stream, &mut last, &tx).await
                }
                Err(_) => false,
            };
            if !sent {
                return;
            }
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /v1/conversations/{id}/stream`: the visitor side.
pub(crate) async fn conversation_stream<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?;
    valid_id(&id)?;
    Ok(stream_response(app, format!("conversation:{id}"), &headers))
}

/// `GET /v1/reps/{id}/stream`: a rep's offers, accepted handoffs and visitor messages.
pub(crate) async fn rep_stream<S: Store>(
    State(app): State<App<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&app, &headers).await?.require_rep(&id)?;
    valid_id(&id)?;
    Ok(stream_response(app, format!("rep:{id}"), &headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waiting index, kept up to date change by change, always agrees with counting every
    /// open handoff from scratch: random handoffs are added, moved between states, targets and
    /// priorities, and closed.
    #[test]
    fn the_waiting_index_agrees_with_a_full_count() {
        let policy = Policy::load(
            "examples/policy.toml",
            include_str!("../../../examples/policy.toml"),
        )
        .expect("the default policy loads");
        let routes: Vec<String> = policy.routing.routes.iter().map(|r| r.id.clone()).collect();
        let queues: Vec<String> = policy.routing.queues.iter().map(|q| q.id.clone()).collect();
        let mut st = RouterState::default();
        let mut seed: u64 = 0x5EED;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for step in 0..3_000 {
            let id = format!("h{}", next(200));
            if next(5) == 0 {
                st.take(&id);
            } else {
                let o = Open {
                    id: id.clone(),
                    state: ["queued", "queued", "offered", "accepted"][next(4) as usize].into(),
                    doc: Doc {
                        priority: [50, 90][next(2) as usize],
                        created_ms: next(1_000) as i64,
                        route: Some(routes[next(routes.len() as u64) as usize].clone()),
                        target: next(2) as usize,
                        ..Doc::default()
                    },
                };
                st.put(id, o);
            }
            if step % 7 != 0 {
                continue;
            }
            let probe = Open {
                id: "probe".into(),
                state: "queued".into(),
                doc: Doc {
                    priority: [50, 90][next(2) as usize],
                    created_ms: next(1_000) as i64,
                    ..Doc::default()
                },
            };
            for q in &queues {
                let at_q: Vec<(i64, i64)> = st
                    .open
                    .values()
                    .filter(|o| {
                        o.state == "queued" && current_queue(&policy.routing, o) == Some(q.as_str())
                    })
                    .map(|o| (o.doc.priority, -o.doc.created_ms))
                    .collect();
                let ahead = at_q
                    .iter()
                    .filter(|k| **k > (probe.doc.priority, -probe.doc.created_ms))
                    .count();
                assert_eq!(st.waiting_count(&policy, q), at_q.len(), "step {step}, {q}");
                assert_eq!(
                    st.waiting_ahead(&policy, q, &probe),
                    ahead,
                    "step {step}, {q}"
                );
            }
        }
    }
}
