//! Baton's durable state behind one narrow interface, [`Store`], with two implementations:
//! [`SqliteStore`] (an embedded file, the default) and [`PgStore`] (PostgreSQL, for several
//! nodes). Each has its own migrations, run by [`Store::migrate`] at start.
//!
//! The store knows rows, not the engine's types: decisions, traces and briefs arrive as JSON
//! text produced at the edge, so this crate depends on neither the detectors nor serde.
//!
//! Durability without a sync per turn: every entry goes to one writer task, which commits the
//! entries waiting at that moment in one transaction (an entry that conflicts writes nothing,
//! and a group that fails is committed again entry by entry) and answers each caller only after
//! that transaction is on disk.
//!
//! Concurrency: a turn is committed with the epoch its decision was made on. The conversation
//! row is updated with a compare-and-set on that epoch, and its turn counter gives each turn its
//! sequence number in the same statement, so two writers can never interleave a turn, and a
//! writer holding a stale epoch gets [`Commit::Conflict`] and changes nothing.

use std::future::Future;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?} (use sqlite://PATH or postgres://...)")]
    Url(String),
    #[error("the store's writer has stopped")]
    Closed,
}

/// A stored turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRow {
    pub seq: i64,
    pub role: String,
    pub text: String,
    /// RFC 3339.
    pub at: String,
    /// The turn's own signals, as JSON: only in turns stored before they were left out (a
    /// decision's trace holds what it read).
    pub signals: Option<String>,
    /// The turn's own signals in the compact form of `baton_core::stored`, when the visitor
    /// turn was stored with them.
    pub detected: Option<Vec<u8>>,
}

/// A stored decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    pub seq: i64,
    pub action: String,
    pub epoch: i64,
    pub trigger: Option<String>,
    pub reason: Option<String>,
    pub policy_hash: String,
    /// The full trace, as JSON.
    pub trace: String,
    pub at: String,
}

/// A conversation with its turns and decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub id: String,
    pub state: String,
    pub epoch: i64,
    /// JSON objects of strings.
    pub contact: String,
    pub account: String,
    pub page: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// How many entries (turns and events) it holds: the next entry's sequence number.
    pub turn_count: i64,
    pub turns: Vec<TurnRow>,
    pub events: Vec<EventRow>,
    pub decisions: Vec<DecisionRow>,
    /// Oldest first; with [`Detail::ForDecision`] their briefs are left empty.
    pub handoffs: Vec<HandoffRow>,
}

/// A handoff as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffRow {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub trigger: Option<String>,
    pub reason: Option<String>,
    pub priority: Option<i64>,
    pub state: String,
    /// The brief, as JSON.
    pub brief: String,
    pub created_at: String,
}

/// A stored event (a page view, a form fill, a custom signal, an explicit handoff request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub seq: i64,
    pub kind: String,
    /// The event's fields, as JSON.
    pub data: String,
    pub at: String,
}

/// What a new entry of the conversation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A message, with its own signals in the compact form of `baton_core::stored` (a
    /// visitor turn's, so that reading the conversation back need not detect them again).
    Turn {
        role: String,
        text: String,
        detected: Option<Vec<u8>>,
    },
    /// Something that happened besides a message.
    Event { kind: String, data: String },
}

/// A decision, as stored with the entry it was made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    pub action: String,
    pub trigger: Option<String>,
    pub reason: Option<String>,
    pub priority: Option<i64>,
    pub policy_hash: String,
    /// The full trace, as JSON.
    pub trace: String,
}

/// A new entry (a turn or an event) with its decision, committed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub conversation_id: String,
    /// The epoch the decision was made on; the commit fails if it moved.
    pub expected_epoch: i64,
    /// When set, the number of entries the decision saw: the commit is refused with
    /// [`Commit::Stale`] if another writer added one meanwhile (a cached view is then reloaded).
    pub expected_count: Option<i64>,
    /// The conversation's owner and epoch after this entry.
    pub state: String,
    pub epoch: i64,
    pub contact: String,
    pub account: String,
    pub page: Option<String>,
    pub at: String,
    pub entry: Entry,
    pub decision: Option<DecisionRecord>,
    /// A handoff this entry created: its id and brief.
    pub handoff: Option<(String, String)>,
    /// `(key, request hash, response)` to answer a retry with.
    pub idempotency: Option<(String, String, String)>,
}

/// A stored policy version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub hash: String,
    pub body: String,
    pub created_at: String,
    /// When it last became the active version.
    pub activated_at: String,
    pub active: bool,
}

/// Counts over the whole store, for `/v1/metrics/summary`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub conversations: i64,
    /// `(state, conversations)`.
    pub by_state: Vec<(String, i64)>,
    pub turns: i64,
    pub handoffs: i64,
    /// `(trigger, handoffs)`; created handoffs only.
    pub handoffs_by_trigger: Vec<(String, i64)>,
    /// `(action, decisions)`.
    pub decisions_by_action: Vec<(String, i64)>,
    /// Handoffs that promised the visitor an ETA; of those, the promises kept and broken
    /// (the rest are still waiting).
    pub eta_promised: i64,
    pub eta_kept: i64,
    pub eta_broken: i64,
}

/// The outcome of committing an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// Stored, with its sequence number in the conversation.
    Done { seq: i64 },
    /// The conversation's epoch moved: nothing was stored.
    Conflict { state: String, epoch: i64 },
    /// The epoch is as expected but another entry was added since the view the decision was
    /// made on ([`NewEntry::expected_count`]): nothing was stored; reload and decide again.
    Stale,
    /// The idempotency key was used meanwhile: nothing was stored; answer with this.
    Replay {
        request_hash: String,
        response: String,
    },
}

/// A rep: attributes as JSON, presence, when it was last heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepRow {
    pub id: String,
    pub attrs: String,
    pub presence: String,
    pub heartbeat_ms: i64,
    /// Offers in a row the rep let time out.
    pub missed: i64,
    pub updated_at: String,
}

/// An offer of a handoff to a rep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferRow {
    pub id: String,
    pub handoff_id: String,
    pub rep_id: String,
    pub queue: String,
    /// pending, accepted, declined, timed_out, cancelled.
    pub state: String,
    pub offered_ms: i64,
    pub answered_ms: Option<i64>,
}

/// A durable timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRow {
    pub id: String,
    pub kind: String,
    /// What it is about (a handoff id, an offer id, a rep id).
    pub subject: String,
    pub due_ms: i64,
}

/// An event of a live stream (`conversation:ID` or `rep:ID`), numbered for `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEventRow {
    pub seq: i64,
    pub stream: String,
    pub kind: String,
    pub data: String,
    pub at: String,
}

/// A booked meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRow {
    pub id: String,
    pub handoff_id: String,
    pub rep_id: String,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_at: String,
}

/// A conversation's owner changes: a compare-and-set on its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub conversation_id: String,
    pub expected_epoch: i64,
    pub state: String,
    pub epoch: i64,
}

/// A handoff's routing record, as the router changed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandoffChange {
    pub id: String,
    pub state: String,
    /// The routing record, JSON.
    pub routing: String,
    /// The ETA promised to the visitor, in seconds.
    pub eta_promised: Option<i64>,
    /// Whether that promise was kept, once it is known.
    pub eta_kept: Option<bool>,
}

/// One step of the router, stored all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingChange {
    /// RFC 3339, for `updated_at` and the events.
    pub at: String,
    /// Owner changes; if any compare-and-set fails, nothing is stored.
    pub conversations: Vec<StateChange>,
    pub handoffs: Vec<HandoffChange>,
    /// Inserted, or (same id) updated in state and answer time.
    pub offers: Vec<OfferRow>,
    /// `(rep id, presence, missed offers in a row)`.
    pub reps: Vec<(String, String, i64)>,
    pub timers: Vec<TimerRow>,
    /// Timers to drop: every unfired one about these subjects.
    pub cancel_timers: Vec<String>,
    /// `(stream, kind, data JSON)`.
    pub events: Vec<(String, String, String)>,
    pub meetings: Vec<MeetingRow>,
}

/// This node alone may change routing state while it holds this (on a database that several
/// nodes share); dropping it lets the next node in. `version` is the routing version when it
/// was taken: every router step, rep and presence change adds one.
#[derive(Debug)]
pub struct RoutingLock {
    pub version: i64,
    _release: tokio::sync::oneshot::Sender<()>,
}

/// Counts a change to routing state (see [`RoutingLock`]). Only where nodes share the database:
/// on SQLite the version is never read, and every router step would write one more page.
const BUMP_ROUTING_VERSION: &str = "UPDATE routing_version SET version = version + 1 WHERE id = 1";

/// The PostgreSQL advisory lock that [`RoutingLock`] holds ("baton" in ASCII).
const ROUTING_LOCK_KEY: i64 = 0x62_6174_6f6e;

/// The channel each router step's streams are announced on, for the other nodes' live streams.
pub const STREAMS_CHANNEL: &str = "baton_streams";

/// How a [`RoutingChange`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Stored; the sequence numbers of its stream events, in order.
    Done { events: Vec<i64> },
    /// The conversation's epoch had moved, or the offer's handoff already has a pending offer:
    /// nothing was stored.
    Conflict,
}

/// How much of a conversation to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything, for the API's conversation view.
    Full,
    /// State, turns and which triggers fired when: what deciding a new turn reads.
    ForDecision,
}

/// Baton's durable state.
pub trait Store: Send + Sync + 'static {
    /// Runs the migrations this build carries that the database has not seen.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A conversation with its turns and decisions, or `None`. With [`Detail::ForDecision`]
    /// the turns come without their signals and the decisions without their traces: what a
    /// new turn needs, without reading back every trace on every turn.
    fn conversation(
        &self,
        id: &str,
        detail: Detail,
    ) -> impl Future<Output = Result<Option<ConversationRow>, StoreError>> + Send;
    /// Commits an entry, its decision and what it created, all or nothing.
    fn commit(&self, t: &NewEntry) -> impl Future<Output = Result<Commit, StoreError>> + Send;
    /// The stored answer to a retried request: `(request hash, response)`.
    fn idempotent(
        &self,
        conversation_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;
    /// Handoffs, newest first.
    fn handoffs(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<HandoffRow>, StoreError>> + Send;
    fn handoff(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<HandoffRow>, StoreError>> + Send;
    /// Stores a policy version (once per hash) and makes it the active one.
    fn activate_policy(
        &self,
        hash: &str,
        body: &str,
        at: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The active policy version, if one was ever stored.
    fn active_policy(&self) -> impl Future<Output = Result<Option<PolicyRow>, StoreError>> + Send;
    /// Stored policy versions, most recently activated first.
    fn policies(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<PolicyRow>, StoreError>> + Send;
    /// Counts for the summary.
    fn summary(&self) -> impl Future<Output = Result<Summary, StoreError>> + Send;
    /// Stores an API key's hash; the key itself is never stored.
    fn create_key(
        &self,
        key_hash: &str,
        name: &str,
        role: &str,
        at: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// `(name, role)` of the key with this hash.
    fn find_key(
        &self,
        key_hash: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;

    /// Creates a rep (presence offline) or replaces its attributes.
    fn put_rep(
        &self,
        id: &str,
        attrs: &str,
        now_ms: i64,
        at: &str,
    ) -> impl Future<Output = Result<RepRow, StoreError>> + Send;
    fn reps(&self) -> impl Future<Output = Result<Vec<RepRow>, StoreError>> + Send;
    /// Sets a rep's presence and heartbeat (and clears its missed offers); false if no such rep.
    fn set_presence(
        &self,
        id: &str,
        presence: &str,
        now_ms: i64,
        at: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Handoffs not yet settled (queued, offered, human) with their routing JSON, oldest first.
    fn open_handoffs(
        &self,
    ) -> impl Future<Output = Result<Vec<(HandoffRow, String)>, StoreError>> + Send;
    /// The decision a handoff was created by (its conversation's decision at the handoff's
    /// sequence number), with its full trace.
    fn handoff_decision(
        &self,
        handoff_id: &str,
    ) -> impl Future<Output = Result<Option<DecisionRow>, StoreError>> + Send;
    /// The routing JSON of one handoff.
    fn handoff_routing(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Offers of a handoff (all states), oldest first; or, with `None`, every pending offer.
    fn offers(
        &self,
        handoff_id: Option<&str>,
    ) -> impl Future<Output = Result<Vec<OfferRow>, StoreError>> + Send;
    /// Waits until this node alone may change routing state, where several nodes may share
    /// the database (PostgreSQL); `None` where one node owns it (SQLite), whose own lock is
    /// enough.
    fn routing_lock(&self) -> impl Future<Output = Result<Option<RoutingLock>, StoreError>> + Send;
    /// Where several nodes share the database: `(newest sequence number, stream)` of each
    /// stream the nodes' router steps (this node's too) added events to, as they commit.
    /// `None` on SQLite.
    fn stream_notices(
        &self,
    ) -> impl Future<Output = Result<Option<tokio::sync::mpsc::Receiver<(i64, String)>>, StoreError>>
    + Send;
    /// Applies one router step, all or nothing.
    fn apply(
        &self,
        change: &RoutingChange,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
    /// Leases up to `limit` timers due at `now_ms` that nobody holds (or whose lease ran out)
    /// until `lease_until_ms`. On PostgreSQL, nodes claiming at once skip each other's rows.
    fn claim_timers(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<TimerRow>, StoreError>> + Send;
    /// Marks a timer fired; true only for the one caller that did (a timer fires once).
    fn finish_timer(
        &self,
        id: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// When the next unfired timer is due.
    fn next_timer(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// A stream's events after `after`, oldest first.
    fn stream_events(
        &self,
        stream: &str,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StreamEventRow>, StoreError>> + Send;
    /// A rep's meetings ending after `from_ms`.
    fn meetings(
        &self,
        rep_id: &str,
        from_ms: i64,
    ) -> impl Future<Output = Result<Vec<MeetingRow>, StoreError>> + Send;
}

/// Most entries committed in one transaction.
pub const MAX_BATCH: usize = 256;

/// Prepared statements kept by each SQLite connection. A group's statements are built for its
/// number of entries, so a busy writer uses a few hundred distinct ones; with sqlx's default of
/// 100 they pushed each other out and were parsed again.
const STATEMENT_CACHE: usize = 1024;

/// The writer's connection, shared (on SQLite) with the other writes: SQLite has one writer
/// at a time, and a second connection waiting for the lock sleeps in SQLite's busy handler
/// (up to 100 ms a try), which showed as 600 ms stalls in the routing load test.
type SharedConn<DB> = std::sync::Arc<tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<DB>>>>;

/// How many WAL frames (pages) may pile up before the writer waits for the checkpointer to
/// catch up, so that its next transaction starts the WAL again from the beginning (16 MB).
const WAL_FRAMES: i64 = 4_000;

/// The least time between two passes of the checkpointer: each pass sorts the index of the
/// whole WAL, so a pass after every small group cost more than the copying. (Under callgrind,
/// which slows the server some fifty times, passes every 10 ms look costly: 12% of the
/// instructions. In a real run the sort is 0.02% of the samples, and 100 ms between passes let
/// the WAL grow past 30 MB in the store test.)
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Copies SQLite's write-ahead log into the database file on a connection of its own, beside
/// the writer. SQLite's own automatic checkpoint runs inside the commit that crosses its
/// threshold, so that group (and every turn waiting behind it) waited for a thousand pages to
/// be copied and the database file to be synced: most of the slowest turns. Here the writer
/// wakes the checkpointer after each group and goes on; the checkpointer copies, at most
/// every [`CHECKPOINT_EVERY`], what the groups since its last pass wrote. SQLite starts the
/// WAL from the beginning only when a write begins with every frame copied, which never
/// happens while groups follow each other closely, so once the WAL holds [`WAL_FRAMES`]
/// frames the writer waits, between two groups, for one pass that copies the little written
/// since the last. (A reader that keeps an old snapshot open stops a pass from copying
/// everything; the writer then waits for a pass after each group until that reader ends.)
#[derive(Clone)]
struct Checkpointer {
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// Frames in the WAL at the last pass.
    frames: std::sync::Arc<std::sync::atomic::AtomicI64>,
    catch_up: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

impl Checkpointer {
    fn start(mut conn: sqlx::SqliteConnection) -> Checkpointer {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let (catch_up, mut requests) =
            tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>(1);
        let c = Checkpointer {
            wake: wake.clone(),
            frames: frames.clone(),
            catch_up,
        };
        tokio::spawn(async move {
            loop {
                let waiting = tokio::select! {
                    () = async {
                        wake.notified().await;
                        tokio::time::sleep(CHECKPOINT_EVERY).await;
                    } => None,
                    r = requests.recv() => match r {
                        Some(r) => Some(r),
                        // The store was dropped.
                        None => break,
                    },
                };
                // (busy, frames in the WAL, frames copied); a failed pass is tried again at
                // the next wake.
                let pass: Result<(i64, i64, i64), _> =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(&mut conn)
                        .await;
                match (waiting, pass) {
                    (Some(reply), _) => {
                        // The next group starts the WAL again (or, if the pass failed, the
                        // writer asks again after WAL_FRAMES more).
                        frames.store(0, std::sync::atomic::Ordering::Relaxed);
                        let _ = reply.send(());
                    }
                    (None, Ok((_, log, _))) => {
                        frames.store(log, std::sync::atomic::Ordering::Relaxed)
                    }
                    (None, Err(_)) => {}
                }
            }
        });
        c
    }

    /// After a committed group: wake the checkpointer, and wait for it to catch up when the
    /// WAL has grown past [`WAL_FRAMES`].
    async fn after_group(&self) {
        self.wake.notify_one();
        if self.frames.load(std::sync::atomic::Ordering::Relaxed) > WAL_FRAMES {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if self.catch_up.send(tx).await.is_ok() {
                let _ = rx.await;
            }
        }
    }
}

/// A connection to write on: the shared one, or one of the pool's.
enum WriteConn<'a, DB: sqlx::Database> {
    Shared(tokio::sync::MutexGuard<'a, Option<sqlx::pool::PoolConnection<DB>>>),
    Pooled(sqlx::pool::PoolConnection<DB>),
}

impl<DB: sqlx::Database> WriteConn<'_, DB> {
    fn get(&mut self) -> &mut DB::Connection {
        match self {
            WriteConn::Shared(g) => match g.as_mut() {
                Some(c) => c,
                None => unreachable!("a shared connection is filled before it is handed out"),
            },
            WriteConn::Pooled(c) => c,
        }
    }
}

/// An entry waiting for the writer, with where to send its outcome.
type Job = (
    NewEntry,
    tokio::sync::oneshot::Sender<Result<Commit, StoreError>>,
);

/// What a group commit answers: each entry's outcome, then each router step's.
type GroupOutcome = (
    Vec<Result<Commit, StoreError>>,
    Vec<Result<Applied, StoreError>>,
);

/// A router step waiting for the writer, with where to send its outcome.
type RoutingJob = (
    RoutingChange,
    tokio::sync::oneshot::Sender<Result<Applied, StoreError>>,
);

/// What the writer commits: entries and router steps share its group commits, so that a
/// router step costs no sync to disk of its own and does not hold the connection between
/// two groups.
// Nearly all work is entries, the larger variant: boxing them would add an allocation per turn
// and save no memory.
#[allow(clippy::large_enum_variant)]
enum Work {
    Entry(Job),
    Routing(RoutingJob),
}

/// Most rows one multi-row statement of a router step lists (SQLite allows 32,766 arguments
/// in a statement, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// `rows` in rounds for multi-row statements: each round holds each key at most once (a row
/// changed twice in one statement would take either change), a key's rows go in their order
/// to ever later rounds, and no round is longer than [`ROWS_PER_STATEMENT`].
fn rounds<'a, T>(rows: &'a [T], key: impl Fn(&'a T) -> &'a str) -> Vec<Vec<&'a T>> {
    let mut out: Vec<Vec<&T>> = Vec::new();
    let mut seen: Vec<std::collections::HashSet<&str>> = Vec::new();
    for row in rows {
        let k = key(row);
        // After the last round that holds this key.
        let after = seen
            .iter()
            .rposition(|s| s.contains(k))
            .map_or(0, |i| i + 1);
        let at = (after..out.len())
            .find(|&i| out[i].len() < ROWS_PER_STATEMENT)
            .unwrap_or(out.len());
        if at == out.len() {
            out.push(Vec::new());
            seen.push(std::collections::HashSet::new());
        }
        out[at].push(row);
        seen[at].insert(k);
    }
    out
}

/// `sql`, opened by `begin` if it is still to be sent (then taken).
fn opening(begin: &mut Option<&str>, sql: &str) -> String {
    match begin.take() {
        Some(b) => format!("{b}; {sql}"),
        None => sql.to_string(),
    }
}

/// The statements of one step: each its own query, or (`joined`, on SQLite) all of them in
/// one query, one trip to SQLite's thread. Only statements whose arguments are all `?`
/// placeholders (a `QueryBuilder`'s) may be joined: SQLite numbers those across the query.
struct Statements<DB: sqlx::Database> {
    joined: bool,
    queries: Vec<sqlx::QueryBuilder<DB>>,
}

impl<DB: sqlx::Database> Statements<DB>
where
    DB::Arguments: Default,
{
    fn new(joined: bool) -> Self {
        Statements {
            joined,
            queries: Vec::new(),
        }
    }

    /// A builder for the next statement, which starts with `sql`.
    fn next(&mut self, sql: &str) -> &mut sqlx::QueryBuilder<DB> {
        match self.queries.last_mut() {
            Some(q) if self.joined => {
                q.push("; ");
                q.push(sql);
            }
            _ => self.queries.push(sqlx::QueryBuilder::new(sql)),
        }
        let Some(q) = self.queries.last_mut() else {
            unreachable!("a statement was just added")
        };
        q
    }
}

macro_rules! store_impl {
    ($name:ident, $db:ty, $migrations:literal, $begin_write:literal, $claim_timers:literal, $sqlite:literal) => {
        impl $name {
            /// Where a write outside the group writer goes: on SQLite the writer's own
            /// connection, on PostgreSQL any pooled one.
            async fn write_conn(&self) -> Result<WriteConn<'_, $db>, sqlx::Error> {
                if $sqlite {
                    let mut g = self.conn.lock().await;
                    if g.is_none() {
                        *g = Some(self.pool.acquire().await?);
                    }
                    Ok(WriteConn::Shared(g))
                } else {
                    Ok(WriteConn::Pooled(self.pool.acquire().await?))
                }
            }

            /// The one writer: commits whatever entries are waiting in one transaction (group
            /// commit: one sync to disk for the lot), and answers each only once the
            /// transaction is durable. An entry that conflicts writes nothing and leaves the
            /// others alone; if the group fails, the entries are committed one by one.
            async fn writer(
                pool: sqlx::Pool<$db>,
                conn: SharedConn<$db>,
                mut rx: tokio::sync::mpsc::Receiver<Work>,
                checkpointer: Option<Checkpointer>,
            ) {
                let mut work: Vec<Work> = Vec::with_capacity(MAX_BATCH);
                let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
                let mut routes: Vec<RoutingJob> = Vec::new();
                // The writer keeps one connection: a SQLite connection's page cache is emptied
                // whenever another connection wrote, so rotating through the pool made every
                // group read its pages from the file again.
                let closed = pool.close_event();
                tokio::pin!(closed);
                loop {
                    let waiting = tokio::select! {
                        n = rx.recv_many(&mut work, MAX_BATCH) => n,
                        // Closing the pool waits for the connection held here.
                        _ = &mut closed => 0,
                    };
                    if waiting == 0 {
                        conn.lock().await.take();
                        break;
                    }
                    for w in work.drain(..) {
                        match w {
                            Work::Entry(j) => batch.push(j),
                            Work::Routing(r) => routes.push(r),
                        }
                    }
                    let mut held = conn.lock().await;
                    let (outcomes, applied) = match Self::commit_batch(&pool, &mut *held, &batch, &routes).await {
                        Ok(o) => o,
                        Err(_) if batch.len() + routes.len() > 1 => {
                            // Nothing of the group was stored: find the work at fault.
                            let mut one_by_one = Vec::with_capacity(batch.len());
                            for job in batch.chunks(1) {
                                one_by_one.push(match Self::commit_batch(&pool, &mut *held, job, &[]).await {
                                    Ok((mut o, _)) => o.pop().unwrap_or(Err(StoreError::Closed)),
                                    Err(e) => Err(StoreError::Database(e)),
                                });
                            }
                            let mut applied = Vec::with_capacity(routes.len());
                            for r in routes.chunks(1) {
                                applied.push(match Self::commit_batch(&pool, &mut *held, &[], r).await {
                                    Ok((_, mut a)) => a.pop().unwrap_or(Err(StoreError::Closed)),
                                    Err(e) => Err(StoreError::Database(e)),
                                });
                            }
                            (one_by_one, applied)
                        }
                        Err(e) if batch.is_empty() => (Vec::new(), vec![Err(StoreError::Database(e))]),
                        Err(e) => (vec![Err(StoreError::Database(e))], Vec::new()),
                    };
                    drop(held);
                    for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                        // The caller may have gone away; its entry is stored all the same.
                        let _ = reply.send(outcome);
                    }
                    for ((_, reply), outcome) in routes.drain(..).zip(applied) {
                        let _ = reply.send(outcome);
                    }
                    if let Some(c) = &checkpointer {
                        c.after_group().await;
                    }
                }
            }

            async fn commit_batch(
                pool: &sqlx::Pool<$db>,
                held: &mut Option<sqlx::pool::PoolConnection<$db>>,
                batch: &[Job],
                routes: &[RoutingJob],
            ) -> Result<GroupOutcome, sqlx::Error> {
                let conn = match held {
                    Some(conn) => conn,
                    None => held.insert(pool.acquire().await?),
                };
                let result = Self::commit_on(conn, batch, routes).await;
                if result.is_err() {
                    // Start again from a fresh connection of the pool; this one is closed, not
                    // returned to the pool, as it may still be inside the group's transaction.
                    if let Some(mut c) = held.take() {
                        c.close_on_drop();
                    }
                }
                result
            }

            async fn commit_on(
                conn: &mut sqlx::pool::PoolConnection<$db>,
                batch: &[Job],
                routes: &[RoutingJob],
            ) -> Result<GroupOutcome, sqlx::Error> {
                use sqlx::Connection as _;
                if $sqlite {
                    // SQLite runs each statement on its connection's own thread, and every
                    // trip there and back waits for both threads to be scheduled (about 0.3
                    // ms each under load, and the writer is the one serial step of every
                    // turn). So the statements that open and close the transaction and the
                    // router steps' savepoints ride along with the next query: a group of
                    // entries alone takes two trips (`BEGIN` with the claims, then every row
                    // with `COMMIT`), and each router step one more. On failure the
                    // transaction is rolled back here, or the caller closes the connection.
                    let result = Self::sqlite_group(&mut **conn, batch, routes).await;
                    if result.is_err() {
                        // If this fails too, the caller closes the connection.
                        let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
                    }
                    return result;
                }
                let mut tx = conn.begin().await?;
                // Router steps first, each in a savepoint: one whose compare-and-set fails
                // leaves nothing and the rest of the group goes on. An entry the router's step
                // made stale is refused as stale and decided again by its caller.
                let mut applied = Vec::with_capacity(routes.len());
                let mut changed = false;
                for (c, _) in routes {
                    let mut sp = tx.begin().await?;
                    let a = Self::apply_on(&mut sp, c, None).await?;
                    match &a {
                        Applied::Done { .. } => {
                            sp.commit().await?;
                            changed = true;
                        }
                        Applied::Conflict => sp.rollback().await?,
                    }
                    applied.push(Ok(a));
                }
                let (out, wrote) = Self::entries_on(&mut tx, batch, None, None).await?;
                changed |= wrote;
                if changed {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok((out, applied))
            }

            /// A group on SQLite, in as few trips to SQLite's thread as its work allows (see
            /// `commit_on`): each router step opens its savepoint in its own query, and the
            /// step's release (or, on a conflict, its rollback) goes with the next query.
            async fn sqlite_group(
                conn: &mut <$db as sqlx::Database>::Connection,
                batch: &[Job],
                routes: &[RoutingJob],
            ) -> Result<GroupOutcome, sqlx::Error> {
                let mut pending = String::from("BEGIN");
                let mut changed = false;
                let mut applied = Vec::with_capacity(routes.len());
                for (c, _) in routes {
                    pending.push_str("; SAVEPOINT step");
                    let a = Self::apply_on(&mut *conn, c, Some(&pending)).await?;
                    pending = match &a {
                        Applied::Done { .. } => {
                            changed = true;
                            "RELEASE step".to_string()
                        }
                        // A step whose compare-and-set failed leaves nothing.
                        Applied::Conflict => "ROLLBACK TO step; RELEASE step".to_string(),
                    };
                    applied.push(Ok(a));
                }
                let ends = ("COMMIT", if changed { "COMMIT" } else { "ROLLBACK" });
                let (out, _) = Self::entries_on(&mut *conn, batch, Some(&pending), Some(ends)).await?;
                Ok((out, applied))
            }

            /// The group's entries on `tx`: each claims its sequence number, then the rows of
            /// those that did are inserted. An entry that conflicts, replays or is stale writes
            /// nothing, so the entries need no savepoints; any error fails the whole group,
            /// which the writer then commits piece by piece. With `begin` and `ends` (SQLite),
            /// `begin` goes before the first statement and the transaction ends with the last:
            /// with `ends.0` if an entry was written, else with `ends.1` (see `commit_on`).
            /// Answers each entry's outcome and whether anything was written.
            async fn entries_on(
                tx: &mut <$db as sqlx::Database>::Connection,
                batch: &[Job],
                begin: Option<&str>,
                ends: Option<(&'static str, &'static str)>,
            ) -> Result<(Vec<Result<Commit, StoreError>>, bool), sqlx::Error> {
                if batch.is_empty() {
                    // Only what `begin` opened is left to end.
                    if let (Some(begin), Some((_, nothing))) = (begin, ends) {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{begin}; {nothing}"))).execute(&mut *tx).await?;
                    }
                    return Ok((Vec::new(), false));
                }
                let outcomes = Self::claim_all(&mut *tx, batch, begin).await?;
                let done: Vec<(&NewEntry, i64)> = batch
                    .iter()
                    .zip(&outcomes)
                    .filter_map(|((t, _), o)| match o {
                        Commit::Done { seq } => Some((t, *seq)),
                        _ => None,
                    })
                    .collect();
                let wrote = !done.is_empty();
                if wrote {
                    Self::insert_rows(&mut *tx, &done, ends.map(|(written, _)| written)).await?;
                } else if let Some((_, nothing)) = ends {
                    sqlx::query(nothing).execute(&mut *tx).await?;
                }
                Ok((outcomes.into_iter().map(Ok).collect(), wrote))
            }

            /// One router step on `tx`, all or nothing: on a conflict it answers
            /// `Applied::Conflict` and the caller rolls the step's savepoint back. On SQLite
            /// every statement of the step goes in one query, one trip to SQLite's thread, so
            /// the compare-and-sets answer through `RETURNING` instead of stopping the step: a
            /// conversation whose epoch moved returns no row.
            async fn apply_on(
                tx: &mut <$db as sqlx::Database>::Connection,
                c: &RoutingChange,
                begin: Option<&str>,
            ) -> Result<Applied, sqlx::Error> {
                let mut queries = Statements::<$db>::new($sqlite);
                if let Some(begin) = begin {
                    // Joined with the step's statements (SQLite): one trip.
                    queries.next(begin);
                }
                if !$sqlite {
                    queries.next(BUMP_ROUTING_VERSION);
                }
                // A statement per kind of change (and per round, a round holding each row at
                // most once, in order), not per row: a step that scheduled a few hundred
                // handoffs at once took a statement per row, each prepared anew, and held
                // the writer (and every turn behind it) for 163 ms.
                for round in rounds(&c.conversations, |s| s.conversation_id.as_str()) {
                    let q = queries.next("UPDATE conversations SET state = v.column2, epoch = v.column3, updated_at = v.column4 FROM (");
                    q.push_values(round, |mut b, s| {
                        b.push_bind(s.conversation_id.clone())
                            .push_bind(s.state.clone())
                            .push_bind(s.epoch)
                            .push_bind(c.at.clone())
                            .push_bind(s.expected_epoch);
                    });
                    q.push(
                        ") AS v WHERE conversations.id = v.column1 AND conversations.epoch = v.column5 \
                         RETURNING CAST('conversation' AS TEXT), CAST(0 AS BIGINT)",
                    );
                }
                for round in rounds(&c.handoffs, |h| h.id.as_str()) {
                    let q = queries.next(
                        "UPDATE handoffs SET state = v.column2, routing = v.column3, updated_at = v.column4, \
                         eta_promised = v.column5, eta_kept = v.column6 FROM (",
                    );
                    q.push_values(round, |mut b, h| {
                        b.push_bind(h.id.clone())
                            .push_bind(h.state.clone())
                            .push_bind(h.routing.clone())
                            .push_bind(c.at.clone())
                            .push_bind(h.eta_promised)
                            .push_bind(h.eta_kept.map(i32::from));
                    });
                    q.push(") AS v WHERE handoffs.id = v.column1");
                }
                // One statement per offer, in order: an offer answered and the next one made
                // in the same step must not meet in one statement (the pending one is unique).
                for o in &c.offers {
                    let q = queries.next("INSERT INTO offers (id, handoff_id, rep_id, queue, state, offered_ms, answered_ms) ");
                    q.push_values([o], |mut b, o| {
                        b.push_bind(o.id.clone())
                            .push_bind(o.handoff_id.clone())
                            .push_bind(o.rep_id.clone())
                            .push_bind(o.queue.clone())
                            .push_bind(o.state.clone())
                            .push_bind(o.offered_ms)
                            .push_bind(o.answered_ms);
                    });
                    q.push(" ON CONFLICT (id) DO UPDATE SET state = excluded.state, answered_ms = excluded.answered_ms");
                }
                for (id, presence, missed) in &c.reps {
                    let q = queries.next("UPDATE reps SET presence = ");
                    q.push_bind(presence.clone())
                        .push(", missed = ")
                        .push_bind(*missed)
                        .push(", updated_at = ")
                        .push_bind(c.at.clone())
                        .push(" WHERE id = ")
                        .push_bind(id.clone());
                }
                for subjects in c.cancel_timers.chunks(ROWS_PER_STATEMENT) {
                    let q = queries.next("UPDATE timers SET fired_ms = -1 WHERE fired_ms IS NULL AND subject IN (");
                    let mut list = q.separated(", ");
                    for s in subjects {
                        list.push_bind(s.clone());
                    }
                    q.push(")");
                }
                for timers in c.timers.chunks(ROWS_PER_STATEMENT) {
                    let q = queries.next("INSERT INTO timers (id, kind, subject, due_ms) ");
                    q.push_values(timers, |mut b, t| {
                        b.push_bind(t.id.clone())
                            .push_bind(t.kind.clone())
                            .push_bind(t.subject.clone())
                            .push_bind(t.due_ms);
                    });
                }
                for meetings in c.meetings.chunks(ROWS_PER_STATEMENT) {
                    let q = queries.next("INSERT INTO meetings (id, handoff_id, rep_id, starts_ms, ends_ms, created_at) ");
                    q.push_values(meetings, |mut b, m| {
                        b.push_bind(m.id.clone())
                            .push_bind(m.handoff_id.clone())
                            .push_bind(m.rep_id.clone())
                            .push_bind(m.starts_ms)
                            .push_bind(m.ends_ms)
                            .push_bind(m.created_at.clone());
                    });
                }
                // The rows of a multi-row insert take their sequence numbers in the order they
                // are listed, but `RETURNING` gives them in no promised order: they are sorted
                // below.
                for events in c.events.chunks(ROWS_PER_STATEMENT) {
                    let q = queries.next("INSERT INTO stream_events (stream, kind, data, at) ");
                    q.push_values(events, |mut b, (stream, kind, data)| {
                        b.push_bind(stream.clone())
                            .push_bind(kind.clone())
                            .push_bind(data.clone())
                            .push_bind(c.at.clone());
                    });
                    q.push(" RETURNING CAST('event' AS TEXT), seq");
                }
                if !$sqlite {
                    // Delivered at commit to every node listening (the live streams).
                    let mut streams: Vec<&String> = c.events.iter().map(|(s, _, _)| s).collect();
                    streams.sort();
                    streams.dedup();
                    for s in streams {
                        // "SEQ STREAM": the stream's newest event, so that a node that sent it
                        // already reads nothing again.
                        let q = queries.next("SELECT CAST('notice' AS TEXT), CAST(0 AS BIGINT) FROM (SELECT pg_notify(");
                        q.push_bind(STREAMS_CHANNEL)
                            .push(", (SELECT CAST(max(seq) AS TEXT) FROM stream_events WHERE stream = ")
                            .push_bind(s.clone())
                            .push(") || ' ' || ")
                            .push_bind(s.clone())
                            .push(")) AS n");
                    }
                }
                let mut claimed = 0;
                let mut events = Vec::with_capacity(c.events.len());
                for mut q in queries.queries {
                    let rows = match q.build_query_as::<(String, i64)>().fetch_all(&mut *tx).await {
                        Ok(rows) => rows,
                        // A second pending offer for the handoff: the unique index refuses it.
                        Err(sqlx::Error::Database(e))
                            if e.is_unique_violation()
                                && (e.constraint() == Some("offers_one_pending")
                                    || e.message().contains("offers.handoff_id")) =>
                        {
                            return Ok(Applied::Conflict);
                        }
                        Err(e) => return Err(e),
                    };
                    for (what, value) in rows {
                        match what.as_str() {
                            "conversation" => claimed += 1,
                            "event" => events.push(value),
                            _ => {}
                        }
                    }
                }
                if claimed != c.conversations.len() {
                    return Ok(Applied::Conflict);
                }
                events.sort_unstable();
                Ok(Applied::Done { events })
            }

            /// An entry's decision, if it has one, in its row: `action, epoch, trigger_id,
            /// reason, policy_hash, trace` (NULL without).
            fn bind_decision(b: &mut sqlx::query_builder::Separated<'_, $db, &'static str>, t: &NewEntry) {
                let d = t.decision.as_ref();
                b.push_bind(d.map(|d| d.action.clone()))
                    .push_bind(d.map(|_| t.epoch))
                    .push_bind(d.and_then(|d| d.trigger.clone()))
                    .push_bind(d.and_then(|d| d.reason.clone()))
                    .push_bind(d.map(|d| d.policy_hash.clone()))
                    .push_bind(d.map(|d| d.trace.clone()));
            }

            /// Everything the claimed entries add, one multi-row statement per table. With
            /// `then` (SQLite), all of them and `then` go in one query: one trip to SQLite's
            /// thread.
            async fn insert_rows(
                tx: &mut <$db as sqlx::Database>::Connection,
                done: &[(&NewEntry, i64)],
                then: Option<&str>,
            ) -> Result<(), sqlx::Error> {
                let mut queries = Statements::<$db>::new(then.is_some());
                let turns: Vec<_> = done
                    .iter()
                    .filter_map(|(t, seq)| match &t.entry {
                        Entry::Turn { role, text, detected } => Some((*t, *seq, role, text, detected)),
                        Entry::Event { .. } => None,
                    })
                    .collect();
                if !turns.is_empty() {
                    let q = queries.next(
                        "INSERT INTO turns (conversation_id, seq, role, text, at, detected, action, epoch, trigger_id, reason, policy_hash, trace) ",
                    );
                    q.push_values(turns, |mut b, (t, seq, role, text, detected)| {
                        b.push_bind(t.conversation_id.clone())
                            .push_bind(seq)
                            .push_bind(role.clone())
                            .push_bind(text.clone())
                            .push_bind(t.at.clone())
                            .push_bind(detected.clone());
                        Self::bind_decision(&mut b, t);
                    });
                }
                let events: Vec<_> = done
                    .iter()
                    .filter_map(|(t, seq)| match &t.entry {
                        Entry::Event { kind, data } => Some((*t, *seq, kind, data)),
                        Entry::Turn { .. } => None,
                    })
                    .collect();
                if !events.is_empty() {
                    let q = queries.next(
                        "INSERT INTO events (conversation_id, seq, kind, data, at, action, epoch, trigger_id, reason, policy_hash, trace) ",
                    );
                    q.push_values(events, |mut b, (t, seq, kind, data)| {
                        b.push_bind(t.conversation_id.clone())
                            .push_bind(seq)
                            .push_bind(kind.clone())
                            .push_bind(data.clone())
                            .push_bind(t.at.clone());
                        Self::bind_decision(&mut b, t);
                    });
                }
                let handoffs: Vec<_> = done
                    .iter()
                    .filter_map(|(t, seq)| Some((*t, *seq, t.handoff.as_ref()?)))
                    .collect();
                if !handoffs.is_empty() {
                    let q = queries.next(
                        "INSERT INTO handoffs (id, conversation_id, seq, trigger_id, reason, priority, state, brief, created_at) ",
                    );
                    q.push_values(handoffs, |mut b, (t, seq, (id, brief))| {
                        let d = t.decision.as_ref();
                        b.push_bind(id.clone())
                            .push_bind(t.conversation_id.clone())
                            .push_bind(seq)
                            .push_bind(d.and_then(|d| d.trigger.clone()))
                            .push_bind(d.and_then(|d| d.reason.clone()))
                            .push_bind(d.and_then(|d| d.priority))
                            .push_bind(t.state.clone())
                            .push_bind(brief.clone())
                            .push_bind(t.at.clone());
                    });
                }
                let keys: Vec<_> = done
                    .iter()
                    .filter_map(|(t, _)| Some((*t, t.idempotency.as_ref()?)))
                    .collect();
                if !keys.is_empty() {
                    let q = queries.next(
                        "INSERT INTO idempotency (conversation_id, key, request_hash, response, created_at) ",
                    );
                    q.push_values(keys, |mut b, (t, (key, hash, response))| {
                        b.push_bind(t.conversation_id.clone())
                            .push_bind(key.clone())
                            .push_bind(hash.clone())
                            .push_bind(response.clone())
                            .push_bind(t.at.clone());
                    });
                }
                if let Some(then) = then {
                    queries.next(then);
                }
                for mut q in queries.queries {
                    q.build().execute(&mut *tx).await?;
                }
                Ok(())
            }

            /// Checks each entry's idempotency key and claims its sequence number with a
            /// compare-and-set on the conversation's epoch (and entry count, when given), for
            /// the whole group in a few statements: one creates the conversations seen for the
            /// first time (as the bot's, at epoch 0), then one `UPDATE ... FROM (VALUES ...)`
            /// per round, a round holding each conversation at most once, in arrival order.
            /// The rows come after, for the whole group at once. With `begin` (SQLite), the
            /// first statement opens the transaction: one trip to SQLite's thread fewer.
            async fn claim_all(
                tx: &mut <$db as sqlx::Database>::Connection,
                batch: &[Job],
                mut begin: Option<&str>,
            ) -> Result<Vec<Commit>, sqlx::Error> {
                let mut out: Vec<Option<Commit>> = vec![None; batch.len()];
                let keyed: Vec<(&str, &str)> = batch
                    .iter()
                    .filter_map(|(t, _)| Some((t.conversation_id.as_str(), t.idempotency.as_ref()?.0.as_str())))
                    .collect();
                if !keyed.is_empty() {
                    // Every key of the group in one statement.
                    let mut q = sqlx::QueryBuilder::<$db>::new(opening(&mut begin,
                        "WITH v (conversation_id, key) AS (",
                    ));
                    q.push_values(keyed, |mut b, (conversation, key)| {
                        b.push_bind(conversation.to_string()).push_bind(key.to_string());
                    });
                    q.push(
                        ") SELECT i.conversation_id, i.key, i.request_hash, i.response FROM idempotency i \
                         JOIN v ON i.conversation_id = v.conversation_id AND i.key = v.key",
                    );
                    let seen: std::collections::HashMap<(String, String), (String, String)> = q
                        .build_query_as::<(String, String, String, String)>()
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .map(|(c, k, request_hash, response)| ((c, k), (request_hash, response)))
                        .collect();
                    for (i, (t, _)) in batch.iter().enumerate() {
                        if let Some((key, _, _)) = &t.idempotency
                            && let Some((request_hash, response)) = seen.get(&(t.conversation_id.clone(), key.clone()))
                        {
                            out[i] = Some(Commit::Replay { request_hash: request_hash.clone(), response: response.clone() });
                        }
                    }
                }
                let new: Vec<&NewEntry> = batch
                    .iter()
                    .zip(&out)
                    .filter(|((t, _), o)| o.is_none() && t.expected_epoch == 0 && t.expected_count.unwrap_or(0) == 0)
                    .map(|((t, _), _)| t)
                    .collect();
                if !new.is_empty() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(opening(&mut begin,
                        "INSERT INTO conversations (id, state, epoch, contact, account, page, turn_count, created_at, updated_at) ",
                    ));
                    q.push_values(new, |mut b, t| {
                        b.push_bind(t.conversation_id.clone())
                            .push_bind("bot")
                            .push_bind(0i64)
                            .push_bind("{}")
                            .push_bind("{}")
                            .push_bind(None::<String>)
                            .push_bind(0i64)
                            .push_bind(t.at.clone())
                            .push_bind(t.at.clone());
                    });
                    q.push(" ON CONFLICT (id) DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                let mut pending: Vec<usize> = (0..batch.len()).filter(|i| out[*i].is_none()).collect();
                while !pending.is_empty() {
                    let mut seen = std::collections::HashSet::new();
                    let (round, rest): (Vec<usize>, Vec<usize>) = pending
                        .iter()
                        .partition(|i| seen.insert(batch[**i].0.conversation_id.as_str()));
                    let mut q = sqlx::QueryBuilder::<$db>::new(opening(&mut begin,
                        "UPDATE conversations SET state = v.column2, epoch = v.column3, contact = v.column4, account = v.column5, \
                         page = COALESCE(v.column6, conversations.page), turn_count = conversations.turn_count + 1, updated_at = v.column7 \
                         FROM (",
                    ));
                    q.push_values(round.iter().map(|i| &batch[*i].0), |mut b, t| {
                        b.push_bind(t.conversation_id.clone())
                            .push_bind(t.state.clone())
                            .push_bind(t.epoch)
                            .push_bind(t.contact.clone())
                            .push_bind(t.account.clone())
                            .push_bind(t.page.clone())
                            .push_bind(t.at.clone())
                            .push_bind(t.expected_epoch)
                            .push_bind(t.expected_count);
                    });
                    q.push(
                        ") AS v WHERE conversations.id = v.column1 AND conversations.epoch = v.column8 \
                         AND conversations.turn_count = COALESCE(v.column9, conversations.turn_count) \
                         RETURNING conversations.id, conversations.turn_count",
                    );
                    let claimed: std::collections::HashMap<String, i64> = q
                        .build_query_as::<(String, i64)>()
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .collect();
                    for i in round {
                        let t = &batch[i].0;
                        out[i] = Some(match claimed.get(&t.conversation_id) {
                            // Turns and events share one sequence.
                            Some(count) => Commit::Done { seq: count - 1 },
                            None => {
                                let current = sqlx::query_as::<_, (String, i64)>("SELECT state, epoch FROM conversations WHERE id = $1")
                                    .bind(&t.conversation_id)
                                    .fetch_optional(&mut *tx)
                                    .await?;
                                match current {
                                    Some((state, epoch)) if epoch != t.expected_epoch => Commit::Conflict { state, epoch },
                                    // The epoch is right but an entry came first, or the writer
                                    // expected entries that are not there.
                                    _ => Commit::Stale,
                                }
                            }
                        });
                    }
                    pending = rest;
                }
                Ok(out.into_iter().map(|o| o.unwrap_or(Commit::Stale)).collect())
            }

        }

        impl Store for $name {
            async fn migrate(&self) -> Result<(), StoreError> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                Ok(())
            }

            async fn conversation(&self, id: &str, detail: Detail) -> Result<Option<ConversationRow>, StoreError> {
                // One statement (one trip to the database, one snapshot): the conversation's
                // row, then its turns, events and handoffs, in the shape of [`PartRow`].
                let sql = match detail {
                    Detail::Full => conversation_sql!("signals", "trace", "brief"),
                    Detail::ForDecision => conversation_sql!("CAST(NULL AS TEXT)", "''", "''"),
                };
                let rows = sqlx::query_as::<_, PartRow>(sql)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(conversation_of(rows, detail))
            }

            async fn commit(&self, t: &NewEntry) -> Result<Commit, StoreError> {
                let (reply, answer) = tokio::sync::oneshot::channel();
                self.writer
                    .send(Work::Entry((t.clone(), reply)))
                    .await
                    .map_err(|_| StoreError::Closed)?;
                answer.await.map_err(|_| StoreError::Closed)?
            }

            async fn idempotent(&self, conversation_id: &str, key: &str) -> Result<Option<(String, String)>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String)>("SELECT request_hash, response FROM idempotency WHERE conversation_id = $1 AND key = $2")
                    .bind(conversation_id)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn handoffs(&self, limit: i64) -> Result<Vec<HandoffRow>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String, i64, Option<String>, Option<String>, Option<i64>, String, String, String)>(
                    "SELECT id, conversation_id, seq, trigger_id, reason, priority, state, brief, created_at FROM handoffs ORDER BY created_at DESC, id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(handoff_row)
                .collect())
            }

            async fn handoff(&self, id: &str) -> Result<Option<HandoffRow>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String, i64, Option<String>, Option<String>, Option<i64>, String, String, String)>(
                    "SELECT id, conversation_id, seq, trigger_id, reason, priority, state, brief, created_at FROM handoffs WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(handoff_row))
            }

            async fn activate_policy(&self, hash: &str, body: &str, at: &str) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE policies SET active = 0 WHERE active = 1")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO policies (hash, body, created_at, activated_at, active) VALUES ($1, $2, $3, $3, 1) \
                     ON CONFLICT (hash) DO UPDATE SET active = 1, activated_at = $3",
                )
                .bind(hash)
                .bind(body)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn active_policy(&self) -> Result<Option<PolicyRow>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String, String, String, i64)>(
                    "SELECT hash, body, created_at, activated_at, active FROM policies WHERE active = 1",
                )
                .fetch_optional(&self.pool)
                .await?
                .map(policy_row))
            }

            async fn policies(&self, limit: i64) -> Result<Vec<PolicyRow>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String, String, String, i64)>(
                    "SELECT hash, body, created_at, activated_at, active FROM policies ORDER BY activated_at DESC, hash LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(policy_row)
                .collect())
            }

            async fn summary(&self) -> Result<Summary, StoreError> {
                let count = |sql: &'static str| sqlx::query_as::<_, (i64,)>(sql).fetch_one(&self.pool);
                let groups = |sql: &'static str| sqlx::query_as::<_, (String, i64)>(sql).fetch_all(&self.pool);
                // The ETA promises in one pass over the handoffs.
                let (eta_promised, eta_kept, eta_broken) = sqlx::query_as::<_, (i64, i64, i64)>(
                    "SELECT COUNT(eta_promised), \
                     COALESCE(SUM(CASE WHEN eta_kept = 1 THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN eta_kept = 0 THEN 1 ELSE 0 END), 0) FROM handoffs",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(Summary {
                    conversations: count("SELECT COUNT(*) FROM conversations").await?.0,
                    by_state: groups("SELECT state, COUNT(*) FROM conversations GROUP BY state ORDER BY state").await?,
                    turns: count("SELECT COUNT(*) FROM turns").await?.0,
                    handoffs: count("SELECT COUNT(*) FROM handoffs").await?.0,
                    handoffs_by_trigger: groups(
                        "SELECT COALESCE(trigger_id, ''), COUNT(*) FROM handoffs GROUP BY COALESCE(trigger_id, '') ORDER BY 1",
                    )
                    .await?,
                    decisions_by_action: groups(
                        "SELECT action, COUNT(*) FROM (SELECT action FROM turns WHERE action IS NOT NULL \
                         UNION ALL SELECT action FROM events WHERE action IS NOT NULL) AS d GROUP BY action ORDER BY action",
                    ).await?,
                    eta_promised,
                    eta_kept,
                    eta_broken,
                })
            }

            async fn create_key(&self, key_hash: &str, name: &str, role: &str, at: &str) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO api_keys (key_hash, name, role, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(key_hash)
                    .bind(name)
                    .bind(role)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn find_key(&self, key_hash: &str) -> Result<Option<(String, String)>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String)>("SELECT name, role FROM api_keys WHERE key_hash = $1")
                    .bind(key_hash)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn put_rep(&self, id: &str, attrs: &str, now_ms: i64, at: &str) -> Result<RepRow, StoreError> {
                use sqlx::Connection as _;
                let mut w = self.write_conn().await?;
                let mut tx = w.get().begin_with($begin_write).await?;
                let r = sqlx::query_as::<_, (String, String, String, i64, i64, String)>(
                    "INSERT INTO reps (id, attrs, presence, heartbeat_ms, missed, updated_at) VALUES ($1, $2, 'offline', $3, 0, $4) \
                     ON CONFLICT (id) DO UPDATE SET attrs = excluded.attrs, updated_at = excluded.updated_at \
                     RETURNING id, attrs, presence, heartbeat_ms, missed, updated_at",
                )
                .bind(id)
                .bind(attrs)
                .bind(now_ms)
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                if !$sqlite {
                    sqlx::query(BUMP_ROUTING_VERSION).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(rep_row(r))
            }

            async fn reps(&self) -> Result<Vec<RepRow>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String, String, i64, i64, String)>(
                    "SELECT id, attrs, presence, heartbeat_ms, missed, updated_at FROM reps ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(rep_row)
                .collect())
            }

            async fn set_presence(&self, id: &str, presence: &str, now_ms: i64, at: &str) -> Result<bool, StoreError> {
                use sqlx::Connection as _;
                let mut w = self.write_conn().await?;
                let mut tx = w.get().begin_with($begin_write).await?;
                let done = sqlx::query("UPDATE reps SET presence = $1, heartbeat_ms = $2, missed = 0, updated_at = $3 WHERE id = $4")
                    .bind(presence)
                    .bind(now_ms)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if !$sqlite {
                    sqlx::query(BUMP_ROUTING_VERSION).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn open_handoffs(&self) -> Result<Vec<(HandoffRow, String)>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String, i64, Option<String>, Option<String>, Option<i64>, String, String, String, String)>(
                    "SELECT id, conversation_id, seq, trigger_id, reason, priority, state, brief, created_at, routing FROM handoffs \
                     WHERE state IN ('queued', 'offered', 'human') ORDER BY created_at, id",
                )
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| {
                    let routing = r.9.clone();
                    (handoff_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8)), routing)
                })
                .collect())
            }

            async fn handoff_decision(&self, handoff_id: &str) -> Result<Option<DecisionRow>, StoreError> {
                // The decision is in the row of the turn or the event that made the handoff.
                let row = sqlx::query_as::<_, DecisionTuple>(
                    "SELECT e.seq, e.at, e.action, e.epoch, e.trigger_id, e.reason, e.policy_hash, e.trace FROM handoffs h \
                     JOIN turns e ON e.conversation_id = h.conversation_id AND e.seq = h.seq WHERE h.id = $1 \
                     UNION ALL SELECT e.seq, e.at, e.action, e.epoch, e.trigger_id, e.reason, e.policy_hash, e.trace FROM handoffs h \
                     JOIN events e ON e.conversation_id = h.conversation_id AND e.seq = h.seq WHERE h.id = $1",
                )
                .bind(handoff_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.and_then(|(seq, at, action, epoch, trigger, reason, policy_hash, trace)| {
                    decision_row(seq, &at, (action, epoch, trigger, reason, policy_hash, trace))
                }))
            }

            async fn handoff_routing(&self, id: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::query_as::<_, (String,)>("SELECT routing FROM handoffs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| r.0))
            }

            async fn offers(&self, handoff_id: Option<&str>) -> Result<Vec<OfferRow>, StoreError> {
                let q = match handoff_id {
                    Some(h) => sqlx::query_as::<_, (String, String, String, String, String, i64, Option<i64>)>(
                        "SELECT id, handoff_id, rep_id, queue, state, offered_ms, answered_ms FROM offers WHERE handoff_id = $1 ORDER BY offered_ms, id",
                    )
                    .bind(h.to_string()),
                    None => sqlx::query_as::<_, (String, String, String, String, String, i64, Option<i64>)>(
                        "SELECT id, handoff_id, rep_id, queue, state, offered_ms, answered_ms FROM offers WHERE state = 'pending' ORDER BY offered_ms, id",
                    ),
                };
                Ok(q.fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|r| OfferRow {
                        id: r.0,
                        handoff_id: r.1,
                        rep_id: r.2,
                        queue: r.3,
                        state: r.4,
                        offered_ms: r.5,
                        answered_ms: r.6,
                    })
                    .collect())
            }

            async fn stream_notices(&self) -> Result<Option<tokio::sync::mpsc::Receiver<(i64, String)>>, StoreError> {
                self.notices().await
            }

            async fn routing_lock(&self) -> Result<Option<RoutingLock>, StoreError> {
                if $sqlite {
                    return Ok(None);
                }
                // Taken and released on a task of its own, so that a caller that gives up
                // waiting can never leave the lock held on a pooled connection.
                let (locked, answer) = tokio::sync::oneshot::channel::<Result<i64, StoreError>>();
                let (release, released) = tokio::sync::oneshot::channel::<()>();
                let pool = self.pool.clone();
                tokio::spawn(async move {
                    let mut conn = match pool.acquire().await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = locked.send(Err(e.into()));
                            return;
                        }
                    };
                    // One trip: two statements, the second with a snapshot taken once the
                    // lock is held.
                    let version = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "SELECT pg_advisory_lock({ROUTING_LOCK_KEY}); \
                         SELECT version FROM routing_version WHERE id = 1"
                    )))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::from)
                    .and_then(|rows| {
                        use sqlx::Row as _;
                        let row = rows.last().ok_or(StoreError::Closed)?;
                        Ok(row.try_get::<i64, _>(0)?)
                    });
                    if locked.send(version).is_ok() {
                        // Held until the caller drops its guard.
                        let _ = released.await;
                    }
                    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(ROUTING_LOCK_KEY)
                        .execute(&mut *conn)
                        .await;
                    if unlocked.is_err() {
                        // Closed, not returned to the pool with the lock still held.
                        conn.close_on_drop();
                    }
                });
                let version = answer.await.map_err(|_| StoreError::Closed)??;
                Ok(Some(RoutingLock { version, _release: release }))
            }

            async fn apply(&self, c: &RoutingChange) -> Result<Applied, StoreError> {
                let (reply, answer) = tokio::sync::oneshot::channel();
                self.writer
                    .send(Work::Routing((c.clone(), reply)))
                    .await
                    .map_err(|_| StoreError::Closed)?;
                answer.await.map_err(|_| StoreError::Closed)?
            }

            async fn claim_timers(&self, now_ms: i64, lease_until_ms: i64, limit: i64) -> Result<Vec<TimerRow>, StoreError> {
                use sqlx::Connection as _;
                let mut w = self.write_conn().await?;
                let mut tx = w.get().begin_with($begin_write).await?;
                let rows = sqlx::query_as::<_, (String, String, String, i64)>($claim_timers)
                    .bind(lease_until_ms)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let mut timers: Vec<TimerRow> = rows
                    .into_iter()
                    .map(|r| TimerRow { id: r.0, kind: r.1, subject: r.2, due_ms: r.3 })
                    .collect();
                timers.sort_by(|a, b| (a.due_ms, &a.id).cmp(&(b.due_ms, &b.id)));
                Ok(timers)
            }

            async fn finish_timer(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
                let mut w = self.write_conn().await?;
                let done = sqlx::query("UPDATE timers SET fired_ms = $1 WHERE id = $2 AND fired_ms IS NULL")
                    .bind(now_ms)
                    .bind(id)
                    .execute(w.get())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn next_timer(&self) -> Result<Option<i64>, StoreError> {
                Ok(sqlx::query_as::<_, (Option<i64>,)>("SELECT MIN(due_ms) FROM timers WHERE fired_ms IS NULL")
                    .fetch_one(&self.pool)
                    .await?
                    .0)
            }

            async fn stream_events(&self, stream: &str, after: i64, limit: i64) -> Result<Vec<StreamEventRow>, StoreError> {
                Ok(sqlx::query_as::<_, (i64, String, String, String, String)>(
                    "SELECT seq, stream, kind, data, at FROM stream_events WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(stream)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| StreamEventRow { seq: r.0, stream: r.1, kind: r.2, data: r.3, at: r.4 })
                .collect())
            }

            async fn meetings(&self, rep_id: &str, from_ms: i64) -> Result<Vec<MeetingRow>, StoreError> {
                Ok(sqlx::query_as::<_, (String, String, String, i64, i64, String)>(
                    "SELECT id, handoff_id, rep_id, starts_ms, ends_ms, created_at FROM meetings WHERE rep_id = $1 AND ends_ms > $2 ORDER BY starts_ms",
                )
                .bind(rep_id)
                .bind(from_ms)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(|r| MeetingRow { id: r.0, handoff_id: r.1, rep_id: r.2, starts_ms: r.3, ends_ms: r.4, created_at: r.5 })
                .collect())
            }
        }
    };
}

type HandoffTuple = (
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
    String,
    String,
);

/// A row's decision columns: action, epoch, trigger, reason, policy hash, trace.
type DecisionColumns = (
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);
type DecisionTuple = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The decision stored in an entry's row, if it has one.
fn decision_row(
    seq: i64,
    at: &str,
    (action, epoch, trigger, reason, policy_hash, trace): DecisionColumns,
) -> Option<DecisionRow> {
    Some(DecisionRow {
        seq,
        action: action?,
        epoch: epoch.unwrap_or_default(),
        trigger,
        reason,
        policy_hash: policy_hash.unwrap_or_default(),
        trace: trace.unwrap_or_default(),
        at: at.to_string(),
    })
}

fn policy_row(r: (String, String, String, String, i64)) -> PolicyRow {
    PolicyRow {
        hash: r.0,
        body: r.1,
        created_at: r.2,
        activated_at: r.3,
        active: r.4 != 0,
    }
}

fn rep_row(r: (String, String, String, i64, i64, String)) -> RepRow {
    RepRow {
        id: r.0,
        attrs: r.1,
        presence: r.2,
        heartbeat_ms: r.3,
        missed: r.4,
        updated_at: r.5,
    }
}

fn handoff_row(r: HandoffTuple) -> HandoffRow {
    HandoffRow {
        id: r.0,
        conversation_id: r.1,
        seq: r.2,
        trigger: r.3,
        reason: r.4,
        priority: r.5,
        state: r.6,
        brief: r.7,
        created_at: r.8,
    }
}

/// The one statement that loads a conversation: rows of [`PartRow`]'s shape, the
/// conversation's own first (part 0), then its turns (1), events (2) and handoffs (3), each in
/// sequence order. Given the SQL of a turn's signals, an entry's trace and a handoff's brief
/// (a literal to leave them out).
macro_rules! conversation_sql {
    ($signals:literal, $trace:literal, $brief:literal) => {
        concat!(
            "SELECT CAST(0 AS BIGINT) AS part, turn_count AS seq, epoch AS n, id AS t1, state AS t2, contact AS t3, account AS t4, page AS t5, created_at AS t6, updated_at AS t7, CAST(NULL AS TEXT) AS t8, CAST(NULL AS TEXT) AS t9, NULL AS b FROM conversations WHERE id = $1",
            " UNION ALL SELECT CAST(1 AS BIGINT), seq, epoch, role, text, at, ", $signals, ", action, trigger_id, reason, policy_hash, ", $trace, ", detected FROM turns WHERE conversation_id = $1",
            " UNION ALL SELECT CAST(2 AS BIGINT), seq, epoch, kind, data, at, CAST(NULL AS TEXT), action, trigger_id, reason, policy_hash, ", $trace, ", NULL FROM events WHERE conversation_id = $1",
            " UNION ALL SELECT CAST(3 AS BIGINT), seq, priority, id, conversation_id, trigger_id, reason, state, ", $brief, ", created_at, CAST(NULL AS TEXT), CAST(NULL AS TEXT), NULL FROM handoffs WHERE conversation_id = $1",
            " ORDER BY part, seq"
        )
    };
}

/// A row of [`conversation_sql!`]: part, sequence number (the entry count for part 0), a
/// number (the epoch, or a handoff's priority), nine texts whose meaning depends on part and
/// a turn's stored signals.
type PartRow = (
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

/// A conversation from the rows of [`conversation_sql!`]; `None` without its own row.
fn conversation_of(rows: Vec<PartRow>, detail: Detail) -> Option<ConversationRow> {
    let mut rows = rows.into_iter();
    let (0, turn_count, epoch, id, state, contact, account, page, created_at, updated_at, _, _, _) =
        rows.next()?
    else {
        return None;
    };
    let mut c = ConversationRow {
        id: id.unwrap_or_default(),
        state: state.unwrap_or_default(),
        epoch: epoch.unwrap_or_default(),
        contact: contact.unwrap_or_default(),
        account: account.unwrap_or_default(),
        page,
        created_at: created_at.unwrap_or_default(),
        updated_at: updated_at.unwrap_or_default(),
        turn_count,
        turns: Vec::new(),
        events: Vec::new(),
        decisions: Vec::new(),
        handoffs: Vec::new(),
    };
    for (part, seq, n, t1, t2, t3, t4, t5, t6, t7, t8, t9, detected) in rows {
        match part {
            // Each decision is in the row of the turn or event it answered.
            1 | 2 => {
                let at = t3.unwrap_or_default();
                c.decisions
                    .extend(decision_row(seq, &at, (t5, n, t6, t7, t8, t9)));
                if part == 1 {
                    c.turns.push(TurnRow {
                        seq,
                        role: t1.unwrap_or_default(),
                        text: t2.unwrap_or_default(),
                        at,
                        signals: t4,
                        detected,
                    });
                } else {
                    c.events.push(EventRow {
                        seq,
                        kind: t1.unwrap_or_default(),
                        data: t2.unwrap_or_default(),
                        at,
                    });
                }
            }
            _ => c.handoffs.push(handoff_row((
                t1.unwrap_or_default(),
                t2.unwrap_or_default(),
                seq,
                t3,
                t4,
                n,
                t5.unwrap_or_default(),
                t6.unwrap_or_default(),
                t7.unwrap_or_default(),
            ))),
        }
    }
    if detail == Detail::ForDecision {
        // Deciding reads only the decisions that fired a trigger or did more than continue
        // (cooldowns, what happened before).
        c.decisions
            .retain(|d| d.trigger.is_some() || d.action != "continue");
    }
    c.decisions.sort_unstable_by_key(|d| d.seq);
    Some(c)
}

/// The embedded default: one SQLite file in WAL mode with full synchronous commits, so every
/// acknowledged write survives a crash of the process or of the machine.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    writer: tokio::sync::mpsc::Sender<Work>,
    conn: SharedConn<sqlx::Sqlite>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &std::path::Path) -> Result<SqliteStore, StoreError> {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            // Not checked here, as on PostgreSQL (its migration 0010 says why): each row that
            // names a conversation or a handoff is written in the transaction that claimed it,
            // and the check per row cost 7-18% of the server's CPU a turn (116-128 against
            // 137-142 µs, BENCHMARKS.md, fourteenth session).
            .foreign_keys(false)
            .busy_timeout(std::time::Duration::from_secs(10))
            // The checkpointer copies the WAL into the database file, not the commits.
            .pragma("wal_autocheckpoint", "0")
            // A statement's own undo journal (a multi-row write inside a group's
            // transaction) in memory, not in a temporary file written page by page.
            .pragma("temp_store", "memory")
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            // A connection to a file in this process cannot go bad the way a network one
            // can; the ping before each use was a round trip to the connection's thread on
            // every read (a conversation not in the cache).
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let checkpointer = {
            use sqlx::ConnectOptions as _;
            Checkpointer::start(options.connect().await?)
        };
        let (writer, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
        let conn = SharedConn::default();
        tokio::spawn(SqliteStore::writer(
            pool.clone(),
            conn.clone(),
            rx,
            Some(checkpointer),
        ));
        Ok(SqliteStore { pool, writer, conn })
    }

    /// One node owns a SQLite file: no other node's streams to hear of.
    async fn notices(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<(i64, String)>>, StoreError> {
        Ok(None)
    }
}

/// PostgreSQL, shared by several Baton nodes.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: sqlx::PgPool,
    writer: tokio::sync::mpsc::Sender<Work>,
    conn: SharedConn<sqlx::Postgres>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Url(url.to_string()));
        }
        // sqlx's default statement cache: 1,024 statements a connection (as on SQLite) made
        // the load test slower here (3,932 / 3,865 turns/s against 4,559 / 4,329).
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await?;
        let (writer, rx) = tokio::sync::mpsc::channel(4 * MAX_BATCH);
        let conn = SharedConn::default();
        tokio::spawn(PgStore::writer(pool.clone(), conn.clone(), rx, None));
        Ok(PgStore { pool, writer, conn })
    }

    /// Closes every connection (a database can be dropped only once nobody uses it).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Listens on [`STREAMS_CHANNEL`]. If the connection drops, sqlx connects again; notices
    /// sent meanwhile are lost to the live streams (a client that reconnects with
    /// `Last-Event-ID` still gets them from the store).
    async fn notices(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<(i64, String)>>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(STREAMS_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        let Some((seq, stream)) = n
                            .payload()
                            .split_once(' ')
                            .and_then(|(q, s)| Some((q.parse().ok()?, s.to_string())))
                        else {
                            continue;
                        };
                        if tx.send((seq, stream)).await.is_err() {
                            return;
                        }
                    }
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Some(rx))
    }
}

store_impl!(
    SqliteStore,
    sqlx::Sqlite,
    "migrations/sqlite",
    // A write transaction from the start: a deferred one that read first could not write
    // after the group writer committed (SQLITE_BUSY_SNAPSHOT) instead of waiting its turn.
    "BEGIN IMMEDIATE",
    "UPDATE timers SET lease_ms = $1 WHERE id IN (SELECT id FROM timers WHERE fired_ms IS NULL AND due_ms <= $2 AND (lease_ms IS NULL OR lease_ms < $2) ORDER BY due_ms LIMIT $3) RETURNING id, kind, subject, due_ms",
    // SQLite: writes share the group writer's one connection, and statements are joined
    // into few queries (each is a trip to the connection's own thread).
    true
);
store_impl!(
    PgStore,
    sqlx::Postgres,
    "migrations/postgres",
    "BEGIN",
    "UPDATE timers SET lease_ms = $1 WHERE id IN (SELECT id FROM timers WHERE fired_ms IS NULL AND due_ms <= $2 AND (lease_ms IS NULL OR lease_ms < $2) ORDER BY due_ms LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, kind, subject, due_ms",
    false
);
