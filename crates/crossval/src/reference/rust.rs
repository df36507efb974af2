//! `--reference rust`: `reference_engine::Model`, the synthetic model on plain slices (f64, or
//! f32/bf16 for the baseline), run in-process; as `xtask crossval-side rust` under `--bisect`.

use anyhow::{bail, Context, Result};

use super::{Job, Model, Precision, Reference, Task};
use crate::crossval::fresh_tracer;

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
        crate::crossval::side::command(&[
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
        let engine = reference_engine::Model::load_with(model_dir, job.precision)
            .context("load the reference engine")?;
        let prompt: Vec<u32> = prompt.bytes().map(u32::from).collect();
        let tokens = engine
            .generate(&prompt, steps, Some(&tracer))
            .context("run the reference engine")?;
        tracer.flush()?;
        Ok(tokens)
    }
}
