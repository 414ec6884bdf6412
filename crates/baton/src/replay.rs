//! `baton replay TRANSCRIPTS.jsonl --policy P [--against Q] [--json]`: recorded conversations
//! run turn by turn through a policy (SPEC §10): handoff rate, at which turn, by trigger; the
//! differences between two policies; precision and recall where transcripts carry labels; where
//! each live handoff would be routed (with `--team FILE`, to which rep).
//!
//! One transcript per line:
//! `{"id"?, "turns": [{"role", "text", "bot"?: {"confidence", "intent", "fallback"}, "at"?}],
//!   "contact"?, "account"?, "page"?, "label"?: {"handoff": bool, "turn"?: N}}`
//! where `label.turn` is the index in `turns` of the turn a human should have been brought in.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use baton_core::decide::Outcome as Action;
use baton_core::decide::{BotMeta, ConversationView};
use baton_core::policy::DEFAULT_TEST_TIME;
use baton_core::replay::{self, ScriptTurn, Transcript};
use baton_core::routing::{self, Presence, RepState};
use baton_detect::Role;
use baton_server::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON Lines, one recorded conversation per line.
    transcripts: PathBuf,
    /// The policy to replay with; default: the built-in examples/policy.toml.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// A second policy: report where it decides differently.
    #[arg(long)]
    against: Option<PathBuf>,
    /// When the first turn of each transcript happens, unless its turns carry times (RFC 3339;
    /// turns are 30 s apart). Fixed by default so that runs are reproducible.
    #[arg(long, default_value = DEFAULT_TEST_TIME)]
    at: String,
    /// Print one JSON document instead of the report.
    #[arg(long)]
    json: bool,
    /// A team file (as `baton serve --team`): each handoff also names the rep its route would
    /// offer it to, everyone being available and free.
    #[arg(long)]
    team: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: Option<String>,
    turns: Vec<LineTurn>,
    #[serde(default)]
    contact: HashMap<String, String>,
    #[serde(default)]
    account: HashMap<String, String>,
    page: Option<String>,
    label: Option<Label>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineTurn {
    role: String,
    text: String,
    bot: Option<LineBot>,
    at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineBot {
    confidence: Option<f64>,
    intent: Option<String>,
    #[serde(default)]
    fallback: bool,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Label {
    handoff: bool,
    turn: Option<usize>,
}

struct Case {
    id: String,
    transcript: Transcript,
    label: Option<Label>,
}

/// How one conversation went under one policy.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    /// `(turn index, visitor turns so far, action, trigger)` when a human was brought in.
    handover: Option<(usize, usize, String, String)>,
    /// Bot turns refused because a human owned the conversation.
    conflicts: usize,
    turns: usize,
    /// Where a live handoff would be routed.
    plan: Option<routing::Plan>,
}

fn load(path: &PathBuf) -> anyhow::Result<Vec<Case>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut cases = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), n + 1);
        let l: Line =
            serde_json::from_str(&line).with_context(|| format!("{at}: not a transcript"))?;
        if l.turns.is_empty() {
            bail!("{at}: a transcript needs at least one turn");
        }
        let mut turns = Vec::with_capacity(l.turns.len());
        for (i, t) in l.turns.into_iter().enumerate() {
            let when = match &t.at {
                None => None,
                Some(s) => Some(
                    s.parse()
                        .with_context(|| format!("{at}: turns[{i}].at is not an RFC 3339 time"))?,
                ),
            };
            turns.push(ScriptTurn {
                role: Role::parse(&t.role),
                text: t.text,
                bot: t.bot.map(|b| BotMeta {
                    confidence: b.confidence,
                    intent: b.intent,
                    fallback: b.fallback,
                }),
                at: when,
            });
        }
        let mut start = ConversationView::new();
        start.contact = l.contact;
        start.account = l.account;
        start.page = l.page;
        cases.push(Case {
            id: l.id.unwrap_or_else(|| format!("line {}", n + 1)),
            transcript: Transcript { turns, start },
            label: l.label,
        });
    }
    Ok(cases)
}

fn engine(path: Option<&PathBuf>) -> anyhow::Result<(String, Engine)> {
    let (name, text) = match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => (
            "examples/policy.toml (built in)".to_string(),
            crate::serve::DEFAULT_POLICY.to_string(),
        ),
    };
    let e = Engine::load(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((name, e))
}

fn outcome(e: &Engine, case: &Case, team: &[RepState], at: jiff::Timestamp) -> Outcome {
    let steps = replay::run(&e.policy, &e.detector, &case.transcript, at);
    let mut visitor_turns = 0;
    let mut handover = None;
    let mut plan = None;
    for s in &steps {
        if case.transcript.turns[s.index].role == Role::User {
            visitor_turns += 1;
        }
        if handover.is_none()
            && s.hands_over()
            && let Ok(d) = &s.decision
        {
            handover = Some((
                s.index,
                visitor_turns,
                d.action.as_str().to_string(),
                d.trigger.clone().unwrap_or_default(),
            ));
            if d.action == Action::Handoff {
                let facts = routing::facts_of(&case.id, d, &case.transcript.start);
                let now = case.transcript.turns[s.index].at.unwrap_or(at);
                plan = Some(routing::plan(
                    &e.policy.routing,
                    &e.policy.routing_compiler,
                    &e.policy.calendars,
                    &facts,
                    team,
                    now,
                ));
            }
        }
    }
    Outcome {
        handover,
        conflicts: steps.iter().filter(|s| s.decision.is_err()).count(),
        turns: steps.len(),
        plan,
    }
}

/// The report of one policy over every case.
fn report(name: &str, e: &Engine, cases: &[Case], outcomes: &[Outcome], team: bool) -> Value {
    let n = cases.len();
    let handed: Vec<&(usize, usize, String, String)> = outcomes
        .iter()
        .filter_map(|o| o.handover.as_ref())
        .collect();
    let mut by_trigger: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    let mut at_visitor_turn: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, vt, action, trigger) in &handed {
        *by_trigger.entry(trigger.as_str()).or_default() += 1;
        *by_action.entry(action.as_str()).or_default() += 1;
        *at_visitor_turn.entry(*vt).or_default() += 1;
    }
    let mut out = json!({
        "policy": name,
        "policy_hash": e.policy.hash,
        "conversations": n,
        "turns": outcomes.iter().map(|o| o.turns).sum::<usize>(),
        "handed_over": handed.len(),
        "handover_rate": if n > 0 { round(handed.len() as f64 / n as f64) } else { 0.0 },
        "by_action": by_action,
        "by_trigger": by_trigger,
        "at_visitor_turn": at_visitor_turn.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "refused_bot_turns": outcomes.iter().map(|o| o.conflicts).sum::<usize>(),
    });
    // Routing: where the live handoffs would go.
    let mut by_route: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_queue: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_rep: BTreeMap<&str, usize> = BTreeMap::new();
    let mut routes = Vec::new();
    for (c, o) in cases.iter().zip(outcomes) {
        let Some(p) = &o.plan else { continue };
        *by_route
            .entry(p.route.as_deref().unwrap_or(""))
            .or_default() += 1;
        *by_queue
            .entry(p.queues.first().map_or("", String::as_str))
            .or_default() += 1;
        let mut one = json!({"id": c.id, "route": p.route, "queues": p.queues});
        if team {
            *by_rep
                .entry(p.rep.as_ref().map_or("", |(_, r)| r.as_str()))
                .or_default() += 1;
            one["rep"] = json!(p.rep.as_ref().map(|(q, r)| json!({"queue": q, "rep": r})));
        }
        routes.push(one);
    }
    out["routing"] = json!({
        "by_route": by_route,
        "by_first_queue": by_queue,
        "handoffs": routes,
    });
    if team {
        out["routing"]["by_rep"] = json!(by_rep);
    }
    // Labels: a handover is a positive; timing compares turn indices.
    let labelled: Vec<(Label, &Outcome)> = cases
        .iter()
        .zip(outcomes)
        .filter_map(|(c, o)| Some((c.label?, o)))
        .collect();
    if !labelled.is_empty() {
        let (mut tp, mut fp, mut fn_, mut tn, mut early, mut late) = (0, 0, 0, 0, 0, 0);
        for (label, o) in &labelled {
            match (label.handoff, &o.handover) {
                (true, Some((i, ..))) => {
                    tp += 1;
                    match label.turn {
                        Some(t) if *i < t => early += 1,
                        Some(t) if *i > t => late += 1,
                        _ => {}
                    }
                }
                (true, None) => fn_ += 1,
                (false, Some(_)) => fp += 1,
                (false, None) => tn += 1,
            }
        }
        let p = if tp + fp > 0 {
            tp as f64 / (tp + fp) as f64
        } else {
            0.0
        };
        let r = if tp + fn_ > 0 {
            tp as f64 / (tp + fn_) as f64
        } else {
            0.0
        };
        let f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        out["labels"] = json!({
            "conversations": labelled.len(),
            "true_positives": tp, "false_positives": fp, "false_negatives": fn_, "true_negatives": tn,
            "precision": round(p), "recall": round(r), "f1": round(f1),
            "too_early": early, "too_late": late,
        });
    }
    out
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn describe(o: &Outcome) -> String {
    match &o.handover {
        Some((i, _, action, trigger)) => format!("{action} at turn {i} ({trigger})"),
        None => "stays with the bot".to_string(),
    }
}

fn print_report(out: &mut impl Write, r: &Value) -> std::io::Result<()> {
    writeln!(
        out,
        "{} (sha256 {}): {} conversations, {} turns",
        r["policy"].as_str().unwrap_or(""),
        &r["policy_hash"].as_str().unwrap_or("")
            [..12.min(r["policy_hash"].as_str().unwrap_or("").len())],
        r["conversations"],
        r["turns"]
    )?;
    writeln!(
        out,
        "  handed over: {} ({:.1}%)",
        r["handed_over"],
        r["handover_rate"].as_f64().unwrap_or(0.0) * 100.0
    )?;
    let pairs = |v: &Value| {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| format!("{}: {}", if k.is_empty() { "-" } else { k }, n))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    writeln!(out, "  by action: {}", pairs(&r["by_action"]))?;
    writeln!(out, "  by trigger: {}", pairs(&r["by_trigger"]))?;
    writeln!(out, "  at visitor turn: {}", pairs(&r["at_visitor_turn"]))?;
    if r["refused_bot_turns"].as_u64().unwrap_or(0) > 0 {
        writeln!(
            out,
            "  bot turns refused after a handover: {}",
            r["refused_bot_turns"]
        )?;
    }
    let routing = &r["routing"];
    if routing["handoffs"]
        .as_array()
        .is_some_and(|h| !h.is_empty())
    {
        writeln!(
            out,
            "  live handoffs by route: {}",
            pairs(&routing["by_route"])
        )?;
        writeln!(
            out,
            "  by first queue: {}",
            pairs(&routing["by_first_queue"])
        )?;
        if routing.get("by_rep").is_some() {
            writeln!(
                out,
                "  offered first to (team, everyone free): {}",
                pairs(&routing["by_rep"])
            )?;
        }
    }
    if let Some(l) = r.get("labels") {
        writeln!(
            out,
            "  labels ({} conversations): precision {} recall {} F1 {} (tp {} fp {} fn {} tn {}); too early {}, too late {}",
            l["conversations"],
            l["precision"],
            l["recall"],
            l["f1"],
            l["true_positives"],
            l["false_positives"],
            l["false_negatives"],
            l["true_negatives"],
            l["too_early"],
            l["too_late"]
        )?;
    }
    Ok(())
}

pub fn run(args: &Args, mut out: impl Write) -> anyhow::Result<()> {
    let at: jiff::Timestamp = args
        .at
        .parse()
        .with_context(|| format!("--at {:?} is not an RFC 3339 time", args.at))?;
    let cases = load(&args.transcripts)?;
    let (name, a) = engine(args.policy.as_ref())?;
    let team = match &args.team {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            routing::parse_team(&text, &a.policy.calendars)
                .map_err(|errors| anyhow::anyhow!("{}: {}", path.display(), errors.join("; ")))?
                .into_iter()
                .map(|(id, rep)| {
                    let mut r = RepState::new(&id, rep);
                    r.presence = Presence::Available;
                    r
                })
                .collect()
        }
    };
    let with_team = args.team.is_some();
    let first: Vec<Outcome> = cases.iter().map(|c| outcome(&a, c, &team, at)).collect();
    let mut doc = json!({"report": report(&name, &a, &cases, &first, with_team)});
    if let Some(path) = &args.against {
        let (other_name, b) = engine(Some(path))?;
        let second: Vec<Outcome> = cases.iter().map(|c| outcome(&b, c, &team, at)).collect();
        let differences: Vec<Value> = cases
            .iter()
            .zip(first.iter().zip(&second))
            .filter(|(_, (x, y))| x.handover != y.handover)
            .map(|(c, (x, y))| json!({"id": c.id, "policy": describe(x), "against": describe(y)}))
            .collect();
        doc["against"] = report(&other_name, &b, &cases, &second, with_team);
        doc["differences"] = json!(differences);
    }
    if args.json {
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    print_report(&mut out, &doc["report"])?;
    if let Some(b) = doc.get("against") {
        print_report(&mut out, b)?;
        let diffs = doc["differences"].as_array().map_or(&[][..], Vec::as_slice);
        writeln!(out, "differences: {} conversation(s)", diffs.len())?;
        for d in diffs {
            writeln!(
                out,
                "  {}: {} | against: {}",
                d["id"].as_str().unwrap_or(""),
                d["policy"].as_str().unwrap_or(""),
                d["against"].as_str().unwrap_or("")
            )?;
        }
    }
    Ok(())
}
