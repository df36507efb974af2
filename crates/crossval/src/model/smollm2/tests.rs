//! `--model smollm2` end to end: the clean Q4_1 run agrees under the calibrated verdict and
//! planted bugs are found where they are. The model is fetched once into `target/models`
//! (`cargo xtask ci` fetches it before the tests). B is transformers (float64, the GGUF
//! dequantized), C llama.cpp on the Q4_1 file, each through its engine view. The clean run goes
//! through the driver; the bugs reuse its sides B and C (neither changes with the engine's bug)
//! and run the engine only: each case costs one candle run on the 135M model (about 20 s in a
//! debug build).

use trace_candle::engine::Bug;

use super::*;
use crate::exec::open_run;
use crate::judge::Judge;
use crate::task::Precision;

#[test]
fn clean_run_agrees_and_planted_bugs_are_localized() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(Model::SmolLm2);
    o.out = dir.path().to_path_buf();
    o.quiet = true;
    assert!(o.judge.baseline, "the default is the calibrated verdict");

    let outcome = crate::driver::run(&SmolLm2Harness, &o).unwrap();
    let text = outcome.render(&o);
    assert!(outcome.passed(), "{text}");
    assert_eq!(outcome.candle_tokens, outcome.reference_tokens, "{text}");
    let c = &outcome.report.counts;
    assert_eq!(c.missing_in_a + c.missing_in_b, 0, "{text}");
    // 3 passes (prefill, 2 decode steps) x (tokens, embed, 30 layers x 16 points, out_norm,
    // logits); the token ids, which llama.cpp does not record, are equal and need no baseline.
    assert_eq!(c.compared, 3 * (2 + 30 * 16 + 2), "{text}");
    let cal = outcome.report.calibration.as_ref().unwrap();
    assert_eq!((cal.missing, cal.unusable), (0, 0), "{text}");
    let views = outcome.report.views.as_ref().unwrap();
    let names = [&views.a, &views.b, views.c.as_ref().unwrap()].map(|v| v.view.as_str());
    assert_eq!(names, ["ours", "hf-decoder", "llama-cpp"]);
    // Per step: A's top-1 is B's and its KL stays near the quantization's own (C's).
    assert_eq!(outcome.logits.len(), 3, "{text}");
    assert_eq!(outcome.baseline_logits.len(), 3, "{text}");
    for (a, c) in outcome.logits.iter().zip(&outcome.baseline_logits) {
        assert_eq!((a.step, a.top1_agree, a.rows), (c.step, 1, 1), "{text}");
        assert!(a.kl_mean < 0.05 && c.kl_mean < 0.05, "{text}");
    }
    // C's logits against transformers', through the views: the last position's row.
    assert_eq!(outcome.baseline_logits[0].rows, 1, "{text}");

    let inputs = SmolLm2Harness.prepare(&o, &Progress::new(true)).unwrap();
    let b = open_run(&o.out.join("torch")).unwrap();
    let c = open_run(&Judge::baseline_dir(&o.out, "llama.cpp", Precision::F32)).unwrap();
    let rules = o.reference.unwrap().rules(Model::SmolLm2).unwrap();
    let cases = [
        (Bug::RopeOffByOne, "blk0/q_rope", 1),
        (Bug::SoftmaxNoScale, "blk0/attn_probs", 0),
    ];
    for (bug, name, step) in cases {
        o.smollm2.inject = Some(bug);
        let a_dir = o.out.join(format!("candle-{bug}"));
        SmolLm2Harness
            .run_engine(&o, &inputs, &a_dir, &Progress::new(true))
            .unwrap();
        let a = open_run(&a_dir).unwrap();
        let report = o.judge.diff(&a, &b, Some(&c), rules.clone()).unwrap();
        let text = trace_diff::render::text(&report, &Default::default());
        let pair = report
            .first_divergence_pair()
            .unwrap_or_else(|| panic!("{bug}: no first divergence\n{text}"));
        assert_eq!(
            (pair.display_name(), pair.layer, pair.seq),
            (name, Some(0), Some(step)),
            "{bug}: wrong first divergence\n{text}"
        );
    }
}

/// `--quant f32`: the engine on the dequantized F32 file against transformers on it, judged by
/// the F32 default tolerance (no baseline). Before the tolerance's scale term one near-zero
/// element of `blk29/l_out` (a residual stream of RMS 89) failed it against llama.cpp, so the
/// clean run diverged and that false divergence came before the records of the bugs that only
/// show in decode steps. Now the clean run agrees and such a bug is found at its own record.
#[test]
fn f32_copy_agrees_by_tolerance_and_localizes_a_decode_bug() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(Model::SmolLm2);
    o.out = dir.path().to_path_buf();
    o.quiet = true;
    o.smollm2.quant = Quant::F32;
    o.judge.baseline = false;

    let outcome = crate::driver::run(&SmolLm2Harness, &o).unwrap();
    let text = outcome.render(&o);
    assert!(outcome.passed(), "{text}");
    let c = &outcome.report.counts;
    assert_eq!(c.compared, 3 * (2 + 30 * 16 + 2), "{text}");
    assert_eq!((c.diverged, c.incompatible), (0, 0), "{text}");

    let inputs = SmolLm2Harness.prepare(&o, &Progress::new(true)).unwrap();
    let b = open_run(&o.out.join("torch")).unwrap();
    let rules = o.reference.unwrap().rules(Model::SmolLm2).unwrap();
    o.smollm2.inject = Some(Bug::KvCacheDropNewest);
    let a_dir = o.out.join("candle-kv");
    SmolLm2Harness
        .run_engine(&o, &inputs, &a_dir, &Progress::new(true))
        .unwrap();
    let a = open_run(&a_dir).unwrap();
    let report = o.judge.diff(&a, &b, None, rules).unwrap();
    let text = trace_diff::render::text(&report, &Default::default());
    let pair = report.first_divergence_pair().expect(&text);
    assert_eq!(
        (pair.display_name(), pair.layer, pair.seq),
        ("blk0/attn_probs", Some(0), Some(1)),
        "{text}"
    );
}
