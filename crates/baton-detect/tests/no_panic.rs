//! The detector never panics, whatever it is given, and its spans always fit the text.

use baton_detect::{Detector, Role, Signals, Turn, slice_chars};
use proptest::prelude::*;

static DETECTOR: std::sync::LazyLock<Detector> = std::sync::LazyLock::new(Detector::new);

fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 21)
}

/// Every span is inside the text, and every entity value is the text of its span.
fn spans_fit(text: &str, s: &Signals) {
    let len = text.chars().count();
    for e in &s.entities {
        assert!(
            e.span.start < e.span.end && e.span.end <= len,
            "entity span {:?} in {len} chars",
            e.span
        );
        assert_eq!(slice_chars(text, e.span.clone()), e.value);
    }
    for e in s.evidence.iter().filter(|e| e.turn == 0) {
        assert!(
            e.span.start <= e.span.end && e.span.end <= len,
            "evidence span {:?} in {len} chars",
            e.span
        );
    }
    assert!(
        (-1.0..=1.0).contains(&s.sentiment),
        "sentiment {}",
        s.sentiment
    );
}

/// Text mixing what breaks parsers: emoji, right-to-left marks, combining characters, controls,
/// digits and the punctuation the extractors key on.
fn nasty() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "agent",
        "human",
        "@",
        ".",
        "+",
        "(",
        ")",
        "-",
        "$",
        "€",
        "50k",
        "2026-13-45",
        "Q5",
        "\u{202e}",
        "\u{200f}",
        "مرحبا",
        "😡",
        "👍🏽",
        "e\u{301}",
        "\u{0}",
        "\u{7}",
        "\r\n",
        "\t",
        "  ",
        "!!!",
        "???",
        "\"",
        "\\",
        "[",
        "]",
        "IPv6:",
        "0044",
        "555",
        "1234567",
        "@@",
        "..",
        "a@b.co",
        "ext.",
        "×",
        "ǅ",
        "İ",
        "ß",
        "ﬁ",
        "k",
        "mm",
        "between",
        "and",
        "thousand",
        "next",
        "quarter",
        "I'm",
        "CTO",
        "99999999999999999999",
        "years",
        "weeks",
        "in",
        "within",
        "by",
        "end of",
        "Q4 9999",
        "31/02/2027",
        "$99999999999999999999999k",
        "March 99",
        "9999-12-31",
        "0000-01-01",
        "Friday",
        "ASAP",
        "budget",
        "employees",
        "team of",
        "1e308",
        "-5",
        "1,000,000,000,000,000",
        "at 13pm",
        "25:99",
    ]);
    prop::collection::vec(
        prop_oneof![pieces.prop_map(String::from), any::<String>()],
        0..40,
    )
    .prop_map(|v| v.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("BATON_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)))]

    #[test]
    fn any_message(text in any::<String>()) {
        let s = DETECTOR.message(&text, today());
        spans_fit(&text, &s);
    }

    #[test]
    fn nasty_messages(text in nasty()) {
        let s = DETECTOR.message(&text, today());
        spans_fit(&text, &s);
    }

    #[test]
    fn any_conversation(turns in prop::collection::vec((any::<bool>(), nasty()), 0..8)) {
        let turns: Vec<Turn<'_>> = turns
            .iter()
            .map(|(bot, t)| Turn { role: if *bot { Role::Bot } else { Role::User }, text: t })
            .collect();
        let s = DETECTOR.conversation(&turns, today());
        prop_assert!((-1.0..=1.0).contains(&s.sentiment));
    }
}

#[test]
fn empty_and_huge_inputs() {
    let d = &*DETECTOR;
    for text in ["", " ", "\u{0}", "?", "@", "+"] {
        spans_fit(text, &d.message(text, today()));
    }
    let huge = "please let me talk to a human, this is taking forever 😡 ".repeat(40_000);
    let s = d.message(&huge, today());
    assert!(s.human_request && s.frustration);
    spans_fit(&huge, &s);
    let no_spaces = "a".repeat(2_000_000);
    assert!(d.message(&no_spaces, today()).entities.is_empty());
    spans_fit(&no_spaces, &d.message(&no_spaces, today()));
    let digits = "1".repeat(100_000);
    spans_fit(&digits, &d.message(&digits, today()));
    let ats = "@".repeat(100_000);
    spans_fit(&ats, &d.message(&ats, today()));
}
