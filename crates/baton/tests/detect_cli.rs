//! `baton detect` end to end: the real binary, JSON Lines through its standard input.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn detect(input: &[u8]) -> (Vec<Value>, std::process::ExitStatus) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["detect", "--today", "2026-11-21"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start baton");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("baton runs");
    writer.join().expect("writer thread").expect("write input");
    let lines = String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("output line is not JSON ({e}): {l}"))
        })
        .collect();
    (lines, out.status)
}

#[test]
fn answers_each_line_in_order_and_survives_bad_lines() {
    let input = concat!(
        "{\"text\": \"I want to talk to a real person\", \"id\": 7}\n",
        "{\"text\": \n",
        "[1, 2]\n",
        "{\"text\": 42}\n",
        "{\"turns\": [{\"role\": \"user\", \"text\": \"export my data\"}, {\"role\": \"bot\", \"text\": \"Sorry, I didn't understand. Could you rephrase?\"}, {\"role\": \"user\", \"text\": \"that's not what I asked\"}]}\n",
        "{\"text\": \"Thanks, all good now\"}"
    );
    let (out, status) = detect(input.as_bytes());
    assert!(status.success());
    assert_eq!(out.len(), 6, "one output line per input line: {out:?}");
    assert_eq!(out[0]["human_request"], true);
    assert!(
        out[0]["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["signal"] == "human_request"))
    );
    assert_eq!(out[1]["error"]["code"], "invalid_json");
    assert_eq!(out[1]["error"]["line"], 2);
    assert_eq!(out[2]["error"]["code"], "invalid_input");
    assert_eq!(out[3]["error"]["code"], "invalid_input");
    assert_eq!(out[4]["loop"], true);
    assert_eq!(out[5]["human_request"], false);
    assert_eq!(out[5]["frustration"], false);
    for key in [
        "human_request",
        "frustration",
        "confusion",
        "loop",
        "sentiment",
        "intents",
        "topics",
        "entities",
        "evidence",
    ] {
        assert!(out[0].get(key).is_some(), "SPEC §11 key {key} missing");
    }
}

#[test]
fn entity_offsets_are_code_points() {
    let (out, _) = detect("{\"text\": \"😡 write to zoë@example.com\"}\n".as_bytes());
    let e = &out[0]["entities"][0];
    assert_eq!(e["type"], "email");
    assert_eq!(e["value"], "zoë@example.com");
    assert_eq!(
        (e["start"].as_u64(), e["end"].as_u64()),
        (Some(11), Some(26))
    );
}

#[test]
fn a_line_that_is_too_long_is_an_error_line_not_a_crash() {
    let mut input = b"{\"text\": \"".to_vec();
    input.extend(std::iter::repeat_n(b'a', 17 * 1024 * 1024));
    input.extend(b"\"}\n{\"text\": \"agent\"}\n");
    let (out, status) = detect(&input);
    assert!(status.success());
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["error"]["code"], "line_too_long");
    assert_eq!(out[1]["human_request"], true);
}

#[test]
fn invalid_utf8_and_crlf_are_handled() {
    let (out, status) = detect(b"{\"text\": \"agent\"}\r\n\xff\xfe\n");
    assert!(status.success());
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["human_request"], true);
    assert!(out[1].get("error").is_some());
}

#[test]
fn a_large_stream_keeps_its_order() {
    let mut input = String::new();
    for i in 0..5000 {
        if i % 7 == 0 {
            input.push_str("{\"text\": \"agent please\"}\n");
        } else {
            input.push_str(&format!("{{\"text\": \"order {i} arrived fine\"}}\n"));
        }
    }
    let (out, status) = detect(input.as_bytes());
    assert!(status.success());
    assert_eq!(out.len(), 5000);
    for (i, o) in out.iter().enumerate() {
        assert_eq!(o["human_request"], i % 7 == 0, "line {}", i + 1);
    }
}
