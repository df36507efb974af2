//! `tensor-trace repeat`: run one engine K times (hash and statistics only) and name the first
//! record that is not the same every time: thread-count-dependent reductions, GPU atomics,
//! uninitialized memory.
//!
//! Run 1 is the reference. Every later run is compared with it by `(name, occurrence)`, along
//! run 1's capture order; the answer is the earliest record (in that order) whose hash differs
//! in some run or is missing there. Records only a later run has are reported too, after
//! those.

use std::path::{Path, PathBuf};

use serde::Serialize;
use trace_core::run::Run;

use crate::bisect::{
    first_change, prepare_out, run_once, BisectError, BisectErrorKind, EngineRun, Nondeterminism,
    Result, Side,
};
use crate::engine::{EngineCommand, TraceSettings};

/// What to repeat with.
#[derive(Debug, Clone)]
pub struct RepeatOptions {
    /// How many runs (at least 2).
    pub runs: u32,
    /// Directory for the runs (empty or absent); a temporary directory when `None`, removed
    /// when every run agrees.
    pub out: Option<PathBuf>,
    /// `TENSOR_TRACE_FILTER` for every run, when set.
    pub filter: Option<String>,
}

/// What the runs showed.
#[derive(Debug, Clone, Serialize)]
pub struct Repetition {
    /// Where the runs are.
    pub out: PathBuf,
    /// Whether `out` is still on disk.
    pub kept: bool,
    /// Every run, in order (`out/pass{k}/a`).
    pub runs: Vec<EngineRun>,
    /// Records in the first run.
    pub records: u64,
    /// The first record that changed, if any (`None`: deterministic over these runs).
    pub nondeterministic: Option<Nondeterminism>,
    /// Which run (1-based) showed it.
    pub differing_run: Option<u32>,
}

impl Repetition {
    /// 0 when every run recorded the same hashes, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.nondeterministic.is_some() {
            crate::EXIT_FINDING
        } else {
            0
        }
    }
}

/// Runs `engine` `options.runs` times and compares every run with the first.
pub fn repeat(engine: &EngineCommand, options: &RepeatOptions) -> Result<Repetition> {
    if options.runs < 2 {
        return Err(BisectError {
            out: None,
            kind: BisectErrorKind::TooFewRuns(options.runs),
        });
    }
    let (out, temporary) = prepare_out(options.out.as_deref(), "tensor-trace-repeat-")?;
    let attach = |kind: BisectErrorKind| BisectError {
        out: Some(out.clone()),
        kind,
    };
    let mut found = run_all(engine, options, &out).map_err(attach)?;
    if temporary && found.nondeterministic.is_none() {
        std::fs::remove_dir_all(&out).map_err(|e| {
            attach(BisectErrorKind::Io {
                op: "remove",
                path: out.clone(),
                source: e,
            })
        })?;
        found.kept = false;
    }
    Ok(found)
}

fn run_all(
    engine: &EngineCommand,
    options: &RepeatOptions,
    out: &Path,
) -> Result<Repetition, BisectErrorKind> {
    let settings = TraceSettings {
        filter: options.filter.clone(),
        isolate: true,
        ..TraceSettings::default()
    };
    let mut runs = Vec::new();
    let mut first_run: Option<Run> = None;
    // The earliest change (by position in run 1) over all runs, with the run that showed it.
    let mut earliest: Option<(Nondeterminism, u32)> = None;
    for k in 1..=options.runs {
        let run = run_once(engine, Side::A, k, out, &settings)?;
        let read = Run::open(&run.dir)?;
        runs.push(run);
        let Some(first) = &first_run else {
            first_run = Some(read);
            continue;
        };
        let change = first_change(Side::A, first, &read, usize::MAX)
            .or_else(|| first_change(Side::A, &read, first, usize::MAX).map(only_later(first)));
        if let Some(change) = change {
            let better = earliest
                .as_ref()
                .is_none_or(|(e, _)| change.position < e.position);
            if better {
                earliest = Some((change, k));
            }
        }
    }
    let records = first_run.as_ref().map_or(0, |r| r.len() as u64);
    let (nondeterministic, differing_run) = match earliest {
        Some((n, k)) => (Some(n), Some(k)),
        None => (None, None),
    };
    Ok(Repetition {
        out: out.to_path_buf(),
        kept: true,
        runs,
        records,
        nondeterministic,
        differing_run,
    })
}

/// A record only a later run has: reported after every record of run 1, naming run 1 first.
fn only_later(first: &Run) -> impl Fn(Nondeterminism) -> Nondeterminism + '_ {
    move |n| Nondeterminism {
        position: first.len() as u64 + n.position,
        first: None,
        second: n.first,
        runs: [n.runs[1].clone(), n.runs[0].clone()],
        ..n
    }
}
