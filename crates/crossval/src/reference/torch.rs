//! `--reference torch`: Hugging Face transformers itself (`python/torch_reference.py`), the
//! library people port models from, unedited and traced from the outside by
//! `tensor_trace.torch.trace_module`. Its records carry transformers' module paths; the shipped
//! presets `hf-llama` and `hf-bert` map the candle engines' names onto them.

use std::process::Command;

use anyhow::{bail, Context, Result};
use trace_diff::Rules;

use super::interface::Reference;
use crate::task::{Job, Model, Precision, Task};
use crate::venv::{self as python, Extra};

/// The transformers reference.
pub struct Torch;

/// torch's name of a precision (`--dtype` of python/torch_reference.py).
fn dtype(precision: Precision) -> &'static str {
    match precision {
        Precision::F64 => "float64",
        Precision::F32 => "float32",
        Precision::Bf16 => "bfloat16",
    }
}

impl Reference for Torch {
    fn name(&self) -> &'static str {
        "torch"
    }

    fn about(&self) -> &'static str {
        "Hugging Face transformers (LlamaForCausalLM / BertModel, eager attention), traced by \
         forward hooks"
    }

    fn runs(&self, model: Model) -> bool {
        matches!(model, Model::Synthetic | Model::MiniLm)
    }

    fn computes_in(&self, _precision: Precision) -> bool {
        true
    }

    fn rules(&self, model: Model) -> Result<Rules> {
        let preset = match model {
            Model::Synthetic => "hf-llama",
            Model::MiniLm => "hf-bert",
            Model::TensorParallel | Model::SmolLm2 => {
                bail!(
                    "the torch reference does not run the {} model",
                    model.name()
                )
            }
        };
        Rules::preset(preset)
            .with_context(|| format!("trace-diff ships no preset {preset:?}"))?
            .map_err(Into::into)
    }

    fn command(&self, job: &Job<'_>) -> Result<Command> {
        let python = python::ensure_venv(&[Extra::Torch])?;
        let mut cmd = Command::new(python);
        cmd.arg(crate::workspace::project_root().join("python/torch_reference.py"));
        match job.task {
            Task::Generate {
                model_dir,
                prompt_file,
                steps,
                ..
            } => {
                cmd.arg("generate")
                    .arg(model_dir)
                    .arg(prompt_file)
                    .arg(steps.to_string());
            }
            Task::Embed {
                model_dir,
                sentences_file,
                max_tokens,
            } => {
                cmd.arg("embed").arg(model_dir).arg(sentences_file);
                if let Some(n) = max_tokens {
                    cmd.arg("--max-tokens").arg(n.to_string());
                }
            }
            Task::Gguf { .. } => bail!("the torch reference does not run GGUF files"),
        }
        cmd.args(["--dtype", dtype(job.precision)])
            // No network: the model is the local directory, never the Hub.
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .current_dir(crate::workspace::project_root());
        Ok(cmd)
    }
}
