//! `tensor-trace bisect`: exact metrics at the first divergence without saving every tensor,
//! and a determinism check on the way.
//!
//! 1. **Pass 1** runs both engines with tracing on, hash, statistics and value sketches only, and
//!    diffs them. If they agree (or nothing diverged), that is the answer.
//! 2. **Pass 2** reruns both with raw values for pass 1's first divergent record and the
//!    `window` (default 1) records before it in A's order, and their partners in B (selected
//!    with `TENSOR_TRACE_VALUES_AT`, by name and occurrence). The diff of pass 2 judges them on
//!    values: exact metrics where they matter.
//! 3. **Determinism for free**: on each side, every record up to the last one that got values
//!    must have the hash it had in pass 1 (they ran the same command). If one does not, the
//!    outcome is `nondeterministic`, naming the first record that changed. Records after it may
//!    differ: they do not bear on the answer.
//! 4. **A bounded search** when pass 2 disagrees with pass 1: statistics and sketches agreeing
//!    is no proof that values agree (the window's first record may already diverge on values),
//!    and a sketch's estimate can flag a record whose values agree. Further values passes then
//!    narrow the interval between a record that agrees on values and one that diverges, a few
//!    records each ([`search`]), until the two are neighbours. A pass after pass 2 runs only if
//!    the values passes together stay within one full-values capture of every side (estimated
//!    from pass 1), and at most [`MAX_VALUE_PASSES`] run; where a limit stops the search, the
//!    interval is the answer.
//!
//! The comparison is a [`Compare`] value: [`trace_diff::DiffOptions`] (rules, strictness,
//! missing records) by default, and the seam where a calibrated `--baseline` comparison plugs in.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use trace_core::config::ValuesAt;
use trace_core::run::{Run, RunRecord};
use trace_diff::{DiffOptions, Outcome, Report};

use crate::engine::{dir_bytes, run_traced, EngineCommand, EngineOutput, TraceSettings};
use search::{Budget, RecordSize, Search};
pub use search::{SearchEnd, MAX_VALUE_PASSES, SEARCH_PROBES};

pub mod search;

/// Default number of records before the first divergence that get values in pass 2.
pub const DEFAULT_WINDOW: usize = 1;

/// How the trace directories of a pass are compared: the run under test `a`, the reference `b`
/// and, when a baseline command was given, the baseline `c` (the reference in A's precision).
pub trait Compare {
    /// Compares `a` with `b`, calibrated by `c` when there is one.
    fn compare(&self, a: &Path, b: &Path, c: Option<&Path>) -> trace_diff::Result<Report>;
}

/// The plain diff, or trace-diff's calibrated verdicts when a baseline ran.
impl Compare for DiffOptions {
    fn compare(&self, a: &Path, b: &Path, c: Option<&Path>) -> trace_diff::Result<Report> {
        let comparison = trace_diff::Comparison::new(a, b).options(self);
        match c {
            Some(c) => comparison.baseline(c).run(),
            None => comparison.run(),
        }
    }
}

/// What to bisect with.
#[derive(Debug, Clone)]
pub struct BisectOptions {
    /// Directory for the runs (must be empty or absent); a fresh temporary directory when `None`,
    /// removed when the runs agree and kept otherwise.
    pub out: Option<PathBuf>,
    /// Records before the first divergence (in A's order) that get values in pass 2 (0 counts
    /// as 1).
    pub window: usize,
    /// `TENSOR_TRACE_FILTER` for every run, when set.
    pub filter: Option<String>,
}

impl Default for BisectOptions {
    fn default() -> Self {
        Self {
            out: None,
            window: DEFAULT_WINDOW,
            filter: None,
        }
    }
}

/// A side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The run under test.
    A,
    /// The reference.
    B,
    /// The baseline: the reference in A's precision (calibrated verdicts).
    C,
}

impl Side {
    /// `a`, `b` or `c`.
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
            Side::C => "c",
        }
    }
}

/// The overall answer, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BisectOutcome {
    /// Pass 1 agreed (exit 0).
    Agree,
    /// A record diverged; pass 2 measured it on values (exit 1).
    Diverged,
    /// Nothing diverged but records lack a partner (exit 1, as `diff`).
    Incomplete,
    /// A command traced a different record when run again (exit 1).
    Nondeterministic,
}

impl BisectOutcome {
    /// The snake_case name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            BisectOutcome::Agree => "agree",
            BisectOutcome::Diverged => "diverged",
            BisectOutcome::Incomplete => "incomplete",
            BisectOutcome::Nondeterministic => "nondeterministic",
        }
    }

    /// 0 agree, 1 otherwise.
    pub fn exit_code(self) -> u8 {
        match self {
            BisectOutcome::Agree => 0,
            _ => crate::EXIT_FINDING,
        }
    }
}

/// One run of one engine.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRun {
    /// The trace directory.
    pub dir: PathBuf,
    /// The engine's stdout and stderr.
    pub log: PathBuf,
    /// `TENSOR_TRACE_VALUES_AT` it ran with (none in pass 1).
    pub values_at: Option<String>,
    /// Bytes written into the trace directory (records, manifest, `.npy`).
    pub bytes: u64,
    /// Wall time of the run, in seconds (measured around the process).
    pub seconds: f64,
}

/// Both runs of one pass.
#[derive(Debug, Clone, Serialize)]
pub struct PassRuns {
    /// 1 for the hash-only pass, 2 and up for values passes (each widening adds one).
    pub pass: u32,
    /// Records of A that got values (0 in pass 1).
    pub window: usize,
    /// Side A's run.
    pub a: EngineRun,
    /// Side B's run.
    pub b: EngineRun,
    /// The baseline's run (with B's values window), when a baseline command was given.
    pub c: Option<EngineRun>,
}

impl PassRuns {
    fn runs(&self) -> impl Iterator<Item = &EngineRun> {
        [&self.a, &self.b].into_iter().chain(self.c.as_ref())
    }

    /// Bytes written by every run of the pass.
    pub fn bytes(&self) -> u64 {
        self.runs().map(|r| r.bytes).sum()
    }

    /// Wall time of every run of the pass, in seconds.
    pub fn seconds(&self) -> f64 {
        self.runs().map(|r| r.seconds).sum()
    }
}

/// A record that changed between two runs of the same command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nondeterminism {
    /// Which engine (for `repeat`, always A).
    pub side: Side,
    /// Record name.
    pub name: String,
    /// Its occurrence.
    pub occurrence: u64,
    /// Position in the first run's capture order.
    pub position: u64,
    /// Its hash in the first run, `None` when only the other run recorded it.
    pub first: Option<String>,
    /// Its hash in the other run, `None` when that run did not record it.
    pub second: Option<String>,
    /// The two runs compared (trace directories).
    pub runs: [PathBuf; 2],
}

impl Nondeterminism {
    /// One line for humans.
    pub fn describe(&self) -> String {
        let change = match (&self.first, &self.second) {
            (Some(a), Some(b)) => format!("hash {} then {}", short(a), short(b)),
            (Some(a), None) => format!("hash {}, then not recorded at all", short(a)),
            (None, Some(b)) => format!("not recorded, then hash {}", short(b)),
            (None, None) => "not recorded".to_owned(),
        };
        format!(
            "{}@{} (record #{}): {change} ({} vs {})",
            self.name,
            self.occurrence,
            self.position,
            self.runs[0].display(),
            self.runs[1].display()
        )
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A record that got values in the last pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowRecord {
    /// Name on side A.
    pub name_a: String,
    /// Name of its partner on side B, if any.
    pub name_b: Option<String>,
    /// Occurrence (the same on both sides: records are paired by it).
    pub occurrence: u64,
}

/// Where the values passes' search ended ([`search`]).
#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    /// Why it ended.
    pub end: SearchEnd,
    /// The last record known to agree on values before `upper` (`None`: none before it was
    /// measured, or `upper` is the first record).
    pub lower: Option<WindowRecord>,
    /// The first divergence on values: confirmed when `end` is `found`; otherwise the first
    /// divergence lies in `(lower, upper]`. `None` when every flagged record agreed on values.
    pub upper: Option<WindowRecord>,
    /// The byte budget: a full-values capture of every side, estimated from pass 1 (its bytes
    /// and 4 bytes per element of every record: a lower bound).
    pub full_capture_bytes: u64,
    /// Bytes the values passes (pass 2 and later) wrote, at most `full_capture_bytes`.
    pub values_bytes: u64,
}

impl SearchReport {
    /// The search's lines of the summary: its answer and the bytes against the budget.
    fn describe(&self) -> String {
        let at = |w: &WindowRecord| format!("{}@{}", w.name_a, w.occurrence);
        let answer = match (self.end, &self.lower, &self.upper) {
            (SearchEnd::Agreed, ..) => "every flagged record agrees on values".to_owned(),
            (SearchEnd::Found, Some(l), Some(u)) => format!(
                "first divergence on values {} (the record before it, {}, agrees)",
                at(u),
                at(l)
            ),
            (SearchEnd::Found, None, Some(u)) => {
                format!("first divergence on values {} (the first record)", at(u))
            }
            (end, lower, upper) => format!(
                "stopped ({}): the first divergence lies after {} and at or before {}",
                match end {
                    SearchEnd::Budget => "byte budget",
                    _ => "pass limit",
                },
                lower.as_ref().map_or("the start".to_owned(), at),
                upper.as_ref().map_or("the end".to_owned(), at)
            ),
        };
        format!(
            "  search: {answer}\n  values passes: {} bytes, {:.1}% of a full-values capture of every side ({} bytes, estimated from pass 1)\n",
            self.values_bytes,
            100.0 * self.values_bytes as f64 / self.full_capture_bytes.max(1) as f64,
            self.full_capture_bytes
        )
    }
}

impl WindowRecord {
    /// The record of a report's pair.
    fn of(pair: &trace_diff::Pair) -> Self {
        Self {
            name_a: pair.name_a.as_deref().unwrap_or_default().to_owned(),
            name_b: pair.name_b.as_deref().map(str::to_owned),
            occurrence: pair.occurrence,
        }
    }

    /// Whether `pair` (of any pass's report) is this record.
    fn is(&self, pair: &trace_diff::Pair) -> bool {
        pair.name_a.as_deref() == Some(self.name_a.as_str()) && pair.occurrence == self.occurrence
    }
}

/// What a bisection found.
#[derive(Debug, Clone, Serialize)]
pub struct Bisection {
    /// The answer.
    pub outcome: BisectOutcome,
    /// Where the runs are.
    pub out: PathBuf,
    /// Whether `out` is still on disk (a temporary directory is removed when the runs agree).
    pub kept: bool,
    /// Every pass, in order.
    pub passes: Vec<PassRuns>,
    /// First divergence found by pass 1 (without values: statistics or sketches), by A's name and occurrence.
    pub pass1_first: Option<WindowRecord>,
    /// The records that got values in the last pass, in A's order (empty after pass 1 only).
    pub window: Vec<WindowRecord>,
    /// The first record that changed between pass 1 and a later pass of the same command.
    pub nondeterministic: Option<Nondeterminism>,
    /// What the values passes found, when they ran to an end (not after nondeterminism).
    pub search: Option<SearchReport>,
    /// The last diff: the last values pass's, or pass 1's when it stopped there or a record
    /// changed between passes (then no values pass was diffed).
    pub report: Report,
}

impl Bisection {
    /// Bytes written into every trace directory of every pass.
    pub fn bytes_written(&self) -> u64 {
        self.passes.iter().map(PassRuns::bytes).sum()
    }

    /// Engine wall time of every pass, in seconds.
    pub fn engine_seconds(&self) -> f64 {
        self.passes.iter().map(PassRuns::seconds).sum()
    }

    /// The bisection in a few lines: passes, window, determinism, bytes, where the runs are.
    pub fn summary(&self) -> String {
        let found = self;
        let mut s = String::from("bisect:\n");
        for p in &found.passes {
            let what = if p.pass == 1 {
                "without values".to_owned()
            } else {
                format!("values for {} records", p.window)
            };
            s.push_str(&format!(
                "  pass {} ({what}): {} bytes written, engines ran {:.2} s\n",
                p.pass,
                p.bytes(),
                p.seconds()
            ));
        }
        if let Some(first) = &found.pass1_first {
            s.push_str(&format!(
                "  pass 1 diverged first at {}@{} (without values)\n",
                first.name_a, first.occurrence
            ));
        }
        if let Some(w) = found.window.first() {
            s.push_str(&format!(
                "  last values pass: {}@{} .. {}@{} ({} records of A and their partners)\n",
                w.name_a,
                w.occurrence,
                found.window.last().map_or("", |l| l.name_a.as_str()),
                found.window.last().map_or(0, |l| l.occurrence),
                found.window.len()
            ));
        }
        if let Some(search) = &found.search {
            s.push_str(&search.describe());
        }
        if found.passes.len() > 1 {
            match &found.nondeterministic {
                Some(n) => s.push_str(&format!(
                    "  nondeterministic on side {}: {}\n",
                    n.side.name(),
                    n.describe()
                )),
                None => s.push_str(
                    "  determinism: every record up to the last with values hashed as in pass 1\n",
                ),
            }
        }
        let share = found.search.as_ref().map_or(String::new(), |search| {
            let full = search.full_capture_bytes.max(1) as f64;
            format!(
                " ({:.1}% of a full-values capture)",
                100.0 * found.bytes_written() as f64 / full
            )
        });
        s.push_str(&format!(
            "  total: {} bytes written in {} passes{share}, engines ran {:.2} s\n",
            found.bytes_written(),
            found.passes.len(),
            found.engine_seconds()
        ));
        if found.kept {
            s.push_str(&format!("  runs kept in {}\n", found.out.display()));
        }
        let code = found.outcome.exit_code();
        let word = match found.outcome {
            BisectOutcome::Agree => "AGREE",
            BisectOutcome::Diverged => "DIVERGED",
            BisectOutcome::Incomplete => "INCOMPLETE",
            BisectOutcome::Nondeterministic => "NONDETERMINISTIC",
        };
        s.push_str(&format!("bisect result: {word} (exit {code})\n"));
        s
    }
}

/// Why a bisection could not finish. The runs made so far stay in `out`.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct BisectError {
    /// Where the runs made so far are (kept), when the directory was made.
    pub out: Option<PathBuf>,
    /// What went wrong.
    #[source]
    pub kind: BisectErrorKind,
}

/// What went wrong in a bisection or repetition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BisectErrorKind {
    /// `--out` holds something already.
    #[error("{0} is not empty; bisect into a fresh directory")]
    OutNotEmpty(PathBuf),
    /// A file operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `repeat` needs two runs to compare.
    #[error("repeat needs at least 2 runs, got {0}")]
    TooFewRuns(u32),
    /// An engine could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An engine exited unsuccessfully.
    #[error("side {} ({command}) exited with {status} in pass {pass}; its output is in {}", side.name(), log.display())]
    EngineFailed {
        /// Which engine.
        side: Side,
        /// The command line.
        command: String,
        /// The pass.
        pass: u32,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stdout and stderr.
        log: PathBuf,
    },
    /// A run could not be read or compared.
    #[error(transparent)]
    Diff(#[from] trace_diff::Error),
    /// A run directory could not be read back.
    #[error(transparent)]
    Run(#[from] trace_core::Error),
}

/// `Result` of this module.
pub type Result<T, E = BisectError> = std::result::Result<T, E>;

/// Bisects `a` (under test) against `b` (reference) with the plain diff of `diff`.
///
/// ```no_run
/// use std::process::Command;
/// use trace_cli::bisect::{bisect, BisectOptions};
/// use trace_cli::engine::EngineCommand;
/// use trace_diff::DiffOptions;
///
/// let mut engine = Command::new("target/debug/my-engine");
/// engine.arg("--prompt").arg("test");
/// let reference = Command::new("python3");
/// let found = bisect(
///     &EngineCommand::from_command(&engine),
///     &EngineCommand::from_command(&reference),
///     &BisectOptions::default(),
///     &DiffOptions::default(),
/// )?;
/// println!("{}: {:?}", found.outcome.name(), found.report.first_divergence);
/// # Ok::<(), trace_cli::bisect::BisectError>(())
/// ```
pub fn bisect(
    a: &EngineCommand,
    b: &EngineCommand,
    options: &BisectOptions,
    diff: &DiffOptions,
) -> Result<Bisection> {
    bisect_with(a, b, None, options, diff)
}

/// Bisects with any [`Compare`], and with a baseline command `c` (the reference in A's
/// precision) for calibrated verdicts: `c` runs in every pass beside `b`, with B's names in its
/// values window, and the comparison gets its directory.
pub fn bisect_with(
    a: &EngineCommand,
    b: &EngineCommand,
    c: Option<&EngineCommand>,
    options: &BisectOptions,
    compare: &dyn Compare,
) -> Result<Bisection> {
    let (out, temporary) = prepare_out(options.out.as_deref(), "tensor-trace-bisect-")?;
    let attach = |kind: BisectErrorKind| BisectError {
        out: Some(out.clone()),
        kind,
    };
    let mut found = Bisector {
        a,
        b,
        c,
        options,
        compare,
        out: &out,
    }
    .run()
    .map_err(attach)?;
    if temporary && found.outcome == BisectOutcome::Agree {
        fs::remove_dir_all(&out).map_err(|e| {
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

/// Creates the output directory: `out` (empty or absent) or a fresh temporary directory (kept
/// on disk; the caller removes it when nothing needs looking at). Returns it and whether it is
/// temporary.
pub(crate) fn prepare_out(out: Option<&Path>, prefix: &str) -> Result<(PathBuf, bool)> {
    let io = |op, path: &Path, source| BisectError {
        out: None,
        kind: BisectErrorKind::Io {
            op,
            path: path.to_path_buf(),
            source,
        },
    };
    match out {
        Some(dir) => {
            if dir.exists() {
                let mut entries = fs::read_dir(dir).map_err(|e| io("list", dir, e))?;
                if entries.next().is_some() {
                    return Err(BisectError {
                        out: None,
                        kind: BisectErrorKind::OutNotEmpty(dir.to_path_buf()),
                    });
                }
            }
            fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
            Ok((dir.to_path_buf(), false))
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .map_err(|e| io("create", &std::env::temp_dir(), e))?;
            Ok((tmp.keep(), true))
        }
    }
}

/// Runs `engine` once into `out/pass{pass}/{side}` (log beside it) and checks it succeeded.
pub(crate) fn run_once(
    engine: &EngineCommand,
    side: Side,
    pass: u32,
    out: &Path,
    settings: &TraceSettings,
) -> Result<EngineRun, BisectErrorKind> {
    let pass_dir = out.join(format!("pass{pass}"));
    fs::create_dir_all(&pass_dir).map_err(|e| BisectErrorKind::Io {
        op: "create",
        path: pass_dir.clone(),
        source: e,
    })?;
    let dir = pass_dir.join(side.name());
    let log = pass_dir.join(format!("{}.log", side.name()));
    tracing::info!("pass {pass}, side {}: {}", side.name(), engine.display());
    let start = Instant::now();
    let status = run_traced(engine, &dir, settings, EngineOutput::File(&log)).map_err(|e| {
        BisectErrorKind::Spawn {
            command: engine.display(),
            source: e,
        }
    })?;
    let seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(BisectErrorKind::EngineFailed {
            side,
            command: engine.display(),
            pass,
            status,
            log,
        });
    }
    let bytes = if dir.is_dir() {
        dir_bytes(&dir).map_err(|e| BisectErrorKind::Io {
            op: "measure",
            path: dir.clone(),
            source: e,
        })?
    } else {
        0
    };
    Ok(EngineRun {
        dir,
        log,
        values_at: settings.values_at.clone(),
        bytes,
        seconds,
    })
}

/// The first record of `first` (in its order, up to and including position `last`) whose hash
/// `second` does not have for the same `(name, occurrence)`.
pub(crate) fn first_change(
    side: Side,
    first: &Run,
    second: &Run,
    last: usize,
) -> Option<Nondeterminism> {
    let hashes: HashMap<(&str, u64), &str> = second
        .records()
        .iter()
        .map(|r| (r.key(), r.record.blake3.as_str()))
        .collect();
    first
        .records()
        .iter()
        .take(last.saturating_add(1))
        .enumerate()
        .find_map(|(position, r)| {
            let other = hashes.get(&r.key()).copied();
            (other != Some(r.record.blake3.as_str())).then(|| Nondeterminism {
                side,
                name: r.record.name.clone(),
                occurrence: r.occurrence,
                position: position as u64,
                first: Some(r.record.blake3.clone()),
                second: other.map(str::to_owned),
                runs: [first.dir().to_path_buf(), second.dir().to_path_buf()],
            })
        })
}

struct Bisector<'a> {
    a: &'a EngineCommand,
    b: &'a EngineCommand,
    c: Option<&'a EngineCommand>,
    options: &'a BisectOptions,
    compare: &'a dyn Compare,
    out: &'a Path,
}

impl Bisector<'_> {
    fn settings(&self, values_at: Option<String>) -> TraceSettings {
        TraceSettings {
            filter: self.options.filter.clone(),
            values: None,
            values_at,
            append: false,
            isolate: true,
        }
    }

    fn pass(
        &self,
        pass: u32,
        window: usize,
        at: [Option<String>; 2],
    ) -> Result<PassRuns, BisectErrorKind> {
        let [at_a, at_b] = at;
        let a = run_once(self.a, Side::A, pass, self.out, &self.settings(at_a))?;
        let b = run_once(
            self.b,
            Side::B,
            pass,
            self.out,
            &self.settings(at_b.clone()),
        )?;
        let c = self
            .c
            .map(|c| run_once(c, Side::C, pass, self.out, &self.settings(at_b)))
            .transpose()?;
        Ok(PassRuns {
            pass,
            window,
            a,
            b,
            c,
        })
    }

    fn compare(&self, runs: &PassRuns) -> Result<Report, BisectErrorKind> {
        let c = runs.c.as_ref().map(|c| c.dir.as_path());
        Ok(self.compare.compare(&runs.a.dir, &runs.b.dir, c)?)
    }

    fn run(&self) -> Result<Bisection, BisectErrorKind> {
        let pass1 = self.pass(1, 0, [None, None])?;
        let report1 = self.compare(&pass1)?;
        let mut found = Bisection {
            outcome: outcome(&report1),
            out: self.out.to_path_buf(),
            kept: true,
            passes: vec![pass1],
            pass1_first: None,
            window: Vec::new(),
            nondeterministic: None,
            search: None,
            report: report1,
        };
        let Some(first) = found.report.first_divergence.clone() else {
            return Ok(found);
        };
        let pairs = &found.report.pairs;
        let at = first.pair as usize;
        found.pass1_first = Some(WindowRecord::of(&pairs[at]));
        // The search runs over the matched records in A's order (pairs before the first
        // divergence are A's records in A's order; B-only pairs come after all of A's).
        let matched: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].name_a.is_some() && pairs[i].name_b.is_some())
            .collect();
        let Some(start) = matched.iter().position(|&i| i == at) else {
            return Ok(found);
        };
        let sizes: Vec<RecordSize> = pairs.iter().map(RecordSize::of).collect();
        let pass1_bytes = found.passes[0].runs().map(|r| r.bytes).collect();
        let space = Matched {
            records: matched
                .iter()
                .map(|&i| WindowRecord::of(&pairs[i]))
                .collect(),
            sizes: matched.iter().map(|&i| sizes[i]).collect(),
            budget: Budget::new(pass1_bytes, &sizes),
        };
        self.values_passes(&mut found, &space, Search::new(start, self.options.window))?;
        Ok(found)
    }

    /// Pass 2 and the bounded search after it ([`search`]), over `space` from `search`: each
    /// pass measures the search's probes, checks determinism, diffs, and tells the search.
    fn values_passes(
        &self,
        found: &mut Bisection,
        space: &Matched,
        mut search: Search,
    ) -> Result<(), BisectErrorKind> {
        let runs1 = open_runs(&found.passes[0])?;
        let budget = &space.budget;
        let mut spent = 0;
        let end = loop {
            let probes = search.probes();
            let window: Vec<WindowRecord> =
                probes.iter().map(|&q| space.records[q].clone()).collect();
            let sizes: Vec<RecordSize> = probes.iter().map(|&q| space.sizes[q]).collect();
            let cost = budget.pass_cost(&sizes);
            if found.passes.len() as u32 > MAX_VALUE_PASSES {
                break SearchEnd::PassLimit;
            }
            // Pass 2 always runs: it is the measurement bisect exists for, and its values are
            // a few records' (on tiny tensors the record files alone can outweigh every value).
            if found.passes.len() > 1 && spent + cost > budget.full_capture {
                tracing::info!(
                    "the next values pass could write {cost} bytes; {spent} of {} spent",
                    budget.full_capture
                );
                break SearchEnd::Budget;
            }
            let runs = self.values_pass(found.passes.len() as u32 + 1, &window)?;
            spent += runs.bytes();
            found.window = window;
            let now = open_runs(&runs)?;
            found.passes.push(runs);
            if let Some(change) = first_change_up_to(&runs1, &now, &found.window) {
                found.outcome = BisectOutcome::Nondeterministic;
                found.nondeterministic = Some(change);
                return Ok(());
            }
            found.report = self.compare(found.passes.last().expect("pushed above"))?;
            found.outcome = outcome(&found.report);
            let report = &found.report;
            let diverged = |q: usize| {
                let w = &space.records[q];
                report
                    .pairs
                    .iter()
                    .any(|p| p.verdict.is_divergence() && w.is(p))
            };
            let next = report
                .first_divergence_pair()
                .and_then(|p| space.records.iter().position(|w| w.is(p)));
            if let Some(end) = search.step(&probes, diverged, next) {
                break end;
            }
            tracing::info!(
                "values passes continue between records {:?} and {}",
                search.lo,
                search.hi
            );
        };
        found.search = Some(SearchReport {
            end,
            lower: search.lo.map(|q| space.records[q].clone()),
            upper: (end != SearchEnd::Agreed).then(|| space.records[search.hi].clone()),
            full_capture_bytes: budget.full_capture,
            values_bytes: spent,
        });
        Ok(())
    }

    /// A values pass: every side again, with values for `window` (A's names on A, B's on B and
    /// the baseline).
    fn values_pass(&self, pass: u32, window: &[WindowRecord]) -> Result<PassRuns, BisectErrorKind> {
        let at_a = ValuesAt::from_records(window.iter().map(|w| (w.name_a.as_str(), w.occurrence)));
        let at_b = ValuesAt::from_records(
            window
                .iter()
                .filter_map(|w| w.name_b.as_deref().map(|n| (n, w.occurrence))),
        );
        let spec = |at: &ValuesAt| (!at.is_empty()).then(|| at.spec().to_owned());
        self.pass(pass, window.len(), [spec(&at_a), spec(&at_b)])
    }
}

/// The first record of pass 1 that changed in a later pass `now`, on any side, among each
/// side's records up to the last one of `window` (in that side's pass-1 order: A by A's names,
/// B and the baseline by B's).
fn first_change_up_to(
    runs1: &[(Side, Run)],
    now: &[(Side, Run)],
    window: &[WindowRecord],
) -> Option<Nondeterminism> {
    runs1
        .iter()
        .zip(now)
        .find_map(|((side, before), (_, after))| {
            let last = window
                .iter()
                .filter_map(|w| match side {
                    Side::A => position_of(before, &w.name_a, w.occurrence),
                    _ => w
                        .name_b
                        .as_deref()
                        .and_then(|n| position_of(before, n, w.occurrence)),
                })
                .max()?;
            first_change(*side, before, after, last)
        })
}

fn outcome(report: &Report) -> BisectOutcome {
    match report.outcome {
        Outcome::Agree => BisectOutcome::Agree,
        Outcome::Incomplete => BisectOutcome::Incomplete,
        Outcome::Diverged => BisectOutcome::Diverged,
    }
}

/// What the values passes search over: pass 1's matched records in A's order, what saving
/// each one's values writes, and the byte budget.
struct Matched {
    records: Vec<WindowRecord>,
    sizes: Vec<RecordSize>,
    budget: Budget,
}

/// The runs of a pass, read back, with their sides (A, B, then C when a baseline ran).
fn open_runs(pass: &PassRuns) -> Result<Vec<(Side, Run)>, BisectErrorKind> {
    let mut runs = vec![
        (Side::A, Run::open(&pass.a.dir)?),
        (Side::B, Run::open(&pass.b.dir)?),
    ];
    if let Some(c) = &pass.c {
        runs.push((Side::C, Run::open(&c.dir)?));
    }
    Ok(runs)
}

/// Position of `(name, occurrence)` in `run`'s order.
fn position_of(run: &Run, name: &str, occurrence: u64) -> Option<usize> {
    run.records()
        .iter()
        .position(|r: &RunRecord| r.key() == (name, occurrence))
}

#[cfg(test)]
mod tests {
    use trace_core::{Context, TensorView, Tracer};

    use super::*;

    /// Writes a run of `(name, value)` records into `dir` and reads it back.
    fn run_of(dir: &Path, records: &[(&str, f32)]) -> Run {
        let tracer = Tracer::builder().dir(dir).build().unwrap();
        for (name, v) in records {
            let data = [*v];
            let view = TensorView::new(&[1], &data[..]).unwrap();
            tracer.record(name, &Context::default(), view).unwrap();
        }
        Run::open(dir).unwrap()
    }

    #[test]
    fn first_change_is_keyed_by_name_and_occurrence_up_to_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let first = run_of(
            &tmp.path().join("1"),
            &[("x", 1.0), ("y", 2.0), ("x", 3.0), ("z", 4.0)],
        );
        // The same records in another order: not a change.
        let reordered = run_of(
            &tmp.path().join("2"),
            &[("y", 2.0), ("x", 1.0), ("x", 3.0), ("z", 4.0)],
        );
        assert_eq!(first_change(Side::A, &first, &reordered, usize::MAX), None);
        // x's second occurrence changed; z is missing. Up to position 1 nothing changed.
        let changed = run_of(&tmp.path().join("3"), &[("x", 1.0), ("y", 2.0), ("x", 9.0)]);
        assert_eq!(first_change(Side::B, &first, &changed, 1), None);
        let n = first_change(Side::B, &first, &changed, usize::MAX).unwrap();
        assert_eq!(
            (n.side, n.name.as_str(), n.occurrence, n.position),
            (Side::B, "x", 1, 2)
        );
        assert!(n.first.is_some() && n.second.is_some() && n.first != n.second);
        let missing = run_of(&tmp.path().join("4"), &[("x", 1.0), ("y", 2.0), ("x", 3.0)]);
        let n = first_change(Side::A, &missing, &first, usize::MAX);
        assert_eq!(
            n, None,
            "every record of the shorter run is in the longer one"
        );
        let n = first_change(Side::A, &first, &missing, usize::MAX).unwrap();
        assert_eq!(
            (n.name.as_str(), n.position, n.second.as_deref()),
            ("z", 3, None)
        );
        assert!(
            n.describe().contains("then not recorded at all"),
            "{}",
            n.describe()
        );
    }
}
