//! The outcome and the report, assembled the same way by the in-memory and the streaming diff:
//! pairs are fed in A's order to a [`Tally`] (counts, the first divergence with the last
//! agreeing record before it and what follows it, the layer profile), which then builds the
//! [`Report`].

use std::path::Path;

use trace_core::record::RecordError;
use trace_core::run::RunOrder;

use crate::options::DiffOptions;
use crate::report::{
    CalibrationSummary, Counts, FirstDivergence, Ignored, LayerError, Outcome, Pair, Report,
    RunInfo, Streamed, Verdict, Warning, SCHEMA, SCHEMA_VERSION,
};

/// What a diff computes from its pairs, one pair at a time.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) counts: Counts,
    layers: LayerProfile,
    first: Option<FirstDivergence>,
    /// The name of the last agreeing pair so far, before the first divergence (a reused buffer).
    last_agreeing: Option<String>,
}

/// The rest of a report, beside what the [`Tally`] computed.
pub(crate) struct Ending {
    pub(crate) a: RunInfo,
    pub(crate) b: RunInfo,
    pub(crate) pairs: Vec<Pair>,
    pub(crate) warnings: Vec<Warning>,
    pub(crate) calibration: Option<CalibrationSummary>,
    pub(crate) streamed: Option<Streamed>,
    pub(crate) ignored: Ignored,
}

impl Tally {
    /// A tally whose layer profile is `layers` (unbounded, or bounded for a streaming diff).
    pub(crate) fn new(layers: LayerProfile) -> Self {
        Tally {
            counts: Counts::default(),
            layers,
            first: None,
            last_agreeing: None,
        }
    }

    /// Takes the next pair of A's records in A's order (matched, or without a partner in B).
    /// Returns whether it is the first divergence.
    pub(crate) fn push(&mut self, pair: &Pair) -> bool {
        if pair.only_in.is_some() {
            self.counts.missing_in_b += 1;
        } else {
            self.counts.count_compared(pair.verdict);
        }
        self.layers.push(pair);
        let agrees = matches!(pair.verdict, Verdict::Identical | Verdict::WithinTolerance);
        match &mut self.first {
            None if pair.verdict.is_divergence() => {
                self.layers.diverged();
                self.first = Some(FirstDivergence {
                    pair: pair.position,
                    name: pair.display_name().to_owned(),
                    last_agreeing: self.last_agreeing.take(),
                    diverged_after: 0,
                    max_error_after: pair.error,
                    execution_order_known: true,
                });
                return true;
            }
            None if agrees => {
                let name = self.last_agreeing.get_or_insert_with(String::new);
                name.clear();
                name.push_str(pair.display_name());
            }
            None => {}
            Some(f) => {
                if pair.verdict.is_divergence() {
                    f.diverged_after += 1;
                }
                if let Some(e) = pair.error {
                    f.max_error_after = Some(f.max_error_after.map_or(e, |m| m.max(e)));
                }
            }
        }
        false
    }

    /// Counts a record of B without a partner in A.
    pub(crate) fn only_in_b(&mut self) {
        self.counts.missing_in_a += 1;
    }

    /// Layer groups a bounded profile left out.
    pub(crate) fn layers_dropped(&self) -> u64 {
        self.layers.dropped()
    }

    /// The report: the outcome from the counts (pairs the baseline could not judge count as
    /// records without a partner), the first divergence, the layer profile and `end`.
    pub(crate) fn finish(self, end: Ending, options: &DiffOptions) -> Report {
        let counts = self.counts;
        let uncalibrated = end
            .calibration
            .as_ref()
            .map_or(0, |s| s.missing + s.unusable);
        let missing = counts.missing_in_a + counts.missing_in_b + uncalibrated;
        let outcome = if counts.diverged + counts.incompatible > 0 {
            Outcome::Diverged
        } else if missing > 0 && !options.allow_missing {
            Outcome::Incomplete
        } else {
            Outcome::Agree
        };
        let order_known = end.a.execution_order_known;
        Report {
            schema: SCHEMA,
            schema_version: SCHEMA_VERSION,
            outcome,
            a: end.a,
            b: end.b,
            rules: options.rules.source().map(|p| p.display().to_string()),
            views: options.rules.views().cloned(),
            counts,
            first_divergence: self.first.map(|f| FirstDivergence {
                execution_order_known: order_known,
                ..f
            }),
            pairs: end.pairs,
            layers: self.layers.finish(),
            warnings: end.warnings,
            calibration: end.calibration,
            ranks: None,
            streamed: end.streamed,
            ignored: end.ignored,
        }
    }
}

/// The warnings about one side's run: the problems met reading it, and an unknown execution order.
pub(crate) fn run_warnings(
    side: &'static str,
    problems: &[RecordError],
    order: RunOrder,
    dir: &Path,
    warnings: &mut Vec<Warning>,
) {
    warnings.extend(problems.iter().map(|p| Warning {
        side: Some(side),
        message: p.to_string(),
    }));
    if !order.is_execution_order() {
        warnings.push(Warning {
            side: Some(side),
            message: format!(
                "{}: seed-format directory (no manifest.jsonl, records without index): execution order unknown; records ordered by seq, then index, then file name{}",
                dir.display(),
                if side == "a" { ", so the first divergence is a guess" } else { "" }
            ),
        });
    }
}

/// The layer profile, fed one pair at a time in A's order: consecutive matched pairs of one
/// `(seq, layer)` form a group, whose last pair with an error is the layer's output.
///
/// Unbounded by default. [`LayerProfile::bounded`] keeps at most `around` groups before the
/// first divergence (the latest ones) and `around` groups from it on, so memory stays flat
/// however long the run; [`LayerProfile::dropped`] counts the groups left out.
#[derive(Debug, Default)]
pub(crate) struct LayerProfile {
    out: std::collections::VecDeque<LayerError>,
    current: Option<(Option<u64>, i64)>,
    /// The last group dropped from the front, for the amplification of the first kept one.
    before: Option<LayerError>,
    around: Option<usize>,
    /// Groups still to keep after the first divergence, once it is known.
    after: Option<usize>,
    /// Set when the budget after the divergence is spent: later groups are only counted.
    closed: bool,
    dropped: u64,
}

impl LayerProfile {
    /// A profile keeping `around` groups on each side of the first divergence.
    pub(crate) fn bounded(around: usize) -> Self {
        LayerProfile {
            around: Some(around.max(1)),
            ..LayerProfile::default()
        }
    }

    /// Tells a bounded profile that the first divergence is the pair pushed last.
    pub(crate) fn diverged(&mut self) {
        // Its own group is the first of the `around` kept from it on.
        if let Some(around) = self.around {
            self.after.get_or_insert(around - 1);
        }
    }

    /// Groups left out by a bounded profile.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes the next pair in A's order; pairs without a partner or a layer are passed over.
    pub(crate) fn push(&mut self, p: &Pair) {
        let (None, Some(layer)) = (p.only_in, p.layer) else {
            return;
        };
        let key = (p.seq, layer);
        if self.current != Some(key) {
            self.current = Some(key);
            if let Some(after) = &mut self.after {
                if *after == 0 {
                    self.closed = true;
                } else {
                    *after -= 1;
                }
            }
            if self.closed {
                self.dropped += 1;
                return;
            }
            if let (Some(around), None) = (self.around, self.after) {
                // `around` groups before the current one, which may hold the divergence.
                if self.out.len() > around {
                    self.before = self.out.pop_front();
                    self.dropped += 1;
                }
            }
            self.out.push_back(LayerError {
                seq: p.seq,
                layer,
                output: p.display_name().to_owned(),
                error: None,
                max_error: None,
                amplification: None,
                baseline_error: p.calibration.as_ref().and_then(|c| c.e_c),
                ratio: p.calibration.as_ref().and_then(|c| c.ratio),
            });
        }
        if self.closed {
            return;
        }
        let group = self.out.back_mut().expect("pushed above");
        if let Some(e) = p.error {
            // Reuses the group's buffer: this runs for every pair.
            group.output.clear();
            group.output.push_str(p.display_name());
            group.error = Some(e);
            group.max_error = Some(group.max_error.map_or(e, |m| m.max(e)));
            if let Some(cal) = &p.calibration {
                group.baseline_error = cal.e_c;
                group.ratio = cal.ratio;
            } else {
                group.baseline_error = None;
                group.ratio = None;
            }
        }
    }

    /// The groups with their amplification within each step.
    pub(crate) fn finish(self) -> Vec<LayerError> {
        // `before` (a group dropped from the front) only lends its error to the amplification
        // of the first kept group.
        let had_before = self.before.is_some();
        let mut out: Vec<LayerError> = self.before.into_iter().chain(self.out).collect();
        for i in 1..out.len() {
            if out[i - 1].seq != out[i].seq {
                continue;
            }
            out[i].amplification = match (out[i - 1].error, out[i].error) {
                (Some(prev), Some(cur)) if prev > 0.0 => Some(cur / prev),
                _ => None,
            };
        }
        if had_before {
            out.remove(0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use trace_core::record::TraceRecord;
    use trace_core::run::RunRecord;

    use super::*;

    #[test]
    fn layer_amplification() {
        let mk = |layer, error: f64| {
            let mut p = Pair::unmatched(
                0,
                "a",
                &RunRecord {
                    file: "f".into(),
                    record: TraceRecord {
                        name: "x".into(),
                        ..TraceRecord::default()
                    },
                    occurrence: 0,
                    values: None,
                },
                None,
            );
            p.only_in = None;
            p.layer = Some(layer);
            p.seq = Some(0);
            p.error = Some(error);
            p
        };
        let pairs = [mk(0, 0.0), mk(1, 1e-6), mk(1, 1e-4), mk(2, 1e-3)];
        let mut profile = LayerProfile::default();
        for p in &pairs {
            profile.push(p);
        }
        let layers = profile.finish();
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[1].error, Some(1e-4));
        assert_eq!(layers[1].max_error, Some(1e-4));
        assert_eq!(layers[1].amplification, None); // previous error is 0
        assert!((layers[2].amplification.unwrap() - 10.0).abs() < 1e-9);
    }
}
