//! Reading a trace directory back, in capture order.
//!
//! A [`Run`] is every readable record of one trace directory, in execution order, plus the
//! problems met while reading it. Records are small (no values: the `.npy` files they name are
//! read by whoever needs them, one at a time), so a run holds all of them; its memory grows with
//! the number of records, never with the number of elements.
//!
//! # Order
//!
//! - **Manifest** (`manifest.jsonl` present): the manifest is streamed line by line and its
//!   entries sorted by `index` (threads may append lines slightly out of order). A last line cut
//!   short by a crash is reported and skipped. `.trace` files the manifest does not list (a
//!   record written just before a crash, before its manifest line) are reported and placed by
//!   their own `index` when they have one, else after every listed record.
//! - **Packed** (`records.jsonl` present, see [`crate::config::Layout::Packed`]): the log is
//!   read in chunks of lines parsed in parallel; records are sorted by `index` (a writer appends
//!   in index order, so this is the line order). A last line cut short by a crash (no newline,
//!   not valid JSON) is reported and skipped; any other line that is not a valid record is
//!   reported (naming the line) and skipped. A record's `file` is `records.jsonl:LINE`.
//! - **Index** (no manifest, every record has an `index`): sorted by `index`. Execution order is
//!   known.
//! - **Guessed** (seed-format directory): sorted by `seq` (absent = 0), then `index` (absent =
//!   last), then file name in natural order (digit runs compare as numbers, so `blk2` comes
//!   before `blk10`). Execution order is *unknown*: within one step the file name decides.
//!
//! # Occurrence
//!
//! Records are matched across runs by `(name, occurrence)`. Our records carry `occurrence`; for
//! records without it the k-th record of a name in the order above gets occurrence k, so decode
//! steps of seed-format runs still line up when `seq` is present. Two records of one name with
//! the same `seq` and no `occurrence` are reported as a duplicate seq.
//!
//! # Problems
//!
//! Anything wrong that still leaves an honest partial answer (a malformed record, a truncated
//! manifest line, a duplicate index, a file the manifest does not list) is collected as a
//! [`RecordError`] in [`Run::problems`] and the record concerned is skipped or kept as
//! documented on each case. With [`RunOptions::strict`] the first such problem is returned as
//! the error instead. A directory that cannot be listed, or holds neither a manifest nor any
//! `.trace` file, is always an error.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::record::{
    ManifestEntry, RecordError, TraceRecord, MANIFEST_FILE, PACKED_LOG, RECORD_EXTENSION,
};
use crate::{Error, Result};

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

/// Every readable record of a trace directory, in capture order.
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    order: RunOrder,
    records: Vec<RunRecord>,
    problems: Vec<RecordError>,
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

/// Reading state: where problems go.
struct Reader<'a> {
    dir: &'a Path,
    strict: bool,
    problems: Vec<RecordError>,
}

fn invalid(path: PathBuf, field: &'static str, problem: String) -> RecordError {
    RecordError::Invalid {
        path,
        field,
        problem,
    }
}

impl Reader<'_> {
    /// Records a problem, or fails with it in strict mode.
    fn problem(&mut self, e: RecordError) -> Result<()> {
        if self.strict {
            return Err(Error::Record(e));
        }
        self.problems.push(e);
        Ok(())
    }

    fn read_manifest_run(
        &mut self,
        manifest: &Path,
        trace_files: Vec<String>,
    ) -> Result<Vec<RunRecord>> {
        let mut entries = self.read_manifest(manifest)?;
        // Threads may append out of order; a stable sort keeps the first of duplicate indices.
        entries.sort_by_key(|e| e.index);
        let mut seen_index = HashSet::new();
        let mut seen_key = HashSet::new();
        let mut listed = HashSet::new();
        let mut kept = Vec::with_capacity(entries.len());
        for e in entries {
            if !is_plain_file_name(&e.file) {
                let msg = format!("{:?} is not a file name inside the trace directory", e.file);
                self.problem(invalid(manifest.to_owned(), "file", msg))?;
                continue;
            }
            if !seen_index.insert(e.index) {
                let msg = format!(
                    "duplicate index {} (entry for {:?} skipped)",
                    e.index, e.file
                );
                self.problem(invalid(manifest.to_owned(), "index", msg))?;
                continue;
            }
            if !seen_key.insert((e.name.clone(), e.occurrence)) {
                let msg = format!(
                    "duplicate occurrence {} of {:?} (entry for {:?} skipped)",
                    e.occurrence, e.name, e.file
                );
                self.problem(invalid(manifest.to_owned(), "occurrence", msg))?;
                continue;
            }
            listed.insert(e.file.clone());
            kept.push(e);
        }

        let dir = self.dir;
        let mut records = load_listed(dir, kept, &mut |e| self.problem(e))?;

        // Records the manifest does not list: written just before a crash, or stray copies.
        let mut orphans: Vec<String> = trace_files
            .into_iter()
            .filter(|f| !listed.contains(f))
            .collect();
        orphans.sort_by(|a, b| natural_cmp(a, b));
        let loaded: Vec<_> = orphans
            .par_iter()
            .map(|f| read_record(&dir.join(f)))
            .collect();
        let mut tail = Vec::new();
        for (file, r) in orphans.into_iter().zip(loaded) {
            let path = dir.join(&file);
            let record = match r {
                Ok(r) => r,
                Err(err) => {
                    self.problem(err)?;
                    continue;
                }
            };
            let occurrence = record.occurrence.unwrap_or_else(|| {
                seen_key.iter().filter(|(n, _)| *n == record.name).count() as u64
            });
            let free_index = record.index.filter(|i| !seen_index.contains(i));
            if !seen_key.insert((record.name.clone(), occurrence)) {
                let msg = format!(
                    "not listed in {MANIFEST_FILE} and occurrence {occurrence} of {:?} is taken by a listed record; skipped",
                    record.name
                );
                self.problem(invalid(path, "occurrence", msg))?;
                continue;
            }
            let placed = match free_index {
                Some(i) => {
                    seen_index.insert(i);
                    format!("placed by its index {i}")
                }
                None => "placed after every listed record".to_owned(),
            };
            let msg =
                format!("record not listed in {MANIFEST_FILE} (written during a crash?); {placed}");
            self.problem(invalid(path, "index", msg))?;
            let values = record.values.clone();
            let run_record = RunRecord {
                file,
                occurrence,
                values,
                record,
            };
            match free_index {
                Some(i) => records.push((i, run_record)),
                None => tail.push(run_record),
            }
        }
        records.sort_by_key(|(i, _)| *i);
        let mut out: Vec<RunRecord> = records.into_iter().map(|(_, r)| r).collect();
        tail.sort_by(|a, b| natural_cmp(&a.file, &b.file));
        out.extend(tail);
        Ok(out)
    }

    /// Reads the packed log: chunks of lines parsed in parallel, checked in order.
    fn read_packed(&mut self, log: &Path) -> Result<Vec<RunRecord>> {
        if self.dir.join(MANIFEST_FILE).exists() {
            let msg = format!(
                "the directory also holds {MANIFEST_FILE}: two layouts in one directory; only {PACKED_LOG} is read"
            );
            self.problem(invalid(log.to_owned(), "layout", msg))?;
        }
        let mut lines = PackedLines::open(log)?;
        let mut records: Vec<(u64, RunRecord)> = Vec::new();
        let mut seen_index = HashSet::new();
        let mut next_occurrence: HashMap<String, u64> = HashMap::new();
        let mut seen_key = HashSet::new();
        while let Some(chunk) = lines.next_chunk()? {
            for line in chunk {
                let record = match line.record {
                    Ok(r) => r,
                    Err(e) => {
                        self.problem(e)?;
                        continue;
                    }
                };
                let file = format!("{PACKED_LOG}:{}", line.number);
                let at = || PathBuf::from(format!("{}:{}", log.display(), line.number));
                let Some(index) = record.index else {
                    let msg = "missing: every line of a packed log carries its capture index; record skipped".to_owned();
                    self.problem(invalid(at(), "index", msg))?;
                    continue;
                };
                if !seen_index.insert(index) {
                    let msg = format!("duplicate index {index}; record skipped");
                    self.problem(invalid(at(), "index", msg))?;
                    continue;
                }
                let counter = next_occurrence.entry(record.name.clone()).or_insert(0);
                let occurrence = record.occurrence.unwrap_or(*counter);
                *counter = occurrence + 1;
                if !seen_key.insert((record.name.clone(), occurrence)) {
                    let msg = format!(
                        "duplicate occurrence {occurrence} of {:?}; record skipped",
                        record.name
                    );
                    self.problem(invalid(at(), "occurrence", msg))?;
                    continue;
                }
                let values = record.values.clone();
                records.push((
                    index,
                    RunRecord {
                        file,
                        occurrence,
                        values,
                        record,
                    },
                ));
            }
        }
        // A writer appends in index order; the sort only matters for hand-made logs.
        records.sort_by_key(|(i, _)| *i);
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }

    /// Streams `manifest.jsonl`; a bad last line without a newline is a truncated write.
    fn read_manifest(&mut self, manifest: &Path) -> Result<Vec<ManifestEntry>> {
        let io_err = |source| Error::io("read manifest", manifest, source);
        let file = fs::File::open(manifest).map_err(io_err)?;
        let mut reader = BufReader::new(file);
        let mut entries = Vec::new();
        let mut line = String::new();
        let mut number = 0;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io_err)?;
            if n == 0 {
                break;
            }
            number += 1;
            let complete = line.ends_with('\n');
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match ManifestEntry::from_line(text, manifest, number) {
                Ok(e) => entries.push(e),
                Err(_) if !complete => {
                    let msg = format!(
                        "line {number}: last line is cut short ({} bytes, no newline): the writer was interrupted; entry skipped",
                        text.len()
                    );
                    self.problem(RecordError::Parse {
                        path: manifest.to_owned(),
                        message: msg,
                    })?;
                }
                Err(e) => self.problem(e)?,
            }
        }
        Ok(entries)
    }

    fn read_plain_files(&mut self, files: Vec<String>) -> Result<(RunOrder, Vec<RunRecord>)> {
        let dir = self.dir;
        let loaded: Vec<_> = files
            .par_iter()
            .map(|f| read_record(&dir.join(f)))
            .collect();
        let mut records = Vec::with_capacity(files.len());
        for (file, r) in files.into_iter().zip(loaded) {
            match r {
                Ok(record) => records.push((file, record)),
                Err(e) => self.problem(e)?,
            }
        }
        let order = if !records.is_empty() && records.iter().all(|(_, r)| r.index.is_some()) {
            records.sort_by(|a, b| a.1.index.cmp(&b.1.index).then(natural_cmp(&a.0, &b.0)));
            RunOrder::Index
        } else {
            records.sort_by(|a, b| {
                let ka = (a.1.seq.unwrap_or(0), a.1.index.unwrap_or(u64::MAX));
                let kb = (b.1.seq.unwrap_or(0), b.1.index.unwrap_or(u64::MAX));
                ka.cmp(&kb).then_with(|| natural_cmp(&a.0, &b.0))
            });
            RunOrder::Guessed
        };

        let mut out = Vec::with_capacity(records.len());
        let mut next_occurrence: HashMap<String, u64> = HashMap::new();
        let mut seen_key = HashSet::new();
        let mut seen_index: HashMap<u64, String> = HashMap::new();
        let mut seen_seq: HashMap<(String, u64), String> = HashMap::new();
        for (file, record) in records {
            let path = dir.join(&file);
            if let Some(i) = record.index {
                if let Some(other) = seen_index.insert(i, file.clone()) {
                    let msg = format!("duplicate index {i}, also in {other}; record skipped");
                    self.problem(invalid(path, "index", msg))?;
                    continue;
                }
            }
            if let (None, Some(seq)) = (record.occurrence, record.seq) {
                if let Some(other) = seen_seq.insert((record.name.clone(), seq), file.clone()) {
                    let msg = format!(
                        "duplicate seq {seq} for {:?}, also in {other}: decode steps cannot be told apart; the file names decide the occurrence",
                        record.name
                    );
                    self.problem(invalid(path.clone(), "seq", msg))?;
                }
            }
            let counter = next_occurrence.entry(record.name.clone()).or_insert(0);
            let occurrence = record.occurrence.unwrap_or(*counter);
            *counter = occurrence + 1;
            if !seen_key.insert((record.name.clone(), occurrence)) {
                let msg = format!(
                    "duplicate occurrence {occurrence} of {:?}; record skipped",
                    record.name
                );
                self.problem(invalid(path, "occurrence", msg))?;
                continue;
            }
            let values = record.values.clone();
            out.push(RunRecord {
                file,
                occurrence,
                values,
                record,
            });
        }
        Ok((order, out))
    }
}

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
    source: StreamSource,
    next_occurrence: HashMap<String, u64>,
    last_index: Option<u64>,
}

#[derive(Debug)]
enum StreamSource {
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

/// One line of a packed log, parsed.
#[derive(Debug)]
pub struct PackedLine {
    /// 1-based line number in the log.
    pub number: u64,
    /// The record, or why the line is not one (a cut-short last line says so).
    pub record: std::result::Result<TraceRecord, RecordError>,
}

/// Lines of a packed log (`records.jsonl`) read in chunks, each chunk parsed in parallel.
///
/// Memory is one chunk of lines at a time, whatever the length of the log: the lines of a chunk
/// are read into one buffer, reused from chunk to chunk, and parsed from there (no allocation
/// per line). Blank lines are skipped. A last line without a newline that does not parse is
/// reported as cut short (the writer was interrupted); other bad lines as invalid records,
/// naming the line. Invalid UTF-8 is replaced (as in a `.trace` file), not fatal.
#[derive(Debug)]
pub struct PackedLines {
    path: PathBuf,
    reader: BufReader<fs::File>,
    number: u64,
    done: bool,
    /// The current chunk's lines, back to back.
    buf: Vec<u8>,
}

/// Lines per chunk of [`PackedLines::next_chunk`] (and records per chunk of
/// [`RunStream::next_chunk`]). Small enough for a chunk's records (about 200 KB) to stay in the
/// cache between the thread that parses them and the one that compares them: the streaming diff
/// of two 1 M-record runs took 5.4-8.0 s and 14 MB with 512, 10.3-14.2 s and 135-148 MB with
/// 16,384 (same code otherwise, a loaded 2-core machine); large enough for rayon's parallel
/// parse.
pub const PACKED_CHUNK: usize = 512;

impl PackedLines {
    /// Opens the log at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = fs::File::open(path).map_err(|e| Error::io("read packed log", path, e))?;
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::with_capacity(1 << 20, file),
            number: 0,
            done: false,
            buf: Vec::new(),
        })
    }

    /// The next chunk of up to [`PACKED_CHUNK`] non-blank lines, parsed; `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<PackedLine>>> {
        if self.done {
            return Ok(None);
        }
        // (line number, ends with a newline, byte range in `buf`)
        let mut raw: Vec<(u64, bool, std::ops::Range<usize>)> = Vec::with_capacity(PACKED_CHUNK);
        self.buf.clear();
        while raw.len() < PACKED_CHUNK {
            let start = self.buf.len();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::io("read packed log", &self.path, e))?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.number += 1;
            let complete = self.buf.last() == Some(&b'\n');
            if is_blank(&self.buf[start..]) {
                self.buf.truncate(start);
                continue;
            }
            raw.push((self.number, complete, start..self.buf.len()));
        }
        if raw.is_empty() {
            return Ok(None);
        }
        let (path, buf) = (&self.path, &self.buf);
        let parsed = raw
            .into_par_iter()
            .map(|(number, complete, range)| {
                let bytes = &buf[range];
                // `from_utf8` is much faster than `from_utf8_lossy` on the valid lines.
                let text = match std::str::from_utf8(bytes) {
                    Ok(text) => std::borrow::Cow::Borrowed(text),
                    Err(_) => String::from_utf8_lossy(bytes),
                };
                let text = text.trim();
                let record = TraceRecord::from_json(text, path).map_err(|e| match e {
                    RecordError::Parse { .. } if !complete => RecordError::Parse {
                        path: path.clone(),
                        message: format!(
                            "line {number}: last line is cut short ({} bytes, no newline): the writer was interrupted; record skipped",
                            text.len()
                        ),
                    },
                    RecordError::Parse { path, message } => RecordError::Parse {
                        path,
                        message: format!("line {number}: {message}"),
                    },
                    RecordError::Invalid {
                        path,
                        field,
                        problem,
                    } => RecordError::Invalid {
                        path,
                        field,
                        problem: format!("line {number}: {problem}"),
                    },
                    other => other,
                });
                PackedLine { number, record }
            })
            .collect();
        Ok(Some(parsed))
    }
}

/// Whether a line holds only white space (as `str::trim` sees it, for valid UTF-8).
fn is_blank(line: &[u8]) -> bool {
    match line.trim_ascii().first() {
        None => true,
        // The usual case, a line starting with `{`: no need to decode it.
        Some(b) if b.is_ascii() => false,
        Some(_) => String::from_utf8_lossy(line).trim().is_empty(),
    }
}

/// The `.trace` file names directly inside `dir`, in no particular order.
fn list_trace_files(dir: &Path) -> Result<Vec<String>> {
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
fn load_listed(
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
fn read_record(path: &Path) -> Result<TraceRecord, RecordError> {
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
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !Path::new(name).is_absolute()
}

/// Natural order: runs of ASCII digits compare as numbers, everything else byte-wise.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let ord = na
                    .len()
                    .cmp(&nb.len())
                    .then_with(|| na.cmp(nb))
                    .then(da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    fn seed(name: &str, extra: &str) -> String {
        format!(
            r#"{{"name":"{name}","shape":[1],"dtype":"F32","blake3":"{HASH}","rms":1.0,"num_elements":1{extra}}}"#
        )
    }

    fn write(dir: &Path, file: &str, text: &str) {
        fs::write(dir.join(file), text).unwrap();
    }

    fn names(run: &Run) -> Vec<(String, u64)> {
        run.records()
            .iter()
            .map(|r| (r.record.name.clone(), r.occurrence))
            .collect()
    }

    fn entry(index: u64, name: &str, occurrence: u64, file: &str) -> String {
        format!(r#"{{"index":{index},"name":"{name}","occurrence":{occurrence},"file":"{file}"}}"#)
    }

    fn ours(name: &str, index: u64, occurrence: u64) -> String {
        seed(
            name,
            &format!(r#","format_version":1,"index":{index},"occurrence":{occurrence}"#),
        )
    }

    #[test]
    fn natural_order() {
        let check = |a: &str, b: &str, expected: Ordering| {
            assert_eq!(natural_cmp(a, b), expected, "{a} vs {b}");
        };
        check("blk2.trace", "blk10.trace", Ordering::Less);
        check("blk10", "blk10", Ordering::Equal);
        check("a", "b", Ordering::Less);
        check("blk02", "blk2", Ordering::Greater);
        check("x", "x1", Ordering::Less);
        check(
            "99999999999999999999999",
            "100000000000000000000000",
            Ordering::Less,
        );
    }

    #[test]
    fn manifest_order_sorted_by_index_with_truncated_tail() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &ours("a", 0, 0));
        write(d, "b.trace", &ours("b", 1, 0));
        write(d, "a.1.trace", &ours("a", 2, 1));
        let manifest = [
            entry(1, "b", 0, "b.trace"),
            entry(0, "a", 0, "a.trace"),
            entry(2, "a", 1, "a.1.trace"),
        ]
        .join("\n")
            + "\n{\"index\":3,\"na";
        write(d, MANIFEST_FILE, &manifest);
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Manifest);
        assert_eq!(
            names(&run),
            [("a".into(), 0), ("b".into(), 0), ("a".into(), 1)]
        );
        assert_eq!(run.problems().len(), 1);
        let msg = run.problems()[0].to_string();
        assert!(
            msg.contains("manifest.jsonl") && msg.contains("line 4") && msg.contains("cut short"),
            "{msg}"
        );
        let strict = Run::open_with(d, &RunOptions { strict: true }).unwrap_err();
        assert!(strict.to_string().contains("cut short"), "{strict}");
    }

    #[test]
    fn manifest_problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &ours("a", 0, 0));
        write(d, "b.trace", &ours("b", 1, 0));
        write(d, "late.trace", &ours("late", 5, 0));
        write(d, "bad.trace", "{\"name\": 3}");
        let manifest = [
            entry(0, "a", 0, "a.trace"),
            entry(0, "b", 0, "b.trace"),
            entry(2, "x", 0, "../x.trace"),
            entry(3, "bad", 0, "bad.trace"),
            entry(4, "gone", 0, "gone.trace"),
            "{not json".to_owned(),
        ]
        .join("\n")
            + "\n";
        write(d, MANIFEST_FILE, &manifest);
        let run = Run::open(d).unwrap();
        // `b.trace` lost its manifest entry to the duplicate index, but the file itself carries
        // a free index, so it comes back as an unlisted record.
        assert_eq!(
            names(&run),
            [("a".into(), 0), ("b".into(), 0), ("late".into(), 0)]
        );
        let all: Vec<String> = run.problems().iter().map(|p| p.to_string()).collect();
        let all = all.join("\n");
        for needle in [
            "line 6",
            "duplicate index 0",
            "../x.trace",
            "bad.trace",
            "gone.trace",
            "late.trace: field `index`: record not listed",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn seed_directory_guessed_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "blk10_out.trace", &seed("blk10/out", ""));
        write(d, "blk2_out.trace", &seed("blk2/out", ""));
        write(d, "logits.trace", &seed("logits", r#","seq":1,"layer":-1"#));
        write(
            d,
            "logits_s0.trace",
            &seed("logits", r#","seq":0,"layer":-1"#),
        );
        write(d, "notes.txt", "not a record");
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Guessed);
        assert!(!run.order().is_execution_order());
        assert_eq!(
            names(&run),
            [
                ("blk2/out".into(), 0),
                ("blk10/out".into(), 0),
                ("logits".into(), 0),
                ("logits".into(), 1)
            ]
        );
        assert_eq!(run.records()[2].file, "logits_s0.trace");
        assert!(run.problems().is_empty());
    }

    #[test]
    fn duplicate_seq_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &seed("a", r#","seq":0"#));
        write(d, "a_copy.trace", &seed("a", r#","seq":0"#));
        let run = Run::open(d).unwrap();
        assert_eq!(names(&run), [("a".into(), 0), ("a".into(), 1)]);
        let msg = run.problems()[0].to_string();
        assert!(
            msg.contains("a_copy.trace: field `seq`: duplicate seq 0"),
            "{msg}"
        );
        assert!(Run::open_with(d, &RunOptions { strict: true }).is_err());
    }

    #[test]
    fn indexed_records_without_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "z.trace", &ours("z", 0, 0));
        write(d, "a.trace", &ours("a", 1, 0));
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Index);
        assert_eq!(names(&run), [("z".into(), 0), ("a".into(), 0)]);
    }

    fn packed(name: &str, index: u64, occurrence: u64) -> String {
        ours(name, index, occurrence)
    }

    #[test]
    fn packed_log_torn_last_line_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = [packed("b", 1, 0), packed("a", 0, 0), packed("a", 2, 1)].join("\n")
            + "\n"
            + &packed("c", 3, 0)[..40];
        write(d, PACKED_LOG, &log);
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Packed);
        assert!(run.order().is_execution_order());
        assert_eq!(
            names(&run),
            [("a".into(), 0), ("b".into(), 0), ("a".into(), 1)]
        );
        assert_eq!(run.records()[0].file, "records.jsonl:2");
        assert_eq!(run.problems().len(), 1);
        let msg = run.problems()[0].to_string();
        assert!(
            msg.contains("records.jsonl") && msg.contains("line 4") && msg.contains("cut short"),
            "{msg}"
        );
        let strict = Run::open_with(d, &RunOptions { strict: true }).unwrap_err();
        assert!(strict.to_string().contains("cut short"), "{strict}");
    }

    #[test]
    fn packed_log_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = [
            packed("a", 0, 0),
            "{not json".to_owned(),
            "".to_owned(),
            packed("a", 0, 1),
            packed("a", 1, 0),
            seed("noindex", ""),
            packed("b", 2, 0).replace(HASH, "xyz"),
            packed("c", 3, 0),
        ]
        .join("\n")
            + "\n";
        write(d, PACKED_LOG, &log);
        write(d, MANIFEST_FILE, "");
        let run = Run::open(d).unwrap();
        assert_eq!(names(&run), [("a".into(), 0), ("c".into(), 0)]);
        assert_eq!(run.records()[1].file, "records.jsonl:8");
        let all: Vec<String> = run.problems().iter().map(|p| p.to_string()).collect();
        let all = all.join("\n");
        for needle in [
            "two layouts",
            "line 2",
            "records.jsonl:4: field `index`: duplicate index 0",
            "records.jsonl:5: field `occurrence`: duplicate occurrence 0",
            "records.jsonl:6: field `index`: missing",
            "line 7",
            "blake3",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert_eq!(run.problems().len(), 6, "{all}");
    }

    #[test]
    fn packed_lines_come_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACKED_LOG);
        let n = PACKED_CHUNK + 10;
        let log: String = (0..n)
            .map(|i| packed("x", i as u64, i as u64) + "\n")
            .collect();
        fs::write(&path, log).unwrap();
        let mut lines = PackedLines::open(&path).unwrap();
        let first = lines.next_chunk().unwrap().unwrap();
        assert_eq!(first.len(), PACKED_CHUNK);
        assert_eq!(first[5].number, 6);
        let second = lines.next_chunk().unwrap().unwrap();
        assert_eq!(second.len(), 10);
        assert_eq!(second[9].record.as_ref().unwrap().index, Some(n as u64 - 1));
        assert!(lines.next_chunk().unwrap().is_none());
    }

    #[test]
    fn packed_lines_skip_blank_lines_and_replace_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACKED_LOG);
        let mut log = Vec::new();
        log.extend_from_slice(packed("a", 0, 0).as_bytes());
        log.extend_from_slice(b"\r\n  \t\n\xc2\xa0\n");
        // A name with an invalid UTF-8 byte (`Q` overwritten): replaced, the record kept.
        let mut bad = packed("bQ", 1, 0).into_bytes();
        let q = bad.iter().position(|&b| b == b'Q').unwrap();
        bad[q] = 0xff;
        log.extend_from_slice(&bad);
        log.extend_from_slice(b"\n");
        log.extend_from_slice(packed("c", 2, 0).as_bytes());
        fs::write(&path, log).unwrap();
        let mut lines = PackedLines::open(&path).unwrap();
        let chunk = lines.next_chunk().unwrap().unwrap();
        let got: Vec<(u64, String)> = chunk
            .iter()
            .map(|l| (l.number, l.record.as_ref().unwrap().name.clone()))
            .collect();
        // Line 1 ends in CRLF; lines 2 (spaces and a tab) and 3 (a no-break space) are blank;
        // line 5 has no newline but is whole.
        assert_eq!(got[0], (1, "a".to_owned()));
        assert_eq!(got[1].0, 4);
        assert_eq!(got[1].1, "b\u{FFFD}");
        assert_eq!(got[2], (5, "c".to_owned()));
        assert_eq!(got.len(), 3);
        assert!(lines.next_chunk().unwrap().is_none());
    }

    fn streamed(d: &Path) -> (RunStream, Vec<RunRecord>) {
        let mut stream = RunStream::open(d, &RunOptions::default()).unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = stream.next_chunk().unwrap() {
            assert!(!chunk.is_empty() && chunk.len() <= PACKED_CHUNK);
            all.extend(chunk);
        }
        (stream, all)
    }

    #[test]
    fn stream_reads_what_run_reads() {
        // A clean manifest directory streams; its records equal the Run's.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &ours("a", 0, 0));
        write(d, "b.trace", &ours("b", 1, 0));
        write(d, "a.1.trace", &ours("a", 2, 1));
        let manifest = [
            entry(0, "a", 0, "a.trace"),
            entry(1, "b", 0, "b.trace"),
            entry(2, "a", 1, "a.1.trace"),
        ]
        .join("\n")
            + "\n";
        write(d, MANIFEST_FILE, &manifest);
        let (stream, all) = streamed(d);
        assert!(matches!(stream.source, StreamSource::Manifest { .. }));
        assert_eq!(stream.order(), RunOrder::Manifest);
        assert_eq!(all, Run::open(d).unwrap().records());

        // An orphan record: read whole, with the Run's order and problems.
        write(d, "late.trace", &ours("late", 5, 0));
        let (stream, all) = streamed(d);
        assert!(matches!(stream.source, StreamSource::Loaded(_)));
        let run = Run::open(d).unwrap();
        assert_eq!(all, run.records());
        assert_eq!(stream.problems().len(), run.problems().len());
        assert_eq!(stream.problems().len(), 1);
    }

    #[test]
    fn stream_reads_a_packed_log_in_order_and_reports_what_it_skips() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let n = PACKED_CHUNK as u64 + 3;
        let mut log: String = (0..n).map(|i| packed("x", i, i) + "\n").collect();
        log += &(packed("y", 2, 0) + "\n"); // index goes back
        log += &(packed("x", n, 3) + "\n"); // occurrence repeats
        log += &(packed("y", n + 1, 0) + "\n");
        log += &packed("z", n + 2, 0)[..30]; // cut short
        write(d, PACKED_LOG, &log);
        let (stream, all) = streamed(d);
        assert_eq!(stream.order(), RunOrder::Packed);
        assert_eq!(all.len() as u64, n + 1);
        assert_eq!(all.last().unwrap().key(), ("y", 0));
        assert_eq!(all[7].file, "records.jsonl:8");
        let msgs: Vec<String> = stream.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("out of order"), "{}", msgs[0]);
        assert!(msgs[1].contains("duplicate occurrence 3"), "{}", msgs[1]);
        assert!(msgs[2].contains("cut short"), "{}", msgs[2]);
        let mut strict = RunStream::open(d, &RunOptions { strict: true }).unwrap();
        let err = std::iter::from_fn(|| strict.next_chunk().transpose())
            .find_map(|c| c.err())
            .unwrap();
        assert!(err.to_string().contains("out of order"), "{err}");
    }

    #[test]
    fn empty_or_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let msg = Run::open(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("no manifest.jsonl"), "{msg}");
        let msg = Run::open(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(msg.contains("nope"), "{msg}");
    }
}
