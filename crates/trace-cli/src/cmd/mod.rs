//! One module per subcommand: its clap arguments and its `run`.

pub mod bisect;
pub mod check;
pub mod completions;
pub mod diff;
pub mod events;
pub mod export;
pub mod record;
pub mod repeat;
pub mod show;
pub mod stats;

use std::path::Path;

use anyhow::{Context, Result};
use trace_core::record::RecordError;
use trace_core::run::{Run, RunOptions, RunOrder, RunStream};

/// Opens a run, printing read problems as warnings (they never pass silently).
pub fn open_run(dir: &Path, strict: bool) -> Result<Run> {
    let run = Run::open_with(dir, &RunOptions { strict })
        .with_context(|| format!("reading trace directory {}", dir.display()))?;
    warn_about(dir, run.problems(), run.order());
    Ok(run)
}

/// Opens a run to read a chunk at a time (memory flat in run length); once it is read,
/// [`warn_about`] its problems.
pub fn open_stream(dir: &Path, strict: bool) -> Result<RunStream> {
    RunStream::open(dir, &RunOptions { strict })
        .with_context(|| format!("reading trace directory {}", dir.display()))
}

/// Prints a run's read problems, and an unknown execution order, as warnings.
pub fn warn_about(dir: &Path, problems: &[RecordError], order: RunOrder) {
    for problem in problems {
        tracing::warn!("{problem}");
    }
    if !order.is_execution_order() {
        tracing::warn!(
            "{}: no manifest and no capture indexes (a seed-format directory): records are \
             ordered by seq, then file name; execution order is unknown",
            dir.display()
        );
    }
}
