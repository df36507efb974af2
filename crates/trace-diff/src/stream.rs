//! The streaming diff: two runs compared in A's execution order with memory flat in run length.
//!
//! Both runs are read a chunk at a time ([`RunStream`]: packed logs and clean manifests stream,
//! chunks parsed in parallel; other directories are read whole). A's records are taken in order;
//! each looks for its partner among the B records read so far and not yet matched, reading B on
//! until the partner turns up, B ends, or `window` unmatched B records are held. So pairs come
//! out exactly in A's order, as in [`crate::diff_dirs`], and every figure of the report is
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

use std::collections::HashMap;
use std::path::Path;

use trace_core::run::{RunOptions, RunRecord, RunStream};

use crate::diff::{compare_pair, run_warnings, unmatched, DiffOptions, LayerProfile};
use crate::error::Result;
use crate::report::{
    Counts, FirstDivergence, Outcome, Pair, Report, RunInfo, Streamed, Verdict, Warning, SCHEMA,
    SCHEMA_VERSION,
};

/// Bounds of a streaming diff.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Most unmatched B records held while A looks for a partner.
    pub window: usize,
    /// Non-agreeing pairs kept in [`Report::pairs`] (the first ones in A's order, then B's).
    pub keep_pairs: usize,
    /// Layer groups kept in [`Report::layers`] on each side of the first divergence (the last
    /// ones before it, the first ones from it on).
    pub layers: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            window: 1 << 16,
            keep_pairs: 1000,
            layers: 2048,
        }
    }
}

/// B's side: the stream and the records read but not matched yet, by key.
struct BSide {
    stream: RunStream,
    pending: HashMap<(String, u64), (u64, RunRecord)>,
    /// Position of the next B record in B's order (ignored records included).
    next: u64,
    ignored: u64,
    done: bool,
}

impl BSide {
    /// Reads the next chunk of B into `pending`; `false` at the end.
    fn read(&mut self, options: &DiffOptions) -> Result<bool> {
        let Some(chunk) = self.stream.next_chunk()? else {
            self.done = true;
            return Ok(false);
        };
        for rb in chunk {
            let position = self.next;
            self.next += 1;
            if options.rules.ignores_b(&rb.record.name) {
                self.ignored += 1;
                continue;
            }
            let key = (rb.record.name.clone(), rb.occurrence);
            self.pending.insert(key, (position, rb));
        }
        Ok(true)
    }
}

/// What is known of the first divergence so far.
struct First {
    pair: Pair,
    last_agreeing: Option<String>,
    diverged_after: u64,
    max_error_after: Option<f64>,
}

/// Compares the trace directories `a` (under test) and `b` (reference) as
/// [`crate::diff_dirs`] does, with memory flat in run length (see the module docs). Every pair
/// is handed to `on_pair` in report order (A's records in A's order, then those only in B in
/// B's order); the returned report keeps only the first non-agreeing pairs.
pub fn diff_dirs_streaming(
    a: &Path,
    b: &Path,
    options: &DiffOptions,
    bounds: &StreamOptions,
    on_pair: &mut dyn FnMut(&Pair) -> Result<()>,
) -> Result<Report> {
    let run_options = RunOptions {
        strict: options.strict,
    };
    let mut sa = RunStream::open(a, &run_options)?;
    let mut side_b = BSide {
        stream: RunStream::open(b, &run_options)?,
        pending: HashMap::new(),
        next: 0,
        ignored: 0,
        done: false,
    };
    let window = bounds.window.max(1);
    let mut warnings: Vec<Warning> = Vec::new();
    let mut kept: Vec<Pair> = Vec::new();
    let keep = |p: &Pair, kept: &mut Vec<Pair>| {
        if kept.len() < bounds.keep_pairs
            && !matches!(p.verdict, Verdict::Identical | Verdict::WithinTolerance)
        {
            kept.push(p.clone());
        }
    };
    let mut counts = Counts::default();
    let mut layers = LayerProfile::bounded(bounds.layers);
    let mut first: Option<First> = None;
    let mut last_agreeing: Option<String> = None;
    let (mut a_records, mut ignored_a, mut position, mut window_misses) = (0u64, 0u64, 0u64, 0u64);

    while let Some(chunk) = sa.next_chunk()? {
        for ra in chunk {
            a_records += 1;
            if options.rules.ignores_a(&ra.record.name) {
                ignored_a += 1;
                continue;
            }
            let mapped = options.rules.map_name(&ra.record.name).into_owned();
            let key = (mapped, ra.occurrence);
            let partner = loop {
                if let Some((_, rb)) = side_b.pending.remove(&key) {
                    break Some(rb);
                }
                if side_b.done {
                    break None;
                }
                if side_b.pending.len() >= window {
                    window_misses += 1;
                    break None;
                }
                side_b.read(options)?;
            };
            let pair = match partner {
                None => {
                    counts.missing_in_b += 1;
                    let reason = format!("no record {:?} (occurrence {}) in B", key.0, key.1);
                    unmatched(position, "a", &ra, Some(reason))
                }
                Some(rb) => {
                    let pair =
                        compare_pair(position, (a, &ra), (b, &rb), None, options, &mut warnings)?;
                    counts.compared += 1;
                    match pair.verdict {
                        Verdict::Identical => counts.identical += 1,
                        Verdict::WithinTolerance => counts.within_tolerance += 1,
                        Verdict::Diverged => counts.diverged += 1,
                        Verdict::Incompatible => counts.incompatible += 1,
                        Verdict::Missing => {}
                    }
                    pair
                }
            };
            position += 1;
            layers.push(&pair);
            match &mut first {
                None if pair.verdict.is_divergence() => {
                    layers.diverged();
                    first = Some(First {
                        pair: pair.clone(),
                        last_agreeing: last_agreeing.take(),
                        diverged_after: 0,
                        max_error_after: pair.error,
                    });
                }
                None => {
                    if matches!(pair.verdict, Verdict::Identical | Verdict::WithinTolerance) {
                        last_agreeing = Some(pair.display_name().to_owned());
                    }
                }
                Some(f) => {
                    if pair.verdict.is_divergence() {
                        f.diverged_after += 1;
                    }
                    if let Some(e) = pair.error {
                        f.max_error_after = Some(f.max_error_after.map_or(e, |m| m.max(e)));
                    }
                }
            }
            keep(&pair, &mut kept);
            on_pair(&pair)?;
        }
    }
    if let Some(f) = &first {
        if !kept.iter().any(|p| p.position == f.pair.position) {
            kept.push(f.pair.clone());
        }
    }

    // What is left of B has no partner: the pending records in B's order, then the rest.
    let mut rest: Vec<(u64, RunRecord)> = side_b.pending.drain().map(|(_, v)| v).collect();
    loop {
        rest.sort_by_key(|(p, _)| *p);
        for (j, rb) in rest.drain(..) {
            counts.missing_in_a += 1;
            let pair = unmatched(j, "b", &rb, None);
            keep(&pair, &mut kept);
            on_pair(&pair)?;
        }
        if side_b.done || !side_b.read(options)? {
            break;
        }
        rest = side_b.pending.drain().map(|(_, v)| v).collect();
    }

    for (side, stream) in [("a", &mut sa), ("b", &mut side_b.stream)] {
        let problems = stream.take_problems();
        run_warnings(side, &problems, stream.order(), stream.dir(), &mut warnings);
    }
    if window_misses > 0 {
        warnings.push(Warning {
            side: None,
            message: format!(
                "{window_misses} records of A found no partner among {window} unmatched records of B and were declared missing; their partners may lie further on in B (raise the window)"
            ),
        });
    }

    let first_divergence = first.map(|f| FirstDivergence {
        pair: f.pair.position,
        name: f.pair.display_name().to_owned(),
        last_agreeing: f.last_agreeing,
        diverged_after: f.diverged_after,
        max_error_after: f.max_error_after,
        execution_order_known: sa.order().is_execution_order(),
    });
    let missing = counts.missing_in_a + counts.missing_in_b;
    let outcome = if counts.diverged + counts.incompatible > 0 {
        Outcome::Diverged
    } else if missing > 0 && !options.allow_missing {
        Outcome::Incomplete
    } else {
        Outcome::Agree
    };
    let info = |stream: &RunStream, records: u64, ignored: u64| RunInfo {
        dir: stream.dir().display().to_string(),
        order: stream.order().name(),
        execution_order_known: stream.order().is_execution_order(),
        records,
        ignored,
    };
    let b_info = info(&side_b.stream, side_b.next, side_b.ignored);
    let layers_dropped = layers.dropped();
    kept.sort_by_key(|p| (p.only_in == Some("b"), p.position));
    let pairs_kept = kept.len() as u64;
    Ok(Report {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        outcome,
        a: info(&sa, a_records, ignored_a),
        b: b_info,
        rules: options.rules.source().map(|p| p.display().to_string()),
        counts,
        first_divergence,
        pairs: kept,
        layers: layers.finish(),
        warnings,
        calibration: None,
        ranks: None,
        streamed: Some(Streamed {
            window: window as u64,
            window_misses,
            pairs_kept,
            layers_dropped,
        }),
    })
}
