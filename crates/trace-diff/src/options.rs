//! How to compare: the options of a [`crate::Comparison`].

use crate::calibrate::DEFAULT_MAX_RATIO;
use crate::rules::Rules;

/// How to judge pairs.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Name mapping, ignore lists and tolerances.
    pub rules: Rules,
    /// Make every tolerated problem (malformed record, truncated manifest, unusable `.npy`, ...)
    /// an error.
    pub strict: bool,
    /// Read `.npy` values when both sides have them (otherwise judge on stats only).
    pub use_values: bool,
    /// Accept records without a partner (and, in calibrated diffs, pairs the baseline cannot
    /// judge): the outcome is `Agree` instead of `Incomplete` when every matched record agrees.
    pub allow_missing: bool,
    /// Calibrated diffs only (a [`crate::Comparison::baseline`]): the largest ratio
    /// `e_A / max(e_C, floor)` that is an agreement; [`DEFAULT_MAX_RATIO`] by default.
    pub max_ratio: f64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            rules: Rules::default(),
            strict: false,
            use_values: true,
            allow_missing: false,
            max_ratio: DEFAULT_MAX_RATIO,
        }
    }
}

/// When a comparison streams (see [`crate::Comparison::streaming`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Streaming {
    /// Never: both runs are read whole (the default). Required by a baseline and by multi-rank
    /// runs.
    #[default]
    Never,
    /// Always. Refused with a baseline, and for runs given already read.
    Always,
    /// When either run directory holds at least `threshold` records (estimated by
    /// [`crate::estimate_records`]) and there is no baseline, no multi-rank run and no run
    /// given already read; the report's `streamed.reason` says why it streamed.
    Auto {
        /// Records (in either run) from which the comparison streams.
        threshold: u64,
    },
}

/// Bounds of a streaming comparison.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Most unmatched B records held while A looks for a partner.
    pub window: usize,
    /// Non-agreeing pairs kept in [`crate::Report::pairs`] (the first ones in A's order, then
    /// B's).
    pub keep_pairs: usize,
    /// Layer groups kept in [`crate::Report::layers`] on each side of the first divergence (the
    /// last ones before it, the first ones from it on).
    pub layers: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            window: 1 << 16,
            keep_pairs: 1000,
            layers: 2048,
        }
    }
}
