//! The one front door: a [`Comparison`] of a run under test with a reference, optionally
//! calibrated by a baseline, read whole or streamed, for every caller (the `trace-diff`
//! binary, `tensor-trace diff` and `bisect`, the crossval).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use trace_core::ranks::RankedRun;
use trace_core::run::Run;

use crate::diff::{diff_sides, read_and_diff, Side};
use crate::error::{Error, Result};
use crate::options::{DiffOptions, StreamOptions, Streaming};
use crate::report::{Pair, Report};
use crate::shard;
use crate::stream::{diff_dirs_pairs_only, diff_dirs_streaming, estimate_records};

/// One side of a comparison: a trace directory (read by the comparison, which detects
/// multi-rank runs and may stream it) or a run already read.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A trace directory, or a directory of `rank-N` run directories.
    Dir(&'a Path),
    /// A run already read (compared in memory, as a single-process run).
    Run(&'a Run),
}

impl<'a> From<&'a Path> for Input<'a> {
    fn from(dir: &'a Path) -> Self {
        Input::Dir(dir)
    }
}

impl<'a> From<&'a PathBuf> for Input<'a> {
    fn from(dir: &'a PathBuf) -> Self {
        Input::Dir(dir)
    }
}

impl<'a> From<&'a Run> for Input<'a> {
    fn from(run: &'a Run) -> Self {
        Input::Run(run)
    }
}

impl Input<'_> {
    fn dir(&self) -> Option<&Path> {
        match self {
            Input::Dir(d) => Some(d),
            Input::Run(_) => None,
        }
    }
}

/// A comparison of the run under test A with the reference B: built, then [`run`](Self::run).
///
/// ```no_run
/// use std::path::Path;
/// use trace_diff::{Comparison, DiffOptions, Streaming};
///
/// let options = DiffOptions::default();
/// let report = Comparison::new(Path::new("engine"), Path::new("reference"))
///     .baseline(Path::new("reference-bf16"))
///     .options(&options)
///     .run()?;
/// println!("{:?}", report.outcome);
/// # Ok::<(), trace_diff::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    a: Input<'a>,
    b: Input<'a>,
    baseline: Option<Input<'a>>,
    options: Cow<'a, DiffOptions>,
    streaming: Streaming,
    bounds: StreamOptions,
}

impl<'a> Comparison<'a> {
    /// Compares `a` (the run under test; its order defines "first") with `b` (the reference),
    /// with [`DiffOptions::default`], in memory.
    pub fn new(a: impl Into<Input<'a>>, b: impl Into<Input<'a>>) -> Self {
        Comparison {
            a: a.into(),
            b: b.into(),
            baseline: None,
            options: Cow::Owned(DiffOptions::default()),
            streaming: Streaming::Never,
            bounds: StreamOptions::default(),
        }
    }

    /// Judges each matched pair against the baseline `c` (the reference run in A's precision)
    /// instead of a tolerance: `ratio = e_A / max(e_C, floor)` against
    /// [`DiffOptions::max_ratio`] (see [`crate::calibrate`]).
    ///
    /// Baseline records are found by B's name and occurrence. Hash-identical pairs stay
    /// identical and element-count mismatches incompatible. A pair the baseline cannot judge (no
    /// record, or an unusable one) is judged by the tolerance and marked so
    /// ([`Pair::calibration`]), counted in [`Report::calibration`] and named in a warning; it
    /// makes the outcome `Incomplete` unless [`DiffOptions::allow_missing`]. A calibrated
    /// comparison is made in memory and takes no multi-rank run.
    pub fn baseline(mut self, c: impl Into<Input<'a>>) -> Self {
        self.baseline = Some(c.into());
        self
    }

    /// How pairs are judged.
    pub fn options(mut self, options: &'a DiffOptions) -> Self {
        self.options = Cow::Borrowed(options);
        self
    }

    /// When to stream ([`Streaming::Never`] by default): a streaming comparison holds a
    /// few chunks of each run, not the runs, and reports what it bounded (`streamed`).
    pub fn streaming(mut self, streaming: Streaming) -> Self {
        self.streaming = streaming;
        self
    }

    /// The bounds of a streaming comparison.
    pub fn stream_bounds(mut self, bounds: StreamOptions) -> Self {
        self.bounds = bounds;
        self
    }

    /// Compares. Findings go into the report; `Err` only when input cannot be read (or, with
    /// [`DiffOptions::strict`], has any problem) or the comparison cannot be made as asked.
    pub fn run(&self) -> Result<Report> {
        self.run_with(&mut |_| Ok(()))
    }

    /// [`run`](Self::run), handing each pair to `on_pair` as it is compared when the
    /// comparison streams (in report order: A's records in A's order, then those only in B);
    /// the streamed report then keeps only the first non-agreeing pairs. A comparison made in
    /// memory does not call `on_pair`: its report holds every pair.
    pub fn run_with(&self, on_pair: &mut dyn FnMut(&Pair) -> Result<()>) -> Result<Report> {
        let options = self.options.as_ref();
        if self.baseline.is_some() {
            let k = options.max_ratio;
            if !(k.is_finite() && k > 0.0) {
                return Err(Error::MaxRatio { value: k });
            }
        }
        if let Some(reason) = self.stream_reason()? {
            let (Input::Dir(a), Input::Dir(b)) = (self.a, self.b) else {
                unreachable!("only directories stream");
            };
            let mut report = diff_dirs_streaming(a, b, options, &self.bounds, on_pair)?;
            if let Some(s) = &mut report.streamed {
                s.reason = reason;
            }
            return Ok(report);
        }
        match self.baseline {
            Some(c) => self.calibrated(c),
            None => self.in_memory(),
        }
    }

    /// Whether the comparison streams: `Some(reason)` when it does (the reason is `None` when
    /// it was asked to always stream), `None` when it is made in memory.
    fn stream_reason(&self) -> Result<Option<Option<String>>> {
        let dirs = self.a.dir().zip(self.b.dir());
        match self.streaming {
            Streaming::Never => Ok(None),
            Streaming::Always => {
                let problem = if self.baseline.is_some() {
                    "a calibrated comparison (with a baseline) needs every pair at once"
                } else if dirs.is_none() {
                    "a run given already read is compared in memory"
                } else {
                    return Ok(Some(None));
                };
                Err(Error::Streaming {
                    problem: problem.to_owned(),
                })
            }
            Streaming::Auto { threshold } => {
                let Some((a, b)) = dirs else {
                    return Ok(None);
                };
                if self.baseline.is_some() || shard::is_multi_rank(a) || shard::is_multi_rank(b) {
                    return Ok(None);
                }
                Ok(auto_reason(a, b, threshold).map(Some))
            }
        }
    }

    fn calibrated(&self, c: Input<'_>) -> Result<Report> {
        let options = self.options.as_ref();
        for dir in [self.a.dir(), self.b.dir(), c.dir()].into_iter().flatten() {
            if shard::is_multi_rank(dir) {
                return Err(Error::BaselineRanks {
                    path: dir.to_owned(),
                });
            }
        }
        match (self.a, self.b, c) {
            (Input::Dir(a), Input::Dir(b), Input::Dir(c)) => read_and_diff(a, b, Some(c), options),
            _ => with_runs([self.a, self.b, c], options, |runs| {
                let [a, b, c] = runs;
                diff_sides(&Side::of(a), &Side::of(b), Some(&Side::of(c)), options)
            }),
        }
    }

    fn in_memory(&self) -> Result<Report> {
        let options = self.options.as_ref();
        let (a, b) = match (self.a, self.b) {
            (Input::Dir(a), Input::Dir(b)) => (a, b),
            _ => {
                return with_runs([self.a, self.b], options, |[a, b]| {
                    diff_sides(&Side::of(a), &Side::of(b), None, options)
                })
            }
        };
        match (RankedRun::discover(a)?, RankedRun::discover(b)?) {
            (None, None) => {
                // Read a few chunks at a time, only the pairs held, unless that reading could
                // differ from a whole run's (`diff_dirs_pairs_only`); then, and on an error,
                // read whole, which says exactly what the in-memory diff always said.
                if let Ok(Some(report)) = diff_dirs_pairs_only(a, b, options) {
                    return Ok(report);
                }
                read_and_diff(a, b, None, options)
            }
            (Some(ra), Some(rb)) => shard::rank_by_rank(&ra, &rb, options),
            (Some(ra), None) => shard::reassembled(&ra, b, true, options),
            (None, Some(rb)) => shard::reassembled(&rb, a, false, options),
        }
    }
}

/// Reads the inputs that are directories and calls `f` with every run.
fn with_runs<const N: usize>(
    inputs: [Input<'_>; N],
    options: &DiffOptions,
    f: impl FnOnce([&Run; N]) -> Result<Report>,
) -> Result<Report> {
    let run_options = trace_core::run::RunOptions {
        strict: options.strict,
    };
    let read: Vec<Option<Run>> = inputs
        .iter()
        .map(|i| match i {
            Input::Dir(d) => Run::open_with(d, &run_options).map(Some),
            Input::Run(_) => Ok(None),
        })
        .collect::<std::result::Result<_, _>>()?;
    let runs: [&Run; N] = std::array::from_fn(|i| match inputs[i] {
        Input::Run(r) => r,
        Input::Dir(_) => read[i].as_ref().expect("read above"),
    });
    f(runs)
}

/// Why `--stream=auto` streams the directories `a` and `b`: the larger run (A on a tie) holds
/// at least `threshold` records; `None` when neither does.
fn auto_reason(a: &Path, b: &Path, threshold: u64) -> Option<String> {
    let (side, e) = [("A", a), ("B", b)]
        .into_iter()
        .filter_map(|(side, dir)| estimate_records(dir).map(|e| (side, e)))
        .reduce(|best, e| {
            if e.1.records > best.1.records {
                e
            } else {
                best
            }
        })?;
    (e.records >= threshold).then(|| {
        format!(
            "--stream=auto: run {side} holds {}{} records ({}), at least --stream-threshold {threshold}",
            if e.exact { "" } else { "about " },
            e.records,
            if e.exact {
                format!("lines of its {}", e.log)
            } else {
                format!("estimated from the size of its {}", e.log)
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    #[test]
    fn runs_already_read_compare_as_their_directories() {
        let (a, b) = (data("seed_a"), data("seed_b"));
        let from_dirs = Comparison::new(&a, &b).run().unwrap();
        let (run_a, run_b) = (Run::open(&a).unwrap(), Run::open(&b).unwrap());
        let from_runs = Comparison::new(&run_a, &run_b).run().unwrap();
        assert_eq!(from_runs, from_dirs);
        // Mixed: one directory, one run.
        assert_eq!(Comparison::new(&a, &run_b).run().unwrap(), from_dirs);
    }

    #[test]
    fn streaming_where_it_cannot_is_an_error() {
        let (a, b) = (data("seed_a"), data("seed_b"));
        let run_b = Run::open(&b).unwrap();
        for comparison in [
            Comparison::new(&a, &b).baseline(&b),
            Comparison::new(&a, &run_b),
        ] {
            let e = comparison.streaming(Streaming::Always).run().unwrap_err();
            assert!(matches!(e, Error::Streaming { .. }), "{e}");
        }
        // `Auto` falls back to the in-memory comparison instead.
        let auto = Streaming::Auto { threshold: 0 };
        let report = Comparison::new(&a, &b)
            .baseline(&b)
            .streaming(auto)
            .run()
            .unwrap();
        assert!(report.streamed.is_none() && report.calibration.is_some());
    }

    #[test]
    fn auto_streams_from_the_threshold_and_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        for side in ["a", "b"] {
            let dir = tmp.path().join(side);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("manifest.jsonl"), "{}\n{}\n{}\n").unwrap();
        }
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        assert_eq!(auto_reason(&a, &b, 4), None);
        assert_eq!(
            auto_reason(&a, &b, 3).as_deref(),
            Some(
                "--stream=auto: run A holds 3 records (lines of its manifest.jsonl), at least \
                 --stream-threshold 3"
            )
        );
    }
}
