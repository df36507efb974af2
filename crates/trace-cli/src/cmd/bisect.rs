//! `tensor-trace bisect`: the front end of [`trace_cli::bisect`].

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use trace_cli::bisect::{bisect_with, BisectOptions, Bisection, DEFAULT_WINDOW};
use trace_cli::engine::EngineCommand;
use trace_core::config::NameFilter;
use trace_diff::cli::{ColorChoice, Format};
use trace_diff::render::{self, TextOptions};
use trace_diff::{DiffOptions, Rules};

use crate::output::print;

/// Find the first divergence of two engines cheaply, then measure it exactly.
///
/// Pass 1 runs both commands with tracing on, hash, statistics and value sketches only, and
/// diffs them. If a record diverged, pass 2 reruns both with raw values for that record and the
/// --window records before it (default 1) in A's order, and their partners in B, and diffs
/// again: exact metrics where they matter. If values disagree with pass 1 (the window's first
/// record already diverges, or the flagged record agrees), a bounded search follows: each pass
/// measures a few records of the interval between a record that agrees on values and one that
/// diverges, until the two are neighbours, within one full-values capture of bytes in all and
/// at most 10 values passes. Records up to the last one with values must hash as in pass 1,
/// else the outcome is "nondeterministic", naming the first record that changed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The two commands follow, each after its own `--` (so the first command \
                  cannot take a bare `--` argument itself):\n  tensor-trace bisect --window 1 -- \
                  ./engine --prompt test -- python3 reference.py --prompt test\n\nExit codes: 0 \
                  agree, 1 diverged, incomplete or nondeterministic, 2 error."
)]
pub struct Args {
    /// Directory for the runs (must be empty or absent); default: a temporary directory,
    /// removed when the runs agree, kept (and printed) otherwise.
    #[arg(long, short, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Records before the first divergence (in A's order) that also get raw values in pass 2
    /// (0 counts as 1: the record before is what confirms the divergence starts there).
    #[arg(long, default_value_t = DEFAULT_WINDOW, value_name = "N")]
    window: usize,
    /// Record only names matching these comma-separated globs, on both sides.
    #[arg(long, value_name = "GLOBS")]
    filter: Option<String>,
    /// Rules file (TOML) or preset name: name mapping, ignore lists, tolerances (as `diff --rules`).
    #[arg(long, short, value_name = "FILE|PRESET")]
    rules: Option<PathBuf>,
    /// Make every input problem fatal (exit 2) instead of a warning.
    #[arg(long)]
    strict: bool,
    /// Accept records without a partner on the other side.
    #[arg(long)]
    allow_missing: bool,
    /// Calibrated verdicts: a third command follows (`-- CMD_A -- CMD_B -- CMD_C`), the
    /// reference in A's precision, run in every pass beside B (as `diff --baseline`).
    #[arg(long)]
    baseline: bool,
    /// With --baseline: the largest ratio of A's error to the baseline's that agrees.
    #[arg(long, value_name = "K", requires = "baseline", value_parser = trace_diff::cli::parse_max_ratio)]
    max_ratio: Option<f64>,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Rows per table in the text report (0 = all).
    #[arg(long, default_value_t = 40)]
    max_rows: usize,
    /// When to color the text report.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// `CMD_A ... -- CMD_B ...`: the run under test, then the reference (then, with
    /// --baseline, `-- CMD_C ...`, the baseline).
    #[arg(required = true, last = true, value_name = "CMD_A -- CMD_B")]
    commands: Vec<OsString>,
}

/// Splits `CMD_A ... -- CMD_B ...` at the first bare `--`.
pub fn split_commands(words: &[OsString]) -> Result<(EngineCommand, EngineCommand)> {
    let Some(sep) = words.iter().position(|w| w == "--") else {
        bail!("expected two commands, `-- CMD_A ... -- CMD_B ...`; found no second `--`");
    };
    let a = EngineCommand::from_argv(&words[..sep])
        .context("expected a command before the second `--` (CMD_A)")?;
    let b = EngineCommand::from_argv(&words[sep + 1..])
        .context("expected a command after the second `--` (CMD_B)")?;
    Ok((a, b))
}

/// Splits `CMD_A ... -- CMD_B ... -- CMD_C ...` (with `--baseline`) at the first two bare `--`.
fn split_three(words: &[OsString]) -> Result<(EngineCommand, EngineCommand, EngineCommand)> {
    let usage = "--baseline: expected three commands, `-- CMD_A ... -- CMD_B ... -- CMD_C ...`";
    let first = words.iter().position(|w| w == "--").context(usage)?;
    let a = EngineCommand::from_argv(&words[..first])
        .context("expected a command before the second `--` (CMD_A)")?;
    let (b, c) = split_commands(&words[first + 1..]).context(usage)?;
    Ok((a, b, c))
}

/// The JSON document of `--format json`.
#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    schema_version: u32,
    #[serde(flatten)]
    bisection: &'a Bisection,
}

pub fn run(args: Args) -> Result<u8> {
    let (a, b, c) = if args.baseline {
        let (a, b, c) = split_three(&args.commands)?;
        (a, b, Some(c))
    } else {
        let (a, b) = split_commands(&args.commands)?;
        (a, b, None)
    };
    if let Some(spec) = &args.filter {
        NameFilter::parse(spec, "--filter")?;
    }
    let rules = match &args.rules {
        Some(path) => Rules::load_or_preset(path)?,
        None => Rules::default(),
    };
    let diff = DiffOptions {
        rules,
        strict: args.strict,
        use_values: true,
        allow_missing: args.allow_missing,
        max_ratio: args
            .max_ratio
            .unwrap_or(trace_diff::calibrate::DEFAULT_MAX_RATIO),
    };
    let options = BisectOptions {
        out: args.out.clone(),
        window: args.window,
        filter: args.filter.clone(),
    };
    let found = bisect_with(&a, &b, c.as_ref(), &options, &diff).map_err(|e| {
        if let Some(out) = &e.out {
            eprintln!("tensor-trace: bisect runs kept in {}", out.display());
        }
        anyhow::Error::new(e)
    })?;
    match args.format {
        Format::Json => {
            let doc = Document {
                schema: "tensor-trace-bisect",
                schema_version: 1,
                bisection: &found,
            };
            let mut text = serde_json::to_string_pretty(&doc)?;
            text.push('\n');
            print(&text)?;
        }
        Format::Text => {
            let color = args.color != ColorChoice::Never;
            let mut text = String::new();
            if found.nondeterministic.is_none() {
                let options = TextOptions {
                    color,
                    max_rows: args.max_rows,
                    ..TextOptions::default()
                };
                text.push_str(&render::text(&found.report, &options));
                text.push('\n');
            }
            text.push_str(&found.summary());
            let choice = match args.color {
                ColorChoice::Always => anstream::ColorChoice::Always,
                _ => anstream::ColorChoice::Auto,
            };
            let mut out = anstream::AutoStream::new(std::io::stdout().lock(), choice);
            std::io::Write::write_all(&mut out, text.as_bytes())?;
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(found.outcome.exit_code())
}
