//! The packed log (`records.jsonl`), read in chunks of lines parsed in parallel.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::record::{RecordError, TraceRecord};
use crate::{Error, Result};

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
///
/// [`RunStream::next_chunk`]: super::RunStream::next_chunk
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
pub(super) fn is_blank(line: &[u8]) -> bool {
    match line.trim_ascii().first() {
        None => true,
        // The usual case, a line starting with `{`: no need to decode it.
        Some(b) if b.is_ascii() => false,
        Some(_) => String::from_utf8_lossy(line).trim().is_empty(),
    }
}
