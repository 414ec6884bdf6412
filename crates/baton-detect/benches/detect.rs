//! Throughput of the detector on one core: `cargo bench -p baton-detect`.

use std::hint::black_box;

use baton_detect::{Detector, Role, Turn};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A mix of what visitors send: requests, complaints, sales questions, contact details.
const MESSAGES: &[&str] = &[
    "hi",
    "Can I talk to a real person please?",
    "I've been waiting three weeks for my refund and nobody answers. This is ridiculous!!",
    "How much does the enterprise plan cost per seat? We're a team of 45.",
    "I'm the CTO at Northwind, budget is around $40k a year, we want to go live by end of March.",
    "Do you integrate with Salesforce and HubSpot? How do you compare to Intercom?",
    "my password reset link doesn't work and I think my account was hacked",
    "Could you send the DPA and your SOC 2 report? Legal needs them before we sign.",
    "call me at +44 20 7946 0958 or email jane.doe@example.co.uk tomorrow at 3pm",
    "what do you mean? I don't understand",
    "Where is my order? It was supposed to arrive on Monday.",
    "Thanks, that helps a lot!",
];

fn bench(c: &mut Criterion) {
    let d = Detector::new();
    let today = jiff::civil::date(2026, 11, 21);
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(MESSAGES.len() as u64));
    g.bench_function("message_mix", |b| {
        b.iter(|| {
            for m in MESSAGES {
                black_box(d.message(black_box(m), today));
            }
        })
    });
    let turns = [
        Turn {
            role: Role::User,
            text: "how do I change my billing address",
        },
        Turn {
            role: Role::Bot,
            text: "Sorry, I didn't understand that. Could you rephrase?",
        },
        Turn {
            role: Role::User,
            text: "change billing address on my invoice",
        },
        Turn {
            role: Role::Bot,
            text: "Sorry, I didn't understand that. Could you rephrase?",
        },
        Turn {
            role: Role::User,
            text: "that's not what I asked. agent please",
        },
    ];
    g.throughput(Throughput::Elements(1));
    g.bench_function("conversation_5_turns", |b| {
        b.iter(|| black_box(d.conversation(black_box(&turns), today)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
