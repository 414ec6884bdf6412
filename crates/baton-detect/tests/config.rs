//! The policy's `[detectors]` knobs: extra phrases and thresholds.

use baton_detect::{AffectThresholds, Detector, DetectorConfig};

fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 21)
}

#[test]
fn extra_phrases_raise_their_signal_with_evidence() {
    let config = DetectorConfig {
        extra_phrases: vec![
            ("human_request".into(), "beam me to a Mensch".into()),
            ("pricing".into(), "rate card".into()),
            ("compliance".into(), "DORA register".into()),
        ],
        ..DetectorConfig::default()
    };
    let d = Detector::with_config(&config).expect("valid config");
    let s = d.message(
        "Please beam me to a mensch, and send the rate card and our DORA register",
        today(),
    );
    assert!(s.human_request);
    assert!(s.intents.contains(&"pricing"));
    assert!(s.topics.contains(&"compliance"));
    assert!(
        s.evidence
            .iter()
            .any(|e| e.rule == "custom/phrase" && e.text == "beam me to a mensch")
    );
    // Without the config the phrase means nothing.
    assert!(
        !Detector::new()
            .message("beam me to a mensch", today())
            .human_request
    );
}

#[test]
fn unknown_signal_or_empty_phrase_is_an_error() {
    let bad = DetectorConfig {
        extra_phrases: vec![("happiness".into(), "yay".into())],
        ..DetectorConfig::default()
    };
    assert!(
        Detector::with_config(&bad)
            .unwrap_err()
            .to_string()
            .contains("happiness")
    );
    let empty = DetectorConfig {
        extra_phrases: vec![("frustration".into(), " ?! ".into())],
        ..DetectorConfig::default()
    };
    assert!(Detector::with_config(&empty).is_err());
}

#[test]
fn frustration_threshold_is_honoured() {
    let text = "I've been waiting for ages";
    assert!(Detector::new().message(text, today()).frustration);
    let strict = DetectorConfig {
        thresholds: AffectThresholds {
            frustration: 5.0,
            ..AffectThresholds::default()
        },
        ..DetectorConfig::default()
    };
    let d = Detector::with_config(&strict).expect("valid config");
    let s = d.message(text, today());
    assert!(!s.frustration);
    assert!(s.frustration_score > 0.0);
}
