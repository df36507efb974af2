//! The streaming diff: two runs compared in A's execution order with memory flat in run length.
//!
//! Both runs are read a chunk at a time ([`RunStream`]: packed logs and clean manifests stream,
//! chunks parsed in parallel; other directories are read whole), each on its own thread a few
//! chunks ahead of the comparison, which runs on the caller's thread. A's records are taken in order;
//! each looks for its partner among the B records read so far and not yet matched, reading B on
//! until the partner turns up, B ends, or `window` unmatched B records are held. So pairs come
//! out exactly in A's order, as in the in-memory diff, and every figure of the report is
//! computed on the fly: counts, the first divergence with the last agreeing record before it,
//! the divergences and largest error after it, and the layer profile. Pairs go to a callback
//! (the JSON report streams them) and only the first `keep_pairs` non-agreeing pairs are kept in
//! the report, for the text summary, and the layer profile keeps `layers` groups on each side of
//! the first divergence.
//!
//! Differences from the in-memory diff, all reported: a record of A whose partner lies more
//! than `window` unmatched records further on in B is declared missing (counted in
//! `streamed.window_misses`, with a warning); a B record matched by two A records (a name
//! mapping that collapses names) is matched once, the second A record showing as missing. No
//! baseline (calibrated diffs read whole).
//!
//! The in-memory diff of two directories without a baseline reads its runs here too
//! ([`diff_dirs_pairs_only`]): no window, every pair kept, the report exactly the in-memory
//! one, so that it holds its pairs and not the runs.
//!
//! [`estimate_records`] sizes a run without reading it, for the command line's
//! `--stream=auto`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use trace_core::run::{RunOptions, RunRecord, RunStream};

use crate::baseline::Rec;
use crate::error::Result;
use crate::intern::Interner;
use crate::options::{DiffOptions, StreamOptions};
use crate::outcome::{run_warnings, Ending, LayerProfile, Tally};
use crate::pair::compare_pair;
use crate::report::{Ignored, Pair, Report, RunInfo, Streamed, Verdict, Warning};
use crate::values::Dir;

/// Chunks of one run read ahead by its reader thread. Two chunks in the channel and one being
/// read: memory stays a few chunks per side.
const READ_AHEAD: usize = 2;

/// One run read on its own thread ([`read_run`]), its chunks taken in order.
struct Chunks {
    rx: Receiver<trace_core::Result<Vec<RunRecord>>>,
    done: bool,
}

impl Chunks {
    /// The next chunk in capture order; `None` at the end.
    fn next(&mut self) -> Result<Option<Vec<RunRecord>>> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv() {
            Ok(chunk) => Ok(Some(chunk?)),
            // The reader thread has finished and sent everything.
            Err(_) => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

/// The reader thread of one run: opens it and sends its chunks until the end, the first
/// error (sent too) or the receiver going away. Returns the stream when it was read to its
/// end, for its order and problems.
fn read_run(
    dir: &Path,
    options: RunOptions,
    tx: SyncSender<trace_core::Result<Vec<RunRecord>>>,
) -> Option<RunStream> {
    let mut stream = match RunStream::open(dir, &options) {
        Ok(s) => s,
        Err(e) => {
            // The receiver may be gone already: then nobody needs the error.
            let _ = tx.send(Err(e));
            return None;
        }
    };
    loop {
        match stream.next_chunk() {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).is_err() {
                    return None;
                }
            }
            Ok(None) => return Some(stream),
            Err(e) => {
                let _ = tx.send(Err(e));
                return None;
            }
        }
    }
}

/// What became of a record of A looking for its partner in B.
// Returned once per record and matched at once: boxing the partner would cost an allocation
// per record for nothing.
#[allow(clippy::large_enum_variant)]
enum Found {
    Partner(RunRecord),
    Missing,
    /// Not among the `window` unmatched records of B held: declared missing.
    WindowMiss,
}

/// B's side: the chunks, and the records read but not matched yet.
///
/// The records of the last chunk read wait in `queue`, in B's order. A record of A looks in
/// `held` first (only when it is not empty), then takes records off the front of the queue,
/// moving each one that is not its partner into `held`. When both runs have the same order
/// (the usual case) the partner is always at the front: nothing is hashed or cloned.
struct BSide {
    chunks: Chunks,
    queue: VecDeque<(u64, RunRecord)>,
    /// Unmatched records taken off the queue: by name, then occurrence, with their position.
    held: HashMap<String, BTreeMap<u64, (u64, RunRecord)>>,
    held_len: usize,
    /// Position of the next B record in B's order (ignored records included).
    next: u64,
    ignored: u64,
    /// The first ignored records, as many as the report keeps pairs.
    listed: Ignored,
    list_limit: usize,
}

impl BSide {
    fn new(chunks: Chunks, list_limit: usize) -> Self {
        BSide {
            chunks,
            queue: VecDeque::new(),
            held: HashMap::new(),
            held_len: 0,
            next: 0,
            ignored: 0,
            listed: Ignored::default(),
            list_limit,
        }
    }

    /// Reads the next chunk of B into `queue`; `false` at the end.
    fn read(&mut self, options: &DiffOptions) -> Result<bool> {
        let Some(chunk) = self.chunks.next()? else {
            return Ok(false);
        };
        for rb in chunk {
            let position = self.next;
            self.next += 1;
            if let Some(rule) = options.rules.ignore_rule_b(&rb.record.name) {
                self.ignored += 1;
                self.listed.push("b", position, &rb, rule, self.list_limit);
                continue;
            }
            self.queue.push_back((position, rb));
        }
        Ok(true)
    }

    /// Takes the partner `(name, occurrence)` of a record of A (`name` mapped to B's names),
    /// reading B on as long as fewer than `window` unmatched records are held.
    fn take(
        &mut self,
        name: &str,
        occurrence: u64,
        window: usize,
        options: &DiffOptions,
    ) -> Result<Found> {
        if self.held_len > 0 {
            if let Some(by_occurrence) = self.held.get_mut(name) {
                if let Some((_, rb)) = by_occurrence.remove(&occurrence) {
                    if by_occurrence.is_empty() {
                        self.held.remove(name);
                    }
                    self.held_len -= 1;
                    return Ok(Found::Partner(rb));
                }
            }
        }
        loop {
            while let Some((position, rb)) = self.queue.pop_front() {
                if rb.occurrence == occurrence && rb.record.name == name {
                    return Ok(Found::Partner(rb));
                }
                self.hold(position, rb);
            }
            if self.chunks.done {
                return Ok(Found::Missing);
            }
            if self.held_len >= window {
                return Ok(Found::WindowMiss);
            }
            if !self.read(options)? {
                return Ok(Found::Missing);
            }
        }
    }

    fn hold(&mut self, position: u64, rb: RunRecord) {
        let by_occurrence = match self.held.get_mut(&rb.record.name) {
            Some(m) => m,
            None => self.held.entry(rb.record.name.clone()).or_default(),
        };
        // Keys are unique within a run (RunStream skips repeated occurrences).
        by_occurrence.insert(rb.occurrence, (position, rb));
        self.held_len += 1;
    }

    /// Every unmatched record read so far, in B's order; `held` and `queue` are left empty.
    fn drain_unmatched(&mut self) -> Vec<(u64, RunRecord)> {
        let mut rest: Vec<(u64, RunRecord)> = self
            .held
            .drain()
            .flat_map(|(_, m)| m.into_values())
            .chain(self.queue.drain(..))
            .collect();
        self.held_len = 0;
        rest.sort_by_key(|(p, _)| *p);
        rest
    }
}

/// Bytes read from the start of a log to estimate its line length.
const ESTIMATE_SAMPLE: usize = 64 * 1024;

/// How many records a trace directory holds, as [`estimate_records`] judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordEstimate {
    /// The number of records (lines of the log).
    pub records: u64,
    /// Whether the log was read whole (small logs), so `records` is its exact line count.
    pub exact: bool,
    /// The log the estimate comes from: `records.jsonl` or `manifest.jsonl`.
    pub log: &'static str,
}

/// Estimates the records of the trace directory `dir` cheaply, without parsing it: the lines of
/// its packed log (`records.jsonl`), else of its `manifest.jsonl`, counted in the first 64 KiB
/// and scaled by the file's size (one line per record in both). `None` when the directory has
/// neither log or it cannot be read (the diff itself then says why).
pub fn estimate_records(dir: &Path) -> Option<RecordEstimate> {
    use std::io::Read;

    let (log, path) = [
        (
            trace_core::record::PACKED_LOG,
            dir.join(trace_core::record::PACKED_LOG),
        ),
        (
            trace_core::record::MANIFEST_FILE,
            dir.join(trace_core::record::MANIFEST_FILE),
        ),
    ]
    .into_iter()
    .find(|(_, path)| path.is_file())?;
    let file = std::fs::File::open(&path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut sample = Vec::with_capacity(ESTIMATE_SAMPLE);
    file.take(ESTIMATE_SAMPLE as u64)
        .read_to_end(&mut sample)
        .ok()?;
    let newlines = sample.iter().filter(|&&b| b == b'\n').count() as u64;
    let exact = sample.len() as u64 >= size;
    let records = if exact {
        // A last line without a newline is a record too (or a torn one).
        newlines + u64::from(sample.last().is_some_and(|&b| b != b'\n'))
    } else {
        // At least one line per sample's worth of bytes, even if no line ended in it.
        let sample_len = sample.len().max(1) as u64;
        (u128::from(size) * u128::from(newlines.max(1)) / u128::from(sample_len)) as u64
    };
    Some(RecordEstimate {
        records,
        exact,
        log,
    })
}

/// Compares the trace directories `a` (under test) and `b` (reference) as the in-memory diff
/// does, with memory flat in run length (see the module docs). Every pair is handed to
/// `on_pair` in report order (A's records in A's order, then those only in B in B's order);
/// the returned report keeps only the first non-agreeing pairs.
pub(crate) fn diff_dirs_streaming(
    a: &Path,
    b: &Path,
    options: &DiffOptions,
    bounds: &StreamOptions,
    on_pair: &mut dyn FnMut(&Pair) -> Result<()>,
) -> Result<Report> {
    let keep = Keep::Streamed {
        bounds,
        kept: Kept {
            pairs: Vec::new(),
            limit: bounds.keep_pairs,
            first: None,
        },
        on_pair,
    };
    Ok(read_and_compare(a, b, options, keep)?.expect("a streamed comparison is never given up"))
}

/// The in-memory diff of the trace directories `a` and `b` without a baseline, read as the
/// streaming diff reads them (a few chunks of each run, no window), so that only the pairs are
/// held: the report is the in-memory one, every pair kept. `None` when the runs hold something
/// whose in-memory reading differs from the stream's: a problem met reading either run (a
/// [`trace_core::run::Run`] sorts a packed log a stream skips lines of, and reports problems
/// in its own order) or, with `[[map]]` rules, a record of A without a partner (two names
/// mapped to one, which the in-memory diff matches twice); also `Err`. The caller then reads
/// the runs whole.
pub(crate) fn diff_dirs_pairs_only(
    a: &Path,
    b: &Path,
    options: &DiffOptions,
) -> Result<Option<Report>> {
    read_and_compare(a, b, options, Keep::All(Vec::new()))
}

/// Reads `a` and `b` on their own threads and compares them, keeping pairs as `keep` says.
fn read_and_compare(
    a: &Path,
    b: &Path,
    options: &DiffOptions,
    keep: Keep<'_>,
) -> Result<Option<Report>> {
    let run_options = RunOptions {
        strict: options.strict,
    };
    thread::scope(|scope| {
        let (tx_a, rx_a) = sync_channel(READ_AHEAD);
        let (tx_b, rx_b) = sync_channel(READ_AHEAD);
        let reader_a = scope.spawn(move || read_run(a, run_options, tx_a));
        let reader_b = scope.spawn(move || read_run(b, run_options, tx_b));
        let chunks = |rx| Chunks { rx, done: false };
        // The receivers are dropped when `compare` returns, error or not, which stops readers
        // blocked on a full channel before the scope joins them.
        compare(
            (a, chunks(rx_a), reader_a),
            (b, chunks(rx_b), reader_b),
            options,
            keep,
        )
    })
}

/// The stream a reader thread returns once it has sent every chunk.
fn finished(reader: Reader<'_>) -> RunStream {
    match reader.join() {
        Ok(stream) => stream.expect("a run read to its end returns its stream"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A reader thread ([`read_run`]).
type Reader<'scope> = thread::ScopedJoinHandle<'scope, Option<RunStream>>;

/// The pairs a streaming report keeps: the first `limit` that do not agree, and the first
/// divergence whatever its place.
struct Kept {
    pairs: Vec<Pair>,
    limit: usize,
    first: Option<Pair>,
}

impl Kept {
    fn offer(&mut self, p: &Pair) {
        if self.pairs.len() < self.limit
            && !matches!(p.verdict, Verdict::Identical | Verdict::WithinTolerance)
        {
            self.pairs.push(p.clone());
        }
    }

    /// The kept pairs in report order (A's, then those only in B).
    fn finish(mut self) -> Vec<Pair> {
        if let Some(f) = self.first {
            if !self.pairs.iter().any(|p| p.position == f.position) {
                self.pairs.push(f);
            }
        }
        self.pairs
            .sort_by_key(|p| (p.only_in == Some("b"), p.position));
        self.pairs
    }
}

/// What the comparison does with its pairs.
// One per comparison: boxing the kept first divergence would save nothing.
#[allow(clippy::large_enum_variant)]
enum Keep<'f> {
    /// Every pair, for the in-memory report (no window: B is read on until a partner turns up).
    All(Vec<Pair>),
    /// Each pair handed to `on_pair`, the first non-agreeing ones kept (a streamed report).
    Streamed {
        bounds: &'f StreamOptions,
        kept: Kept,
        on_pair: &'f mut dyn FnMut(&Pair) -> Result<()>,
    },
}

impl Keep<'_> {
    /// Takes the next pair in report order; `first` when it is the first divergence.
    fn push(&mut self, pair: Pair, first: bool) -> Result<()> {
        match self {
            Keep::All(pairs) => pairs.push(pair),
            Keep::Streamed { kept, on_pair, .. } => {
                if first {
                    kept.first = Some(pair.clone());
                }
                kept.offer(&pair);
                on_pair(&pair)?;
            }
        }
        Ok(())
    }
}

/// The comparison proper, on the chunks of both runs as their reader threads send them;
/// `None` when a [`Keep::All`] comparison gives up (see [`diff_dirs_pairs_only`]).
fn compare(
    (a, mut sa, reader_a): (&Path, Chunks, Reader<'_>),
    (b, chunks_b, reader_b): (&Path, Chunks, Reader<'_>),
    options: &DiffOptions,
    mut keep: Keep<'_>,
) -> Result<Option<Report>> {
    let (values_a, values_b) = (Dir(a), Dir(b));
    // The in-memory report lists every ignored record, a stream as many as it keeps pairs.
    let (window, layers, list_limit) = match &keep {
        Keep::All(_) => (usize::MAX, LayerProfile::default(), usize::MAX),
        Keep::Streamed { bounds, .. } => (
            bounds.window.max(1),
            LayerProfile::bounded(bounds.layers),
            bounds.keep_pairs,
        ),
    };
    let mut side_b = BSide::new(chunks_b, list_limit);
    let mut ignored = Ignored::default();
    // Two names mapped to one: the in-memory diff matches the B record twice, a stream once.
    let may_collapse = matches!(keep, Keep::All(_)) && options.rules.maps_names();
    let mut warnings: Vec<Warning> = Vec::new();
    // Only pairs that are kept are worth sharing text between.
    let mut texts = match keep {
        Keep::All(_) => Interner::sharing(),
        Keep::Streamed { .. } => Interner::default(),
    };
    let mut tally = Tally::new(layers);
    let (mut a_records, mut ignored_a, mut position, mut window_misses) = (0u64, 0u64, 0u64, 0u64);
    while let Some(chunk) = sa.next()? {
        for ra in chunk {
            a_records += 1;
            if let Some(rule) = options.rules.ignore_rule_a(&ra.record.name) {
                ignored_a += 1;
                ignored.push("a", position, &ra, rule, list_limit);
                continue;
            }
            let mapped = options.rules.map_name(&ra.record.name);
            let pair = match side_b.take(&mapped, ra.occurrence, window, options)? {
                Found::Missing if may_collapse => return Ok(None),
                found @ (Found::Missing | Found::WindowMiss) => {
                    window_misses += u64::from(matches!(found, Found::WindowMiss));
                    let reason =
                        format!("no record {mapped:?} (occurrence {}) in B", ra.occurrence);
                    Pair::unmatched_in(&mut texts, position, "a", &ra, Some(reason))
                }
                Found::Partner(rb) => {
                    let ra = Rec {
                        source: &values_a,
                        r: &ra,
                    };
                    let rb = Rec {
                        source: &values_b,
                        r: &rb,
                    };
                    compare_pair(position, ra, rb, None, options, &mut texts, &mut warnings)?
                }
            };
            position += 1;
            let first = tally.push(&pair);
            keep.push(pair, first)?;
        }
    }

    // What is left of B has no partner: the unmatched records in B's order, then the rest.
    let mut rest = side_b.drain_unmatched();
    loop {
        for (j, rb) in rest.drain(..) {
            tally.only_in_b();
            let pair = Pair::unmatched_in(&mut texts, j, "b", &rb, None);
            keep.push(pair, false)?;
        }
        if !side_b.read(options)? {
            break;
        }
        rest.extend(side_b.queue.drain(..));
    }

    let tallied = Tallied {
        a_records,
        ignored_a,
        b_records: side_b.next,
        ignored_b: side_b.ignored,
        window,
        window_misses,
    };
    ignored.append(std::mem::take(&mut side_b.listed));
    let streams = [finished(reader_a), finished(reader_b)];
    Ok(report(
        keep, tally, warnings, ignored, streams, &tallied, options,
    ))
}

/// What the comparison counted besides the [`Tally`].
struct Tallied {
    a_records: u64,
    ignored_a: u64,
    b_records: u64,
    ignored_b: u64,
    window: usize,
    window_misses: u64,
}

/// The report of a finished comparison, from the runs' `streams` read to their ends (their
/// order and problems); `None` when a [`Keep::All`] comparison gives up on a problem.
fn report(
    keep: Keep<'_>,
    tally: Tally,
    mut warnings: Vec<Warning>,
    ignored: Ignored,
    mut streams: [RunStream; 2],
    t: &Tallied,
    options: &DiffOptions,
) -> Option<Report> {
    let mut read_warnings = Vec::new();
    for (side, stream) in ["a", "b"].into_iter().zip(&mut streams) {
        let problems = stream.take_problems();
        if !problems.is_empty() && matches!(keep, Keep::All(_)) {
            return None;
        }
        run_warnings(
            side,
            &problems,
            stream.order(),
            stream.dir(),
            &mut read_warnings,
        );
    }
    let info = |stream: &RunStream, records: u64, ignored: u64| RunInfo {
        dir: stream.dir().display().to_string(),
        order: stream.order().name(),
        execution_order_known: stream.order().is_execution_order(),
        records,
        ignored,
    };
    let (pairs, warnings, streamed) = match keep {
        // The in-memory report names the runs' warnings before those of the pairs.
        Keep::All(pairs) => {
            read_warnings.append(&mut warnings);
            (pairs, read_warnings, None)
        }
        Keep::Streamed { kept, .. } => {
            warnings.append(&mut read_warnings);
            let (window, window_misses) = (t.window, t.window_misses);
            if window_misses > 0 {
                warnings.push(Warning {
                    side: None,
                    message: format!(
                        "{window_misses} records of A found no partner among {window} unmatched records of B and were declared missing; their partners may lie further on in B (raise the window)"
                    ),
                });
            }
            let pairs = kept.finish();
            let streamed = Streamed {
                window: window as u64,
                window_misses,
                pairs_kept: pairs.len() as u64,
                layers_dropped: tally.layers_dropped(),
                reason: None,
            };
            (pairs, warnings, Some(streamed))
        }
    };
    let end = Ending {
        a: info(&streams[0], t.a_records, t.ignored_a),
        b: info(&streams[1], t.b_records, t.ignored_b),
        pairs,
        warnings,
        calibration: None,
        streamed,
        ignored,
    };
    Some(tally.finish(end, options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Rules;

    /// A packed run of the records `names` (one element each, value `bump` plus the position).
    fn packed_run(dir: &Path, names: &[&str], bump: f32) {
        let tracer = trace_core::Tracer::builder()
            .dir(dir)
            .layout(trace_core::Layout::Packed)
            .build()
            .unwrap();
        for (i, name) in names.iter().enumerate() {
            let values = [i as f32 + bump];
            let view = trace_core::TensorView::new(&[1], &values[..]).unwrap();
            tracer
                .record(name, &trace_core::Context::default(), view)
                .unwrap();
        }
        tracer.flush().unwrap();
    }

    #[test]
    fn the_in_memory_diff_holds_pairs_only_unless_a_stream_reads_the_runs_differently() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        packed_run(&a, &["x", "y", "z"], 0.0);
        packed_run(&b, &["x", "y", "w"], 0.5);
        let options = DiffOptions::default();
        let report = diff_dirs_pairs_only(&a, &b, &options).unwrap().unwrap();
        assert_eq!(report.pairs.len(), 4, "x, y, z only in A, w only in B");
        assert!(report.streamed.is_none());

        // Two names of A mapped to one of B: the in-memory diff matches it twice.
        let rules = "[[map]]\na = \"y\"\nb = \"x\"\n";
        let options = DiffOptions {
            rules: Rules::from_toml(rules, Path::new("rules.toml")).unwrap(),
            ..DiffOptions::default()
        };
        assert!(diff_dirs_pairs_only(&a, &b, &options).unwrap().is_none());

        // A line out of index order: a whole run sorts it, a stream skips it.
        let log = a.join(trace_core::record::PACKED_LOG);
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        let options = DiffOptions::default();
        assert!(diff_dirs_pairs_only(&a, &b, &options).unwrap().is_none());
    }

    #[test]
    fn small_logs_are_counted_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(estimate_records(d), None, "no log");
        std::fs::write(d.join("x.trace"), "{}").unwrap();
        assert_eq!(estimate_records(d), None, "a seed directory has no log");
        std::fs::write(d.join("manifest.jsonl"), "{}\n{}\n").unwrap();
        let manifest = estimate_records(d).unwrap();
        assert_eq!((manifest.records, manifest.exact), (2, true));
        assert_eq!(manifest.log, "manifest.jsonl");
        // The packed log wins; a torn last line (no newline) counts.
        std::fs::write(d.join("records.jsonl"), "{}\n{}\n{\"na").unwrap();
        let packed = estimate_records(d).unwrap();
        assert_eq!((packed.records, packed.exact), (3, true));
        assert_eq!(packed.log, "records.jsonl");
    }

    #[test]
    fn large_logs_are_estimated_from_their_size() {
        let dir = tempfile::tempdir().unwrap();
        // 50,000 lines of 90 to 129 bytes, cycling: about 5.5 MB.
        let log: String = (0..50_000)
            .map(|i| format!("{{\"name\":\"{}\"}}\n", "x".repeat(80 + i % 40)))
            .collect();
        std::fs::write(dir.path().join("records.jsonl"), &log).unwrap();
        let e = estimate_records(dir.path()).unwrap();
        assert!(!e.exact);
        assert!(
            (49_000..=51_000).contains(&e.records),
            "estimated {} of 50,000",
            e.records
        );
    }
}
