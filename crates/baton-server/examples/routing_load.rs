//! The routing load test (bench/routing.sh, BENCHMARKS.md): against a running `baton serve`
//! with `bench/routing-policy.toml`, 50 reps listen on their streams and accept every offer;
//! 10,000 conversations are opened; then handoffs are triggered at a fixed rate, and the time
//! from sending the visitor's turn that fires the trigger to the offer event on the rep's
//! stream is measured.
//!
//! Usage: routing_load BASE_URL ADMIN_KEY BOT_KEY [RATE_PER_S] [SECONDS] [CONVERSATIONS]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

type Sent = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: routing_load BASE_URL ADMIN_KEY BOT_KEY [RATE] [SECONDS] [CONVERSATIONS]"
        );
        std::process::exit(2);
    }
    let base = args[1].clone();
    let admin = args[2].clone();
    let bot = args[3].clone();
    let rate: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(30);
    let conversations: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let http = reqwest::Client::new();

    // 50 reps, each able to hold all the handoffs of the run.
    let capacity = (rate * seconds / 50 + 10).min(1000);
    for i in 0..50 {
        let rep = format!("rep{i:02}");
        let r = http
            .put(format!("{base}/v1/reps/{rep}"))
            .bearer_auth(&admin)
            .json(&json!({"name": rep, "skills": {"support": 5}, "languages": ["en"], "capacity": capacity}))
            .send()
            .await
            .expect("put rep");
        assert!(r.status().is_success(), "put rep: {}", r.status());
    }
    let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    for i in 0..50 {
        let rep = format!("rep{i:02}");
        let (http, base, admin) = (http.clone(), base.clone(), admin.clone());
        let (sent, latencies) = (sent.clone(), latencies.clone());
        tokio::spawn(async move { listen(http, base, admin, rep, sent, latencies).await });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..50 {
        http.put(format!("{base}/v1/reps/rep{i:02}/presence"))
            .bearer_auth(&admin)
            .json(&json!({"presence": "available"}))
            .send()
            .await
            .expect("presence");
    }

    // The open conversations: one visitor turn each, no handoff.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in (0..conversations)
        .collect::<Vec<_>>()
        .chunks(conversations.div_ceil(32))
    {
        let (http, base, bot, chunk) = (http.clone(), base.clone(), bot.clone(), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for c in chunk {
                http.post(format!("{base}/v1/conversations/load-{c}/turns"))
                    .bearer_auth(&bot)
                    .json(&json!({"role": "user", "text": "Hi, how do I export my invoices?"}))
                    .send()
                    .await
                    .expect("turn");
            }
        }));
    }
    for t in tasks {
        t.await.expect("opener");
    }
    eprintln!(
        "{conversations} conversations opened in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Handoffs at a fixed rate, each on a different open conversation.
    let total = (rate * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut triggers = Vec::new();
    for n in 0..total {
        tick.tick().await;
        let (http, base, bot, sent) = (http.clone(), base.clone(), bot.clone(), sent.clone());
        let c = n % conversations;
        triggers.push(tokio::spawn(async move {
            // Measured from the moment the visitor's turn is sent.
            let at = Instant::now();
            let r = http
                .post(format!("{base}/v1/conversations/load-{c}/turns"))
                .bearer_auth(&bot)
                .json(&json!({"role": "user", "text": "I want to talk to a real person"}))
                .send()
                .await
                .expect("trigger");
            let d: Value = r.json().await.unwrap_or(Value::Null);
            if let Some(h) = d["handoff_id"].as_str() {
                sent.lock().expect("sent").insert(h.to_string(), at);
            }
        }));
    }
    for t in triggers {
        t.await.expect("trigger task");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut l = latencies.lock().expect("latencies").clone();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "handoffs triggered {total}, offers seen {}, trigger->offer ms: p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        l.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        l.last().copied().unwrap_or(f64::NAN)
    );
}

/// A rep's stream: every offer's latency is recorded, and the offer accepted.
async fn listen(
    http: reqwest::Client,
    base: String,
    admin: String,
    rep: String,
    sent: Sent,
    latencies: Arc<Mutex<Vec<f64>>>,
) {
    let mut res = http
        .get(format!("{base}/v1/reps/{rep}/stream"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("stream");
    let mut buf = String::new();
    while let Ok(Some(bytes)) = res.chunk().await {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if !block.contains("event: offer\n") {
                continue;
            }
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            let Some(h) = v["handoff_id"].as_str() else {
                continue;
            };
            // The offer may arrive before the trigger's answer was read: wait for it briefly.
            let mut at = None;
            for _ in 0..100 {
                if let Some(t) = sent.lock().expect("sent").get(h).copied() {
                    at = Some(t);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if let Some(t) = at {
                let ms = if now > t {
                    (now - t).as_secs_f64() * 1000.0
                } else {
                    0.0
                };
                latencies.lock().expect("latencies").push(ms);
            }
            let (http, base, admin, rep, h) = (
                http.clone(),
                base.clone(),
                admin.clone(),
                rep.clone(),
                h.to_string(),
            );
            tokio::spawn(async move {
                let _ = http
                    .post(format!("{base}/v1/handoffs/{h}/accept"))
                    .bearer_auth(&admin)
                    .json(&json!({ "rep": rep }))
                    .send()
                    .await;
            });
        }
    }
}
