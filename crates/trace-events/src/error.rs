//! The one error type of trace-events.
//!
//! A Jidoka violation ([`TraceError`](crate::TraceError)) and a contract violation
//! ([`ContractViolation`](crate::ContractViolation)) are findings about a run, not failures of
//! this crate: they are data in the history and in reports, so they keep their own types.

use std::path::PathBuf;

use crate::version::{EVENTS_FORMAT_VERSION, REALIZAR_VERSION};

/// Everything that can go wrong while configuring event tracing or reading a history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A step name that matches no step. Unlike realizar, which silently dropped it (so a typo
    /// traced nothing), this is an error that lists what would have been accepted.
    #[error("unknown trace step {found:?}, expected one of: {expected}")]
    UnknownStep {
        /// The name that was given.
        found: String,
        /// The accepted names ([`valid_steps`](crate::valid_steps)).
        expected: String,
    },
    /// An invalid event-tracing setting.
    #[error("invalid {setting}={value:?}: {problem}")]
    Config {
        /// The setting or environment variable, e.g. `TENSOR_TRACE_STEPS`.
        setting: &'static str,
        /// The value that was given.
        value: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A history file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not JSON of the document shape (serde names the field, line and column).
    #[error("not a valid event history: {0}")]
    Parse(#[from] serde_json::Error),
    /// No `format_version`, so read as realizar's `--trace-output` layout, and not that either.
    #[error("not a valid event history (no `format_version`, so read as realizar's --trace-output layout): {0}")]
    Realizar(serde_json::Error),
    /// A realizar history whose `version` is not the `"1.0"` this reader knows.
    #[error("realizar history `version` {found:?} is not supported, this reader knows {REALIZAR_VERSION:?}")]
    RealizarVersion {
        /// The `version` in the file.
        found: String,
    },
    /// A format version this reader does not know.
    #[error("event format_version {found} is not supported, this reader knows 1..={EVENTS_FORMAT_VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
