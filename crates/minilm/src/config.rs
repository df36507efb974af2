//! The model directory's files and the BERT configuration the encoder reads from it.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// File name of the model configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the tokenizer inside a model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of sentence-transformers' settings for the transformer module inside a model
/// directory; its `max_seq_length` is the truncation length (see
/// [`MaxTokens::resolve`](crate::MaxTokens::resolve)).
pub const SENTENCE_BERT_CONFIG_FILE: &str = "sentence_bert_config.json";
/// The truncation length in all-MiniLM-L6-v2's `tokenizer.json`, `[CLS]` and `[SEP]`
/// included: 128. sentence-transformers does not use it (it truncates that model at 256), and
/// neither does [`Encoder::load`](crate::Encoder::load) any more; it remains for callers that
/// pin this length explicitly with [`Encoder::load_with`](crate::Encoder::load_with).
pub const MAX_TOKENS: usize = 128;

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
