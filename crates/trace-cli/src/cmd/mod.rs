//! One module per subcommand: its clap arguments and its `run`.

pub mod bisect;
pub mod check;
pub mod completions;
pub mod diff;
pub mod events;
pub mod export;
pub mod gguf;
pub mod record;
pub mod repeat;
pub mod show;
pub mod stats;
pub mod views;

use std::path::Path;

use anyhow::Result;
use trace_core::config::NameFilter;
use trace_core::record::RecordError;
use trace_core::run::{Run, RunOptions, RunOrder, RunRecord, RunStream};

/// Opens a run, printing read problems as warnings (they never pass silently).
pub fn open_run(dir: &Path, strict: bool) -> Result<Run> {
    // trace-core's errors name the directory or the file already.
    let run = Run::open_with(dir, &RunOptions { strict })?;
    warn_about(dir, run.problems(), run.order());
    Ok(run)
}

/// Opens a run to read a chunk at a time (memory flat in run length); once it is read,
/// [`warn_about`] its problems.
pub fn open_stream(dir: &Path, strict: bool) -> Result<RunStream> {
    Ok(RunStream::open(dir, &RunOptions { strict })?)
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

/// Which records `show` and `export` print.
#[derive(Debug, clap::Args)]
pub struct Select {
    /// Only names matching these comma-separated globs (`!glob` excludes).
    #[arg(long, value_name = "GLOBS")]
    filter: Option<String>,
    /// Only records of this layer (-1 = embeddings/logits).
    #[arg(long, allow_hyphen_values = true)]
    layer: Option<i64>,
    /// Only records of this token position / decode step (`seq`).
    #[arg(long)]
    step: Option<u64>,
}

impl Select {
    /// Whether a record is selected; fails on a bad `--filter`.
    pub fn predicate(&self) -> Result<impl Fn(&RunRecord) -> bool + '_> {
        let filter = match &self.filter {
            Some(spec) => NameFilter::parse(spec, "--filter")?,
            None => NameFilter::all(),
        };
        Ok(move |r: &RunRecord| {
            filter.matches(&r.record.name)
                && self.layer.is_none_or(|l| r.record.layer == Some(l))
                && self.step.is_none_or(|s| r.record.seq == Some(s))
        })
    }
}
