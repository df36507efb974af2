//! # trace-cli
//!
//! The `tensor-trace` command-line tool, and the library parts other front ends (xtask) call:
//!
//! - [`engine`]: running an engine with tracing on into a directory ([`engine::run_traced`]),
//!   shared by `record`, `bisect` and `repeat`.
//! - [`bisect`]: two engines, hash-only first, then raw values for a window around the first
//!   divergence only ([`bisect::bisect`]), with a determinism check on the way.
//! - [`gguf`]: GGUF model files: the header with its offsets, and [`gguf::dequantize`] to F32.
//! - [`repeat`]: one engine K times, naming its first nondeterministic record.
//!
//! Exit codes everywhere: [`EXIT_FINDING`] (1) for a finding, [`EXIT_ERROR`] (2) for a usage or
//! input error, 0 otherwise.
#![deny(missing_docs)]

pub mod bisect;
pub mod engine;
pub mod gguf;
pub mod repeat;

/// Exit code for a finding: a divergence, a NaN, a broken contract.
pub const EXIT_FINDING: u8 = 1;
/// Exit code for a usage or input error.
pub const EXIT_ERROR: u8 = 2;
