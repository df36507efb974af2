//! The synthetic model: a deterministic seeded Llama-style model and the candle engine of
//! `trace_candle::engine` (possibly with a planted bug), compared with a reference of the
//! registry (default the f64 reference engine).
//!
//! [`SyntheticHarness`] writes the model and a prompt under the output directory and runs the
//! candle engine in-process, traced with raw values into its own directory. Its pipeline events
//! (`InferenceTracer`: spans per step, Jidoka checks) are saved next to the traces as
//! [`EVENTS_FILE`] and checked against the event contracts. The run passes when the engines
//! agree within tolerance and the event history is clean (no Jidoka error, no contract
//! violation). [`side`] is the engine as the program `crossval-side candle`, for `--bisect`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use trace_candle::engine::{Bug, Llama, Traces};
use trace_events::{ContractViolation, InferenceTracer, TraceConfig};

use super::{Harness, Sides, Verdict};
use crate::exec::{fresh_tracer, Progress};
use crate::options::{Options, Size};
use crate::task::{Model, Precision, Task};

#[cfg(test)]
mod tests;

/// The synthetic model's [`Harness`].
pub struct SyntheticHarness;

/// The `--help` description of `--model synthetic`.
pub const ABOUT: &str = "\
Writes a seeded Llama-style model and a prompt, runs the candle engine and the f64 reference
engine on it, each traced into its own directory, and reports the first divergence. The candle
engine's pipeline events go to OUT/candle-events.json and are checked (Jidoka, contracts).
Exit code: 0 the engines agree within tolerance and the events are clean, 1 they diverge or
the events hold an error or a contract violation, 2 error.";

/// The `--size` line of `--help`: each size with its dimensions.
pub fn size_help() -> String {
    let sizes: Vec<String> = Size::ALL
        .map(|z| format!("{} ({})", z.name(), describe(z)))
        .into();
    format!("model size (default tiny):\n{}", sizes.join(",\n"))
}

impl Harness for SyntheticHarness {
    type Inputs = Inputs;
    type Engine = CandleRun;
    type Outcome = Outcome;

    fn model(&self) -> Model {
        Model::Synthetic
    }

    fn prepare(&self, o: &Options, progress: &Progress) -> Result<Inputs> {
        let s = &o.synthetic;
        let (e, heads, kv, f) = s.size.dims();
        progress.stage(&format!(
            "model: {} layers, hidden {e}, {heads} heads ({kv} kv), mlp {f}, seed {} -> {}",
            s.layers,
            s.seed,
            o.out.join("model").display()
        ));
        let inputs = write_inputs(o)?;
        if let Some(bug) = s.inject {
            if bug.decode_only() && s.steps == 0 {
                eprintln!(
                    "crossval: warning: {bug} only shows in decode steps and --steps is 0: the \
                     engines will agree"
                );
            }
        }
        Ok(inputs)
    }

    fn run_engine(
        &self,
        o: &Options,
        inputs: &Inputs,
        dir: &Path,
        progress: &Progress,
    ) -> Result<CandleRun> {
        let s = &o.synthetic;
        progress.stage(&format!(
            "candle engine ({}){}: {} prompt tokens + {} decode steps -> {} (events: {EVENTS_FILE})",
            s.precision.name(),
            s.inject
                .map(|b| format!(" (injected: {b})"))
                .unwrap_or_default(),
            s.prompt.len(),
            s.steps,
            dir.display()
        ));
        run_candle(o, inputs, dir)
    }

    fn task<'a>(&self, o: &'a Options, inputs: &'a Inputs) -> Result<Task<'a>> {
        Ok(Task::Generate {
            model_dir: &inputs.model_dir,
            prompt: &o.synthetic.prompt,
            prompt_file: &inputs.prompt_file,
            steps: o.synthetic.steps,
        })
    }

    fn engine_command(&self, o: &Options, inputs: &Inputs) -> Result<Command> {
        let s = &o.synthetic;
        let mut side = vec![
            "candle".to_owned(),
            inputs.model_dir.display().to_string(),
            inputs.prompt_file.display().to_string(),
            s.steps.to_string(),
            "--precision".to_owned(),
            s.precision.name().to_owned(),
        ];
        if let Some(bug) = s.inject {
            side.extend(["--inject".to_owned(), bug.name().to_owned()]);
        }
        crate::side::command(&side)
    }

    fn conclude(
        &self,
        _o: &Options,
        report: trace_diff::Report,
        candle: CandleRun,
        reference_tokens: Vec<u32>,
        _sides: &Sides,
    ) -> Result<Outcome> {
        Ok(Outcome {
            report,
            candle_tokens: candle.tokens,
            reference_tokens,
            events: candle.events,
        })
    }
}

impl Verdict for Outcome {
    fn passed(&self) -> bool {
        Outcome::passed(self)
    }

    fn render(&self, o: &Options) -> String {
        render(o, self)
    }

    fn note(&self) -> Option<String> {
        Some(self.events.summary())
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

fn describe(size: Size) -> String {
    let (e, h, kv, f) = size.dims();
    format!("hidden {e}, {h} heads, {kv} kv heads, mlp {f}")
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
    let s = &o.synthetic;
    if s.layers == 0 {
        bail!("--layers 0: the model needs at least one layer");
    }
    if s.prompt.is_empty() {
        bail!("--prompt \"\": the prompt needs at least one byte");
    }
    let model_dir = o.out.join("model");
    reference_engine::seeded::write(&model_dir, s.size, s.layers, s.seed)?;
    let prompt_file = o.out.join("prompt.txt");
    std::fs::write(&prompt_file, &s.prompt)
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

/// Runs the candle engine (with the planted bug), traced into `candle_dir`, its events saved
/// to `o.out/`[`EVENTS_FILE`] and checked.
pub fn run_candle(o: &Options, inputs: &Inputs, candle_dir: &Path) -> Result<CandleRun> {
    let s = &o.synthetic;
    let dtype = match s.precision {
        Precision::Bf16 => candle_core::DType::BF16,
        _ => candle_core::DType::F32,
    };
    let engine =
        Llama::load_with(&inputs.model_dir, s.inject, dtype).context("load the candle engine")?;
    generate_traced(&engine, &s.prompt, s.steps, candle_dir, &o.out)
}

/// Runs `engine` on `prompt` (one token per byte) for `steps` decode steps, traced into
/// `candle_dir`, its events saved to `out/`[`EVENTS_FILE`] and checked.
pub fn generate_traced(
    engine: &Llama,
    prompt: &str,
    steps: usize,
    candle_dir: &Path,
    out: &Path,
) -> Result<CandleRun> {
    let events_path = out.join(EVENTS_FILE);
    let tokens = {
        let tracer = fresh_tracer(candle_dir)?;
        let events = InferenceTracer::new(TraceConfig::enabled());
        let traces = Traces {
            tensors: Some(&tracer),
            events: Some(&events),
        };
        let generation = engine.generate_text(prompt, steps, traces);
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

/// The report as the command prints it: trace-diff's rendering plus the generated text.
pub fn render(o: &Options, outcome: &Outcome) -> String {
    if o.json {
        return trace_diff::render::json(&outcome.report);
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
    s
}

/// `crossval-side candle`: the candle engine as a program, traced through the environment.
#[derive(clap::Args, Debug)]
pub struct SideArgs {
    /// `config.json` and `model.safetensors`, or a Llama GGUF file (`*.gguf`, run in F32 with
    /// its projections in the file's types).
    model_dir: PathBuf,
    /// The prompt, one token per byte.
    prompt_file: PathBuf,
    /// Decode steps after the prefill.
    steps: usize,
    /// The precision it computes in: f32 or bf16.
    #[arg(long, value_parser = crate::side::precision, default_value = "f32")]
    precision: Precision,
    /// A bug to plant.
    #[arg(long, value_parser = parse_bug)]
    inject: Option<Bug>,
}

fn parse_bug(v: &str) -> Result<Bug, String> {
    v.parse().map_err(|e| format!("{e}"))
}

/// Runs `crossval-side candle`; prints the generated tokens.
pub fn side(args: &SideArgs) -> Result<()> {
    let dtype = match args.precision {
        Precision::F32 => candle_core::DType::F32,
        Precision::Bf16 => candle_core::DType::BF16,
        Precision::F64 => bail!("--precision f64: the candle engine runs in f32 or bf16"),
    };
    let tracer = trace_core::global().context("tracing settings")?;
    let prompt = crate::side::read_prompt(&args.prompt_file)?;
    let gguf = args.model_dir.extension().is_some_and(|e| e == "gguf");
    if gguf && dtype != candle_core::DType::F32 {
        bail!("--precision: a GGUF runs in f32 (its projections in the file's types)");
    }
    let engine = if gguf {
        Llama::load_gguf(&args.model_dir, args.inject)
    } else {
        Llama::load_with(&args.model_dir, args.inject, dtype)
    }
    .context("load the candle engine")?;
    let traces = Traces {
        tensors: tracer,
        events: None,
    };
    let generation = engine
        .generate_text(&prompt, args.steps, traces)
        .context("run the candle engine")?;
    crate::side::print_tokens(&generation.tokens);
    if let Some(t) = tracer {
        t.flush()?;
    }
    Ok(())
}
