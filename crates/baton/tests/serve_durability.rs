//! `baton serve` end to end: every acknowledged turn is still there after `kill -9` and a
//! restart (SQLite in a data directory, full synchronous commits).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

fn data_dir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let p = std::env::temp_dir().join(format!("baton-serve-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&p).expect("temp dir");
    p
}

/// Starts `baton serve` on a free port and returns it with its base URL, read from its log line.
fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start baton serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    let url = loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read the log");
        assert!(n > 0, "baton serve exited before serving");
        if let Some(w) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break w.to_string();
        }
    };
    (child, url)
}

#[test]
fn acknowledged_turns_survive_kill_9() {
    let dir = data_dir();
    let key_out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "keys",
            "create",
            "--name",
            "test",
            "--role",
            "bot",
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .expect("create a key");
    assert!(
        key_out.status.success(),
        "{}",
        String::from_utf8_lossy(&key_out.stderr)
    );
    let key = String::from_utf8(key_out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(key.starts_with("bt_"));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut child, url) = start(&dir);
    let client = reqwest::Client::new();
    let acknowledged = rt.block_on(async {
        let mut ok = 0;
        for i in 0..40 {
            let res = client
                .post(format!("{url}/v1/conversations/c-{}/turns", i % 4))
                .bearer_auth(&key)
                .json(&serde_json::json!({"role": "user", "text": format!("message number {i}")}))
                .send()
                .await
                .expect("request");
            assert_eq!(res.status(), 200);
            ok += 1;
        }
        ok
    });
    // No graceful shutdown: the process dies mid-flight.
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    let (mut child, url) = start(&dir);
    let stored = rt.block_on(async {
        let mut n = 0;
        for c in 0..4 {
            let v: serde_json::Value = client
                .get(format!("{url}/v1/conversations/c-{c}"))
                .bearer_auth(&key)
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            n += v["transcript"].as_array().map_or(0, Vec::len);
        }
        n
    });
    child.kill().expect("stop");
    child.wait().expect("reap");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(stored, acknowledged);
}
