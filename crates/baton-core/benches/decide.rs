//! decide() with the default policy, detectors included: `cargo bench -p baton-core`.

use std::hint::black_box;

use baton_core::decide::{ConversationView, NewTurn, PastTurn, decide};
use baton_core::policy::Policy;
use baton_detect::{Detector, Role, Signals};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};

fn bench(c: &mut Criterion) {
    let policy = Policy::load(
        "examples/policy.toml",
        include_str!("../../../examples/policy.toml"),
    )
    .expect("valid");
    let detector = Detector::new();
    let now: Timestamp = "2026-11-23T15:00:00Z".parse().expect("ts");
    let history = [
        (Role::User, "Hi, do you integrate with HubSpot?"),
        (Role::Bot, "Yes, we have a native HubSpot integration."),
        (Role::User, "Great. How much does it cost for a team of 25?"),
        (Role::Bot, "Our Team plan is $30 per seat per month."),
    ];
    let mut view = ConversationView::new();
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    for (i, (role, text)) in history.iter().enumerate() {
        // As the service does: each turn's signals (a bot turn's reading) were computed when it
        // arrived.
        let signals = Some(if *role == Role::User {
            detector.message(text, today)
        } else {
            Signals {
                reading: Some(detector.read(text)),
                ..Signals::default()
            }
        });
        view.turns.push(PastTurn {
            role: *role,
            text: (*text).into(),
            at: now - SignedDuration::from_secs(30 * (4 - i as i64)),
            signals,
        });
    }
    let turns = [
        "ok, and can I talk to someone from sales about a discount?",
        "I'm the head of support, we want to go live next month",
        "thanks, that helps",
    ];
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(turns.len() as u64));
    g.bench_function("default_policy_5th_turn", |b| {
        b.iter(|| {
            for t in &turns {
                let turn = NewTurn {
                    role: Role::User,
                    text: (*t).into(),
                    epoch: None,
                    bot: None,
                };
                black_box(
                    decide(&policy, &detector, black_box(&view), &turn, now).expect("decision"),
                );
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    let empty = ConversationView::new();
    g.bench_function("default_policy_first_turn", |b| {
        b.iter(|| {
            let turn = NewTurn {
                role: Role::User,
                text: "how much is the enterprise plan?".into(),
                epoch: None,
                bot: None,
            };
            black_box(decide(&policy, &detector, black_box(&empty), &turn, now).expect("decision"))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
