//! `cargo xtask crossval` on the synthetic model: two engines, one model, the first divergence.
//!
//! Writes a deterministic seeded model and a prompt under the output directory, runs the candle
//! engine (`trace_candle::engine`, possibly with a planted bug) in-process and the chosen
//! reference (`--reference`, default the f64 reference engine), each traced with raw values into
//! its own directory, and compares the two with `trace_diff` under the reference's rules. The candle engine's pipeline events (trace-core's
//! `InferenceTracer`: spans per step, Jidoka checks) are saved next to the traces as
//! `candle-events.json` and checked against the event contracts. Exit code 0 when the engines
//! agree within tolerance and the event history is clean (no Jidoka error, no contract
//! violation), 1 otherwise, 2 on an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use trace_candle::engine::{Bug, Llama, Traces};
use trace_events::{ContractViolation, InferenceTracer, TraceConfig};

use super::reference::{self, Job, Model, Precision, Reference, Task};
use super::{fresh_tracer, number, open_run, Judge, Progress};

pub use reference_engine::seeded::Size;

#[cfg(test)]
mod tests;

/// Settings of one cross-validation run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Where the model, the prompt and both trace directories go.
    pub out: PathBuf,
    /// Transformer layers.
    pub layers: usize,
    /// Decode steps after the prefill.
    pub steps: usize,
    /// Seed of the weights.
    pub seed: u64,
    /// Model width preset.
    pub size: Size,
    /// The prompt, tokenized byte by byte.
    pub prompt: String,
    /// A bug to plant in the candle engine.
    pub inject: Option<Bug>,
    /// Print the JSON report instead of the text one.
    pub json: bool,
    /// The reference the candle engine is compared with.
    pub reference: &'static dyn Reference,
    /// The candle engine's precision: F32 (default) or BF16.
    pub precision: Precision,
    /// Calibrated verdicts or tolerances.
    pub judge: Judge,
    /// `Some(window)`: run through trace-cli's bisect instead (hash-only, then values for the
    /// first divergence and the `window` records before it).
    pub bisect: Option<usize>,
    /// No progress lines (tests).
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out: crate::project_root().join("target").join("crossval"),
            layers: 2,
            steps: 4,
            seed: 42,
            size: Size::Tiny,
            prompt: "The quick brown fox".to_owned(),
            inject: None,
            json: false,
            reference: Model::Synthetic.default_reference(),
            precision: Precision::F32,
            judge: Judge::default(),
            bisect: None,
            quiet: false,
        }
    }
}

/// File name of the candle engine's event history inside the output directory.
pub const EVENTS_FILE: &str = "candle-events.json";

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// The comparison of the candle run (A) with the reference run (B).
    pub report: trace_diff::Report,
    /// Tokens the candle engine generated.
    pub candle_tokens: Vec<u32>,
    /// Tokens the reference engine generated.
    pub reference_tokens: Vec<u32>,
    /// The candle engine's event history, as saved and checked.
    pub events: Events,
}

/// The candle engine's pipeline events: where they were saved and what the checks found.
#[derive(Debug)]
pub struct Events {
    /// The saved JSON history.
    pub path: PathBuf,
    /// The history itself.
    pub document: trace_events::TraceDocument,
    /// Contract violations of the saved file (empty for a sound history).
    pub violations: Vec<ContractViolation>,
}

impl Events {
    /// Jidoka errors (NaN, Inf, vocab overflow, garbage text, failures) in the history.
    pub fn errors(&self) -> u64 {
        self.document.error_count
    }

    /// Whether the history has no Jidoka error and passes the contracts.
    pub fn clean(&self) -> bool {
        self.errors() == 0 && self.violations.is_empty()
    }

    /// One line: counts, the first error and where the file is.
    pub fn summary(&self) -> String {
        let d = &self.document;
        let mut s = format!(
            "crossval: candle events: {} events, {} errors, {} warnings, {} contract violations -> {}",
            d.events.len(),
            d.error_count,
            d.warning_count,
            self.violations.len(),
            self.path.display()
        );
        if let Some(e) = d.events.iter().find(|e| e.error.is_some()) {
            let at = match e.layer {
                Some(l) => format!("iteration {} layer {l}", e.iteration),
                None => format!("iteration {}", e.iteration),
            };
            let _ = write!(
                s,
                "; first error (event {}, {at}): {}",
                e.id,
                e.error.as_deref().unwrap_or_default()
            );
        }
        if let Some(v) = self.violations.first() {
            let _ = write!(s, "; first violation: {v}");
        }
        s
    }
}

impl Outcome {
    /// Whether the engines agree within tolerance (the trace diff alone).
    pub fn agree(&self) -> bool {
        self.report.outcome == trace_diff::Outcome::Agree
    }

    /// Whether the run passes: the engines agree and the candle event history is clean.
    pub fn passed(&self) -> bool {
        self.agree() && self.events.clean()
    }
}

/// The help text, with the sizes and the bugs `--inject` knows.
pub fn help() -> String {
    let d = Options::default();
    let mut s = format!(
        "\
cargo xtask crossval [options]

Writes a seeded Llama-style model and a prompt, runs the candle engine and the f64 reference
engine on it, each traced into its own directory, and reports the first divergence. The candle
engine's pipeline events go to OUT/candle-events.json and are checked (Jidoka, contracts).
Exit code: 0 the engines agree within tolerance and the events are clean, 1 they diverge or
the events hold an error or a contract violation, 2 error.

options:
  --layers N        transformer layers (default {layers})
  --steps N         decode steps after the prefill (default {steps})
  --seed N          seed of the weights (default {seed})
  --size NAME       model size: {sizes} (default {size})
  --prompt TEXT     prompt, one token per byte (default {prompt:?})
  --out DIR         output directory (default target/crossval)
  --inject NAME     plant a bug in the candle engine (list below)
  --dtype NAME      the candle engine's precision: f32 (default) or bf16
{judge}  --bisect          hash-only runs, then raw values for the first divergence and the
                    --window N (default 4) records before it only (tensor-trace bisect),
                    runs in OUT/bisect; the exit code is bisect's (the events are not checked)
  --json            print the report as JSON
  --reference NAME  the reference (list below); its traces go to OUT/NAME
  --model NAME      synthetic (default: the model above) or minilm (all-MiniLM-L6-v2;
                    `cargo xtask crossval --model minilm --help`)
  -h, --help        this text

--reference NAME:
{references}
--inject NAME:
",
        layers = d.layers,
        steps = d.steps,
        seed = d.seed,
        size = d.size.name(),
        sizes = Size::ALL
            .map(|z| format!("{} ({})", z.name(), describe(z)))
            .join(", "),
        prompt = d.prompt,
        references = reference::help(Model::Synthetic),
        judge = Judge::help(),
    );
    for bug in Bug::ALL {
        let _ = writeln!(s, "  {:<22}  {}", bug.name(), bug.description());
    }
    s
}

fn describe(size: Size) -> String {
    let (e, h, kv, f) = size.dims();
    format!("hidden {e}, {h} heads, {kv} kv heads, mlp {f}")
}

/// Parses the arguments after `crossval`; `Ok(None)` means help was asked for.
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
            "--layers" => o.layers = number(flag, value()?)?,
            "--steps" => o.steps = number(flag, value()?)?,
            "--seed" => o.seed = number(flag, value()?)?,
            "--size" => {
                let v = value()?;
                o.size = Size::parse(v).with_context(|| {
                    format!(
                        "--size {v:?}: expected one of {}",
                        Size::ALL.map(Size::name).join(", ")
                    )
                })?;
            }
            "--prompt" => o.prompt = value()?.clone(),
            "--out" => o.out = PathBuf::from(value()?),
            "--inject" => o.inject = Some(value()?.parse().context("--inject")?),
            "--json" => o.json = true,
            "--dtype" => {
                let v = value()?;
                o.precision = match v.as_str() {
                    "f32" => Precision::F32,
                    "bf16" => Precision::Bf16,
                    _ => bail!("--dtype {v:?}: expected f32 or bf16"),
                }
            }
            "--no-baseline" | "--max-ratio" => {
                o.judge.parse_flag(flag, || value().cloned())?;
            }
            "--bisect" => o.bisect = Some(o.bisect.unwrap_or(trace_cli::bisect::DEFAULT_WINDOW)),
            "--window" => o.bisect = Some(number(flag, value()?)?),
            "--reference" => {
                o.reference = reference::find(value()?, Model::Synthetic).context("--reference")?
            }
            other => bail!("unknown option {other:?} (see --help)"),
        }
    }
    if o.bisect.is_some() && !o.reference.bisects() {
        bail!(
            "--bisect cannot use --reference {}: records its rules crop (attention over a padded \
             KV cache, every row's logits) need raw values, which bisect's first pass does not \
             save; run without --bisect",
            o.reference.name()
        );
    }
    if !o.reference.calibrates() {
        o.judge.baseline = false;
    }
    if !o.reference.computes_in(o.precision) && o.judge.baseline {
        bail!(
            "--reference {} cannot compute in {} for the baseline (use --no-baseline)",
            o.reference.name(),
            o.precision.name()
        );
    }
    if o.layers == 0 {
        bail!("--layers 0: the model needs at least one layer");
    }
    if o.prompt.is_empty() {
        bail!("--prompt \"\": the prompt needs at least one byte");
    }
    Ok(Some(o))
}

/// `cargo xtask crossval [--model synthetic] ARGS`: whether the run passed.
pub fn main(args: &[String]) -> Result<bool> {
    let Some(options) = parse(args)? else {
        print!("{}", help());
        return Ok(true);
    };
    if options.bisect.is_some() {
        return super::bisect::report(options.json, || bisect(&options));
    }
    let outcome = run(&options)?;
    print!("{}", render(&options, &outcome)?);
    if options.json {
        // stdout holds the JSON report only.
        eprintln!("{}", outcome.events.summary());
    }
    Ok(outcome.passed())
}

/// Runs the whole cross-validation and returns what the diff found.
pub fn run(o: &Options) -> Result<Outcome> {
    let progress = Progress::new(o.quiet);
    let (e, heads, kv, f) = o.size.dims();
    progress.stage(&format!(
        "model: {} layers, hidden {e}, {heads} heads ({kv} kv), mlp {f}, seed {} -> {}",
        o.layers,
        o.seed,
        o.out.join("model").display()
    ));
    let files = write_inputs(o)?;
    if let Some(bug) = o.inject {
        if bug.decode_only() && o.steps == 0 {
            eprintln!(
                "crossval: warning: {bug} only shows in decode steps and --steps is 0: the \
                 engines will agree"
            );
        }
    }

    progress.stage(&format!(
        "candle engine ({}){}: {} prompt tokens + {} decode steps -> {} (events: {EVENTS_FILE})",
        o.precision.name(),
        o.inject
            .map(|b| format!(" (injected: {b})"))
            .unwrap_or_default(),
        o.prompt.len(),
        o.steps,
        o.out.join("candle").display()
    ));
    let candle = run_candle(o, &files)?;

    let reference_dir = o.out.join(o.reference.name());
    progress.stage(&format!(
        "reference {} ({}): {} -> {}",
        o.reference.name(),
        if o.reference.computes_in(Precision::F64) {
            "f64"
        } else {
            "its own precision"
        },
        o.reference.about(),
        reference_dir.display()
    ));
    let reference_tokens = run_reference(o, &files, Precision::F64, &reference_dir)?;
    let baseline_dir = Judge::baseline_dir(&o.out, o.reference.name(), o.precision);
    if o.judge.baseline {
        progress.stage(&format!(
            "baseline: reference {} in the engine's precision ({}) -> {}",
            o.reference.name(),
            o.precision.name(),
            baseline_dir.display()
        ));
        run_reference(o, &files, o.precision, &baseline_dir)?;
    }

    progress.stage(&format!(
        "trace-diff: candle (A) against {} (B), {}",
        o.reference.name(),
        o.judge.describe()
    ));
    compare(
        o,
        candle,
        reference_tokens,
        &reference_dir,
        o.judge.baseline.then_some(baseline_dir.as_path()),
    )
}

/// Bisects the candle engine (as `xtask crossval-side candle`) against the reference's program,
/// in `o.out/bisect`.
pub fn bisect(o: &Options) -> Result<trace_cli::bisect::Bisection> {
    let inputs = write_inputs(o)?;
    let mut side = vec![
        "candle".to_owned(),
        inputs.model_dir.display().to_string(),
        inputs.prompt_file.display().to_string(),
        o.steps.to_string(),
        "--precision".to_owned(),
        o.precision.name().to_owned(),
    ];
    if let Some(bug) = o.inject {
        side.extend(["--inject".to_owned(), bug.name().to_owned()]);
    }
    let a = super::side::command(&side)?;
    let reference = |precision| {
        o.reference.command(&Job {
            task: Task::Generate {
                model_dir: &inputs.model_dir,
                prompt: &o.prompt,
                prompt_file: &inputs.prompt_file,
                steps: o.steps,
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
        .then(|| reference(o.precision))
        .transpose()?;
    super::bisect::run(
        &a,
        &b,
        c.as_ref(),
        &o.out.join("bisect"),
        o.bisect.unwrap_or(trace_cli::bisect::DEFAULT_WINDOW),
        o.reference.rules(Model::Synthetic)?,
        &o.judge,
    )
}

/// The model directory and the prompt file both engines read.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// `config.json` and `model.safetensors`.
    pub model_dir: PathBuf,
    /// The prompt's bytes.
    pub prompt_file: PathBuf,
}

/// Writes the seeded model and the prompt under `o.out`.
pub fn write_inputs(o: &Options) -> Result<Inputs> {
    let model_dir = o.out.join("model");
    reference_engine::seeded::write(&model_dir, o.size, o.layers, o.seed)?;
    let prompt_file = o.out.join("prompt.txt");
    std::fs::write(&prompt_file, &o.prompt)
        .with_context(|| format!("write {}", prompt_file.display()))?;
    Ok(Inputs {
        model_dir,
        prompt_file,
    })
}

/// What the candle engine did: its tokens and its checked event history; its traces are in
/// `o.out/candle`.
#[derive(Debug)]
pub struct CandleRun {
    /// The generated tokens.
    pub tokens: Vec<u32>,
    /// The pipeline events.
    pub events: Events,
}

/// Runs the candle engine (with `o.inject` planted), traced into `o.out/candle`, its events
/// saved to `o.out/`[`EVENTS_FILE`] and checked.
pub fn run_candle(o: &Options, inputs: &Inputs) -> Result<CandleRun> {
    let candle_dir = o.out.join("candle");
    let events_path = o.out.join(EVENTS_FILE);
    let tokens = {
        let tracer = fresh_tracer(&candle_dir)?;
        let events = InferenceTracer::new(TraceConfig::enabled());
        let dtype = match o.precision {
            Precision::Bf16 => candle_core::DType::BF16,
            _ => candle_core::DType::F32,
        };
        let engine = Llama::load_with(&inputs.model_dir, o.inject, dtype)
            .context("load the candle engine")?;
        let traces = Traces {
            tensors: Some(&tracer),
            events: Some(&events),
        };
        let generation = engine.generate_text(&o.prompt, o.steps, traces);
        // The history is saved even when the run failed: its ExecutionFailed events say where.
        std::fs::write(&events_path, events.to_json())
            .with_context(|| format!("write {}", events_path.display()))?;
        let generation = generation.context("run the candle engine")?;
        tracer.flush()?;
        generation.tokens
    };
    // Read back from disk (what a user would check), once, then validated.
    let document = trace_events::TraceDocument::read(&events_path)
        .with_context(|| format!("read {}", events_path.display()))?;
    Ok(CandleRun {
        tokens,
        events: Events {
            violations: trace_events::validate(&document),
            document,
            path: events_path,
        },
    })
}

/// Runs `o.reference` in `precision`, traced into `trace_dir`; returns its tokens.
pub fn run_reference(
    o: &Options,
    inputs: &Inputs,
    precision: Precision,
    trace_dir: &Path,
) -> Result<Vec<u32>> {
    o.reference
        .run(&Job {
            precision,
            task: Task::Generate {
                model_dir: &inputs.model_dir,
                prompt: &o.prompt,
                prompt_file: &inputs.prompt_file,
                steps: o.steps,
            },
            trace_dir,
            quiet: o.quiet,
        })
        .with_context(|| format!("run the {} reference", o.reference.name()))
}

/// Diffs `o.out/candle` (A) with the reference's traces in `reference_dir` (B) under the
/// reference's rules, calibrated by the baseline's traces in `baseline_dir` (C) when given.
pub fn compare(
    o: &Options,
    candle: CandleRun,
    reference_tokens: Vec<u32>,
    reference_dir: &Path,
    baseline_dir: Option<&Path>,
) -> Result<Outcome> {
    let a = open_run(&o.out.join("candle"))?;
    let b = open_run(reference_dir)?;
    let c = baseline_dir.map(open_run).transpose()?;
    let report = o
        .judge
        .diff(&a, &b, c.as_ref(), o.reference.rules(Model::Synthetic)?)?;
    Ok(Outcome {
        report,
        candle_tokens: candle.tokens,
        reference_tokens,
        events: candle.events,
    })
}

/// The report as the command prints it: trace-diff's rendering plus the generated text.
pub fn render(o: &Options, outcome: &Outcome) -> Result<String> {
    if o.json {
        return Ok(trace_diff::render::json(&outcome.report));
    }
    let mut s = trace_diff::render::text(&outcome.report, &Default::default());
    let _ = writeln!(
        s,
        "\ncandle    generated {:?}\nreference generated {:?}",
        trace_candle::engine::decode_bytes(&outcome.candle_tokens),
        reference_engine::decode_bytes(&outcome.reference_tokens),
    );
    let _ = writeln!(s, "{}", outcome.events.summary());
    let verdict = match (outcome.agree(), outcome.events.clean()) {
        (true, true) => "crossval: the engines agree within tolerance",
        (true, false) => {
            "crossval: the engines agree, but the candle event history holds an error or a \
             contract violation (see the events line above)"
        }
        (false, _) => "crossval: the engines diverge (see the first divergence above)",
    };
    let _ = writeln!(s, "{verdict}");
    Ok(s)
}
