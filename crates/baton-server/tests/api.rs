//! The HTTP API against a real server on a random port, on SQLite and (when
//! BATON_TEST_DATABASE_URL is set) on PostgreSQL, each test with its own database.

use std::sync::Arc;

use baton_core::policy::Policy;
use baton_detect::Detector;
use baton_server::{App, key_hash};
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
[messages]
handoff = "Thanks{comma_name}, a colleague is joining."
"#;

const KEY: &str = "bt_test_key";

struct TestApp {
    base: String,
    http: reqwest::Client,
    shutdown: tokio::sync::oneshot::Sender<()>,
    /// For PostgreSQL: the admin pool and the test database to drop afterwards.
    pg: Option<(sqlx::PgPool, String)>,
}

impl TestApp {
    async fn spawn<S: Store>(store: S) -> TestApp {
        store
            .create_key(&key_hash(KEY), "test bot", "bot", "2026-11-23T15:00:00Z")
            .await
            .expect("key");
        let policy = Policy::load("test.toml", POLICY).expect("valid policy");
        let app = App {
            store: Arc::new(store),
            policy: Arc::new(policy),
            detector: Arc::new(Detector::new()),
        };
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

async fn apps(test: &str) -> Vec<TestApp> {
    let sqlite = SqliteStore::open(&temp_dir().join("baton.db"))
        .await
        .expect("sqlite");
    sqlite.migrate().await.expect("migrate");
    let mut out = vec![TestApp::spawn(sqlite).await];
    match std::env::var("BATON_TEST_DATABASE_URL") {
        Ok(url) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!("baton_api_{test}_{}_{nanos}", std::process::id());
            let admin = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
            // The name is built from a test name and numbers only.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .expect("create database");
            let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
            let pg = PgStore::connect(&format!("{base}/{name}"))
                .await
                .expect("connect");
            pg.migrate().await.expect("migrate");
            let mut app = TestApp::spawn(pg).await;
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
