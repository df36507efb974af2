//! One matched pair judged: the layout hook, the tolerance judgement and, with a baseline, the
//! calibrated one. Shared by the in-memory and the streaming diff.

use std::sync::Arc;

use crate::baseline::{calibrate, Rec, Third};
use crate::error::Result;
use crate::intern::Interner;
use crate::options::DiffOptions;
use crate::report::{AppliedTolerance, Evidence, Pair, Verdict, Warning};
use crate::rules::Tolerance;
use crate::sides::Views;
use crate::tolerance::{judge_stats, judge_values, stats_delta};
use crate::values::load_or_warn;

/// A matched pair's baseline record: `None` when the diff is not calibrated, `Some(None)` when
/// the baseline has no such record.
pub(crate) type BaselineRecord<'a> = Option<Option<Rec<'a>>>;

/// Judges the record `a` of A against its partner `b` of B (and its baseline record); the
/// pair's text comes from `texts`.
pub(crate) fn compare_pair(
    position: u64,
    a: Rec<'_>,
    b: Rec<'_>,
    baseline: BaselineRecord<'_>,
    options: &DiffOptions,
    texts: &mut Interner<AppliedTolerance>,
    warnings: &mut Vec<Warning>,
) -> Result<Pair> {
    let (ra, rb) = (&a.r.record, &b.r.record);
    let (tol, source) = options.rules.tolerance(&rb.name, &ra.dtype, &rb.dtype);
    let mut notes: Vec<String> = Vec::new();
    let view = Views::new(options, ra, rb, &mut notes);
    if view.a.shape != view.b.shape && view.a.len == view.b.len {
        notes.push(format!(
            "shapes differ ({:?} vs {:?}): compared element by element in C order",
            view.a.shape, view.b.shape
        ));
    }
    let mut pair = matched(texts, position, a, b, tol_applied(&tol, source));
    let loaded = judge(&mut pair, a, b, &view, &tol, options, warnings, &mut notes)?;
    // A pair whose values are equal has nothing for a baseline to excuse: without a baseline
    // record (a point the baseline's engine does not record, such as the token ids) it is not
    // left uncalibrated.
    let exact = pair.error == Some(0.0)
        && pair.verdict != Verdict::Diverged
        && matches!(pair.evidence, Evidence::Hash | Evidence::Values);
    if let Some(base) = baseline.filter(|b| b.is_some() || !exact) {
        if pair.verdict != Verdict::Incompatible {
            let third = Third {
                baseline: base,
                loaded,
            };
            let cal = calibrate(
                &mut pair,
                (a, b),
                &view,
                third,
                options,
                warnings,
                &mut notes,
            )?;
            pair.calibration = Some(Box::new(cal));
        }
    }
    if !notes.is_empty() {
        pair.reason = Some(notes.join("; "));
    }
    Ok(pair)
}

fn tol_applied(tol: &Tolerance, source: String) -> AppliedTolerance {
    AppliedTolerance {
        atol: tol.atol,
        rtol: tol.rtol,
        source,
    }
}

/// The pair before any judgement: identical by hash.
fn matched(
    texts: &mut Interner<AppliedTolerance>,
    position: u64,
    a: Rec<'_>,
    b: Rec<'_>,
    tolerance: AppliedTolerance,
) -> Pair {
    let (ra, rb) = (&a.r.record, &b.r.record);
    let file_a: Arc<str> = Arc::from(a.r.file.as_str());
    let file_b = if b.r.file == a.r.file {
        Arc::clone(&file_a)
    } else {
        Arc::from(b.r.file.as_str())
    };
    Pair {
        position,
        only_in: None,
        name_a: Some(texts.text(&ra.name)),
        name_b: Some(texts.text(&rb.name)),
        occurrence: a.r.occurrence,
        index: ra.index,
        seq: ra.seq,
        layer: ra.layer,
        stage: ra.stage.as_deref().map(|s| texts.text(s)),
        verdict: Verdict::Identical,
        evidence: Evidence::Hash,
        reason: None,
        shape: [Some(texts.shape(&ra.shape)), Some(texts.shape(&rb.shape))],
        dtype: [Some(texts.text(&ra.dtype)), Some(texts.text(&rb.dtype))],
        file: [Some(file_a), Some(file_b)],
        tolerance: Some(texts.tolerance(tolerance)),
        stats: Some(stats_delta(ra, rb)),
        values: None,
        logits: None,
        error: Some(0.0),
        calibration: None,
        sketch: None,
    }
}

/// The tolerance judgement: incompatible, identical, on values or on statistics. Returns the
/// values of A and B when they were loaded, for the calibration.
#[allow(clippy::too_many_arguments)]
fn judge(
    pair: &mut Pair,
    a: Rec<'_>,
    b: Rec<'_>,
    view: &Views,
    tol: &Tolerance,
    options: &DiffOptions,
    warnings: &mut Vec<Warning>,
    notes: &mut Vec<String>,
) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
    let (ra, rb) = (&a.r.record, &b.r.record);
    if view.failed || view.a.len != view.b.len {
        incompatible(pair);
        notes.insert(
            0,
            format!(
                "element counts differ: {} {:?} vs {} {:?}",
                view.a.len, view.a.shape, view.b.len, view.b.shape
            ),
        );
        return Ok(None);
    }
    if !view.planned() && ra.blake3.eq_ignore_ascii_case(&rb.blake3) {
        // Bit-identical canonical F32 values: nothing more to learn.
        return Ok(None);
    }
    let both = options.use_values && a.r.values.is_some() && b.r.values.is_some();
    let va = if both {
        load_or_warn(a.source, a.r, "a", options.strict, warnings)?.and_then(|v| view.a.apply(v))
    } else {
        None
    };
    let vb = match va {
        Some(_) => load_or_warn(b.source, b.r, "b", options.strict, warnings)?
            .and_then(|v| view.b.apply(v)),
        None => None,
    };
    match (va, vb) {
        (Some(va), Some(vb)) => {
            judge_values(pair, &va, &vb, &view.a.shape, tol, options, &rb.name, notes);
            return Ok(Some((va, vb)));
        }
        _ if view.drops() => {
            incompatible(pair);
            notes.push(
                "a layout drops elements: judged on raw values only, and they are not on both \
                 sides"
                    .to_owned(),
            );
        }
        _ => {
            if options.use_values && a.r.values.is_some() != b.r.values.is_some() {
                let side = if a.r.values.is_some() { "A" } else { "B" };
                notes.push(format!("values saved on side {side} only"));
            }
            let reordered = view.planned();
            if !crate::sketch::judge_sketch(pair, ra, rb, tol, reordered, notes) {
                judge_stats(pair, ra, rb, tol, notes);
            }
        }
    }
    Ok(None)
}

fn incompatible(pair: &mut Pair) {
    pair.verdict = Verdict::Incompatible;
    pair.evidence = Evidence::Shape;
    pair.error = None;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use trace_core::record::TraceRecord;
    use trace_core::run::RunRecord;

    use super::*;
    use crate::values::Dir;

    fn run_record(name: &str, occurrence: u64, hash: char) -> RunRecord {
        RunRecord {
            file: "records.jsonl:1".to_owned(),
            record: TraceRecord {
                name: name.to_owned(),
                shape: vec![1, 16],
                dtype: "F32".to_owned(),
                blake3: hash.to_string().repeat(64),
                rms: Some(1.0),
                num_elements: 16,
                stage: Some("q".to_owned()),
                ..TraceRecord::default()
            },
            occurrence,
            values: None,
        }
    }

    /// What a report holds per pair: most of an in-memory diff's memory (docs/FORMAT.md,
    /// "Why 200,000"). A field only some pairs have belongs in a box.
    #[test]
    fn a_pair_stays_small() {
        let size = std::mem::size_of::<Pair>();
        assert!(size <= 472, "a Pair is {size} bytes");
    }

    /// Judges each `(A, B)` pair in turn with one interner (as a diff does), every pair with
    /// the same `baseline`.
    fn judge_all(pairs: &[(RunRecord, RunRecord)], baseline: BaselineRecord<'_>) -> Vec<Pair> {
        let (options, dir) = (DiffOptions::default(), Dir(Path::new(".")));
        let mut texts = Interner::sharing();
        let mut warnings = Vec::new();
        let rec = |r| Rec { source: &dir, r };
        pairs
            .iter()
            .map(|(ra, rb)| {
                let (a, b) = (rec(ra), rec(rb));
                compare_pair(0, a, b, baseline, &options, &mut texts, &mut warnings).unwrap()
            })
            .collect()
    }

    /// Equal values need no baseline: a pair identical by hash and without a baseline record
    /// stays out of the calibration; a pair that differs is marked as missing its record.
    #[test]
    fn only_pairs_that_differ_need_a_baseline_record() {
        let pairs = [
            (run_record("blk0/q", 0, 'a'), run_record("blk0/q", 0, 'a')),
            (run_record("blk0/q", 0, 'a'), run_record("blk0/q", 0, 'b')),
        ];
        let [same, other] = <[Pair; 2]>::try_from(judge_all(&pairs, Some(None))).unwrap();
        assert_eq!(same.verdict, Verdict::Identical);
        assert!(same.calibration.is_none());
        let status = other.calibration.map(|c| c.status);
        assert_eq!(status, Some(crate::report::CalibrationStatus::Missing));
    }

    #[test]
    fn pairs_share_their_text() {
        let pairs = [
            (run_record("blk0/q", 0, 'a'), run_record("blk0/q", 0, 'a')),
            (run_record("blk0/q", 1, 'a'), run_record("blk0/q", 1, 'b')),
        ];
        let [p0, p1] = <[Pair; 2]>::try_from(judge_all(&pairs, None)).unwrap();
        assert_eq!(
            (p0.verdict, p1.verdict),
            (Verdict::Identical, Verdict::WithinTolerance)
        );
        let same = |x: &Option<Arc<str>>, y: &Option<Arc<str>>| {
            Arc::ptr_eq(x.as_ref().unwrap(), y.as_ref().unwrap())
        };
        assert!(same(&p0.name_a, &p1.name_a) && same(&p0.name_a, &p1.name_b));
        assert!(same(&p0.stage, &p1.stage) && same(&p0.dtype[0], &p1.dtype[1]));
        assert!(Arc::ptr_eq(
            p0.shape[0].as_ref().unwrap(),
            p1.shape[1].as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            p0.tolerance.as_ref().unwrap(),
            p1.tolerance.as_ref().unwrap()
        ));
        // Equal record files on both sides: one copy.
        assert!(same(&p1.file[0], &p1.file[1]));
    }
}
