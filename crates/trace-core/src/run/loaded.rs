//! A whole run in memory: every readable record of a trace directory, in order.

use std::path::{Path, PathBuf};

use super::files::list_trace_files;
use super::reader::Reader;
use super::record::{RunOptions, RunOrder, RunRecord};
use crate::record::{RecordError, MANIFEST_FILE, PACKED_LOG, RECORD_EXTENSION};
use crate::{Error, Result};

/// Every readable record of a trace directory, in capture order.
#[derive(Debug)]
pub struct Run {
    pub(super) dir: PathBuf,
    pub(super) order: RunOrder,
    pub(super) records: Vec<RunRecord>,
    pub(super) problems: Vec<RecordError>,
}

impl Run {
    /// Reads the trace directory `dir`, collecting problems (see [`Run::open_with`]).
    pub fn open(dir: &Path) -> Result<Run> {
        Self::open_with(dir, &RunOptions::default())
    }

    /// Reads the trace directory `dir` with `options`.
    pub fn open_with(dir: &Path, options: &RunOptions) -> Result<Run> {
        let mut reader = Reader {
            dir,
            strict: options.strict,
            problems: Vec::new(),
        };
        let packed = dir.join(PACKED_LOG);
        if packed.is_file() {
            let records = reader.read_packed(&packed)?;
            return Ok(Run {
                dir: dir.to_owned(),
                order: RunOrder::Packed,
                records,
                problems: reader.problems,
            });
        }
        let trace_files = list_trace_files(dir)?;
        let manifest = dir.join(MANIFEST_FILE);
        let (order, records) = if manifest.is_file() {
            (
                RunOrder::Manifest,
                reader.read_manifest_run(&manifest, trace_files)?,
            )
        } else if trace_files.is_empty() && crate::ranks::RankedRun::looks_ranked(dir) {
            return Err(Error::RankLayout {
                path: dir.to_owned(),
                problem: "a multi-rank run (rank-N directories): read one rank's directory, or \
                          compare the whole with trace-diff"
                    .into(),
            });
        } else if trace_files.is_empty() {
            return Err(Error::io(
                "read trace directory",
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no {PACKED_LOG}, no {MANIFEST_FILE} and no .{RECORD_EXTENSION} files"),
                ),
            ));
        } else {
            reader.read_plain_files(trace_files)?
        };
        Ok(Run {
            dir: dir.to_owned(),
            order,
            records,
            problems: reader.problems,
        })
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the order of [`Run::records`] comes from.
    pub fn order(&self) -> RunOrder {
        self.order
    }

    /// The readable records, in capture order.
    pub fn records(&self) -> &[RunRecord] {
        &self.records
    }

    /// Problems met while reading, in the order met (empty in strict mode).
    pub fn problems(&self) -> &[RecordError] {
        &self.problems
    }

    /// Number of readable records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record could be read.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The full path of a record's `.npy` values, when it has some.
    pub fn values_path(&self, record: &RunRecord) -> Option<PathBuf> {
        record.values.as_ref().map(|v| self.dir.join(v))
    }

    /// The full path of a record's `.trace` file.
    pub fn record_path(&self, record: &RunRecord) -> PathBuf {
        self.dir.join(&record.file)
    }
}
