//! The on-disk event history: the JSON written by [`TraceDocument::to_json`].
//!
//! **API boundary:** these types *are* the event format described in `docs/FORMAT.md`; only they
//! (and [`TraceStep`]) derive serde. The document is a superset of realizar's JSON: realizar's
//! top-level keys (`version`, `timestamp`, `model`, `events`, `error_count`, `warning_count`)
//! and event keys (`id`, `timestamp`, `type`, `previous_event_id`, `step`, `iteration`, `layer`,
//! `input_shape`, `output_shape`, `duration_us`, `stats`, `error`, `cause`) keep their names and
//! JSON types, except that `stats` is `null` when no tensor was given (realizar wrote zeros).
//!
//! [`TraceDocument::from_json`] also reads realizar's own `--trace-output` files (no
//! `format_version`; see `docs/FORMAT.md`): they become a document whose
//! [`producer`](TraceDocument::producer) is [`Producer::Realizar`], and what realizar does not
//! write stays unknown (`None`) instead of being made up.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::step::TraceStep;
use trace_core::Fingerprint;

/// A whole run: model, events in order and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceDocument {
    /// Always `"1.0"` (realizar's field, kept for its readers).
    pub version: String,
    /// Version of this format: [`EVENTS_FORMAT_VERSION`] when written by this crate, and for a
    /// realizar history once read (it is then held in this format).
    ///
    /// [`EVENTS_FORMAT_VERSION`]: crate::EVENTS_FORMAT_VERSION
    pub format_version: u32,
    /// Which tracer recorded the events: omitted (tensor-trace) or `"realizar"`.
    #[serde(default, skip_serializing_if = "Producer::is_tensor_trace")]
    pub producer: Producer,
    /// RFC 3339 wall-clock time at which the tracer started (microsecond precision, UTC). In a
    /// realizar history: when realizar *wrote* the file (its `to_json` stamps the current time).
    pub timestamp: String,
    /// The model the run used.
    pub model: ModelInfo,
    /// Every recorded event, in id order.
    pub events: Vec<TraceEvent>,
    /// Number of events whose `severity` is `error`.
    pub error_count: u64,
    /// Number of events whose `severity` is `warning`.
    pub warning_count: u64,
}

/// Model description attached to a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model name or path.
    pub name: String,
    /// Number of transformer layers.
    pub num_layers: usize,
    /// Hidden dimension.
    pub hidden_dim: usize,
    /// Vocabulary size; token ids at or above it are a vocab overflow (unchecked when 0).
    pub vocab_size: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Quantization, e.g. `Q4_K_M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant_type: Option<String>,
    /// Id of the tokenizer's unknown token; producing it is reported as an unknown token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unk_token_id: Option<u32>,
}

/// The tracer that recorded a history; it decides what the history can say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Producer {
    /// This crate's [`InferenceTracer`](super::InferenceTracer): full statistics, monotonic
    /// times, severities and hints.
    #[default]
    TensorTrace,
    /// realizar's `InferenceTracer::to_json` (`--trace-output`): six statistics per event
    /// ([`StatsSummary`]), wall-clock timestamps only, every violation an error, and kernel
    /// launches recorded as exits without an entry.
    Realizar,
}

impl Producer {
    /// Whether this is [`Producer::TensorTrace`] (the `producer` key is then omitted).
    pub fn is_tensor_trace(&self) -> bool {
        *self == Producer::TensorTrace
    }

    /// The name written to the `producer` key.
    pub fn name(self) -> &'static str {
        match self {
            Producer::TensorTrace => "tensor-trace",
            Producer::Realizar => "realizar",
        }
    }
}

/// The three AWS Step Functions event types realizar uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A step started.
    TaskStateEntered,
    /// A step finished (its `previous_event_id` is the entry).
    TaskStateExited,
    /// A step, or the whole execution, failed; `cause` says why.
    ExecutionFailed,
}

impl EventType {
    /// The name written to the `type` field.
    pub fn name(self) -> &'static str {
        match self {
            EventType::TaskStateEntered => "TaskStateEntered",
            EventType::TaskStateExited => "TaskStateExited",
            EventType::ExecutionFailed => "ExecutionFailed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much a recorded violation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Counted in `error_count`.
    Error,
    /// Counted in `warning_count`.
    Warning,
}

/// One event of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Strictly increasing, from 1.
    pub id: u64,
    /// RFC 3339 wall-clock time (UTC, microseconds): run start plus `elapsed_us`.
    pub timestamp: String,
    /// What happened (the JSON key is realizar's `type`; `event_type` is accepted on input).
    #[serde(rename = "type", alias = "event_type")]
    pub event_type: EventType,
    /// For exits and span failures: the id of the `TaskStateEntered` they close.
    pub previous_event_id: Option<u64>,
    /// For entries: the id of the innermost entry still open when this one was entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_event_id: Option<u64>,
    /// The pipeline state; `null` only on an `ExecutionFailed` of the whole run (realizar wrote
    /// `TOKENIZE` there as a placeholder).
    pub step: Option<TraceStep>,
    /// Free-form label given by the engine (e.g. `blk.3.attn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 0 = prefill, then one per decode step.
    pub iteration: u64,
    /// Transformer layer, when the step is inside one.
    pub layer: Option<u64>,
    /// Input dimensions (empty when not given).
    pub input_shape: Vec<usize>,
    /// Output dimensions (empty when not given).
    pub output_shape: Vec<usize>,
    /// Microseconds since the tracer started, from a monotonic clock; `None` in a realizar
    /// history, which records wall-clock timestamps only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_us: Option<u64>,
    /// Microseconds between the entry and this exit or failure, measured on a monotonic clock
    /// (0 on entries). For a step timed by the engine itself (a GPU kernel) it is the engine's
    /// measurement and `details.timed_by_engine` is true.
    pub duration_us: u64,
    /// Statistics of the tensor this event describes (the input on an entry, the output on an
    /// exit), computed from the real values; `null` when no tensor was given.
    pub stats: Option<EventStats>,
    /// The six statistics a realizar history records instead of [`stats`](Self::stats) (which is
    /// then `None`): present only on realizar events that carry a tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<StatsSummary>,
    /// The violation or failure, as a message.
    pub error: Option<String>,
    /// Stable name of the violation: `nan_detected`, `inf_detected`, `vocab_overflow`,
    /// `unknown_token`, `garbage_output`, `shape_mismatch`, `execution_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// Whether the violation is an error or a warning (present exactly when `error` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Why it happened (required on `ExecutionFailed`).
    pub cause: Option<String>,
    /// Where to look next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Step-specific details.
    #[serde(default, skip_serializing_if = "TraceDetails::is_empty")]
    pub details: TraceDetails,
}

/// Statistics of a tensor, computed with the capture path's
/// [`fingerprint`](trace_core::fingerprint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventStats {
    /// Smallest finite value (`null` when none is finite).
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Population standard deviation of the finite values.
    pub std: Option<f64>,
    /// Whether any element is NaN (realizar's field).
    pub has_nan: bool,
    /// Whether any element is infinite (realizar's field).
    pub has_inf: bool,
    /// Number of NaN elements.
    pub nan_count: u64,
    /// Number of infinite elements.
    pub inf_count: u64,
    /// Number of elements.
    pub num_elements: u64,
    /// Root mean square (`null` when empty or not finite).
    pub rms: Option<f64>,
    /// blake3 of the values as canonical F32 (the same hash as a capture record).
    pub blake3: String,
    /// Flat index of the first NaN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_nan_index: Option<u64>,
    /// Flat index of the first infinite element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_inf_index: Option<u64>,
}

impl EventStats {
    /// Event stats from a fingerprint; the first offending indices are filled in by the caller.
    pub fn from_fingerprint(fp: &Fingerprint) -> Self {
        Self {
            min: fp.stats.min,
            max: fp.stats.max,
            mean: fp.stats.mean,
            std: fp.stats.std,
            has_nan: fp.stats.nan_count > 0,
            has_inf: fp.stats.inf_count > 0,
            nan_count: fp.stats.nan_count,
            inf_count: fp.stats.inf_count,
            num_elements: fp.num_elements,
            rms: fp.rms,
            blake3: fp.blake3.to_hex().to_string(),
            first_nan_index: None,
            first_inf_index: None,
        }
    }

    /// Whether every element is finite.
    pub fn is_finite(&self) -> bool {
        self.nan_count == 0 && self.inf_count == 0
    }
}

/// The statistics realizar records per event: `min`, `max`, `mean`, `std`, `has_nan`, `has_inf`
/// and nothing else, so NaN/Inf counts, element count, RMS and hash are unknown.
///
/// realizar computes them over an f32 tensor: `min`/`max` over the finite elements (`+inf` and
/// `-inf` when there is none), `mean` and `std` as the sum over the finite elements divided by
/// the count of **all** elements (so they differ from [`EventStats`]'s when a NaN or Inf is
/// present), printed with six decimals. A value is `None` where realizar wrote `null` (its NaN);
/// infinities are kept and written as realizar writes them, `"Infinity"` and `"-Infinity"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatsSummary {
    /// Smallest finite element; `+inf` when none is finite.
    #[serde(with = "crate::float")]
    pub min: Option<f64>,
    /// Largest finite element; `-inf` when none is finite.
    #[serde(with = "crate::float")]
    pub max: Option<f64>,
    /// Sum of the finite elements over the number of all elements.
    #[serde(with = "crate::float")]
    pub mean: Option<f64>,
    /// Population standard deviation around `mean`, over all elements.
    #[serde(with = "crate::float")]
    pub std: Option<f64>,
    /// Whether any element is NaN.
    pub has_nan: bool,
    /// Whether any element is infinite.
    pub has_inf: bool,
}

impl StatsSummary {
    /// Whether some element is finite (realizar's `min` is `+inf` otherwise).
    pub fn has_finite(&self) -> bool {
        self.min.is_some_and(f64::is_finite) && self.max.is_some_and(f64::is_finite)
    }
}

/// Step-specific details: the seed's fields, all optional.
///
/// Pairs are `[token_id, value]` arrays as in realizar. Top-k lists never contain NaN or Inf
/// (they rank finite values only), so they survive JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceDetails {
    /// Input text (tokenize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_text: Option<String>,
    /// Output token ids (tokenize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<Vec<u32>>,
    /// Vocabulary entries of the output tokens (tokenize).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_entries: Option<Vec<String>>,
    /// Top-k `[token_id, logit]`, highest first, ties by lower id (LM head, sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k_logits: Option<Vec<(u32, f32)>>,
    /// Top-k `[token_id, probability]` under the softmax of all finite logits (sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k_probs: Option<Vec<(u32, f32)>>,
    /// Sampled token id (sample, decode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_token: Option<u32>,
    /// Decoded text (decode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded_text: Option<String>,
    /// The token's vocabulary string (decode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_string: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Sampling top-k parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Kernel name (kernel launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_name: Option<String>,
    /// Grid dimensions (kernel launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_dims: Option<[u32; 3]>,
    /// Block dimensions (kernel launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_dims: Option<[u32; 3]>,
    /// Shared memory bytes (kernel launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_mem_bytes: Option<u32>,
    /// Layer the kernel ran for (kernel launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_layer: Option<usize>,
    /// Dispatch strategy (kernel launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_strategy: Option<String>,
    /// `[category, nanoseconds]` (brick profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brick_categories: Option<Vec<(String, u64)>>,
    /// `[brick, total_ns, count]` (brick profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brick_timings: Option<Vec<(String, u64, u64)>>,
    /// True when `duration_us` was measured by the engine (a GPU timer), not between entry and
    /// exit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_by_engine: bool,
}

impl TraceDetails {
    /// Whether no detail is set (the `details` key is then omitted).
    pub fn is_empty(&self) -> bool {
        *self == TraceDetails::default()
    }
}

impl TraceDocument {
    /// Pretty JSON with a trailing newline; [`from_json`](Self::from_json) reads it back equal.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("event histories always serialize");
        s.push('\n');
        s
    }

    /// The event with `id`.
    pub fn event(&self, id: u64) -> Option<&TraceEvent> {
        // Ids are increasing in a valid history, so a binary search would do; a history being
        // validated may not be, so scan.
        self.events.iter().find(|e| e.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_uses_realizar_key_and_accepts_ours() {
        let json = serde_json::to_value(EventType::TaskStateExited).unwrap();
        assert_eq!(json, "TaskStateExited");
        let text = r#"{"id":1,"timestamp":"t","event_type":"TaskStateEntered","previous_event_id":null,
            "step":"ENCODE","iteration":0,"layer":null,"input_shape":[],"output_shape":[],
            "elapsed_us":0,"duration_us":0,"stats":null,"error":null,"cause":null}"#;
        let event: TraceEvent = serde_json::from_str(text).unwrap();
        assert_eq!(event.step, Some(TraceStep::Tokenize));
        let out = serde_json::to_value(&event).unwrap();
        assert_eq!(out["type"], "TaskStateEntered");
        assert!(out.get("details").is_none() && out.get("hint").is_none());
    }
}
