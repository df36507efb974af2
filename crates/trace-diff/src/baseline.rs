//! A matched pair judged against its baseline record: the calibrated verdict (see
//! [`crate::calibrate`] for the formulas).

use trace_core::record::TraceRecord;

use crate::calibrate::{
    floor_for, nonfinite_counts, ratio, stats_error, top1_unexcused, value_errors,
};
use crate::error::Result;
use crate::format::{ratio_text, sci};
use crate::options::DiffOptions;
use crate::report::{Calibration, CalibrationStatus, Evidence, Pair, Verdict, Warning};
use crate::sides::{lay_out_against, SideView, Views};
use crate::values::{load_or_warn, ValueSource};

/// One side's record and where its values come from.
#[derive(Clone, Copy)]
pub(crate) struct Rec<'a> {
    /// Where the record's values are read from.
    pub(crate) source: &'a dyn ValueSource,
    /// The record.
    pub(crate) r: &'a trace_core::run::RunRecord,
}

/// What the calibration of one pair starts from: the baseline record (if any) and the values
/// of A and B already loaded.
pub(crate) struct Third<'a> {
    pub(crate) baseline: Option<Rec<'a>>,
    pub(crate) loaded: Option<(Vec<f64>, Vec<f64>)>,
}

/// `e_A`, `e_C`, the evidence they rest on and what no ratio can excuse.
struct Errors {
    evidence: Evidence,
    e_a: Option<f64>,
    e_c: Option<f64>,
    nonfinite_unexcused: u64,
    /// Logits rows whose top-1 token A changes and the baseline keeps, and the first of them.
    top1_unexcused: (u64, Option<u64>),
}

/// Judges a matched, compatible pair against its baseline record: replaces the tolerance
/// verdict by the calibrated one when the ratio can be measured, else marks the pair.
pub(crate) fn calibrate(
    pair: &mut Pair,
    (a, b): (Rec<'_>, Rec<'_>),
    views: &Views,
    third: Third<'_>,
    options: &DiffOptions,
    warnings: &mut Vec<Warning>,
    notes: &mut Vec<String>,
) -> Result<Calibration> {
    let mut cal = Calibration {
        status: CalibrationStatus::Missing,
        evidence: None,
        e_a: None,
        e_c: None,
        floor: None,
        ratio: None,
        nonfinite_unexcused: 0,
        baseline_file: None,
    };
    let Some(c) = third.baseline else {
        notes.push("no record in the baseline: judged by tolerance, not calibrated".to_owned());
        return Ok(cal);
    };
    cal.baseline_file = Some(c.r.file.clone());
    let (ra, rb, rc) = (&a.r.record, &b.r.record, &c.r.record);
    cal.status = CalibrationStatus::Unusable;
    let c_view = match baseline_view(options, &ra.name, rc, views) {
        Ok(v) if v.len == views.b.len => v,
        Ok(v) => {
            notes.push(format!(
                "the baseline record has {} elements, B's {}: judged by tolerance, not calibrated",
                v.len, views.b.len
            ));
            return Ok(cal);
        }
        Err(e) => {
            notes.push(format!(
                "the baseline record: {e}: judged by tolerance, not calibrated"
            ));
            return Ok(cal);
        }
    };
    let floor = floor_for(&ra.dtype, &rc.dtype);
    cal.floor = Some(floor);
    let identical = pair.verdict == Verdict::Identical;
    // Notes of the calibration itself, placed after its summary.
    let mut own = Vec::new();
    let errors = if identical && rc.blake3.eq_ignore_ascii_case(&rb.blake3) {
        Errors {
            evidence: Evidence::Hash,
            e_a: Some(0.0),
            e_c: Some(0.0),
            nonfinite_unexcused: 0,
            top1_unexcused: (0, None),
        }
    } else {
        let sides = Triple {
            recs: [a, b, c],
            views: [&views.a, &views.b, &c_view],
        };
        let from_values = value_triple(&sides, identical, third.loaded, options, warnings)?;
        match from_values {
            Some(e) => e,
            None => {
                if options.use_values && a.r.values.is_some() && b.r.values.is_some() {
                    own.push("the baseline has no usable values".to_owned());
                }
                sketch_errors(ra, rb, rc, identical)
                    .unwrap_or_else(|| stats_errors(ra, rb, rc, identical))
            }
        }
    };
    let (Some(e_a), Some(e_c)) = (errors.e_a, errors.e_c) else {
        notes.push(
            "no statistic common to A, B and the baseline: judged by tolerance, not calibrated"
                .to_owned(),
        );
        return Ok(cal);
    };
    cal.e_a = Some(e_a);
    cal.e_c = Some(e_c);
    if !e_c.is_finite() {
        notes.push(
            "the baseline's error is not finite (B is all zeros where the baseline is not): judged by tolerance, not calibrated"
                .to_owned(),
        );
        return Ok(cal);
    }
    let r = ratio(e_a, e_c, floor);
    cal.status = CalibrationStatus::Calibrated;
    cal.evidence = Some(errors.evidence);
    cal.ratio = Some(r);
    cal.nonfinite_unexcused = errors.nonfinite_unexcused;
    if !identical {
        let measured = Measured {
            errors: &errors,
            e_a,
            e_c,
            floor,
            ratio: r,
        };
        judge_ratio(pair, &measured, own, options.max_ratio, notes);
    }
    Ok(cal)
}

/// What the calibration of a pair measured.
struct Measured<'e> {
    errors: &'e Errors,
    e_a: f64,
    e_c: f64,
    floor: f64,
    ratio: f64,
}

/// The calibrated verdict of a pair that is not identical, with its notes first (the
/// tolerance's notes kept after them, or summed up when the tolerance alone judged otherwise).
fn judge_ratio(
    pair: &mut Pair,
    m: &Measured<'_>,
    own: Vec<String>,
    k: f64,
    notes: &mut Vec<String>,
) {
    let errors = m.errors;
    let r = m.ratio;
    let mut failures = Vec::new();
    if errors.nonfinite_unexcused > 0 {
        failures.push(format!(
            "{} NaN/Inf {} in A but not in B, and the baseline does not share them",
            errors.nonfinite_unexcused,
            if errors.evidence == Evidence::Values {
                "elements"
            } else {
                "counted"
            }
        ));
    }
    if let (n @ 1.., first) = errors.top1_unexcused {
        failures.push(format!(
            "top-1 token differs from B's in {n} rows where the baseline's agrees (first row {})",
            first.unwrap_or(0)
        ));
    }
    let within = r <= k;
    let tolerance_verdict = pair.verdict;
    pair.verdict = if within && failures.is_empty() {
        Verdict::WithinTolerance
    } else {
        Verdict::Diverged
    };
    let tolerance_notes = std::mem::take(notes);
    notes.push(format!(
        "calibrated on {}: ratio {} {} {k} (e_A {}, e_C {}, floor {})",
        errors.evidence.name(),
        ratio_text(Some(r)),
        if within { "<=" } else { ">" },
        sci(Some(m.e_a)),
        sci(Some(m.e_c)),
        sci(Some(m.floor))
    ));
    notes.extend(failures);
    notes.extend(own);
    if tolerance_verdict != pair.verdict {
        let why = if tolerance_notes.is_empty() {
            String::new()
        } else {
            format!(": {}", tolerance_notes.join("; "))
        };
        notes.push(format!(
            "the tolerance alone: {}{why}",
            tolerance_verdict.name()
        ));
    } else {
        notes.extend(tolerance_notes);
    }
}

/// A, B and the baseline: their records and how each is laid out for the comparison.
struct Triple<'a, 'v> {
    recs: [Rec<'a>; 3],
    views: [&'v SideView; 3],
}

/// The errors from raw values, when all three runs have them (and values are wanted); `None`
/// otherwise, or when a file cannot be used (a warning says why).
fn value_triple(
    sides: &Triple<'_, '_>,
    identical: bool,
    loaded: Option<(Vec<f64>, Vec<f64>)>,
    options: &DiffOptions,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Errors>> {
    let [a, b, c] = sides.recs;
    let needs_a = !identical;
    if !(options.use_values
        && b.r.values.is_some()
        && c.r.values.is_some()
        && (a.r.values.is_some() || !needs_a))
    {
        return Ok(None);
    }
    let mut load = |i: usize, side: &'static str| -> Result<Option<Vec<f64>>> {
        let r = sides.recs[i];
        Ok(load_or_warn(r.source, r.r, side, options.strict, warnings)?
            .and_then(|v| sides.views[i].apply(v)))
    };
    let Some(vc) = load(2, "c")? else {
        return Ok(None);
    };
    let (va, vb) = match loaded {
        Some(ab) => ab,
        None => {
            let Some(vb) = load(1, "b")? else {
                return Ok(None);
            };
            // Identical to B: A's values are B's.
            let va = if needs_a {
                match load(0, "a")? {
                    Some(va) => va,
                    None => return Ok(None),
                }
            } else {
                vb.clone()
            };
            (va, vb)
        }
    };
    let e = value_errors(&va, &vb, &vc);
    let b_name = &b.r.record.name;
    let top1 = if options.rules.is_logits(b_name) {
        let vocab = sides.views[1].shape.last().copied().unwrap_or(1);
        top1_unexcused(&va, &vb, &vc, vocab)
    } else {
        (0, None)
    };
    Ok(Some(Errors {
        evidence: Evidence::Values,
        e_a: Some(e.e_a),
        e_c: Some(e.e_c),
        nonfinite_unexcused: e.nonfinite_unexcused,
        top1_unexcused: top1,
    }))
}

/// The baseline record `rc` as compared: through its own view's layout when it has one, else
/// through B's (the pair's `b_layout`), the other side's shape being B's as compared.
fn baseline_view(
    options: &DiffOptions,
    a_name: &str,
    rc: &TraceRecord,
    views: &Views,
) -> std::result::Result<SideView, String> {
    let layout = match options.rules.baseline_layout(&rc.name) {
        Some(own) => own,
        None => options.rules.layouts(a_name).b.as_ref(),
    };
    lay_out_against(layout, rc, &views.b.shape)
}

/// The errors from recorded statistics (`rms` alone for seed records).
/// The errors estimated from the three records' sketches, when they all carry comparable ones.
fn sketch_errors(
    a: &TraceRecord,
    b: &TraceRecord,
    c: &TraceRecord,
    identical: bool,
) -> Option<Errors> {
    let (e_a, e_c) = crate::sketch::calibration_errors(a, b, c)?;
    let exact_c = c.blake3.eq_ignore_ascii_case(&b.blake3);
    Some(Errors {
        evidence: Evidence::Sketch,
        e_a: Some(if identical { 0.0 } else { e_a }),
        e_c: Some(if exact_c { 0.0 } else { e_c }),
        nonfinite_unexcused: 0,
        top1_unexcused: (0, None),
    })
}

fn stats_errors(a: &TraceRecord, b: &TraceRecord, c: &TraceRecord, identical: bool) -> Errors {
    let all_stats = a.stats.is_some() && b.stats.is_some() && c.stats.is_some();
    // NaN/Inf counts of A that differ from B's are excused when the baseline has A's counts.
    let nonfinite_unexcused = match (
        nonfinite_counts(a),
        nonfinite_counts(b),
        nonfinite_counts(c),
    ) {
        (Some(x), Some(y), Some(z)) if x != y && x != z => x.0.abs_diff(y.0) + x.1.abs_diff(y.1),
        _ => 0,
    };
    let exact_c = c.blake3.eq_ignore_ascii_case(&b.blake3);
    Errors {
        evidence: if all_stats {
            Evidence::Stats
        } else {
            Evidence::Rms
        },
        e_a: if identical {
            Some(0.0)
        } else {
            stats_error(a, b)
        },
        e_c: if exact_c {
            Some(0.0)
        } else {
            stats_error(c, b)
        },
        nonfinite_unexcused,
        top1_unexcused: (0, None),
    }
}
