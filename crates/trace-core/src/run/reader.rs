//! Reading a whole trace directory: manifest, packed log, or plain `.trace` files.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::files::{invalid, is_plain_file_name, load_listed, read_record};
use super::natural::natural_cmp;
use super::packed::PackedLines;
use super::record::{RunOrder, RunRecord};
use crate::record::{ManifestEntry, RecordError, MANIFEST_FILE, PACKED_LOG};
use crate::{Error, Result};

/// Reading state: where problems go.
pub(super) struct Reader<'a> {
    pub(super) dir: &'a Path,
    pub(super) strict: bool,
    pub(super) problems: Vec<RecordError>,
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

    pub(super) fn read_manifest_run(
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
    pub(super) fn read_packed(&mut self, log: &Path) -> Result<Vec<RunRecord>> {
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

    pub(super) fn read_plain_files(
        &mut self,
        files: Vec<String>,
    ) -> Result<(RunOrder, Vec<RunRecord>)> {
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
