//! Architecture invariant: the core stays pure (see ARCHITECTURE.md).

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
    for d in &deps {
        assert!(
            [
                "baton-detect",
                "cel",
                "jiff",
                "serde",
                "sha2",
                "thiserror",
                "toml"
            ]
            .contains(d),
            "baton-core gained the dependency {d}; it must stay pure"
        );
    }
}

#[test]
fn no_clock_or_io_in_the_source() {
    for src in [
        include_str!("../src/lib.rs"),
        include_str!("../src/hours.rs"),
        include_str!("../src/expr.rs"),
        include_str!("../src/policy.rs"),
        include_str!("../src/decide.rs"),
        include_str!("../src/brief.rs"),
        include_str!("../src/check.rs"),
        include_str!("../src/replay.rs"),
        include_str!("../src/routing.rs"),
        include_str!("../src/stored.rs"),
    ] {
        for banned in [
            "std::fs",
            "std::net",
            "std::io::",
            "Zoned::now",
            "Timestamp::now",
            "SystemTime",
            "Instant::now",
            "std::env",
            "tokio::",
        ] {
            assert!(!src.contains(banned), "baton-core must not use {banned}");
        }
    }
}
