//! The one error type of trace-core.

use std::path::PathBuf;

use crate::{record::RecordError, view::ShapeError, DType};

/// Everything that can go wrong while configuring a tracer or capturing a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`create directory`, `write record`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setting (environment variable or builder value) is invalid.
    #[error("invalid {setting}={value:?}: {problem}")]
    Config {
        /// The variable or builder setting, e.g. `TENSOR_TRACE_FILTER`.
        setting: String,
        /// The value that was given.
        value: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// Element count and shape disagree.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A streamed capture mixed dtypes.
    #[error("chunk of dtype {found} fed to a capture of dtype {expected}")]
    DTypeMismatch {
        /// The dtype of the first chunk.
        expected: DType,
        /// The dtype of the offending chunk.
        found: DType,
    },
    /// A streamed capture ended with a different number of elements than its shape holds.
    #[error(
        "capture of {name:?} with shape {shape:?} expected {expected} elements, received {found}"
    )]
    ElementCount {
        /// The record name.
        name: String,
        /// The declared shape.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: u64,
        /// Elements received.
        found: u64,
    },
    /// A record or manifest on disk is malformed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A multi-process run's rank directories are inconsistent (see [`crate::ranks`]).
    #[error("{path}: {problem}")]
    RankLayout {
        /// The directory or `rank.json` concerned.
        path: PathBuf,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// The background writer stopped after an error; the error it hit is included.
    #[error("background trace writer failed: {0}")]
    Writer(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
