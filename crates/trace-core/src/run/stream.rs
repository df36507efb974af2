//! Streaming a trace directory a chunk at a time ([`RunStream`]).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::files::{invalid, is_plain_file_name, load_listed};
use super::loaded::Run;
use super::packed::{PackedLine, PackedLines, PACKED_CHUNK};
use super::record::{RunOptions, RunOrder, RunRecord};
use crate::record::{ManifestEntry, RecordError, MANIFEST_FILE, PACKED_LOG, RECORD_EXTENSION};
use crate::{Error, Result};

/// The records of a trace directory in capture order, a chunk at a time.
///
/// Memory is one chunk of records plus one counter per distinct name, whatever the length of
/// the run, for the two layouts a writer produces in order:
///
/// - a packed log (`records.jsonl`), read with [`PackedLines`]. Lines are taken in file order,
///   which is capture order for every writer; a line whose `index` does not increase, or whose
///   `occurrence` repeats an earlier one of its name, is reported and skipped (a [`Run`] would
///   sort a hand-edited log instead);
/// - a `manifest.jsonl` whose entries all parse, have strictly increasing indexes and list every
///   `.trace` file of the directory (checked by a first pass over the manifest and the listing,
///   which holds nothing): its records are read a chunk at a time, files in parallel.
///
/// Anything else (a seed directory, a manifest with damage, orphan records or out-of-order
/// lines) is read whole with [`Run::open_with`], with exactly its order and problems.
#[derive(Debug)]
pub struct RunStream {
    dir: PathBuf,
    order: RunOrder,
    strict: bool,
    problems: Vec<RecordError>,
    pub(super) source: StreamSource,
    next_occurrence: HashMap<String, u64>,
    last_index: Option<u64>,
}

#[derive(Debug)]
pub(super) enum StreamSource {
    Packed(PackedLines),
    Manifest {
        path: PathBuf,
        reader: BufReader<fs::File>,
        number: usize,
    },
    Loaded(std::vec::IntoIter<RunRecord>),
}

impl RunStream {
    /// Opens the trace directory `dir` for streaming with `options`.
    pub fn open(dir: &Path, options: &RunOptions) -> Result<RunStream> {
        let mut stream = RunStream {
            dir: dir.to_owned(),
            order: RunOrder::Packed,
            strict: options.strict,
            problems: Vec::new(),
            source: StreamSource::Loaded(Vec::new().into_iter()),
            next_occurrence: HashMap::new(),
            last_index: None,
        };
        let packed = dir.join(PACKED_LOG);
        let manifest = dir.join(MANIFEST_FILE);
        if packed.is_file() {
            if manifest.exists() {
                let msg = format!(
                    "the directory also holds {MANIFEST_FILE}: two layouts in one directory; only {PACKED_LOG} is read"
                );
                stream.problem(invalid(packed.clone(), "layout", msg))?;
            }
            stream.source = StreamSource::Packed(PackedLines::open(&packed)?);
        } else if manifest.is_file() && manifest_streams(dir, &manifest)? {
            let file =
                fs::File::open(&manifest).map_err(|e| Error::io("read manifest", &manifest, e))?;
            stream.order = RunOrder::Manifest;
            stream.source = StreamSource::Manifest {
                path: manifest,
                reader: BufReader::with_capacity(1 << 20, file),
                number: 0,
            };
        } else {
            let run = Run::open_with(dir, options)?;
            stream.order = run.order;
            stream.problems = run.problems;
            stream.source = StreamSource::Loaded(run.records.into_iter());
        }
        Ok(stream)
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the order of the records comes from.
    pub fn order(&self) -> RunOrder {
        self.order
    }

    /// Problems met so far, in the order met (empty in strict mode).
    pub fn problems(&self) -> &[RecordError] {
        &self.problems
    }

    /// Takes the problems met so far.
    pub fn take_problems(&mut self) -> Vec<RecordError> {
        std::mem::take(&mut self.problems)
    }

    fn problem(&mut self, e: RecordError) -> Result<()> {
        if self.strict {
            return Err(Error::Record(e));
        }
        self.problems.push(e);
        Ok(())
    }

    /// The next records in capture order (at most [`PACKED_CHUNK`]); `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<RunRecord>>> {
        loop {
            let chunk = match &mut self.source {
                StreamSource::Loaded(records) => {
                    let chunk: Vec<RunRecord> = records.by_ref().take(PACKED_CHUNK).collect();
                    return Ok((!chunk.is_empty()).then_some(chunk));
                }
                StreamSource::Packed(lines) => match lines.next_chunk()? {
                    None => return Ok(None),
                    Some(lines) => self.packed_chunk(lines)?,
                },
                StreamSource::Manifest { .. } => match self.manifest_chunk()? {
                    None => return Ok(None),
                    Some(chunk) => chunk,
                },
            };
            // A chunk of skipped lines only: read on rather than return an empty chunk.
            if !chunk.is_empty() {
                return Ok(Some(chunk));
            }
        }
    }

    fn packed_chunk(&mut self, lines: Vec<PackedLine>) -> Result<Vec<RunRecord>> {
        let log = self.dir.join(PACKED_LOG);
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            let record = match line.record {
                Ok(r) => r,
                Err(e) => {
                    self.problem(e)?;
                    continue;
                }
            };
            let at = || PathBuf::from(format!("{}:{}", log.display(), line.number));
            let Some(index) = record.index else {
                let msg =
                    "missing: every line of a packed log carries its capture index; record skipped"
                        .to_owned();
                self.problem(invalid(at(), "index", msg))?;
                continue;
            };
            if let Some(last) = self.last_index.filter(|&last| index <= last) {
                let msg = format!(
                    "{index} after {last}: duplicate or out of order (a writer appends in index order); record skipped"
                );
                self.problem(invalid(at(), "index", msg))?;
                continue;
            }
            let next = self.next_occurrence.get(&record.name).copied().unwrap_or(0);
            let occurrence = record.occurrence.unwrap_or(next);
            if occurrence < next {
                let msg = format!(
                    "duplicate occurrence {occurrence} of {:?}; record skipped",
                    record.name
                );
                self.problem(invalid(at(), "occurrence", msg))?;
                continue;
            }
            self.last_index = Some(index);
            // The name is cloned once per distinct name, not once per record.
            match self.next_occurrence.get_mut(&record.name) {
                Some(next) => *next = occurrence + 1,
                None => {
                    self.next_occurrence
                        .insert(record.name.clone(), occurrence + 1);
                }
            }
            out.push(RunRecord {
                file: format!("{PACKED_LOG}:{}", line.number),
                occurrence,
                values: record.values.clone(),
                record,
            });
        }
        Ok(out)
    }

    fn manifest_chunk(&mut self) -> Result<Option<Vec<RunRecord>>> {
        let StreamSource::Manifest {
            path,
            reader,
            number,
        } = &mut self.source
        else {
            unreachable!("called for a manifest source only")
        };
        let mut entries = Vec::with_capacity(PACKED_CHUNK);
        let mut line = String::new();
        while entries.len() < PACKED_CHUNK {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| Error::io("read manifest", &*path, e))?;
            if n == 0 {
                break;
            }
            *number += 1;
            if line.trim().is_empty() {
                continue;
            }
            // The first pass parsed every line: this one cannot fail unless the file changed.
            entries.push(ManifestEntry::from_line(line.trim(), path, *number)?);
        }
        if entries.is_empty() {
            return Ok(None);
        }
        let dir = self.dir.clone();
        let out = load_listed(&dir, entries, &mut |e| self.problem(e))?;
        Ok(Some(out.into_iter().map(|(_, r)| r).collect()))
    }
}

/// Whether `manifest` can be streamed: every line parses and ends with a newline, indexes
/// strictly increase, `(name, occurrence)` never repeats for a name (occurrences increase),
/// every file name is plain, and the directory holds exactly as many `.trace` files as the
/// manifest lists. One pass, holding one counter per distinct name.
fn manifest_streams(dir: &Path, manifest: &Path) -> Result<bool> {
    let file = fs::File::open(manifest).map_err(|e| Error::io("read manifest", manifest, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut last_index: Option<u64> = None;
    let mut next_occurrence: HashMap<String, u64> = HashMap::new();
    let mut listed = 0u64;
    let mut number = 0;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io("read manifest", manifest, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        if !line.ends_with('\n') {
            return Ok(false);
        }
        let Ok(e) = ManifestEntry::from_line(line.trim(), manifest, number) else {
            return Ok(false);
        };
        if last_index.is_some_and(|last| e.index <= last) || !is_plain_file_name(&e.file) {
            return Ok(false);
        }
        last_index = Some(e.index);
        let next = next_occurrence.entry(e.name).or_insert(0);
        if e.occurrence < *next {
            return Ok(false);
        }
        *next = e.occurrence + 1;
        listed += 1;
    }
    let io_err = |source| Error::io("read trace directory", dir, source);
    let mut files = 0u64;
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let is_trace = Path::new(&name)
            .extension()
            .is_some_and(|e| e == RECORD_EXTENSION);
        if is_trace && entry.file_type().map_err(io_err)?.is_file() {
            files += 1;
        }
    }
    Ok(files == listed)
}
