//! `baton check` end to end: the real binary on the default policy and on broken ones.

use std::process::Command;

fn check(path: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["check", path])
        .output()
        .expect("run baton");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn temp_policy(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("baton-check-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).expect("write policy");
    path.display().to_string()
}

#[test]
fn the_default_policy_is_valid_and_its_tests_pass() {
    let (ok, out) = check(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/policy.toml"
    ));
    assert!(ok, "{out}");
    assert!(
        out.contains("valid (version 1, sha256 ") && out.contains(" 0 failed"),
        "{out}"
    );
}

#[test]
fn errors_name_the_file_line_and_column() {
    let path = temp_policy(
        "bad",
        "version = 1\n[[trigger]]\nid = \"x\"\nwhen = \"signals.frustation\"\nreason = \"r\"\naction = \"handoff\"\n",
    );
    let (ok, out) = check(&path);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{path}:4:16: trigger \"x\": `signals` has no field `frustation`"
        )),
        "{out}"
    );
}

#[test]
fn a_failing_test_case_fails_the_check() {
    let text = include_str!("../../../examples/policy.toml").replace(
        "name = \"small talk continues\"\nturns = [{ role = \"user\", text = \"hello!\" }]\nexpect = { action = \"continue\" }",
        "name = \"small talk continues\"\nturns = [{ role = \"user\", text = \"hello!\" }]\nexpect = { action = \"handoff\" }",
    );
    let path = temp_policy("failing", &text);
    let (ok, out) = check(&path);
    assert!(!ok);
    assert!(
        out.contains("FAIL")
            && out.contains("small talk continues")
            && out.contains("expected handoff, got continue"),
        "{out}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let (ok, out) = check("/nonexistent/policy.toml");
    assert!(!ok);
    assert!(out.contains("reading /nonexistent/policy.toml"), "{out}");
}
