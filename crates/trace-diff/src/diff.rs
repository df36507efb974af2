//! The comparison core: match two runs record by record and judge each pair.

use std::collections::HashMap;
use std::path::Path;

use trace_core::record::TraceRecord;
use trace_core::run::{Run, RunOptions, RunRecord};

use crate::calibrate::{
    floor_for, nonfinite_counts, ratio, stats_error, top1_unexcused, value_errors,
    DEFAULT_MAX_RATIO,
};
use crate::error::{Error, Result};
use crate::metrics::{compare_logits, compare_values};
use crate::render::{ratio_text, sci};
use crate::report::{
    num, AppliedTolerance, Calibration, CalibrationStatus, CalibrationSummary, Counts, Evidence,
    FirstDivergence, LayerError, Outcome, Pair, Report, RunInfo, StatsDelta, Verdict, Warning,
    SCHEMA, SCHEMA_VERSION,
};
use crate::rules::{Rules, Tolerance};
use crate::values;

/// How to compare.
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
    /// Calibrated diffs only ([`diff_runs_calibrated`]): the largest ratio
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

/// Reads two trace directories and compares them: `a` is the run under test, `b` the reference.
pub fn diff_dirs(a: &Path, b: &Path, options: &DiffOptions) -> Result<Report> {
    let run_options = RunOptions {
        strict: options.strict,
    };
    let run_a = Run::open_with(a, &run_options)?;
    let run_b = Run::open_with(b, &run_options)?;
    diff_runs(&run_a, &run_b, options)
}

/// Reads three trace directories and compares `a` with `b`, each pair judged against the
/// baseline `c` (the reference run in A's precision): see [`diff_runs_calibrated`].
pub fn diff_dirs_calibrated(
    a: &Path,
    b: &Path,
    baseline: &Path,
    options: &DiffOptions,
) -> Result<Report> {
    let run_options = RunOptions {
        strict: options.strict,
    };
    let run_a = Run::open_with(a, &run_options)?;
    let run_b = Run::open_with(b, &run_options)?;
    let run_c = Run::open_with(baseline, &run_options)?;
    diff_runs_calibrated(&run_a, &run_b, &run_c, options)
}

/// Compares two runs that are already read. Findings go into the report; `Err` only for
/// problems that strict mode makes fatal.
pub fn diff_runs(a: &Run, b: &Run, options: &DiffOptions) -> Result<Report> {
    diff(a, b, None, options)
}

/// Compares the run under test `a` with the reference `b`, judging each matched pair against
/// the `baseline` (the same reference run in A's precision) instead of a tolerance.
///
/// Baseline records are found by B's name and occurrence. For each pair,
/// `e_A = error(A vs B)`, `e_C = error(baseline vs B)` and `ratio = e_A / max(e_C, floor)`
/// (see [`crate::calibrate`]); the pair agrees when `ratio <= options.max_ratio`. Hash-identical
/// pairs stay identical and element-count mismatches incompatible. A pair the baseline cannot
/// judge (no record, or an unusable one) is judged by the tolerance and marked so
/// ([`Pair::calibration`]), counted in [`Report::calibration`] and named in a warning; it makes
/// the outcome `Incomplete` unless [`DiffOptions::allow_missing`].
pub fn diff_runs_calibrated(
    a: &Run,
    b: &Run,
    baseline: &Run,
    options: &DiffOptions,
) -> Result<Report> {
    let k = options.max_ratio;
    if !(k.is_finite() && k > 0.0) {
        return Err(Error::MaxRatio { value: k });
    }
    diff(a, b, Some(baseline), options)
}

/// The warnings about one side's run: the problems met reading it, and an unknown execution order.
pub(crate) fn run_warnings(
    side: &'static str,
    problems: &[trace_core::record::RecordError],
    order: trace_core::run::RunOrder,
    dir: &std::path::Path,
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

fn diff(a: &Run, b: &Run, baseline: Option<&Run>, options: &DiffOptions) -> Result<Report> {
    let rules = &options.rules;
    let mut warnings = Vec::new();
    for (side, run) in [("a", a), ("b", b)]
        .into_iter()
        .chain(baseline.map(|c| ("c", c)))
    {
        run_warnings(side, run.problems(), run.order(), run.dir(), &mut warnings);
    }

    // Ignored B records start out "used", so the unmatched pass below skips them without
    // matching the ignore globs a second time.
    let mut b_index: HashMap<(&str, u64), usize> = HashMap::with_capacity(b.len());
    let mut used = vec![false; b.len()];
    let mut ignored_b = 0;
    for (i, r) in b.records().iter().enumerate() {
        if rules.ignores_b(&r.record.name) {
            ignored_b += 1;
            used[i] = true;
        } else {
            b_index.insert(r.key(), i);
        }
    }

    // The baseline uses B's names; its ignored records are neither matched nor unused.
    let mut c_index: HashMap<(&str, u64), usize> = HashMap::new();
    let mut c_used = vec![false; baseline.map_or(0, Run::len)];
    for (i, r) in baseline.iter().flat_map(|c| c.records().iter().enumerate()) {
        if rules.ignores_b(&r.record.name) {
            c_used[i] = true;
        } else {
            c_index.insert(r.key(), i);
        }
    }

    let mut pairs = Vec::with_capacity(a.len());
    let mut ignored_a = 0;
    let mut counts = Counts::default();
    for ra in a.records() {
        if rules.ignores_a(&ra.record.name) {
            ignored_a += 1;
            continue;
        }
        let position = pairs.len() as u64;
        let mapped = rules.map_name(&ra.record.name);
        let Some(&j) = b_index.get(&(mapped.as_ref(), ra.occurrence)) else {
            counts.missing_in_b += 1;
            let reason = format!("no record {:?} (occurrence {}) in B", mapped, ra.occurrence);
            pairs.push(unmatched(position, "a", ra, Some(reason)));
            continue;
        };
        if std::mem::replace(&mut used[j], true) {
            warnings.push(Warning {
                side: None,
                message: format!(
                    "record {:?} of B is matched by more than one record of A (name mapping collapses names?)",
                    b.records()[j].record.name
                ),
            });
        }
        let rb = &b.records()[j];
        let base = baseline.map(|c| {
            c_index.get(&rb.key()).map(|&k| {
                c_used[k] = true;
                (c.dir(), &c.records()[k])
            })
        });
        let pair = compare_pair(
            position,
            (a.dir(), ra),
            (b.dir(), rb),
            base,
            options,
            &mut warnings,
        )?;
        counts.count_compared(pair.verdict);
        pairs.push(pair);
    }
    let a_pairs = pairs.len();
    for (j, rb) in b.records().iter().enumerate() {
        if !used[j] {
            counts.missing_in_a += 1;
            pairs.push(unmatched(j as u64, "b", rb, None));
        }
    }

    let first_divergence = first_divergence(&pairs[..a_pairs], a.order().is_execution_order());
    let layers = layer_profile(&pairs[..a_pairs]);
    let calibration = baseline.map(|c| {
        let unused: Vec<&RunRecord> = c
            .records()
            .iter()
            .zip(&c_used)
            .filter(|(_, &used)| !used)
            .map(|(r, _)| r)
            .collect();
        calibration_summary(c, &pairs[..a_pairs], &unused, options, &mut warnings)
    });
    let uncalibrated = calibration.as_ref().map_or(0, |s| s.missing + s.unusable);
    let missing = counts.missing_in_a + counts.missing_in_b + uncalibrated;
    let outcome = if counts.diverged + counts.incompatible > 0 {
        Outcome::Diverged
    } else if missing > 0 && !options.allow_missing {
        Outcome::Incomplete
    } else {
        Outcome::Agree
    };
    Ok(Report {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        outcome,
        a: run_info(a, ignored_a),
        b: run_info(b, ignored_b),
        rules: rules.source().map(|p| p.display().to_string()),
        counts,
        first_divergence,
        pairs,
        layers,
        warnings,
        calibration,
        ranks: None,
        streamed: None,
    })
}

/// The report's calibration section, with a warning for each kind of pair the baseline could
/// not judge and for baseline records left over.
fn calibration_summary(
    c: &Run,
    pairs: &[Pair],
    unused: &[&RunRecord],
    options: &DiffOptions,
    warnings: &mut Vec<Warning>,
) -> CalibrationSummary {
    let with = |status: CalibrationStatus| -> Vec<&Pair> {
        pairs
            .iter()
            .filter(|p| {
                p.calibration
                    .as_ref()
                    .is_some_and(|cal| cal.status == status)
            })
            .collect()
    };
    let calibrated = with(CalibrationStatus::Calibrated);
    for (status, what) in [
        (CalibrationStatus::Missing, "have no record in the baseline"),
        (
            CalibrationStatus::Unusable,
            "have a baseline record whose error cannot be measured",
        ),
    ] {
        let list = with(status);
        if let Some(first) = list.first() {
            warnings.push(Warning {
                side: Some("c"),
                message: format!(
                    "{} matched records {what} (first: #{} {:?}, occurrence {}): judged by tolerance, not calibrated",
                    list.len(),
                    first.position,
                    first.name_b.as_deref().unwrap_or_default(),
                    first.occurrence
                ),
            });
        }
    }
    if let Some(first) = unused.first() {
        warnings.push(Warning {
            side: Some("c"),
            message: format!(
                "{} baseline records match no record of B (first: {:?}, occurrence {}, in {})",
                unused.len(),
                first.record.name,
                first.occurrence,
                c.dir().display()
            ),
        });
    }
    // The ratio distribution over the pairs that are not identical: identical pairs have ratio
    // 0 and would only say how often the engine reproduces the reference bit for bit.
    let mut ratios: Vec<(f64, u64)> = calibrated
        .iter()
        .filter(|p| p.verdict != Verdict::Identical)
        .filter_map(|p| Some((p.calibration.as_ref()?.ratio?, p.position)))
        .collect();
    ratios.sort_by(|x, y| x.0.total_cmp(&y.0));
    let median = match ratios.len() {
        0 => None,
        n if n % 2 == 1 => Some(ratios[n / 2].0),
        n => Some((ratios[n / 2 - 1].0 + ratios[n / 2].0) / 2.0),
    };
    CalibrationSummary {
        baseline: run_info(
            c,
            c.records()
                .iter()
                .filter(|r| options.rules.ignores_b(&r.record.name))
                .count() as u64,
        ),
        max_ratio: options.max_ratio,
        calibrated: calibrated.len() as u64,
        diverged: calibrated
            .iter()
            .filter(|p| p.verdict.is_divergence())
            .count() as u64,
        missing: with(CalibrationStatus::Missing).len() as u64,
        unusable: with(CalibrationStatus::Unusable).len() as u64,
        unused_baseline_records: unused.len() as u64,
        ratio_median: median,
        ratio_max: ratios.last().map(|r| r.0),
        ratio_max_pair: ratios.last().map(|r| r.1),
    }
}

pub(crate) fn run_info(run: &Run, ignored: u64) -> RunInfo {
    RunInfo {
        dir: run.dir().display().to_string(),
        order: run.order().name(),
        execution_order_known: run.order().is_execution_order(),
        records: run.len() as u64,
        ignored,
    }
}

pub(crate) fn unmatched(
    position: u64,
    side: &'static str,
    r: &RunRecord,
    reason: Option<String>,
) -> Pair {
    let rec = &r.record;
    let (name_a, name_b) = match side {
        "a" => (Some(rec.name.clone()), None),
        _ => (None, Some(rec.name.clone())),
    };
    let one = |v| match side {
        "a" => [Some(v), None],
        _ => [None, Some(v)],
    };
    Pair {
        position,
        only_in: Some(side),
        name_a,
        name_b,
        occurrence: r.occurrence,
        index: rec.index,
        seq: rec.seq,
        layer: rec.layer,
        stage: rec.stage.clone(),
        verdict: Verdict::Missing,
        evidence: Evidence::None,
        reason,
        shape: one(rec.shape.clone()),
        dtype: match side {
            "a" => [Some(rec.dtype.clone()), None],
            _ => [None, Some(rec.dtype.clone())],
        },
        file: match side {
            "a" => [Some(r.file.clone()), None],
            _ => [None, Some(r.file.clone())],
        },
        tolerance: None,
        stats: None,
        values: None,
        logits: None,
        error: None,
        calibration: None,
        sketch: None,
    }
}

/// Loads one side's values; a problem is a warning (or an error in strict mode).
fn load_values(
    dir: &Path,
    r: &RunRecord,
    side: &'static str,
    strict: bool,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Vec<f64>>> {
    let Some(path) = r.values.as_ref().map(|v| dir.join(v)) else {
        return Ok(None);
    };
    match values::load(&path, &r.record.shape) {
        Ok(v) => Ok(Some(v)),
        Err(problem) if strict => Err(Error::Values { path, problem }),
        Err(problem) => {
            warnings.push(Warning {
                side: Some(side),
                message: format!(
                    "{}: {problem}; record {:?} judged without values",
                    path.display(),
                    r.record.name
                ),
            });
            Ok(None)
        }
    }
}

/// A matched pair's baseline record: `None` when the diff is not calibrated, `Some(None)` when
/// the baseline has no such record.
pub(crate) type BaselineRecord<'a> = Option<Option<(&'a Path, &'a RunRecord)>>;

pub(crate) fn compare_pair(
    position: u64,
    (run_a, a): (&Path, &RunRecord),
    (run_b, b): (&Path, &RunRecord),
    baseline: BaselineRecord<'_>,
    options: &DiffOptions,
    warnings: &mut Vec<Warning>,
) -> Result<Pair> {
    let (ra, rb) = (&a.record, &b.record);
    let (tol, source) = options.rules.tolerance(&rb.name, &ra.dtype, &rb.dtype);
    let mut notes: Vec<String> = Vec::new();
    // Layout hook (crate::transform): the `b_layout` of the pair's `[[map]]` entry brings B's
    // values into A's layout; B's shape and element count below are the transformed ones.
    let plan = options
        .rules
        .layout(&ra.name)
        .map(|l| l.plan(&rb.shape, &ra.shape));
    let (b_shape, b_len) = match &plan {
        Some(Ok(p)) => {
            notes.push(format!(
                "B's values in A's layout (b_layout): {:?} -> {:?}{}",
                rb.shape,
                p.shape,
                if p.keeps_every_element() {
                    ""
                } else {
                    ", elements dropped"
                }
            ));
            (p.shape.clone(), p.len() as u64)
        }
        _ => (rb.shape.clone(), rb.num_elements),
    };
    let plan = match plan {
        Some(Err(e)) => {
            notes.push(e);
            None
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    if ra.shape != b_shape && ra.num_elements == b_len {
        notes.push(format!(
            "shapes differ ({:?} vs {:?}): compared element by element in C order",
            ra.shape, b_shape
        ));
    }
    let mut pair = Pair {
        position,
        only_in: None,
        name_a: Some(ra.name.clone()),
        name_b: Some(rb.name.clone()),
        occurrence: a.occurrence,
        index: ra.index,
        seq: ra.seq,
        layer: ra.layer,
        stage: ra.stage.clone(),
        verdict: Verdict::Identical,
        evidence: Evidence::Hash,
        reason: None,
        shape: [Some(ra.shape.clone()), Some(rb.shape.clone())],
        dtype: [Some(ra.dtype.clone()), Some(rb.dtype.clone())],
        file: [Some(a.file.clone()), Some(b.file.clone())],
        tolerance: Some(AppliedTolerance {
            atol: tol.atol,
            rtol: tol.rtol,
            source,
        }),
        stats: Some(stats_delta(ra, rb)),
        values: None,
        logits: None,
        error: Some(0.0),
        calibration: None,
        sketch: None,
    };
    // Values loaded for the tolerance judgement, kept for the calibration.
    let mut loaded: Option<(Vec<f64>, Vec<f64>)> = None;

    let layout_failed = options.rules.layout(&ra.name).is_some() && plan.is_none();
    let dropping = plan.as_ref().is_some_and(|p| !p.keeps_every_element());
    if layout_failed || ra.num_elements != b_len {
        pair.verdict = Verdict::Incompatible;
        pair.evidence = Evidence::Shape;
        pair.error = None;
        notes.insert(
            0,
            format!(
                "element counts differ: {} {:?} vs {} {:?}",
                ra.num_elements, ra.shape, b_len, b_shape
            ),
        );
    } else if plan.is_none() && ra.blake3.eq_ignore_ascii_case(&rb.blake3) {
        // Bit-identical canonical F32 values: nothing more to learn.
    } else {
        let both = options.use_values && a.values.is_some() && b.values.is_some();
        let va = if both {
            load_values(run_a, a, "a", options.strict, warnings)?
        } else {
            None
        };
        let vb = if va.is_some() {
            load_values(run_b, b, "b", options.strict, warnings)?.and_then(|v| match &plan {
                Some(p) => p.apply(&v),
                None => Some(v),
            })
        } else {
            None
        };
        match (va, vb) {
            (Some(va), Some(vb)) => {
                judge_values(
                    &mut pair, &va, &vb, &b_shape, &tol, options, &rb.name, &mut notes,
                );
                loaded = Some((va, vb));
            }
            _ if dropping => {
                pair.verdict = Verdict::Incompatible;
                pair.evidence = Evidence::Shape;
                pair.error = None;
                notes.push(
                    "b_layout drops elements of B: judged on raw values only, and they are not \
                     on both sides"
                        .to_owned(),
                );
            }
            _ => {
                if options.use_values && a.values.is_some() != b.values.is_some() {
                    let side = if a.values.is_some() { "A" } else { "B" };
                    notes.push(format!("values saved on side {side} only"));
                }
                let reordered = plan.is_some();
                if !crate::sketch::judge_sketch(&mut pair, ra, rb, &tol, reordered, &mut notes) {
                    judge_stats(&mut pair, ra, rb, &tol, &mut notes);
                }
            }
        }
    }
    if let Some(base) = baseline {
        if pair.verdict != Verdict::Incompatible {
            let third = Third {
                baseline: base,
                loaded,
            };
            let cal = calibrate(
                &mut pair,
                (run_a, a),
                (run_b, b),
                third,
                options,
                warnings,
                &mut notes,
            )?;
            pair.calibration = Some(cal);
        }
    }
    if !notes.is_empty() {
        pair.reason = Some(notes.join("; "));
    }
    Ok(pair)
}

/// What the calibration of one pair starts from: the baseline record (if any) and the values
/// of A and B already loaded.
struct Third<'a> {
    baseline: Option<(&'a Path, &'a RunRecord)>,
    loaded: Option<(Vec<f64>, Vec<f64>)>,
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
fn calibrate(
    pair: &mut Pair,
    (run_a, a): (&Path, &RunRecord),
    (run_b, b): (&Path, &RunRecord),
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
    let Some((run_c, c)) = third.baseline else {
        notes.push("no record in the baseline: judged by tolerance, not calibrated".to_owned());
        return Ok(cal);
    };
    cal.baseline_file = Some(c.file.clone());
    let (ra, rb, rc) = (&a.record, &b.record, &c.record);
    cal.status = CalibrationStatus::Unusable;
    if rc.num_elements != rb.num_elements {
        notes.push(format!(
            "the baseline record has {} elements, B's {}: judged by tolerance, not calibrated",
            rc.num_elements, rb.num_elements
        ));
        return Ok(cal);
    }
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
        let from_values = value_triple(
            (run_a, a),
            (run_b, b),
            (run_c, c),
            identical,
            third.loaded,
            options,
            warnings,
        )?;
        match from_values {
            Some(e) => e,
            None => {
                if options.use_values && a.values.is_some() && b.values.is_some() {
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
    if identical {
        return Ok(cal);
    }
    let k = options.max_ratio;
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
        sci(Some(e_a)),
        sci(Some(e_c)),
        sci(Some(floor))
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
    Ok(cal)
}

/// The errors from raw values, when all three runs have them (and values are wanted); `None`
/// otherwise, or when a file cannot be used (a warning says why).
fn value_triple(
    (run_a, a): (&Path, &RunRecord),
    (run_b, b): (&Path, &RunRecord),
    (run_c, c): (&Path, &RunRecord),
    identical: bool,
    loaded: Option<(Vec<f64>, Vec<f64>)>,
    options: &DiffOptions,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Errors>> {
    let needs_a = !identical;
    if !(options.use_values
        && b.values.is_some()
        && c.values.is_some()
        && (a.values.is_some() || !needs_a))
    {
        return Ok(None);
    }
    let Some(vc) = load_values(run_c, c, "c", options.strict, warnings)?
        .and_then(|v| in_a_layout(options, &a.record, &c.record, v))
    else {
        return Ok(None);
    };
    let (va, vb) = match loaded {
        Some(ab) => ab,
        None => {
            let Some(vb) = load_values(run_b, b, "b", options.strict, warnings)?
                .and_then(|v| in_a_layout(options, &a.record, &b.record, v))
            else {
                return Ok(None);
            };
            // Identical to B: A's values are B's.
            let va = if needs_a {
                match load_values(run_a, a, "a", options.strict, warnings)? {
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
    let b_name = &b.record.name;
    let top1 = if options.rules.is_logits(b_name) {
        let vocab = b.record.shape.last().copied().unwrap_or(1);
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

/// Values of B or the baseline (record `r`) in A's layout, by the pair's `b_layout` (crate::transform);
/// `None` when the layout does not fit `r`'s shape.
fn in_a_layout(
    options: &DiffOptions,
    a: &TraceRecord,
    r: &TraceRecord,
    v: Vec<f64>,
) -> Option<Vec<f64>> {
    match options.rules.layout(&a.name) {
        None => Some(v),
        Some(l) => l.plan(&r.shape, &a.shape).ok()?.apply(&v),
    }
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

#[allow(clippy::too_many_arguments)]
fn judge_values(
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
        let first = m.first_failed_at.clone().unwrap_or_default();
        notes.insert(
            0,
            format!(
                "{} of {} elements outside tolerance (first at {:?}); max |a-b| = {:.3e} at {:?} (a = {}, b = {})",
                m.failed,
                m.elements,
                first,
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
            pair.logits = Some(l);
        }
    }
    pair.values = Some(m);
}

fn abs_delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some((a? - b?).abs())
}

fn stats_delta(a: &TraceRecord, b: &TraceRecord) -> StatsDelta {
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

/// Judges on recorded statistics: `|x_a - x_b| <= atol + rtol * rms_b` for rms, mean and std, a
/// necessary condition of every element passing (see `docs/FORMAT.md`).
fn judge_stats(
    pair: &mut Pair,
    a: &TraceRecord,
    b: &TraceRecord,
    tol: &Tolerance,
    notes: &mut Vec<String>,
) {
    let scale = b.rms.unwrap_or(0.0).abs();
    let bound = tol.atol + tol.rtol * scale;
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

fn first_divergence(pairs: &[Pair], order_known: bool) -> Option<FirstDivergence> {
    let i = pairs.iter().position(|p| p.verdict.is_divergence())?;
    let p = &pairs[i];
    let last_agreeing = pairs[..i]
        .iter()
        .rev()
        .find(|q| matches!(q.verdict, Verdict::Identical | Verdict::WithinTolerance))
        .map(|q| q.display_name().to_owned());
    let after = &pairs[i + 1..];
    Some(FirstDivergence {
        pair: p.position,
        name: p.display_name().to_owned(),
        last_agreeing,
        diverged_after: after.iter().filter(|q| q.verdict.is_divergence()).count() as u64,
        max_error_after: pairs[i..].iter().filter_map(|q| q.error).reduce(f64::max),
        execution_order_known: order_known,
    })
}

/// Groups consecutive matched pairs of one `(seq, layer)`; the last one with an error is the
/// layer's output.
fn layer_profile(pairs: &[Pair]) -> Vec<LayerError> {
    let mut profile = LayerProfile::default();
    for p in pairs {
        profile.push(p);
    }
    profile.finish()
}

/// [`layer_profile`] fed one pair at a time, in A's order (the streaming diff holds no pairs).
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
    use super::*;
    use trace_core::Stats;

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
        let mut pair = unmatched(
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

    #[test]
    fn layer_amplification() {
        let mk = |layer, error: f64| {
            let mut p = unmatched(
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
            p.only_in = None;
            p.layer = Some(layer);
            p.seq = Some(0);
            p.error = Some(error);
            p
        };
        let pairs = [mk(0, 0.0), mk(1, 1e-6), mk(1, 1e-4), mk(2, 1e-3)];
        let layers = layer_profile(&pairs);
        assert_eq!(layers.len(), 3);
        assert_eq!(layers[1].error, Some(1e-4));
        assert_eq!(layers[1].max_error, Some(1e-4));
        assert_eq!(layers[1].amplification, None); // previous error is 0
        assert!((layers[2].amplification.unwrap() - 10.0).abs() < 1e-9);
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

    proptest::proptest! {
        /// The stats test is a necessary condition of the element-wise one: when every element
        /// passes, the stats pass too, so stats never report a divergence that values would not.
        #[test]
        fn stats_never_contradict_values(
            b in proptest::collection::vec(-100.0f64..100.0, 1..64),
            shares in proptest::collection::vec(-0.99f64..0.99, 64),
            atol in 0.0f64..1e-2,
            rtol in 0.0f64..1e-1,
        ) {
            let tol = Tolerance::new(atol, rtol);
            let a: Vec<f64> = b
                .iter()
                .zip(&shares)
                .map(|(&y, &s)| y + s * atol.max(rtol * y.abs()))
                .collect();
            let m = crate::metrics::compare_values(&a, &b, &[b.len()], &tol);
            proptest::prop_assert_eq!(m.failed, 0);
            let (rms_a, sa) = stats_of(&a);
            let (rms_b, sb) = stats_of(&b);
            let (ra, rb) = (record(H1, Some(rms_a), Some(sa)), record(H2, Some(rms_b), Some(sb)));
            let mut pair = unmatched(0, "a", &RunRecord { file: "f".into(), record: ra.clone(), occurrence: 0, values: None }, None);
            let mut notes = Vec::new();
            judge_stats(&mut pair, &ra, &rb, &tol, &mut notes);
            proptest::prop_assert_eq!(pair.verdict, Verdict::WithinTolerance, "{:?}", notes);
        }
    }
}
