//! `baton replay` end to end: the real binary over recorded transcripts, one policy or two.

use std::process::Command;

fn replay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run baton");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("baton-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

const TRANSCRIPTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/transcripts.jsonl"
);

const ONLY_ASKED: &str = r#"
version = 1
[[trigger]]
id = "asked"
when = "signals.human_request"
reason = "visitor_asked_for_human"
priority = 10
action = "handoff"
"#;

#[test]
fn one_policy_is_reported_with_labels() {
    let lines = [
        r#"{"id": "a", "turns": [{"role": "user", "text": "hello"}, {"role": "bot", "text": "Hi!"}, {"role": "user", "text": "can I talk to a human please"}, {"role": "bot", "text": "Anything else?"}], "label": {"handoff": true, "turn": 2}}"#,
        r#"{"id": "b", "turns": [{"role": "user", "text": "what time do you open?"}], "label": {"handoff": true}}"#,
        r#"{"id": "c", "turns": [{"role": "user", "text": "thanks, bye"}], "label": {"handoff": false}}"#,
        r#"{"turns": [{"role": "user", "text": "agent"}]}"#,
    ];
    let path = temp_file("three.jsonl", &lines.join("\n"));
    let policy = temp_file("asked.toml", ONLY_ASKED);
    let (ok, out, err) = replay(&[&path, "--policy", &policy, "--json"]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let r = &doc["report"];
    assert_eq!(r["conversations"], 4);
    assert_eq!(r["handed_over"], 2);
    assert_eq!(r["by_trigger"]["asked"], 2);
    assert_eq!(r["at_visitor_turn"]["2"], 1);
    assert_eq!(
        r["refused_bot_turns"], 1,
        "the bot may not speak after the handover"
    );
    let l = &r["labels"];
    assert_eq!(
        (
            l["conversations"].as_u64(),
            l["true_positives"].as_u64(),
            l["false_negatives"].as_u64(),
            l["true_negatives"].as_u64()
        ),
        (Some(3), Some(1), Some(1), Some(1))
    );
    assert_eq!(
        (l["precision"].as_f64(), l["recall"].as_f64()),
        (Some(1.0), Some(0.5))
    );
    assert_eq!(l["too_early"], 0);
}

#[test]
fn two_policies_are_compared() {
    let policy = temp_file("asked2.toml", ONLY_ASKED);
    let (ok, out, err) = replay(&[TRANSCRIPTS, "--against", &policy]);
    assert!(ok, "{err}");
    assert!(out.contains("examples/policy.toml (built in)"), "{out}");
    assert!(out.contains("differences:"), "{out}");
    // The default policy hands the security scare over; a policy that waits to be asked does not.
    assert!(
        out.lines().any(|l| l.contains(
            "security-question: handoff at turn 0 (sensitive_topic) | against: stays with the bot"
        )),
        "{out}"
    );
}

#[test]
fn a_bad_line_is_named() {
    let path = temp_file(
        "bad.jsonl",
        "{\"turns\": [{\"role\": \"user\", \"text\": \"hi\"}]}\n{\"turns\": 3}\n",
    );
    let (ok, _, err) = replay(&[&path]);
    assert!(!ok);
    assert!(err.contains("bad.jsonl:2: not a transcript"), "{err}");
    let (ok, _, err) = replay(&[&path, "--at", "yesterday"]);
    assert!(!ok);
    assert!(err.contains("--at"), "{err}");
}

const TEAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/team.toml");

#[test]
fn with_a_team_each_handoff_names_its_route_and_rep() {
    let (ok, out, err) = replay(&[TRANSCRIPTS, "--team", TEAM, "--json"]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let routing = &doc["report"]["routing"];
    let one = |id: &str| {
        routing["handoffs"]
            .as_array()
            .and_then(|h| h.iter().find(|x| x["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no handoff {id}: {routing:#}"))
    };
    // A hacked account goes to the security specialists first, then support.
    let s = one("security-question");
    assert_eq!(s["route"], "sensitive", "{s}");
    assert_eq!(s["queues"], serde_json::json!(["security", "support"]));
    assert_eq!(
        s["rep"],
        serde_json::json!({"queue": "security", "rep": "tom"})
    );
    let by_rep: u64 = routing["by_rep"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(
        by_rep,
        routing["handoffs"].as_array().map_or(0, |h| h.len() as u64)
    );
    // The text report says it too.
    let (ok, text, _) = replay(&[TRANSCRIPTS, "--team", TEAM]);
    assert!(ok);
    assert!(text.contains("live handoffs by route:"), "{text}");
    assert!(text.contains("offered first to"), "{text}");
    // A bad team file stops the replay, naming the rep.
    let bad = temp_file("team.toml", "[[rep]]\nid = \"x\"\ncapacity = 0\n");
    let (ok, _, err) = replay(&[TRANSCRIPTS, "--team", &bad]);
    assert!(!ok);
    assert!(err.contains('x') && err.contains("capacity"), "{err}");
}
