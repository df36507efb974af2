//! The tolerance judgement of a matched pair: element-wise on raw values, else on recorded
//! statistics.

use trace_core::record::TraceRecord;

use crate::format::{num, sci};
use crate::metrics::{compare_logits, compare_values, ValueMetrics};
use crate::options::DiffOptions;
use crate::report::{Evidence, Pair, StatsDelta, Verdict};
use crate::rules::Tolerance;

#[allow(clippy::too_many_arguments)]
pub(crate) fn judge_values(
    pair: &mut Pair,
    va: &[f64],
    vb: &[f64],
    shape: &[usize],
    tol: &Tolerance,
    options: &DiffOptions,
    b_name: &str,
    notes: &mut Vec<String>,
) {
    let m = compare_values(va, vb, shape, tol);
    pair.evidence = Evidence::Values;
    pair.error = Some(m.rel_l2);
    pair.verdict = if m.failed == 0 {
        Verdict::WithinTolerance
    } else {
        Verdict::Diverged
    };
    if m.failed > 0 {
        notes.insert(
            0,
            format!(
                "{} of {} elements outside tolerance (first at {}); max |a-b| = {:.3e} at {:?} (a = {}, b = {})",
                m.failed,
                m.elements,
                first_failure(&m, va, vb, shape, tol),
                m.max_abs,
                m.max_abs_at,
                num(m.a_at_max),
                num(m.b_at_max)
            ),
        );
        if m.nonfinite_mismatches > 0 {
            notes.push(format!(
                "{} elements are NaN or Inf on one side only",
                m.nonfinite_mismatches
            ));
        }
    }
    if options.rules.is_logits(b_name) {
        if let Some(l) = compare_logits(va, vb, shape, options.rules.top_k()) {
            if l.top1_agree < l.rows {
                pair.verdict = Verdict::Diverged;
                notes.push(format!(
                    "top-1 token differs in {} of {} rows (first row {})",
                    l.rows - l.top1_agree,
                    l.rows,
                    l.first_top1_mismatch.unwrap_or(0)
                ));
            }
            pair.logits = Some(Box::new(l));
        }
    }
    pair.values = Some(Box::new(m));
}

/// The first failing element: its position and, when finite, how far it is from each term of
/// the tolerance (`[0, 5]: |a-b| 2.000e-3 above atol 1e-4, rtol·|b| 3.000e-8 and rtol·RMS(b)
/// 7.370e-4, RMS(b) 7.370e0`).
fn first_failure(
    m: &ValueMetrics,
    va: &[f64],
    vb: &[f64],
    shape: &[usize],
    tol: &Tolerance,
) -> String {
    let Some(at) = &m.first_failed_at else {
        return "-".to_owned();
    };
    let flat = at
        .iter()
        .zip(shape)
        .fold(0usize, |flat, (&i, &d)| flat * d + i);
    match (va.get(flat), vb.get(flat)) {
        (Some(&x), Some(&y)) if x.is_finite() && y.is_finite() => format!(
            "{at:?}: |a-b| {:.3e} above atol {:e}, rtol·|b| {:.3e} and rtol·RMS(b) {:.3e}, RMS(b) {}",
            (x - y).abs(),
            tol.atol,
            tol.rtol * y.abs(),
            tol.rtol * m.scale,
            sci(Some(m.scale))
        ),
        (Some(&x), Some(&y)) => format!("{at:?}: a = {}, b = {}", num(x), num(y)),
        _ => format!("{at:?}"),
    }
}

fn abs_delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some((a? - b?).abs())
}

pub(crate) fn stats_delta(a: &TraceRecord, b: &TraceRecord) -> StatsDelta {
    let mut d = StatsDelta {
        rms_a: a.rms,
        rms_b: b.rms,
        rms: abs_delta(a.rms, b.rms),
        ..StatsDelta::default()
    };
    if let (Some(sa), Some(sb)) = (&a.stats, &b.stats) {
        d.mean = abs_delta(sa.mean, sb.mean);
        d.std = abs_delta(sa.std, sb.std);
        d.min = abs_delta(sa.min, sb.min);
        d.max = abs_delta(sa.max, sb.max);
        d.nan_count = Some([sa.nan_count, sb.nan_count]);
        d.inf_count = Some([sa.inf_count, sb.inf_count]);
    }
    d
}

/// Judges on recorded statistics: `|x_a - x_b| <= atol + sqrt(2) * rtol * rms_b` for rms, mean
/// and std, a necessary condition of every element passing ([`Tolerance::stats_bound`],
/// `docs/FORMAT.md`).
pub(crate) fn judge_stats(
    pair: &mut Pair,
    a: &TraceRecord,
    b: &TraceRecord,
    tol: &Tolerance,
    notes: &mut Vec<String>,
) {
    let bound = tol.stats_bound(b.rms.unwrap_or(0.0));
    let mut fields = vec![("rms", a.rms, b.rms)];
    pair.evidence = Evidence::Rms;
    let mut failures = Vec::new();
    if let (Some(sa), Some(sb)) = (&a.stats, &b.stats) {
        pair.evidence = Evidence::Stats;
        fields.push(("mean", sa.mean, sb.mean));
        fields.push(("std", sa.std, sb.std));
        if sa.nan_count != sb.nan_count || sa.inf_count != sb.inf_count {
            failures.push(format!(
                "NaN/Inf counts differ (a: {} NaN, {} Inf; b: {} NaN, {} Inf)",
                sa.nan_count, sa.inf_count, sb.nan_count, sb.inf_count
            ));
        }
    }
    let mut any_defined = false;
    for (field, x, y) in fields {
        match (x, y) {
            (Some(x), Some(y)) => {
                any_defined = true;
                let d = (x - y).abs();
                if d.is_nan() || d > bound {
                    failures.push(format!(
                        "{field} differs by {d:.3e} > {bound:.3e} (a = {}, b = {})",
                        num(x),
                        num(y)
                    ));
                }
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => failures.push(format!(
                "{field} is defined on one side only (non-finite or empty values on the other)"
            )),
        }
    }
    pair.error = match (a.rms, b.rms) {
        (Some(x), Some(y)) if y != 0.0 => Some((x - y).abs() / y.abs()),
        (Some(x), Some(y)) if x == y => Some(0.0),
        _ => None,
    };
    if !any_defined && failures.is_empty() {
        pair.evidence = Evidence::HashOnly;
        pair.verdict = Verdict::Diverged;
        notes.insert(
            0,
            "hashes differ and neither side has values, statistics or a finite rms".to_owned(),
        );
        return;
    }
    if failures.is_empty() {
        pair.verdict = Verdict::WithinTolerance;
    } else {
        pair.verdict = Verdict::Diverged;
        notes.splice(0..0, failures);
    }
}

#[cfg(test)]
mod tests {
    use trace_core::run::RunRecord;
    use trace_core::Stats;

    use super::*;

    const H1: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
    const H2: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn record(hash: &str, rms: Option<f64>, stats: Option<Stats>) -> TraceRecord {
        TraceRecord {
            name: "x".into(),
            shape: vec![4],
            dtype: "F32".into(),
            blake3: hash.into(),
            rms,
            num_elements: 4,
            stats,
            ..TraceRecord::default()
        }
    }

    fn stats(mean: f64, std: f64, nan: u64) -> Stats {
        Stats {
            min: Some(-1.0),
            max: Some(1.0),
            mean: Some(mean),
            std: Some(std),
            nan_count: nan,
            inf_count: 0,
        }
    }

    fn check(a: TraceRecord, b: TraceRecord, verdict: Verdict, evidence: Evidence) {
        let mut pair = Pair::unmatched(
            0,
            "a",
            &RunRecord {
                file: "f".into(),
                record: a.clone(),
                occurrence: 0,
                values: None,
            },
            None,
        );
        let mut notes = Vec::new();
        judge_stats(&mut pair, &a, &b, &Tolerance::new(1e-5, 1e-4), &mut notes);
        assert_eq!(
            (pair.verdict, pair.evidence),
            (verdict, evidence),
            "{notes:?}"
        );
    }

    #[test]
    fn stats_judgement() {
        use Evidence::{HashOnly, Rms, Stats};
        use Verdict::{Diverged, WithinTolerance};
        check(
            record(H1, Some(1.0), None),
            record(H2, Some(1.0 + 5e-5), None),
            WithinTolerance,
            Rms,
        );
        check(
            record(H1, Some(1.0), None),
            record(H2, Some(1.01), None),
            Diverged,
            Rms,
        );
        check(
            record(H1, None, None),
            record(H2, Some(1.0), None),
            Diverged,
            Rms,
        );
        check(
            record(H1, None, None),
            record(H2, None, None),
            Diverged,
            HashOnly,
        );
        let s = |m, sd, n| Some(stats(m, sd, n));
        check(
            record(H1, Some(1.0), s(0.0, 1.0, 0)),
            record(H2, Some(1.0), s(1e-6, 1.0, 0)),
            WithinTolerance,
            Stats,
        );
        check(
            record(H1, Some(1.0), s(0.0, 1.0, 0)),
            record(H2, Some(1.0), s(0.1, 1.0, 0)),
            Diverged,
            Stats,
        );
        check(
            record(H1, None, s(0.0, 1.0, 1)),
            record(H2, None, s(0.0, 1.0, 0)),
            Diverged,
            Stats,
        );
        check(
            record(H1, None, s(0.0, 1.0, 1)),
            record(H2, None, s(0.0, 1.0, 1)),
            WithinTolerance,
            Stats,
        );
    }

    /// Naive f64 statistics of `v`, as trace-core records them.
    fn stats_of(v: &[f64]) -> (f64, Stats) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        let rms = (v.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
        let stats = Stats {
            min: v.iter().copied().reduce(f64::min),
            max: v.iter().copied().reduce(f64::max),
            mean: Some(mean),
            std: Some(var.sqrt()),
            nan_count: 0,
            inf_count: 0,
        };
        (rms, stats)
    }

    /// The first failure is cited against each term, with the scale used.
    #[test]
    fn first_failure_names_every_term_and_the_scale() {
        let b = [0.0, 3.0, 0.0, 4.0]; // RMS 2.5
        let a = [0.0, 3.0, 0.1, 4.0];
        let mut pair = Pair::unmatched(
            0,
            "a",
            &RunRecord {
                file: "f".into(),
                record: record(H1, None, None),
                occurrence: 0,
                values: None,
            },
            None,
        );
        let mut notes = Vec::new();
        let tol = Tolerance::new(1e-5, 1e-4);
        judge_values(
            &mut pair,
            &a,
            &b,
            &[2, 2],
            &tol,
            &DiffOptions::default(),
            "x",
            &mut notes,
        );
        assert_eq!(pair.verdict, Verdict::Diverged);
        assert!(
            notes[0].starts_with(
                "1 of 4 elements outside tolerance (first at [1, 0]: |a-b| 1.000e-1 above atol \
                 1e-5, rtol·|b| 0.000e0 and rtol·RMS(b) 2.500e-4, RMS(b) 2.500e0)"
            ),
            "{notes:?}"
        );
        // 2e-4 there passes by the scale term alone.
        let a = [0.0, 3.0, 2e-4, 4.0];
        let m = compare_values(&a, &b, &[2, 2], &tol);
        assert_eq!((m.failed, m.within_by_scale, m.scale), (0, 1, 2.5));
    }

    /// Polygraphy's rule, as trace-diff applied it before the scale term.
    fn old_rule(tol: &Tolerance, a: f64, b: f64) -> bool {
        let d = (a - b).abs();
        d <= tol.atol || d <= tol.rtol * b.abs()
    }

    /// Every element of `b` at its bound (`sign` of the error per element), then the statistics
    /// judged: they must pass.
    fn stats_at_the_bound(b: &[f64], shares: &[f64], tol: &Tolerance) -> (Pair, Vec<String>) {
        let scale = crate::metrics::finite_rms(b);
        let a: Vec<f64> = b
            .iter()
            .zip(shares)
            .map(|(&y, &s)| y + s * tol.bound(y, scale))
            .collect();
        let m = crate::metrics::compare_values(&a, b, &[b.len()], tol);
        assert_eq!(m.failed, 0, "{m:?}");
        let (rms_a, sa) = stats_of(&a);
        let (rms_b, sb) = stats_of(b);
        let (ra, rb) = (
            record(H1, Some(rms_a), Some(sa)),
            record(H2, Some(rms_b), Some(sb)),
        );
        let mut pair = Pair::unmatched(
            0,
            "a",
            &RunRecord {
                file: "f".into(),
                record: ra.clone(),
                occurrence: 0,
                values: None,
            },
            None,
        );
        let mut notes = Vec::new();
        judge_stats(&mut pair, &ra, &rb, tol, &mut notes);
        (pair, notes)
    }

    /// A sparse record is where the scale term admits most: 99 zeros and one 10 (RMS 1), every
    /// element off by its whole bound. The mean moves by 1.09 rtol x RMS, past the
    /// `atol + rtol * rms_b` the statistics had before; `stats_bound`'s sqrt(2) covers it.
    #[test]
    fn stats_bound_covers_a_sparse_record() {
        let mut b = vec![0.0; 100];
        b[42] = 10.0;
        let tol = Tolerance::new(0.0, 1e-3);
        let (pair, notes) = stats_at_the_bound(&b, &[0.99; 100], &tol);
        assert_eq!(pair.verdict, Verdict::WithinTolerance, "{notes:?}");
        let (_, sa) = stats_of(
            &b.iter()
                .map(|&y| y + 0.99 * tol.bound(y, 1.0))
                .collect::<Vec<_>>(),
        );
        let moved = (sa.mean.unwrap() - 0.1).abs();
        assert!(
            moved > tol.rtol * 1.0 && moved <= tol.stats_bound(1.0),
            "{moved}"
        );
    }

    proptest::proptest! {
        /// Where B's element is at least its record's RMS the scale term adds nothing: the rule
        /// is Polygraphy's, element for element.
        #[test]
        fn scale_changes_nothing_at_or_above_the_rms(
            b in -1e3f64..1e3,
            d in -1.0f64..1.0,
            below in 0.0f64..=1.0,
            atol in 0.0f64..1e-2,
            rtol in 0.0f64..1e-1,
        ) {
            let tol = Tolerance::new(atol, rtol);
            let a = b + d * (atol + rtol * b.abs()) * 2.0;
            let scale = below * b.abs();
            proptest::prop_assert_eq!(tol.passes(a, b, scale), old_rule(&tol, a, b));
            // And it never fails what the old rule passes, whatever the scale.
            proptest::prop_assert!(!old_rule(&tol, a, b) || tol.passes(a, b, scale * 1e3));
        }

        /// The same over whole records: every element whose |b| is at least B's RMS gets the
        /// old verdict, so the record fails whenever one of those fails the old rule.
        #[test]
        fn records_keep_the_old_verdict_on_large_elements(
            b in proptest::collection::vec(-100.0f64..100.0, 1..64),
            shares in proptest::collection::vec(-3.0f64..3.0, 64),
            atol in 0.0f64..1e-2,
            rtol in 0.0f64..1e-1,
        ) {
            let tol = Tolerance::new(atol, rtol);
            let a: Vec<f64> = b.iter().zip(&shares).map(|(&y, &s)| y + s * atol.max(rtol * y.abs())).collect();
            let m = crate::metrics::compare_values(&a, &b, &[b.len()], &tol);
            for (&x, &y) in a.iter().zip(&b) {
                if y.abs() >= m.scale {
                    proptest::prop_assert_eq!(tol.passes(x, y, m.scale), old_rule(&tol, x, y));
                }
            }
            let old_failed = a.iter().zip(&b).filter(|p| !old_rule(&tol, *p.0, *p.1)).count() as u64;
            proptest::prop_assert_eq!(m.failed + m.within_by_scale, old_failed);
        }

        /// The stats test is a necessary condition of the element-wise one: when every element
        /// passes, the stats pass too, so stats never report a divergence that values would not.
        /// `sparse` zeroes most of B, where the scale term admits the most.
        #[test]
        fn stats_never_contradict_values(
            b in proptest::collection::vec(-100.0f64..100.0, 1..64),
            shares in proptest::collection::vec(-0.99f64..0.99, 64),
            sparse in proptest::bool::ANY,
            atol in 0.0f64..1e-2,
            rtol in 0.0f64..1e-1,
        ) {
            let tol = Tolerance::new(atol, rtol);
            let b: Vec<f64> = b
                .iter()
                .enumerate()
                .map(|(i, &y)| if sparse && i % 8 != 0 { 0.0 } else { y })
                .collect();
            let (pair, notes) = stats_at_the_bound(&b, &shares, &tol);
            proptest::prop_assert_eq!(pair.verdict, Verdict::WithinTolerance, "{:?}", notes);
        }
    }
}
