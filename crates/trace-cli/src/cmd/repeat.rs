//! `tensor-trace repeat`: the front end of [`trace_cli::repeat`].

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use trace_cli::engine::EngineCommand;
use trace_cli::repeat::{repeat, RepeatOptions};
use trace_core::config::NameFilter;

use crate::output::print;

/// Run one engine several times and name its first nondeterministic record.
///
/// Every run records hashes and statistics only; each later run is compared with the first by
/// (name, occurrence), along the first run's capture order.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  tensor-trace repeat -n 5 -- ./my-engine --prompt test\n\n\
                  Exit codes: 0 every run recorded the same hashes, 1 a record changed, 2 error."
)]
pub struct Args {
    /// How many runs (at least 2).
    #[arg(short = 'n', long = "runs", default_value_t = 3, value_name = "K")]
    runs: u32,
    /// Directory for the runs (must be empty or absent); default: a temporary directory,
    /// removed when every run agrees, kept (and printed) otherwise.
    #[arg(long, short, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Record only names matching these comma-separated globs.
    #[arg(long, value_name = "GLOBS")]
    filter: Option<String>,
    /// The command to run, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn run(args: Args) -> Result<u8> {
    let engine =
        EngineCommand::from_argv(&args.command).context("expected a command after `--`")?;
    if let Some(spec) = &args.filter {
        NameFilter::parse(spec, "--filter")?;
    }
    let options = RepeatOptions {
        runs: args.runs,
        out: args.out.clone(),
        filter: args.filter.clone(),
    };
    let found = repeat(&engine, &options).map_err(|e| {
        if let Some(out) = &e.out {
            eprintln!("tensor-trace: repeat runs kept in {}", out.display());
        }
        anyhow::Error::new(e)
    })?;
    let mut s = format!(
        "{} runs of {}: {} records in run 1\n",
        found.runs.len(),
        engine.display(),
        found.records
    );
    match (&found.nondeterministic, found.differing_run) {
        (Some(n), Some(k)) => s.push_str(&format!(
            "first nondeterministic record (run {k} against run 1): {}\n",
            n.describe()
        )),
        _ => s.push_str("every run recorded the same hashes\n"),
    }
    if found.kept {
        s.push_str(&format!("runs kept in {}\n", found.out.display()));
    }
    let code = found.exit_code();
    let word = if code == 0 {
        "DETERMINISTIC"
    } else {
        "NONDETERMINISTIC"
    };
    s.push_str(&format!("result: {word} (exit {code})\n"));
    print(&s)?;
    Ok(code)
}
