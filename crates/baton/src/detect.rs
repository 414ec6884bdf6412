//! `baton detect`: JSON Lines in, one line of signals out per input line, in order.
//!
//! Lines are read in bounded batches and scored on every core; memory stays constant however
//! long the stream. A malformed line gets `{"error": {...}}` on its output line and the stream
//! goes on; only an I/O failure stops it.

use std::io::{self, BufRead, Write};
use std::num::NonZeroUsize;
use std::sync::mpsc;

use anyhow::Context;
use baton_detect::{Detector, Role, Turn};
use jiff::civil::Date;
use serde::Deserialize;
use serde_json::json;

use baton_server::wire::DetectOut;

/// Lines scored together; bounds memory and keeps every core busy.
const BATCH: usize = 2048;
/// Longest line accepted; a longer one is answered with an error and skipped.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Most turns read from one conversation.
const MAX_TURNS: usize = 10_000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The date relative dates are counted from ("next quarter"), YYYY-MM-DD; default: today
    /// in the system time zone. A line's own `"now"` field wins.
    #[arg(long)]
    today: Option<Date>,
    /// Worker threads; default: one per core.
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

#[derive(Deserialize)]
struct Input {
    text: Option<serde_json::Value>,
    turns: Option<Vec<TurnIn>>,
    now: Option<String>,
}

#[derive(Deserialize)]
struct TurnIn {
    role: String,
    text: String,
}

/// One input line: its text, or why it could not be read.
enum Line {
    Text(String),
    TooLong(usize),
}

pub fn run(
    args: &Args,
    mut input: impl BufRead + Send,
    mut output: impl Write + Send,
) -> anyhow::Result<()> {
    let today = args.today.unwrap_or_else(|| jiff::Zoned::now().date());
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let detector = Detector::new();
    // Reading, scoring and writing overlap: a reader and a writer thread around the scorers,
    // with at most two batches queued on each side so memory stays bounded.
    std::thread::scope(|s| {
        let (batch_tx, batch_rx) = mpsc::sync_channel::<(usize, Vec<Line>)>(2);
        let (out_tx, out_rx) = mpsc::sync_channel::<Vec<String>>(2);
        let reader = s.spawn(move || -> io::Result<()> {
            let mut line_no = 1usize;
            loop {
                let mut batch = Vec::with_capacity(BATCH);
                while batch.len() < BATCH {
                    match read_line(&mut input)? {
                        Some(l) => batch.push(l),
                        None => break,
                    }
                }
                let n = batch.len();
                if n == 0 || batch_tx.send((line_no, batch)).is_err() {
                    return Ok(());
                }
                line_no += n;
                if n < BATCH {
                    return Ok(());
                }
            }
        });
        let writer = s.spawn(move || -> io::Result<()> {
            for lines in out_rx {
                for l in lines {
                    output.write_all(l.as_bytes())?;
                    output.write_all(b"\n")?;
                }
            }
            output.flush()
        });
        for (first, batch) in batch_rx {
            let outputs = score_batch(&detector, &batch, first, today, threads);
            if out_tx.send(outputs).is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        drop(out_tx);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let read = reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        read.context("reading input")?;
        written.context("writing output")?;
        Ok(())
    })
}

fn score_batch(
    detector: &Detector,
    batch: &[Line],
    first_line: usize,
    today: Date,
    threads: usize,
) -> Vec<String> {
    if threads <= 1 || batch.len() < 64 {
        return batch
            .iter()
            .enumerate()
            .map(|(i, l)| score_line(detector, l, first_line + i, today))
            .collect();
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .enumerate()
            .map(|(c, lines)| {
                s.spawn(move || {
                    lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| score_line(detector, l, first_line + c * chunk + i, today))
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Reads one line, without its end; `None` at the end of input.
fn read_line(input: &mut impl BufRead) -> io::Result<Option<Line>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (used, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let content = if done { &chunk[..used - 1] } else { chunk };
        total += content.len();
        if total <= MAX_LINE_BYTES {
            buf.extend_from_slice(content);
        }
        input.consume(used);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if total > MAX_LINE_BYTES {
        return Ok(Some(Line::TooLong(total)));
    }
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    Ok(Some(Line::Text(String::from_utf8(buf).unwrap_or_else(
        |e| String::from_utf8_lossy(e.as_bytes()).into_owned(),
    ))))
}

fn error_line(code: &str, message: String, line: usize) -> String {
    json!({"error": {"code": code, "message": message, "line": line}}).to_string()
}

fn score_line(detector: &Detector, line: &Line, line_no: usize, default_today: Date) -> String {
    let text = match line {
        Line::Text(t) => t,
        Line::TooLong(n) => {
            return error_line(
                "line_too_long",
                format!("line is {n} bytes; the limit is {MAX_LINE_BYTES}"),
                line_no,
            );
        }
    };
    let input: Input = match serde_json::from_str(text) {
        Ok(i) => i,
        Err(e) if e.is_data() => {
            return error_line(
                "invalid_input",
                format!("expected an object with \"text\" or \"turns\": {e}"),
                line_no,
            );
        }
        Err(e) => return error_line("invalid_json", format!("not valid JSON: {e}"), line_no),
    };
    let today = match &input.now {
        None => default_today,
        Some(s) => match s.get(..10).and_then(|d| d.parse::<Date>().ok()) {
            Some(d) => d,
            None => {
                return error_line(
                    "invalid_input",
                    format!("\"now\" must be a date or an RFC 3339 time, not {s:?}"),
                    line_no,
                );
            }
        },
    };
    let signals = match (&input.text, &input.turns) {
        (Some(serde_json::Value::String(t)), _) => detector.message(t, today),
        (Some(_), _) => {
            return error_line("invalid_input", "\"text\" must be a string".into(), line_no);
        }
        (None, Some(turns)) if turns.len() > MAX_TURNS => {
            return error_line(
                "invalid_input",
                format!("{} turns; the limit is {MAX_TURNS}", turns.len()),
                line_no,
            );
        }
        (None, Some(turns)) => {
            let turns: Vec<Turn<'_>> = turns
                .iter()
                .map(|t| Turn {
                    role: Role::parse(&t.role),
                    text: &t.text,
                })
                .collect();
            detector.conversation(&turns, today)
        }
        (None, None) => {
            return error_line(
                "invalid_input",
                "expected \"text\" or \"turns\"".into(),
                line_no,
            );
        }
    };
    serde_json::to_string(&DetectOut::new(&signals))
        .unwrap_or_else(|e| error_line("internal", e.to_string(), line_no))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_str(input: &str) -> Vec<serde_json::Value> {
        let args = Args {
            today: Some(jiff::civil::date(2026, 11, 21)),
            threads: NonZeroUsize::new(2),
        };
        let mut out = Vec::new();
        run(&args, input.as_bytes(), &mut out).expect("run");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
            .collect()
    }

    #[test]
    fn one_line_out_per_line_in_with_errors_in_place() {
        let out = run_str(
            "{\"text\": \"agent please\"}\nnot json\n{\"x\": 1}\n\n{\"turns\": [{\"role\": \"user\", \"text\": \"hi\"}]}\n",
        );
        assert_eq!(out.len(), 5);
        assert_eq!(out[0]["human_request"], true);
        assert_eq!(out[1]["error"]["code"], "invalid_json");
        assert_eq!(out[2]["error"]["code"], "invalid_input");
        assert_eq!(out[3]["error"]["line"], 4);
        assert_eq!(out[4]["human_request"], false);
    }
}
