//! The `baton` binary: subcommands over the library crates.

mod check;
mod detect;
mod replay;
mod serve;

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the server and the detectors allocate many small, short-lived values per turn
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Baton decides when a chatbot must hand a conversation to a human.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read JSON Lines (`{"text": ...}` or `{"turns": [{"role", "text"}]}`) on standard input and
    /// write one line of signals per input line, in order (SPEC §11).
    Detect(detect::Args),
    /// Validate a policy file and run its `[[test]]` cases; exits non-zero on any problem.
    Check(check::Args),
    /// Run recorded conversations (JSON Lines) turn by turn through a policy: handoff rate, at
    /// which turn, by trigger; with --against, the differences; with labels, precision and recall.
    Replay(replay::Args),
    /// Serve the HTTP API (SQLite in the data directory by default, PostgreSQL with --database-url).
    Serve(serve::ServeArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: serve::KeysCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => match check::run(&args, io::stdout().lock()) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Serve(args) => serve::serve(&args),
        Command::Replay(args) => replay::run(&args, io::BufWriter::new(io::stdout().lock())),
        Command::Keys { command } => serve::keys(&command),
        Command::Detect(args) => detect::run(
            &args,
            io::BufReader::with_capacity(1 << 16, io::stdin()),
            io::BufWriter::with_capacity(1 << 16, io::stdout()),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("baton: {e:#}");
            ExitCode::FAILURE
        }
    }
}
