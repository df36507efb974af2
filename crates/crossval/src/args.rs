//! The one flag parser of `cargo xtask crossval` (clap derive; `--flag value` and
//! `--flag=value` alike): one set of flags for every model, each model taking its own
//! ([`Model::takes`]), and `--help` showing the chosen model's.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::model::{minilm, smollm2, synthetic, tp};
use crate::options::{Options, Quant, Size};
use crate::reference;
use crate::task::{Model, Precision};

/// The flags of `cargo xtask crossval`.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask crossval",
    disable_help_flag = true,
    max_term_width = 100
)]
pub struct Args {
    /// this text (with --model NAME or --tp: that model's flags)
    #[arg(short, long)]
    help: bool,
    /// synthetic (default: a seeded Llama-style model), minilm
    /// (all-MiniLM-L6-v2), tp (a tensor-parallel block, as --tp N) or
    /// smollm2 (SmolLM2-135M-Instruct Q4_1 GGUF)
    #[arg(long, value_name = "NAME", verbatim_doc_comment)]
    model: Option<String>,
    /// output directory (default target/crossval, target/crossval-minilm,
    /// target/crossval-tp or target/crossval-smollm2; --tp empties it first)
    #[arg(long, value_name = "DIR", verbatim_doc_comment)]
    out: Option<PathBuf>,
    /// print the report as JSON
    #[arg(long)]
    json: bool,

    /// the reference (list below); its traces go to OUT/NAME
    #[arg(long, value_name = "NAME")]
    reference: Option<String>,
    /// compare this reference (as side A, in the engine's precision) with
    /// --reference instead of the candle engine, through their engine
    /// views (no rules file), e.g. --reference torch --against llama.cpp
    #[arg(long, value_name = "NAME", verbatim_doc_comment)]
    against: Option<String>,
    /// plant a bug in the candle engine (list below)
    #[arg(long, value_name = "NAME")]
    inject: Option<String>,
    /// judge by dtype tolerances instead of calibrated verdicts
    #[arg(long)]
    no_baseline: bool,
    /// calibrated verdicts: the largest ratio of the engine's error to
    /// the baseline's that agrees
    #[arg(long, value_name = "K", value_parser = trace_diff::cli::parse_max_ratio, verbatim_doc_comment,
          default_value_t = trace_diff::calibrate::DEFAULT_MAX_RATIO)]
    max_ratio: f64,
    /// runs without values, then raw values for the first divergence and
    /// the --window N records before it only, searching further within a
    /// full capture's bytes if they disagree (tensor-trace bisect), runs in
    /// OUT/bisect; the exit code is bisect's (the model's own checks,
    /// events or cosines, are not made)
    #[arg(long, verbatim_doc_comment)]
    bisect: bool,
    /// --bisect's window (default 1; implies --bisect)
    #[arg(long, value_name = "N", value_parser = count::<usize>)]
    window: Option<usize>,

    /// transformer layers (default 2)
    #[arg(long, value_name = "N", value_parser = count::<usize>, help_heading = "--model synthetic")]
    layers: Option<usize>,
    /// decode steps after the prefill (default 4)
    #[arg(long, value_name = "N", value_parser = count::<usize>, help_heading = "--model synthetic")]
    steps: Option<usize>,
    /// seed of the weights (default 42)
    #[arg(long, value_name = "N", value_parser = count::<u64>, help_heading = "--model synthetic")]
    seed: Option<u64>,
    /// model size (the sizes are listed in --help)
    #[arg(long, value_name = "NAME", help_heading = "--model synthetic")]
    size: Option<String>,
    /// prompt, one token per byte (default "The quick brown fox")
    #[arg(long, value_name = "TEXT", help_heading = "--model synthetic")]
    prompt: Option<String>,
    /// the candle engine's precision: f32 (default) or bf16
    #[arg(long, value_name = "NAME", help_heading = "--model synthetic")]
    dtype: Option<String>,

    /// truncation length (default: the model's max_seq_length, as
    /// sentence-transformers)
    #[arg(long, value_name = "N", value_parser = count::<usize>, help_heading = "--model minilm",
          verbatim_doc_comment)]
    max_tokens: Option<usize>,

    /// the weights the candle engine runs: q4_1 (default, the published
    /// file) or f32 (its dequantized copy; dtype tolerances, no baseline)
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "--model smollm2",
        verbatim_doc_comment
    )]
    quant: Option<String>,

    /// number of torch.distributed processes: 2 or 4 (selects --model tp)
    #[arg(long, value_name = "N", num_args = 0..=1, value_parser = count::<u32>,
          help_heading = "--tp N")]
    tp: Option<Option<u32>>,
    /// plant a bug in the tensor-parallel block (list below)
    #[arg(long, value_name = "NAME", help_heading = "--tp N")]
    bug: Option<String>,
    /// kill the processes after S seconds (default 180)
    #[arg(long, value_name = "S", value_parser = count::<u32>, help_heading = "--tp N")]
    timeout: Option<u32>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// `--help`: the text to print.
    Help(String),
    /// A run.
    Run(Box<Options>),
}

/// Parses the arguments after `crossval`.
pub fn parse(args: &[String]) -> Result<Parsed> {
    let matches = Args::command()
        .try_get_matches_from(std::iter::once("crossval".to_owned()).chain(args.iter().cloned()))
        .map_err(clap_error)?;
    let a = Args::from_arg_matches(&matches).map_err(clap_error)?;
    let model = model(&a)?;
    if a.help {
        return Ok(Parsed::Help(help(model)));
    }
    for id in given(&matches) {
        if !model.takes(&id) {
            bail!(
                "--{}: not a flag of --model {} (see {})",
                id.replace('_', "-"),
                model.name(),
                help_command(model)
            );
        }
    }
    let mut o = Options::new(model);
    apply_common(&a, &mut o)?;
    match model {
        Model::Synthetic => apply_synthetic(&a, &mut o)?,
        Model::MiniLm => {
            o.minilm.max_tokens = a.max_tokens;
            if a.max_tokens.is_some_and(|n| n < 2) {
                bail!(
                    "--max-tokens {}: expected an integer >= 2",
                    a.max_tokens.unwrap_or(0)
                );
            }
            o.minilm.inject = inject(&a)?;
        }
        Model::SmolLm2 => apply_smollm2(&a, &mut o)?,
        Model::TensorParallel => {
            o.tp.world_size =
                a.tp.flatten()
                    .context("--tp needs a value (see --tp --help)")?;
            o.tp.bug = a.bug.clone();
            o.tp.timeout = a.timeout.unwrap_or(o.tp.timeout);
            tp::check(&o.tp)?;
        }
    }
    o.enforce_capabilities()?;
    Ok(Parsed::Run(Box::new(o)))
}

/// The model: `--model NAME`, or [`Model::TensorParallel`] when `--tp` is given.
fn model(a: &Args) -> Result<Model> {
    let named = match &a.model {
        Some(name) => Some(Model::find(name).with_context(|| {
            format!(
                "--model {name:?}: expected one of {}",
                Model::ALL.map(Model::name).join(", ")
            )
        })?),
        None => None,
    };
    match (named, a.tp.is_some()) {
        (Some(m), true) if m != Model::TensorParallel => {
            bail!("--tp: not a flag of --model {} (see --help)", m.name())
        }
        (Some(m), _) => Ok(m),
        (None, true) => Ok(Model::TensorParallel),
        (None, false) => Ok(Model::Synthetic),
    }
}

/// The flags given on the command line (not defaults; not clap's group of all flags).
fn given(matches: &ArgMatches) -> Vec<String> {
    Args::command()
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .collect()
}

fn apply_common(a: &Args, o: &mut Options) -> Result<()> {
    if let Some(out) = &a.out {
        o.out = out.clone();
    }
    o.json = a.json;
    if let Some(name) = &a.reference {
        o.reference = Some(reference::find(name, o.model).context("--reference")?);
    }
    if let Some(name) = &a.against {
        if a.inject.is_some() {
            bail!("--inject plants a bug in the candle engine, which --against {name} replaces");
        }
        o.against = Some(reference::find(name, o.model).context("--against")?);
    }
    if a.no_baseline {
        o.judge.baseline = false;
    }
    o.judge.max_ratio = a.max_ratio;
    if a.bisect || a.window.is_some() {
        o.bisect = Some(a.window.unwrap_or(trace_cli::bisect::DEFAULT_WINDOW));
    }
    Ok(())
}

fn apply_synthetic(a: &Args, o: &mut Options) -> Result<()> {
    let s = &mut o.synthetic;
    s.layers = a.layers.unwrap_or(s.layers);
    s.steps = a.steps.unwrap_or(s.steps);
    s.seed = a.seed.unwrap_or(s.seed);
    if let Some(v) = &a.size {
        s.size = Size::parse(v).with_context(|| {
            format!(
                "--size {v:?}: expected one of {}",
                Size::ALL.map(Size::name).join(", ")
            )
        })?;
    }
    if let Some(prompt) = &a.prompt {
        s.prompt = prompt.clone();
    }
    s.inject = inject(a)?;
    if let Some(v) = &a.dtype {
        s.precision = match v.as_str() {
            "f32" => Precision::F32,
            "bf16" => Precision::Bf16,
            _ => bail!("--dtype {v:?}: expected f32 or bf16"),
        };
    }
    if s.layers == 0 {
        bail!("--layers 0: the model needs at least one layer");
    }
    if s.prompt.is_empty() {
        bail!("--prompt \"\": the prompt needs at least one byte");
    }
    Ok(())
}

fn apply_smollm2(a: &Args, o: &mut Options) -> Result<()> {
    let s = &mut o.smollm2;
    s.steps = a.steps.unwrap_or(s.steps);
    if let Some(prompt) = &a.prompt {
        s.prompt = prompt.clone();
    }
    if s.prompt.is_empty() {
        bail!("--prompt \"\": the prompt needs at least one byte");
    }
    s.inject = inject(a)?;
    if let Some(v) = &a.quant {
        s.quant = match v.as_str() {
            "q4_1" => Quant::Q4_1,
            "f32" => Quant::F32,
            _ => bail!("--quant {v:?}: expected q4_1 or f32"),
        };
    }
    // Both sides on the same F32 file: a baseline would be B itself.
    if s.quant == Quant::F32 {
        o.judge.baseline = false;
    }
    Ok(())
}

/// The `--inject` bug, as the model's own bug type.
fn inject<T>(a: &Args) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    a.inject
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--inject")
}

/// A flag's non-negative integer.
fn count<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("expected a non-negative integer, found {v:?}"))
}

/// A clap error as one line: what was wrong, with where to look.
fn clap_error(e: clap::Error) -> anyhow::Error {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    anyhow::anyhow!(
        "{} (see --help)",
        first.strip_prefix("error: ").unwrap_or(first)
    )
}

fn help_command(model: Model) -> &'static str {
    match model {
        Model::Synthetic => "--help",
        Model::MiniLm => "--model minilm --help",
        Model::TensorParallel => "--tp --help",
        Model::SmolLm2 => "--model smollm2 --help",
    }
}

/// The `--inject NAME` lines: each bug's name and description.
fn bug_lines(bugs: &[(&str, &str)]) -> String {
    bugs.iter()
        .map(|(name, description)| format!("  {name:<22}  {description}\n"))
        .collect()
}

/// The help text of `model`: its description, its flags only, and the lists its flags refer to.
pub fn help(model: Model) -> String {
    let mut cmd = Args::command();
    let hidden: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .filter(|id| !model.takes(id))
        .collect();
    for id in hidden {
        cmd = cmd.mut_arg(id, |a| a.hide(true));
    }
    let (about, lists) = match model {
        Model::Synthetic => {
            cmd = cmd.mut_arg("size", |a| a.help(synthetic::size_help()));
            let bugs = trace_candle::engine::Bug::ALL.map(|b| (b.name(), b.description()));
            (synthetic::ABOUT.to_owned(), bug_lines(&bugs))
        }
        Model::MiniLm => {
            let bugs = ::minilm::Bug::ALL.map(|b| (b.name(), b.description()));
            (minilm::about(), bug_lines(&bugs))
        }
        Model::TensorParallel => (tp::ABOUT.to_owned(), String::new()),
        Model::SmolLm2 => {
            let bugs = trace_candle::engine::Bug::ALL.map(|b| (b.name(), b.description()));
            (smollm2::ABOUT.to_owned(), bug_lines(&bugs))
        }
    };
    let mut after = String::new();
    if model.default_reference().is_some() {
        after.push_str(&format!(
            "--reference NAME:\n{}\n--inject NAME:\n{lists}",
            reference::help(model)
        ));
    } else {
        after.push_str(&format!("--bug NAME:\n  {}\n", tp::bug_names()));
    }
    let usage = match model {
        Model::Synthetic => "cargo xtask crossval [--model synthetic] [OPTIONS]",
        Model::MiniLm => "cargo xtask crossval --model minilm [OPTIONS]",
        Model::TensorParallel => "cargo xtask crossval --tp N [OPTIONS]",
        Model::SmolLm2 => "cargo xtask crossval --model smollm2 [OPTIONS]",
    };
    cmd.about(about)
        .override_usage(usage)
        .after_help(after)
        .render_help()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn options(list: &[&str]) -> Options {
        match parse(&args(list)).unwrap() {
            Parsed::Run(o) => *o,
            Parsed::Help(h) => panic!("{list:?} asked for help:\n{h}"),
        }
    }

    fn error(list: &[&str]) -> String {
        format!("{:#}", parse(&args(list)).unwrap_err())
    }

    fn help_of(list: &[&str]) -> String {
        match parse(&args(list)).unwrap() {
            Parsed::Help(h) => h,
            Parsed::Run(o) => panic!("{list:?} asked for a run: {o:?}"),
        }
    }

    fn reference_name(o: &Options) -> &'static str {
        o.reference.map_or("none", |r| r.name())
    }

    #[test]
    fn model_selection() {
        let check = |input: &[&str], model: Model| {
            assert_eq!(options(input).model, model, "{input:?}");
        };
        check(&[], Model::Synthetic);
        check(&["--steps", "2"], Model::Synthetic);
        check(&["--model", "minilm", "--json"], Model::MiniLm);
        check(&["--json", "--model=minilm"], Model::MiniLm);
        check(&["--tp", "2"], Model::TensorParallel);
        check(&["--model", "tp", "--tp=4"], Model::TensorParallel);
        assert!(error(&["--model", "bert"]).contains("expected one of synthetic, minilm, tp"));
        assert!(error(&["--model"]).contains("a value is required"));
    }

    #[test]
    fn synthetic_flags() {
        let o = options(&[
            "--layers",
            "3",
            "--steps=1",
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
            "--reference=cpp",
        ]);
        let s = &o.synthetic;
        assert_eq!((s.layers, s.steps, s.seed, s.size), (3, 1, 9, Size::Small));
        assert_eq!(reference_name(&o), "cpp");
        assert_eq!(s.inject, Some(trace_candle::engine::Bug::RmsNormEps));
        assert_eq!(
            (o.out.to_str(), s.prompt.as_str(), o.json),
            (Some("/tmp/x"), "abc", true)
        );
        assert_eq!(options(&[]), Options::new(Model::Synthetic));
        assert_eq!(options(&["--bisect"]).bisect, Some(1));
        assert_eq!(options(&["--window=2"]).bisect, Some(2));
        assert_eq!(options(&["--max-ratio", "3.5"]).judge.max_ratio, 3.5);
        assert!(help_of(&["--help"]).contains("--layers"));
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(error(&["--inject", "nope"]).contains("rope-off-by-one"));
        assert!(error(&["--size", "huge"]).contains("tiny, small, base"));
        assert!(error(&["--layers"]).contains("a value is required"));
        assert!(error(&["--layers", "x"]).contains("non-negative integer"));
        assert!(error(&["--layers", "0"]).contains("at least one layer"));
        assert!(error(&["--frobnicate"]).contains("unexpected argument '--frobnicate'"));
        assert!(error(&["--reference", "numpy"]).contains("cannot run the synthetic model"));
        assert!(error(&["--max-ratio", "0"]).contains("expected a finite number > 0"));
        assert!(error(&["--dtype", "f16"]).contains("expected f32 or bf16"));
    }

    /// llama.cpp cannot be calibrated (F32 only): choosing it turns the baseline off, with or
    /// without `--no-baseline`, and with either engine precision; nor can it bisect.
    #[test]
    fn capabilities_are_enforced() {
        for extra in [&[][..], &["--no-baseline"], &["--dtype", "bf16"]] {
            let mut a = vec!["--reference", "llama.cpp"];
            a.extend(extra);
            let o = options(&a);
            assert_eq!(reference_name(&o), "llama.cpp");
            assert!(!o.judge.baseline, "{extra:?}");
        }
        assert!(options(&["--reference", "rust"]).judge.baseline);
        assert!(error(&["--reference", "llama.cpp", "--bisect"]).contains("--bisect cannot use"));
        // The same checks for the other model: numpy has no bf16, but MiniLM runs in f32.
        assert!(options(&["--model", "minilm"]).judge.baseline);
    }

    /// `--model smollm2`: transformers by default, calibrated by llama.cpp on the Q4_1 file;
    /// `--quant f32` turns the baseline off.
    #[test]
    fn smollm2_flags() {
        let d = options(&["--model", "smollm2"]);
        assert_eq!(reference_name(&d), "torch");
        assert!(d.judge.baseline);
        assert_eq!(d.smollm2, crate::options::SmolLm2::default());
        assert!(d.out.ends_with("target/crossval-smollm2"));
        let o = options(&[
            "--model",
            "smollm2",
            "--quant",
            "f32",
            "--steps",
            "1",
            "--prompt",
            "Hi",
            "--inject",
            "rope-off-by-one",
        ]);
        let s = &o.smollm2;
        assert_eq!((s.quant, s.steps, s.prompt.as_str()), (Quant::F32, 1, "Hi"));
        assert_eq!(s.inject, Some(trace_candle::engine::Bug::RopeOffByOne));
        assert!(!o.judge.baseline);
        assert!(error(&["--model", "smollm2", "--quant", "q8_0"]).contains("expected q4_1 or f32"));
        assert!(error(&["--model", "smollm2", "--layers", "2"]).contains("not a flag of"));
        assert!(error(&["--model", "smollm2", "--reference", "rust"]).contains("cannot run"));
        assert!(error(&["--model", "smollm2", "--bisect"]).contains("--bisect cannot use"));
        assert!(help_of(&["--model", "smollm2", "--help"]).contains("--quant"));
    }

    #[test]
    fn minilm_flags() {
        let o = options(&[
            "--model",
            "minilm",
            "--inject",
            "gelu-tanh",
            "--max-tokens",
            "64",
            "--reference",
            "torch",
            "--json",
        ]);
        assert_eq!(o.minilm.inject, Some(::minilm::Bug::GeluTanh));
        assert_eq!(o.minilm.max_tokens, Some(64));
        assert_eq!(reference_name(&o), "torch");
        assert!(o.json);
        let d = options(&["--model", "minilm"]);
        assert_eq!((d.minilm.max_tokens, reference_name(&d)), (None, "numpy"));
        assert!(d.out.ends_with("target/crossval-minilm"));
        let e = error(&["--model", "minilm", "--inject", "gelu"]);
        assert!(e.contains("expected one of attn-mask-padding"), "{e}");
        assert!(error(&["--model", "minilm", "--max-tokens", "1"]).contains(">= 2"));
        let e = error(&["--model", "minilm", "--layers", "2"]);
        assert!(e.contains("--layers: not a flag of --model minilm"), "{e}");
        let e = error(&["--model", "minilm", "--reference", "cpp"]);
        assert!(e.contains("cannot run the minilm model"), "{e}");
    }

    #[test]
    fn tp_flags() {
        let o = options(&[
            "--tp",
            "2",
            "--bug=gather-order",
            "--json",
            "--timeout",
            "9",
        ]);
        assert_eq!(
            (o.tp.world_size, o.tp.bug.as_deref(), o.json, o.tp.timeout),
            (2, Some("gather-order"), true, 9)
        );
        assert!(o.reference.is_none());
        assert!(o.out.ends_with("target/crossval-tp"));
        help_of(&["--tp", "2", "--help"]);
        help_of(&["--tp", "--help"]);
        for (bad, msg) in [
            (&["--tp", "3"][..], "expected 2 or 4"),
            (
                &["--tp", "2", "--bug", "typo"],
                "expected one of wrong-slice",
            ),
            (
                &["--tp", "2", "--model", "minilm"],
                "--tp: not a flag of --model minilm",
            ),
            (
                &["--tp", "2", "--reference", "torch"],
                "--reference: not a flag of --model tp",
            ),
            (
                &["--tp", "2", "--bisect"],
                "--bisect: not a flag of --model tp",
            ),
            (&["--tp"], "--tp needs a value"),
            (&["--model", "tp"], "--tp needs a value"),
            (
                &["--bug", "wrong-slice"],
                "--bug: not a flag of --model synthetic",
            ),
        ] {
            let e = error(bad);
            assert!(e.contains(msg), "{bad:?}: {e}");
        }
    }

    /// Each model's help lists its own flags, bugs and references, and not the others'.
    #[test]
    fn help_shows_the_models_own_flags() {
        let h = help_of(&["--help"]);
        for name in [
            "rust",
            "cpp",
            "torch",
            "llama.cpp",
            "--layers",
            "--dtype",
            "--bisect",
        ] {
            assert!(h.contains(name), "{name}: {h}");
        }
        for bug in trace_candle::engine::Bug::ALL {
            assert!(
                h.contains(bug.name()) && h.contains(bug.description()),
                "{h}"
            );
        }
        for size in Size::ALL {
            assert!(h.contains(size.name()), "{h}");
        }
        assert!(
            !h.contains("--max-tokens") && !h.contains("--timeout"),
            "{h}"
        );

        let h = help_of(&["--model", "minilm", "--help"]);
        for bug in ::minilm::Bug::ALL {
            assert!(h.contains(bug.name()), "{bug} missing from --help");
        }
        assert!(
            h.contains("numpy") && h.contains("torch") && h.contains("--max-tokens"),
            "{h}"
        );
        assert!(!h.contains("--layers"), "{h}");

        let h = help_of(&["--tp", "--help"]);
        for (bug, _, _) in tp::BUGS {
            assert!(h.contains(bug), "{h}");
        }
        assert!(h.contains("--timeout") && !h.contains("--reference"), "{h}");
    }
}
