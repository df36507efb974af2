//! `tensor-trace record`: run any command with tracing enabled into a fresh directory.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use trace_cli::engine::{exit_code, run_traced, EngineCommand, EngineOutput, TraceSettings};
use trace_core::config::{NameFilter, ValuesAt, ENV_DIR};

use crate::cmd::stats::Summary;

/// Run a command with tracing enabled into DIR, then summarize what it recorded.
///
/// The command's exit code is passed through (128 + N when it was killed by signal N).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  tensor-trace record --out /tmp/rust-traces --values logits -- ./my-engine --prompt test"
)]
pub struct Args {
    /// Trace directory; must be empty or absent unless --append.
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
    /// Record only names matching these comma-separated globs (`!glob` excludes).
    #[arg(long, value_name = "GLOBS")]
    filter: Option<String>,
    /// Also save raw values (.npy) for names matching these globs (`*` for all).
    #[arg(long, value_name = "GLOBS")]
    values: Option<String>,
    /// Also save raw values of single records: `NAME@OCCURRENCE` or `NAME@FIRST-LAST` items
    /// (`TENSOR_TRACE_VALUES_AT`, see docs/FORMAT.md).
    #[arg(long, value_name = "ITEMS")]
    values_at: Option<String>,
    /// Add to a directory that already holds a run.
    #[arg(long)]
    append: bool,
    /// The command to run, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

pub fn run(args: Args) -> Result<u8> {
    // Check the settings here so a typo fails before the (maybe long) run, not inside it.
    if let Some(spec) = &args.filter {
        NameFilter::parse(spec, "--filter")?;
    }
    if let Some(spec) = &args.values {
        NameFilter::parse(spec, "--values")?;
    }
    if let Some(spec) = &args.values_at {
        ValuesAt::parse(spec, "--values-at")?;
    }
    if !args.append && args.out.exists() {
        let mut entries = std::fs::read_dir(&args.out)
            .with_context(|| format!("reading {}", args.out.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty; record into a fresh directory, or pass --append to add to it",
                args.out.display()
            );
        }
    }
    let engine = EngineCommand::from_argv(&args.command).expect("clap requires a command");
    let settings = TraceSettings {
        filter: args.filter.clone(),
        values: args.values.clone(),
        values_at: args.values_at.clone(),
        append: args.append,
        isolate: false,
    };
    tracing::info!(
        "running {:?} with {ENV_DIR}={}",
        args.command,
        args.out.display()
    );
    let status = run_traced(&engine, &args.out, &settings, EngineOutput::Inherit)
        .with_context(|| format!("cannot run {}", engine.program.to_string_lossy()))?;
    let code = exit_code(&status);
    if args.out.is_dir() && std::fs::read_dir(&args.out)?.next().is_some() {
        match Summary::read(&args.out, 0) {
            Ok(summary) => eprintln!("tensor-trace: {}", summary.one_line()),
            Err(e) => eprintln!("tensor-trace: warning: {e:#}"),
        }
    } else {
        eprintln!(
            "tensor-trace: the command wrote no records into {} (does it call the tracer? is the \
             filter too narrow?)",
            args.out.display()
        );
    }
    Ok(code)
}
