//! End-to-end cross-validation: the clean run agrees, every planted bug is found where it is.
//!
//! Each case runs both engines in-process on the tiny model (2 layers, 2 decode steps) in a
//! temporary directory: well under a second each, even in a debug build.

use super::*;
use crate::crossval::reference::{self, Model, Precision};
use crate::crossval::Judge;

fn options(dir: &Path, inject: Option<Bug>) -> Options {
    Options {
        out: dir.to_path_buf(),
        layers: 2,
        steps: 2,
        seed: 7,
        size: Size::Tiny,
        prompt: "Hi there".to_owned(),
        inject,
        json: false,
        reference: Model::Synthetic.default_reference(),
        precision: Precision::F32,
        judge: Judge::default(),
        bisect: None,
        quiet: true,
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn clean_run_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), None);
    let outcome = run(&o).unwrap();
    assert!(
        outcome.agree(),
        "{}",
        render(&o, &outcome).unwrap_or_default()
    );
    assert!(outcome.report.first_divergence.is_none());
    assert_eq!(outcome.candle_tokens, outcome.reference_tokens);
    assert_eq!(outcome.candle_tokens.len(), 3);
    // Every record of both runs was paired: same names, same order, same count.
    let c = &outcome.report.counts;
    assert_eq!(
        c.missing_in_a + c.missing_in_b + c.incompatible + c.diverged,
        0
    );
    // 3 passes × (tokens, embed, 2 layers × 16 points, out_norm, logits, next_token).
    assert_eq!(c.compared, 3 * (2 + 2 * 16 + 3));
    // Both sides in the default layout: packed.
    assert!(dir.path().join("candle/records.jsonl").exists());
    assert!(dir.path().join("rust/records.jsonl").exists());
    assert!(dir.path().join("model/model.safetensors").exists());
    check_clean_events(&outcome, o.layers, o.steps);
    assert!(outcome.passed());
    // A second run into the same directory replaces the traces instead of appending to them.
    let again = run(&o).unwrap();
    assert_eq!(again.report.counts.compared, c.compared);
}

/// The clean run's event history: saved, sound, no Jidoka error, the expected spans.
fn check_clean_events(outcome: &Outcome, layers: usize, steps: usize) {
    use std::collections::BTreeMap;
    use trace_core::events::{EventType, TraceStep};

    let ev = &outcome.events;
    assert!(ev.path.exists());
    assert!(ev.clean(), "{}", ev.summary());
    assert_eq!(ev.violations, vec![]);
    let doc = &ev.document;
    assert_eq!((doc.error_count, doc.warning_count), (0, 0));
    assert_eq!(
        (
            doc.model.num_layers,
            doc.model.hidden_dim,
            doc.model.vocab_size,
            doc.model.num_heads
        ),
        (layers, 64, 256, 4)
    );
    // Every span entered and exited: TOKENIZE once, then per iteration EMBED, one block with
    // its ATTENTION and FFN per layer, LM_HEAD, SAMPLE and DECODE.
    let passes = steps + 1;
    let mut counts: BTreeMap<TraceStep, usize> = BTreeMap::new();
    for e in &doc.events {
        assert_ne!(e.event_type, EventType::ExecutionFailed, "{e:?}");
        *counts.entry(e.step.unwrap()).or_default() += 1;
    }
    let expected = BTreeMap::from([
        (TraceStep::Tokenize, 2),
        (TraceStep::Embed, 2 * passes),
        (TraceStep::Attention, 2 * passes * layers),
        (TraceStep::Ffn, 2 * passes * layers),
        (TraceStep::TransformerBlock, 2 * passes * layers),
        (TraceStep::LmHead, 2 * passes),
        (TraceStep::Sample, 2 * passes),
        (TraceStep::Decode, 2 * passes),
    ]);
    assert_eq!(counts, expected);
    assert_eq!(doc.events.len(), 2 + passes * 2 * (4 + 3 * layers));
    let iterations: std::collections::BTreeSet<u64> =
        doc.events.iter().map(|e| e.iteration).collect();
    assert_eq!(iterations, (0..passes as u64).collect());
    // Nesting: each ATTENTION and FFN entry sits inside its layer's block.
    for e in doc.events.iter().filter(|e| {
        e.event_type == EventType::TaskStateEntered
            && matches!(e.step, Some(TraceStep::Attention | TraceStep::Ffn))
    }) {
        let parent = doc.event(e.parent_event_id.unwrap()).unwrap();
        assert_eq!(
            (parent.step, parent.layer, parent.iteration),
            (Some(TraceStep::TransformerBlock), e.layer, e.iteration)
        );
    }
    // SAMPLE reports the tokens the engine generated, DECODE the text so far.
    let exits = |step: TraceStep| {
        doc.events
            .iter()
            .filter(move |e| e.event_type == EventType::TaskStateExited && e.step == Some(step))
    };
    let sampled: Vec<u32> = exits(TraceStep::Sample)
        .map(|e| e.details.sampled_token.unwrap())
        .collect();
    assert_eq!(sampled, outcome.candle_tokens);
    let last = exits(TraceStep::Decode).next_back().unwrap();
    assert_eq!(
        last.details.decoded_text.as_deref(),
        Some(trace_candle::engine::decode_bytes(&outcome.candle_tokens).as_str())
    );
    // Real stats on the tensors: LM_HEAD carries the logits' top-k.
    let head = exits(TraceStep::LmHead).next().unwrap();
    assert_eq!(head.output_shape, vec![256]);
    assert!(head.stats.as_ref().unwrap().blake3.len() == 64);
    assert_eq!(head.details.top_k_logits.as_ref().unwrap().len(), 5);
    let tokenize = exits(TraceStep::Tokenize).next().unwrap();
    assert_eq!(tokenize.details.output_tokens.as_ref().unwrap().len(), 8);
}

/// Runs with `bug` planted and checks the report names the bug's first diverging record.
fn check(bug: Bug) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let o = options(dir.path(), Some(bug));
    let outcome = run(&o).unwrap();
    let text = render(&o, &outcome).unwrap_or_default();
    assert!(!outcome.agree(), "{bug}: the engines agree\n{text}");
    let pair = outcome
        .report
        .first_divergence_pair()
        .unwrap_or_else(|| panic!("{bug}: no first divergence\n{text}"));
    let expected = bug.expected(o.layers);
    assert_eq!(
        (pair.display_name(), pair.layer, pair.seq),
        (
            expected.name.as_str(),
            Some(expected.layer),
            Some(expected.seq)
        ),
        "{bug}: wrong first divergence\n{text}"
    );
    assert!(
        text.contains(&expected.name),
        "{bug}: report lacks the name\n{text}"
    );
    // Whatever the bug, the event history stays sound.
    assert_eq!(outcome.events.violations, vec![], "{bug}");
    outcome
}

#[test]
fn finds_rope_off_by_one() {
    check(Bug::RopeOffByOne);
}

#[test]
fn finds_softmax_without_scale() {
    check(Bug::SoftmaxNoScale);
}

#[test]
fn finds_wrong_rmsnorm_eps() {
    check(Bug::RmsNormEps);
}

#[test]
fn finds_kv_cache_dropping_newest() {
    check(Bug::KvCacheDropNewest);
}

#[test]
fn finds_transposed_mlp_weight() {
    check(Bug::MlpTransposedWeight);
}

#[test]
fn finds_nan_from_a_fully_masked_row() {
    use trace_core::events::{EventType, TraceStep};

    let outcome = check(Bug::AttnMaskNan);
    let ev = &outcome.events;
    assert!(!ev.clean() && !outcome.passed());
    // The first Jidoka error is the NaN where it appears: layer 1's (the last layer's)
    // ATTENTION output in the prefill, with the first offending index, produced by that step.
    let first = ev
        .document
        .events
        .iter()
        .find(|e| e.error.is_some())
        .expect("a Jidoka error");
    assert_eq!(first.event_type, EventType::TaskStateExited);
    assert_eq!(
        (first.step, first.layer, first.iteration),
        (Some(TraceStep::Attention), Some(1), 0)
    );
    assert_eq!(first.error_kind.as_deref(), Some("nan_detected"));
    let stats = first.stats.as_ref().unwrap();
    // Row 0 (the first prompt token, which sees nothing) is NaN: 64 values from index 0.
    assert_eq!((stats.first_nan_index, stats.nan_count), (Some(0), 64));
    assert!(first
        .cause
        .as_deref()
        .unwrap()
        .contains("while its input was finite"));
    assert!(first.hint.as_deref().unwrap().contains("masking"));
    // The layer before it is clean, and so is every EMBED.
    assert!(ev
        .document
        .events
        .iter()
        .filter(|e| e.layer == Some(0) || e.step == Some(TraceStep::Embed))
        .all(|e| e.error.is_none()));
    assert!(ev
        .summary()
        .contains("NaN in layer 1 ATTENTION output, first at index 0"));
}

#[test]
fn every_bug_has_a_test() {
    // Adding a bug to Bug::ALL without a test above fails here.
    assert_eq!(Bug::ALL.len(), 6);
}

#[test]
fn parses_flags() {
    let o = parse(&args(&[
        "--layers",
        "3",
        "--steps",
        "1",
        "--seed",
        "9",
        "--size",
        "small",
        "--inject",
        "rmsnorm-eps",
        "--out",
        "/tmp/x",
        "--prompt",
        "abc",
        "--json",
        "--reference",
        "cpp",
    ]))
    .unwrap()
    .unwrap();
    assert_eq!((o.layers, o.steps, o.seed, o.size), (3, 1, 9, Size::Small));
    assert_eq!(o.reference.name(), "cpp");
    assert_eq!(o.inject, Some(Bug::RmsNormEps));
    assert_eq!(
        (o.out.to_str(), o.prompt.as_str(), o.json),
        (Some("/tmp/x"), "abc", true)
    );
    assert_eq!(parse(&[]).unwrap().unwrap(), Options::default());
    assert!(parse(&args(&["--help"])).unwrap().is_none());
}

#[test]
fn rejects_bad_flags() {
    let err = |a: &[&str]| format!("{:#}", parse(&args(a)).unwrap_err());
    assert!(err(&["--inject", "nope"]).contains("rope-off-by-one"));
    assert!(err(&["--size", "huge"]).contains("tiny, small, base"));
    assert!(err(&["--layers"]).contains("needs a value"));
    assert!(err(&["--layers", "-1"]).contains("non-negative integer"));
    assert!(err(&["--layers", "0"]).contains("at least one layer"));
    assert!(err(&["--frobnicate"]).contains("unknown option"));
    assert!(err(&["--reference", "numpy"]).contains("cannot run the synthetic model"));
}

/// llama.cpp cannot be calibrated (F32 only): choosing it turns the baseline off, with or
/// without `--no-baseline`, and with either engine precision.
#[test]
fn llama_cpp_implies_no_baseline() {
    for extra in [&[][..], &["--no-baseline"], &["--dtype", "bf16"]] {
        let mut a = args(&["--reference", "llama.cpp"]);
        a.extend(args(extra));
        let o = parse(&a).unwrap().unwrap();
        assert_eq!(o.reference.name(), "llama.cpp");
        assert!(!o.judge.baseline, "{extra:?}");
    }
    assert!(
        parse(&args(&["--reference", "rust"]))
            .unwrap()
            .unwrap()
            .judge
            .baseline
    );
}

#[test]
fn help_lists_every_bug_size_and_reference() {
    let h = help();
    for name in ["rust", "cpp", "torch", "llama.cpp"] {
        assert!(h.contains(name), "{h}");
    }
    for bug in Bug::ALL {
        assert!(
            h.contains(bug.name()) && h.contains(bug.description()),
            "{h}"
        );
    }
    for size in Size::ALL {
        assert!(h.contains(size.name()), "{h}");
    }
}

#[test]
fn refuses_to_clear_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("candle")).unwrap();
    std::fs::write(dir.path().join("candle/notes.txt"), "mine").unwrap();
    let err = format!("{:#}", run(&options(dir.path(), None)).unwrap_err());
    assert!(err.contains("not a trace directory"), "{err}");
    assert!(dir.path().join("candle/notes.txt").exists());
}

/// The candle engine against Hugging Face transformers itself (`--reference torch`): the
/// reference runs once in float64 (B) and once in float32 (the baseline C); the clean candle run
/// agrees with it, and each planted bug is found at the same record as against the f64
/// reference engine.
#[test]
fn transformers_reference_agrees_and_localizes_every_bug() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options {
        reference: reference::find("torch", Model::Synthetic).unwrap(),
        ..options(dir.path(), None)
    };
    let inputs = write_inputs(&o).unwrap();
    let reference_dir = dir.path().join("torch");
    let baseline_dir = dir.path().join("torch-f32");
    let reference_tokens = run_reference(&o, &inputs, Precision::F64, &reference_dir).unwrap();
    run_reference(&o, &inputs, Precision::F32, &baseline_dir).unwrap();

    let candle = run_candle(&o, &inputs).unwrap();
    let outcome = compare(
        &o,
        candle,
        reference_tokens.clone(),
        &reference_dir,
        Some(&baseline_dir),
    )
    .unwrap();
    let text = render(&o, &outcome).unwrap();
    assert!(outcome.passed(), "{text}");
    assert_eq!(outcome.candle_tokens, outcome.reference_tokens);
    let c = &outcome.report.counts;
    assert_eq!(c.missing_in_a + c.missing_in_b, 0, "{text}");
    // Every record of the candle engine but `next_token` (which transformers never holds as a
    // tensor) has a partner: 3 passes × (tokens, embed, 2 layers × 16 points, out_norm, logits).
    assert_eq!(c.compared, 3 * (2 + 2 * 16 + 2), "{text}");

    for bug in Bug::ALL {
        o.inject = Some(bug);
        let candle = run_candle(&o, &inputs).unwrap();
        let outcome = compare(
            &o,
            candle,
            reference_tokens.clone(),
            &reference_dir,
            Some(&baseline_dir),
        )
        .unwrap();
        let text = render(&o, &outcome).unwrap();
        let pair = outcome
            .report
            .first_divergence_pair()
            .unwrap_or_else(|| panic!("{bug}: no first divergence\n{text}"));
        let expected = bug.expected(o.layers);
        assert_eq!(
            (pair.display_name(), pair.layer, pair.seq),
            (
                expected.name.as_str(),
                Some(expected.layer),
                Some(expected.seq)
            ),
            "{bug}: wrong first divergence against transformers\n{text}"
        );
    }
}

/// A BF16 candle engine against the f64 reference: the dtype tolerance cannot tell its rounding
/// from a bug (the clean run "diverges"), the calibrated verdict against the BF16 baseline passes
/// it, and still localizes a planted bug.
#[test]
fn bf16_engine_passes_calibrated_and_fails_tolerances() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        precision: Precision::Bf16,
        ..options(dir.path(), None)
    };
    let outcome = run(&o).unwrap();
    let text = render(&o, &outcome).unwrap();
    assert!(outcome.passed(), "{text}");
    assert!(dir.path().join("rust-bf16/records.jsonl").exists());
    let calibration = outcome.report.calibration.as_ref().unwrap();
    assert_eq!(calibration.diverged, 0, "{text}");

    let tolerances = Options {
        judge: Judge {
            baseline: false,
            ..Judge::default()
        },
        ..o.clone()
    };
    let outcome = run(&tolerances).unwrap();
    assert!(
        !outcome.agree(),
        "a BF16 engine passed the dtype tolerances against an f64 reference"
    );

    let buggy = Options {
        inject: Some(Bug::MlpTransposedWeight),
        ..o
    };
    let outcome = run(&buggy).unwrap();
    let text = render(&buggy, &outcome).unwrap();
    let pair = outcome.report.first_divergence_pair().unwrap();
    assert_eq!(
        (pair.display_name(), pair.layer),
        ("blk1/ffn_gate", Some(1)),
        "{text}"
    );
}

/// `--bisect` on a planted bug: hash-only runs, then values for a window only, and the same
/// first divergence as the full-values run with the same exact metrics and calibrated ratio;
/// most records carry no values.
#[test]
fn bisect_finds_the_full_runs_first_divergence_with_exact_metrics() {
    use trace_cli::bisect::BisectOutcome;

    let dir = tempfile::tempdir().unwrap();
    let bug = Bug::RopeOffByOne;
    let full = run(&options(dir.path(), Some(bug))).unwrap();
    let full_first = full.report.first_divergence_pair().unwrap().clone();

    let o = Options {
        bisect: Some(4),
        ..options(&dir.path().join("bisected"), Some(bug))
    };
    let found = bisect(&o).unwrap();
    let text = crate::crossval::bisect::render(&found);
    assert_eq!(found.outcome, BisectOutcome::Diverged, "{text}");
    assert!(found.nondeterministic.is_none(), "{text}");
    let first = found.report.first_divergence_pair().unwrap();
    assert_eq!(
        (first.display_name(), first.seq, first.occurrence),
        (
            full_first.display_name(),
            full_first.seq,
            full_first.occurrence
        ),
        "{text}"
    );
    assert_eq!(first.evidence, trace_diff::Evidence::Values, "{text}");
    assert_eq!(first.values, full_first.values, "{text}");
    // Calibrated, as the full run: the baseline ran beside the reference in every pass.
    assert_eq!(first.calibration, full_first.calibration, "{text}");
    assert!(found.passes.iter().all(|p| p.c.is_some()), "{text}");
    // Values only for the window (the divergence and at most 4 records before it, on both
    // sides, widened only if the window's earliest record already diverged).
    let last = found.passes.last().unwrap();
    let npy = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "npy")
            })
            .count()
    };
    assert_eq!(npy(&last.a.dir), found.window.len(), "{text}");
    assert_eq!(npy(&found.passes[0].a.dir), 0, "{text}");
    assert!(found.window.len() <= 5, "{text}");
    assert!(text.contains("determinism: every record up to the window hashed as in pass 1"));
}

/// The candle engine against llama.cpp itself (`--reference llama.cpp`): built from the pinned
/// sources, the model converted to GGUF, judged by F32 tolerances (llama.cpp computes in F32
/// only, so there is no calibrated verdict). The clean run agrees record for record under the
/// `llama-cpp` preset, and each planted bug is found at the same record as against the f64
/// reference engine.
#[test]
fn llama_cpp_reference_agrees_and_localizes_every_bug() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options {
        reference: reference::find("llama.cpp", Model::Synthetic).unwrap(),
        judge: Judge {
            baseline: false,
            ..Judge::default()
        },
        ..options(dir.path(), None)
    };
    let inputs = write_inputs(&o).unwrap();
    let reference_dir = dir.path().join("llama.cpp");
    let reference_tokens = run_reference(&o, &inputs, Precision::F32, &reference_dir).unwrap();

    let candle = run_candle(&o, &inputs).unwrap();
    let outcome = compare(&o, candle, reference_tokens.clone(), &reference_dir, None).unwrap();
    let text = render(&o, &outcome).unwrap();
    assert!(outcome.passed(), "{text}");
    assert_eq!(outcome.candle_tokens, outcome.reference_tokens);
    let c = &outcome.report.counts;
    assert_eq!(c.missing_in_a + c.missing_in_b, 0, "{text}");
    // Every record of the candle engine but `tokens` and `next_token` (never a tensor of
    // llama.cpp's graph) has a partner: 3 passes × (embed, 2 layers × 16 points, out_norm,
    // logits).
    assert_eq!(c.compared, 3 * (1 + 2 * 16 + 2), "{text}");

    // Deterministic: a second run writes the same records.
    let again = dir.path().join("llama.cpp-again");
    assert_eq!(
        run_reference(&o, &inputs, Precision::F32, &again).unwrap(),
        reference_tokens
    );
    let report = trace_diff::diff_dirs(&reference_dir, &again, &Default::default()).unwrap();
    assert_eq!(
        report.counts.identical,
        report.counts.compared,
        "{}",
        trace_diff::render::text(&report, &Default::default())
    );

    for bug in Bug::ALL {
        o.inject = Some(bug);
        let candle = run_candle(&o, &inputs).unwrap();
        let outcome = compare(&o, candle, reference_tokens.clone(), &reference_dir, None).unwrap();
        let text = render(&o, &outcome).unwrap();
        let pair = outcome
            .report
            .first_divergence_pair()
            .unwrap_or_else(|| panic!("{bug}: no first divergence\n{text}"));
        let expected = bug.expected(o.layers);
        assert_eq!(
            (pair.display_name(), pair.layer, pair.seq),
            (
                expected.name.as_str(),
                Some(expected.layer),
                Some(expected.seq)
            ),
            "{bug}: wrong first divergence against llama.cpp\n{text}"
        );
    }
}
