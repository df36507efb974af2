//! # trace-core
//!
//! Tensor-agnostic capture of named activations, for finding where two inference engines part.
//!
//! An engine hands a named tensor to [`dump`] (or to an explicit [`Tracer`]); when tracing is
//! enabled a record is written with the seed's six fields (`name`, `shape`, `dtype`, `blake3`,
//! `rms`, `num_elements`) plus context and statistics. The fingerprint is blake3 of the values as
//! canonical F32 little-endian bytes, computed in one pass over memory together with RMS and
//! stats. Disabled, a call costs one relaxed atomic load.
#![deny(missing_docs)]

pub mod config;
pub mod dtype;
mod error;
pub mod events;
mod fingerprint;
mod global;
pub mod record;
pub mod run;
mod sink;
mod tracer;
pub mod view;
mod writer;

pub use dtype::DType;
pub use error::{Error, Result};
pub use fingerprint::{fingerprint, Fingerprint, Fingerprinter, BATCH, STATS_BLOCK};
pub use global::{dump, dump_chunks_with, dump_with, enabled, flush, global, install};
pub use record::{ManifestEntry, Stats, TraceRecord, FORMAT_VERSION};
pub use sink::sanitize;
pub use tracer::{Context, Tracer, TracerBuilder};
pub use view::{Data, TensorView};
