//! Seed-format and upstream-format directories, written by hand under `tests/data/`.

use trace_diff::{DiffOptions, Evidence, Outcome, Verdict};

use crate::common::diff_dirs;

use crate::common::{data, two_runs, Prec, Spec};

#[test]
fn seed_directories_are_compared_with_a_warning() {
    let r = diff_dirs(&data("seed_a"), &data("seed_b"), &DiffOptions::default()).unwrap();
    assert_eq!(r.a.order, "guessed");
    assert!(!r.a.execution_order_known);
    let warnings: Vec<&str> = r.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("execution order unknown") && warnings[0].contains("guess"));

    // Natural file-name order: blk0, blk1, blk10, embed, logits.
    let names: Vec<&str> = r.pairs.iter().map(|p| p.display_name()).collect();
    assert_eq!(
        names,
        [
            "blk0/attn_norm",
            "blk1/attn_norm",
            "blk10/attn_norm",
            "embed",
            "logits"
        ]
    );
    let verdicts: Vec<Verdict> = r.pairs.iter().map(|p| p.verdict).collect();
    use Verdict::*;
    assert_eq!(
        verdicts,
        [WithinTolerance, Diverged, Diverged, Identical, Identical]
    );
    assert!(r.pairs[..3].iter().all(|p| p.evidence == Evidence::Rms));

    let first = r.first_divergence.as_ref().unwrap();
    assert_eq!(first.name, "blk1/attn_norm");
    assert_eq!(first.last_agreeing.as_deref(), Some("blk0/attn_norm"));
    assert!(!first.execution_order_known);
    assert_eq!(r.outcome, Outcome::Diverged);
}

#[test]
fn upstream_decode_steps_line_up_by_seq() {
    let r = diff_dirs(
        &data("upstream_a"),
        &data("upstream_b"),
        &DiffOptions::default(),
    )
    .unwrap();
    let p = r.first_divergence_pair().unwrap();
    assert_eq!(
        (p.display_name(), p.occurrence, p.seq),
        ("logits", 1, Some(1))
    );
    assert_eq!(r.counts.identical, 3);
}

#[test]
fn seed_directory_against_our_run() {
    // Our records read like seed records to `jq`, and a seed directory diffs against ours.
    let (_tmp, a, _b) = two_runs(Spec::new(Prec::F32), Spec::new(Prec::F32));
    let r = diff_dirs(&a, &data("seed_b"), &DiffOptions::default()).unwrap();
    assert_eq!(r.a.order, "manifest");
    assert_eq!(r.b.order, "guessed");
    assert!(r.counts.compared >= 1);
}

#[test]
fn duplicate_seq_warns_and_strict_fails() {
    let r = diff_dirs(&data("dup_seq"), &data("dup_seq"), &DiffOptions::default()).unwrap();
    let msg = &r.warnings[0].message;
    assert!(
        msg.contains("blk0_out_copy.trace")
            && msg.contains("`seq`")
            && msg.contains("duplicate seq 0"),
        "{msg}"
    );
    assert_eq!(r.counts.identical, 2);
    let strict = DiffOptions {
        strict: true,
        ..DiffOptions::default()
    };
    let err = diff_dirs(&data("dup_seq"), &data("dup_seq"), &strict).unwrap_err();
    assert!(err.to_string().contains("duplicate seq"), "{err}");
}
