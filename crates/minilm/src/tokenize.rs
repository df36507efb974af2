//! `tokenizer.json` through the `tokenizers` crate: truncation and padding to one batch.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, TruncationParams};

use crate::error::{Error, Result};

/// Sentences tokenized into one padded batch, row-major `[batch, len]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Sentences in the batch.
    pub batch: usize,
    /// Tokens per sentence after padding (the longest sentence, truncated).
    pub len: usize,
    /// Token ids, `[CLS] ... [SEP]` then `[PAD]`.
    pub ids: Vec<u32>,
    /// Token type ids (all 0 for single sentences).
    pub type_ids: Vec<u32>,
    /// 1 for a real token, 0 for padding.
    pub mask: Vec<u32>,
}

impl Batch {
    /// Real tokens of sentence `i` (its mask's sum).
    pub fn tokens_in(&self, i: usize) -> usize {
        self.mask[i * self.len..(i + 1) * self.len]
            .iter()
            .filter(|&&m| m != 0)
            .count()
    }
}

/// The model's WordPiece tokenizer with truncation to `max_tokens` and padding to the longest
/// sentence of each batch.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_tokens: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Reads `tokenizer.json`. Its own truncation and padding settings are replaced: sentences
    /// are cut to `max_tokens` (special tokens included) and padded to the longest one of the
    /// batch with the file's pad token (`[PAD]`, id 0, when the file has none), as
    /// sentence-transformers does. [`MaxTokens::resolve`](crate::MaxTokens::resolve) gives the
    /// `max_tokens` the model directory asks for.
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<Self> {
        let tokenizer_error = |message: String| Error::Tokenizer {
            path: path.to_owned(),
            message,
        };
        if max_tokens < 2 {
            return Err(tokenizer_error(format!(
                "max_tokens {max_tokens}: expected at least 2 ([CLS] and [SEP])"
            )));
        }
        let mut inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| tokenizer_error(e.to_string()))?;
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_to_multiple_of: None,
            ..inner.get_padding().cloned().unwrap_or_default()
        };
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| tokenizer_error(e.to_string()))?;
        inner.with_padding(Some(padding));
        Ok(Tokenizer { inner, max_tokens })
    }

    /// The truncation length.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenizes `sentences` (with `[CLS]`/`[SEP]`) into one padded batch.
    pub fn encode(&self, sentences: &[&str]) -> Result<Batch> {
        if sentences.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let encodings = self
            .inner
            .encode_batch(sentences.to_vec(), true)
            .map_err(|e| Error::Encode {
                message: e.to_string(),
            })?;
        let len = encodings[0].get_ids().len();
        let mut batch = Batch {
            batch: encodings.len(),
            len,
            ids: Vec::with_capacity(len * encodings.len()),
            type_ids: Vec::with_capacity(len * encodings.len()),
            mask: Vec::with_capacity(len * encodings.len()),
        };
        for e in &encodings {
            // Padding to the batch's longest makes every row the same length.
            debug_assert_eq!(e.get_ids().len(), len);
            batch.ids.extend_from_slice(e.get_ids());
            batch.type_ids.extend_from_slice(e.get_type_ids());
            batch.mask.extend_from_slice(e.get_attention_mask());
        }
        Ok(batch)
    }
}
