//! Calibrated verdicts: the engine's error judged against the reference's own rounding error.
//!
//! Three runs of one computation: **A**, the engine under test; **B**, the reference in high
//! precision; **C**, the baseline: the same reference run in A's precision. For each matched
//! record, `e_A = error(A vs B)` and `e_C = error(C vs B)`, and the ratio
//! `r = e_A / max(e_C, floor)` asks: *is my engine's error larger than what a correct
//! implementation in my precision makes?* `r <= K` ([`DEFAULT_MAX_RATIO`] unless given) is a
//! calibrated agreement, `r > K` a divergence. No tolerance is chosen by anyone.
//!
//! The error is the relative L2 `||x - b|| / ||b||` over the elements finite on both sides when
//! all three runs saved values ([`value_errors`]), else a statistics-based lower bound of it
//! ([`stats_error`]). The floor is the unit roundoff of the less precise of A's and C's dtypes
//! ([`floor_for`]): it is the error of rounding B once to that precision, so a record the
//! baseline reproduces exactly still allows A one rounding per element, times `K`.

use trace_core::record::TraceRecord;
use trace_core::DType;

use crate::metrics::argmax;

/// The default largest ratio `r = e_A / max(e_C, floor)` judged an agreement
/// (`--max-ratio`, [`crate::DiffOptions::max_ratio`]).
///
/// Provisional: a clean run's engine makes errors of the baseline's size, so its `r` sits near 1
/// (1.2 to 2.0 measured by hand on MiniLM, F32), while a real bug shows as `r` in the hundreds
/// or thousands (1,100 to 2,000 for MiniLM's gelu-tanh bug). 10 leaves a factor of 5 above the
/// clean runs measured and two orders of magnitude below the bugs. How it is chosen is in
/// `docs/FORMAT.md` ("Calibrated verdicts").
pub const DEFAULT_MAX_RATIO: f64 = 10.0;

/// Unit roundoff (half the machine epsilon) of a dtype: the largest relative error of rounding
/// a real number to it once. Integers are exact (0); an unknown dtype counts as F32.
pub fn unit_roundoff(dtype: &str) -> f64 {
    match dtype.parse::<DType>() {
        Ok(DType::F64) => f64::EPSILON / 2.0,
        Ok(DType::F16) => 2f64.powi(-11),
        Ok(DType::BF16) => 2f64.powi(-8),
        Ok(d) if !d.is_float() => 0.0,
        _ => f64::from(f32::EPSILON) / 2.0,
    }
}

/// The floor of a record's ratio: the unit roundoff of the less precise of A's and the
/// baseline's dtypes; when both are integers (exact), that of F64, so any difference counts.
pub fn floor_for(dtype_a: &str, dtype_c: &str) -> f64 {
    let u = unit_roundoff(dtype_a).max(unit_roundoff(dtype_c));
    if u == 0.0 {
        f64::EPSILON / 2.0
    } else {
        u
    }
}

/// `r = e_a / max(e_c, floor)`; 0 when `e_a` is 0 (A reproduces B exactly), infinite when
/// `e_a` is.
pub fn ratio(e_a: f64, e_c: f64, floor: f64) -> f64 {
    if e_a == 0.0 {
        return 0.0;
    }
    e_a / e_c.max(floor)
}

/// The errors of A and of the baseline C against the reference B, from raw values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueErrors {
    /// Relative L2 of A against B over the elements finite on both sides (infinite when B's
    /// finite elements are all zero and A's are not).
    pub e_a: f64,
    /// The same for C against B.
    pub e_c: f64,
    /// Elements where A's non-finite status differs from B's (NaN vs number, Inf vs -Inf, ...)
    /// and C's does not match A's: NaN/Inf that a correct implementation in A's precision does
    /// not produce. Any is a divergence.
    pub nonfinite_unexcused: u64,
    /// Elements where A's non-finite status differs from B's but C's is the same as A's (the
    /// baseline overflows or produces NaN there too).
    pub nonfinite_excused: u64,
}

/// What an element is, for matching NaN and infinities across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Finite,
    Nan,
    PosInf,
    NegInf,
}

fn kind(x: f64) -> Kind {
    if x.is_nan() {
        Kind::Nan
    } else if x == f64::INFINITY {
        Kind::PosInf
    } else if x == f64::NEG_INFINITY {
        Kind::NegInf
    } else {
        Kind::Finite
    }
}

/// `sqrt(d2) / sqrt(b2)`, 0 when `d2` is 0, infinite when only `b2` is.
fn relative(d2: f64, b2: f64) -> f64 {
    if d2 == 0.0 {
        0.0
    } else {
        d2.sqrt() / b2.sqrt()
    }
}

/// `e_A`, `e_C` and the non-finite bookkeeping over three value arrays of equal length (`b` is
/// the reference).
pub fn value_errors(a: &[f64], b: &[f64], c: &[f64]) -> ValueErrors {
    debug_assert!(a.len() == b.len() && b.len() == c.len());
    let (mut da2, mut ba2, mut dc2, mut bc2) = (0.0, 0.0, 0.0, 0.0);
    let (mut unexcused, mut excused) = (0u64, 0u64);
    for ((&x, &y), &z) in a.iter().zip(b).zip(c) {
        let (kx, ky, kz) = (kind(x), kind(y), kind(z));
        if kx == Kind::Finite && ky == Kind::Finite {
            da2 += (x - y) * (x - y);
            ba2 += y * y;
        } else if kx != ky {
            if kz == kx {
                excused += 1;
            } else {
                unexcused += 1;
            }
        }
        if kz == Kind::Finite && ky == Kind::Finite {
            dc2 += (z - y) * (z - y);
            bc2 += y * y;
        }
    }
    ValueErrors {
        e_a: relative(da2, ba2),
        e_c: relative(dc2, bc2),
        nonfinite_unexcused: unexcused,
        nonfinite_excused: excused,
    }
}

/// The statistics-based error of `x` against the reference `b`:
/// `max(|rms_x - rms_b|, |mean_x - mean_b|, |std_x - std_b|) / rms_b` over the fields both
/// records have, with `rms_b` taken from `sqrt(mean_b² + std_b²)` (the RMS of the finite
/// values) when `rms` is `null`.
///
/// Each of the three deltas is at most the RMS of the element-wise difference, so this is a lower
/// bound of the relative L2 error. `None` when no field is defined on both sides or B's scale is
/// unknown; infinite when B's scale is 0 and a delta is not.
pub fn stats_error(x: &TraceRecord, b: &TraceRecord) -> Option<f64> {
    let from_stats = b.stats.as_ref().and_then(|s| match (s.mean, s.std) {
        (Some(m), Some(sd)) => Some((m * m + sd * sd).sqrt()),
        _ => None,
    });
    let scale = b.rms.or(from_stats)?.abs();
    let mut fields = vec![(x.rms, b.rms)];
    if let (Some(sx), Some(sb)) = (&x.stats, &b.stats) {
        fields.push((sx.mean, sb.mean));
        fields.push((sx.std, sb.std));
    }
    let delta = fields
        .into_iter()
        .filter_map(|(p, q)| Some((p? - q?).abs()))
        .reduce(f64::max)?;
    if !scale.is_finite() || delta.is_nan() {
        return None;
    }
    Some(if delta == 0.0 { 0.0 } else { delta / scale })
}

/// NaN and Inf counts of a record, when it has statistics.
pub fn nonfinite_counts(r: &TraceRecord) -> Option<(u64, u64)> {
    r.stats.as_ref().map(|s| (s.nan_count, s.inf_count))
}

/// Rows of logits (last dimension `vocab`) where A's arg-max differs from B's while C's equals
/// B's: a token choice a correct implementation in A's precision does not change. Returns the
/// count and the first such row.
pub fn top1_unexcused(a: &[f64], b: &[f64], c: &[f64], vocab: usize) -> (u64, Option<u64>) {
    if vocab == 0 || a.len() != b.len() || b.len() != c.len() {
        return (0, None);
    }
    let (mut count, mut first) = (0, None);
    for (row, ((ra, rb), rc)) in a
        .chunks(vocab)
        .zip(b.chunks(vocab))
        .zip(c.chunks(vocab))
        .enumerate()
    {
        let top_b = argmax(rb);
        if argmax(ra) != top_b && argmax(rc) == top_b {
            count += 1;
            first.get_or_insert(row as u64);
        }
    }
    (count, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace_core::Stats;

    #[test]
    fn floors_follow_the_less_precise_dtype() {
        let check =
            |a: &str, c: &str, expected: f64| assert_eq!(floor_for(a, c), expected, "{a} {c}");
        check("F32", "F32", 2f64.powi(-24));
        check("BF16", "F32", 2f64.powi(-8));
        check("F32", "F16", 2f64.powi(-11));
        check("F64", "F64", 2f64.powi(-53));
        check("I64", "I64", 2f64.powi(-53));
        check("I64", "BF16", 2f64.powi(-8));
        check("Q4_K", "F64", 2f64.powi(-24));
    }

    #[test]
    fn ratios() {
        let check = |e_a, e_c, expected: f64| assert_eq!(ratio(e_a, e_c, 1e-8), expected);
        check(0.0, 0.0, 0.0);
        check(0.0, f64::NAN, 0.0);
        check(2e-6, 1e-6, 2.0);
        // The baseline reproduces the reference exactly: the floor stands in for e_C.
        check(1e-7, 0.0, 10.0);
        check(f64::INFINITY, 1e-6, f64::INFINITY);
    }

    #[test]
    fn value_errors_and_nonfinite_elements() {
        let b = [1.0, 2.0, 2.0, 4.0];
        let a = [1.0, 2.0, 2.0, 4.0 + 1e-3];
        let c = [1.0, 2.0 + 1e-3, 2.0, 4.0];
        let e = value_errors(&a, &b, &c);
        assert!((e.e_a - 1e-3 / 5.0).abs() < 1e-12 && (e.e_c - 1e-3 / 5.0).abs() < 1e-12);
        assert_eq!((e.nonfinite_unexcused, e.nonfinite_excused), (0, 0));

        let nan = f64::NAN;
        let inf = f64::INFINITY;
        // A: NaN where B has a number and C a number (unexcused), Inf where C has the same Inf
        // (excused); B: NaN where A has a number and so does C (excused: the baseline is finite
        // there too).
        let b = [1.0, 2.0, nan, 4.0];
        let a = [nan, inf, 3.0, 4.0];
        let c = [1.0, inf, 3.5, 4.0];
        let e = value_errors(&a, &b, &c);
        assert_eq!((e.nonfinite_unexcused, e.nonfinite_excused), (1, 2));
        assert_eq!((e.e_a, e.e_c), (0.0, 0.0));
        // NaN facing NaN agrees.
        let e = value_errors(&[nan, 1.0], &[nan, 1.0], &[nan, 1.0]);
        assert_eq!(
            (e.e_a, e.nonfinite_unexcused, e.nonfinite_excused),
            (0.0, 0, 0)
        );
        // B all zeros: relative error is infinite unless the other side is zero too.
        let e = value_errors(&[0.0, 1.0], &[0.0, 0.0], &[0.0, 0.0]);
        assert_eq!((e.e_a, e.e_c), (f64::INFINITY, 0.0));
    }

    fn record(rms: Option<f64>, mean: Option<f64>, std: Option<f64>) -> TraceRecord {
        TraceRecord {
            name: "x".into(),
            shape: vec![4],
            dtype: "F32".into(),
            blake3: "0".repeat(64),
            rms,
            num_elements: 4,
            stats: mean.map(|m| Stats {
                mean: Some(m),
                std,
                ..Stats::default()
            }),
            ..TraceRecord::default()
        }
    }

    #[test]
    fn stats_errors() {
        let b = record(Some(2.0), Some(0.0), Some(2.0));
        let check =
            |x: TraceRecord, expected: Option<f64>| assert_eq!(stats_error(&x, &b), expected);
        check(record(Some(2.0), Some(0.0), Some(2.0)), Some(0.0));
        check(record(Some(2.5), Some(0.0), Some(2.0)), Some(0.25));
        check(record(Some(2.0), Some(1.0), Some(2.0)), Some(0.5));
        // Seed records: rms only.
        check(record(Some(1.0), None, None), Some(0.5));
        check(record(None, None, None), None);
        // A non-finite value makes rms null: the scale comes from mean and std.
        let b = record(None, Some(3.0), Some(4.0));
        assert_eq!(
            stats_error(&record(None, Some(3.5), Some(4.0)), &b),
            Some(0.1)
        );
        let zero = record(Some(0.0), Some(0.0), Some(0.0));
        assert_eq!(
            stats_error(&record(Some(1.0), Some(0.0), Some(1.0)), &zero),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn top1_rows_the_baseline_keeps() {
        // Row 0: A flips the top token, C keeps it (unexcused). Row 1: A and C both flip it
        // (a near tie that A's precision cannot resolve: excused).
        let b = [0.0, 1.0, 1.0, 1.001];
        let a = [1.5, 1.0, 1.001, 1.0];
        let c = [0.0, 1.0, 1.001, 1.0];
        assert_eq!(top1_unexcused(&a, &b, &c, 2), (1, Some(0)));
    }

    proptest::proptest! {
        /// r depends on how A's error compares with the baseline's, not on their size: scaling
        /// both deviations by the same factor leaves it unchanged (while the floor is below both).
        #[test]
        fn ratio_is_invariant_when_both_errors_scale_together(
            b in proptest::collection::vec(0.5f64..100.0, 1..64),
            da in proptest::collection::vec(-1.0f64..1.0, 64),
            dc in proptest::collection::vec(0.1f64..1.0, 64),
            s1 in 1e-5f64..1e-2,
            s2 in 1e-5f64..1e-2,
        ) {
            let r_at = |s: f64| {
                let a: Vec<f64> = b.iter().zip(&da).map(|(y, d)| y * (1.0 + s * d)).collect();
                let c: Vec<f64> = b.iter().zip(&dc).map(|(y, d)| y * (1.0 + s * d)).collect();
                let e = value_errors(&a, &b, &c);
                ratio(e.e_a, e.e_c, 1e-12)
            };
            let (r1, r2) = (r_at(s1), r_at(s2));
            proptest::prop_assert!((r1 - r2).abs() <= 1e-6 * r1.max(r2) + 1e-9, "{} vs {}", r1, r2);
        }
    }
}
