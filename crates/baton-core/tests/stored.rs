//! Stored signals decode to exactly what the detectors said, or not at all.

use baton_core::stored::SignalCodec;
use baton_detect::{Detector, DetectorConfig};
use proptest::prelude::*;

/// Every text of the detectors' labelled examples (ours: `baton-detect/tests/examples`).
fn example_texts() -> Vec<String> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../baton-detect/tests/examples"
    );
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the examples directory") {
        let body = std::fs::read_to_string(entry.expect("an entry").path()).expect("a file");
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            collect(&v, &mut texts);
        }
    }
    texts
}

fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::String(s) if k == "text" => out.push(s.clone()),
                    _ => collect(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 23)
}

#[test]
fn every_example_decodes_to_what_was_detected() {
    let detector = Detector::new();
    let codec = SignalCodec::new(&detector, "");
    let texts = example_texts();
    assert!(texts.len() > 400, "only {} example texts", texts.len());
    let (mut bytes, mut with_evidence) = (0, 0);
    for text in &texts {
        let s = detector.message(text, today());
        let blob = codec.encode(&s, text);
        bytes += blob.len();
        with_evidence += usize::from(!s.evidence.is_empty());
        let back = codec.decode(&blob, text, &detector);
        assert_eq!(back.as_ref(), Some(&s), "{text:?}");
    }
    eprintln!("{with_evidence} of {} with evidence", texts.len());
    assert!(with_evidence > texts.len() / 3);
    eprintln!(
        "{} texts, {} bytes a turn on average",
        texts.len(),
        bytes / texts.len()
    );
}

#[test]
fn a_long_message_keeps_no_reading_and_still_decodes() {
    let detector = Detector::new();
    let codec = SignalCodec::new(&detector, "");
    let text = "I want to talk to a person about pricing. ".repeat(1000);
    let s = detector.message(&text, today());
    assert!(s.reading.is_none() && s.human_request);
    let back = codec.decode(&codec.encode(&s, &text), &text, &detector);
    assert_eq!(back, Some(s));
}

#[test]
fn other_detectors_do_not_trust_the_blob() {
    let plain = Detector::new();
    let codec = SignalCodec::new(&plain, "");
    let text = "this is useless, get me a human";
    let blob = codec.encode(&plain.message(text, today()), text);

    // Another [detectors] section: different phrases and a different threshold.
    let config = DetectorConfig {
        extra_phrases: vec![("human_request".into(), "useless".into())],
        ..DetectorConfig::default()
    };
    let other = Detector::with_config(&config).expect("a valid config");
    let other_codec = SignalCodec::new(&other, "phrases: useless");
    assert_eq!(other_codec.decode(&blob, text, &other), None);
    // The same detectors described differently are another section too.
    assert_eq!(
        SignalCodec::new(&plain, "x").decode(&blob, text, &plain),
        None
    );
    // And the same codec built again agrees with itself.
    assert!(
        SignalCodec::new(&plain, "")
            .decode(&blob, text, &plain)
            .is_some()
    );
}

#[test]
fn a_damaged_blob_is_refused_not_misread() {
    let detector = Detector::new();
    let codec = SignalCodec::new(&detector, "");
    let text =
        "I'm the CFO, budget is $20k a month, we start in March. Call me at +44 20 7946 0958!";
    let s = detector.message(text, today());
    let blob = codec.encode(&s, text);
    for cut in 0..blob.len() {
        assert_eq!(
            codec.decode(&blob[..cut], text, &detector),
            None,
            "cut at {cut}"
        );
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert_eq!(codec.decode(&longer, text, &detector), None);
    // Any single byte changed: refused, or read as something that is not a panic.
    for i in 0..blob.len() {
        let mut b = blob.clone();
        b[i] ^= 0x5a;
        let _ = codec.decode(&b, text, &detector);
    }
}

static SHARED: std::sync::LazyLock<(Detector, SignalCodec)> = std::sync::LazyLock::new(|| {
    let detector = Detector::new();
    let codec = SignalCodec::new(&detector, "");
    (detector, codec)
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text, including ones the detectors find nothing in and ones full of non-ASCII.
    #[test]
    fn any_message_round_trips(text in "(\\PC|[ $€0-9@.]){0,120}") {
        let (detector, codec) = &*SHARED;
        let s = detector.message(&text, today());
        let back = codec.decode(&codec.encode(&s, &text), &text, detector);
        prop_assert_eq!(back, Some(s));
    }

    /// Bytes after a valid header that were never a body never panic.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (detector, codec) = &*SHARED;
        let mut blob = codec.encode(&Default::default(), "")[..9].to_vec();
        blob.extend_from_slice(&bytes);
        let _ = codec.decode(&blob, "some text", detector);
    }
}
