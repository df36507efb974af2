//! `--reference rust`: `reference_engine::Model`, the synthetic model on plain slices (f64, or
//! f32/bf16 for the baseline), run in-process; as `crossval-side rust` ([`side`]) under
//! `--bisect`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::interface::Reference;
use crate::exec::fresh_tracer;
use crate::task::{Job, Model, Precision, Task};

/// The f64 Rust reference engine.
pub struct Rust;

impl Reference for Rust {
    fn name(&self) -> &'static str {
        "rust"
    }

    fn about(&self) -> &'static str {
        "the reference engine (crates/reference-engine; f64, f32 or bf16), in-process"
    }

    fn runs(&self, model: Model) -> bool {
        model == Model::Synthetic
    }

    fn computes_in(&self, _precision: Precision) -> bool {
        true
    }

    fn command(&self, job: &Job<'_>) -> Result<std::process::Command> {
        let Task::Generate {
            model_dir,
            prompt_file,
            steps,
            ..
        } = job.task
        else {
            bail!("the rust reference runs the synthetic model only");
        };
        crate::side::command(&[
            "rust".into(),
            model_dir.display().to_string(),
            prompt_file.display().to_string(),
            steps.to_string(),
            "--precision".into(),
            job.precision.name().into(),
        ])
    }

    /// In-process (no program to start) unless bisecting.
    fn run(&self, job: &Job<'_>) -> Result<Vec<u32>> {
        let Task::Generate {
            model_dir,
            prompt,
            steps,
            ..
        } = job.task
        else {
            bail!("the rust reference runs the synthetic model only");
        };
        let tracer = fresh_tracer(job.trace_dir)?;
        let tokens = generate(model_dir, prompt, steps, job.precision, Some(&tracer))?;
        tracer.flush()?;
        Ok(tokens)
    }
}

/// The reference engine on the model in `model_dir`: `steps` decode steps after the prompt's
/// bytes, traced into `tracer`.
fn generate(
    model_dir: &std::path::Path,
    prompt: &str,
    steps: usize,
    precision: Precision,
    tracer: Option<&trace_core::Tracer>,
) -> Result<Vec<u32>> {
    let engine = reference_engine::Model::load_with(model_dir, precision)
        .context("load the reference engine")?;
    let prompt: Vec<u32> = prompt.bytes().map(u32::from).collect();
    engine
        .generate(&prompt, steps, tracer)
        .context("run the reference engine")
}

/// `crossval-side rust`: the reference engine as a program, traced through the environment.
#[derive(clap::Args, Debug)]
pub struct SideArgs {
    /// `config.json` and `model.safetensors`.
    model_dir: PathBuf,
    /// The prompt, one token per byte.
    prompt_file: PathBuf,
    /// Decode steps after the prefill.
    steps: usize,
    /// The precision it computes in.
    #[arg(long, value_parser = crate::side::precision, default_value = "f64")]
    precision: Precision,
}

/// Runs `crossval-side rust`; prints the generated tokens.
pub fn side(args: &SideArgs) -> Result<()> {
    let tracer = trace_core::global().context("tracing settings")?;
    let prompt = crate::side::read_prompt(&args.prompt_file)?;
    let tokens = generate(&args.model_dir, &prompt, args.steps, args.precision, tracer)?;
    crate::side::print_tokens(&tokens);
    if let Some(t) = tracer {
        t.flush()?;
    }
    Ok(())
}
