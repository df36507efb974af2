//! Jidoka checks: stop-the-line violations, each with a cause and a hint at the culprit.

use std::fmt::Write as _;

use super::schema::Severity;
use super::step::TraceStep;
use trace_core::Data;

/// Where a non-finite value was first seen, relative to the step's own input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The step's input was captured and was finite: this step produced the value.
    ThisStep,
    /// The step's input already held NaN or Inf: the value came from upstream.
    Upstream,
    /// The input was not captured, so it is unknown which step produced the value.
    Unknown,
}

/// A Jidoka violation. Displays what was found; [`cause`](Self::cause) says why it matters and
/// [`hint`](Self::hint) where to look.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// NaN in a step's output.
    #[error("{count} NaN in {} output, first at index {index}", at(*step, *layer))]
    NanDetected {
        /// The step whose output holds NaN.
        step: TraceStep,
        /// Its layer.
        layer: Option<u64>,
        /// Flat index of the first NaN.
        index: u64,
        /// Number of NaN elements.
        count: u64,
        /// Whether the step's input was already non-finite.
        origin: Origin,
        /// Id of an earlier event whose tensor was already non-finite, if any.
        earlier_event: Option<u64>,
    },
    /// +Inf or -Inf in a step's output.
    #[error("{count} Inf in {} output, first at index {index}", at(*step, *layer))]
    InfDetected {
        /// The step whose output holds Inf.
        step: TraceStep,
        /// Its layer.
        layer: Option<u64>,
        /// Flat index of the first infinite element.
        index: u64,
        /// Number of infinite elements.
        count: u64,
        /// Whether the step's input was already non-finite.
        origin: Origin,
        /// Id of an earlier event whose tensor was already non-finite, if any.
        earlier_event: Option<u64>,
    },
    /// A token id at or above the vocabulary size.
    #[error(
        "token id {token_id} at position {position} exceeds vocab size {vocab_size} in {step}"
    )]
    VocabOverflow {
        /// The step that produced the token.
        step: TraceStep,
        /// The offending id.
        token_id: u32,
        /// Its position in the token list.
        position: usize,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// The tokenizer's unknown token, or an id the tokenizer could not map.
    #[error("unknown token id {token_id} in {step}")]
    UnknownToken {
        /// The step.
        step: TraceStep,
        /// The token id.
        token_id: u32,
    },
    /// Decoded text made mostly of replacement, private-use or unassigned characters.
    #[error("garbage output in {step}: {:.0}% suspicious characters (threshold {:.0}%) in {sample:?}", share * 100.0, threshold * 100.0)]
    GarbageOutput {
        /// The step.
        step: TraceStep,
        /// The first 20 characters of the text.
        sample: String,
        /// Share of suspicious characters.
        share: f64,
        /// Threshold in force.
        threshold: f64,
    },
    /// The output shape differs from the expected one.
    #[error("shape mismatch in {}: expected {expected:?}, found {actual:?}", at(*step, *layer))]
    ShapeMismatch {
        /// The step.
        step: TraceStep,
        /// Its layer.
        layer: Option<u64>,
        /// Expected dimensions.
        expected: Vec<usize>,
        /// Actual dimensions.
        actual: Vec<usize>,
    },
    /// A step, or the whole execution, failed.
    #[error("execution failed: {error}")]
    ExecutionFailed {
        /// The step that failed, when it was inside one.
        step: Option<TraceStep>,
        /// Its layer.
        layer: Option<u64>,
        /// High-level error, e.g. `initialization failure`.
        error: String,
        /// The specific cause, e.g. `missing config.json`.
        cause: String,
    },
}

pub(super) fn at(step: TraceStep, layer: Option<u64>) -> String {
    match layer {
        Some(l) => format!("layer {l} {step}"),
        None => step.to_string(),
    }
}

impl TraceError {
    /// The stable name written to `error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            TraceError::NanDetected { .. } => "nan_detected",
            TraceError::InfDetected { .. } => "inf_detected",
            TraceError::VocabOverflow { .. } => "vocab_overflow",
            TraceError::UnknownToken { .. } => "unknown_token",
            TraceError::GarbageOutput { .. } => "garbage_output",
            TraceError::ShapeMismatch { .. } => "shape_mismatch",
            TraceError::ExecutionFailed { .. } => "execution_failed",
        }
    }

    /// Unknown tokens are warnings (an out-of-vocabulary word legitimately maps to `<unk>`);
    /// everything else is an error.
    pub fn severity(&self) -> Severity {
        match self {
            TraceError::UnknownToken { .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The step the violation belongs to.
    pub fn step(&self) -> Option<TraceStep> {
        match self {
            TraceError::NanDetected { step, .. }
            | TraceError::InfDetected { step, .. }
            | TraceError::VocabOverflow { step, .. }
            | TraceError::UnknownToken { step, .. }
            | TraceError::GarbageOutput { step, .. }
            | TraceError::ShapeMismatch { step, .. } => Some(*step),
            TraceError::ExecutionFailed { step, .. } => *step,
        }
    }

    /// Why it happened, as far as the trace can tell.
    pub fn cause(&self) -> String {
        match self {
            TraceError::NanDetected {
                step,
                layer,
                origin,
                earlier_event,
                ..
            }
            | TraceError::InfDetected {
                step,
                layer,
                origin,
                earlier_event,
                ..
            } => {
                let what = if matches!(self, TraceError::NanDetected { .. }) {
                    "NaN"
                } else {
                    "Inf"
                };
                let mut s = match origin {
                    Origin::ThisStep => format!(
                        "{what} first appears in {} output while its input was finite",
                        at(*step, *layer)
                    ),
                    Origin::Upstream => format!(
                        "{what} was already in the input of {}: it came from upstream",
                        at(*step, *layer)
                    ),
                    Origin::Unknown => format!(
                        "{what} in {} output; its input was not captured",
                        at(*step, *layer)
                    ),
                };
                if let Some(id) = earlier_event {
                    let _ = write!(s, " (an earlier event, id {id}, was already non-finite)");
                }
                s
            }
            TraceError::VocabOverflow {
                token_id,
                vocab_size,
                ..
            } => format!(
                "the largest valid id is {}, so {token_id} indexes past the embedding table",
                vocab_size.saturating_sub(1)
            ),
            TraceError::UnknownToken { token_id, .. } => {
                format!("token {token_id} has no vocabulary entry or is the unknown token")
            }
            TraceError::GarbageOutput { share, .. } => format!(
                "{:.0}% of the decoded characters are U+FFFD, private-use or unassigned",
                share * 100.0
            ),
            TraceError::ShapeMismatch {
                expected, actual, ..
            } => format!(
                "the step produced {} elements in {actual:?} where {expected:?} was expected",
                actual.iter().product::<usize>()
            ),
            TraceError::ExecutionFailed { cause, .. } => cause.clone(),
        }
    }

    /// Where to look next: the likely culprit for this kind of violation in this step.
    pub fn hint(&self) -> String {
        match self {
            TraceError::NanDetected {
                step,
                origin,
                earlier_event,
                ..
            }
            | TraceError::InfDetected {
                step,
                origin,
                earlier_event,
                ..
            } => {
                let inf = matches!(self, TraceError::InfDetected { .. });
                if let Some(id) = earlier_event {
                    return format!("fix the earlier non-finite event {id} first; this one may only propagate it");
                }
                match origin {
                    Origin::Upstream => {
                        "look at the step that produced this input (trace earlier steps with --trace=all)".to_owned()
                    }
                    Origin::Unknown => format!(
                        "pass the input tensor to enter_with_input to tell whether {step} produced it; {}",
                        non_finite_hint(*step, inf)
                    ),
                    Origin::ThisStep => non_finite_hint(*step, inf).to_owned(),
                }
            }
            TraceError::VocabOverflow { step, .. } => match step {
                TraceStep::Sample | TraceStep::LmHead => {
                    "the LM head is wider than the vocabulary: check vocab_size in the model config and padded vocab rows".to_owned()
                }
                _ => "check that tokenizer.json and the model's vocabulary (GGUF or config vocab_size) match".to_owned(),
            },
            TraceError::UnknownToken { .. } => {
                "the tokenizer does not know this id: check the tokenizer configuration and special tokens".to_owned()
            }
            TraceError::GarbageOutput { .. } => {
                "token ids may not match the tokenizer vocabulary (tokenizer.json vs GGUF vocab), or byte-fallback tokens are decoded one by one".to_owned()
            }
            TraceError::ShapeMismatch { step, .. } => match step {
                TraceStep::Attention => "check head count, KV heads (GQA) and head_dim in the model config".to_owned(),
                TraceStep::Ffn => "check intermediate_size and the up/gate/down projection layout".to_owned(),
                TraceStep::LmHead => "check vocab_size and whether the embeddings are tied".to_owned(),
                _ => "tensor dimensions do not match: check the model architecture in the config".to_owned(),
            },
            TraceError::ExecutionFailed { .. } => {
                "see the cause; a span dropped without exit points at an early return (`?`) or a panic inside the step".to_owned()
            }
        }
    }
}

fn non_finite_hint(step: TraceStep, inf: bool) -> &'static str {
    match (step, inf) {
        (TraceStep::Embed, _) => "check the embedding table: weights loaded with the wrong dtype or offset",
        (TraceStep::LayerNorm, _) => "check epsilon and the norm weights: a zero variance divides by zero",
        (TraceStep::Attention, _) => "look at softmax scaling (1/sqrt(head_dim)), masking (fully masked rows) and the KV cache",
        (TraceStep::Ffn, false) => "check the activation (SiLU/GELU) on large inputs and the up/gate/down weights",
        (TraceStep::Ffn, true) => "the projections overflow: accumulate in f32 or check the weight scales",
        (TraceStep::TransformerBlock, _) => "trace its ATTENTION and FFN (--trace=attn,ffn) and check the residual additions",
        (TraceStep::LmHead, _) => "check the final norm and the output projection (tied embeddings?)",
        (TraceStep::Sample, _) => "check the temperature (0 divides the logits) and the top-k/top-p filtering",
        (_, true) => "check for division by zero or values beyond the dtype range (f16 max is 65504)",
        (_, false) => "check for numerical overflow in matmul or softmax",
    }
}

/// Flat indices of the first NaN and the first infinite element. Only called when the stats
/// already counted some, so the extra pass costs nothing on healthy tensors.
pub fn first_non_finite(data: Data<'_>) -> (Option<u64>, Option<u64>) {
    fn scan<T: Copy>(
        values: &[T],
        nan: impl Fn(T) -> bool,
        inf: impl Fn(T) -> bool,
    ) -> (Option<u64>, Option<u64>) {
        let first_nan = values.iter().position(|&v| nan(v)).map(|i| i as u64);
        let first_inf = values.iter().position(|&v| inf(v)).map(|i| i as u64);
        (first_nan, first_inf)
    }
    match data {
        Data::F32(s) => scan(s, f32::is_nan, f32::is_infinite),
        Data::F64(s) => scan(s, f64::is_nan, f64::is_infinite),
        Data::F16(s) => scan(s, |v| v.is_nan(), |v| v.is_infinite()),
        Data::BF16(s) => scan(s, |v| v.is_nan(), |v| v.is_infinite()),
        _ => (None, None),
    }
}

/// Whether a character is suspicious in decoded text: U+FFFD, private use (BMP and planes
/// 15-16), a noncharacter, or a code point in a plane with no assigned characters.
///
/// A complete "unassigned" test needs the Unicode database; this keeps to ranges that are
/// certain without one, and so never flags real text in any script (realizar also flagged CJK
/// Extension B, which is real Chinese).
pub fn is_suspicious_char(c: char) -> bool {
    let cp = u32::from(c);
    c == '\u{FFFD}'
        || (0xE000..=0xF8FF).contains(&cp)
        || cp >= 0xF0000
        || (0xFDD0..=0xFDEF).contains(&cp)
        || (cp & 0xFFFE) == 0xFFFE
        || (0x40000..=0xDFFFF).contains(&cp)
}

/// Share (0..=1) of suspicious characters in `text`; 0 for empty text.
pub fn garbage_share(text: &str) -> f64 {
    let (mut total, mut bad) = (0usize, 0usize);
    for c in text.chars() {
        total += 1;
        bad += usize::from(is_suspicious_char(c));
    }
    if total == 0 {
        0.0
    } else {
        bad as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: f64) {
        assert!(
            (garbage_share(text) - expected).abs() < 1e-12,
            "{text:?}: {}",
            garbage_share(text)
        );
    }

    #[test]
    fn garbage_share_counts_suspicious_characters() {
        check("", 0.0);
        check("hello", 0.0);
        check("日本語 𠀀", 0.0);
        check("a\u{FFFD}", 0.5);
        check("\u{E000}\u{F0000}\u{FDD0}\u{1FFFF}", 1.0);
        check("ab\u{50000}", 1.0 / 3.0);
    }

    #[test]
    fn first_non_finite_finds_both() {
        let v = [1.0f32, f32::INFINITY, f32::NAN, f32::NAN];
        assert_eq!(first_non_finite(Data::F32(&v)), (Some(2), Some(1)));
        assert_eq!(first_non_finite(Data::I32(&[1, 2])), (None, None));
    }

    #[test]
    fn attention_nan_hint_points_at_softmax() {
        let e = TraceError::NanDetected {
            step: TraceStep::Attention,
            layer: Some(3),
            index: 17,
            count: 5,
            origin: Origin::ThisStep,
            earlier_event: None,
        };
        assert_eq!(
            e.to_string(),
            "5 NaN in layer 3 ATTENTION output, first at index 17"
        );
        assert_eq!(
            e.cause(),
            "NaN first appears in layer 3 ATTENTION output while its input was finite"
        );
        assert!(e.hint().contains("softmax scaling"));
        assert_eq!((e.kind(), e.severity()), ("nan_detected", Severity::Error));
    }

    #[test]
    fn every_kind_has_cause_and_hint() {
        let errors = [
            TraceError::VocabOverflow {
                step: TraceStep::Tokenize,
                token_id: 9,
                position: 1,
                vocab_size: 8,
            },
            TraceError::UnknownToken {
                step: TraceStep::Decode,
                token_id: 0,
            },
            TraceError::GarbageOutput {
                step: TraceStep::Decode,
                sample: "\u{FFFD}".into(),
                share: 1.0,
                threshold: 0.3,
            },
            TraceError::ShapeMismatch {
                step: TraceStep::Ffn,
                layer: None,
                expected: vec![2],
                actual: vec![3],
            },
            TraceError::ExecutionFailed {
                step: None,
                layer: None,
                error: "init".into(),
                cause: "no config".into(),
            },
        ];
        for e in errors {
            assert!(!e.cause().is_empty() && !e.hint().is_empty(), "{e}");
        }
    }
}
