//! How a crossval judges its runs, and the one place it calls trace-diff's comparison.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use trace_core::run::Run;
use trace_diff::report::SketchEstimate;
use trace_diff::{Comparison, DiffOptions, Report, Rules};

use crate::task::Precision;

/// How a crossval judges each pair of records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judge {
    /// Calibrated verdicts (the default): the reference also runs in the engine's precision
    /// (side C, the baseline) and a record agrees when the engine's error is at most
    /// `max_ratio` times the baseline's (`trace_diff::Comparison::baseline`). Off: dtype
    /// tolerances (`--no-baseline`).
    pub baseline: bool,
    /// The largest ratio of the engine's error to the baseline's that agrees.
    pub max_ratio: f64,
}

impl Default for Judge {
    fn default() -> Self {
        Judge {
            baseline: true,
            max_ratio: trace_diff::calibrate::DEFAULT_MAX_RATIO,
        }
    }
}

impl Judge {
    /// How pairs are judged, for the progress line.
    pub(crate) fn describe(&self) -> &'static str {
        if self.baseline {
            "calibrated by the baseline (C)"
        } else {
            "dtype tolerances"
        }
    }

    /// Where the baseline's traces go: the reference's directory name with the precision.
    pub(crate) fn baseline_dir(out: &Path, reference: &str, precision: Precision) -> PathBuf {
        out.join(format!("{reference}-{}", precision.name()))
    }

    /// Diffs `a` (the engine) with `b` (the reference in f64), calibrated against `baseline`
    /// when there is one.
    pub(crate) fn diff(
        &self,
        a: &Run,
        b: &Run,
        baseline: Option<&Run>,
        rules: Rules,
    ) -> Result<Report> {
        let options = DiffOptions {
            rules,
            max_ratio: self.max_ratio,
            ..Default::default()
        };
        let mut comparison = Comparison::new(a, b).options(&options);
        if let Some(c) = baseline {
            comparison = comparison.baseline(c);
        }
        comparison.run().context("compare the traces")
    }
}

/// A pair's error measured twice: exactly, from the raw values, and estimated from the value
/// sketches alone.
#[derive(Debug, Clone, PartialEq)]
pub struct SketchCheck {
    /// The record's name on side A.
    pub name: String,
    /// Its occurrence.
    pub occurrence: u64,
    /// Relative L2 error `||a - b|| / ||b||` from the values.
    pub exact: f64,
    /// What a diff without values reports: the estimate and its range.
    pub estimate: SketchEstimate,
}

impl SketchCheck {
    /// Whether the exact error lies in the estimate's reported range (2 standard deviations).
    pub fn in_range(&self) -> bool {
        (self.estimate.rel_l2_low..=self.estimate.rel_l2_high).contains(&self.exact)
    }

    /// How far the estimate is from the exact error, in standard deviations of the squared
    /// estimate (`sqrt(2/k)` relative, docs/FORMAT.md): 0 when exact.
    pub fn sigmas(&self) -> f64 {
        let ratio = self.estimate.rel_l2 / self.exact;
        (ratio * ratio - 1.0).abs() / (2.0 / f64::from(self.estimate.k)).sqrt()
    }
}

/// What a set of [`SketchCheck`]s says about the estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchAccuracy {
    /// Checks (pairs with an estimate and a nonzero exact error).
    pub checks: usize,
    /// Of those, how many hold the exact error in their reported range.
    pub in_range: usize,
    /// The largest `|estimate / exact - 1|`.
    pub max_deviation: f64,
    /// The largest [`SketchCheck::sigmas`].
    pub max_sigmas: f64,
}

impl SketchAccuracy {
    /// The accuracy over `checks` whose exact error is not 0.
    pub fn of(checks: &[SketchCheck]) -> Self {
        let nonzero = || checks.iter().filter(|c| c.exact > 0.0);
        let max = |f: fn(&SketchCheck) -> f64| nonzero().map(f).fold(0.0, f64::max);
        Self {
            checks: nonzero().count(),
            in_range: nonzero().filter(|c| c.in_range()).count(),
            max_deviation: max(|c| (c.estimate.rel_l2 / c.exact - 1.0).abs()),
            max_sigmas: max(SketchCheck::sigmas),
        }
    }
}

/// Every matched pair of `a` and `b` (both saved with values and sketches) whose error a diff
/// without values estimates from the sketches, with the exact error a diff with values
/// measures: the accuracy of the estimate, on real runs. Judged by dtype tolerances under
/// `rules` (the verdicts do not matter here; the pairs are the same in both diffs).
pub fn sketch_checks(a: &Run, b: &Run, rules: Rules) -> Result<Vec<SketchCheck>> {
    let diff = |use_values| {
        let options = DiffOptions {
            rules: rules.clone(),
            use_values,
            ..DiffOptions::default()
        };
        Comparison::new(a, b)
            .options(&options)
            .run()
            .context("compare the traces")
    };
    let (exact, estimated) = (diff(true)?, diff(false)?);
    Ok(exact
        .pairs
        .iter()
        .zip(&estimated.pairs)
        .filter_map(|(with, without)| {
            Some(SketchCheck {
                name: with.name_a.as_deref()?.to_owned(),
                occurrence: with.occurrence,
                exact: with.values.as_ref()?.rel_l2,
                estimate: **without.sketch.as_ref()?,
            })
        })
        .filter(|c| c.exact.is_finite())
        .collect())
}

/// Prints a row of docs/FORMAT.md's table of planted bugs past libtest's capture: the first
/// divergence's exact error, its estimate and range, then the accuracy over every record.
#[cfg(test)]
pub(crate) fn say_sketch_row(label: &str, first: Option<&SketchCheck>, checks: &[SketchCheck]) {
    use std::io::Write as _;

    let at = first.map_or("| (not estimated) | | |".to_owned(), |c| {
        let e = &c.estimate;
        format!(
            "| {}@{} | {:.3e} | {:.3e} [{:.3e}, {:.3e}] |",
            c.name, c.occurrence, c.exact, e.rel_l2, e.rel_l2_low, e.rel_l2_high
        )
    });
    let a = SketchAccuracy::of(checks);
    let sketched = checks
        .iter()
        .filter(|c| c.exact > 0.0 && c.sigmas() > 0.0)
        .count();
    let _ = writeln!(
        std::io::stderr(),
        "| {label} {at} {} ({sketched} not exact) | {} | {:.1}% | {:.2} |",
        a.checks,
        a.in_range,
        100.0 * a.max_deviation,
        a.max_sigmas
    );
}

/// Diffs a multi-rank run `a` (one directory per rank) with the single-process run `b` under
/// `rules` (their `[[shard]]` rules say how to reassemble the ranks), by dtype tolerances.
pub(crate) fn diff_dirs(a: &Path, b: &Path, rules: Rules) -> Result<Report> {
    let options = DiffOptions {
        rules,
        ..DiffOptions::default()
    };
    Comparison::new(a, b)
        .options(&options)
        .run()
        .with_context(|| format!("diff {} with {}", a.display(), b.display()))
}
