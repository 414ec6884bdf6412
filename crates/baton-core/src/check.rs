//! Running a policy's `[[test]]` cases (`baton check`).

use baton_detect::{Detector, Role};
use jiff::SignedDuration;

use crate::decide::{ConversationView, NewTurn, PastTurn, decide};
use crate::policy::{Policy, TestCase};

/// The outcome of one `[[test]]` case.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub name: String,
    pub line: u32,
    /// Empty when the case passed; otherwise what differed.
    pub failures: Vec<String>,
    /// What was decided: action, trigger, and the triggers that matched.
    pub got: String,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn role(s: &str) -> Role {
    if s == "bot" { Role::Bot } else { Role::User }
}

/// Runs one case: every turn but the last is history (30 s apart), the last is decided on.
pub fn run_case(policy: &Policy, detector: &Detector, case: &TestCase) -> TestResult {
    let mut view = ConversationView::new();
    let n = case.turns.len();
    for (i, (r, text)) in case.turns.iter().take(n.saturating_sub(1)).enumerate() {
        let back = SignedDuration::from_secs(30 * (n - 1 - i) as i64);
        view.turns.push(PastTurn {
            role: role(r),
            text: text.clone(),
            at: case.at.checked_sub(back).unwrap_or(case.at),
            signals: None,
        });
    }
    view.contact = case.contact.clone().into_iter().collect();
    view.account = case.account.clone().into_iter().collect();
    view.page = case.page.clone();
    let (r, text) = case.turns.last().cloned().unwrap_or_default();
    let turn = NewTurn {
        role: role(&r),
        text,
        epoch: None,
        bot: None,
    };
    let mut failures = Vec::new();
    let got = match decide(policy, detector, &view, &turn, case.at) {
        Ok(d) => {
            if d.action.as_str() != case.expect_action {
                failures.push(format!(
                    "action: expected {}, got {}",
                    case.expect_action,
                    d.action.as_str()
                ));
            }
            if let Some(t) = &case.expect_trigger
                && d.trigger.as_deref() != Some(t.as_str())
            {
                failures.push(format!(
                    "trigger: expected {t}, got {}",
                    d.trigger.as_deref().unwrap_or("none")
                ));
            }
            if let Some(r) = &case.expect_reason
                && d.reason.as_deref() != Some(r.as_str())
            {
                failures.push(format!(
                    "reason: expected {r}, got {}",
                    d.reason.as_deref().unwrap_or("none")
                ));
            }
            let fired: Vec<&str> = d.fired();
            format!(
                "{} by {} (matched: {}){}",
                d.action.as_str(),
                d.trigger.as_deref().unwrap_or("no trigger"),
                if fired.is_empty() {
                    "none".into()
                } else {
                    fired.join(", ")
                },
                d.segment
                    .as_deref()
                    .map(|s| format!(" [segment {s}]"))
                    .unwrap_or_default()
            )
        }
        Err(e) => {
            failures.push(format!("no decision: {e}"));
            "error".into()
        }
    };
    TestResult {
        name: case.name.clone(),
        line: case.line,
        failures,
        got,
    }
}

/// Runs every case of the policy.
pub fn run_tests(policy: &Policy, detector: &Detector) -> Vec<TestResult> {
    policy
        .tests
        .iter()
        .map(|c| run_case(policy, detector, c))
        .collect()
}
