//! Where records go: a directory (one file per record, nothing lost) or memory (for tests).
//!
//! # Directory invariants
//! - Every file appears atomically: it is written under a hidden temporary name
//!   (`.tmp-{pid}-{n}.part`) and then moved to its final name with `renameat2(RENAME_NOREPLACE)`
//!   (or a hard link elsewhere), which fails instead of replacing an existing file. So no record ever overwrites another, and a crash leaves every
//!   completed record whole (at worst a hidden `.part` file and a missing manifest line).
//! - The first record of a name keeps the seed's file name, `{sanitized}.trace`. The k-th
//!   repetition (k ≥ 1) is `{sanitized}.{k}.trace`. When a file name is taken (two names that
//!   sanitize alike, or files left by another run in append mode), an 8-hex-digit tag derived
//!   from the raw name is inserted: `{sanitized}.{tag}.trace`, then numbered fallbacks.
//! - `manifest.jsonl` gets one line per record, appended after the record file exists, in
//!   capture-index order.
//!
//! # Packed layout
//! With [`Layout::Packed`] there are no `.trace` files and no manifest: each record is one
//! compact JSON line appended to `records.jsonl` with a single `write` on a file opened with
//! `O_APPEND`, in capture-index order (the lock that stamps the index also appends the line).
//! The line is the record itself (the log *is* the manifest: it carries `index`, `name` and
//! `occurrence`). Raw values, when kept, are per-record `.npy` files published atomically as
//! above *before* their line is appended, so a line never names a missing file. A `kill -9`
//! leaves every line whose `write` returned whole (the data is in the kernel's page cache); at
//! worst the last line is cut short, which readers report ([`crate::run`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use crate::config::{Layout, ValuesChoice};
use crate::ranks::RankInfo;
use crate::record::{ManifestEntry, TraceRecord, MANIFEST_FILE, PACKED_LOG, RECORD_EXTENSION};
use crate::{Error, Result};

/// Longest sanitized stem kept verbatim, in bytes (file names are limited to 255 bytes).
const MAX_STEM: usize = 180;

/// Turns a tensor name into a safe file stem.
///
/// `/` and `\` become `_` as in the seed; control characters (NUL included) become `_` too; a
/// leading `.` gets a `_` prefix, so `..`, `.` and hidden names cannot appear; an empty name
/// becomes `_`; a stem longer than 180 bytes is cut and tagged with a hash of the full name.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    if s.len() > MAX_STEM {
        let mut cut = MAX_STEM;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('~');
        s.push_str(&name_tag(name));
    }
    s
}

/// 8 hex digits of blake3 over the raw name: disambiguates names that sanitize alike.
fn name_tag(name: &str) -> String {
    blake3::hash(name.as_bytes()).to_hex()[..8].to_owned()
}

/// File stems to try, in order, for the `occurrence`-th record of `name`.
fn candidate_stems(name: &str, occurrence: u64) -> impl Iterator<Item = String> {
    let base = sanitize(name);
    let tag = name_tag(name);
    let suffix = if occurrence == 0 {
        String::new()
    } else {
        format!(".{occurrence}")
    };
    let first = format!("{base}{suffix}");
    let tagged = format!("{base}.{tag}{suffix}");
    std::iter::once(first)
        .chain(std::iter::once(tagged.clone()))
        .chain((1..64).map(move |i| format!("{tagged}.{i}")))
}

/// Capture index and per-name occurrence counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    next_index: u64,
    occurrences: HashMap<String, u64>,
}

impl Counters {
    /// The next (index, occurrence) for `name`, without consuming them.
    fn peek(&self, name: &str) -> (u64, u64) {
        (
            self.next_index,
            self.occurrences.get(name).copied().unwrap_or(0),
        )
    }

    fn commit(&mut self, name: &str) {
        self.next_index += 1;
        // A name seen before, the common case, costs no allocation.
        match self.occurrences.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.occurrences.insert(name.to_owned(), 1);
            }
        }
    }

    /// Stamps index, occurrence and format version into `record` and consumes them.
    pub(crate) fn stamp(&mut self, record: &mut TraceRecord) {
        let (index, occurrence) = self.peek(&record.name);
        record.index = Some(index);
        record.occurrence = Some(occurrence);
        self.commit(&record.name);
    }
}

/// Records kept in memory, for tests and for engines that inspect their own trace.
#[derive(Debug, Default)]
pub(crate) struct MemorySink {
    state: Mutex<MemoryState>,
    values: ValuesChoice,
}

/// A record with its raw values, when they were kept.
pub(crate) type RecordWithValues = (TraceRecord, Option<Vec<f32>>);

#[derive(Debug, Default)]
struct MemoryState {
    counters: Counters,
    records: Vec<RecordWithValues>,
}

impl MemorySink {
    pub(crate) fn new(values: ValuesChoice) -> Self {
        Self {
            state: Mutex::default(),
            values,
        }
    }

    /// Stores `record`, with `values` when the values choice selects its occurrence.
    pub(crate) fn write(&self, mut record: TraceRecord, values: Option<Vec<f32>>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.counters.stamp(&mut record);
        let occurrence = record.occurrence.expect("stamped above");
        let values = values.filter(|_| self.values.keeps(&record.name, occurrence));
        state.records.push((record, values));
    }

    pub(crate) fn records(&self) -> Vec<RecordWithValues> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.records.clone()
    }
}

/// One `.trace` file per record in a directory, plus the manifest.
#[derive(Debug)]
pub(crate) struct DirSink {
    dir: PathBuf,
    append: bool,
    values: ValuesChoice,
    /// A rank of a multi-process run: `rank.json` is written when the directory is opened.
    rank: Option<RankInfo>,
    layout: Layout,
    state: Mutex<Option<DirState>>,
}

#[derive(Debug)]
struct DirState {
    /// `manifest.jsonl`, or `records.jsonl` in the packed layout.
    manifest: File,
    counters: Counters,
    /// One packed line, reused across records.
    line: Vec<u8>,
}

/// The fields of a manifest line or packed record line that resuming a run needs.
#[derive(Deserialize)]
struct Position {
    index: u64,
    name: String,
    occurrence: u64,
}

/// Distinguishes temporary files of concurrent writers in one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl DirSink {
    pub(crate) fn new(dir: PathBuf, append: bool, values: ValuesChoice, layout: Layout) -> Self {
        Self {
            dir,
            append,
            values,
            rank: None,
            layout,
            state: Mutex::new(None),
        }
    }

    /// Marks the directory as rank `info.rank` of a multi-process run (see [`crate::ranks`]).
    pub(crate) fn with_rank(mut self, info: RankInfo) -> Self {
        self.rank = Some(info);
        self
    }

    /// The log this layout appends to: `manifest.jsonl` or `records.jsonl`.
    fn log_name(&self) -> &'static str {
        match self.layout {
            Layout::Files => MANIFEST_FILE,
            Layout::Packed => PACKED_LOG,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one record (and its values, when the values choice selects the record's
    /// occurrence, which is only known here).
    pub(crate) fn write(&self, mut record: TraceRecord, values: Option<&[f32]>) -> Result<()> {
        // A panic elsewhere while holding the lock cannot leave files half-written (each file is
        // published atomically), so a poisoned lock is safe to reuse.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        let state = guard.as_mut().expect("opened above");
        if self.layout == Layout::Packed {
            return self.write_packed(state, record, values);
        }
        let (index, occurrence) = state.counters.peek(&record.name);
        record.index = Some(index);
        record.occurrence = Some(occurrence);
        let values = values.filter(|_| self.values.keeps(&record.name, occurrence));
        // Encoded once: only the file name changes between candidate stems.
        let npy = values
            .map(|v| npy_bytes(&record.shape, v))
            .transpose()
            .map_err(|e| {
                let path = self.dir.join(format!("{}.npy", sanitize(&record.name)));
                Error::io("encode values for", path, e)
            })?;
        let mut published = None;
        for stem in candidate_stems(&record.name, occurrence) {
            record.values = values.map(|_| format!("{stem}.npy"));
            if self.publish(&stem, &record, npy.as_deref())? {
                published = Some(stem);
                break;
            }
        }
        let Some(stem) = published else {
            return Err(Error::io(
                "find a free file name for",
                self.dir.join(sanitize(&record.name)),
                io::Error::new(io::ErrorKind::AlreadyExists, "64 candidate names are taken"),
            ));
        };
        let entry = ManifestEntry {
            index,
            name: record.name.clone(),
            occurrence,
            file: format!("{stem}.{RECORD_EXTENSION}"),
            values: record.values.clone(),
        };
        let mut line = serde_json::to_string(&entry).expect("manifest entries serialize");
        line.push('\n');
        let manifest_path = self.dir.join(MANIFEST_FILE);
        state
            .manifest
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("append to", manifest_path, e))?;
        state.counters.commit(&record.name);
        Ok(())
    }

    /// Appends `record` as one line of `records.jsonl`, after publishing its values file.
    fn write_packed(
        &self,
        state: &mut DirState,
        mut record: TraceRecord,
        values: Option<&[f32]>,
    ) -> Result<()> {
        let (index, occurrence) = state.counters.peek(&record.name);
        record.index = Some(index);
        record.occurrence = Some(occurrence);
        record.values = None;
        if let Some(v) = values.filter(|_| self.values.keeps(&record.name, occurrence)) {
            let npy = npy_bytes(&record.shape, v).map_err(|e| {
                let path = self.dir.join(format!("{}.npy", sanitize(&record.name)));
                Error::io("encode values for", path, e)
            })?;
            for stem in candidate_stems(&record.name, occurrence) {
                let file = format!("{stem}.npy");
                if self.place(&npy, &self.dir.join(&file))? {
                    record.values = Some(file);
                    break;
                }
            }
            if record.values.is_none() {
                return Err(Error::io(
                    "find a free file name for",
                    self.dir.join(sanitize(&record.name)),
                    io::Error::new(io::ErrorKind::AlreadyExists, "64 candidate names are taken"),
                ));
            }
        }
        state.line.clear();
        record.write_compact(&mut state.line);
        state.line.push(b'\n');
        // One `write` for the whole line: with O_APPEND it lands whole or, if the process dies
        // inside it, as a cut-short last line that readers report.
        state
            .manifest
            .write_all(&state.line)
            .map_err(|e| Error::io("append to", self.dir.join(PACKED_LOG), e))?;
        state.counters.commit(&record.name);
        Ok(())
    }

    /// Creates the directory and opens the log; refuses to mix runs unless appending, and
    /// always refuses to mix layouts.
    fn open(&self) -> Result<DirState> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("create directory", &self.dir, e))?;
        let manifest_path = self.dir.join(self.log_name());
        let mut counters = Counters::default();
        let other = match self.layout {
            Layout::Files => self.dir.join(PACKED_LOG),
            Layout::Packed => self.dir.join(MANIFEST_FILE),
        };
        if self.append && other.exists() {
            return Err(Error::Config {
                setting: "trace directory".into(),
                value: self.dir.display().to_string(),
                problem: format!(
                    "it holds a run of the other layout ({}); append with TENSOR_TRACE_LAYOUT={}",
                    other.file_name().unwrap_or_default().to_string_lossy(),
                    match self.layout {
                        Layout::Files => "packed",
                        Layout::Packed => "files",
                    }
                ),
            });
        }
        if self.append {
            counters = self.resume(&manifest_path)?;
        } else if let Some(existing) = self.existing_run()? {
            return Err(Error::Config {
                setting: "trace directory".into(),
                value: self.dir.display().to_string(),
                problem: format!(
                    "it already holds a trace run ({existing}); use an empty directory, remove \
                     the old run, or set TENSOR_TRACE_APPEND=1 to add to it"
                ),
            });
        }
        if let Some(info) = &self.rank {
            info.write(&self.dir)?;
        }
        let manifest = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&manifest_path)
            .map_err(|e| Error::io("open", &manifest_path, e))?;
        Ok(DirState {
            manifest,
            counters,
            line: Vec::with_capacity(512),
        })
    }

    /// The first file that shows the directory already holds records.
    fn existing_run(&self) -> Result<Option<String>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == MANIFEST_FILE || name == PACKED_LOG || name.ends_with(".trace") {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Continues the index and occurrence counts of the run already in the manifest.
    fn resume(&self, manifest_path: &Path) -> Result<Counters> {
        use std::io::BufRead;
        let mut counters = Counters::default();
        let file = match File::open(manifest_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(counters),
            Err(e) => return Err(Error::io("read", manifest_path, e)),
        };
        // Streamed: a packed log of millions of lines is never held in memory.
        let mut reader = io::BufReader::new(file);
        let mut line = String::new();
        let mut number = 0;
        let mut last_complete = true;
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| Error::io("read", manifest_path, e))?;
            if n == 0 {
                break;
            }
            number += 1;
            let complete = line.ends_with('\n');
            last_complete = complete;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Position>(line.trim()) {
                Ok(entry) => {
                    counters.next_index = counters.next_index.max(entry.index + 1);
                    let occ = counters.occurrences.entry(entry.name).or_default();
                    *occ = (*occ).max(entry.occurrence + 1);
                }
                // A crash can cut the last line short; anything else is real damage.
                Err(_) if !complete => {}
                Err(e) => {
                    return Err(Error::Record(crate::record::RecordError::Parse {
                        path: manifest_path.to_owned(),
                        message: format!("line {number}: {e}"),
                    }))
                }
            }
        }
        if !last_complete {
            // Start our lines on a fresh line after a truncated one.
            let mut f = OpenOptions::new()
                .append(true)
                .open(manifest_path)
                .map_err(|e| Error::io("open", manifest_path, e))?;
            f.write_all(b"\n")
                .map_err(|e| Error::io("append to", manifest_path, e))?;
        }
        Ok(counters)
    }

    /// Publishes `{stem}.trace` (and `{stem}.npy`); `Ok(false)` when a name is taken.
    fn publish(&self, stem: &str, record: &TraceRecord, npy: Option<&[u8]>) -> Result<bool> {
        let npy_path = self.dir.join(format!("{stem}.npy"));
        if let Some(bytes) = npy {
            if !self.place(bytes, &npy_path)? {
                return Ok(false);
            }
        }
        let trace_path = self.dir.join(format!("{stem}.{RECORD_EXTENSION}"));
        if !self.place(record.to_json().as_bytes(), &trace_path)? {
            if npy.is_some() {
                // Undo our own values file; nobody else can have linked to it yet.
                let _ = fs::remove_file(&npy_path);
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Writes `bytes` to a temporary file and moves it to `path` without replacing anything.
    fn place(&self, bytes: &[u8], path: &Path) -> Result<bool> {
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{seq}.part", std::process::id()));
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("write", &tmp, e));
        }
        let placed = match rename_no_replace(&tmp, path) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(_) => link_no_replace(&tmp, path),
        };
        let _ = fs::remove_file(&tmp);
        placed
    }
}

/// Atomic rename that fails with `AlreadyExists` instead of replacing (one syscall on Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn rename_no_replace(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no renameat2"))
}

/// The portable fallback: a hard link fails instead of replacing. File systems without hard
/// links get check-then-rename, where a race with another process is possible (documented).
fn link_no_replace(tmp: &Path, path: &Path) -> Result<bool> {
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) if !path.exists() => fs::rename(tmp, path)
            .map(|()| true)
            .map_err(|e| Error::io("rename into place", path, e)),
        Err(_) => Ok(false),
    }
}

/// A little-endian F32 `.npy` (C order) of `values` with `shape`.
fn npy_bytes(shape: &[usize], values: &[f32]) -> io::Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut out = Vec::with_capacity(values.len() * 4 + 128);
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut out)
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing_keeps_the_seed_names_and_blocks_escapes() {
        for (name, expected) in [
            ("blk0/attn_norm", "blk0_attn_norm"),
            ("a\\b", "a_b"),
            ("..", "_.."),
            ("../../etc/passwd", "_.._.._etc_passwd"),
            ("/abs/path", "_abs_path"),
            ("", "_"),
            ("nul\0here\n", "nul_here_"),
            (".hidden", "_.hidden"),
        ] {
            assert_eq!(sanitize(name), expected, "{name:?}");
        }
        let long = "x".repeat(400);
        let s = sanitize(&long);
        assert!(s.len() < 200 && s.contains('~'), "{s}");
        assert_ne!(sanitize(&long), sanitize(&"x".repeat(401)));
        let multibyte = "é".repeat(200);
        assert!(sanitize(&multibyte).len() < 200);
    }

    #[test]
    fn both_publishing_primitives_refuse_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, b"new").unwrap();
        fs::write(&b, b"old").unwrap();
        assert!(!link_no_replace(&a, &b).unwrap());
        assert_eq!(fs::read(&b).unwrap(), b"old");
        assert!(link_no_replace(&a, &c).unwrap());
        assert_eq!(fs::read(&c).unwrap(), b"new");
        if cfg!(target_os = "linux") {
            let err = rename_no_replace(&a, &b).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
            assert_eq!(fs::read(&b).unwrap(), b"old");
        }
    }

    #[test]
    fn candidates_start_with_the_seed_name() {
        let c: Vec<_> = candidate_stems("blk0/q", 0).take(2).collect();
        assert_eq!(c[0], "blk0_q");
        assert!(c[1].starts_with("blk0_q.") && c[1].len() == "blk0_q.".len() + 8);
        let c: Vec<_> = candidate_stems("blk0/q", 3).take(1).collect();
        assert_eq!(c[0], "blk0_q.3");
    }
}
