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

use crate::record::{ManifestEntry, RecordError, TraceRecord, MANIFEST_FILE, RECORD_EXTENSION};
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
                    format!("no {MANIFEST_FILE} and no .{RECORD_EXTENSION} files"),
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
        let loaded: Vec<_> = kept
            .par_iter()
            .map(|e| read_record(&dir.join(&e.file)))
            .collect();
        let mut records = Vec::with_capacity(kept.len());
        for (e, r) in kept.into_iter().zip(loaded) {
            let record = match r {
                Ok(r) => r,
                Err(err) => {
                    self.problem(err)?;
                    continue;
                }
            };
            let path = dir.join(&e.file);
            if record.name != e.name {
                let msg = format!("{:?}, but the manifest lists {:?}", record.name, e.name);
                self.problem(invalid(path.clone(), "name", msg))?;
            }
            if let Some(i) = record.index.filter(|&i| i != e.index) {
                let msg = format!("{i}, but the manifest lists index {}", e.index);
                self.problem(invalid(path.clone(), "index", msg))?;
            }
            if let Some(o) = record.occurrence.filter(|&o| o != e.occurrence) {
                let msg = format!("{o}, but the manifest lists occurrence {}", e.occurrence);
                self.problem(invalid(path, "occurrence", msg))?;
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

    #[test]
    fn empty_or_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let msg = Run::open(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("no manifest.jsonl"), "{msg}");
        let msg = Run::open(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(msg.contains("nope"), "{msg}");
    }
}
