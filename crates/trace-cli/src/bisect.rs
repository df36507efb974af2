//! `tensor-trace bisect`: exact metrics at the first divergence without saving every tensor,
//! and a determinism check on the way.
//!
//! 1. **Pass 1** runs both engines with tracing on, hash and statistics only, and diffs them.
//!    If they agree (or nothing diverged), that is the answer.
//! 2. **Pass 2** reruns both with raw values for a *window* only: the first divergent record,
//!    the `window` records before it in A's order and their partners in B (selected with
//!    `TENSOR_TRACE_VALUES_AT`, by name and occurrence). The diff of pass 2 judges the window on
//!    values: exact metrics where they matter.
//! 3. **Determinism for free**: on each side, every record up to the side's window end must have
//!    the hash it had in pass 1 (they ran the same command). If one does not, the outcome is
//!    `nondeterministic`, naming the first record that changed. Records after the window may
//!    differ: they do not bear on the answer.
//! 4. **Widening**: statistics agreeing is a necessary condition of values agreeing, not a
//!    sufficient one, so the values of pass 2 may show the window's *earliest* record diverging
//!    already. Then the first divergence may lie before the window: the window is doubled
//!    towards the start of the run and pass 2 repeated, until its earliest record agrees on
//!    values or it starts at the first record. Records before the final window are judged on
//!    statistics, as in pass 1.
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
use trace_diff::{DiffOptions, Evidence, Outcome, Report};

use crate::engine::{dir_bytes, run_traced, EngineCommand, EngineOutput, TraceSettings};

/// Default number of records before the first divergence that get values in pass 2.
pub const DEFAULT_WINDOW: usize = 4;

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
    /// Records before the first divergence (in A's order) that get values in pass 2.
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
    /// First divergence found by pass 1 (on statistics), by A's name and occurrence.
    pub pass1_first: Option<WindowRecord>,
    /// The records that got values in the last pass, in A's order (empty after pass 1 only).
    pub window: Vec<WindowRecord>,
    /// The first record that changed between pass 1 and a later pass of the same command.
    pub nondeterministic: Option<Nondeterminism>,
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
                "hash and stats".to_owned()
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
                "  pass 1 diverged first at {}@{} (on statistics)\n",
                first.name_a, first.occurrence
            ));
        }
        if let Some(w) = found.window.first() {
            s.push_str(&format!(
                "  values window: {}@{} .. {}@{} ({} records of A and their partners)\n",
                w.name_a,
                w.occurrence,
                found.window.last().map_or("", |l| l.name_a.as_str()),
                found.window.last().map_or(0, |l| l.occurrence),
                found.window.len()
            ));
        }
        if found.passes.len() > 1 {
            match &found.nondeterministic {
                Some(n) => s.push_str(&format!(
                    "  nondeterministic on side {}: {}\n",
                    n.side.name(),
                    n.describe()
                )),
                None => {
                    s.push_str("  determinism: every record up to the window hashed as in pass 1\n")
                }
            }
        }
        s.push_str(&format!(
            "  total: {} bytes written in {} passes, engines ran {:.2} s\n",
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
            outcome: match report1.outcome {
                Outcome::Agree => BisectOutcome::Agree,
                Outcome::Incomplete => BisectOutcome::Incomplete,
                Outcome::Diverged => BisectOutcome::Diverged,
            },
            out: self.out.to_path_buf(),
            kept: true,
            passes: vec![pass1],
            pass1_first: None,
            window: Vec::new(),
            nondeterministic: None,
            report: report1,
        };
        let Some(first) = found.report.first_divergence.clone() else {
            return Ok(found);
        };
        let end = first.pair as usize;
        let pairs = found.report.pairs.clone();
        let record = |i: usize| WindowRecord {
            name_a: pairs[i].name_a.as_deref().unwrap_or_default().to_owned(),
            name_b: pairs[i].name_b.as_deref().map(str::to_owned),
            occurrence: pairs[i].occurrence,
        };
        found.pass1_first = Some(record(end));

        // Where the first divergent record sits in each side's own order (pass 1): the
        // determinism check covers every record up to there.
        // The baseline (C) has B's names: it is checked up to B's divergent record.
        let runs1 = open_runs(&found.passes[0])?;
        let divergent = record(end);
        let in_b = |run: &Run| {
            divergent
                .name_b
                .as_deref()
                .and_then(|n| position_of(run, n, divergent.occurrence))
        };
        let last: Vec<Option<usize>> = runs1
            .iter()
            .map(|(side, run)| match side {
                Side::A => position_of(run, &divergent.name_a, divergent.occurrence),
                _ => in_b(run),
            })
            .collect();

        let mut start = end.saturating_sub(self.options.window);
        loop {
            // Pairs before the first divergence are A's records in A's order (B-only pairs come
            // after all of A's), so the window is a slice of `pairs`.
            let window: Vec<WindowRecord> = (start..=end)
                .filter(|&i| pairs[i].name_a.is_some())
                .map(record)
                .collect();
            let at_a =
                ValuesAt::from_records(window.iter().map(|w| (w.name_a.as_str(), w.occurrence)));
            let at_b = ValuesAt::from_records(
                window
                    .iter()
                    .filter_map(|w| w.name_b.as_deref().map(|n| (n, w.occurrence))),
            );
            let pass_no = found.passes.len() as u32 + 1;
            let spec = |at: &ValuesAt| (!at.is_empty()).then(|| at.spec().to_owned());
            let runs = self.pass(pass_no, window.len(), [spec(&at_a), spec(&at_b)])?;
            found.window = window;

            let now = open_runs(&runs)?;
            found.passes.push(runs);
            for (i, ((side, before), (_, after))) in runs1.iter().zip(&now).enumerate() {
                let Some(last) = last[i] else { continue };
                if let Some(change) = first_change(*side, before, after, last) {
                    found.outcome = BisectOutcome::Nondeterministic;
                    found.nondeterministic = Some(change);
                    return Ok(found);
                }
            }

            let latest = found.passes.last().expect("pushed above");
            found.report = self.compare(latest)?;
            found.outcome = match found.report.outcome {
                Outcome::Agree => BisectOutcome::Agree,
                Outcome::Incomplete => BisectOutcome::Incomplete,
                Outcome::Diverged => BisectOutcome::Diverged,
            };
            // The earliest matched record of the window diverging on values means the first
            // divergence may lie further back: widen towards the start of the run.
            let earliest = found
                .window
                .iter()
                .find(|w| w.name_b.is_some())
                .and_then(|w| {
                    found.report.pairs.iter().find(|p| {
                        p.name_a.as_deref() == Some(w.name_a.as_str())
                            && p.occurrence == w.occurrence
                    })
                });
            let widen = start > 0
                && earliest.is_some_and(|pair| {
                    pair.verdict.is_divergence() && pair.evidence == Evidence::Values
                });
            if !widen {
                return Ok(found);
            }
            let width = end - start + 1;
            start = start.saturating_sub(width);
            tracing::info!(
                "the window's earliest record diverges on values; widening to {start}..={end}"
            );
        }
    }
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
