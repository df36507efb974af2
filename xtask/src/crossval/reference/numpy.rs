//! `--reference numpy`: `python/minilm_reference.py`, all-MiniLM-L6-v2 written in plain numpy
//! (float64) from the paper and the model card, traced with the Python emitter.

use anyhow::{bail, Result};
use trace_diff::Rules;

use super::{Job, Model, Precision, Reference, Task};
use crate::crossval::{run_program, traced_command};
use crate::python::{self, Extra};

/// The numpy MiniLM reference.
pub struct Numpy;

/// An F32 engine against an F64 reference through 6 post-norm layers.
///
/// trace-diff's F32 default (atol 1e-5, rtol 1e-4) bounds one operation's rounding. After six
/// BERT layers a few elements near zero are off by up to 2.7e-5 on a clean run (relative L2
/// error 1.3e-6), so `atol` is raised to 1e-4, a 4x margin; `rtol` stays 1e-4. The planted bugs
/// move elements by 2e-3 and more, 20x past it.
pub const MINILM_TOLERANCE: &str = "
[default_tolerance]
atol = 1e-4
";

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

    fn rules(&self, _model: Model) -> Result<Rules> {
        Ok(Rules::from_toml(
            &format!("version = 1\n{MINILM_TOLERANCE}"),
            std::path::Path::new("(minilm crossval rules)"),
        )?)
    }

    fn run(&self, job: &Job<'_>) -> Result<Vec<u32>> {
        let Task::Embed {
            model_dir,
            sentences_file,
            max_tokens,
        } = job.task
        else {
            bail!("the numpy reference runs the minilm model only");
        };
        let python = python::ensure_venv(&[Extra::MiniLm])?;
        let mut cmd = traced_command(&python, job.trace_dir)?;
        cmd.arg(crate::project_root().join("python/minilm_reference.py"))
            .arg("embed")
            .arg(model_dir)
            .arg(sentences_file)
            .args(["--dtype", dtype(job.precision)?]);
        if let Some(n) = max_tokens {
            cmd.arg("--max-tokens").arg(n.to_string());
        }
        run_program("the numpy reference", &mut cmd)?;
        Ok(Vec::new())
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
