//! What a run is made of: its records, their order, and how to read it.

use crate::record::TraceRecord;

/// How to read a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Turn the first problem into an error instead of collecting it.
    pub strict: bool,
}

/// Where the order of a run's records comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    /// `manifest.jsonl`, sorted by capture index: execution order.
    Manifest,
    /// No manifest, but every record carries its capture `index`: execution order.
    Index,
    /// The packed log `records.jsonl`, sorted by capture index: execution order.
    Packed,
    /// Seed-format directory: `seq`, then `index`, then natural file-name order. Execution order
    /// within a step is unknown.
    Guessed,
}

impl RunOrder {
    /// Whether the order is the execution order of the writing process.
    pub fn is_execution_order(self) -> bool {
        !matches!(self, RunOrder::Guessed)
    }

    /// A short lowercase name: `manifest`, `index` or `guessed`.
    pub fn name(self) -> &'static str {
        match self {
            RunOrder::Manifest => "manifest",
            RunOrder::Index => "index",
            RunOrder::Packed => "packed",
            RunOrder::Guessed => "guessed",
        }
    }
}

/// One record of a run, with what is needed to find its values.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Record file name, relative to the run directory.
    pub file: String,
    /// The record as read.
    pub record: TraceRecord,
    /// k-th record of this name in the run: the record's own `occurrence`, the manifest's, or
    /// derived from the order (see the module docs).
    pub occurrence: u64,
    /// `.npy` file name of the raw values (relative to the run directory), when saved.
    pub values: Option<String>,
}

impl RunRecord {
    /// The key records are matched by across runs: `(name, occurrence)`.
    pub fn key(&self) -> (&str, u64) {
        (&self.record.name, self.occurrence)
    }
}
