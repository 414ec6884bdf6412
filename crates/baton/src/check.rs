//! `baton check POLICY`: validate a policy and run its `[[test]]` cases.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use baton_core::check::run_tests;
use baton_core::policy::Policy;
use baton_detect::Detector;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (TOML).
    policy: PathBuf,
}

/// The detectors a policy asks for (its `[detectors]` section).
pub fn detector_for(policy: &Policy) -> anyhow::Result<Detector> {
    policy.detector().map_err(|e| anyhow::anyhow!(e))
}

/// Returns whether the policy is valid and every test passed.
pub fn run(args: &Args, mut out: impl Write) -> anyhow::Result<bool> {
    let name = args.policy.display().to_string();
    let text = std::fs::read_to_string(&args.policy).with_context(|| format!("reading {name}"))?;
    let policy = match Policy::load(&name, &text) {
        Ok(p) => p,
        Err(errors) => {
            writeln!(out, "{errors}")?;
            writeln!(
                out,
                "{name}: {} problem(s); nothing was run",
                errors.0.len()
            )?;
            return Ok(false);
        }
    };
    let detector = match detector_for(&policy) {
        Ok(d) => d,
        Err(e) => {
            writeln!(out, "{name}: {e}")?;
            return Ok(false);
        }
    };
    writeln!(
        out,
        "{name}: valid (version {}, sha256 {}), {} trigger(s), {} test(s)",
        policy.version,
        policy.hash,
        policy.triggers.len(),
        policy.tests.len()
    )?;
    let results = run_tests(&policy, &detector);
    let mut failed = 0;
    for r in &results {
        if r.passed() {
            writeln!(out, "  ok    {} ({})", r.name, r.got)?;
        } else {
            failed += 1;
            writeln!(out, "  FAIL  {name}:{}: {}", r.line, r.name)?;
            for f in &r.failures {
                writeln!(out, "          {f}")?;
            }
            writeln!(out, "          decided: {}", r.got)?;
        }
    }
    writeln!(out, "{} passed, {failed} failed", results.len() - failed)?;
    Ok(failed == 0)
}
