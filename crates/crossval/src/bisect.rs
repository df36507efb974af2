//! `cargo xtask crossval --bisect`: the crossval through `tensor-trace bisect` (trace-cli's
//! [`trace_cli::bisect`]): both sides run hash-and-stats only, then again with raw values for a
//! window around the first divergence only. Exact metrics where they matter without saving every
//! tensor, and a determinism check of both sides on the way.
//!
//! The candle side runs as `crossval-side` (see `side.rs`), the reference as its
//! `Reference::command` in f64 and, for calibrated verdicts (the default), again in the engine's
//! precision as the baseline, bisected alongside B.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use trace_cli::bisect::{BisectOptions, Bisection};
use trace_cli::engine::EngineCommand;
use trace_diff::{DiffOptions, Rules};

use crate::judge::Judge;

/// Bisects the candle command `a` against the reference command `b` (calibrated by the baseline
/// command `c` when given) under `rules`, the runs in `out` (emptied of an earlier bisection
/// first).
pub fn run(
    a: &Command,
    b: &Command,
    c: Option<&Command>,
    out: &Path,
    window: usize,
    rules: Rules,
    judge: &Judge,
) -> Result<Bisection> {
    if out.exists() {
        if !out.join("pass1").exists() {
            bail!(
                "{} exists and holds no bisection (no pass1/): refusing to clear it",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("clear {}", out.display()))?;
    }
    let options = BisectOptions {
        out: Some(out.to_path_buf()),
        window,
        filter: None,
    };
    let diff = DiffOptions {
        rules,
        max_ratio: judge.max_ratio,
        ..DiffOptions::default()
    };
    let c = c.map(EngineCommand::from_command);
    trace_cli::bisect::bisect_with(
        &EngineCommand::from_command(a),
        &EngineCommand::from_command(b),
        c.as_ref(),
        &options,
        &diff,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("bisect the two engines")
}

/// `--bisect` as both drivers run it: `bisect` runs, its report is printed; whether the runs
/// agreed.
pub fn report(json: bool, bisect: impl FnOnce() -> Result<Bisection>) -> Result<bool> {
    if json {
        bail!("--bisect prints the bisection's text report; --json is not supported with it");
    }
    let found = bisect()?;
    print!("{}", render(&found));
    Ok(found.outcome == trace_cli::bisect::BisectOutcome::Agree)
}

/// The report as `--bisect` prints it: the last pass's diff, then the bisection's summary.
pub fn render(found: &Bisection) -> String {
    let mut s = String::new();
    if found.nondeterministic.is_none() {
        s.push_str(&trace_diff::render::text(
            &found.report,
            &Default::default(),
        ));
        s.push('\n');
    }
    s.push_str(&found.summary());
    s
}
