//! Calibrated verdicts: A judged against B by the ratio of its error to the baseline C's.

use std::fs;
use std::path::Path;

use trace_core::{Context, TensorView, Tracer};
use trace_diff::render::{self, TextOptions};
use trace_diff::{
    diff_dirs, diff_dirs_calibrated, CalibrationStatus, DiffOptions, Evidence, Outcome, Report,
    Rules, Verdict, DEFAULT_MAX_RATIO,
};

use crate::common::{
    copy_dir, data, profile_plot, redact, three_runs, Fault, Prec, Spec, LAYERS, STEPS,
};

const RECORDS: u64 = STEPS * (2 + 2 * LAYERS as u64);

fn calibrated(a: &Path, b: &Path, c: &Path) -> Report {
    diff_dirs_calibrated(a, b, c, &DiffOptions::default()).unwrap()
}

fn stats_only() -> DiffOptions {
    DiffOptions {
        use_values: false,
        ..DiffOptions::default()
    }
}

/// A fault at `blk1/q` of step 0, element 5.
fn fault(delta: f64) -> Fault {
    Fault {
        seq: 0,
        layer: 1,
        index: 5,
        delta,
    }
}

/// Every matched pair was judged on its ratio, and the ratio stays under the default.
fn assert_clean(r: &Report, evidence: Evidence) {
    let cal = r.calibration.as_ref().unwrap();
    assert_eq!(
        r.outcome,
        Outcome::Agree,
        "{}",
        render::text(r, &TextOptions::default())
    );
    assert_eq!((cal.calibrated, cal.missing, cal.unusable), (RECORDS, 0, 0));
    assert_eq!(cal.diverged, 0);
    assert!(cal.ratio_max.unwrap() <= DEFAULT_MAX_RATIO, "{cal:?}");
    for p in &r.pairs {
        let c = p.calibration.as_ref().unwrap();
        assert_eq!(c.status, CalibrationStatus::Calibrated);
        if p.verdict != Verdict::Identical {
            assert_eq!(c.evidence, Some(evidence), "{p:?}");
        }
    }
}

#[test]
fn clean_f32_engine_agrees_on_values_and_on_stats() {
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed(),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).values(),
    );
    let r = calibrated(&a, &b, &c);
    assert_clean(&r, Evidence::Values);
    // Hash-identical pairs stay identical, with ratio 0.
    let embed = &r.pairs[0];
    assert_eq!(
        (embed.display_name(), embed.verdict),
        ("embed", Verdict::Identical)
    );
    assert_eq!(embed.calibration.as_ref().unwrap().ratio, Some(0.0));
    let cal = r.calibration.as_ref().unwrap();
    // The engine's rounding differs from the baseline's (other summation order) but is of its
    // size: the ratios are near 1, not 0 and not 10.
    assert!(
        cal.ratio_median.unwrap() > 0.1 && cal.ratio_median.unwrap() < 5.0,
        "{cal:?}"
    );
    for p in r.pairs.iter().filter(|p| p.verdict != Verdict::Identical) {
        let c = p.calibration.as_ref().unwrap();
        // With values, e_A is the pair's relative L2.
        assert_eq!(c.e_a, p.error);
        assert!(c.e_c.unwrap() > 0.0);
    }
    // Without values, the records' sketches are the next best evidence.
    assert_clean(
        &diff_dirs_calibrated(&a, &b, &c, &stats_only()).unwrap(),
        Evidence::Sketch,
    );
}

#[test]
fn a_baseline_without_values_calibrates_on_stats() {
    // A and B saved values, the baseline did not: both errors must be measured the same way, so
    // the ratio comes from the statistics, and each pair says why.
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed(),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).no_sketch(),
    );
    let r = calibrated(&a, &b, &c);
    assert_clean(&r, Evidence::Stats);
    let p = r
        .pairs
        .iter()
        .find(|p| p.verdict == Verdict::WithinTolerance)
        .unwrap();
    assert!(
        p.values.is_some(),
        "the tolerance metrics still come from values"
    );
    let reason = p.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("calibrated on stats") && reason.contains("no usable values"),
        "{reason}"
    );
}

#[test]
fn clean_bf16_engine_agrees_where_an_f32_tolerance_fails() {
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::BF16).values().reversed(),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::BF16).values(),
    );
    // A tolerance made for F32 calls the BF16 engine's rounding a divergence...
    let f32_tolerance = DiffOptions {
        rules: Rules::from_toml(
            "[default_tolerance]\natol = 1e-5\nrtol = 1e-4\n",
            Path::new("f32.toml"),
        )
        .unwrap(),
        ..DiffOptions::default()
    };
    let plain = diff_dirs(&a, &b, &f32_tolerance).unwrap();
    assert_eq!(plain.outcome, Outcome::Diverged);
    // ... the baseline says what a correct BF16 implementation makes, whatever the tolerance.
    let r = diff_dirs_calibrated(&a, &b, &c, &f32_tolerance).unwrap();
    assert_clean(&r, Evidence::Values);
    let overruled = r
        .pairs
        .iter()
        .find(|p| {
            p.reason
                .as_deref()
                .is_some_and(|s| s.contains("the tolerance alone: diverged"))
        })
        .expect("a pair the tolerance alone fails");
    assert_eq!(overruled.verdict, Verdict::WithinTolerance);
    let floor = overruled.calibration.as_ref().unwrap().floor.unwrap();
    assert_eq!(floor, 2f64.powi(-8), "BF16 unit roundoff");
}

#[test]
fn a_fault_below_the_tolerance_is_found_by_its_ratio() {
    // 2e-6 on one element passes the F32 tolerance (atol 1e-5) but is far above F32 rounding.
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed().fault(fault(2e-6)),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).values(),
    );
    assert_eq!(
        diff_dirs(&a, &b, &DiffOptions::default()).unwrap().outcome,
        Outcome::Agree
    );
    let r = calibrated(&a, &b, &c);
    assert_eq!(r.outcome, Outcome::Diverged);
    let first = r.first_divergence_pair().unwrap();
    assert_eq!((first.display_name(), first.seq), ("blk1/q", Some(0)));
    let cal = first.calibration.as_ref().unwrap();
    assert!(cal.ratio.unwrap() > DEFAULT_MAX_RATIO, "{cal:?}");
    let reason = first.reason.as_deref().unwrap();
    assert!(
        reason.contains("ratio") && reason.ends_with("the tolerance alone: within_tolerance"),
        "{reason}"
    );
    // Everything before it agreed on its ratio.
    assert!(r.pairs[..first.position as usize]
        .iter()
        .all(|p| !p.verdict.is_divergence()));
    // A larger bound lets it pass: the verdict is the ratio against K, nothing else.
    let loose = DiffOptions {
        max_ratio: cal.ratio.unwrap() * 1.01,
        ..DiffOptions::default()
    };
    let r2 = diff_dirs_calibrated(&a, &b, &c, &loose).unwrap();
    assert!(r2.pairs[first.position as usize].verdict == Verdict::WithinTolerance);
}

#[test]
fn a_fault_is_found_from_stats_alone() {
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32)
            .reversed()
            .fault(fault(1e-4))
            .no_sketch(),
        Spec::new(Prec::F64).no_sketch(),
        Spec::new(Prec::F32).no_sketch(),
    );
    let r = calibrated(&a, &b, &c);
    let first = r.first_divergence_pair().unwrap();
    assert_eq!(first.display_name(), "blk1/q");
    let cal = first.calibration.as_ref().unwrap();
    assert_eq!(cal.evidence, Some(Evidence::Stats));
    assert!(cal.ratio.unwrap() > DEFAULT_MAX_RATIO);
}

#[test]
fn a_fault_is_found_from_sketches_alone() {
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).reversed().fault(fault(1e-4)),
        Spec::new(Prec::F64),
        Spec::new(Prec::F32),
    );
    let r = calibrated(&a, &b, &c);
    let first = r.first_divergence_pair().unwrap();
    assert_eq!(first.display_name(), "blk1/q");
    let cal = first.calibration.as_ref().unwrap();
    assert_eq!(cal.evidence, Some(Evidence::Sketch));
    assert!(cal.ratio.unwrap() > DEFAULT_MAX_RATIO);
    assert!(r.pairs[..first.position as usize]
        .iter()
        .all(|p| !p.verdict.is_divergence()));
}

#[test]
fn exact_baseline_divides_by_the_floor() {
    // The baseline is the reference itself: e_C = 0 everywhere, so the floor (F32's unit
    // roundoff, A being F32) stands in for it.
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed(),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F64).values(),
    );
    let r = calibrated(&a, &b, &c);
    let u = 2f64.powi(-24);
    for p in &r.pairs {
        let cal = p.calibration.as_ref().unwrap();
        assert_eq!((cal.e_c, cal.floor), (Some(0.0), Some(u)), "{p:?}");
        assert_eq!(cal.ratio.unwrap(), cal.e_a.unwrap() / u);
    }
    // One rounding to F32 per element and a few more along the sums: well within K.
    assert_eq!(
        r.outcome,
        Outcome::Agree,
        "{}",
        render::text(&r, &TextOptions::default())
    );
}

/// Writes one record `x` of shape `[4]` with these values into a fresh run directory.
fn one_record(dir: &Path, values: &[f32], with_values: bool) {
    let mut builder = Tracer::builder().dir(dir);
    if with_values {
        builder = builder.values("*");
    }
    let tracer = builder.build().unwrap();
    tracer
        .record(
            "x",
            &Context::default(),
            TensorView::new(&[4], values).unwrap(),
        )
        .unwrap();
    tracer.flush().unwrap();
}

/// The verdict and calibration of `x` for the three runs' values, with and without `.npy`.
fn judge(a: &[f32], b: &[f32], c: &[f32], with_values: bool) -> (Verdict, u64, Evidence) {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["a", "b", "c"].iter().map(|s| tmp.path().join(s)).collect();
    for (dir, v) in dirs.iter().zip([a, b, c]) {
        one_record(dir, v, with_values);
    }
    let r = calibrated(&dirs[0], &dirs[1], &dirs[2]);
    let p = &r.pairs[0];
    let cal = p.calibration.as_ref().unwrap();
    assert_eq!(cal.status, CalibrationStatus::Calibrated, "{p:?}");
    (p.verdict, cal.nonfinite_unexcused, cal.evidence.unwrap())
}

type Case = (&'static str, [f32; 4], [f32; 4], [f32; 4], Verdict, u64);

#[test]
fn nan_and_inf_in_any_of_the_three_runs() {
    use Verdict::{Diverged, WithinTolerance};
    let (nan, inf) = (f32::NAN, f32::INFINITY);
    let b = [1.0, 2.0, 3.0, 4.0];
    // A and the baseline round the same way (one F32 ulp off B in element 0) so the finite
    // elements agree, and only the non-finite ones decide.
    let near = [1.0 + f32::EPSILON, 2.0, 3.0, 4.0];
    // (what, A, B, baseline, verdict, unexcused NaN/Inf elements)
    let cases: [Case; 6] = [
        ("NaN in A only", [nan, 2.0, 3.0, 4.0], b, near, Diverged, 1),
        ("Inf in A only", [inf, 2.0, 3.0, 4.0], b, near, Diverged, 1),
        (
            "NaN in A and the baseline",
            [nan, 2.0, 3.0, 4.0],
            b,
            [nan, 2.0, 3.0, 4.0],
            WithinTolerance,
            0,
        ),
        (
            "NaN in the reference only",
            near,
            [nan, 2.0, 3.0, 4.0],
            near,
            WithinTolerance,
            0,
        ),
        (
            "Inf in the baseline only",
            near,
            b,
            [1.0, 2.0, inf, 4.0],
            WithinTolerance,
            0,
        ),
        (
            "Inf in all three",
            [1.0, inf, 3.0, 4.0 + 4.0 * f32::EPSILON],
            [1.0, inf, 3.0, 4.0],
            [1.0, inf, 3.0, 4.0 + 4.0 * f32::EPSILON],
            WithinTolerance,
            0,
        ),
    ];
    for (what, a, b, c, verdict, unexcused) in cases {
        let (v, n, e) = judge(&a, &b, &c, true);
        assert_eq!(
            (v, n, e),
            (verdict, unexcused, Evidence::Values),
            "{what} (values)"
        );
        // From statistics: NaN/Inf counts instead of positions.
        let (v, n, e) = judge(&a, &b, &c, false);
        assert_eq!(
            (v, n > 0, e),
            (verdict, unexcused > 0, Evidence::Stats),
            "{what} (stats)"
        );
    }
}

/// Removes the records named `name` from a run (files and manifest lines).
fn remove_record(dir: &Path, name: &str) {
    let manifest = dir.join("manifest.jsonl");
    let text = fs::read_to_string(&manifest).unwrap();
    let mut kept = Vec::new();
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        if entry["name"] == name {
            fs::remove_file(dir.join(entry["file"].as_str().unwrap())).unwrap();
            if let Some(values) = entry["values"].as_str() {
                let _ = fs::remove_file(dir.join(values));
            }
        } else {
            kept.push(line);
        }
    }
    fs::write(&manifest, kept.join("\n") + "\n").unwrap();
}

#[test]
fn records_missing_from_the_baseline_are_reported_not_judged_silently() {
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed(),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).values(),
    );
    remove_record(&c, "blk2/out");
    let r = calibrated(&a, &b, &c);
    let cal = r.calibration.as_ref().unwrap();
    assert_eq!((cal.missing, cal.calibrated), (STEPS, RECORDS - STEPS));
    let marked: Vec<_> = r
        .pairs
        .iter()
        .filter(|p| p.calibration.as_ref().unwrap().status == CalibrationStatus::Missing)
        .collect();
    assert_eq!(marked.len() as u64, STEPS);
    for p in &marked {
        assert_eq!(p.display_name(), "blk2/out");
        assert!(p
            .reason
            .as_deref()
            .unwrap()
            .contains("no record in the baseline"));
        assert!(
            p.tolerance.is_some(),
            "judged by the tolerance, which the pair names"
        );
    }
    let warning = r
        .warnings
        .iter()
        .find(|w| w.side == Some("c"))
        .expect("a warning about the baseline");
    assert!(
        warning
            .message
            .contains("2 matched records have no record in the baseline"),
        "{}",
        warning.message
    );
    // Agreement cannot be claimed over records the baseline never judged...
    assert_eq!(r.outcome, Outcome::Incomplete);
    // ... unless missing records are accepted.
    let allowing = DiffOptions {
        allow_missing: true,
        ..DiffOptions::default()
    };
    assert_eq!(
        diff_dirs_calibrated(&a, &b, &c, &allowing).unwrap().outcome,
        Outcome::Agree
    );

    // A baseline record B does not have is left over and counted; one with another element
    // count is unusable.
    let tracer = Tracer::builder().dir(&c).append(true).build().unwrap();
    tracer
        .record(
            "only_in_c",
            &Context::default(),
            TensorView::new(&[2], &[1.0f32, 2.0][..]).unwrap(),
        )
        .unwrap();
    tracer
        .record(
            "blk2/out",
            &Context::default(),
            TensorView::new(&[2], &[1.0f32, 2.0][..]).unwrap(),
        )
        .unwrap();
    tracer.flush().unwrap();
    let r = calibrated(&a, &b, &c);
    let cal = r.calibration.as_ref().unwrap();
    assert_eq!(
        (cal.unused_baseline_records, cal.unusable, cal.missing),
        (1, 1, 1)
    );
    assert!(r.warnings.iter().any(|w| w
        .message
        .contains("1 baseline records match no record of B")));
}

#[test]
fn invalid_max_ratio_is_an_error() {
    let (_tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32),
        Spec::new(Prec::F64),
        Spec::new(Prec::F32),
    );
    for k in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let options = DiffOptions {
            max_ratio: k,
            ..DiffOptions::default()
        };
        let e = diff_dirs_calibrated(&a, &b, &c, &options).unwrap_err();
        assert!(e.to_string().contains("max ratio"), "{e}");
    }
}

fn faulty_calibrated() -> (tempfile::TempDir, Report) {
    let (tmp, a, b, c) = three_runs(
        Spec::new(Prec::F32).values().reversed().fault(fault(2e-6)),
        Spec::new(Prec::F64).values(),
        Spec::new(Prec::F32).values(),
    );
    (tmp, calibrated(&a, &b, &c))
}

#[test]
fn json_report_snapshot_calibrated() {
    let (tmp, r) = faulty_calibrated();
    let json = render::json(&r);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["calibration"]["max_ratio"], DEFAULT_MAX_RATIO);
    assert_eq!(v["pairs"][0]["calibration"]["status"], "calibrated");
    insta::assert_snapshot!("json_calibrated", redact(&json, tmp.path()));
}

#[test]
fn text_report_shows_both_errors_and_the_ratio() {
    let (tmp, r) = faulty_calibrated();
    let text = render::text(&r, &TextOptions::default());
    for needle in ["C (baseline):", "calibrated: ", "e_A", "e_C", "ratio"] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    insta::assert_snapshot!("text_calibrated", redact(&text, tmp.path()));
}

#[test]
fn html_report_plots_both_errors_with_a_legend() {
    let (_tmp, r) = faulty_calibrated();
    let html = render::html(&r);
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    let svg = profile_plot(&doc);
    let lines: Vec<_> = svg
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| n.attribute("class").unwrap())
        .collect();
    assert_eq!(lines, ["engine", "baseline"]);
    assert_eq!(svg.attribute("data-lines"), Some("2"));
    let legend: Vec<_> = svg
        .descendants()
        .filter(|n| n.attribute("class") == Some("legend"))
        .flat_map(|g| g.descendants().filter(|n| n.has_tag_name("text")))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(legend, ["engine: e_A (A vs B)", "baseline: e_C (C vs B)"]);
    // The legend sits under the plot area, off the data.
    let attr =
        |n: roxmltree::Node<'_, '_>, a: &str| -> f64 { n.attribute(a).unwrap().parse().unwrap() };
    let frame = svg.descendants().find(|n| n.has_tag_name("rect")).unwrap();
    let bottom = attr(frame, "y") + attr(frame, "height");
    for g in svg
        .descendants()
        .filter(|n| n.attribute("class") == Some("legend"))
    {
        for n in g
            .descendants()
            .filter(|n| n.is_element() && n.has_attribute("y1"))
        {
            assert!(
                attr(n, "y1") > bottom,
                "legend line at {} over the plot (bottom {bottom})",
                attr(n, "y1")
            );
        }
    }
    let heads: Vec<_> = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("records-table"))
        .unwrap()
        .descendants()
        .filter(|n| n.has_tag_name("th"))
        .filter_map(|n| n.text())
        .collect();
    for h in ["e_A", "e_C", "ratio", "calibration"] {
        assert!(heads.contains(&h), "{h} in {heads:?}");
    }
}

#[test]
fn seed_records_calibrate_on_rms() {
    // Seed records carry rms only. blk0/attn_norm: A's rms is 0.9982 against B's 0.99821.
    let (a, b) = (data("seed_a"), data("seed_b"));
    // With the reference itself as the baseline (e_C = 0), a relative delta of 1e-5 is 168 F32
    // roundings: a divergence (which the F32 tolerance passes).
    let r = calibrated(&a, &b, &b);
    let p = r.first_divergence_pair().unwrap();
    let cal = p.calibration.as_ref().unwrap();
    assert_eq!(p.display_name(), "blk0/attn_norm");
    assert_eq!((cal.evidence, cal.e_c), (Some(Evidence::Rms), Some(0.0)));
    let expected = (0.99821f64 - 0.9982).abs() / 0.99821 / 2f64.powi(-24);
    assert!(
        (cal.ratio.unwrap() - expected).abs() < 1e-6 * expected,
        "{cal:?}"
    );
    // A baseline that makes the same error there excuses it: the first divergence is then
    // blk1/attn_norm (rms 1.25 against 1.5), as the tolerance says.
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    copy_dir(&b, &c);
    let blk0 = c.join("blk0_attn_norm.trace");
    let text = fs::read_to_string(&blk0).unwrap();
    fs::write(
        &blk0,
        text.replace("0.99821", "0.99822")
            .replace(&"5".repeat(64), &"9".repeat(64)),
    )
    .unwrap();
    let r = calibrated(&a, &b, &c);
    let p = r
        .pairs
        .iter()
        .find(|p| p.display_name() == "blk0/attn_norm")
        .unwrap();
    let cal = p.calibration.as_ref().unwrap();
    assert_eq!(
        (p.verdict, cal.status),
        (Verdict::WithinTolerance, CalibrationStatus::Calibrated),
        "{p:?}"
    );
    assert!((cal.ratio.unwrap() - 1.0).abs() < 1e-3, "{cal:?}");
    assert_eq!(r.first_divergence.as_ref().unwrap().name, "blk1/attn_norm");
    let tolerance = diff_dirs(&a, &b, &DiffOptions::default()).unwrap();
    assert_eq!(tolerance.first_divergence.unwrap().name, "blk1/attn_norm");
    // The seed directories' unknown order is said for the baseline too.
    assert!(r.warnings.iter().any(|w| w.side == Some("c")));
}
