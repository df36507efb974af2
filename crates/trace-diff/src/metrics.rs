//! Element-wise metrics over two value arrays (f64 accumulation throughout).

use serde::Serialize;

use crate::detail::{histogram, ErrorHistogram, TopK, WorstElement, WORST};
use crate::format::finite_or_null;
use crate::rules::{Term, Tolerance};

/// Metrics computed when both sides saved raw values.
///
/// Non-finite elements: a NaN facing a NaN, or an infinity facing the same infinity, agrees and
/// is left out of the sums; any other pairing with a non-finite value fails and is counted in
/// `nonfinite_mismatches`, also left out of the sums so that one NaN does not hide the size of
/// the error elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueMetrics {
    /// Largest `|a - b|` over finite pairs.
    #[serde(serialize_with = "finite_or_null")]
    pub max_abs: f64,
    /// Position (one index per dimension) of the largest error.
    pub max_abs_at: Vec<usize>,
    /// Side-A value at `max_abs_at`.
    #[serde(serialize_with = "finite_or_null")]
    pub a_at_max: f64,
    /// Side-B value at `max_abs_at`.
    #[serde(serialize_with = "finite_or_null")]
    pub b_at_max: f64,
    /// Mean of `|a - b|` over finite pairs.
    #[serde(serialize_with = "finite_or_null")]
    pub mean_abs: f64,
    /// `||a - b|| / ||b||` (L2 norms); `null` (infinite) when `b` is all zeros and `a` is not.
    #[serde(serialize_with = "finite_or_null")]
    pub rel_l2: f64,
    /// Cosine similarity; 1 when both are all zeros, `null` when only one is.
    #[serde(serialize_with = "finite_or_null")]
    pub cosine: f64,
    /// Signal-to-quantization-noise ratio `10 log10(||b||^2 / ||a - b||^2)` in dB; `null`
    /// (infinite) when there is no error.
    #[serde(serialize_with = "finite_or_null")]
    pub sqnr_db: f64,
    /// Elements outside tolerance (outside all three terms of [`Tolerance`], or a non-finite
    /// mismatch).
    pub failed: u64,
    /// The tolerance's scale: the RMS of B's finite values (0 when there are none). An element
    /// passes within `rtol` times it, however small its own reference value.
    #[serde(serialize_with = "finite_or_null")]
    pub scale: f64,
    /// Elements that pass by the scale term alone (outside `atol` and `rtol * |b|`, within
    /// `rtol * scale`).
    pub within_by_scale: u64,
    /// Elements compared.
    pub elements: u64,
    /// Position of the first failing element in C order.
    pub first_failed_at: Option<Vec<usize>>,
    /// Pairs where the non-finite values do not agree (NaN vs number, Inf vs -Inf, ...).
    pub nonfinite_mismatches: u64,
    /// The distribution of `|a - b|` over finite pairs, relative to B's RMS (see
    /// [`crate::detail`]).
    pub histogram: ErrorHistogram,
    /// The largest `|a - b|` over finite pairs, at most [`WORST`] of them, largest first.
    pub worst: Vec<WorstElement>,
}

/// Metrics for logits: the last dimension is the vocabulary, each other index a row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogitMetrics {
    /// Rows compared (product of all but the last dimension).
    pub rows: u64,
    /// Size of the last dimension.
    pub vocab: u64,
    /// Rows whose arg-max agrees.
    pub top1_agree: u64,
    /// First row whose arg-max disagrees.
    pub first_top1_mismatch: Option<u64>,
    /// `k` of the top-k overlap (at most `vocab`).
    pub top_k: u64,
    /// Mean over rows of `|top_k(a) ∩ top_k(b)| / k`.
    #[serde(serialize_with = "finite_or_null")]
    pub topk_overlap: f64,
    /// Mean over rows of `KL(softmax(b) || softmax(a))` in nats (B is the reference).
    #[serde(serialize_with = "finite_or_null")]
    pub kl_mean: f64,
    /// Largest per-row KL divergence.
    #[serde(serialize_with = "finite_or_null")]
    pub kl_max: f64,
}

/// Row-major multi-index of flat position `flat` in `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Compares `a` with the reference `b` (equal lengths) under `tol`, at the scale of `b` (the RMS
/// of its finite values).
pub fn compare_values(a: &[f64], b: &[f64], shape: &[usize], tol: &Tolerance) -> ValueMetrics {
    debug_assert_eq!(a.len(), b.len());
    // A first pass: every element is judged against the scale of the whole record.
    let scale = finite_rms(b);
    let mut within_by_scale = 0u64;
    let (mut max_abs, mut max_at) = (0.0f64, 0usize);
    let (mut sum_abs, mut sum_d2, mut sum_a2, mut sum_b2, mut dot) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut failed, mut nonfinite, mut finite) = (0u64, 0u64, 0u64);
    let mut first_failed = None;
    let mut worst = TopK::new(WORST);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if !(x.is_finite() && y.is_finite()) {
            let same = (x.is_nan() && y.is_nan()) || x == y;
            if !same {
                nonfinite += 1;
                failed += 1;
                first_failed.get_or_insert(i);
            }
            continue;
        }
        finite += 1;
        let d = (x - y).abs();
        if d > max_abs {
            max_abs = d;
            max_at = i;
        }
        worst.offer(d, i);
        sum_abs += d;
        sum_d2 += d * d;
        sum_a2 += x * x;
        sum_b2 += y * y;
        dot += x * y;
        match tol.term(x, y, scale) {
            Some(Term::Scale) => within_by_scale += 1,
            Some(_) => {}
            None => {
                failed += 1;
                first_failed.get_or_insert(i);
            }
        }
    }
    let rel_l2 = if sum_d2 == 0.0 {
        0.0
    } else {
        sum_d2.sqrt() / sum_b2.sqrt()
    };
    let cosine = match (sum_a2 == 0.0, sum_b2 == 0.0) {
        (true, true) => 1.0,
        (false, false) => dot / (sum_a2.sqrt() * sum_b2.sqrt()),
        _ => f64::NAN,
    };
    let sqnr_db = if sum_d2 == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sum_b2 / sum_d2).log10()
    };
    ValueMetrics {
        max_abs,
        max_abs_at: unravel(max_at, shape),
        a_at_max: a.get(max_at).copied().unwrap_or(f64::NAN),
        b_at_max: b.get(max_at).copied().unwrap_or(f64::NAN),
        mean_abs: if finite == 0 {
            0.0
        } else {
            sum_abs / finite as f64
        },
        rel_l2,
        cosine,
        sqnr_db,
        failed,
        scale,
        within_by_scale,
        elements: a.len() as u64,
        first_failed_at: first_failed.map(|i| unravel(i, shape)),
        nonfinite_mismatches: nonfinite,
        // A second pass: the bins are relative to B's RMS, known only now.
        histogram: histogram(a, b, rms(sum_b2, finite)),
        worst: worst.finish(a, b),
    }
}

/// The RMS of the finite values of `v` (0 for none).
pub fn finite_rms(v: &[f64]) -> f64 {
    let (sum2, count) = v
        .iter()
        .filter(|x| x.is_finite())
        .fold((0.0, 0u64), |(s, n), &x| (s + x * x, n + 1));
    rms(sum2, count)
}

/// The RMS of `count` values whose squares sum to `sum2` (0 for none).
fn rms(sum2: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        (sum2 / count as f64).sqrt()
    }
}

/// Logits metrics; `None` when there is nothing to compare (no elements).
pub fn compare_logits(a: &[f64], b: &[f64], shape: &[usize], k: usize) -> Option<LogitMetrics> {
    let vocab = shape.last().copied().unwrap_or(1);
    if vocab == 0 || a.is_empty() || a.len() != b.len() {
        return None;
    }
    let rows = a.len() / vocab;
    let k = k.min(vocab);
    let (mut agree, mut first_mismatch) = (0u64, None);
    let (mut overlap_sum, mut kl_sum, mut kl_max) = (0.0, 0.0, 0.0f64);
    let mut ia: Vec<usize> = Vec::with_capacity(vocab);
    let mut ib: Vec<usize> = Vec::with_capacity(vocab);
    for r in 0..rows {
        let (ra, rb) = (
            &a[r * vocab..(r + 1) * vocab],
            &b[r * vocab..(r + 1) * vocab],
        );
        if argmax(ra) == argmax(rb) {
            agree += 1;
        } else {
            first_mismatch.get_or_insert(r as u64);
        }
        top_k(ra, k, &mut ia);
        top_k(rb, k, &mut ib);
        let common = ia.iter().filter(|i| ib.contains(i)).count();
        overlap_sum += common as f64 / k as f64;
        let kl = kl_divergence(rb, ra);
        kl_sum += kl;
        kl_max = kl_max.max(kl);
    }
    Some(LogitMetrics {
        rows: rows as u64,
        vocab: vocab as u64,
        top1_agree: agree,
        first_top1_mismatch: first_mismatch,
        top_k: k as u64,
        topk_overlap: overlap_sum / rows as f64,
        kl_mean: kl_sum / rows as f64,
        kl_max,
    })
}

/// Index of the largest value; NaN counts as smaller than everything, ties go to the first.
pub(crate) fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best
}

/// The indices of the `k` largest values (in no particular order) into `out`.
fn top_k(row: &[f64], k: usize, out: &mut Vec<usize>) {
    out.clear();
    out.extend(0..row.len());
    let key = |i: &usize| {
        if row[*i].is_nan() {
            f64::NEG_INFINITY
        } else {
            row[*i]
        }
    };
    if k < row.len() {
        out.select_nth_unstable_by(k, |x, y| key(y).total_cmp(&key(x)).then(x.cmp(y)));
        out.truncate(k);
    }
}

/// `KL(softmax(p_logits) || softmax(q_logits))` in nats, computed from log-softmax.
fn kl_divergence(p_logits: &[f64], q_logits: &[f64]) -> f64 {
    let lp = log_softmax(p_logits);
    let lq = log_softmax(q_logits);
    lp.iter()
        .zip(&lq)
        .filter(|(p, _)| p.is_finite())
        .map(|(p, q)| p.exp() * (p - q))
        .sum::<f64>()
        .max(0.0)
}

fn log_softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    x.iter().map(|v| v - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance::new(1e-3, 1e-3);

    #[test]
    fn unravel_positions() {
        let check = |flat, shape: &[usize], expected: &[usize]| {
            assert_eq!(unravel(flat, shape), expected);
        };
        check(5, &[2, 3], &[1, 2]);
        check(0, &[], &[]);
        check(7, &[2, 2, 2], &[1, 1, 1]);
    }

    #[test]
    fn identical_values() {
        let v = [1.0, -2.0, 3.0];
        let m = compare_values(&v, &v, &[3], &TOL);
        assert_eq!(
            (m.max_abs, m.rel_l2, m.cosine, m.failed),
            (0.0, 0.0, 1.0, 0)
        );
        assert!(m.sqnr_db.is_infinite());
    }

    #[test]
    fn one_changed_element() {
        let b = [1.0, 2.0, 3.0, 4.0];
        let a = [1.0, 2.0, 3.5, 4.0];
        let m = compare_values(&a, &b, &[2, 2], &TOL);
        assert_eq!(m.max_abs, 0.5);
        assert_eq!(m.max_abs_at, [1, 0]);
        assert_eq!((m.a_at_max, m.b_at_max), (3.5, 3.0));
        assert_eq!(m.failed, 1);
        assert_eq!(m.first_failed_at, Some(vec![1, 0]));
        assert!((m.mean_abs - 0.125).abs() < 1e-15);
        assert!((m.rel_l2 - 0.5 / 30f64.sqrt()).abs() < 1e-12);
        assert!((m.sqnr_db - 10.0 * (30.0 / 0.25f64).log10()).abs() < 1e-9);
        // One element off by 0.5, B's RMS sqrt(7.5): in the 1e-1 decade; three exact zeros.
        assert_eq!(
            (m.histogram.scale, m.histogram.relative),
            (7.5f64.sqrt(), true)
        );
        assert_eq!((m.histogram.counts[0], m.histogram.counts[2 + 8]), (3, 1));
        assert_eq!(
            m.worst,
            [crate::detail::WorstElement {
                flat: 2,
                a: 3.5,
                b: 3.0
            }]
        );
    }

    /// A record shaped like SmolLM2's `blk29/l_out` (docs/FORMAT.md, "Default tolerances"): a
    /// massive activation puts B's RMS near 73.7 while most elements are of order 1, one of
    /// them near zero. The two engines' F32 roundings there differ by far more than the
    /// element's own magnitude allows, and by far less than the record's scale does.
    fn massive_activation() -> (Vec<f64>, Vec<f64>) {
        let mut b: Vec<f64> = (0..1000).map(|i| ((i as f64) * 0.37).sin()).collect();
        b[7] = 2331.0;
        b[500] = 3e-4;
        let a: Vec<f64> = b
            .iter()
            .enumerate()
            .map(|(i, &y)| if i == 500 { y + 2e-3 } else { y * (1.0 + 1e-6) })
            .collect();
        (a, b)
    }

    #[test]
    fn scale_admits_a_near_zero_element_of_a_large_record() {
        let (a, b) = massive_activation();
        let tol = Tolerance::new(1e-4, 1e-4);
        let m = compare_values(&a, &b, &[1000], &tol);
        assert!((m.scale - 73.7).abs() < 0.1, "{}", m.scale);
        assert_eq!((m.failed, m.within_by_scale), (0, 1), "{m:?}");
        // Without the scale term (a record of scale 0) the same element fails.
        assert_eq!(tol.term(a[500], b[500], 0.0), None);
        assert_eq!(tol.term(a[500], b[500], m.scale), Some(Term::Scale));
    }

    #[test]
    fn one_percent_of_the_scale_still_fails() {
        let (mut a, b) = massive_activation();
        let tol = Tolerance::new(1e-4, 1e-4);
        let scale = finite_rms(&b);
        // 1% of the RMS on three elements of order 1: 7e-1, far above rtol x RMS (7.4e-3).
        for i in [10, 20, 30] {
            a[i] = b[i] + 0.01 * scale;
        }
        let m = compare_values(&a, &b, &[1000], &tol);
        assert_eq!(
            (m.failed, m.first_failed_at.clone()),
            (3, Some(vec![10])),
            "{m:?}"
        );
        // So does 1% of the largest element on itself.
        a[7] = b[7] * 1.01;
        assert_eq!(compare_values(&a, &b, &[1000], &tol).failed, 4);
    }

    #[test]
    fn integers_stay_exact() {
        let b = [1000.0, 0.0, 3.0, -7.0];
        let exact = Tolerance::new(0.0, 0.0);
        let off = [1000.0, 1.0, 3.0, -7.0];
        assert_eq!(compare_values(&b, &b, &[4], &exact).failed, 0);
        let m = compare_values(&off, &b, &[4], &exact);
        assert_eq!((m.failed, m.within_by_scale), (1, 0));
    }

    #[test]
    fn scale_ignores_non_finite_values() {
        assert_eq!(
            finite_rms(&[3.0, f64::NAN, -4.0, f64::INFINITY]),
            12.5f64.sqrt()
        );
        assert_eq!(finite_rms(&[f64::NAN]), 0.0);
        assert_eq!(finite_rms(&[]), 0.0);
    }

    #[test]
    fn nonfinite_pairs() {
        let a = [f64::NAN, f64::INFINITY, 1.0, f64::NAN];
        let b = [f64::NAN, f64::INFINITY, 1.0, 2.0];
        let m = compare_values(&a, &b, &[4], &TOL);
        assert_eq!((m.failed, m.nonfinite_mismatches, m.max_abs), (1, 1, 0.0));
        assert_eq!(m.first_failed_at, Some(vec![3]));
    }

    #[test]
    fn logits_metrics() {
        // Row 0 agrees exactly; row 1 swaps the two largest logits.
        let b = [0.0, 1.0, 5.0, 0.0, 4.0, 5.0];
        let a = [0.0, 1.0, 5.0, 0.0, 5.0, 4.0];
        let m = compare_logits(&a, &b, &[2, 3], 2).unwrap();
        assert_eq!(
            (m.rows, m.vocab, m.top1_agree, m.first_top1_mismatch),
            (2, 3, 1, Some(1))
        );
        assert_eq!(m.topk_overlap, 1.0);
        assert!(m.kl_max > 0.1 && m.kl_mean == m.kl_max / 2.0, "{m:?}");
        let same = compare_logits(&b, &b, &[2, 3], 5).unwrap();
        assert_eq!((same.top_k, same.kl_max, same.top1_agree), (3, 0.0, 2));
    }
}
