//! `--reference torch`: Hugging Face transformers itself (`python/torch_reference.py`), the
//! library people port models from, unedited and traced from the outside by
//! `tensor_trace.torch.trace_module`. Its records carry transformers' module paths; the shipped
//! presets `hf-llama` and `hf-bert` map the candle engines' names onto them.

use std::process::Command;

use anyhow::{bail, Context, Result};
use trace_diff::views::View;
use trace_diff::Rules;

use super::interface::Reference;
use crate::task::{Job, Model, Precision, Task};
use crate::venv::{self as python, Extra};

/// The rules of the candle engine (tensor-trace's names) against transformers, calibrated by
/// llama.cpp: the three engine views composed.
fn gguf_rules() -> Result<Rules> {
    let view = |name: &str| {
        View::preset(name).with_context(|| format!("trace-diff ships no view {name:?}"))
    };
    let (ours, hf, cpp) = (view("ours")??, view("hf-decoder")??, view("llama-cpp")??);
    let mut rules = trace_diff::views::compose(&ours, &hf, Some(&cpp))?;
    rules.set_views(trace_diff::views::used(
        (&ours, "the candle engine"),
        (&hf, "--reference torch"),
        Some((&cpp, "the baseline's engine, llama.cpp")),
    ));
    Ok(rules)
}

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
        matches!(model, Model::Synthetic | Model::MiniLm | Model::SmolLm2)
    }

    /// On a GGUF the baseline is llama.cpp, whose records its view crops (the padded KV axis,
    /// every row's logits): only raw values can judge them.
    fn bisects(&self, model: Model) -> bool {
        model != Model::SmolLm2
    }

    fn computes_in(&self, _precision: Precision) -> bool {
        true
    }

    fn rules(&self, model: Model) -> Result<Rules> {
        let preset = match model {
            Model::Synthetic => "hf-llama",
            Model::MiniLm => "hf-bert",
            // A GGUF: transformers (B) and llama.cpp on the quantized file (the baseline), each
            // through its engine view.
            Model::SmolLm2 => return gguf_rules(),
            Model::TensorParallel => {
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

    /// On a GGUF, transformers dequantizes the weights and computes in float: the baseline, which
    /// must compute in the quantized engine's arithmetic, is llama.cpp on the engine's file.
    fn baseline_engine(&self, task: &Task<'_>) -> Option<&'static dyn Reference> {
        matches!(task, Task::Gguf { .. }).then_some(&super::llamacpp::LlamaCpp as _)
    }

    fn command(&self, job: &Job<'_>) -> Result<Command> {
        let extras: &[Extra] = match job.task {
            // transformers reads a GGUF with gguf-py and refuses to without accelerate.
            Task::Gguf { .. } => &[Extra::Torch, Extra::Gguf, Extra::Fixtures],
            _ => &[Extra::Torch],
        };
        let python = python::ensure_venv(extras)?;
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
            Task::Gguf {
                reference_file,
                prompt_file,
                steps,
                ..
            } => {
                // The weights without quantization (B); transformers dequantizes the GGUF itself.
                let (Some(dir), Some(file)) = (reference_file.parent(), reference_file.file_name())
                else {
                    bail!("{}: not a file in a directory", reference_file.display());
                };
                cmd.arg("generate")
                    .arg(dir)
                    .arg(prompt_file)
                    .arg(steps.to_string())
                    .arg("--gguf-file")
                    .arg(file);
            }
        }
        cmd.args(["--dtype", dtype(job.precision)])
            // No network: the model is the local directory, never the Hub.
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .current_dir(crate::workspace::project_root());
        Ok(cmd)
    }
}
