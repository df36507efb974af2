//! How a crossval judges its runs, and the one place it calls trace-diff's comparison.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use trace_core::run::Run;
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
