//! `b_layout`: B's values brought into A's layout before comparing (crate::transform).

use std::path::Path;

use trace_core::{Context, TensorView, Tracer};
use trace_diff::{DiffOptions, Evidence, Outcome, Rules, Verdict};

use crate::common::{diff_dirs, diff_dirs_calibrated};

/// A record: name, shape, F32 values.
type Rec = (&'static str, Vec<usize>, Vec<f32>);

/// Writes records as F32, with or without raw values.
fn write(dir: &Path, records: &[Rec], values: bool) {
    let mut builder = Tracer::builder().dir(dir);
    if values {
        builder = builder.values("*");
    }
    let tracer = builder.build().unwrap();
    for (name, shape, v) in records {
        tracer
            .record(
                name,
                &Context::default().seq(0),
                TensorView::new(shape, v).unwrap(),
            )
            .unwrap();
    }
    tracer.flush().unwrap();
}

fn rules() -> Rules {
    Rules::from_toml(
        r#"
        [[map]]
        a = 'heads'
        b = 'seq_major'
        b_layout = [{ transpose = [1, 0, 2] }]

        [[map]]
        a = 'probs'
        b = 'padded'
        b_layout = [{ crop = [1] }]
        "#,
        Path::new("layout.toml"),
    )
    .unwrap()
}

/// A: `heads` [2, 3, 2] heads-major and `probs` [2, 2]; B the same numbers sequence-major
/// [3, 2, 2] and with the last axis padded by zeros to 4.
fn runs(fault: Option<f32>) -> (Vec<Rec>, Vec<Rec>) {
    let a_heads: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 + 1.0).collect();
    let mut b_heads = vec![0.0; 12];
    for h in 0..2 {
        for t in 0..3 {
            for d in 0..2 {
                b_heads[(t * 2 + h) * 2 + d] = a_heads[(h * 3 + t) * 2 + d];
            }
        }
    }
    if let Some(delta) = fault {
        b_heads[5] += delta;
    }
    let a_probs = vec![1.0, 0.0, 0.25, 0.75];
    let b_probs = vec![1.0, 0.0, 0.0, 0.0, 0.25, 0.75, 0.0, 0.0];
    (
        vec![
            ("heads", vec![2, 3, 2], a_heads),
            ("probs", vec![2, 2], a_probs),
        ],
        vec![
            ("seq_major", vec![3, 2, 2], b_heads),
            ("padded", vec![2, 4], b_probs),
        ],
    )
}

fn options() -> DiffOptions {
    DiffOptions {
        rules: rules(),
        ..Default::default()
    }
}

#[test]
fn transposed_and_padded_records_agree_in_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = runs(None);
    write(&dir.path().join("a"), &a, true);
    write(&dir.path().join("b"), &b, true);
    let r = diff_dirs(&dir.path().join("a"), &dir.path().join("b"), &options()).unwrap();
    assert_eq!(r.outcome, Outcome::Agree, "{r:#?}");
    assert_eq!(r.counts.compared, 2);
    for p in &r.pairs {
        assert_eq!(p.evidence, Evidence::Values, "{p:#?}");
        assert_eq!(p.error, Some(0.0), "{p:#?}");
        assert!(
            p.reason.as_deref().unwrap().contains("B's values laid out"),
            "{p:#?}"
        );
    }
    assert!(r.pairs[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("elements dropped"));

    // Without the rules the same records are incompatible or diverge.
    let plain = DiffOptions {
        rules: Rules::from_toml(
            "[[map]]\na = 'heads'\nb = 'seq_major'\n[[map]]\na = 'probs'\nb = 'padded'\n",
            Path::new("plain.toml"),
        )
        .unwrap(),
        ..Default::default()
    };
    let r = diff_dirs(&dir.path().join("a"), &dir.path().join("b"), &plain).unwrap();
    assert_eq!(r.pairs[0].verdict, Verdict::Diverged);
    assert_eq!(r.pairs[1].verdict, Verdict::Incompatible);
}

#[test]
fn a_changed_element_is_found_after_the_transform() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = runs(Some(0.25));
    write(&dir.path().join("a"), &a, true);
    write(&dir.path().join("b"), &b, true);
    let r = diff_dirs(&dir.path().join("a"), &dir.path().join("b"), &options()).unwrap();
    assert_eq!(r.outcome, Outcome::Diverged);
    let first = r.first_divergence.as_ref().unwrap();
    assert_eq!(first.name, "heads");
    let values = r.pairs[0].values.as_ref().unwrap();
    assert_eq!(values.failed, 1, "{values:#?}");
}

#[test]
fn the_baseline_is_transformed_like_b() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = runs(None);
    write(&dir.path().join("a"), &a, true);
    write(&dir.path().join("b"), &b, true);
    // The baseline: B with a small error on one element, in B's layout.
    let (_, mut c) = runs(Some(1e-3));
    c[1].2[4] += 1e-3;
    write(&dir.path().join("c"), &c, true);
    let r = diff_dirs_calibrated(
        &dir.path().join("a"),
        &dir.path().join("b"),
        &dir.path().join("c"),
        &options(),
    )
    .unwrap();
    assert_eq!(r.outcome, Outcome::Agree, "{r:#?}");
    for p in &r.pairs {
        let cal = p.calibration.as_ref().unwrap();
        assert_eq!(cal.evidence, Some(Evidence::Values), "{p:#?}");
        assert_eq!(cal.e_a, Some(0.0), "{p:#?}");
        assert!(cal.e_c.unwrap() > 0.0, "{p:#?}");
    }
}

#[test]
fn a_dropping_layout_without_values_or_a_misfit_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = runs(None);
    write(&dir.path().join("a"), &a, false);
    write(&dir.path().join("b"), &b, false);
    let r = diff_dirs(&dir.path().join("a"), &dir.path().join("b"), &options()).unwrap();
    // The transpose keeps every element: its statistics still compare.
    assert_eq!(
        r.pairs[0].verdict,
        Verdict::WithinTolerance,
        "{:#?}",
        r.pairs[0]
    );
    assert_eq!(r.pairs[1].verdict, Verdict::Incompatible);
    assert!(r.pairs[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("a layout drops elements"));

    // A layout that does not fit B's shape names the step.
    let misfit = DiffOptions {
        rules: Rules::from_toml(
            "[[map]]\na = 'heads'\nb = 'seq_major'\nb_layout = [{ transpose = [1, 0] }]\n",
            Path::new("misfit.toml"),
        )
        .unwrap(),
        ..Default::default()
    };
    let r = diff_dirs(&dir.path().join("a"), &dir.path().join("b"), &misfit).unwrap();
    assert_eq!(r.pairs[0].verdict, Verdict::Incompatible);
    let reason = r.pairs[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("B: layout step 0 (transpose = [1, 0]): the shape [3, 2, 2] has 3 axes"),
        "{reason}"
    );
}

#[test]
fn a_bad_layout_in_the_rules_file_names_the_entry() {
    let e = Rules::from_toml(
        "[[map]]\na = 'x'\nb = 'y'\nb_layout = [{ transpose = [0, 0] }]\n",
        Path::new("bad.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("bad.toml") && e.contains("`map[0].b_layout`: step 0: transpose"),
        "{e}"
    );
    let e = Rules::from_toml(
        "[[map]]\na = 'x'\nb = 'y'\nb_layout = [{ flip = 1 }]\n",
        Path::new("bad.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("flip"), "{e}");
}

/// `a_layout`: the same two pairs with the sides swapped, A laid out into B's layout.
#[test]
fn a_layout_lays_out_side_a() {
    let dir = tempfile::tempdir().unwrap();
    let (heads, padded) = runs(None);
    write(&dir.path().join("a"), &padded, true);
    write(&dir.path().join("b"), &heads, true);
    let options = DiffOptions {
        rules: Rules::from_toml(
            r#"
            [[map]]
            a = 'seq_major'
            b = 'heads'
            a_layout = [{ transpose = [1, 0, 2] }]

            [[map]]
            a = 'padded'
            b = 'probs'
            a_layout = [{ crop = [1] }]
            "#,
            Path::new("a_layout.toml"),
        )
        .unwrap(),
        ..Default::default()
    };
    let r = diff_dirs(&dir.path().join("a"), &dir.path().join("b"), &options).unwrap();
    assert_eq!(r.outcome, Outcome::Agree, "{r:#?}");
    assert_eq!(r.counts.compared, 2);
    for p in &r.pairs {
        assert_eq!(p.error, Some(0.0), "{p:#?}");
        assert!(
            p.reason.as_deref().unwrap().contains("A's values laid out"),
            "{p:#?}"
        );
    }
}
