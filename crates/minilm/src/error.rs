//! The crate's one error type.

use std::path::PathBuf;

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
    /// A [`Config`](crate::Config) the encoder cannot run (see
    /// [`Config::validate`](crate::Config::validate)).
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
    /// A [`Batch`](crate::Batch) whose vectors do not hold `batch * len` entries.
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
