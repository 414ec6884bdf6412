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
    start_with(dir, &[])
}

fn start_with(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
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

/// Creates a bot key in the data directory and returns it.
fn bot_key(dir: &std::path::Path) -> String {
    make_key(dir, "test", "bot")
}

/// Creates a key with this name and role in the data directory and returns it.
fn make_key(dir: &std::path::Path, name: &str, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "keys",
            "create",
            "--name",
            name,
            "--role",
            role,
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .expect("create a key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn acknowledged_turns_survive_kill_9() {
    let dir = data_dir();
    let key = bot_key(&dir);
    assert!(key.starts_with("bt_"));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut child, url) = start(&dir);
    let client = reqwest::Client::new();
    // Eight writers at once, so that turns are committed in groups, and the process is killed
    // while they are still writing.
    let acknowledged: Vec<(usize, String)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..8usize {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                for i in 0..1000 {
                    let text = format!("writer {w} message {i}");
                    let res = client
                        .post(format!("{url}/v1/conversations/c-{}/turns", w % 4))
                        .bearer_auth(&key)
                        .json(&serde_json::json!({"role": "user", "text": text}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 200 => ok.push((w % 4, text)),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        // The server died: this turn was never acknowledged.
                        Err(_) => break,
                    }
                }
                ok
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        // No graceful shutdown: the process dies mid-flight.
        child.kill().expect("kill -9");
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("writer"));
        }
        all
    });
    child.wait().expect("reap");
    assert!(
        acknowledged.len() > 20,
        "only {} turns acknowledged",
        acknowledged.len()
    );

    let (mut child, url) = start(&dir);
    let stored: Vec<Vec<String>> = rt.block_on(async {
        let mut out = Vec::new();
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
            let turns = v["transcript"].as_array().cloned().unwrap_or_default();
            // Sequence numbers have no gaps.
            for (i, t) in turns.iter().enumerate() {
                assert_eq!(t["seq"].as_u64(), Some(i as u64), "{v}");
            }
            out.push(
                turns
                    .iter()
                    .filter_map(|t| t["text"].as_str().map(str::to_string))
                    .collect(),
            );
        }
        out
    });
    child.kill().expect("stop");
    child.wait().expect("reap");
    let _ = std::fs::remove_dir_all(&dir);
    for (c, text) in &acknowledged {
        assert!(
            stored[*c].contains(text),
            "acknowledged turn {text:?} was lost"
        );
    }
    // Nothing was stored twice.
    for turns in &stored {
        let mut unique = turns.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), turns.len());
    }
}

#[test]
fn the_policy_given_stays_active_after_a_restart() {
    let dir = data_dir();
    let policy = dir.join("custom.toml");
    std::fs::write(
        &policy,
        "version = 1\n[[trigger]]\nid = \"asked\"\nwhen = \"signals.human_request\"\nreason = \"asked\"\npriority = 1\naction = \"handoff\"\n",
    )
    .expect("write policy");
    let key = bot_key(&dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::new();
    let hash_of = |url: String| {
        let client = client.clone();
        let key = key.clone();
        rt.block_on(async move {
            let v: serde_json::Value = client
                .get(format!("{url}/v1/policy"))
                .bearer_auth(&key)
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            (
                v["hash"].as_str().unwrap_or("").to_string(),
                v["triggers"].as_array().map_or(0, Vec::len),
            )
        })
    };
    let (mut child, url) = start_with(&dir, &["--policy", policy.to_str().expect("path")]);
    let (given, triggers) = hash_of(url);
    child.kill().expect("stop");
    child.wait().expect("reap");
    assert_eq!(triggers, 1);
    // Without --policy, the stored active version is served, not the built-in default.
    let (mut child, url) = start(&dir);
    let (after, _) = hash_of(url);
    child.kill().expect("stop");
    child.wait().expect("reap");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(after, given);
}

/// `--team FILE` stores its reps at start; a bad team file stops the server with the problem.
#[test]
fn a_team_file_puts_its_reps() {
    let dir = data_dir();
    let team = dir.join("team.toml");
    std::fs::write(
        &team,
        "[[rep]]\nid = \"maya\"\nname = \"Maya\"\nskills = { support = 7 }\ncapacity = 2\n\n[[rep]]\nid = \"raj\"\non_call = true\n",
    )
    .expect("write team");
    let key = bot_key(&dir);
    let (mut child, url) = start_with(&dir, &["--team", team.to_str().expect("path")]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // The first request after the start is a presence change: its answer names the queues
    // the rep belongs to under the default policy.
    let maya = make_key(&dir, "maya", "rep");
    let presence: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .put(format!("{url}/v1/reps/maya/presence"))
            .bearer_auth(&maya)
            .json(&serde_json::json!({"presence": "away"}))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(
        presence["queues"],
        serde_json::json!(["support"]),
        "{presence}"
    );
    let reps: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}/v1/reps"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    });
    child.kill().expect("stop");
    child.wait().expect("reap");
    let ids: Vec<&str> = reps["reps"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["maya", "raj"], "{reps}");
    assert_eq!(reps["reps"][0]["attributes"]["capacity"], 2);
    assert_eq!(reps["reps"][0]["presence"], "away");

    std::fs::write(&team, "[[rep]]\nid = \"bad\"\ncapacity = 0\n").expect("write team");
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(["--team", team.to_str().expect("path")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rep \"bad\": capacity must be between 1 and 1000"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
