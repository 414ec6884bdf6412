//! Architecture invariant: the detector crate stays pure (see ARCHITECTURE.md). Its dependencies
//! are the ones listed here; adding one means deciding, in review, that it does no I/O.

#[test]
fn only_pure_dependencies() {
    let manifest = include_str!("../Cargo.toml");
    let deps: Vec<&str> = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let allowed = ["aho-corasick", "jiff", "regex", "vader-sentimental"];
    for d in &deps {
        assert!(
            allowed.contains(d),
            "baton-detect gained the dependency {d}; it must stay pure (no I/O, no clock, no serde)"
        );
    }
    assert!(!deps.is_empty());
}

#[test]
fn no_clock_or_io_in_the_source() {
    let sources = [
        include_str!("../src/lib.rs"),
        include_str!("../src/affect.rs"),
        include_str!("../src/classify.rs"),
        include_str!("../src/dialogue.rs"),
        include_str!("../src/human.rs"),
        include_str!("../src/qualify.rs"),
        include_str!("../src/rules.rs"),
        include_str!("../src/text.rs"),
        include_str!("../src/typo.rs"),
        include_str!("../src/entities/mod.rs"),
        include_str!("../src/entities/email.rs"),
        include_str!("../src/entities/phone.rs"),
        include_str!("../src/entities/numbers.rs"),
    ];
    for src in sources {
        for banned in [
            "std::fs",
            "std::net::Tcp",
            "std::io::",
            "Zoned::now",
            "Timestamp::now",
            "SystemTime",
            "Instant::now",
            "std::env",
        ] {
            assert!(
                !src.contains(banned),
                "the detector crate must not use {banned}"
            );
        }
    }
}
