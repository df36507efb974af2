//! `--reference numpy`: `python/minilm_reference.py`, all-MiniLM-L6-v2 written in plain numpy
//! (float64) from the paper and the model card, traced with the Python emitter.

use std::process::Command;

use anyhow::{bail, Result};

use super::interface::Reference;
use crate::task::{Job, Model, Precision, Task};
use crate::venv::{self as python, Extra};

/// The numpy MiniLM reference.
pub struct Numpy;

impl Reference for Numpy {
    fn name(&self) -> &'static str {
        "numpy"
    }

    fn about(&self) -> &'static str {
        "python/minilm_reference.py: BERT in plain numpy (float64 or float32), written independently"
    }

    fn runs(&self, model: Model) -> bool {
        model == Model::MiniLm
    }

    fn computes_in(&self, precision: Precision) -> bool {
        precision != Precision::Bf16
    }

    fn command(&self, job: &Job<'_>) -> Result<Command> {
        let Task::Embed {
            model_dir,
            sentences_file,
            max_tokens,
        } = job.task
        else {
            bail!("the numpy reference runs the minilm model only");
        };
        let python = python::ensure_venv(&[Extra::MiniLm])?;
        let mut cmd = Command::new(python);
        cmd.arg(crate::workspace::project_root().join("python/minilm_reference.py"))
            .arg("embed")
            .arg(model_dir)
            .arg(sentences_file)
            .args(["--dtype", dtype(job.precision)?])
            .current_dir(crate::workspace::project_root());
        if let Some(n) = max_tokens {
            cmd.arg("--max-tokens").arg(n.to_string());
        }
        Ok(cmd)
    }
}

/// The numpy dtype of a precision.
fn dtype(precision: Precision) -> Result<&'static str> {
    match precision {
        Precision::F64 => Ok("float64"),
        Precision::F32 => Ok("float32"),
        Precision::Bf16 => bail!("the numpy reference has no bf16 mode (numpy has no bfloat16)"),
    }
}
