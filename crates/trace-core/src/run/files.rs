//! Plain `.trace` files: listing, reading and checking the records a directory holds.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::record::RunRecord;
use crate::record::{ManifestEntry, RecordError, TraceRecord, RECORD_EXTENSION};
use crate::{Error, Result};

pub(super) fn invalid(path: PathBuf, field: &'static str, problem: String) -> RecordError {
    RecordError::Invalid {
        path,
        field,
        problem,
    }
}

/// The `.trace` file names directly inside `dir`, in no particular order.
pub(super) fn list_trace_files(dir: &Path) -> Result<Vec<String>> {
    let io_err = |source| Error::io("read trace directory", dir, source);
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_trace = Path::new(name)
            .extension()
            .is_some_and(|e| e == RECORD_EXTENSION);
        if is_trace && entry.file_type().map_err(io_err)?.is_file() {
            files.push(name.to_owned());
        }
    }
    Ok(files)
}

/// Reads the records `entries` list (in parallel), each checked against its entry (name, index,
/// occurrence); a record that cannot be read or disagrees is passed to `problem`. Returns each
/// record read with its entry's index.
pub(super) fn load_listed(
    dir: &Path,
    entries: Vec<ManifestEntry>,
    problem: &mut dyn FnMut(RecordError) -> Result<()>,
) -> Result<Vec<(u64, RunRecord)>> {
    let loaded: Vec<_> = entries
        .par_iter()
        .map(|e| read_record(&dir.join(&e.file)))
        .collect();
    let mut records = Vec::with_capacity(entries.len());
    for (e, r) in entries.into_iter().zip(loaded) {
        let record = match r {
            Ok(r) => r,
            Err(err) => {
                problem(err)?;
                continue;
            }
        };
        let path = dir.join(&e.file);
        if record.name != e.name {
            let msg = format!("{:?}, but the manifest lists {:?}", record.name, e.name);
            problem(invalid(path.clone(), "name", msg))?;
        }
        if let Some(i) = record.index.filter(|&i| i != e.index) {
            let msg = format!("{i}, but the manifest lists index {}", e.index);
            problem(invalid(path.clone(), "index", msg))?;
        }
        if let Some(o) = record.occurrence.filter(|&o| o != e.occurrence) {
            let msg = format!("{o}, but the manifest lists occurrence {}", e.occurrence);
            problem(invalid(path, "occurrence", msg))?;
        }
        let values = e.values.or_else(|| record.values.clone());
        records.push((
            e.index,
            RunRecord {
                file: e.file,
                occurrence: e.occurrence,
                values,
                record,
            },
        ));
    }
    Ok(records)
}

/// [`TraceRecord::read`] into a buffer reused across the records of one thread: no size query,
/// no allocation per file. Invalid UTF-8 inside a string is replaced, not fatal.
pub(super) fn read_record(path: &Path) -> Result<TraceRecord, RecordError> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|bytes| {
        bytes.clear();
        fs::File::open(path)
            // Through `take` so std does not query the file size (one syscall less per record).
            .and_then(|f| f.take(u64::MAX).read_to_end(bytes))
            .map_err(|source| RecordError::Io {
                path: path.to_owned(),
                source,
            })?;
        TraceRecord::from_json(&String::from_utf8_lossy(bytes), path)
    })
}

/// A name that stays inside the directory: one path component, not `.` or `..`.
pub(super) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !Path::new(name).is_absolute()
}
