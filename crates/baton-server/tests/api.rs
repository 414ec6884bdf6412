//! The HTTP API against a real server on a random port, on SQLite and (when
//! BATON_TEST_DATABASE_URL is set) on PostgreSQL, each test with its own database.

use baton_server::{App, Engine, key_hash};
use baton_store::{PgStore, SqliteStore, Store};
use serde_json::{Value, json};

/// A policy without business hours, so the answers do not depend on when the tests run.
const POLICY: &str = r#"
version = 1
[[trigger]]
id = "explicit_request"
when = "signals.human_request"
reason = "visitor_asked_for_human"
priority = 900
action = "handoff"
[[trigger]]
id = "frustration"
when = "signals.frustration"
reason = "visitor_frustrated"
priority = 800
action = "handoff"
[[trigger]]
id = "pricing_form"
when = "'/pricing' in conversation.pages_viewed && 'demo' in conversation.forms && conversation.custom['plan'] == 'pro'"
reason = "demo_form_on_pricing"
priority = 100
action = "handoff"
[messages]
handoff = "Thanks{comma_name}, a colleague is joining."
"#;

const KEY: &str = "bt_test_key";
const ADMIN_KEY: &str = "bt_test_admin_key";

struct TestApp {
    base: String,
    http: reqwest::Client,
    shutdown: tokio::sync::oneshot::Sender<()>,
    /// For PostgreSQL: the admin pool and the test database to drop afterwards.
    pg: Option<(sqlx::PgPool, String)>,
}

impl TestApp {
    /// A second node over a database the first one set up (keys included), caching nothing:
    /// every write reads the conversation back.
    async fn spawn_without_keys<S: Store>(store: S, policy: &str) -> TestApp {
        Self::serve_with(store, 0, policy).await
    }

    /// Stops a second node; the first one's `finish` drops the database.
    async fn finish_node(self) {
        let _ = self.shutdown.send(());
    }

    /// A node with the test keys (bot, admin, and rep keys `rep:ID` for reps ana, ben, dee,
    /// oc and meg) and this policy.
    async fn spawn_policy<S: Store>(store: S, policy: &str) -> TestApp {
        for rep in ["ana", "ben", "dee", "oc", "meg"] {
            store
                .create_key(
                    &key_hash(&format!("rep:{rep}")),
                    rep,
                    "rep",
                    "2026-11-23T15:00:00Z",
                )
                .await
                .expect("rep key");
        }
        store
            .create_key(&key_hash(KEY), "test bot", "bot", "2026-11-23T15:00:00Z")
            .await
            .expect("key");
        store
            .create_key(
                &key_hash(ADMIN_KEY),
                "test admin",
                "admin",
                "2026-11-23T15:00:00Z",
            )
            .await
            .expect("admin key");
        Self::serve_with(store, baton_server::DEFAULT_CACHED_TURNS, policy).await
    }

    async fn serve_with<S: Store>(store: S, cached_turns: u64, policy: &str) -> TestApp {
        let app = App::with_cache(
            store,
            Engine::load("test.toml", policy).expect("valid policy"),
            cached_turns,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(baton_server::run(listener, app, async {
            let _ = rx.await;
        }));
        TestApp {
            base,
            http: reqwest::Client::new(),
            shutdown: tx,
            pg: None,
        }
    }

    /// Stops the server and drops its PostgreSQL database, if it had one.
    async fn finish(self) {
        let _ = self.shutdown.send(());
        if let Some((admin, name)) = self.pg {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .expect("drop test database");
        }
    }

    async fn turn(&self, id: &str, body: Value, idem: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/conversations/{id}/turns", self.base))
            .bearer_auth(KEY)
            .json(&body);
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.expect("request");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("request");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// Any request: `body` is sent as JSON when it is an object or array, as text when it is
    /// a string, and not at all when it is null.
    async fn call(&self, method: &str, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req = match body {
            Value::Null => req,
            Value::String(s) => req.body(s).header("content-type", "application/toml"),
            other => req.json(&other),
        };
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn raw(&self, id: &str, body: Vec<u8>, auth: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/conversations/{id}/turns", self.base))
            .body(body)
            .header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let res = req.send().await.expect("request");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

fn temp_dir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let p = std::env::temp_dir().join(format!("baton-api-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&p).expect("temp dir");
    p
}

/// A new PostgreSQL database for one test: the admin pool, its name (to drop it) and its URL.
async fn pg_database(url: &str, test: &str) -> (sqlx::PgPool, String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("baton_api_{test}_{}_{nanos}", std::process::id());
    let admin = sqlx::PgPool::connect(url).await.expect("PostgreSQL");
    // The name is built from a test name and numbers only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    let db = format!("{base}/{name}");
    (admin, name, db)
}

async fn apps(test: &str) -> Vec<TestApp> {
    apps_with(test, POLICY).await
}

async fn apps_with(test: &str, policy: &str) -> Vec<TestApp> {
    let sqlite = SqliteStore::open(&temp_dir().join("baton.db"))
        .await
        .expect("sqlite");
    sqlite.migrate().await.expect("migrate");
    let mut out = vec![TestApp::spawn_policy(sqlite, policy).await];
    match std::env::var("BATON_TEST_DATABASE_URL") {
        Ok(url) => {
            let (admin, name, db) = pg_database(&url, test).await;
            let pg = PgStore::connect(&db).await.expect("connect");
            pg.migrate().await.expect("migrate");
            let mut app = TestApp::spawn_policy(pg, policy).await;
            app.pg = Some((admin, name));
            out.push(app);
        }
        Err(_) => {
            assert!(
                std::env::var("BATON_REQUIRE_PG").is_err(),
                "BATON_REQUIRE_PG is set but BATON_TEST_DATABASE_URL is not"
            );
            eprintln!("notice: BATON_TEST_DATABASE_URL is not set; {test} runs on SQLite only");
        }
    }
    out
}

#[tokio::test]
async fn a_handoff_then_hold_then_conflict_for_the_bot() {
    for app in apps("handoff").await {
        let (s, d) = app
            .turn(
                "conv-1",
                json!({"role": "user", "text": "hi, what does it cost?"}),
                None,
            )
            .await;
        assert_eq!(
            (s, d["action"].as_str(), d["epoch"].as_u64()),
            (200, Some("continue"), Some(0)),
            "{d}"
        );
        let (s, d) = app.turn("conv-1", json!({"role": "user", "text": "I want to talk to a real person", "contact": {"name": "Alex"}}), None).await;
        assert_eq!(
            (s, d["action"].as_str(), d["epoch"].as_u64()),
            (200, Some("handoff"), Some(1)),
            "{d}"
        );
        assert_eq!(d["message"], "Thanks, Alex, a colleague is joining.");
        let handoff_id = d["handoff_id"].as_str().expect("a handoff id").to_string();
        assert_eq!(d["signals"]["human_request"], true);

        let (s, d) = app
            .turn("conv-1", json!({"role": "user", "text": "hello?"}), None)
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("hold")), "{d}");
        let (s, d) = app
            .turn(
                "conv-1",
                json!({"role": "bot", "text": "Can I help with anything else?", "epoch": 0}),
                None,
            )
            .await;
        assert_eq!(
            (
                s,
                d["error"]["code"].as_str(),
                d["state"].as_str(),
                d["epoch"].as_u64()
            ),
            (409, Some("conflict"), Some("queued"), Some(1)),
            "{d}"
        );

        let (s, c) = app.get("/v1/conversations/conv-1").await;
        assert_eq!(s, 200);
        assert_eq!(
            (c["state"].as_str(), c["epoch"].as_u64()),
            (Some("queued"), Some(1))
        );
        assert_eq!(
            c["transcript"].as_array().map(Vec::len),
            Some(3),
            "the refused bot turn is not stored: {c}"
        );
        assert_eq!(
            c["decisions"][1]["trace"]["triggers"][0]["id"],
            "explicit_request"
        );
        // The trace comes out whole: the policy's hash, and every trigger with its value,
        // whether it fired and its note (the stored trace leaves the defaults out).
        let trace = &c["decisions"][1]["trace"];
        assert_eq!(
            trace["policy_hash"], c["decisions"][1]["policy_hash"],
            "{trace}"
        );
        let triggers = trace["triggers"].as_array().expect("triggers");
        assert_eq!(triggers.len(), 3, "{trace}");
        for t in triggers {
            let o = t.as_object().expect("a trigger");
            assert!(
                ["id", "value", "fired", "note"]
                    .iter()
                    .all(|k| o.contains_key(*k)),
                "{t}"
            );
        }
        assert_eq!(
            (&triggers[0]["value"], &triggers[0]["fired"]),
            (&json!(true), &json!(true))
        );
        assert!(
            triggers
                .iter()
                .any(|t| t["value"] == false && t["fired"] == false && t["note"].is_null()),
            "{trace}"
        );
        // Each visitor turn with the detector's reading of it.
        let transcript = c["transcript"].as_array().expect("transcript");
        assert_eq!(transcript[1]["signals"]["human_request"], true, "{c}");
        assert_eq!(transcript[0]["signals"]["human_request"], false, "{c}");
        assert!(transcript[0]["signals"]["sentiment"].is_number(), "{c}");

        let (s, h) = app.get(&format!("/v1/handoffs/{handoff_id}")).await;
        assert_eq!((s, h["conversation_id"].as_str()), (200, Some("conv-1")));
        assert!(
            h["brief"]["summary"]
                .as_array()
                .is_some_and(|s| s.len() >= 3),
            "{h}"
        );
        assert_eq!(h["brief"]["contact"]["name"], "Alex");
        let (_, list) = app.get("/v1/handoffs").await;
        assert_eq!(list["handoffs"].as_array().map(Vec::len), Some(1));
        app.finish().await;
    }
}

#[tokio::test]
async fn retries_with_an_idempotency_key_store_nothing_twice() {
    for app in apps("idempotency").await {
        let body = json!({"role": "user", "text": "agent please"});
        let (s1, first) = app.turn("conv-2", body.clone(), Some("req-1")).await;
        let (s2, second) = app.turn("conv-2", body, Some("req-1")).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(first, second);
        let (_, c) = app.get("/v1/conversations/conv-2").await;
        assert_eq!(c["transcript"].as_array().map(Vec::len), Some(1));
        let (_, list) = app.get("/v1/handoffs").await;
        assert_eq!(list["handoffs"].as_array().map(Vec::len), Some(1));
        // The same key with another body is refused.
        let (s, d) = app
            .turn(
                "conv-2",
                json!({"role": "user", "text": "something else"}),
                Some("req-1"),
            )
            .await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (422, Some("idempotency_key_reused"))
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    for app in apps("bad_input").await {
        let auth = format!("Bearer {KEY}");
        let cases: Vec<(Vec<u8>, Option<&str>, u16, &str)> = vec![
            (
                b"{\"role\": \"user\", \"text\": \"hi\"}".to_vec(),
                None,
                401,
                "unauthorized",
            ),
            (
                b"{\"role\": \"user\", \"text\": \"hi\"}".to_vec(),
                Some("Bearer nope"),
                401,
                "unauthorized",
            ),
            (
                b"{\"role\": \"user\", \"text\": ".to_vec(),
                Some(&auth),
                400,
                "invalid_json",
            ),
            (
                b"{\"role\": \"visitor\", \"text\": \"hi\"}".to_vec(),
                Some(&auth),
                400,
                "invalid_field",
            ),
            (
                b"{\"role\": \"user\", \"text\": \"   \"}".to_vec(),
                Some(&auth),
                400,
                "invalid_field",
            ),
            (
                b"{\"role\": \"user\", \"text\": \"hi\", \"colour\": 1}".to_vec(),
                Some(&auth),
                400,
                "invalid_field",
            ),
            (
                b"{\"role\": \"user\", \"text\": \"hi\", \"bot\": {\"confidence\": 7}}".to_vec(),
                Some(&auth),
                400,
                "invalid_field",
            ),
            (
                format!(
                    "{{\"role\": \"user\", \"text\": \"{}\"}}",
                    "a".repeat(70_000)
                )
                .into_bytes(),
                Some(&auth),
                413,
                "body_too_large",
            ),
            (
                format!(
                    "{{\"role\": \"user\", \"text\": \"{}\"}}",
                    "a".repeat(20_000)
                )
                .into_bytes(),
                Some(&auth),
                400,
                "invalid_field",
            ),
            (
                format!(
                    "{{\"role\": \"user\", \"text\": \"hi\", \"contact\": {}1{}}}",
                    "[".repeat(200),
                    "]".repeat(200)
                )
                .into_bytes(),
                Some(&auth),
                400,
                "too_deep",
            ),
        ];
        for (body, a, status, code) in cases {
            let preview = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
            let (s, d) = app.raw("conv-3", body, a).await;
            assert_eq!(
                (s, d["error"]["code"].as_str()),
                (status, Some(code)),
                "{preview}: {d}"
            );
        }
        let (s, d) = app.raw("bad id!", b"{}".to_vec(), Some(&auth)).await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (400, Some("invalid_id")),
            "{d}"
        );
        let (s, d) = app.get("/v1/conversations/conv-3").await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (404, Some("not_found")),
            "nothing was stored: {d}"
        );
        let (s, _) = app.get("/v1/handoffs/nope").await;
        assert_eq!(s, 404);
        let (s, d) = app.get("/v1/handoffs?limit=0").await;
        assert_eq!((s, d["error"]["field"].as_str()), (400, Some("limit")));
        app.finish().await;
    }
}

#[tokio::test]
async fn events_shape_the_next_decision() {
    for app in apps("events").await {
        let post =
            |body: Value| app.call("POST", "/v1/conversations/conv-e/events", Some(KEY), body);
        let (s, d) = post(json!({"type": "page_view", "page": "/pricing"})).await;
        assert_eq!(
            (s, d["type"].as_str(), d["state"].as_str()),
            (200, Some("page_view"), Some("bot")),
            "{d}"
        );
        let (s, _) =
            post(json!({"type": "attribution", "source": "newsletter", "campaign": "autumn"}))
                .await;
        assert_eq!(s, 200);
        let (s, _) = post(json!({"type": "form_fill", "form": "demo", "fields": {"name": "Priya", "email": "priya@example.org", "seats": 40}})).await;
        assert_eq!(s, 200);
        // A tracker's own names are understood too.
        let (s, d) = post(json!({"type": "pageview", "url": "/features"})).await;
        assert_eq!((s, d["type"].as_str()), (200, Some("page_view")), "{d}");
        // Bad events are refused and change nothing.
        for bad in [
            json!({"type": "page_view"}),
            json!({"type": "teleport", "page": "/x"}),
            json!({"type": "signal", "name": "plan", "value": {"nested": true}}),
            json!({"type": "page_view", "page": "/a", "extra": 1}),
            json!({"type": "attribution"}),
        ] {
            let (s, d) = post(bad.clone()).await;
            assert_eq!(
                (s, d["error"]["code"].as_str()),
                (400, Some("invalid_field")),
                "{bad}: {d}"
            );
        }
        // The trigger needs the custom signal too: not yet.
        let (_, d) = app
            .turn("conv-e", json!({"role": "user", "text": "hello"}), None)
            .await;
        assert_eq!(d["action"], "continue", "{d}");
        let (s, _) = post(json!({"type": "signal", "name": "plan", "value": "pro"})).await;
        assert_eq!(s, 200);
        let (_, d) = app
            .turn(
                "conv-e",
                json!({"role": "user", "text": "hello again"}),
                None,
            )
            .await;
        assert_eq!(
            (d["action"].as_str(), d["trigger"].as_str()),
            (Some("handoff"), Some("pricing_form")),
            "{d}"
        );
        // The form filled the contact: the message names the visitor.
        assert_eq!(d["message"], "Thanks, Priya, a colleague is joining.");
        let (_, c) = app.get("/v1/conversations/conv-e").await;
        assert_eq!(c["events"].as_array().map(Vec::len), Some(5), "{c}");
        assert_eq!(c["events"][0]["data"]["page"], "/pricing");
        assert_eq!(c["transcript"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            c["transcript"][1]["seq"], 6,
            "turns and events share one sequence"
        );
        assert_eq!(c["brief"]["contact"]["email"], "priya@example.org", "{c}");
        assert_eq!(c["brief"]["source"]["campaign"], "autumn");
        assert_eq!(c["lead"]["score"], 0.0);
        assert_eq!(c["handoffs"].as_array().map(Vec::len), Some(1));
        app.finish().await;
    }
}

#[tokio::test]
async fn an_explicit_handoff_is_created_once() {
    for app in apps("explicit").await {
        app.turn(
            "conv-h",
            json!({"role": "user", "text": "I need to change the billing address"}),
            None,
        )
        .await;
        let (s, d) = app
            .call(
                "POST",
                "/v1/conversations/conv-h/handoff",
                Some(KEY),
                json!({"by": "user", "reason": "pressed the talk-to-us button"}),
            )
            .await;
        assert_eq!(
            (
                s,
                d["action"].as_str(),
                d["trigger"].as_str(),
                d["epoch"].as_u64()
            ),
            (200, Some("handoff"), Some("explicit_request"), Some(1)),
            "the policy's own trigger honours the request: {d}"
        );
        let id = d["handoff_id"].as_str().expect("handoff id").to_string();
        // The explicit request's decision is the handoff's.
        let (s, r) = app.get(&format!("/v1/handoffs/{id}/routing")).await;
        assert_eq!(
            (s, r["decision"]["trigger"].as_str()),
            (200, Some("explicit_request")),
            "{r:#}"
        );
        // Asked again: hold, the same handoff, nothing new.
        let (s, again) = app
            .call(
                "POST",
                "/v1/conversations/conv-h/handoff",
                Some(KEY),
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, again["action"].as_str(), again["handoff_id"].as_str()),
            (200, Some("hold"), Some(id.as_str())),
            "{again}"
        );
        let (s, d) = app
            .call(
                "POST",
                "/v1/conversations/conv-h/handoff",
                Some(KEY),
                json!({"epoch": 0}),
            )
            .await;
        assert_eq!(
            (s, d["epoch"].as_u64(), d["state"].as_str()),
            (409, Some(1), Some("queued")),
            "{d}"
        );
        let (s, d) = app
            .call(
                "POST",
                "/v1/conversations/conv-h/handoff",
                Some(KEY),
                json!({"by": "rep"}),
            )
            .await;
        assert_eq!((s, d["error"]["field"].as_str()), (400, Some("by")), "{d}");
        let (_, list) = app.get("/v1/handoffs").await;
        assert_eq!(list["handoffs"].as_array().map(Vec::len), Some(1), "{list}");
        let (_, h) = app.get(&format!("/v1/handoffs/{id}")).await;
        let transcript = h["brief"]["transcript"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(transcript.len(), 1, "the request's note is not a turn: {h}");
        // A conversation that has not started can be handed over too.
        let (s, d) = app
            .call(
                "POST",
                "/v1/conversations/conv-new/handoff",
                Some(KEY),
                Value::Null,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("handoff")), "{d}");
        app.finish().await;
    }
}

const NEW_POLICY: &str = r#"
version = 1
[[trigger]]
id = "explicit_request"
when = "signals.human_request"
reason = "visitor_asked_for_human"
priority = 900
action = "handoff"
[[trigger]]
id = "pricing"
when = "'pricing' in signals.intents"
reason = "pricing_question"
priority = 500
action = "handoff"
[[test]]
name = "pricing goes to sales"
turns = [["user", "how much does the team plan cost?"]]
expect = { action = "handoff", trigger = "pricing" }
"#;

#[tokio::test]
async fn the_policy_is_read_checked_replaced_and_simulated() {
    for app in apps("policy").await {
        let (s, before) = app.call("GET", "/v1/policy", Some(KEY), Value::Null).await;
        assert_eq!(s, 200, "{before}");
        let old_hash = before["hash"].as_str().expect("hash").to_string();
        assert!(
            before["text"]
                .as_str()
                .is_some_and(|t| t.contains("pricing_form"))
        );

        // Only an admin may change it.
        let (s, d) = app
            .call("PUT", "/v1/policy", Some(KEY), json!(NEW_POLICY))
            .await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{d}"
        );
        // Invalid: every problem with its line and column; nothing changes.
        let broken = NEW_POLICY.replace("signals.intents\"", "signals.intent\"");
        let (s, d) = app
            .call("PUT", "/v1/policy", Some(ADMIN_KEY), json!(broken))
            .await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (400, Some("invalid_policy")),
            "{d}"
        );
        assert!(
            d["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("policy.toml:11:")),
            "{d}"
        );
        // A failing [[test]] case is refused too.
        let failing = NEW_POLICY.replace("trigger = \"pricing\"", "trigger = \"explicit_request\"");
        let (s, d) = app
            .call("PUT", "/v1/policy", Some(ADMIN_KEY), json!(failing))
            .await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (400, Some("policy_tests_failed")),
            "{d}"
        );
        // A dry run says what would change, and changes nothing.
        let (s, d) = app
            .call(
                "PUT",
                "/v1/policy?dry_run=true",
                Some(ADMIN_KEY),
                json!(NEW_POLICY),
            )
            .await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["diff"]["triggers"]["added"], json!(["pricing"]));
        assert_eq!(
            d["diff"]["triggers"]["removed"],
            json!(["frustration", "pricing_form"])
        );
        assert_eq!(d["tests_passed"], 1);
        let (_, now) = app.call("GET", "/v1/policy", Some(KEY), Value::Null).await;
        assert_eq!(now["hash"], old_hash);
        let (_, d) = app
            .turn(
                "conv-p",
                json!({"role": "user", "text": "what does the pro plan cost?"}),
                None,
            )
            .await;
        assert_eq!(d["action"], "continue", "{d}");

        // Replaced: the next decision uses it and names it.
        let (s, d) = app
            .call("PUT", "/v1/policy", Some(ADMIN_KEY), json!(NEW_POLICY))
            .await;
        assert_eq!((s, d["active"].as_bool()), (200, Some(true)), "{d}");
        let new_hash = d["hash"].as_str().expect("hash").to_string();
        let (_, d) = app
            .turn(
                "conv-p",
                json!({"role": "user", "text": "and the price of the team plan?"}),
                None,
            )
            .await;
        assert_eq!(
            (d["action"].as_str(), d["policy_hash"].as_str()),
            (Some("handoff"), Some(new_hash.as_str())),
            "{d}"
        );
        let (_, v) = app
            .call("GET", "/v1/policy/versions", Some(KEY), Value::Null)
            .await;
        assert_eq!(v["versions"][0]["hash"], new_hash.as_str());
        assert_eq!(v["versions"][0]["active"], true);

        // Simulation: a transcript in, every turn's trace out, nothing stored.
        let (s, sim) = app
            .call(
                "POST",
                "/v1/policy/simulate",
                Some(KEY),
                json!({
                    "turns": [
                        {"role": "user", "text": "hello"},
                        {"role": "bot", "text": "Hi! How can I help?"},
                        {"role": "user", "text": "can I speak to a person"},
                        {"role": "bot", "text": "Anything else?"},
                    ],
                    "at": "2026-11-23T15:00:00Z",
                }),
            )
            .await;
        assert_eq!(s, 200, "{sim}");
        assert_eq!(sim["handed_over_at"], 2);
        assert_eq!(sim["steps"][2]["trigger"], "explicit_request");
        assert!(sim["steps"][3]["conflict"].is_string(), "{sim}");
        assert_eq!(
            sim["steps"][2]["triggers"].as_array().map(Vec::len),
            Some(2)
        );
        // ...against a candidate policy given inline.
        let (_, sim) = app
            .call("POST", "/v1/policy/simulate", Some(KEY), json!({"turns": [{"role": "user", "text": "can I speak to a person"}], "policy": "version = 1"}))
            .await;
        assert_eq!(sim["handed_over_at"], Value::Null, "{sim}");
        let (s, d) = app
            .call(
                "POST",
                "/v1/policy/simulate",
                Some(KEY),
                json!({"turns": []}),
            )
            .await;
        assert_eq!((s, d["error"]["field"].as_str()), (400, Some("turns")));
        app.finish().await;
    }
}

#[tokio::test]
async fn metrics_and_the_openapi_document_are_served() {
    for app in apps("metrics").await {
        app.turn(
            "conv-m",
            json!({"role": "user", "text": "agent please"}),
            None,
        )
        .await;
        app.turn("conv-m2", json!({"role": "user", "text": "hello"}), None)
            .await;
        let (s, m) = app.call("GET", "/metrics", None, Value::Null).await;
        let text = m.as_str().unwrap_or_default().to_string();
        assert_eq!(s, 200);
        assert!(
            text.contains(
                r#"baton_decisions_total{action="handoff",trigger="explicit_request"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"baton_handoffs_created_total{trigger="explicit_request"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"baton_http_requests_total{route="/v1/conversations/{id}/turns",method="POST",status="200"} 2"#), "{text}");
        assert!(
            text.contains("baton_decide_duration_seconds_count 2"),
            "{text}"
        );

        let (s, sum) = app
            .call("GET", "/v1/metrics/summary", Some(KEY), Value::Null)
            .await;
        assert_eq!(s, 200);
        assert_eq!(
            (sum["conversations"].as_i64(), sum["handoffs"].as_i64()),
            (Some(2), Some(1)),
            "{sum}"
        );
        assert_eq!(sum["handoffs_by_trigger"]["explicit_request"], 1);
        let (s, _) = app
            .call("GET", "/v1/metrics/summary", None, Value::Null)
            .await;
        assert_eq!(s, 401);

        // Every documented path is served (none falls through to "no such route").
        let (s, doc) = app.call("GET", "/v1/openapi.json", None, Value::Null).await;
        assert_eq!((s, doc["openapi"].as_str()), (200, Some("3.1.0")));
        let paths = doc["paths"].as_object().expect("paths").clone();
        assert!(paths.len() >= 13, "{}", paths.len());
        for (path, ops) in &paths {
            for method in ops.as_object().expect("operations").keys() {
                let concrete = path
                    .replace("{id}", "doc-check")
                    .replace("{action}", "accept");
                if path.ends_with("/stream") {
                    // An event stream never ends: its answer's status is enough.
                    let res = app
                        .http
                        .get(format!("{}{concrete}", app.base))
                        .bearer_auth(ADMIN_KEY)
                        .send()
                        .await
                        .expect("stream");
                    assert_eq!(res.status().as_u16(), 200, "{path}");
                    continue;
                }
                let (s, d) = app
                    .call(
                        &method.to_uppercase(),
                        &concrete,
                        Some(ADMIN_KEY),
                        Value::Null,
                    )
                    .await;
                let fell_through = s == 404
                    && d["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no such route"));
                assert!(
                    !fell_through,
                    "{method} {path} is documented but not served"
                );
            }
        }
        let (s, d) = app.call("GET", "/v1/nowhere", Some(KEY), Value::Null).await;
        assert_eq!((s, d["error"]["code"].as_str()), (404, Some("not_found")));
        app.finish().await;
    }
}

/// Two servers with `policy` over one database, as two nodes would run (the first one drops
/// its PostgreSQL database when it finishes).
async fn two_nodes(test: &str, policy: &str) -> Vec<(TestApp, TestApp)> {
    nodes(test, policy, &[policy])
        .await
        .into_iter()
        .map(|(a, mut others)| (a, others.remove(0)))
        .collect()
}

/// A node with `policy`, and over the same database one more node, caching nothing, for
/// each of `others` (their policies); on SQLite, then on PostgreSQL.
async fn nodes(test: &str, policy: &str, others: &[&str]) -> Vec<(TestApp, Vec<TestApp>)> {
    let path = temp_dir().join("baton.db");
    let a = SqliteStore::open(&path).await.expect("sqlite");
    a.migrate().await.expect("migrate");
    let first = TestApp::spawn_policy(a, policy).await;
    let mut rest = Vec::new();
    for other in others {
        let b = SqliteStore::open(&path).await.expect("sqlite");
        rest.push(TestApp::spawn_without_keys(b, other).await);
    }
    let mut out = vec![(first, rest)];
    if let Ok(url) = std::env::var("BATON_TEST_DATABASE_URL") {
        let (admin, name, db) = pg_database(&url, test).await;
        let a = PgStore::connect(&db).await.expect("connect");
        a.migrate().await.expect("migrate");
        let mut first = TestApp::spawn_policy(a, policy).await;
        first.pg = Some((admin, name));
        let mut rest = Vec::new();
        for other in others {
            let b = PgStore::connect(&db).await.expect("connect");
            rest.push(TestApp::spawn_without_keys(b, other).await);
        }
        out.push((first, rest));
    } else {
        assert!(
            std::env::var("BATON_REQUIRE_PG").is_err(),
            "BATON_REQUIRE_PG is set but BATON_TEST_DATABASE_URL is not"
        );
        eprintln!("notice: BATON_TEST_DATABASE_URL is not set; {test} runs on SQLite only");
    }
    out
}

/// The metric lines of a node that start with `prefix`.
async fn metric_lines(app: &TestApp, prefix: &str) -> Vec<String> {
    let (_, m) = app.call("GET", "/metrics", None, Value::Null).await;
    m.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_conversation_read_back_decodes_the_signals_stored_with_its_turns() {
    // C's policy has a [detectors] section of its own: what A's detectors stored is not
    // trusted there and is detected again.
    let other =
        format!("{POLICY}\n[detectors]\nphrases = {{ human_request = [\"a grown up\"] }}\n");
    for (a, mut rest) in nodes("signals_read_back", POLICY, &[POLICY, &other]).await {
        let (b, c) = (rest.remove(0), rest.remove(0));
        for (role, text) in [
            (
                "user",
                "Hi, I'm the CTO here. Our budget is $40,000 a year.",
            ),
            ("bot", "Thanks! What timeline do you have in mind?"),
            (
                "user",
                "We want to go live within 30 days, mail me at cto@example.com",
            ),
        ] {
            let (s, d) = a
                .turn("conv-sr", json!({"role": role, "text": text}), None)
                .await;
            assert_eq!(s, 200, "{d}");
        }
        // B has not seen the conversation: it reads it back, with both visitor turns' signals.
        let (s, d) = b
            .turn(
                "conv-sr",
                json!({"role": "user", "text": "Does it work with Salesforce?"}),
                None,
            )
            .await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(
            metric_lines(&b, "baton_turn_signals_read_total").await,
            [r#"baton_turn_signals_read_total{source="stored"} 2"#]
        );
        // C reads the same three visitor turns back and detects them again.
        let (s, e) = c
            .turn("conv-sr", json!({"role": "user", "text": "ok"}), None)
            .await;
        assert_eq!(s, 200, "{e}");
        assert_eq!(
            metric_lines(&c, "baton_turn_signals_read_total").await,
            [r#"baton_turn_signals_read_total{source="detected"} 3"#]
        );
        // Either way the facts of the earlier turns are known.
        for d in [&d, &e] {
            let lead = &d["signals"]["lead"];
            assert_eq!(lead["budget"]["amount"], 40000.0, "{d:#}");
            assert_eq!(lead["authority"], "decision_maker", "{d:#}");
            assert!(
                lead["timeline"]["days"].as_i64().is_some_and(|n| n <= 30),
                "{d:#}"
            );
        }
        // A (which caches what it decided), B and C show the same transcript and signals.
        let (_, ca) = a.get("/v1/conversations/conv-sr").await;
        for n in [&b, &c] {
            let (_, cn) = n.get("/v1/conversations/conv-sr").await;
            assert_eq!(cn["transcript"], ca["transcript"]);
        }
        let entities = ca["transcript"][2]["signals"]["entities"].as_array();
        assert!(
            entities.is_some_and(|e| e.iter().any(|e| e["value"] == "cto@example.com")),
            "{ca:#}"
        );
        b.finish_node().await;
        c.finish_node().await;
        a.finish().await;
    }
}

#[tokio::test]
async fn two_nodes_never_decide_on_a_stale_view() {
    for (a, b) in two_nodes("two_nodes", POLICY).await {
        // Node A caches the conversation; node B adds to it behind A's back.
        let (_, d) = a
            .turn("conv-n", json!({"role": "user", "text": "hello"}), None)
            .await;
        assert_eq!(d["signals"]["conversation"]["user_turns"], 1);
        let (_, d) = b
            .turn(
                "conv-n",
                json!({"role": "bot", "text": "Hi! How can I help?"}),
                None,
            )
            .await;
        assert_eq!(d["action"], "continue");
        let (_, d) = b
            .turn(
                "conv-n",
                json!({"role": "user", "text": "what does it cost?"}),
                None,
            )
            .await;
        assert_eq!(d["signals"]["conversation"]["user_turns"], 2);
        // A decides on the whole conversation, not on what it cached.
        let (s, d) = a
            .turn(
                "conv-n",
                json!({"role": "user", "text": "and is there a free trial?"}),
                None,
            )
            .await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["signals"]["conversation"]["user_turns"], 3, "{d}");
        // B hands off; A, still holding epoch 0 in its cache, must not let the bot speak.
        let (_, d) = b
            .turn(
                "conv-n",
                json!({"role": "user", "text": "let me talk to a human"}),
                None,
            )
            .await;
        assert_eq!(
            (d["action"].as_str(), d["epoch"].as_u64()),
            (Some("handoff"), Some(1))
        );
        let (s, d) = a
            .turn(
                "conv-n",
                json!({"role": "bot", "text": "Anything else?"}),
                None,
            )
            .await;
        assert_eq!(
            (s, d["state"].as_str(), d["epoch"].as_u64()),
            (409, Some("queued"), Some(1)),
            "{d}"
        );
        // ...and tells a visitor turn to hold, on the same handoff.
        let (s, d) = a
            .turn("conv-n", json!({"role": "user", "text": "hello?"}), None)
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("hold")), "{d}");
        let (_, c) = a.get("/v1/conversations/conv-n").await;
        let seqs: Vec<i64> = c["transcript"]
            .as_array()
            .expect("turns")
            .iter()
            .filter_map(|t| t["seq"].as_i64())
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5], "{c}");
        assert_eq!(d["handoff_id"], c["handoffs"][0]["id"]);
        b.finish_node().await;
        a.finish().await;
    }
}

#[tokio::test]
async fn racing_visitor_turns_are_all_stored_and_hand_off_once() {
    for app in apps("racing").await {
        let app = std::sync::Arc::new(app);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let text = if i == 3 {
                    "I want to talk to a human".to_string()
                } else {
                    format!("message number {i}")
                };
                app.turn("conv-race", json!({"role": "user", "text": text}), None)
                    .await
            }));
        }
        let mut actions = Vec::new();
        for t in tasks {
            let (s, d) = t.await.expect("task");
            assert_eq!(
                s, 200,
                "a visitor turn that named no epoch is never refused: {d}"
            );
            actions.push(d["action"].as_str().unwrap_or("").to_string());
        }
        assert_eq!(
            actions.iter().filter(|a| *a == "handoff").count(),
            1,
            "{actions:?}"
        );
        let (_, c) = app.get("/v1/conversations/conv-race").await;
        assert_eq!(c["transcript"].as_array().map(Vec::len), Some(8));
        assert_eq!(c["handoffs"].as_array().map(Vec::len), Some(1));
        let app = std::sync::Arc::into_inner(app).expect("sole owner");
        app.finish().await;
    }
}

#[tokio::test]
async fn policy_and_event_requests_are_checked_and_retried_safely() {
    for app in apps("checks").await {
        // An event retried with its key is stored once; the key with another body is refused.
        let send = |body: Value| {
            let req = app
                .http
                .post(format!("{}/v1/conversations/conv-k/events", app.base))
                .bearer_auth(KEY)
                .header("Idempotency-Key", "ev-1")
                .json(&body);
            async move {
                let res = req.send().await.expect("request");
                (
                    res.status().as_u16(),
                    res.headers().contains_key("idempotent-replayed"),
                )
            }
        };
        assert_eq!(
            send(json!({"type": "page_view", "page": "/docs"})).await,
            (200, false)
        );
        assert_eq!(
            send(json!({"type": "page_view", "page": "/docs"})).await,
            (200, true)
        );
        assert_eq!(
            send(json!({"type": "page_view", "page": "/other"})).await.0,
            422
        );
        let (_, c) = app.get("/v1/conversations/conv-k").await;
        assert_eq!(c["events"].as_array().map(Vec::len), Some(1), "{c}");

        // Policy bodies: too large, not UTF-8, empty; simulations too long. Nothing changes.
        let (_, before) = app.call("GET", "/v1/policy", Some(KEY), Value::Null).await;
        let huge = format!("version = 1\n# {}\n", "x".repeat(70_000));
        let (s, d) = app
            .call("PUT", "/v1/policy", Some(ADMIN_KEY), json!(huge))
            .await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (413, Some("body_too_large")),
            "{d}"
        );
        let res = app
            .http
            .put(format!("{}/v1/policy", app.base))
            .bearer_auth(ADMIN_KEY)
            .body(vec![0xff, 0xfe, 0x00])
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 400);
        let (s, d) = app
            .call("PUT", "/v1/policy", Some(ADMIN_KEY), json!("  "))
            .await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (400, Some("invalid_policy"))
        );
        let (s, d) = app
            .call(
                "PUT",
                "/v1/policy?dry_run=maybe",
                Some(ADMIN_KEY),
                json!("version = 1"),
            )
            .await;
        assert_eq!(
            (s, d["error"]["field"].as_str()),
            (400, Some("dry_run")),
            "{d}"
        );
        let (s, _) = app
            .call("PUT", "/v1/policy", None, json!("version = 1"))
            .await;
        assert_eq!(s, 401);
        let turns: Vec<Value> = (0..201)
            .map(|i| json!({"role": "user", "text": format!("turn {i}")}))
            .collect();
        let (s, d) = app
            .call(
                "POST",
                "/v1/policy/simulate",
                Some(KEY),
                json!({"turns": turns}),
            )
            .await;
        assert_eq!((s, d["error"]["field"].as_str()), (400, Some("turns")));
        let (s, d) = app
            .call(
                "POST",
                "/v1/policy/simulate",
                Some(KEY),
                json!({"turns": [{"role": "user", "text": "hi"}], "policy": "version = 2"}),
            )
            .await;
        assert_eq!(
            (s, d["error"]["code"].as_str()),
            (400, Some("invalid_policy")),
            "{d}"
        );
        let (_, after) = app.call("GET", "/v1/policy", Some(KEY), Value::Null).await;
        assert_eq!(before["hash"], after["hash"]);
        let (_, v) = app
            .call("GET", "/v1/policy/versions", Some(KEY), Value::Null)
            .await;
        assert_eq!(
            v["versions"].as_array().map(Vec::len),
            Some(0),
            "nothing was stored: {v}"
        );
        app.finish().await;
    }
}

// ---- routing (SPEC §6): reps, offers, timeouts, capacity, draining, streams

/// Live handoffs at any hour; offers time out after one second, the first target after three.
const ROUTING_POLICY: &str = r#"
version = 1
[[trigger]]
id = "explicit_request"
when = "signals.human_request"
reason = "visitor_asked_for_human"
priority = 900
action = "handoff"
[routing]
away_after = "1h"
missed_offers_away = 5
unattended = "follow_up"
[[queue]]
id = "sales"
members = "rep.skills.exists(s, s == 'sales')"
match = "handoff.language in rep.languages"
strategy = "round_robin"
accept_timeout = "1s"
[[queue]]
id = "backup"
members = "rep.on_call"
strategy = "least_busy"
accept_timeout = "30s"
[[route]]
id = "everyone"
targets = [{ queue = "sales", timeout = "3s" }, { queue = "backup", timeout = "60s" }]
"#;

fn rep_key(rep: &str) -> String {
    format!("rep:{rep}")
}

impl TestApp {
    async fn put_rep(&self, id: &str, attrs: Value) {
        let (s, b) = self
            .call("PUT", &format!("/v1/reps/{id}"), Some(ADMIN_KEY), attrs)
            .await;
        assert_eq!(s, 200, "{b}");
    }

    async fn presence(&self, id: &str, presence: &str) {
        let (s, b) = self
            .call(
                "PUT",
                &format!("/v1/reps/{id}/presence"),
                Some(&rep_key(id)),
                json!({ "presence": presence }),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }

    /// Asks for a person in a new conversation; the handoff's id.
    async fn ask_for_human(&self, conversation: &str) -> String {
        let (s, d) = self
            .turn(
                conversation,
                json!({"role": "user", "text": "I want to talk to a real person please"}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("handoff")), "{d}");
        d["handoff_id"].as_str().expect("handoff id").to_string()
    }

    /// The handoff's routing record and offers, once `ready` holds (or after 10 s).
    async fn routing_when(&self, handoff: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (s, r) = self.get(&format!("/v1/handoffs/{handoff}/routing")).await;
            assert_eq!(s, 200, "{r}");
            // The record and the offers are read one after the other: wait for a pair that
            // agrees (the record names the pending offer, if there is one).
            let pending_id = r["offers"]
                .as_array()
                .and_then(|a| a.iter().find(|o| o["state"] == "pending"))
                .map(|o| o["id"].clone())
                .unwrap_or(Value::Null);
            let agree = r["routing"]["offer"] == pending_id;
            if agree && ready(&r) {
                return r;
            }
            last = r;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("routing of {handoff} never got there: {last:#}");
    }

    async fn act(&self, handoff: &str, action: &str, rep: &str, body: Value) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/v1/handoffs/{handoff}/{action}"),
            Some(&rep_key(rep)),
            body,
        )
        .await
    }
}

/// The rep of the pending offer, if any.
fn pending(r: &Value) -> Option<String> {
    r["offers"]
        .as_array()?
        .iter()
        .find(|o| o["state"] == "pending")
        .and_then(|o| o["rep"].as_str())
        .map(str::to_string)
}

fn offer_states(r: &Value) -> Vec<(String, String)> {
    r["offers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    (
                        o["rep"].as_str().unwrap_or("").to_string(),
                        o["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn team(app: &TestApp) {
    let sales = |langs: &[&str], capacity: u32| json!({"name": "x", "skills": {"sales": 5}, "languages": langs, "capacity": capacity});
    app.put_rep("ana", sales(&["en"], 1)).await;
    app.put_rep("ben", sales(&["en"], 1)).await;
    app.put_rep("dee", sales(&["de"], 2)).await;
    app.put_rep(
        "oc",
        json!({"name": "On Call", "on_call": true, "capacity": 3}),
    )
    .await;
}

#[tokio::test]
async fn a_handoff_is_offered_declined_timed_out_escalated_and_accepted() {
    for app in apps_with("offers", ROUTING_POLICY).await {
        team(&app).await;
        app.presence("ana", "available").await;
        app.presence("ben", "available").await;
        app.presence("dee", "available").await;
        // The answer carries an ETA from live state: two English speakers are free.
        let (s, d) = app
            .turn(
                "r1",
                json!({"role": "user", "text": "can I talk to a human please"}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("handoff")), "{d}");
        let eta = d["eta_seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("an ETA: {d}"));
        assert!(eta > 0 && eta <= 60, "{d}");
        let msg = d["message"].as_str().unwrap_or_default();
        assert!(msg.contains("should join in"), "{msg}");
        let h = d["handoff_id"].as_str().expect("handoff").to_string();

        // Round robin, ties by id: ana first. dee is never offered it (German only).
        let r = app.routing_when(&h, |r| pending(r).is_some()).await;
        assert_eq!(pending(&r).as_deref(), Some("ana"), "{r:#}");
        let offered = r["routing"]["trace"]
            .as_array()
            .and_then(|t| t.iter().find(|s| s["step"] == "offered"))
            .cloned()
            .unwrap_or_else(|| panic!("no offered step: {r:#}"));
        let reason = |rep: &str| {
            offered["considered"]
                .as_array()
                .and_then(|c| c.iter().find(|x| x["rep"] == rep))
                .map(|x| x["reason"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(reason("ana").as_deref(), Some("chosen"));
        assert!(reason("oc").is_none(), "oc is not a member of sales");

        // ben may not act on ana's offer; ana declines; ben is offered it.
        let (s, _) = app.act(&h, "accept", "ben", json!({})).await;
        assert_eq!(s, 409);
        let (s, b) = app.act(&h, "decline", "ana", json!({})).await;
        assert_eq!(s, 200, "{b}");
        let r = app
            .routing_when(&h, |r| pending(r).as_deref() == Some("ben"))
            .await;
        assert_eq!(
            offer_states(&r),
            [
                ("ana".into(), "declined".into()),
                ("ben".into(), "pending".into())
            ]
        );

        // ben lets it time out (1 s); nobody else in sales speaks English, so it waits until
        // the first target's 3 s run out, then the backup queue takes it: oc is offline.
        let r = app
            .routing_when(&h, |r| {
                r["routing"]["trace"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|s| s["step"] == "target_timeout"))
            })
            .await;
        assert_eq!(offer_states(&r)[1], ("ben".into(), "timed_out".into()));
        assert_eq!(pending(&r), None);

        // oc comes online: the waiting handoff is offered at once, and accepted.
        app.presence("oc", "available").await;
        let r = app
            .routing_when(&h, |r| pending(r).as_deref() == Some("oc"))
            .await;
        assert_eq!(r["routing"]["target"], 1);
        let (s, b) = app.act(&h, "accept", "oc", json!({})).await;
        assert_eq!((s, b["state"].as_str()), (200, Some("human")), "{b}");
        // The ETA promised in the first answer is recorded, and whether it was kept.
        let (_, r) = app.get(&format!("/v1/handoffs/{h}/routing")).await;
        let accepted = r["routing"]["trace"]
            .as_array()
            .and_then(|t| t.iter().find(|s| s["step"] == "accepted"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(r["routing"]["eta_promised"][0], eta, "{r:#}");
        assert!(accepted["eta_kept"].is_boolean(), "{accepted}");
        let (s, c) = app.get("/v1/conversations/r1").await;
        assert_eq!((s, c["state"].as_str()), (200, Some("human")), "{c}");
        let epoch = c["epoch"].as_u64().expect("epoch");

        // The bot, one epoch behind, is refused; the visitor's turn is held for the rep.
        let (s, _) = app
            .turn(
                "r1",
                json!({"role": "bot", "text": "Anything else?", "epoch": epoch - 1}),
                None,
            )
            .await;
        assert_eq!(s, 409);
        let (s, d) = app
            .turn(
                "r1",
                json!({"role": "user", "text": "hello? are you there"}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("hold")), "{d}");

        // Only the holder may write to the visitor or resolve; a verdict must be known.
        let (s, _) = app
            .call(
                "POST",
                "/v1/conversations/r1/messages",
                Some(&rep_key("ana")),
                json!({"text": "hi"}),
            )
            .await;
        assert_eq!(s, 409);
        let (s, b) = app
            .call(
                "POST",
                "/v1/conversations/r1/messages",
                Some(&rep_key("oc")),
                json!({"text": "Hi, I'm here."}),
            )
            .await;
        assert_eq!(s, 202, "{b}");
        let (s, _) = app
            .act(
                &h,
                "resolve",
                "oc",
                json!({"outcome": "answered", "verdict": "maybe"}),
            )
            .await;
        assert_eq!(s, 422);
        let (s, b) = app
            .act(
                &h,
                "resolve",
                "oc",
                json!({"outcome": "answered", "converted": false, "verdict": "right"}),
            )
            .await;
        assert_eq!((s, b["state"].as_str()), (200, Some("resolved")), "{b}");
        let (_, c) = app.get("/v1/conversations/r1").await;
        assert_eq!(c["state"], "resolved");
        // A resolved handoff has nothing to accept: 409 with the conversation's owner and epoch.
        let (s, b) = app.act(&h, "accept", "oc", json!({})).await;
        assert_eq!(
            (s, b["state"].as_str(), b["epoch"].as_u64()),
            (409, Some("resolved"), c["epoch"].as_u64()),
            "{b}"
        );

        // The visitor's stream, read from the start, saw every step in order.
        let events = read_stream(&app, "/v1/conversations/r1/stream", None, ("message", 1)).await;
        let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
        assert!(kinds.contains(&"rep_joined"), "{kinds:?}");
        let joined = kinds
            .iter()
            .position(|k| *k == "rep_joined")
            .expect("joined");
        let message = kinds.iter().position(|k| *k == "message").expect("message");
        assert!(joined < message, "{kinds:?}");
        // Reconnecting after the rep joined replays only what came after.
        let after = events[joined].0;
        let again = read_stream(
            &app,
            "/v1/conversations/r1/stream",
            Some(after),
            ("message", 1),
        )
        .await;
        assert!(again.iter().all(|(seq, _, _)| *seq > after));
        assert!(
            again
                .iter()
                .any(|(_, k, d)| k == "message" && d.contains("I'm here")),
            "{again:?}"
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn capacity_holds_and_a_rep_coming_online_drains_the_queue_oldest_first() {
    for app in apps_with("drain", ROUTING_POLICY).await {
        team(&app).await;
        app.put_rep(
            "ana",
            json!({"name": "Ana", "skills": {"sales": 5}, "languages": ["en"], "capacity": 2}),
        )
        .await;
        // Nobody is online: three handoffs wait, in this order.
        let mut hs = Vec::new();
        for c in ["d1", "d2", "d3"] {
            hs.push(app.ask_for_human(c).await);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for h in &hs {
            app.routing_when(h, |r| {
                r["routing"]["trace"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|s| s["step"] == "waiting"))
            })
            .await;
        }
        // ana (capacity 2) comes online: the two oldest are offered to her, the third waits.
        app.presence("ana", "available").await;
        let r0 = app.routing_when(&hs[0], |r| pending(r).is_some()).await;
        let r1 = app.routing_when(&hs[1], |r| pending(r).is_some()).await;
        assert_eq!(pending(&r0).as_deref(), Some("ana"));
        assert_eq!(pending(&r1).as_deref(), Some("ana"));
        let (_, r2) = app.get(&format!("/v1/handoffs/{}/routing", hs[2])).await;
        assert_eq!(pending(&r2), None, "capacity 2 is never exceeded: {r2:#}");
        let (_, rep) = app
            .call("GET", "/v1/reps/ana", Some(&rep_key("ana")), Value::Null)
            .await;
        assert_eq!(rep["load"], 2, "{rep}");
        // Her stream got the offers oldest first.
        let events = read_stream(&app, "/v1/reps/ana/stream", None, ("offer", 2)).await;
        let offered: Vec<String> = events
            .iter()
            .filter(|(_, k, _)| k == "offer")
            .filter_map(|(_, _, d)| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["handoff_id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(offered, hs[..2]);
        // Another rep may not read her stream.
        let (s, _) = app
            .call(
                "GET",
                "/v1/reps/ana/stream",
                Some(&rep_key("ben")),
                Value::Null,
            )
            .await;
        assert_eq!(s, 403);
        // She accepts one and resolves it: her place goes to the third at once.
        let (s, _) = app.act(&hs[0], "accept", "ana", json!({})).await;
        assert_eq!(s, 200);
        let (s, _) = app
            .act(&hs[0], "resolve", "ana", json!({"outcome": "answered"}))
            .await;
        assert_eq!(s, 200);
        let r2 = app.routing_when(&hs[2], |r| pending(r).is_some()).await;
        assert_eq!(pending(&r2).as_deref(), Some("ana"));
        app.finish().await;
    }
}

#[tokio::test]
async fn a_handed_back_conversation_goes_on_with_the_bot_until_something_new() {
    for app in apps_with("hand_back", ROUTING_POLICY).await {
        team(&app).await;
        app.presence("ana", "available").await;
        let h = app.ask_for_human("hb").await;
        let r = app.routing_when(&h, |r| pending(r).is_some()).await;
        assert_eq!(pending(&r).as_deref(), Some("ana"));
        // One trace per handoff: the decision that created it comes with its routing.
        assert_eq!(r["decision"]["trigger"], "explicit_request", "{r:#}");
        assert!(
            r["decision"]["triggers"].as_array().is_some_and(|t| t
                .iter()
                .any(|x| x["id"] == "explicit_request" && x["fired"] == true)),
            "{r:#}"
        );
        let (s, _) = app.act(&h, "accept", "ana", json!({})).await;
        assert_eq!(s, 200);
        // She accepted within the ETA the visitor was given: a promise kept, counted.
        let (_, m) = app
            .call("GET", "/v1/metrics/summary", Some(KEY), Value::Null)
            .await;
        assert_eq!(
            (
                &m["eta"]["promised"],
                &m["eta"]["kept"],
                &m["eta"]["broken"]
            ),
            (&json!(1), &json!(1), &json!(0)),
            "{m:#}"
        );
        assert_eq!(m["eta"]["share_kept"], 1.0);
        let (s, d) = app
            .turn(
                "hb",
                json!({"role": "user", "text": "it's about my last order"}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("hold")), "{d}");
        let (s, b) = app
            .act(
                &h,
                "hand-back",
                "ana",
                json!({"note": "order found; the bot can share tracking"}),
            )
            .await;
        assert_eq!((s, b["state"].as_str()), (200, Some("handed_back")), "{b}");
        let (_, c) = app.get("/v1/conversations/hb").await;
        assert_eq!(c["state"], "handed_back");
        let epoch = c["epoch"].as_u64().expect("epoch");
        // The note is there for the bot.
        let (_, r) = app.get(&format!("/v1/handoffs/{h}/routing")).await;
        assert!(r.to_string().contains("tracking"), "{r:#}");

        // The bot speaks again with the new epoch (the conversation is read back from the
        // store, as the hand-back changed it); the visitor's old request is not honoured a
        // second time.
        let (s, d) = app
            .turn(
                "hb",
                json!({"role": "bot", "text": "Your parcel ships tomorrow.", "epoch": epoch}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("continue")), "{d}");
        let (s, d) = app
            .turn("hb", json!({"role": "user", "text": "great, thanks"}), None)
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("continue")), "{d}");
        let (s, d) = app
            .turn(
                "hb",
                json!({"role": "user", "text": "and when will it arrive?"}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("continue")), "{d}");
        // A new request is honoured: a second handoff.
        let (s, d) = app
            .turn(
                "hb",
                json!({"role": "user", "text": "let me speak to a person again"}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("handoff")), "{d}");
        assert_ne!(d["handoff_id"].as_str(), Some(h.as_str()));
        app.finish().await;
    }
}

#[tokio::test]
async fn rep_and_handoff_requests_are_checked() {
    for app in apps_with("repchecks", ROUTING_POLICY).await {
        // Only admins define reps; attributes are checked.
        let (s, _) = app
            .call(
                "PUT",
                "/v1/reps/ana",
                Some(&rep_key("ana")),
                json!({"capacity": 1}),
            )
            .await;
        assert_eq!(s, 403);
        let (s, b) = app
            .call(
                "PUT",
                "/v1/reps/ana",
                Some(ADMIN_KEY),
                json!({"capacity": 0}),
            )
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (422, Some("invalid_rep")),
            "{b}"
        );
        let (s, _) = app
            .call(
                "PUT",
                "/v1/reps/ana",
                Some(ADMIN_KEY),
                json!({"skillz": {}}),
            )
            .await;
        assert_eq!(s, 400, "an unknown field is refused");
        let (s, _) = app
            .call("GET", "/v1/reps/ana", Some(ADMIN_KEY), Value::Null)
            .await;
        assert_eq!(s, 404, "nothing was stored");
        let (s, _) = app
            .call(
                "PUT",
                "/v1/reps/nobody/presence",
                Some(ADMIN_KEY),
                json!({"presence": "available"}),
            )
            .await;
        assert_eq!(s, 404);
        app.put_rep("ana", json!({"skills": {"sales": 3}, "languages": ["en"]}))
            .await;
        let (_, rep) = app
            .call(
                "PUT",
                "/v1/reps/ana",
                Some(ADMIN_KEY),
                json!({"skills": {"sales": 3}, "languages": ["en"]}),
            )
            .await;
        assert_eq!(
            rep["queues"],
            json!(["sales"]),
            "the answer names the rep's queues: {rep}"
        );
        // A busy rep takes no offers: no ETA is promised on her account.
        let (s, b) = app
            .call(
                "PUT",
                "/v1/reps/ana/presence",
                Some(&rep_key("ana")),
                json!({"presence": "busy"}),
            )
            .await;
        assert_eq!((s, &b["queues"]), (200, &json!(["sales"])), "{b}");
        let (s, b) = app
            .call(
                "PUT",
                "/v1/reps/ana/presence",
                Some(&rep_key("ana")),
                json!({"presence": "asleep"}),
            )
            .await;
        assert_eq!(
            (s, b["error"]["field"].as_str()),
            (422, Some("presence")),
            "{b}"
        );
        let (s, _) = app
            .call(
                "POST",
                "/v1/handoffs/nope/accept",
                Some(&rep_key("ana")),
                json!({}),
            )
            .await;
        assert_eq!(s, 404);
        let (s, _) = app
            .call(
                "POST",
                "/v1/conversations/zz/messages",
                Some(&rep_key("ana")),
                json!({"text": "hi"}),
            )
            .await;
        assert_eq!(s, 404, "no such conversation");
        // Nobody available (ana is busy): no ETA can be promised, and the message says so plainly.
        let (_, d) = app
            .turn(
                "d0",
                json!({"role": "user", "text": "talk to a person"}),
                None,
            )
            .await;
        assert_eq!(d["eta_seconds"], Value::Null, "{d}");
        assert!(
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("join shortly")),
            "{d}"
        );
        app.finish().await;
    }
}

/// Reads a server-sent event stream until `want` events of kind `kind` came (or 5 s passed):
/// `(id, event, data)` of every event read.
async fn read_stream(
    app: &TestApp,
    path: &str,
    after: Option<i64>,
    (kind, want): (&str, usize),
) -> Vec<(i64, String, String)> {
    let key = if path.starts_with("/v1/reps/") {
        rep_key(path.split('/').nth(3).unwrap_or_default())
    } else {
        KEY.to_string()
    };
    let mut req = app.http.get(format!("{}{path}", app.base)).bearer_auth(key);
    if let Some(a) = after {
        req = req.header("Last-Event-ID", a.to_string());
    }
    let mut res = req.send().await.expect("stream");
    assert_eq!(res.status().as_u16(), 200);
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while events.iter().filter(|(_, k, _)| k == kind).count() < want {
        let chunk = tokio::time::timeout_at(deadline, res.chunk()).await;
        let Ok(Ok(Some(bytes))) = chunk else {
            break;
        };
        text.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut id, mut ev, mut data) = (0, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().unwrap_or(0);
                } else if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !ev.is_empty() {
                events.push((id, ev, data));
            }
        }
    }
    events
}

/// A node started, stopped with an offer pending, and a new node on the same database after the
/// offer's timeout: the late timer fires at once and the next rep is offered the handoff.
async fn restart_story(first: TestApp, second: impl std::future::Future<Output = TestApp>) {
    team(&first).await;
    first.presence("ana", "available").await;
    first.presence("ben", "available").await;
    let h = first.ask_for_human("t1").await;
    let r = first.routing_when(&h, |r| pending(r).is_some()).await;
    assert_eq!(pending(&r).as_deref(), Some("ana"));
    first.finish_node().await;
    // The offer's one-second timeout passes while no node runs.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let second = second.await;
    let r = second
        .routing_when(&h, |r| pending(r).as_deref() == Some("ben"))
        .await;
    assert_eq!(
        offer_states(&r),
        [
            ("ana".into(), "timed_out".into()),
            ("ben".into(), "pending".into())
        ]
    );
    // Fired once: exactly one timed_out step in the trace.
    let steps = r["routing"]["trace"]
        .as_array()
        .map(|t| t.iter().filter(|s| s["step"] == "timed_out").count());
    assert_eq!(steps, Some(1), "{r:#}");
    second.finish().await;
}

/// Two nodes over one database. Node B read its router state before node A made the handoff;
/// A offers it to ana and stops. The offer's timeout is claimed by B, which did not know the
/// handoff: B reads the state again, times the offer out and offers the handoff to ben.
async fn other_node_story(mut a: TestApp, mut b: TestApp) {
    team(&a).await;
    a.presence("ana", "available").await;
    a.presence("ben", "available").await;
    // B reads its router state now: the reps, no handoff yet.
    let (s, reps) = b.get("/v1/reps").await;
    assert_eq!(s, 200, "{reps}");
    let h = a.ask_for_human("n1").await;
    let r = a.routing_when(&h, |r| pending(r).is_some()).await;
    assert_eq!(pending(&r).as_deref(), Some("ana"));
    // B outlives A: B drops the PostgreSQL database at the end.
    b.pg = a.pg.take();
    a.finish_node().await;
    let r = b
        .routing_when(&h, |r| pending(r).as_deref() == Some("ben"))
        .await;
    assert_eq!(
        offer_states(&r),
        [
            ("ana".into(), "timed_out".into()),
            ("ben".into(), "pending".into())
        ]
    );
    b.finish().await;
}

#[tokio::test]
async fn a_timer_claimed_by_a_node_that_did_not_know_the_handoff_still_fires() {
    for (a, b) in two_nodes("othernode", ROUTING_POLICY).await {
        other_node_story(a, b).await;
    }
}

/// Two nodes on one PostgreSQL route as one: a presence set through one node is seen by the
/// other's router, an offer made by one is accepted through the other, a rep's capacity holds
/// across both, and a rep's stream on one node hears of the other's offers as they happen.
async fn shared_routing_story(mut a: TestApp, mut b: TestApp) {
    team(&a).await;
    // Both nodes read their routing state now, before the other changes it.
    for node in [&a, &b] {
        let (s, reps) = node.get("/v1/reps").await;
        assert_eq!(s, 200, "{reps}");
    }
    b.presence("ana", "available").await;
    // A's handoff goes to ana, whom only B saw come online; her stream on B, open before the
    // handoff existed, hears of the offer.
    let (events, h) = tokio::join!(
        read_stream(&b, "/v1/reps/ana/stream", None, ("offer", 1)),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            a.ask_for_human("sh1").await
        }
    );
    let (_, r) = a.get(&format!("/v1/handoffs/{h}/routing")).await;
    assert!(
        events
            .iter()
            .any(|(_, k, d)| k == "offer" && d.contains(&h)),
        "{events:?} {r}"
    );
    let (s, d) = b.act(&h, "accept", "ana", json!({})).await;
    assert_eq!(s, 200, "{d}");
    // Her capacity (one) is taken: handoffs made on either node wait.
    let h2 = b.ask_for_human("sh2").await;
    let h3 = a.ask_for_human("sh3").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for h in [&h2, &h3] {
        let (s, r) = a.get(&format!("/v1/handoffs/{h}/routing")).await;
        assert_eq!((s, pending(&r)), (200, None), "{r}");
    }
    // Ben comes online through A: the older waiting handoff, made on B, is his.
    a.presence("ben", "available").await;
    let r = b.routing_when(&h2, |r| pending(r).is_some()).await;
    assert_eq!(pending(&r).as_deref(), Some("ben"));
    let (_, r) = b.get(&format!("/v1/handoffs/{h3}/routing")).await;
    assert_eq!(pending(&r), None, "{r}");
    b.pg = a.pg.take();
    a.finish_node().await;
    b.finish().await;
}

#[tokio::test]
async fn two_nodes_on_postgresql_route_as_one() {
    for (a, b) in two_nodes("sharedrouting", ROUTING_POLICY).await {
        if a.pg.is_none() {
            // One node owns a SQLite file (SPEC §12); the pair shares decisions only.
            a.finish_node().await;
            b.finish().await;
            continue;
        }
        shared_routing_story(a, b).await;
    }
}

#[tokio::test]
async fn a_restart_loses_no_timer() {
    let path = temp_dir().join("baton.db");
    let store = SqliteStore::open(&path).await.expect("sqlite");
    store.migrate().await.expect("migrate");
    let first = TestApp::spawn_policy(store, ROUTING_POLICY).await;
    restart_story(first, async {
        let store = SqliteStore::open(&path).await.expect("reopen");
        TestApp::serve_with(store, baton_server::DEFAULT_CACHED_TURNS, ROUTING_POLICY).await
    })
    .await;

    let Ok(url) = std::env::var("BATON_TEST_DATABASE_URL") else {
        assert!(std::env::var("BATON_REQUIRE_PG").is_err());
        eprintln!("notice: BATON_TEST_DATABASE_URL is not set; the restart runs on SQLite only");
        return;
    };
    let (admin, name, db) = pg_database(&url, "restart").await;
    let pg = PgStore::connect(&db).await.expect("connect");
    pg.migrate().await.expect("migrate");
    let first = TestApp::spawn_policy(pg, ROUTING_POLICY).await;
    restart_story(first, async {
        let pg = PgStore::connect(&db).await.expect("reconnect");
        let mut app =
            TestApp::serve_with(pg, baton_server::DEFAULT_CACHED_TURNS, ROUTING_POLICY).await;
        app.pg = Some((admin, name.clone()));
        app
    })
    .await;
}

/// Invariants under random operations (fixed seeds): a handoff never has two pending offers,
/// no rep holds more than its capacity in pending offers and accepted conversations, and a
/// conversation has one owner: a human-owned one has exactly one accepted offer.
#[tokio::test]
async fn routing_invariants_hold_under_random_operations() {
    for app in apps_with("invariants", ROUTING_POLICY).await {
        let caps = [("ana", 1u64), ("ben", 2), ("dee", 1), ("oc", 2)];
        for (rep, cap) in caps {
            app.put_rep(
                rep,
                json!({"skills": {"sales": 5}, "languages": ["en"], "capacity": cap}),
            )
            .await;
        }
        let mut seed: u64 = 42;
        let mut rnd = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut handoffs: Vec<String> = Vec::new();
        let mut acted: std::collections::BTreeMap<&str, usize> = Default::default();
        for step in 0..60 {
            match rnd(5) {
                0 => handoffs.push(app.ask_for_human(&format!("inv{step}")).await),
                1 => {
                    let (rep, _) = caps[rnd(4) as usize];
                    let p = ["available", "available", "away", "offline"][rnd(4) as usize];
                    let (s, _) = app
                        .call(
                            "PUT",
                            &format!("/v1/reps/{rep}/presence"),
                            Some(ADMIN_KEY),
                            json!({ "presence": p }),
                        )
                        .await;
                    assert_eq!(s, 200);
                }
                k => {
                    let Some(h) = handoffs.get(rnd(handoffs.len().max(1) as u64) as usize) else {
                        continue;
                    };
                    let (_, r) = app.get(&format!("/v1/handoffs/{h}/routing")).await;
                    let (action, rep) = match (k, pending(&r), r["routing"]["rep"].as_str()) {
                        (2, Some(p), _) => ("accept", p),
                        (3, Some(p), _) => ("decline", p),
                        (4, _, Some(holder)) => ("resolve", holder.to_string()),
                        _ => continue,
                    };
                    let (s, b) = app
                        .act(h, action, &rep, json!({"outcome": "answered"}))
                        .await;
                    // A timeout may have moved the offer on meanwhile: 409, never anything else.
                    assert!(s == 200 || s == 409, "{action} by {rep}: {s} {b}");
                    if s == 200 {
                        *acted.entry(action).or_default() += 1;
                    }
                }
            }
            // Check every invariant on what is stored.
            let mut held: std::collections::BTreeMap<String, u64> = Default::default();
            for h in &handoffs {
                let (_, r) = app.get(&format!("/v1/handoffs/{h}/routing")).await;
                let offers = r["offers"].as_array().cloned().unwrap_or_default();
                let pend: Vec<&Value> = offers.iter().filter(|o| o["state"] == "pending").collect();
                assert!(
                    pend.len() <= 1,
                    "step {step}: two pending offers for {h}: {r:#}"
                );
                let accepted: Vec<&Value> =
                    offers.iter().filter(|o| o["state"] == "accepted").collect();
                assert!(accepted.len() <= 1, "step {step}: accepted twice: {r:#}");
                let (_, hd) = app.get(&format!("/v1/handoffs/{h}")).await;
                let conv = hd["conversation_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let (_, c) = app.get(&format!("/v1/conversations/{conv}")).await;
                if c["state"] == "human" {
                    assert_eq!(accepted.len(), 1, "step {step}: human without a rep: {r:#}");
                    assert!(pend.is_empty(), "step {step}: offered while owned: {r:#}");
                    *held
                        .entry(accepted[0]["rep"].as_str().unwrap_or("").into())
                        .or_default() += 1;
                }
                for p in pend {
                    *held
                        .entry(p["rep"].as_str().unwrap_or("").into())
                        .or_default() += 1;
                }
            }
            for (rep, cap) in caps {
                let n = held.get(rep).copied().unwrap_or(0);
                assert!(n <= cap, "step {step}: {rep} holds {n} > capacity {cap}");
            }
        }
        assert!(
            handoffs.len() >= 5 && acted.len() == 3,
            "the seed exercised too little: {} handoffs, {acted:?}",
            handoffs.len()
        );
        app.finish().await;
    }
}

/// Live handoffs never (a calendar with no open hours): the visitor is offered meeting slots
/// with a rep of the route's queues, in the rep's working hours; one is booked.
const AFTER_HOURS_POLICY: &str = r#"
version = 1
[[trigger]]
id = "explicit_request"
when = "signals.human_request"
reason = "visitor_asked_for_human"
priority = 900
action = "handoff"
[hours.never]
time_zone = "UTC"
[hours.office]
time_zone = "UTC"
weekdays = ["09:00-17:00"]
saturday = ["09:00-17:00"]
sunday = ["09:00-17:00"]
[routing]
hours = "never"
after_hours = "schedule"
slot = "30m"
[[queue]]
id = "sales"
members = "rep.skills.exists(s, s == 'sales')"
[[route]]
id = "everyone"
targets = [{ queue = "sales", timeout = "5m" }]
"#;

#[tokio::test]
async fn after_hours_the_visitor_gets_meeting_slots_and_books_one() {
    for app in apps_with("afterhours", AFTER_HOURS_POLICY).await {
        app.put_rep(
            "ana",
            json!({"name": "Ana", "skills": {"sales": 5}, "hours": "office"}),
        )
        .await;
        // ben works the same hours but is in no queue of the route.
        app.put_rep("ben", json!({"name": "Ben", "hours": "office"}))
            .await;
        let (s, d) = app
            .turn(
                "m1",
                json!({"role": "user", "text": "hello", "contact": {"time_zone": "America/New_York"}}),
                None,
            )
            .await;
        assert_eq!(s, 200, "{d}");
        let h = app.ask_for_human("m1").await;
        let r = app
            .routing_when(&h, |r| r["routing"]["fallback"] == "schedule")
            .await;
        assert!(r["offers"].as_array().is_some_and(Vec::is_empty), "{r:#}");
        let (_, c) = app.get("/v1/conversations/m1").await;
        assert_eq!(c["state"], "scheduled", "{c}");
        let (s, slots) = app.get(&format!("/v1/handoffs/{h}/slots")).await;
        assert_eq!(s, 200, "{slots}");
        let list = slots["slots"].as_array().cloned().unwrap_or_default();
        assert!(!list.is_empty(), "{slots}");
        let first = list[0].clone();
        assert_eq!(first["rep"], "ana");
        let start: jiff::Timestamp = first["start"].as_str().expect("start").parse().expect("ts");
        let hour = start.to_zoned(jiff::tz::TimeZone::UTC).hour();
        assert!((9..17).contains(&hour), "inside ana's hours: {first}");
        // Also shown in the visitor's time zone.
        let ny = jiff::tz::TimeZone::get("America/New_York").expect("tz");
        assert_eq!(first["time_zone"], "America/New_York", "{first}");
        assert_eq!(
            first["local"].as_str().and_then(|l| l.get(11..13)),
            Some(format!("{:02}", start.to_zoned(ny).hour()).as_str()),
            "{first}"
        );
        assert!(list.iter().all(|x| x["rep"] == "ana"), "{slots}");
        // A meeting with a rep outside the route's queues is refused.
        let (s, b) = app
            .call(
                "POST",
                &format!("/v1/handoffs/{h}/meeting"),
                Some(KEY),
                json!({"start": first["start"], "rep": "ben"}),
            )
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (422, Some("rep_not_eligible")),
            "{b}"
        );
        // Book it; the same slot cannot be booked twice; a slot outside her hours is refused.
        let body = json!({"start": first["start"], "rep": "ana"});
        let (s, b) = app
            .call(
                "POST",
                &format!("/v1/handoffs/{h}/meeting"),
                Some(KEY),
                body.clone(),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = app
            .call(
                "POST",
                &format!("/v1/handoffs/{h}/meeting"),
                Some(KEY),
                body,
            )
            .await;
        assert_eq!(s, 409);
        // The 409 names the conversation's owner and epoch as stored now.
        let (_, c) = app.get("/v1/conversations/m1").await;
        assert_eq!(
            (b["state"].as_str(), b["epoch"].as_u64()),
            (c["state"].as_str(), c["epoch"].as_u64()),
            "{b}"
        );
        assert!(c["epoch"].as_u64() > Some(0), "{c}");
        let night = start
            .to_zoned(jiff::tz::TimeZone::UTC)
            .with()
            .hour(3)
            .build()
            .expect("03:00")
            .timestamp()
            .checked_add(jiff::SignedDuration::from_hours(24))
            .expect("ts");
        let (s, _) = app
            .call(
                "POST",
                &format!("/v1/handoffs/{h}/meeting"),
                Some(KEY),
                json!({"start": night.to_string(), "rep": "ana"}),
            )
            .await;
        assert_eq!(s, 409);
        let (s, b) = app.get(&format!("/v1/handoffs/{h}/slots")).await;
        assert_eq!(s, 200);
        assert!(
            b["slots"]
                .as_array()
                .is_some_and(|l| l.iter().all(|x| x["start"] != first["start"])),
            "the booked slot is no longer offered: {b}"
        );
        let (s, _) = app
            .call(
                "POST",
                &format!("/v1/handoffs/{h}/meeting"),
                Some(KEY),
                json!({"start": "tomorrow", "rep": "ana"}),
            )
            .await;
        assert_eq!(s, 422);
        app.finish().await;
    }
}

/// Nobody accepts within the queue's SLA: the on-call rep is told, and the handoff escalates
/// to the route's next target at once.
const SLA_POLICY: &str = r#"
version = 1
[[trigger]]
id = "explicit_request"
when = "signals.human_request"
reason = "visitor_asked_for_human"
priority = 900
action = "handoff"
[[queue]]
id = "sales"
members = "rep.skills.exists(s, s == 'sales')"
accept_timeout = "60s"
sla_accept = "1s"
[[queue]]
id = "backup"
members = "rep.on_call"
accept_timeout = "60s"
[[route]]
id = "everyone"
targets = [{ queue = "sales", timeout = "10m" }, { queue = "backup", timeout = "10m" }]
"#;

#[tokio::test]
async fn an_sla_breach_escalates_to_the_next_target_and_tells_the_on_call_rep() {
    for app in apps_with("sla", SLA_POLICY).await {
        app.put_rep("ana", json!({"skills": {"sales": 5}})).await;
        app.put_rep("oc", json!({"on_call": true, "capacity": 2}))
            .await;
        app.presence("ana", "available").await;
        app.presence("oc", "available").await;
        let h = app.ask_for_human("s1").await;
        let r = app.routing_when(&h, |r| pending(r).is_some()).await;
        assert_eq!(pending(&r).as_deref(), Some("ana"));
        // ana does not answer; after 1 s the SLA is breached and oc is offered it.
        let r = app
            .routing_when(&h, |r| pending(r).as_deref() == Some("oc"))
            .await;
        assert_eq!(
            offer_states(&r),
            [
                ("ana".into(), "cancelled".into()),
                ("oc".into(), "pending".into())
            ]
        );
        let breach = r["routing"]["trace"]
            .as_array()
            .and_then(|t| t.iter().find(|s| s["step"] == "sla_breached"))
            .cloned()
            .unwrap_or_else(|| panic!("no breach: {r:#}"));
        assert_eq!(breach["notified"], json!(["oc"]));
        let events = read_stream(&app, "/v1/reps/oc/stream", None, ("sla_breached", 1)).await;
        assert!(
            events
                .iter()
                .any(|(_, k, d)| k == "sla_breached" && d.contains(&h)),
            "{events:?}"
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn a_rep_silent_past_the_first_message_sla_loses_the_handoff() {
    let policy = SLA_POLICY.replace("sla_accept = \"1s\"", "sla_first_message = \"1s\"");
    for app in apps_with("sla_first", &policy).await {
        app.put_rep("ana", json!({"skills": {"sales": 5}, "manager": "meg"}))
            .await;
        app.put_rep("meg", json!({"name": "Meg"})).await;
        app.put_rep("oc", json!({"on_call": true, "capacity": 2}))
            .await;
        app.presence("ana", "available").await;
        app.presence("oc", "available").await;
        let h = app.ask_for_human("f1").await;
        let r = app.routing_when(&h, |r| pending(r).is_some()).await;
        assert_eq!(pending(&r).as_deref(), Some("ana"));
        let (s, _) = app.act(&h, "accept", "ana", json!({})).await;
        assert_eq!(s, 200);
        // ana never writes: after 1 s the handoff is taken from her and offered to the
        // backup queue; she and her manager are told.
        let r = app
            .routing_when(&h, |r| pending(r).as_deref() == Some("oc"))
            .await;
        let steps: Vec<&str> = r["routing"]["trace"]
            .as_array()
            .map(|t| t.iter().filter_map(|s| s["step"].as_str()).collect())
            .unwrap_or_default();
        let at = |name: &str| steps.iter().position(|s| *s == name);
        assert!(
            at("accepted") < at("sla_breached") && at("sla_breached") < at("reassigned"),
            "{steps:?}"
        );
        let breach = r["routing"]["trace"]
            .as_array()
            .and_then(|t| t.iter().find(|s| s["step"] == "sla_breached"))
            .cloned()
            .expect("breach");
        assert_eq!(breach["sla"], "sla_first_message");
        assert_eq!(breach["notified"], json!(["meg", "oc"]));
        let (_, c) = app.get("/v1/conversations/f1").await;
        assert_eq!(c["state"], "offered", "{c:#}");
        let events = read_stream(&app, "/v1/reps/ana/stream", None, ("reassigned", 1)).await;
        assert!(
            events
                .iter()
                .any(|(_, k, d)| k == "reassigned" && d.contains(&h)),
            "{events:?}"
        );
        let events = read_stream(&app, "/v1/reps/meg/stream", None, ("sla_breached", 1)).await;
        assert!(events.iter().any(|(_, k, _)| k == "sla_breached"));
        // She can no longer write to the visitor, and her place is free again.
        let (s, b) = app
            .call(
                "POST",
                "/v1/conversations/f1/messages",
                Some(&rep_key("ana")),
                json!({"text": "sorry, here now"}),
            )
            .await;
        assert_eq!((s, b["state"].as_str()), (409, Some("offered")), "{b}");
        let (_, rep) = app
            .call("GET", "/v1/reps/ana", Some(&rep_key("ana")), Value::Null)
            .await;
        assert_eq!(rep["load"], 0, "{rep}");
        app.finish().await;
    }
}

/// The policy itself answers a request with a meeting offer (an off-hours trigger): the
/// handoff still gets its route and the soonest slots with a rep who could take it.
#[tokio::test]
async fn a_meeting_offered_by_the_policy_comes_with_slots() {
    let policy = AFTER_HOURS_POLICY
        .replace("action = \"handoff\"", "action = \"schedule\"")
        .replace("hours = \"never\"\n", "");
    for app in apps_with("policy_schedule", &policy).await {
        app.put_rep(
            "ana",
            json!({"name": "Ana", "skills": {"sales": 5}, "hours": "office"}),
        )
        .await;
        let (s, d) = app
            .turn(
                "ps1",
                json!({"role": "user", "text": "can I talk to a person about a demo?"}),
                None,
            )
            .await;
        assert_eq!((s, d["action"].as_str()), (200, Some("schedule")), "{d}");
        let h = d["handoff_id"].as_str().expect("handoff").to_string();
        let r = app
            .routing_when(&h, |r| r["routing"]["fallback"] == "schedule")
            .await;
        assert_eq!(r["routing"]["route"], "everyone", "{r:#}");
        assert!(
            r["routing"]["slots"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{r:#}"
        );
        let (s, slots) = app.get(&format!("/v1/handoffs/{h}/slots")).await;
        assert_eq!(s, 200);
        let first = slots["slots"][0].clone();
        assert_eq!(first["rep"], "ana", "{slots}");
        let (s, b) = app
            .call(
                "POST",
                &format!("/v1/handoffs/{h}/meeting"),
                Some(KEY),
                json!({"start": first["start"], "rep": "ana"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let events = read_stream(&app, "/v1/conversations/ps1/stream", None, ("fallback", 1)).await;
        assert!(
            events
                .iter()
                .any(|(_, k, d)| k == "fallback" && d.contains("slots")),
            "{events:?}"
        );
        app.finish().await;
    }
}
