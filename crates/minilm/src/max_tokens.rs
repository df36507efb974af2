//! The truncation length: read from the model directory the way sentence-transformers reads it.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{Config, CONFIG_FILE, SENTENCE_BERT_CONFIG_FILE, TOKENIZER_FILE};
use crate::error::{Error, Result};

/// Where a truncation length came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LengthSource {
    /// Given by the caller ([`Encoder::load_with`](crate::Encoder::load_with)).
    Explicit,
    /// `max_seq_length` in `sentence_bert_config.json`: the length sentence-transformers
    /// truncates to.
    SentenceBertConfig,
    /// `truncation.max_length` in `tokenizer.json`.
    TokenizerJson,
    /// `max_position_embeddings` in `config.json`: the longest input the model takes.
    MaxPositionEmbeddings,
}

impl fmt::Display for LengthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthSource::Explicit => "explicit",
            LengthSource::SentenceBertConfig => "sentence_bert_config.json max_seq_length",
            LengthSource::TokenizerJson => "tokenizer.json truncation.max_length",
            LengthSource::MaxPositionEmbeddings => "config.json max_position_embeddings",
        })
    }
}

/// A truncation length in tokens (`[CLS]` and `[SEP]` included) and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxTokens {
    /// Tokens per sentence at most.
    pub tokens: usize,
    /// The file and field that gave it, or [`LengthSource::Explicit`].
    pub source: LengthSource,
}

impl fmt::Display for MaxTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tokens ({})", self.tokens, self.source)
    }
}

/// The one field of `tokenizer.json` read here; serde skips the rest of the file.
#[derive(Deserialize)]
struct TokenizerFile {
    #[serde(default)]
    truncation: Value,
}

impl MaxTokens {
    /// The length sentence-transformers uses for the model in `dir`, the first of:
    /// 1. `max_seq_length` in `sentence_bert_config.json` (256 for all-MiniLM-L6-v2), when the
    ///    file exists and the field is not missing or `null`;
    /// 2. `truncation.max_length` in `tokenizer.json`, when truncation is set there;
    /// 3. `max_position_embeddings` of `config`, the longest input the model takes.
    ///
    /// Every length must lie between 2 (`[CLS]` and `[SEP]`) and `max_position_embeddings`;
    /// a file that cannot be parsed or a field of another type or range is an error naming
    /// the file and the field, never a silent fallback.
    pub fn resolve(dir: &Path, config: &Config) -> Result<Self> {
        let max = config.max_position_embeddings;
        let sbert = dir.join(SENTENCE_BERT_CONFIG_FILE);
        if let Some(text) = read_optional(&sbert)? {
            let invalid = |message: String| Error::Config {
                path: sbert.clone(),
                message,
            };
            let value: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            let Value::Object(fields) = value else {
                return Err(invalid(format!(
                    "expected a JSON object, found {}",
                    kind(&value)
                )));
            };
            match fields.get("max_seq_length") {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let tokens =
                        length(v, max).map_err(|m| invalid(format!("max_seq_length {m}")))?;
                    return Ok(MaxTokens {
                        tokens,
                        source: LengthSource::SentenceBertConfig,
                    });
                }
            }
        }

        let tokenizer = dir.join(TOKENIZER_FILE);
        let invalid = |message: String| Error::Tokenizer {
            path: tokenizer.clone(),
            message,
        };
        let text = std::fs::read_to_string(&tokenizer).map_err(|source| Error::Io {
            path: tokenizer.clone(),
            source,
        })?;
        let file: TokenizerFile =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        match &file.truncation {
            Value::Null => {}
            Value::Object(fields) => {
                let v = fields.get("max_length").unwrap_or(&Value::Null);
                let tokens =
                    length(v, max).map_err(|m| invalid(format!("truncation.max_length {m}")))?;
                return Ok(MaxTokens {
                    tokens,
                    source: LengthSource::TokenizerJson,
                });
            }
            other => {
                return Err(invalid(format!(
                    "truncation: expected an object or null, found {}",
                    kind(other)
                )))
            }
        }

        if max < 2 {
            return Err(Error::Config {
                path: dir.join(CONFIG_FILE),
                message: format!(
                    "max_position_embeddings {max}: expected at least 2 ([CLS] and [SEP])"
                ),
            });
        }
        Ok(MaxTokens {
            tokens: max,
            source: LengthSource::MaxPositionEmbeddings,
        })
    }

    /// A length given by the caller, checked against `config` (2 to
    /// `max_position_embeddings`).
    pub fn explicit(tokens: usize, config: &Config) -> Result<Self> {
        let max = config.max_position_embeddings;
        if !(2..=max).contains(&tokens) {
            return Err(Error::MaxTokens {
                max_tokens: tokens,
                max,
            });
        }
        Ok(MaxTokens {
            tokens,
            source: LengthSource::Explicit,
        })
    }
}

/// The file's text, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A length field: an integer from 2 to `max`, else the message's tail after the field name.
fn length(v: &Value, max: usize) -> std::result::Result<usize, String> {
    match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
        Some(n) if (2..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{v}: expected an integer from 2 ([CLS] and [SEP]) to {max} \
             (max_position_embeddings in {CONFIG_FILE})"
        )),
    }
}

/// The JSON type of `v`, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_position_embeddings: usize) -> Config {
        Config {
            vocab_size: 16,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 12,
            max_position_embeddings,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".to_owned(),
        }
    }

    /// A model directory holding the given files (name, text).
    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    const TRUNC_128: &str = r#"{"version": "1.0", "truncation": {"direction": "Right",
        "max_length": 128, "strategy": "LongestFirst", "stride": 0}, "model": {}}"#;
    const NO_TRUNC: &str = r#"{"version": "1.0", "truncation": null, "model": {}}"#;

    fn check(files: &[(&str, &str)], expected: (usize, LengthSource)) {
        let d = dir(files);
        let got = MaxTokens::resolve(d.path(), &config(512)).unwrap();
        assert_eq!((got.tokens, got.source), expected, "{files:?}");
    }

    #[test]
    fn sentence_bert_config_wins_then_tokenizer_then_positions() {
        use LengthSource::*;
        let sbert = (
            SENTENCE_BERT_CONFIG_FILE,
            r#"{"max_seq_length": 256, "do_lower_case": false}"#,
        );
        check(
            &[sbert, (TOKENIZER_FILE, TRUNC_128)],
            (256, SentenceBertConfig),
        );
        check(
            &[sbert, (TOKENIZER_FILE, NO_TRUNC)],
            (256, SentenceBertConfig),
        );
        check(&[(TOKENIZER_FILE, TRUNC_128)], (128, TokenizerJson));
        check(&[(TOKENIZER_FILE, NO_TRUNC)], (512, MaxPositionEmbeddings));
        check(
            &[(TOKENIZER_FILE, r#"{"model": {}}"#)],
            (512, MaxPositionEmbeddings),
        );
        // A missing or null max_seq_length falls through, as in sentence-transformers.
        for text in [r#"{"do_lower_case": false}"#, r#"{"max_seq_length": null}"#] {
            let files = [
                (SENTENCE_BERT_CONFIG_FILE, text),
                (TOKENIZER_FILE, TRUNC_128),
            ];
            check(&files, (128, TokenizerJson));
        }
    }

    fn check_err(files: &[(&str, &str)], expected: &str) {
        let d = dir(files);
        let e = MaxTokens::resolve(d.path(), &config(512)).unwrap_err();
        let path = |name: &str| d.path().join(name).display().to_string();
        let expected = expected
            .replace("SBERT", &path(SENTENCE_BERT_CONFIG_FILE))
            .replace("TOKENIZER", &path(TOKENIZER_FILE));
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn malformed_files_are_errors_naming_file_and_field() {
        let tok = (TOKENIZER_FILE, TRUNC_128);
        let range = "expected an integer from 2 ([CLS] and [SEP]) to 512 (max_position_embeddings \
                     in config.json)";
        for (value, shown) in [
            ("\"256\"", "\"256\""),
            ("256.5", "256.5"),
            ("-1", "-1"),
            ("1", "1"),
            ("1024", "1024"),
        ] {
            let text = format!("{{\"max_seq_length\": {value}}}");
            check_err(
                &[(SENTENCE_BERT_CONFIG_FILE, &text), tok],
                &format!("invalid model config SBERT: max_seq_length {shown}: {range}"),
            );
        }
        check_err(
            &[(SENTENCE_BERT_CONFIG_FILE, "[256]"), tok],
            "invalid model config SBERT: expected a JSON object, found an array",
        );
        check_err(
            &[(SENTENCE_BERT_CONFIG_FILE, "{\"max_seq_length\": 256"), tok],
            "invalid model config SBERT: EOF while parsing an object at line 1 column 22",
        );
        check_err(
            &[(TOKENIZER_FILE, r#"{"truncation": {"max_length": "x"}}"#)],
            &format!("cannot use tokenizer TOKENIZER: truncation.max_length \"x\": {range}"),
        );
        check_err(
            &[(TOKENIZER_FILE, r#"{"truncation": {"stride": 0}}"#)],
            &format!("cannot use tokenizer TOKENIZER: truncation.max_length null: {range}"),
        );
        check_err(
            &[(TOKENIZER_FILE, r#"{"truncation": 128}"#)],
            "cannot use tokenizer TOKENIZER: truncation: expected an object or null, found a \
             number",
        );
    }

    #[test]
    fn missing_tokenizer_is_an_io_error_naming_it() {
        let d = dir(&[]);
        let e = MaxTokens::resolve(d.path(), &config(512)).unwrap_err();
        assert!(
            matches!(&e, Error::Io { path, .. } if *path == d.path().join(TOKENIZER_FILE)),
            "{e}"
        );
    }

    #[test]
    fn explicit_lengths_are_checked_against_the_positions() {
        let cfg = config(512);
        let ok = MaxTokens::explicit(128, &cfg).unwrap();
        assert_eq!((ok.tokens, ok.source), (128, LengthSource::Explicit));
        assert_eq!(MaxTokens::explicit(512, &cfg).unwrap().tokens, 512);
        for bad in [0, 1, 513] {
            assert_eq!(
                MaxTokens::explicit(bad, &cfg).unwrap_err().to_string(),
                format!(
                    "max_tokens {bad}: expected 2 ([CLS] and [SEP]) to 512 \
                     (max_position_embeddings in config.json)"
                )
            );
        }
    }

    #[test]
    fn display_names_the_source() {
        let m = MaxTokens {
            tokens: 256,
            source: LengthSource::SentenceBertConfig,
        };
        assert_eq!(
            m.to_string(),
            "256 tokens (sentence_bert_config.json max_seq_length)"
        );
    }
}
