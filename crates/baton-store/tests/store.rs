//! The same store stories on SQLite (always) and PostgreSQL (when BATON_TEST_DATABASE_URL is
//! set; BATON_REQUIRE_PG=1 makes its absence a failure). Each test gets its own database.

use baton_store::{Commit, DecisionRecord, Detail, Entry, NewEntry, PgStore, SqliteStore, Store};

fn turn(conversation: &str, expected_epoch: i64, epoch: i64, state: &str, text: &str) -> NewEntry {
    NewEntry {
        conversation_id: conversation.into(),
        expected_epoch,
        expected_count: None,
        state: state.into(),
        epoch,
        contact: r#"{"name":"Alex"}"#.into(),
        account: "{}".into(),
        page: Some("/pricing".into()),
        at: "2026-11-23T15:00:00Z".into(),
        entry: Entry::Turn {
            role: "user".into(),
            text: text.into(),
            detected: Some(blob_of(text)),
        },
        decision: Some(DecisionRecord {
            action: "continue".into(),
            trigger: None,
            reason: None,
            priority: None,
            policy_hash: "abc".into(),
            trace: "{}".into(),
        }),
        handoff: None,
        idempotency: None,
    }
}

/// Stands for a turn's stored signals: any bytes, zeros and high bits included.
fn blob_of(text: &str) -> Vec<u8> {
    let mut b = vec![0, 0xff, 0x80];
    b.extend(text.bytes().rev());
    b
}

mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new() -> Dir {
            // Tests run in parallel: the counter keeps two of them out of one directory.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "baton-store-{}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

async fn sqlite() -> (SqliteStore, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let s = SqliteStore::open(&dir.path.join("baton.db"))
        .await
        .expect("open sqlite");
    s.migrate().await.expect("migrate");
    (s, dir)
}

/// A fresh PostgreSQL database for one test, or `None` (with a notice) when none is configured;
/// [`drop_pg`] removes it.
async fn postgres(test: &str) -> Option<(PgStore, sqlx::PgPool, String)> {
    let (url, admin, name) = fresh_pg(test).await?;
    let s = PgStore::connect(&url).await.expect("connect test database");
    s.migrate().await.expect("migrate");
    Some((s, admin, name))
}

/// An empty PostgreSQL database for one test: its URL, a pool on the server's default
/// database (to drop it), and its name; or `None` as for [`postgres`].
async fn fresh_pg(test: &str) -> Option<(String, sqlx::PgPool, String)> {
    let Ok(url) = std::env::var("BATON_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("BATON_REQUIRE_PG").is_err(),
            "BATON_REQUIRE_PG is set but BATON_TEST_DATABASE_URL is not"
        );
        eprintln!(
            "notice: BATON_TEST_DATABASE_URL is not set; skipping the PostgreSQL run of {test}"
        );
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("baton_{test}_{}_{nanos}", std::process::id());
    let admin = sqlx::PgPool::connect(&url)
        .await
        .expect("connect to PostgreSQL");
    // The name is built from a test function name and numbers only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some((format!("{base}/{name}"), admin, name))
}

async fn drop_pg((s, admin, name): (PgStore, sqlx::PgPool, String)) {
    s.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("drop test database");
}

async fn first_turn_creates_the_conversation(s: &impl Store) {
    assert!(
        s.conversation("c1", Detail::Full)
            .await
            .expect("load")
            .is_none()
    );
    assert_eq!(
        s.commit(&turn("c1", 0, 0, "bot", "hello"))
            .await
            .expect("commit"),
        Commit::Done { seq: 0 }
    );
    assert_eq!(
        s.commit(&turn("c1", 0, 0, "bot", "how much is it?"))
            .await
            .expect("commit"),
        Commit::Done { seq: 1 }
    );
    let c = s
        .conversation("c1", Detail::Full)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!((c.state.as_str(), c.epoch), ("bot", 0));
    assert_eq!(
        c.turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        ["hello", "how much is it?"]
    );
    assert_eq!(c.decisions.len(), 2);
    assert_eq!(c.page.as_deref(), Some("/pricing"));
    assert!(c.contact.contains("Alex"));
    // What a new turn reads: no signals, no traces, only decisions whose trigger fired.
    let light = s
        .conversation("c1", Detail::ForDecision)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(light.turns.len(), 2);
    assert!(light.turns.iter().all(|t| t.signals.is_none()));
    assert!(light.decisions.is_empty());
    // Each turn's stored signals come back byte for byte, in both readings.
    for turns in [&c.turns, &light.turns] {
        for t in turns.iter() {
            assert_eq!(t.detected.as_deref(), Some(&blob_of(&t.text)[..]));
        }
    }
}

async fn a_stale_epoch_conflicts_and_stores_nothing(s: &impl Store) {
    let mut handoff = turn("c2", 0, 1, "queued", "agent please");
    if let Some(d) = handoff.decision.as_mut() {
        d.action = "handoff".into();
        d.trigger = Some("explicit_request".into());
    }
    handoff.handoff = Some(("h-1".into(), r#"{"summary":["asked for a person"]}"#.into()));
    assert_eq!(
        s.commit(&handoff).await.expect("commit"),
        Commit::Done { seq: 0 }
    );
    // A writer still at epoch 0 is refused, and told where the conversation is.
    let stale = turn("c2", 0, 0, "bot", "the bot talks over the human");
    assert_eq!(
        s.commit(&stale).await.expect("commit"),
        Commit::Conflict {
            state: "queued".into(),
            epoch: 1
        }
    );
    let c = s
        .conversation("c2", Detail::Full)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(c.turns.len(), 1);
    assert_eq!(c.decisions.len(), 1);
    let h = s.handoff("h-1").await.expect("load").expect("exists");
    assert_eq!(
        (h.conversation_id.as_str(), h.trigger.as_deref()),
        ("c2", Some("explicit_request"))
    );
    assert_eq!(s.handoffs(10).await.expect("list").len(), 1);
    assert!(s.handoff("nope").await.expect("load").is_none());
}

async fn a_retried_request_is_stored_once(s: &impl Store) {
    let mut t = turn("c3", 0, 0, "bot", "hi");
    t.idempotency = Some((
        "key-1".into(),
        "hash-a".into(),
        r#"{"action":"continue"}"#.into(),
    ));
    assert_eq!(s.commit(&t).await.expect("commit"), Commit::Done { seq: 0 });
    assert_eq!(
        s.commit(&t).await.expect("commit"),
        Commit::Replay {
            request_hash: "hash-a".into(),
            response: r#"{"action":"continue"}"#.into()
        }
    );
    assert_eq!(
        s.conversation("c3", Detail::Full)
            .await
            .expect("load")
            .expect("exists")
            .turns
            .len(),
        1
    );
    assert_eq!(
        s.idempotent("c3", "key-1").await.expect("load"),
        Some(("hash-a".into(), r#"{"action":"continue"}"#.into()))
    );
    assert_eq!(s.idempotent("c3", "key-2").await.expect("load"), None);
}

/// Keyed entries committed together (one group looks up all its keys at once): the retries
/// replay the stored answers, the new keys are stored, and nothing is stored twice.
async fn keyed_entries_in_a_group_replay_one_by_one<S: Store + Clone>(s: &S) {
    let keyed = |i: usize| {
        let mut t = turn(&format!("k{i}"), 0, 0, "bot", &format!("message {i}"));
        t.idempotency = Some((
            format!("key-{i}"),
            format!("hash-{i}"),
            format!(r#"{{"n":{i}}}"#),
        ));
        t
    };
    // The even ones are stored first; then all forty arrive at once.
    for i in (0..40).step_by(2) {
        assert_eq!(
            s.commit(&keyed(i)).await.expect("commit"),
            Commit::Done { seq: 0 }
        );
    }
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { (i, s.commit(&keyed(i)).await) }));
    }
    for t in tasks {
        let (i, outcome) = t.await.expect("task");
        let expected = if i % 2 == 0 {
            Commit::Replay {
                request_hash: format!("hash-{i}"),
                response: format!(r#"{{"n":{i}}}"#),
            }
        } else {
            Commit::Done { seq: 0 }
        };
        assert_eq!(outcome.expect("commit"), expected, "entry {i}");
    }
    for i in 0..40 {
        let c = s
            .conversation(&format!("k{i}"), Detail::Full)
            .await
            .expect("load")
            .expect("exists");
        assert_eq!(c.turns.len(), 1, "conversation k{i}");
        assert_eq!(
            s.idempotent(&format!("k{i}"), &format!("key-{i}"))
                .await
                .expect("load"),
            Some((format!("hash-{i}"), format!(r#"{{"n":{i}}}"#)))
        );
    }
}

async fn concurrent_turns_get_distinct_sequence_numbers<S: Store + Clone>(s: &S) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.commit(&turn("c4", 0, 0, "bot", &format!("message {i}")))
                .await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        match t.await.expect("task").expect("commit") {
            Commit::Done { seq } => seqs.push(seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    seqs.sort();
    assert_eq!(seqs, (0..16).collect::<Vec<i64>>());
}

/// Entries committed together (one group commit) still conflict one by one.
async fn a_conflict_in_a_group_commit_leaves_the_others_alone<S: Store + Clone>(s: &S) {
    s.commit(&turn("c7", 0, 1, "queued", "agent please"))
        .await
        .expect("commit");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        // Even ones hold the current epoch (1), odd ones a stale one (0).
        let expected = if i % 2 == 0 { 1 } else { 0 };
        tasks.push(tokio::spawn(async move {
            s.commit(&turn(
                "c7",
                expected,
                expected,
                "queued",
                &format!("message {i}"),
            ))
            .await
        }));
    }
    let (mut done, mut conflicts) = (Vec::new(), 0);
    for t in tasks {
        match t.await.expect("task").expect("commit") {
            Commit::Done { seq } => done.push(seq),
            Commit::Conflict { state, epoch } => {
                assert_eq!((state.as_str(), epoch), ("queued", 1));
                conflicts += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    done.sort();
    assert_eq!(done, (1..21).collect::<Vec<i64>>());
    assert_eq!(conflicts, 20);
    let c = s
        .conversation("c7", Detail::Full)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!((c.turns.len(), c.decisions.len()), (21, 21));
}

/// Router steps share the entries' group commits: a step whose compare-and-set fails, or that
/// would make a second pending offer for a handoff, stores nothing of itself and leaves the
/// other steps and entries of its group alone.
async fn router_steps_in_a_group_conflict_one_by_one<S: Store + Clone>(s: &S) {
    use baton_store::{Applied, OfferRow, RoutingChange, StateChange};
    let mut first = turn("c11", 0, 1, "queued", "agent please");
    first.handoff = Some(("h11".into(), "{}".into()));
    assert!(matches!(
        s.commit(&first).await.expect("commit"),
        Commit::Done { .. }
    ));
    let step = |i: usize, expected_epoch: Option<i64>| RoutingChange {
        at: "2026-11-23T15:00:00Z".into(),
        conversations: expected_epoch
            .map(|e| StateChange {
                conversation_id: "c11".into(),
                expected_epoch: e,
                state: "offered".into(),
                epoch: e + 1,
            })
            .into_iter()
            .collect(),
        offers: vec![OfferRow {
            id: format!("o{i}"),
            handoff_id: "h11".into(),
            rep_id: format!("rep{i}"),
            queue: "q".into(),
            state: "pending".into(),
            offered_ms: i as i64,
            answered_ms: None,
        }],
        events: vec![("rep:x".into(), "offer".into(), format!("{{\"n\":{i}}}"))],
        ..RoutingChange::default()
    };
    let mut steps = Vec::new();
    let mut turns = Vec::new();
    for i in 0..30 {
        let s2 = s.clone();
        // Ten with a stale epoch; twenty racing for the one pending offer.
        let change = step(i, (i < 10).then_some(0));
        steps.push(tokio::spawn(async move { s2.apply(&change).await }));
        if i % 3 == 0 {
            let s3 = s.clone();
            turns.push(tokio::spawn(async move {
                s3.commit(&turn("c11", 1, 1, "queued", &format!("still there? {i}")))
                    .await
            }));
        }
    }
    let mut done = Vec::new();
    for (i, t) in steps.into_iter().enumerate() {
        match t.await.expect("task").expect("apply") {
            Applied::Done { events } => {
                assert_eq!(events.len(), 1);
                done.push(i);
            }
            Applied::Conflict => {}
        }
    }
    assert_eq!(done.len(), 1, "one pending offer per handoff: {done:?}");
    assert!(done[0] >= 10, "a stale step was stored: {done:?}");
    for t in turns {
        assert!(matches!(
            t.await.expect("task").expect("commit"),
            Commit::Done { .. }
        ));
    }
    let offers = s.offers(Some("h11")).await.expect("offers");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].id, format!("o{}", done[0]));
    let events = s.stream_events("rep:x", 0, 100).await.expect("events");
    assert_eq!(events.len(), 1, "only the stored step's event");
    let c = s
        .conversation("c11", Detail::Full)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!((c.epoch, c.turns.len()), (1, 11));
}

/// A router step larger than one statement holds (600 conversations moved twice each, 1,200
/// events, 600 timers cancelled and 600 set) is stored whole and in order: each conversation
/// ends at its second move, the events' sequence numbers come back in the order they were
/// listed, and only the new timers are left. One stale compare-and-set stores nothing of it.
async fn a_large_router_step_is_stored_whole_and_in_order(s: &impl Store) {
    use baton_store::{Applied, HandoffChange, RoutingChange, StateChange, TimerRow};
    const N: usize = 600;
    for i in 0..N {
        let mut t = turn(&format!("big{i}"), 0, 1, "queued", "a person please");
        t.handoff = Some((format!("hb{i}"), "{}".into()));
        assert!(matches!(
            s.commit(&t).await.expect("commit"),
            Commit::Done { .. }
        ));
    }
    let timer = |i: usize, kind: &str, due_ms: i64| TimerRow {
        id: format!("{kind}{i}"),
        kind: kind.into(),
        subject: format!("hb{i}"),
        due_ms,
    };
    let first = RoutingChange {
        at: "2026-11-23T15:00:00Z".into(),
        timers: (0..N).map(|i| timer(i, "sla", 1_000)).collect(),
        ..RoutingChange::default()
    };
    assert!(matches!(
        s.apply(&first).await.expect("apply"),
        Applied::Done { .. }
    ));
    let step = |stale: Option<usize>| RoutingChange {
        at: "2026-11-23T15:01:00Z".into(),
        conversations: (0..N)
            .flat_map(|i| {
                let e = if stale == Some(i) { 7 } else { 1 };
                [("offered", e, 2), ("scheduled", 2, 3)].map(|(state, expected, epoch)| {
                    StateChange {
                        conversation_id: format!("big{i}"),
                        expected_epoch: expected,
                        state: state.into(),
                        epoch,
                    }
                })
            })
            .collect(),
        handoffs: (0..N)
            .flat_map(|i| {
                ["offered", "scheduled"].map(|state| HandoffChange {
                    id: format!("hb{i}"),
                    state: state.into(),
                    routing: format!(r#"{{"step":"{state}"}}"#),
                    eta_promised: Some(60),
                    eta_kept: None,
                })
            })
            .collect(),
        cancel_timers: (0..N).map(|i| format!("hb{i}")).collect(),
        timers: (0..N).map(|i| timer(i, "follow_up", 2_000)).collect(),
        events: (0..2 * N)
            .map(|i| {
                (
                    format!("conversation:big{}", i % 7),
                    "status".to_string(),
                    format!(r#"{{"n":{i}}}"#),
                )
            })
            .collect(),
        ..RoutingChange::default()
    };
    assert_eq!(
        s.apply(&step(Some(N - 1))).await.expect("apply"),
        Applied::Conflict
    );
    let c = s
        .conversation("big0", Detail::ForDecision)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(
        (c.state.as_str(), c.epoch),
        ("queued", 1),
        "a refused step left a change"
    );
    assert!(
        s.stream_events("conversation:big0", 0, 10)
            .await
            .expect("events")
            .is_empty()
    );
    let change = step(None);
    let Applied::Done { events } = s.apply(&change).await.expect("apply") else {
        panic!("the step was refused");
    };
    assert_eq!(events.len(), 2 * N);
    assert!(events.windows(2).all(|w| w[0] < w[1]), "in order");
    for stream in 0..7 {
        let name = format!("conversation:big{stream}");
        let stored = s.stream_events(&name, 0, 1_000).await.expect("events");
        let listed: Vec<(i64, &str)> = change
            .events
            .iter()
            .zip(&events)
            .filter(|((st, _, _), _)| *st == name)
            .map(|((_, _, data), seq)| (*seq, data.as_str()))
            .collect();
        let got: Vec<(i64, &str)> = stored.iter().map(|e| (e.seq, e.data.as_str())).collect();
        assert_eq!(got, listed, "each event under the number returned for it");
    }
    for i in [0, N / 2, N - 1] {
        let c = s
            .conversation(&format!("big{i}"), Detail::ForDecision)
            .await
            .expect("load")
            .expect("exists");
        assert_eq!((c.state.as_str(), c.epoch), ("scheduled", 3));
        let h = s
            .handoff(&format!("hb{i}"))
            .await
            .expect("handoff")
            .expect("exists");
        assert_eq!(h.state, "scheduled");
    }
    let due = s
        .claim_timers(10_000, 20_000, 2 * N as i64)
        .await
        .expect("claim");
    assert_eq!(
        due.len(),
        N,
        "the cancelled timers are gone, the new ones left"
    );
    assert!(due.iter().all(|t| t.kind == "follow_up"));
}

/// An entry that fails (here: a handoff id already taken) fails alone; the others of its group
/// are stored.
async fn a_failing_entry_fails_alone<S: Store + Clone>(s: &S) {
    let mut first = turn("c10", 0, 1, "queued", "agent please");
    first.handoff = Some(("h-dup".into(), "{}".into()));
    s.commit(&first).await.expect("commit");
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = s.clone();
        let mut t = turn(&format!("c10-{i}"), 0, 0, "bot", "hello");
        if i == 5 {
            t.handoff = Some(("h-dup".into(), "{}".into()));
        }
        tasks.push(tokio::spawn(async move { s.commit(&t).await }));
    }
    let mut failed = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Ok(Commit::Done { seq: 0 }) => {}
            Ok(other) => panic!("entry {i}: unexpected {other:?}"),
            Err(_) => failed.push(i),
        }
    }
    assert_eq!(failed, [5]);
    assert!(
        s.conversation("c10-5", Detail::Full)
            .await
            .expect("load")
            .is_none()
    );
    assert!(
        s.conversation("c10-6", Detail::Full)
            .await
            .expect("load")
            .is_some()
    );
}

/// A writer whose view missed an entry is told so, and stores nothing.
async fn a_stale_view_is_refused(s: &impl Store) {
    let mut first = turn("c8", 0, 0, "bot", "hello");
    first.expected_count = Some(0);
    assert_eq!(
        s.commit(&first).await.expect("commit"),
        Commit::Done { seq: 0 }
    );
    let mut stale = turn("c8", 0, 0, "bot", "decided on an empty conversation");
    stale.expected_count = Some(0);
    assert_eq!(s.commit(&stale).await.expect("commit"), Commit::Stale);
    let mut fresh = turn("c8", 0, 0, "bot", "decided on one turn");
    fresh.expected_count = Some(1);
    assert_eq!(
        s.commit(&fresh).await.expect("commit"),
        Commit::Done { seq: 1 }
    );
    let c = s
        .conversation("c8", Detail::ForDecision)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!((c.turn_count, c.turns.len()), (2, 2));
}

async fn api_keys_are_found_by_hash(s: &impl Store) {
    s.create_key("h1", "website bot", "bot", "2026-11-23T15:00:00Z")
        .await
        .expect("create");
    assert_eq!(
        s.find_key("h1").await.expect("find"),
        Some(("website bot".into(), "bot".into()))
    );
    assert_eq!(s.find_key("h2").await.expect("find"), None);
    assert!(
        s.create_key("h1", "again", "admin", "2026-11-23T15:00:00Z")
            .await
            .is_err()
    );
}

async fn events_share_the_turns_sequence(s: &impl Store) {
    s.commit(&turn("c5", 0, 0, "bot", "hello"))
        .await
        .expect("commit");
    let mut view = turn("c5", 0, 0, "bot", "");
    view.entry = Entry::Event {
        kind: "page_view".into(),
        data: r#"{"page":"/pricing"}"#.into(),
    };
    view.decision = None;
    assert_eq!(
        s.commit(&view).await.expect("commit"),
        Commit::Done { seq: 1 }
    );
    s.commit(&turn("c5", 0, 0, "bot", "how much?"))
        .await
        .expect("commit");
    let c = s
        .conversation("c5", Detail::ForDecision)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(c.turns.iter().map(|t| t.seq).collect::<Vec<_>>(), [0, 2]);
    assert_eq!(c.events.len(), 1);
    assert_eq!(
        (c.events[0].seq, c.events[0].kind.as_str()),
        (1, "page_view")
    );
    let full = s
        .conversation("c5", Detail::Full)
        .await
        .expect("load")
        .expect("exists");
    // The event made no decision.
    assert_eq!(
        full.decisions.iter().map(|d| d.seq).collect::<Vec<_>>(),
        [0, 2]
    );
}

async fn one_policy_version_is_active(s: &impl Store) {
    assert!(s.active_policy().await.expect("load").is_none());
    s.activate_policy("h1", "version = 1", "2026-11-23T15:00:00Z")
        .await
        .expect("store");
    s.activate_policy("h2", "version = 1 # two", "2026-11-23T16:00:00Z")
        .await
        .expect("store");
    assert_eq!(
        s.active_policy().await.expect("load").expect("one").hash,
        "h2"
    );
    // Going back to an earlier version reuses its row.
    s.activate_policy("h1", "version = 1", "2026-11-23T17:00:00Z")
        .await
        .expect("store");
    let all = s.policies(10).await.expect("list");
    assert_eq!(
        all.iter()
            .map(|p| (p.hash.as_str(), p.active))
            .collect::<Vec<_>>(),
        [("h1", true), ("h2", false)]
    );
    assert_eq!(all[0].created_at, "2026-11-23T15:00:00Z");
    assert_eq!(all[0].activated_at, "2026-11-23T17:00:00Z");
}

async fn the_summary_counts(s: &impl Store) {
    assert_eq!(s.summary().await.expect("summary").conversations, 0);
    s.commit(&turn("c6", 0, 0, "bot", "hi"))
        .await
        .expect("commit");
    let mut h = turn("c6", 0, 1, "queued", "agent please");
    if let Some(d) = h.decision.as_mut() {
        d.action = "handoff".into();
        d.trigger = Some("explicit_request".into());
    }
    h.handoff = Some(("h-6".into(), "{}".into()));
    s.commit(&h).await.expect("commit");
    let sum = s.summary().await.expect("summary");
    assert_eq!((sum.conversations, sum.turns, sum.handoffs), (1, 2, 1));
    assert_eq!(sum.by_state, [("queued".to_string(), 1)]);
    assert_eq!(
        sum.handoffs_by_trigger,
        [("explicit_request".to_string(), 1)]
    );
    assert_eq!(
        sum.decisions_by_action,
        [("continue".to_string(), 1), ("handoff".to_string(), 1)]
    );
}

macro_rules! story {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            let (s, _dir) = sqlite().await;
            super::$name(&s).await;
            if let Some(pg) = postgres(stringify!($name)).await {
                super::$name(&pg.0).await;
                drop_pg(pg).await;
            }
        }
    };
}

mod both_backends {
    use super::*;

    story!(first_turn_creates_the_conversation);
    story!(a_stale_epoch_conflicts_and_stores_nothing);
    story!(a_retried_request_is_stored_once);
    story!(keyed_entries_in_a_group_replay_one_by_one);
    story!(concurrent_turns_get_distinct_sequence_numbers);
    story!(api_keys_are_found_by_hash);
    story!(a_stale_view_is_refused);
    story!(a_failing_entry_fails_alone);
    story!(a_conflict_in_a_group_commit_leaves_the_others_alone);
    story!(router_steps_in_a_group_conflict_one_by_one);
    story!(a_large_router_step_is_stored_whole_and_in_order);
    story!(events_share_the_turns_sequence);
    story!(one_policy_version_is_active);
    story!(the_summary_counts);
}

/// Rows whose parent is missing: turns, events and handoffs without their conversation,
/// offers without their handoff. The database does not check these (migration 0010).
const ORPHANS: &str = "SELECT \
    (SELECT COUNT(*) FROM turns t WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = t.conversation_id)) + \
    (SELECT COUNT(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = e.conversation_id)) + \
    (SELECT COUNT(*) FROM handoffs h WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = h.conversation_id)) + \
    (SELECT COUNT(*) FROM offers o WHERE NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.id = o.handoff_id))";

/// The stories that write turns, events, handoffs, offers, conflicts and retries, on one store.
async fn writing_stories<S: Store + Clone>(s: &S) {
    first_turn_creates_the_conversation(s).await;
    a_retried_request_is_stored_once(s).await;
    a_conflict_in_a_group_commit_leaves_the_others_alone(s).await;
    router_steps_in_a_group_conflict_one_by_one(s).await;
    a_large_router_step_is_stored_whole_and_in_order(s).await;
    events_share_the_turns_sequence(s).await;
}

/// How many turns and offers `pool`'s database holds, and how many rows miss their parent.
async fn rows_and_orphans<DB>(pool: &sqlx::Pool<DB>) -> (i64, i64)
where
    DB: sqlx::Database,
    (i64, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT COUNT(*) FROM turns) + (SELECT COUNT(*) FROM offers), ({ORPHANS})"
    )))
    .fetch_one(pool)
    .await
    .expect("count")
}

#[tokio::test]
async fn every_row_has_its_parent() {
    let (s, dir) = sqlite().await;
    writing_stories(&s).await;
    let path = dir.path.join("baton.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open");
    let mut counts = vec![rows_and_orphans(&pool).await];
    if let Some((url, admin, name)) = fresh_pg("every_row_has_its_parent").await {
        let s = PgStore::connect(&url).await.expect("connect");
        s.migrate().await.expect("migrate");
        writing_stories(&s).await;
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        counts.push(rows_and_orphans(&pool).await);
        pool.close().await;
        drop_pg((s, admin, name)).await;
    }
    for (rows, orphans) in counts {
        assert!(rows > 10, "the stories wrote {rows} turns and offers");
        assert_eq!(orphans, 0);
    }
}

/// Runs the first `upto` migrations of `backend` on `pool`, as a database made by an earlier
/// build would have them.
async fn migrate_upto<DB>(backend: &str, upto: u32, pool: &sqlx::Pool<DB>)
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let dir = tempdir::Dir::new();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for f in std::fs::read_dir(&source).expect("migrations") {
        let f = f.expect("migration");
        let name = f.file_name().to_string_lossy().into_owned();
        let version: u32 = name[..4].parse().expect("numbered migration");
        if version <= upto {
            std::fs::copy(f.path(), dir.path.join(&name)).expect("copy migration");
        }
    }
    sqlx::migrate::Migrator::new(dir.path.as_path())
        .await
        .expect("read migrations")
        .run(pool)
        .await
        .expect("run migrations");
}

/// A database of migration 7 holds decisions in a table of their own: a turn's and an
/// event's (an explicit handoff request). Both are in their entries' rows after 8, and read
/// back as before.
const BEFORE_DECISIONS_IN_ENTRIES: &[&str] = &[
    "INSERT INTO conversations (id, state, epoch, turn_count, created_at, updated_at) \
     VALUES ('old', 'queued', 1, 3, '2026-11-01T10:00:00Z', '2026-11-01T10:02:00Z')",
    "INSERT INTO turns (conversation_id, seq, role, text, at, signals) VALUES \
     ('old', 0, 'user', 'hello', '2026-11-01T10:00:00Z', '{\"human_request\":false}'), \
     ('old', 2, 'bot', 'one moment', '2026-11-01T10:02:00Z', NULL)",
    "INSERT INTO events (conversation_id, seq, kind, data, at) \
     VALUES ('old', 1, 'handoff_request', '{}', '2026-11-01T10:01:00Z')",
    "INSERT INTO decisions (conversation_id, seq, action, epoch, trigger_id, reason, policy_hash, trace, at) VALUES \
     ('old', 0, 'continue', 0, NULL, NULL, 'p1', '{\"n\":0}', '2026-11-01T10:00:00Z'), \
     ('old', 1, 'handoff', 1, 'explicit_request', 'asked', 'p1', '{\"n\":1}', '2026-11-01T10:01:00Z')",
    "INSERT INTO handoffs (id, conversation_id, seq, trigger_id, reason, priority, state, brief, created_at) \
     VALUES ('h-old', 'old', 1, 'explicit_request', 'asked', 10, 'queued', '{}', '2026-11-01T10:01:00Z')",
];

async fn decisions_read_back_after_migration_8(s: &impl Store) {
    let c = s
        .conversation("old", Detail::Full)
        .await
        .expect("load")
        .expect("kept");
    assert_eq!((c.turns.len(), c.events.len()), (2, 1));
    assert_eq!(
        c.decisions
            .iter()
            .map(|d| (d.seq, d.action.as_str(), d.epoch, d.trace.as_str()))
            .collect::<Vec<_>>(),
        [
            (0, "continue", 0, r#"{"n":0}"#),
            (1, "handoff", 1, r#"{"n":1}"#)
        ]
    );
    assert_eq!(c.decisions[1].at, "2026-11-01T10:01:00Z");
    assert_eq!(c.decisions[1].trigger.as_deref(), Some("explicit_request"));
    // Every part of the row read in one statement: the conversation's own columns, the
    // turns (with the signals stored then), the event and the handoff.
    assert_eq!(
        (c.id.as_str(), c.state.as_str(), c.epoch, c.turn_count),
        ("old", "queued", 1, 3)
    );
    assert_eq!((c.contact.as_str(), c.page.as_deref()), ("{}", None));
    assert_eq!(
        (c.created_at.as_str(), c.updated_at.as_str()),
        ("2026-11-01T10:00:00Z", "2026-11-01T10:02:00Z")
    );
    assert_eq!(
        c.turns
            .iter()
            .map(|t| (
                t.seq,
                t.role.as_str(),
                t.text.as_str(),
                t.signals.as_deref()
            ))
            .collect::<Vec<_>>(),
        [
            (0, "user", "hello", Some(r#"{"human_request":false}"#)),
            (2, "bot", "one moment", None)
        ]
    );
    assert_eq!(
        (
            c.events[0].seq,
            c.events[0].kind.as_str(),
            c.events[0].at.as_str()
        ),
        (1, "handoff_request", "2026-11-01T10:01:00Z")
    );
    let h = &c.handoffs[..];
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].id.as_str(), h[0].conversation_id.as_str(), h[0].seq),
        ("h-old", "old", 1)
    );
    assert_eq!(
        (
            h[0].trigger.as_deref(),
            h[0].reason.as_deref(),
            h[0].priority
        ),
        (Some("explicit_request"), Some("asked"), Some(10))
    );
    assert_eq!(
        (
            h[0].state.as_str(),
            h[0].brief.as_str(),
            h[0].created_at.as_str()
        ),
        ("queued", "{}", "2026-11-01T10:01:00Z")
    );
    // Deciding reads the decisions that did more than continue, without their traces.
    let light = s
        .conversation("old", Detail::ForDecision)
        .await
        .expect("load")
        .expect("kept");
    assert_eq!(
        light
            .decisions
            .iter()
            .map(|d| (d.seq, d.trace.as_str()))
            .collect::<Vec<_>>(),
        [(1, "")]
    );
    assert!(light.turns.iter().all(|t| t.signals.is_none()));
    assert_eq!(
        light
            .handoffs
            .iter()
            .map(|h| (h.id.as_str(), h.brief.as_str(), h.priority))
            .collect::<Vec<_>>(),
        [("h-old", "", Some(10))]
    );
    let d = s
        .handoff_decision("h-old")
        .await
        .expect("load")
        .expect("the event's decision");
    assert_eq!((d.seq, d.reason.as_deref()), (1, Some("asked")));
    assert_eq!(
        s.summary().await.expect("summary").decisions_by_action,
        [("continue".to_string(), 1), ("handoff".to_string(), 1)]
    );
    // A new event with a decision goes in its row too.
    let mut e = turn("old", 1, 1, "queued", "");
    e.expected_count = Some(3);
    e.entry = Entry::Event {
        kind: "handoff_request".into(),
        data: "{}".into(),
    };
    if let Some(d) = e.decision.as_mut() {
        d.action = "hold".into();
    }
    assert_eq!(s.commit(&e).await.expect("commit"), Commit::Done { seq: 3 });
    let c = s
        .conversation("old", Detail::Full)
        .await
        .expect("load")
        .expect("kept");
    assert_eq!(
        c.decisions
            .iter()
            .map(|d| (d.seq, d.action.as_str()))
            .collect::<Vec<_>>(),
        [(0, "continue"), (1, "handoff"), (3, "hold")]
    );
}

#[tokio::test]
async fn decisions_move_into_their_entries_rows() {
    let dir = tempdir::Dir::new();
    let file = dir.path.join("baton.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", file.display()))
        .await
        .expect("open sqlite");
    migrate_upto("sqlite", 7, &pool).await;
    for sql in BEFORE_DECISIONS_IN_ENTRIES {
        sqlx::query(*sql).execute(&pool).await.expect("old rows");
    }
    pool.close().await;
    let s = SqliteStore::open(&file).await.expect("open sqlite");
    s.migrate().await.expect("migrate");
    decisions_read_back_after_migration_8(&s).await;

    let Some((url, admin, name)) = fresh_pg("decisions_move").await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    migrate_upto("postgres", 7, &pool).await;
    for sql in BEFORE_DECISIONS_IN_ENTRIES {
        sqlx::query(*sql).execute(&pool).await.expect("old rows");
    }
    pool.close().await;
    let s = PgStore::connect(&url).await.expect("connect test database");
    s.migrate().await.expect("migrate");
    decisions_read_back_after_migration_8(&s).await;
    drop_pg((s, admin, name)).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("baton.db");
    {
        let s = SqliteStore::open(&path).await.expect("open");
        s.migrate().await.expect("migrate");
        s.commit(&turn("c9", 0, 0, "bot", "remember me"))
            .await
            .expect("commit");
    }
    let s = SqliteStore::open(&path).await.expect("reopen");
    s.migrate().await.expect("migrations are idempotent");
    let c = s
        .conversation("c9", Detail::Full)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(c.turns[0].text, "remember me");
}

/// SQLite's write-ahead log is copied into the database file while writes go on, and starts
/// again from the beginning instead of growing with every write: sixty-four writers commit
/// 9,600 turns of 3 KB (over 28 MB of rows, so well over 40 MB of log if it were never
/// copied), and while the store is still open the log stays under 24 MB and the database file
/// holds the rows.
#[tokio::test]
async fn sqlite_wal_is_copied_and_reused_while_writes_go_on() {
    let (s, dir) = sqlite().await;
    let text = "x".repeat(3_000);
    let writers: Vec<_> = (0..64)
        .map(|w| {
            let s = s.clone();
            let text = text.clone();
            tokio::spawn(async move {
                for _ in 0..150 {
                    let outcome = s
                        .commit(&turn(&format!("wal-{w}"), 0, 0, "bot", &text))
                        .await
                        .expect("commit");
                    assert!(matches!(outcome, Commit::Done { .. }));
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let size = |name: &str| std::fs::metadata(dir.path.join(name)).map_or(0, |m| m.len());
    let (wal, db) = (size("baton.db-wal"), size("baton.db"));
    assert!(wal < 24 << 20, "the WAL holds {wal} bytes");
    assert!(db > 20 << 20, "the database file holds only {db} bytes");
    let c = s
        .conversation("wal-63", Detail::Full)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(c.turns.len(), 150);
}

/// Timers fire once: two nodes claim due timers at the same time (on PostgreSQL with
/// `FOR UPDATE SKIP LOCKED`), each fires what it claimed, and every timer is marked fired by
/// exactly one of them. A node that dies after claiming loses its lease, and the timer is
/// claimed again; the late node's own finish is then refused.
async fn timers_fire_once_across_two_nodes<S: Store + Clone>(a: &S, b: &S) {
    use baton_store::{RoutingChange, TimerRow};
    // Randomised rounds: timer counts and due times from a fixed-seed generator.
    let mut seed: u64 = 0x5EED;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    for round in 0..5 {
        let n = 20 + (next() % 60) as usize;
        let timers: Vec<TimerRow> = (0..n)
            .map(|i| TimerRow {
                id: format!("r{round}-t{i}"),
                kind: "accept".into(),
                subject: format!("s{i}"),
                due_ms: 1_000 + (next() % 1_000) as i64,
            })
            .collect();
        let change = RoutingChange {
            at: "2026-11-23T15:00:00Z".into(),
            timers,
            ..RoutingChange::default()
        };
        assert!(matches!(
            a.apply(&change).await.expect("apply"),
            baton_store::Applied::Done { .. }
        ));
        let node = |s: S| async move {
            let mut fired = Vec::new();
            loop {
                let got = s.claim_timers(5_000, 10_000, 7).await.expect("claim");
                if got.is_empty() {
                    return fired;
                }
                for t in got {
                    if s.finish_timer(&t.id, 5_000).await.expect("finish") {
                        fired.push(t.id);
                    }
                }
            }
        };
        let (x, y) = tokio::join!(node(a.clone()), node(b.clone()));
        let mut all: Vec<String> = x.iter().chain(&y).cloned().collect();
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "round {round}: a timer fired twice");
        assert_eq!(all.len(), n, "round {round}: a timer was lost");
    }
    // A claim whose lease ran out is claimed again; the first claimant's finish is refused.
    let change = RoutingChange {
        at: "2026-11-23T15:00:00Z".into(),
        timers: vec![TimerRow {
            id: "lease".into(),
            kind: "accept".into(),
            subject: "x".into(),
            due_ms: 100,
        }],
        ..RoutingChange::default()
    };
    a.apply(&change).await.expect("apply");
    assert_eq!(a.claim_timers(200, 300, 10).await.expect("claim").len(), 1);
    assert!(
        b.claim_timers(250, 350, 10)
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );
    let again = b.claim_timers(400, 500, 10).await.expect("claim");
    assert_eq!(again.len(), 1, "the lease ran out");
    assert!(b.finish_timer("lease", 400).await.expect("finish"));
    assert!(!a.finish_timer("lease", 450).await.expect("finish"));
    assert_eq!(a.next_timer().await.expect("next"), None);
}

#[tokio::test]
async fn timers_fire_once() {
    let (a, dir) = sqlite().await;
    let b = SqliteStore::open(&dir.path.join("baton.db"))
        .await
        .expect("second node");
    timers_fire_once_across_two_nodes(&a, &b).await;
    if let Some(pg) = postgres("timers_fire_once").await {
        let url = std::env::var("BATON_TEST_DATABASE_URL").expect("set");
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        let second = PgStore::connect(&format!("{base}/{}", pg.2))
            .await
            .expect("second node");
        timers_fire_once_across_two_nodes(&pg.0, &second).await;
        second.close().await;
        drop_pg(pg).await;
    }
}
