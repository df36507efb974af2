//! # trace-core
//!
//! Tensor-agnostic capture of named activations, for finding where two inference engines part.
//!
//! An engine hands a named tensor to [`dump`] (or to an explicit [`Tracer`]); when tracing is
//! enabled a record is written with the seed's six fields (`name`, `shape`, `dtype`, `blake3`,
//! `rms`, `num_elements`) plus context and statistics. The fingerprint is blake3 of the values as
//! canonical F32 little-endian bytes, computed in one pass over memory together with RMS and
//! stats. Disabled, a call costs one relaxed atomic load.
//!
//! - Capture: [`dump`], [`dump_with`], [`trace_tensor!`] on the global tracer (configured from
//!   `TENSOR_TRACE_DIR` / `BITNET_TRACE_DIR`, see [`config`]), or an explicit [`Tracer`] from
//!   [`Tracer::builder`]. Strided or device data streams through [`Tracer::record_chunks`].
//! - Fingerprints without files: [`fingerprint`] and [`Fingerprinter`].
//! - The file format: [`record`] (and `docs/FORMAT.md`); reading a run back: [`run`].
//! - Pipeline events and Jidoka checks live in the `trace-events` crate, on top of this one.
//!
//! ```
//! use trace_core::{fingerprint, Context, Data, TensorView, Tracer};
//!
//! // An explicit tracer writing into a directory (the global one reads TENSOR_TRACE_DIR).
//! let dir = tempfile::tempdir()?;
//! // One file per record, the seed's layout (the default is one `records.jsonl` log).
//! let tracer = Tracer::builder().dir(dir.path()).layout(trace_core::Layout::Files).build()?;
//! let logits = vec![half::bf16::from_f32(0.25); 8];
//! tracer.record("logits", &Context::default().seq(0).layer(-1), TensorView::new(&[1, 8], &logits[..])?)?;
//!
//! let record = trace_core::TraceRecord::read(&dir.path().join("logits.trace"))?;
//! assert_eq!(record.dtype, "BF16"); // the dtype before conversion
//! // The hash is blake3 of the canonical F32 little-endian bytes.
//! let as_f32: Vec<f32> = logits.iter().map(|v| v.to_f32()).collect();
//! assert_eq!(record.blake3, fingerprint(Data::F32(&as_f32)).blake3.to_hex().as_str());
//! assert_eq!(record.rms, Some(0.25));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod check;
pub mod config;
pub mod dtype;
mod error;
mod fingerprint;
mod global;
pub mod ranks;
pub mod record;
pub mod run;
mod sink;
pub mod sketch;
mod tracer;
pub mod view;
mod writer;

pub use config::Layout;
pub use dtype::DType;
pub use error::{Error, Result};
pub use fingerprint::{fingerprint, Fingerprint, Fingerprinter, BATCH, STATS_BLOCK};
pub use global::{dump, dump_chunks_with, dump_with, enabled, flush, global, install};
pub use record::{ManifestEntry, Sketch, Stats, TraceRecord, FORMAT_VERSION, PACKED_LOG};
pub use sink::sanitize;
pub use tracer::{Context, Tracer, TracerBuilder, BACKGROUND_FINGERPRINT_MAX};
pub use view::{Data, TensorView};

/// The README's Rust examples, compiled and run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
