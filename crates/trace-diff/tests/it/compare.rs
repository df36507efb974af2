//! The comparison core on runs written by the real trace-core writer.

use std::path::Path;

use trace_diff::{diff_dirs, DiffOptions, Evidence, Outcome, Report, Rules, Verdict};

use crate::common::{two_runs, Fault, Prec, Spec, LAYERS, STEPS};

const RECORDS: u64 = STEPS * (2 + 2 * LAYERS as u64);

fn diff(a: &Path, b: &Path) -> Report {
    diff_dirs(a, b, &DiffOptions::default()).unwrap()
}

fn with_rules(a: &Path, b: &Path, rules: &str) -> Report {
    let rules = Rules::from_toml(rules, Path::new("rules.toml")).unwrap();
    let options = DiffOptions {
        rules,
        ..DiffOptions::default()
    };
    diff_dirs(a, b, &options).unwrap()
}

fn fault(seq: u64, layer: usize) -> Fault {
    Fault {
        seq,
        layer,
        index: 5,
        delta: 0.5,
    }
}

#[test]
fn identical_runs() {
    let (_tmp, a, b) = two_runs(Spec::new(Prec::F32).values(), Spec::new(Prec::F32).values());
    let r = diff(&a, &b);
    assert_eq!(r.outcome, Outcome::Agree);
    assert_eq!((r.counts.compared, r.counts.identical), (RECORDS, RECORDS));
    assert!(r.first_divergence.is_none());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.a.order, "manifest");
    assert!(r
        .pairs
        .iter()
        .all(|p| p.evidence == Evidence::Hash && p.error == Some(0.0)));
}

#[test]
fn changed_value_is_the_first_divergence() {
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault(0, 1)),
        Spec::new(Prec::F32).values(),
    );
    let r = diff(&a, &b);
    assert_eq!(r.outcome, Outcome::Diverged);
    let first = r.first_divergence.as_ref().unwrap();
    assert_eq!(first.name, "blk1/q");
    assert_eq!(first.last_agreeing.as_deref(), Some("blk0/out"));
    assert!(first.execution_order_known);
    assert!(first.diverged_after > 0);
    let p = r.first_divergence_pair().unwrap();
    assert_eq!(
        (p.seq, p.layer, p.stage.as_deref()),
        (Some(0), Some(1), Some("q"))
    );
    assert_eq!(
        (p.verdict, p.evidence),
        (Verdict::Diverged, Evidence::Values)
    );
    let m = p.values.as_ref().unwrap();
    assert_eq!(m.first_failed_at, Some(vec![0, 5]));
    assert_eq!(m.max_abs_at, vec![0, 5]);
    assert_eq!(m.failed, 1);
    assert!((m.max_abs - 0.5).abs() < 1e-6, "{m:?}");
    // Everything before it is identical.
    assert!(r.pairs[..p.position as usize]
        .iter()
        .all(|q| q.verdict == Verdict::Identical));
    // The error profile has the layers after the fault, with an amplification factor.
    let after: Vec<_> = r
        .layers
        .iter()
        .filter(|l| l.seq == Some(0) && l.layer >= 1)
        .collect();
    assert!(after[0].error.unwrap() > 0.0);
    assert!(after[1].amplification.is_some(), "{:?}", r.layers);
    // The logits of the faulty step carry logits metrics.
    let logits = r
        .pairs
        .iter()
        .find(|q| q.name_a.as_deref() == Some("logits"))
        .unwrap();
    assert!(logits.logits.is_some());
}

#[test]
fn changed_value_found_from_sketches_alone() {
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).fault(fault(1, 2)),
        Spec::new(Prec::F32),
    );
    let r = diff(&a, &b);
    let p = r.first_divergence_pair().unwrap();
    assert_eq!(p.display_name(), "blk2/q");
    assert_eq!(p.evidence, Evidence::Sketch);
    let reason = p.reason.as_deref().unwrap();
    assert!(reason.starts_with("judged on sketches"), "{reason}");
    assert!(p.sketch.is_some());
}

#[test]
fn changed_value_found_from_stats_alone() {
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).fault(fault(1, 2)).no_sketch(),
        Spec::new(Prec::F32).no_sketch(),
    );
    let r = diff(&a, &b);
    let p = r.first_divergence_pair().unwrap();
    assert_eq!(
        (p.display_name(), p.occurrence, p.seq),
        ("blk2/q", 1, Some(1))
    );
    assert_eq!(p.evidence, Evidence::Stats);
    assert!(
        p.reason.as_deref().unwrap().contains("differs by"),
        "{:?}",
        p.reason
    );
}

#[test]
fn f32_against_f64_reference_is_within_tolerance() {
    for values in [true, false] {
        let (a, b) = (Spec::new(Prec::F32), Spec::new(Prec::F64));
        let (a, b) = if values {
            (a.values(), b.values())
        } else {
            (a, b)
        };
        let (_tmp, da, db) = two_runs(a, b);
        let r = diff(&da, &db);
        assert_eq!(r.outcome, Outcome::Agree, "values {values}: {:#?}", r.pairs);
        assert!(r.counts.within_tolerance > 0);
        let evidence = if values {
            Evidence::Values
        } else {
            Evidence::Sketch
        };
        let judged = r
            .pairs
            .iter()
            .find(|p| p.verdict == Verdict::WithinTolerance)
            .unwrap();
        assert_eq!(judged.evidence, evidence);
        let t = judged.tolerance.as_ref().unwrap();
        assert_eq!(
            (t.atol, t.rtol, t.source.as_str()),
            (1e-5, 1e-4, "default for F32")
        );
    }
}

#[test]
fn bf16_engine_against_f64_uses_bf16_tolerance() {
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::BF16).values(),
        Spec::new(Prec::F64).values(),
    );
    let r = diff(&a, &b);
    let p = r
        .pairs
        .iter()
        .find(|p| p.verdict != Verdict::Identical)
        .unwrap();
    assert_eq!(p.tolerance.as_ref().unwrap().source, "default for BF16");
    // Under the strict F32 tolerance the same runs diverge.
    let strict = with_rules(&a, &b, "[default_tolerance]\natol = 1e-5\nrtol = 1e-4\n");
    assert_eq!(strict.outcome, Outcome::Diverged);
    assert!(r.counts.diverged < strict.counts.diverged);
}

#[test]
fn per_name_tolerance_from_rules() {
    let (_tmp, a, b) = two_runs(Spec::new(Prec::F32).values(), Spec::new(Prec::F64).values());
    let r = with_rules(
        &a,
        &b,
        "[[tolerance]]\nnames = 'blk2/*'\natol = 0.0\nrtol = 0.0\n",
    );
    assert_eq!(r.outcome, Outcome::Diverged);
    let first = r.first_divergence_pair().unwrap();
    assert!(
        first.display_name().starts_with("blk2/"),
        "{}",
        first.display_name()
    );
    assert!(first.tolerance.as_ref().unwrap().source.contains("blk2/*"));
}

const HF_RULES: &str = r#"
[[map]]
a = 'model\.layers\.(\d+)\.self_attn\.q_proj'
b = 'blk${1}/q'
[[map]]
a = 'model\.layers\.(\d+)\.output'
b = 'blk${1}/out'
"#;

#[test]
fn name_mapping_with_captures() {
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).hf_names().values(),
        Spec::new(Prec::F32).values(),
    );
    let r = with_rules(&a, &b, HF_RULES);
    assert_eq!(r.counts.identical, RECORDS);
    assert_eq!((r.counts.missing_in_a, r.counts.missing_in_b), (0, 0));
    let p = r
        .pairs
        .iter()
        .find(|p| p.name_a.as_deref() == Some("model.layers.2.output"))
        .unwrap();
    assert_eq!(p.name_b.as_deref(), Some("blk2/out"));
}

#[test]
fn unmatched_records_are_reported_not_dropped() {
    let (_tmp, a, b) = two_runs(Spec::new(Prec::F32).hf_names(), Spec::new(Prec::F32));
    let r = diff(&a, &b);
    let unmatched = STEPS * 2 * LAYERS as u64;
    assert_eq!(
        (r.counts.missing_in_b, r.counts.missing_in_a),
        (unmatched, unmatched)
    );
    // Everything matched agrees, but half of each run was never compared: not an agreement.
    assert_eq!(r.outcome, Outcome::Incomplete);
    assert_eq!(r.outcome.exit_code(), 1);
    let allowing = DiffOptions {
        allow_missing: true,
        ..DiffOptions::default()
    };
    assert_eq!(
        diff_dirs(&a, &b, &allowing).unwrap().outcome,
        Outcome::Agree
    );
    let only_b: Vec<_> = r.pairs.iter().filter(|p| p.only_in == Some("b")).collect();
    assert_eq!(only_b.len() as u64, unmatched);
    assert!(only_b.iter().all(|p| p.verdict == Verdict::Missing));

    let r = with_rules(
        &a,
        &b,
        &format!("ignore_a = ['model.*']\nignore_b = ['blk*']\n{HF_RULES}"),
    );
    assert_eq!((r.counts.missing_in_b, r.counts.missing_in_a), (0, 0));
    assert_eq!((r.a.ignored, r.b.ignored), (unmatched, unmatched));
    assert_eq!(r.counts.compared, RECORDS - unmatched);
}

#[test]
fn incompatible_element_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (dir, n) in [(&a, 3usize), (&b, 4)] {
        let t = trace_core::Tracer::builder().dir(dir).build().unwrap();
        let v = vec![1.0f32; n];
        t.record(
            "x",
            &Default::default(),
            trace_core::TensorView::new(&[n], &v).unwrap(),
        )
        .unwrap();
    }
    let r = diff(&a, &b);
    assert_eq!(r.outcome, Outcome::Diverged);
    assert_eq!(r.pairs[0].verdict, Verdict::Incompatible);
    assert!(r.pairs[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("element counts differ"));
}
