//! Verdicts from value sketches: the relative L2 error between two records estimated from their
//! sketches alone (see `trace_core::sketch` and `docs/FORMAT.md`), for pairs without raw values.
//!
//! The estimate of `||a - b||²` is `Σ_m (S(a)_m - S(b)_m)²`, unbiased with a relative standard
//! deviation of at most `sqrt(2/k)`. The tolerance test is the one statistics get, applied to
//! the RMS of the difference: `sqrt(est / n) <= atol + sqrt(2)·rtol·|rms_b|`
//! ([`Tolerance::stats_bound`]), which every element passing implies. It subsumes the
//! statistics' test, since `|rms_a - rms_b|`, `|mean_a - mean_b|` and `|std_a - std_b|` are all
//! at most the RMS of the difference.
//!
//! A sketch needs the same element order on both sides: pairs whose B is brought into A's
//! layout by a `b_layout` rule, and records with NaN or Inf (which the sketch skips), are judged
//! on statistics instead.

use trace_core::record::TraceRecord;
use trace_core::sketch::estimate_sq_distance;

use crate::format::sci;
pub use crate::report::SketchEstimate;
use crate::report::{Pair, Verdict};
use crate::rules::Tolerance;

/// Standard deviations of the squared-norm estimate covered by the reported range.
const SPREAD_SIGMAS: f64 = 2.0;

/// Why two records' sketches cannot be compared, or `None` when they can.
fn incomparable(a: &TraceRecord, b: &TraceRecord) -> Option<&'static str> {
    let (sa, sb) = (a.sketch.as_ref()?, b.sketch.as_ref()?);
    if sa.k != sb.k || sa.seed != sb.seed {
        return Some("sketches of different k or seed cannot be compared");
    }
    if a.num_elements != b.num_elements {
        return Some("element counts differ");
    }
    let nonfinite = |r: &TraceRecord| r.stats.is_some_and(|s| s.nan_count + s.inf_count > 0);
    if nonfinite(a) || nonfinite(b) || b.rms.is_none() {
        return Some("NaN or Inf among the values: the sketch skips them");
    }
    None
}

/// The estimated `||a - b||` and its relative spread, when both records carry comparable sketches.
fn estimate(a: &TraceRecord, b: &TraceRecord) -> Option<SketchEstimate> {
    if incomparable(a, b).is_some() {
        return None;
    }
    let (sa, sb) = (a.sketch.as_ref()?, b.sketch.as_ref()?);
    let sq = estimate_sq_distance(&sa.f64le, &sb.f64le);
    let n = b.num_elements.max(1) as f64;
    let norm_b = b.rms? * n.sqrt();
    let sigma = (2.0 / f64::from(sa.k)).sqrt() * SPREAD_SIGMAS;
    let rel = if norm_b > 0.0 {
        sq.sqrt() / norm_b
    } else if sq == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    // est = exact² (1 + ε), |ε| <= sigma: exact = est / sqrt(1 + ε).
    Some(SketchEstimate {
        k: sa.k,
        rel_l2: rel,
        rel_l2_low: rel / (1.0 + sigma).sqrt(),
        rel_l2_high: if sigma < 1.0 {
            rel / (1.0 - sigma).sqrt()
        } else {
            f64::INFINITY
        },
        rms_diff: (sq / n).sqrt(),
    })
}

/// Judges a pair whose values are not on both sides from the records' sketches. Returns `false`
/// (and leaves the pair alone) when either record has no sketch or they cannot be compared;
/// `reordered` says B's elements are brought into A's order by a layout rule.
pub(crate) fn judge_sketch(
    pair: &mut Pair,
    a: &TraceRecord,
    b: &TraceRecord,
    tol: &Tolerance,
    reordered: bool,
    notes: &mut Vec<String>,
) -> bool {
    if a.sketch.is_none() || b.sketch.is_none() {
        return false;
    }
    if reordered {
        notes.push(
            "sketches cannot be compared (b_layout reorders B's elements): judged on statistics"
                .to_owned(),
        );
        return false;
    }
    if let Some(why) = incomparable(a, b) {
        notes.push(format!(
            "sketches not compared ({why}): judged on statistics"
        ));
        return false;
    }
    let Some(est) = estimate(a, b) else {
        return false;
    };
    let bound = tol.stats_bound(b.rms.unwrap_or(0.0));
    let within = est.rms_diff <= bound;
    pair.evidence = crate::report::Evidence::Sketch;
    pair.error = Some(est.rel_l2);
    pair.verdict = if within {
        Verdict::WithinTolerance
    } else {
        Verdict::Diverged
    };
    notes.insert(
        0,
        format!(
            "judged on sketches (k = {}), not values: estimated RMS of the difference {} {} {} \
             (relative L2 {}, range {}..{})",
            est.k,
            sci(Some(est.rms_diff)),
            if within { "<=" } else { ">" },
            sci(Some(bound)),
            sci(Some(est.rel_l2)),
            sci(Some(est.rel_l2_low)),
            sci(Some(est.rel_l2_high)),
        ),
    );
    pair.sketch = Some(Box::new(est));
    true
}

/// Estimated relative L2 errors `e_A = ||a - b|| / ||b||` and `e_C = ||c - b|| / ||b||` for a
/// calibration, when all three records carry comparable sketches.
pub(crate) fn calibration_errors(
    a: &TraceRecord,
    b: &TraceRecord,
    c: &TraceRecord,
) -> Option<(f64, f64)> {
    Some((estimate(a, b)?.rel_l2, estimate(c, b)?.rel_l2))
}

#[cfg(test)]
mod tests {
    use trace_core::{Data, Fingerprinter, Sketch};

    use super::*;

    fn record(values: &[f32]) -> TraceRecord {
        let mut fp = Fingerprinter::new().with_sketch(256).unwrap();
        fp.update(Data::F32(values)).unwrap();
        let f = fp.finish();
        TraceRecord {
            name: "x".into(),
            shape: vec![values.len()],
            dtype: "F32".into(),
            blake3: f.blake3.to_hex().to_string(),
            rms: f.rms,
            num_elements: f.num_elements,
            stats: Some(f.stats),
            sketch: f.sketch.map(Sketch::new),
            ..TraceRecord::default()
        }
    }

    #[test]
    fn estimate_brackets_the_exact_error() {
        let b: Vec<f32> = (0..100_000).map(|i| ((i as f32) * 0.013).sin()).collect();
        let a: Vec<f32> = b
            .iter()
            .enumerate()
            .map(|(i, &v)| v + 1e-3 * ((i as f32) * 0.7).cos())
            .collect();
        let exact = {
            let d: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum();
            let n: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum();
            (d / n).sqrt()
        };
        let est = estimate(&record(&a), &record(&b)).unwrap();
        assert!(
            est.rel_l2_low <= exact && exact <= est.rel_l2_high,
            "{exact} not in {est:?}"
        );
        assert_eq!(estimate(&record(&b), &record(&b)).unwrap().rel_l2, 0.0);
    }

    #[test]
    fn non_finite_values_or_other_k_are_not_compared() {
        let mut v = vec![1.0f32; 1000];
        let fine = record(&v);
        v[3] = f32::NAN;
        assert!(incomparable(&record(&v), &fine).is_some());
        let mut other = fine.clone();
        other.sketch = Some(Sketch::new(vec![0.0; 64]));
        assert!(incomparable(&other, &fine).is_some());
        assert_eq!(incomparable(&fine, &fine), None);
    }
}
