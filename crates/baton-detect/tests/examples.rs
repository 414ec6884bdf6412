//! Our labelled examples (`tests/examples/*.jsonl`), each run through one `check` helper.
//!
//! A line is an input (`text` or `turns`, optional `today`) plus the expectations it states;
//! fields it does not state are not checked. Expectation keys:
//! `human_request`, `frustration`, `confusion`, `loop` (bools); `intents`, `topics` (exact sets);
//! `intents_include`, `topics_include`; `entities` (`[type, value]` pairs that must be found);
//! `no_entities` (types that must not be); `whole` / `whole_not` (an entity type that must / must
//! not cover the whole text); `sentiment_below`, `sentiment_above`; `budget`
//! (`amount`, `min`, `currency`, `period`); `timeline_days`; `authority`; `company_size`;
//! `bot_fallbacks_in_row`.

use std::collections::BTreeSet;

use baton_detect::{Detector, Role, Signals, Turn};
use serde_json::Value;

fn signals(d: &Detector, case: &Value) -> Signals {
    let today = case["today"]
        .as_str()
        .map_or(jiff::civil::date(2026, 11, 21), |s| {
            s.parse().expect("today is a date")
        });
    if let Some(text) = case["text"].as_str() {
        return d.message(text, today);
    }
    let turns: Vec<Turn<'_>> = case["turns"]
        .as_array()
        .expect("text or turns")
        .iter()
        .map(|t| Turn {
            role: Role::parse(t["role"].as_str().expect("role")),
            text: t["text"].as_str().expect("text"),
        })
        .collect();
    d.conversation(&turns, today)
}

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_str().expect("a string").to_string())
        .collect()
}

/// Compares what the detector says about one case with what the case expects; returns the
/// differences.
fn check(d: &Detector, case: &Value) -> Vec<String> {
    let s = signals(d, case);
    let mut diffs = Vec::new();
    let mut expect_bool = |key: &str, got: bool| {
        if let Some(want) = case[key].as_bool()
            && want != got
        {
            diffs.push(format!("{key}: want {want}, got {got}"));
        }
    };
    expect_bool("human_request", s.human_request);
    expect_bool("frustration", s.frustration);
    expect_bool("confusion", s.confusion);
    expect_bool("loop", s.looping);

    let intents: BTreeSet<String> = s.intents.iter().map(|x| x.to_string()).collect();
    let topics: BTreeSet<String> = s.topics.iter().map(|x| x.to_string()).collect();
    for (key, got, exact) in [
        ("intents", &intents, true),
        ("topics", &topics, true),
        ("intents_include", &intents, false),
        ("topics_include", &topics, false),
    ] {
        if case.get(key).is_some() {
            let want = set(&case[key]);
            if (exact && &want != got) || (!exact && !want.is_subset(got)) {
                diffs.push(format!("{key}: want {want:?}, got {got:?}"));
            }
        }
    }
    let found: Vec<(String, String)> = s
        .entities
        .iter()
        .map(|e| (e.kind.as_str().to_string(), e.value.clone()))
        .collect();
    if let Some(list) = case["entities"].as_array() {
        for pair in list {
            let want = (
                pair[0].as_str().expect("type").to_string(),
                pair[1].as_str().expect("value").to_string(),
            );
            if !found.contains(&want) {
                diffs.push(format!("entity {want:?} not in {found:?}"));
            }
        }
    }
    if let Some(list) = case["no_entities"].as_array() {
        for t in list {
            let t = t.as_str().expect("type");
            if found.iter().any(|(k, _)| k == t) {
                diffs.push(format!("no {t} entity expected, got {found:?}"));
            }
        }
    }
    // `whole`: one entity of that type covers the text (90%, as score.py counts it);
    // `whole_not`: no entity of that type covers 90% of it (an invalid address is not one).
    let text_len = case["text"]
        .as_str()
        .map_or(0, |t| t.trim().chars().count());
    let covering = |kind: &str, frac: f64| {
        s.entities.iter().any(|e| {
            e.kind.as_str() == kind && e.value.chars().count() as f64 >= frac * text_len as f64
        })
    };
    if let Some(k) = case["whole"].as_str()
        && !covering(k, 0.9)
    {
        diffs.push(format!(
            "whole text as one {k} entity expected, got {found:?}"
        ));
    }
    if let Some(k) = case["whole_not"].as_str()
        && covering(k, 0.9)
    {
        diffs.push(format!(
            "no {k} entity covering the text expected, got {found:?}"
        ));
    }
    if let Some(b) = case["sentiment_below"].as_f64()
        && s.sentiment >= b
    {
        diffs.push(format!("sentiment {} not below {b}", s.sentiment));
    }
    if let Some(a) = case["sentiment_above"].as_f64()
        && s.sentiment <= a
    {
        diffs.push(format!("sentiment {} not above {a}", s.sentiment));
    }
    let q = &s.qualification;
    if let Some(want) = case.get("budget") {
        match &q.budget {
            None => diffs.push("budget: none found".into()),
            Some(b) => {
                if want["amount"].as_f64() != Some(b.amount) {
                    diffs.push(format!(
                        "budget amount: want {}, got {}",
                        want["amount"], b.amount
                    ));
                }
                if let Some(m) = want["min"].as_f64()
                    && b.min != Some(m)
                {
                    diffs.push(format!("budget min: want {m}, got {:?}", b.min));
                }
                if let Some(c) = want["currency"].as_str()
                    && b.currency != Some(c)
                {
                    diffs.push(format!("budget currency: want {c}, got {:?}", b.currency));
                }
                if let Some(p) = want["period"].as_str()
                    && b.period != Some(p)
                {
                    diffs.push(format!("budget period: want {p}, got {:?}", b.period));
                }
            }
        }
    }
    if let Some(days) = case["timeline_days"].as_i64() {
        let got = q.timeline.as_ref().map(|t| t.days);
        if got != Some(days) {
            diffs.push(format!("timeline_days: want {days}, got {got:?}"));
        }
    }
    if let Some(a) = case["authority"].as_str()
        && a != q.authority.as_str()
    {
        diffs.push(format!("authority: want {a}, got {}", q.authority.as_str()));
    }
    if let Some(n) = case["company_size"].as_u64() {
        let got = q.company_size.as_ref().map(|c| c.employees);
        if got != Some(n) {
            diffs.push(format!("company_size: want {n}, got {got:?}"));
        }
    }
    if let Some(n) = case["bot_fallbacks_in_row"].as_u64()
        && s.conversation.bot_fallbacks_in_row as u64 != n
    {
        diffs.push(format!(
            "bot_fallbacks_in_row: want {n}, got {}",
            s.conversation.bot_fallbacks_in_row
        ));
    }
    // Every flag raised must say why.
    for (flag, raised) in [
        ("human_request", s.human_request),
        ("frustration", s.frustration),
        ("confusion", s.confusion),
        ("loop", s.looping),
    ] {
        if raised
            && !s
                .evidence
                .iter()
                .any(|e| e.signal == flag || (flag == "loop" && e.signal == "bot_fallback"))
        {
            diffs.push(format!("{flag} raised without evidence"));
        }
    }
    diffs
}

#[test]
fn labelled_examples() {
    let d = Detector::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut total = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
    {
        let body = std::fs::read_to_string(path).expect("read examples");
        for (i, line) in body
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let case: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            total += 1;
            let diffs = check(&d, &case);
            if !diffs.is_empty() {
                let input = case
                    .get("text")
                    .cloned()
                    .unwrap_or_else(|| case["turns"].clone());
                failures.push(format!(
                    "{}:{} {input}\n    {}",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    i + 1,
                    diffs.join("\n    ")
                ));
            }
        }
    }
    assert!(total > 100, "examples went missing: only {total}");
    assert!(
        failures.is_empty(),
        "{} of {total} examples fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
