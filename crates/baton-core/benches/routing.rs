//! Choosing a rep: 1,000 reps, 50 queues, 50 routes (`cargo bench -p baton-core --bench
//! routing`). Each iteration routes one handoff (first matching route), binds it, and chooses
//! a rep of the route's first queue with the queue's `match` evaluated on candidates, as the
//! server does for every offer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;

use baton_core::policy::Policy;
use baton_core::routing::{self, HandoffFacts, Ledger, Presence, Rep, RepState};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;

const TERRITORIES: [&str; 5] = ["na", "emea", "apac", "latam", "anz"];
const LANGUAGES: [&str; 4] = ["en", "de", "fr", "es"];
const PRODUCTS: [&str; 5] = ["core", "analytics", "api", "mobile", "security"];

fn policy() -> Policy {
    let mut text = String::from("version = 1\n");
    for q in 0..50 {
        let t = TERRITORIES[q % 5];
        let p = PRODUCTS[(q / 5) % 5];
        let strategy = ["round_robin", "least_busy", "longest_idle", "best_skill"][q % 4];
        let _ = write!(
            text,
            "[[queue]]\nid = \"q{q}\"\nmembers = \"'{t}' in rep.territories && '{p}' in rep.products\"\n\
             match = \"handoff.language in rep.languages\"\nstrategy = \"{strategy}\"\nskill = \"{p}\"\n\n"
        );
    }
    for r in 0..50 {
        let t = TERRITORIES[r % 5];
        let p = PRODUCTS[(r / 5) % 5];
        let _ = write!(
            text,
            "[[route]]\nid = \"r{r}\"\nwhen = \"handoff.territory == '{t}' && handoff.product == '{p}'\"\n\
             targets = [{{ queue = \"q{r}\", timeout = \"2m\" }}]\n\n"
        );
    }
    Policy::load("bench.toml", &text).expect("valid")
}

fn reps() -> Vec<RepState> {
    (0..1000)
        .map(|i: usize| {
            // A multiplicative hash, so that attributes do not move in step with each other.
            let pick = |n: usize, k: usize| {
                ((i as u64 + 1)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(k as u32 * 11)
                    % n as u64) as usize
            };
            let mut r = RepState::new(
                &format!("rep{i:04}"),
                Rep {
                    name: format!("Rep {i}"),
                    skills: PRODUCTS
                        .iter()
                        .enumerate()
                        .map(|(k, p)| (p.to_string(), ((i + k) % 10) as i64))
                        .collect(),
                    territories: vec![
                        TERRITORIES[pick(5, 0)].into(),
                        TERRITORIES[pick(5, 1)].into(),
                    ],
                    languages: vec!["en".into(), LANGUAGES[pick(4, 2)].into()],
                    products: vec![PRODUCTS[pick(5, 3)].into(), PRODUCTS[pick(5, 4)].into()],
                    deal_band: None,
                    time_zone: None,
                    hours: None,
                    capacity: 3,
                    on_call: false,
                    weight: 1,
                    manager: None,
                    email: None,
                },
            );
            r.presence = if i.is_multiple_of(3) {
                Presence::Away
            } else {
                Presence::Available
            };
            r.load = (i % 4) as u32;
            r
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let reps = reps();
    let now: Timestamp = "2026-11-23T15:00:00Z".parse().expect("ts");
    // Membership is computed when reps or the policy change, not per offer.
    let members: BTreeMap<String, Vec<bool>> = policy
        .routing
        .queues
        .iter()
        .map(|q| {
            let row = reps
                .iter()
                .map(|r| {
                    let scope = policy
                        .routing_compiler
                        .scope(
                            [("rep".to_string(), r.value())],
                            policy.calendars.clone(),
                            now,
                        )
                        .expect("scope");
                    q.members
                        .as_ref()
                        .is_none_or(|m| scope.eval_bool(m).unwrap_or(false))
                })
                .collect();
            (q.id.clone(), row)
        })
        .collect();
    let mut ledger = Ledger::default();
    for (i, r) in reps.iter().enumerate().take(300) {
        ledger.record(&format!("q{}", i % 50), &r.id, now);
    }
    let facts = HandoffFacts {
        id: "h1".into(),
        territory: "apac".into(),
        product: "mobile".into(),
        language: "de".into(),
        lead_score: 40.0,
        ..HandoffFacts::default()
    };
    let bind = |facts: &HandoffFacts| {
        policy
            .routing_compiler
            .scope(
                [("handoff".to_string(), facts.value())],
                policy.calendars.clone(),
                now,
            )
            .expect("scope")
    };
    // What the server does for every offer: bind the handoff, find its route, choose a rep of
    // the route's first queue.
    let route_and_choose = |facts: &HandoffFacts| {
        let mut scope = bind(facts);
        let route = routing::route(&policy.routing, &scope).0.expect("a route");
        let queue = &policy.routing.queues[policy.routing.routes[route].targets[0].queue];
        let choice = routing::choose(
            queue,
            &reps,
            &members[&queue.id],
            &[],
            &ledger,
            &policy.calendars,
            &mut scope,
            now,
        );
        (queue, choice)
    };
    let (queue, choice) = route_and_choose(&facts);
    eprintln!(
        "queue {}, members {}, chosen {:?}, no-match evaluations {}",
        queue.id,
        members[&queue.id].iter().filter(|m| **m).count(),
        choice.rep.map(|i| reps[i].id.clone()),
        choice
            .considered
            .iter()
            .filter(|c| c.reason == routing::Reason::NoMatch)
            .count()
    );
    c.bench_function("route and choose among 1,000 reps, 50 queues", |b| {
        b.iter(|| black_box(route_and_choose(&facts).1.rep))
    });
    // The worst case: nobody speaks the visitor's language, so the queue's `match` is
    // evaluated on every available member before the handoff is left waiting.
    let nobody = HandoffFacts {
        language: "ja".into(),
        ..facts.clone()
    };
    c.bench_function(
        "route and choose, no member matches (every one evaluated)",
        |b| b.iter(|| black_box(route_and_choose(&nobody).1.rep)),
    );
    // The parts, to see where the time goes.
    c.bench_function("bind the handoff (scope)", |b| {
        b.iter(|| black_box(bind(&facts)))
    });
    let scope = bind(&facts);
    c.bench_function("first matching route of 50 (the 18th)", |b| {
        b.iter(|| black_box(routing::route(&policy.routing, &scope).0))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
