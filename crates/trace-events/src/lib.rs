//! # trace-events
//!
//! The pipeline event history: where in the inference state machine a run went wrong.
//!
//! Inference is modelled as realizar models it, after AWS Step Functions: steps
//! ([`TraceStep`]: TOKENIZE, EMBED, the layer steps, LM_HEAD, SAMPLE, DECODE, plus kernel launches
//! and brick profiles), each entered and exited. An [`InferenceTracer`] records a
//! `TaskStateEntered` event when a step starts and a `TaskStateExited` (or `ExecutionFailed`)
//! event when it ends, with strictly increasing ids, `previous_event_id` linking each exit to its
//! entry, iteration (0 = prefill) and layer, shapes, stats and step details. At every exit the
//! Jidoka checks ([`TraceError`]) look for NaN/Inf, vocab overflow, unknown tokens, garbage text
//! and shape mismatches; each violation carries a cause and a hint at the likely culprit, and the
//! [`Policy`] decides whether it only counts (`warn`) or is returned to the caller (`stop`).
//! The history renders as JSON ([`TraceDocument`], a superset of realizar's), as text
//! ([`render::text`]) and as a Chrome trace ([`render::chrome`]), and [`validate`] checks it
//! against the contracts, live or from a file.
//!
//! # What this does better than the seed
//!
//! realizar's tracer was reported to print things that had not happened. Here:
//! - **Stats are real.** They come from [`trace_core::fingerprint`], the capture path's one-pass
//!   statistics over the actual values (plus the blake3 hash that ties an event to a capture
//!   record); an event without a tensor has `"stats": null`, never zeros.
//! - **Timings are measured.** `duration_us` is the monotonic time between entry and exit
//!   ([`Clock`], backed by [`std::time::Instant`]); timestamps are the start time plus that same
//!   monotonic clock, so they never go backwards. A step the engine timed itself (a GPU kernel)
//!   says so with `details.timed_by_engine`.
//! - **Spans cannot dangle.** [`InferenceTracer::enter`] returns a [`Span`]; one dropped without
//!   [`Span::exit`] (an early `?`, a panic) records `ExecutionFailed` with the reason. Nested
//!   spans link to their parent (`parent_event_id`) and to their own entry, even when closed out
//!   of order. realizar kept one "last entered" id, so nesting broke the links.
//! - **Unknown step names are errors** ([`Error::UnknownStep`]) listing the valid names; realizar
//!   dropped them silently and traced nothing.
//! - **Top-k is a partial selection** ([`top_k_logits`]), O(V) instead of a full O(V log V) sort of
//!   the vocabulary, with a numerically stable softmax and ties ordered by token id.
//! - **A run-level failure has `"step": null`**, not a made-up TOKENIZE.
//! - **Counts are checked**: the contracts verify that `error_count` and `warning_count` match
//!   the events.
//!
//! Off, [`InferenceTracer::enter`] is one branch on a `bool`, and nothing is computed: stats,
//! top-k and strings are only built inside the enabled path.
//!
//! # Example
//!
//! ```
//! use trace_events::{
//!     validate, Exit, InferenceTracer, ModelInfo, Site, TraceConfig, TraceDocument, TraceStep,
//! };
//! use trace_core::TensorView;
//!
//! let config = TraceConfig::enabled().with_steps("embed,attn,lm_head,sample")?;
//! let tracer = InferenceTracer::new(config);
//! tracer.set_model_info(ModelInfo { name: "tiny".into(), num_layers: 1, hidden_dim: 2,
//!     vocab_size: 4, num_heads: 1, ..ModelInfo::default() });
//!
//! let hidden = [0.5f32, -0.25, 1.0, 0.0];
//! let span = tracer.enter(TraceStep::Embed, Site::prefill());
//! span.exit(Exit::new().output(TensorView::new(&[2, 2], &hidden[..])?))?;
//!
//! // A step that produces NaN is recorded with a cause and a hint (policy `warn`: it continues).
//! let broken = [f32::NAN, 1.0, 0.0, 0.0];
//! let attn = tracer.enter_with_input(TraceStep::Attention, Site::prefill().layer(0),
//!     TensorView::new(&[2, 2], &hidden[..])?);
//! attn.exit(Exit::new().output(TensorView::new(&[2, 2], &broken[..])?))?;
//! assert_eq!(tracer.error_count(), 1);
//!
//! let logits = [0.1f32, 2.0, -1.0, 0.3];
//! tracer.enter(TraceStep::Sample, Site::prefill())
//!     .exit(Exit::new().logits(&logits).sampled(1, 1.0, 40))?;
//!
//! // A span left by an early return records ExecutionFailed instead of dangling.
//! drop(tracer.enter(TraceStep::LmHead, Site::iteration(1)));
//!
//! let doc = tracer.document();
//! assert_eq!(doc.events.len(), 8);
//! assert!(validate(&doc).is_empty());
//! assert_eq!(TraceDocument::from_json(&doc.to_json())?, doc);
//! assert!(tracer.format_text().contains("NaN first appears in layer 0 ATTENTION output"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod bridge;
mod clock;
mod config;
mod contracts;
mod error;
mod float;
mod jidoka;
mod load;
mod realizar;
pub mod render;
mod schema;
mod step;
mod topk;
mod tracer;
mod version;

pub use clock::{rfc3339, Clock, SystemClock, TickClock};
pub use config::{
    Policy, TraceConfig, DEFAULT_GARBAGE_THRESHOLD, DEFAULT_TOP_K, OUTPUT_ENV, POLICY_ENV,
    STEPS_ENV,
};
pub use contracts::{validate, validate_file, validate_json, ContractViolation, Rule};
pub use error::{Error, Result};
pub use jidoka::{first_non_finite, garbage_share, is_suspicious_char, Origin, TraceError};
pub use schema::{
    EventStats, EventType, ModelInfo, Producer, Severity, StatsSummary, TraceDetails,
    TraceDocument, TraceEvent,
};
pub use step::{parse_steps, valid_steps, TraceStep};
pub use topk::{top_k_logits, top_k_probs};
pub use tracer::{Exit, InferenceTracer, Kernel, Site, Span};
pub use version::{EVENTS_FORMAT_VERSION, REALIZAR_VERSION};
