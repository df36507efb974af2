//! The one error type of trace-diff: input that cannot be read or is malformed.
//!
//! Findings (diverged records, missing records, problems tolerated outside strict mode) are
//! never errors: they are in the [`crate::Report`].

use std::path::PathBuf;

use trace_core::record::RecordError;

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A trace directory could not be read (or, in strict mode, had a problem).
    #[error(transparent)]
    Core(#[from] trace_core::Error),
    /// A record or manifest is malformed (strict mode).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The rules file could not be read.
    #[error("cannot read rules file {path}: {source}")]
    RulesIo {
        /// The rules file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The rules file is not valid (TOML syntax, unknown key, bad pattern).
    #[error("rules file {path}: {message}")]
    Rules {
        /// The rules file (or `<rules>` for rules given as text).
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// An engine view is not valid, or cannot be read (crate::views).
    #[error("view {view}: {message}")]
    View {
        /// The view file, or `view:NAME` for a shipped one.
        view: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// No view, or more than one, fits a run and none was chosen (crate::views).
    #[error("{message}")]
    ViewChoice {
        /// Which side, what was found, and how to choose.
        message: String,
    },
    /// The largest ratio of a calibrated diff is not a finite number above 0.
    #[error("max ratio: expected a finite number > 0, found {value}")]
    MaxRatio {
        /// The value given.
        value: f64,
    },
    /// Multi-rank runs cannot be compared as given (see [`crate::shard`]).
    #[error("{path}: {problem}")]
    Ranks {
        /// The run directory concerned.
        path: PathBuf,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A baseline was given with a multi-rank run, which a calibrated diff does not take.
    #[error(
        "{path} is a multi-rank run (rank-N directories): --baseline does not take multi-rank \
         runs; compare without --baseline, or one rank directory at a time"
    )]
    BaselineRanks {
        /// The multi-rank run directory.
        path: PathBuf,
    },
    /// The comparison was asked to stream where it cannot (see [`crate::Streaming::Always`]).
    #[error("cannot stream the comparison: {problem}")]
    Streaming {
        /// Why.
        problem: String,
    },
    /// A `.npy` values file could not be used (strict mode; otherwise a warning).
    #[error("{path}: {problem}")]
    Values {
        /// The `.npy` file.
        path: PathBuf,
        /// What is wrong and what was expected.
        problem: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
