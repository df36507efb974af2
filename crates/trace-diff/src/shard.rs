//! Multi-rank runs: comparing a tensor-parallel run with a reference (see `docs/FORMAT-diff.md`,
//! "Multi-rank runs").
//!
//! A directory holding `rank-{r}` subdirectories (trace-core's [`trace_core::ranks`]) is a
//! multi-rank run. [`diff_paths`] detects it on either side:
//!
//! - **Both sides multi-rank, equal world sizes**: rank `r` is compared with rank `r`, each with
//!   the ordinary diff. The report returned is the one of the rank whose first divergence comes
//!   earliest (rank 0's when all agree); [`RanksReport::per_rank`] has every rank's outcome and
//!   [`RanksReport::first_divergence_ranks`] the ranks diverging first at that same record.
//! - **One side multi-rank, the other a single-process run**: the ranks are first turned into
//!   one logical run, record by record in rank 0's order, by the `[[shard]]` rules
//!   ([`ShardSplit`]), and that run is diffed with the other side as usual. Then, for the first
//!   divergence, each rank's own record is compared with its part of the reference to name the
//!   rank(s) whose shard disagrees.
//!
//! # Reassembly
//!
//! | split | with values on every rank | statistics only |
//! |---|---|---|
//! | `axis = k` | concatenated along `k`; hash, rms, stats computed as at capture | count, mean, std (via M2), rms, min, max, NaN/Inf counts merged exactly; **hash unknown** |
//! | `reduce = "sum"` | element-wise sum (f64, rank order, rounded to F32 once) | nothing but the mean is determined: the record is left out, with a warning |
//! | `replicated` | the rank agreeing least with the reference is kept (rank 0 when all ranks are bit-identical) | same |
//!
//! A record whose hash cannot be known gets a placeholder hash ([`UNKNOWN_HASH`]) that blake3
//! does not produce, so it is judged on its merged statistics, and the pair's reason says so.
//! Merged statistics equal those of the whole tensor up to float reassociation: the property
//! test in this module bounds the difference by `1e-9` relative (f64 sums of F32 values, up to
//! 4 shards of up to 2 000 elements).

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;
use trace_core::ranks::RankedRun;
use trace_core::record::{ManifestEntry, MANIFEST_FILE};
use trace_core::run::{Run, RunOptions, RunRecord};
use trace_core::{fingerprint, Data, Stats, TraceRecord};

use crate::error::{Error, Result};
use crate::report::{Outcome, Report, Warning};
use crate::rules::{ShardSplit, Tolerance};
use crate::{diff_dirs, diff_runs, values, DiffOptions};

/// The `blake3` written into a reassembled record whose hash cannot be known (statistics-only
/// shards): 64 zeros, which blake3 is not expected to produce for any input, so the pair is
/// never taken as identical and is judged on its statistics.
pub const UNKNOWN_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How the ranks of a multi-rank comparison were handled, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RanksReport {
    /// `rank-by-rank` (equal world sizes) or `reassembled` (one side was reassembled).
    pub mode: &'static str,
    /// World size of side A (`null`: a single-process run).
    pub world_size_a: Option<u32>,
    /// World size of side B.
    pub world_size_b: Option<u32>,
    /// Rank-by-rank: each rank's outcome and first divergence.
    pub per_rank: Vec<RankOutcome>,
    /// The rank(s) whose record disagrees at the first divergence (empty when none diverges or
    /// when it cannot be told; see `attribution`).
    pub first_divergence_ranks: Vec<u32>,
    /// How the ranks at the first divergence were found, or why they could not be.
    pub attribution: Option<String>,
    /// Reassembled: records concatenated from values.
    pub reassembled_values: u64,
    /// Reassembled: records merged from statistics only (hash unknown, judged on stats).
    pub merged_stats: u64,
    /// Reassembled: partial sums added from values.
    pub summed: u64,
    /// Reassembled: replicated records.
    pub replicated: u64,
    /// Reassembled: records left out because they cannot be merged (named in the warnings).
    pub not_mergeable: u64,
}

/// One rank of a rank-by-rank comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankOutcome {
    /// The rank.
    pub rank: u32,
    /// Its outcome.
    pub outcome: Outcome,
    /// Its first diverging record (side A's name) and that record's position.
    pub first_divergence: Option<(String, u64)>,
}

/// Diffs `a` (under test) with `b` (reference), either of which may be a multi-rank run (see
/// the module documentation); two single-process runs are diffed exactly as [`diff_dirs`].
pub fn diff_paths(a: &Path, b: &Path, options: &DiffOptions) -> Result<Report> {
    let (ra, rb) = (RankedRun::discover(a)?, RankedRun::discover(b)?);
    match (ra, rb) {
        (None, None) => diff_dirs(a, b, options),
        (Some(ra), Some(rb)) => rank_by_rank(&ra, &rb, options),
        (Some(ra), None) => reassembled(&ra, b, Side::A, options),
        (None, Some(rb)) => reassembled(&rb, a, Side::B, options),
    }
}

fn rank_by_rank(a: &RankedRun, b: &RankedRun, options: &DiffOptions) -> Result<Report> {
    if a.world_size != b.world_size {
        return Err(Error::Ranks {
            path: b.dir.clone(),
            problem: format!(
                "a world of {} ranks, but {} has {}: runs of different world sizes compare \
                 only through a single-process reference (reassemble one side with [[shard]] \
                 rules)",
                b.world_size,
                a.dir.display(),
                a.world_size
            ),
        });
    }
    let mut reports = Vec::with_capacity(a.ranks.len());
    for (da, db) in a.ranks.iter().zip(&b.ranks) {
        reports.push(diff_dirs(da, db, options)?);
    }
    let per_rank: Vec<RankOutcome> = reports
        .iter()
        .enumerate()
        .map(|(r, rep)| RankOutcome {
            rank: r as u32,
            outcome: rep.outcome,
            first_divergence: rep
                .first_divergence
                .as_ref()
                .map(|f| (f.name.clone(), f.pair)),
        })
        .collect();
    let earliest = per_rank
        .iter()
        .filter_map(|p| p.first_divergence.as_ref().map(|(_, pos)| *pos))
        .min();
    let first_divergence_ranks: Vec<u32> = per_rank
        .iter()
        .filter(|p| earliest.is_some() && p.first_divergence.as_ref().map(|f| f.1) == earliest)
        .map(|p| p.rank)
        .collect();
    let worst = reports
        .iter()
        .enumerate()
        .max_by_key(|(r, rep)| {
            let severity = match rep.outcome {
                Outcome::Diverged => 2,
                Outcome::Incomplete => 1,
                Outcome::Agree => 0,
            };
            let first = first_divergence_ranks.first() == Some(&(*r as u32));
            (severity, first, std::cmp::Reverse(*r))
        })
        .map(|(r, _)| r)
        .expect("a world has at least one rank");
    let mut report = reports.swap_remove(worst);
    report.ranks = Some(RanksReport {
        mode: "rank-by-rank",
        world_size_a: Some(a.world_size),
        world_size_b: Some(b.world_size),
        attribution: earliest.map(|_| {
            "each rank compared with the same rank of B; the ranks whose first divergence comes \
             earliest"
                .to_owned()
        }),
        per_rank,
        first_divergence_ranks,
        ..RanksReport::empty("rank-by-rank")
    });
    Ok(report)
}

impl RanksReport {
    fn empty(mode: &'static str) -> Self {
        RanksReport {
            mode,
            world_size_a: None,
            world_size_b: None,
            per_rank: Vec::new(),
            first_divergence_ranks: Vec::new(),
            attribution: None,
            reassembled_values: 0,
            merged_stats: 0,
            summed: 0,
            replicated: 0,
            not_mergeable: 0,
        }
    }
}

/// Which side of the diff the multi-rank run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Where each logical record came from, for the attribution.
#[derive(Debug)]
struct Origin {
    split: ShardSplit,
    /// Each rank's record (rank order).
    parts: Vec<RunRecord>,
    /// Whether the hash is [`UNKNOWN_HASH`].
    hash_unknown: bool,
}

fn reassembled(
    ranked: &RankedRun,
    single: &Path,
    side: Side,
    options: &DiffOptions,
) -> Result<Report> {
    let run_options = RunOptions {
        strict: options.strict,
    };
    let runs: Vec<Run> = ranked
        .ranks
        .iter()
        .map(|d| Run::open_with(d, &run_options))
        .collect::<std::result::Result<_, _>>()?;
    let other = Run::open_with(single, &run_options)?;
    let tmp = tempfile::Builder::new()
        .prefix("tensor-trace-reassembled-")
        .tempdir()
        .map_err(|e| Error::Ranks {
            path: std::env::temp_dir(),
            problem: format!("cannot create a directory for the reassembled run: {e}"),
        })?;
    let logical_dir = tmp.path().join(ranked.dir.file_name().map_or_else(
        || "reassembled".into(),
        |n| n.to_string_lossy().into_owned(),
    ));
    let mut summary = RanksReport::empty("reassembled");
    let mut warnings = Vec::new();
    let origins = assemble(
        &runs,
        &other,
        side,
        options,
        &logical_dir,
        &mut summary,
        &mut warnings,
    )?;
    let logical = Run::open_with(&logical_dir, &run_options)?;
    let mut report = match side {
        Side::A => diff_runs(&logical, &other, options)?,
        Side::B => diff_runs(&other, &logical, options)?,
    };
    // Show the directories as given, not the temporary one.
    let shown = ranked.dir.display().to_string();
    match side {
        Side::A => report.a.dir = shown,
        Side::B => report.b.dir = shown,
    }
    let ws = Some(ranked.world_size);
    (summary.world_size_a, summary.world_size_b) = match side {
        Side::A => (ws, None),
        Side::B => (None, ws),
    };
    for pair in &mut report.pairs {
        let name = match side {
            Side::A => pair.name_a.as_deref(),
            Side::B => pair.name_b.as_deref(),
        };
        let Some(origin) = name.and_then(|n| origins.get(&(n.to_owned(), pair.occurrence))) else {
            continue;
        };
        if origin.hash_unknown && pair.only_in.is_none() {
            let note = "merged from the ranks' statistics: the hash of a sharded record cannot be \
                        merged, judged on the merged statistics";
            pair.reason = Some(match pair.reason.take() {
                Some(r) => format!("{r}; {note}"),
                None => note.to_owned(),
            });
        }
    }
    if let Some(first) = report.first_divergence_pair() {
        let name = match side {
            Side::A => first.name_a.clone(),
            Side::B => first.name_b.clone(),
        };
        let key = (name.unwrap_or_default(), first.occurrence);
        let tolerance = first
            .tolerance
            .as_ref()
            .map_or(Tolerance::new(1e-5, 1e-4), |t| {
                Tolerance::new(t.atol, t.rtol)
            });
        let partner = match side {
            Side::A => first.name_b.clone(),
            Side::B => first.name_a.clone(),
        };
        let partner = partner.and_then(|n| {
            other
                .records()
                .iter()
                .find(|r| r.record.name == n && r.occurrence == first.occurrence)
        });
        match (origins.get(&key), partner) {
            (Some(origin), Some(partner)) => {
                let (ranks, how) = attribute(origin, &runs, partner, &other, &tolerance);
                summary.first_divergence_ranks = ranks;
                summary.attribution = Some(how);
            }
            _ => {
                summary.attribution =
                    Some("the first divergence has no record on every rank or no partner".into())
            }
        }
    }
    report.warnings.extend(warnings);
    report.ranks = Some(summary);
    Ok(report)
}

/// Writes the logical run into `dir` (manifest, records, `.npy` values) and returns where each
/// logical record came from, keyed by (name, occurrence).
#[allow(clippy::too_many_arguments)]
fn assemble(
    runs: &[Run],
    other: &Run,
    side: Side,
    options: &DiffOptions,
    dir: &Path,
    summary: &mut RanksReport,
    warnings: &mut Vec<Warning>,
) -> Result<HashMap<(String, u64), Origin>> {
    let io = |path: &Path, e: std::io::Error| Error::Ranks {
        path: path.to_owned(),
        problem: format!("cannot write the reassembled run: {e}"),
    };
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut manifest = fs::File::create(&manifest_path).map_err(|e| io(&manifest_path, e))?;
    let side_name = match side {
        Side::A => "a",
        Side::B => "b",
    };
    let mut warn = |message: String| {
        warnings.push(Warning {
            side: Some(side_name),
            message,
        })
    };
    let indexes: Vec<HashMap<(&str, u64), &RunRecord>> = runs
        .iter()
        .map(|run| run.records().iter().map(|r| (r.key(), r)).collect())
        .collect();
    let other_index: HashMap<(&str, u64), &RunRecord> =
        other.records().iter().map(|r| (r.key(), r)).collect();
    let mut origins = HashMap::new();
    let mut index = 0u64;
    for r0 in runs[0].records() {
        let key = r0.key();
        let mut parts = Vec::with_capacity(runs.len());
        for (rank, idx) in indexes.iter().enumerate() {
            match idx.get(&key) {
                Some(r) => parts.push(*r),
                None => {
                    warn(format!(
                        "rank {rank} has no record {:?} (occurrence {}): left out of the \
                         reassembled run",
                        key.0, key.1
                    ));
                    break;
                }
            }
        }
        if parts.len() != runs.len() {
            summary.not_mergeable += 1;
            continue;
        }
        let name = &r0.record.name;
        let (split, _) = options.rules.shard_split(name);
        // The reference's record of this name, for choosing among replicas.
        let partner_name = match side {
            Side::A => options.rules.map_name(name).into_owned(),
            Side::B => name.clone(),
        };
        let partner = other_index
            .get(&(partner_name.as_str(), r0.occurrence))
            .copied();
        let all_values = parts.iter().all(|p| p.values.is_some());
        let load = |rank: usize| -> Result<Option<Vec<f64>>> {
            let Some(path) = runs[rank].values_path(parts[rank]) else {
                return Ok(None);
            };
            match values::load(&path, &parts[rank].record.shape) {
                Ok(v) => Ok(Some(v)),
                Err(problem) if options.strict => Err(Error::Values { path, problem }),
                Err(_) => Ok(None),
            }
        };
        // Every rank's values, or None when one is missing or raw values are not to be used.
        let load_all = |usable: bool| -> Result<Option<Vec<Vec<f64>>>> {
            if all_values && usable && options.use_values {
                (0..parts.len()).map(load).collect()
            } else {
                Ok(None)
            }
        };
        let mut record = r0.record.clone();
        let mut new_values: Option<Vec<f32>> = None;
        let mut hash_unknown = false;
        match split {
            ShardSplit::Replicated => {
                summary.replicated += 1;
                let differs = |p: &RunRecord| {
                    partner.is_some_and(|b| !b.record.blake3.eq_ignore_ascii_case(&p.record.blake3))
                };
                let chosen = parts.iter().position(|p| differs(p)).unwrap_or(0);
                record = parts[chosen].record.clone();
                if parts[chosen].values.is_some() {
                    new_values = load(chosen)?.map(|v| v.into_iter().map(|x| x as f32).collect());
                }
            }
            ShardSplit::Concat { axis } => {
                let shapes: Vec<&[usize]> =
                    parts.iter().map(|p| p.record.shape.as_slice()).collect();
                let Some((ax, shape)) = concat_shape(&shapes, axis) else {
                    warn(format!(
                        "{name:?}: shapes {shapes:?} cannot be concatenated along axis {axis}: \
                         left out of the reassembled run"
                    ));
                    summary.not_mergeable += 1;
                    continue;
                };
                record.shape = shape;
                record.num_elements = parts.iter().map(|p| p.record.num_elements).sum();
                let loaded = load_all(true)?;
                match loaded {
                    Some(shards) => {
                        summary.reassembled_values += 1;
                        new_values = Some(concat(&shards, &shapes, ax));
                    }
                    None => {
                        summary.merged_stats += 1;
                        hash_unknown = true;
                        let (rms, stats) = merge_concat_stats(parts.iter().map(|p| &p.record));
                        record.rms = rms;
                        record.stats = stats;
                    }
                }
            }
            ShardSplit::Sum => {
                let same_shape = parts.iter().all(|p| p.record.shape == r0.record.shape);
                let loaded = load_all(same_shape)?;
                match loaded {
                    Some(shards) => {
                        summary.summed += 1;
                        let mut sum = vec![0f64; shards[0].len()];
                        for s in &shards {
                            for (acc, x) in sum.iter_mut().zip(s) {
                                *acc += x;
                            }
                        }
                        new_values = Some(sum.into_iter().map(|x| x as f32).collect());
                    }
                    None => {
                        summary.not_mergeable += 1;
                        let mean: Option<f64> = parts
                            .iter()
                            .map(|p| p.record.stats.as_ref().and_then(|s| s.mean))
                            .sum();
                        warn(format!(
                            "{name:?} (occurrence {}): partial sums without values on every rank \
                             (or of different shapes) cannot be merged: the rms, std, min and \
                             max of a sum are not determined by the shards' statistics (the sum \
                             of the shard means, {}, is the mean of the sum); record values \
                             (TENSOR_TRACE_VALUES) to compare it. Left out of the reassembled run",
                            r0.occurrence,
                            mean.map_or("unknown".to_owned(), |m| format!("{m:e}"))
                        ));
                        continue;
                    }
                }
            }
        }
        let stem = format!("r{index:06}");
        record.index = Some(index);
        record.occurrence = Some(r0.occurrence);
        record.rank = None;
        record.values = None;
        if split != ShardSplit::Replicated {
            // A shard's sketch is not a part of the whole's: its block indices start at 0.
            record.sketch = None;
        }
        if let Some(v) = &new_values {
            if split != ShardSplit::Replicated {
                let fp = fingerprint(Data::F32(v));
                record.blake3 = fp.blake3.to_hex().to_string();
                record.rms = fp.rms;
                record.stats = Some(fp.stats);
            }
            let file = format!("{stem}.npy");
            write_npy(&dir.join(&file), &record.shape, v).map_err(|e| io(&dir.join(&file), e))?;
            record.values = Some(file);
        }
        if hash_unknown {
            record.blake3 = UNKNOWN_HASH.to_owned();
        }
        let file = format!("{stem}.trace");
        let text = serde_json::to_string_pretty(&record).expect("records serialize");
        fs::write(dir.join(&file), text).map_err(|e| io(&dir.join(&file), e))?;
        let entry = ManifestEntry {
            index,
            name: record.name.clone(),
            occurrence: r0.occurrence,
            file,
            values: record.values.clone(),
        };
        let line = serde_json::to_string(&entry).expect("entries serialize") + "\n";
        manifest
            .write_all(line.as_bytes())
            .map_err(|e| io(&manifest_path, e))?;
        origins.insert(
            (record.name.clone(), r0.occurrence),
            Origin {
                split,
                parts: parts.into_iter().cloned().collect(),
                hash_unknown,
            },
        );
        index += 1;
    }
    Ok(origins)
}

/// The normalized axis and the concatenated shape, when the shapes agree off the axis.
fn concat_shape(shapes: &[&[usize]], axis: i64) -> Option<(usize, Vec<usize>)> {
    let rank = shapes.first()?.len() as i64;
    let ax = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&ax) {
        return None;
    }
    let ax = ax as usize;
    let mut shape = shapes[0].to_vec();
    for s in &shapes[1..] {
        if s.len() != shape.len() || s.iter().enumerate().any(|(i, &d)| i != ax && d != shape[i]) {
            return None;
        }
        shape[ax] += s[ax];
    }
    Some((ax, shape))
}

/// Concatenates C-order shards along `ax`.
fn concat(shards: &[Vec<f64>], shapes: &[&[usize]], ax: usize) -> Vec<f32> {
    let outer: usize = shapes[0][..ax].iter().product();
    let inner: usize = shapes[0][ax + 1..].iter().product();
    let mut out = Vec::with_capacity(shards.iter().map(Vec::len).sum());
    for o in 0..outer {
        for (s, shape) in shards.iter().zip(shapes) {
            let run = shape[ax] * inner;
            out.extend(s[o * run..(o + 1) * run].iter().map(|&x| x as f32));
        }
    }
    out
}

/// The part of `whole` (C order, `shape`) that rank `rank` holds under a concatenation along
/// `ax` with the given per-rank sizes on that axis.
fn slice_of(whole: &[f64], shape: &[usize], ax: usize, sizes: &[usize], rank: usize) -> Vec<f64> {
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let start: usize = sizes[..rank].iter().sum();
    let mut out = Vec::with_capacity(outer * sizes[rank] * inner);
    for o in 0..outer {
        let row = o * shape[ax] * inner;
        out.extend_from_slice(&whole[row + start * inner..row + (start + sizes[rank]) * inner]);
    }
    out
}

/// Merges the statistics of shards concatenated into one tensor: exact up to float
/// reassociation. `rms` needs every shard's rms (it is `null` when a shard holds NaN/Inf);
/// mean and std (population, via M2) are over the finite values; min/max over the shards';
/// NaN/Inf counts add up.
pub fn merge_concat_stats<'a>(
    records: impl IntoIterator<Item = &'a TraceRecord>,
) -> (Option<f64>, Option<Stats>) {
    let mut n_total = 0u64;
    let mut sum_sq = Some(0f64);
    let mut stats_ok = true;
    let (mut count, mut mean, mut m2) = (0f64, 0f64, 0f64);
    let (mut min, mut max): (Option<f64>, Option<f64>) = (None, None);
    let (mut nan, mut inf) = (0u64, 0u64);
    for r in records {
        n_total += r.num_elements;
        sum_sq = match (sum_sq, r.rms) {
            (Some(acc), Some(rms)) => Some(acc + rms * rms * r.num_elements as f64),
            (Some(acc), None) if r.num_elements == 0 => Some(acc),
            _ => None,
        };
        let Some(s) = &r.stats else {
            stats_ok = false;
            continue;
        };
        nan += s.nan_count;
        inf += s.inf_count;
        let c = (r.num_elements - s.nan_count - s.inf_count) as f64;
        if c == 0.0 {
            continue;
        }
        let (Some(m), Some(sd)) = (s.mean, s.std) else {
            stats_ok = false;
            continue;
        };
        // Chan et al.'s pairwise merge of (count, mean, M2).
        let total = count + c;
        let delta = m - mean;
        mean += delta * c / total;
        m2 += sd * sd * c + delta * delta * count * c / total;
        count = total;
        min = Some(min.map_or(s.min.unwrap_or(f64::INFINITY), |x| {
            x.min(s.min.unwrap_or(x))
        }));
        max = Some(max.map_or(s.max.unwrap_or(f64::NEG_INFINITY), |x| {
            x.max(s.max.unwrap_or(x))
        }));
    }
    let rms = sum_sq
        .filter(|_| n_total > 0)
        .map(|s| (s / n_total as f64).sqrt());
    let stats = stats_ok.then(|| Stats {
        min: min.filter(|_| count > 0.0),
        max: max.filter(|_| count > 0.0),
        mean: (count > 0.0).then_some(mean),
        std: (count > 0.0).then(|| (m2 / count).max(0.0).sqrt()),
        nan_count: nan,
        inf_count: inf,
    });
    (rms, stats)
}

/// The ranks whose own record disagrees with its part of the reference `partner`, and how that
/// was decided.
fn attribute(
    origin: &Origin,
    runs: &[Run],
    partner: &RunRecord,
    other: &Run,
    tol: &Tolerance,
) -> (Vec<u32>, String) {
    let load = |run: &Run, r: &RunRecord| {
        run.values_path(r)
            .and_then(|p| values::load(&p, &r.record.shape).ok())
    };
    let agrees_values = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(&x, &y)| {
                (x.is_nan() && y.is_nan())
                    || x == y
                    || (x.is_finite() && y.is_finite() && tol.passes(x, y))
            })
    };
    let agrees_stats = |a: &TraceRecord, rms_b: Option<f64>, sb: Option<&Stats>| {
        let bound = tol.atol + tol.rtol * rms_b.unwrap_or(0.0).abs();
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= bound,
            (None, None) => true,
            _ => false,
        };
        close(a.rms, rms_b)
            && match (&a.stats, sb) {
                (Some(sa), Some(sb)) => {
                    close(sa.mean, sb.mean)
                        && close(sa.std, sb.std)
                        && sa.nan_count == sb.nan_count
                        && sa.inf_count == sb.inf_count
                }
                _ => true,
            }
    };
    let all: Vec<u32> = (0..origin.parts.len() as u32).collect();
    match origin.split {
        ShardSplit::Replicated => {
            let b_values = load(other, partner);
            let ranks = origin
                .parts
                .iter()
                .enumerate()
                .filter(|(r, p)| {
                    if p.record.blake3.eq_ignore_ascii_case(&partner.record.blake3) {
                        return false;
                    }
                    match (load(&runs[*r], p), &b_values) {
                        (Some(a), Some(b)) => !agrees_values(&a, b),
                        _ => !agrees_stats(
                            &p.record,
                            partner.record.rms,
                            partner.record.stats.as_ref(),
                        ),
                    }
                })
                .map(|(r, _)| r as u32)
                .collect();
            (
                ranks,
                "replicated: each rank's whole tensor compared with the reference".into(),
            )
        }
        ShardSplit::Sum => (
            all,
            "partial sums: every rank contributes to the sum, so no single rank can be blamed \
             from this record; look at the ranks' records before it"
                .into(),
        ),
        ShardSplit::Concat { axis } => {
            let shapes: Vec<&[usize]> = origin
                .parts
                .iter()
                .map(|p| p.record.shape.as_slice())
                .collect();
            let Some((ax, shape)) = concat_shape(&shapes, axis) else {
                return (
                    Vec::new(),
                    "the shards' shapes cannot be concatenated".into(),
                );
            };
            let Some(whole) =
                load(other, partner).filter(|w| w.len() == shape.iter().product::<usize>())
            else {
                return (
                    Vec::new(),
                    "unknown: the reference has no values of this record to cut into the ranks' \
                     parts (record values with TENSOR_TRACE_VALUES)"
                        .into(),
                );
            };
            let sizes: Vec<usize> = shapes.iter().map(|s| s[ax]).collect();
            let ranks = origin
                .parts
                .iter()
                .enumerate()
                .filter(|(r, p)| {
                    let part = slice_of(&whole, &shape, ax, &sizes, *r);
                    match load(&runs[*r], p) {
                        Some(a) => !agrees_values(&a, &part),
                        None => {
                            let f32s: Vec<f32> = part.iter().map(|&x| x as f32).collect();
                            let fp = fingerprint(Data::F32(&f32s));
                            !agrees_stats(&p.record, fp.rms, Some(&fp.stats))
                        }
                    }
                })
                .map(|(r, _)| r as u32)
                .collect();
            (
                ranks,
                format!(
                    "concatenated along axis {axis}: each rank's shard compared with its slice of \
                     the reference"
                ),
            )
        }
    }
}

/// Writes a little-endian F32 C-order `.npy`.
fn write_npy(path: &Path, shape: &[usize], values: &[f32]) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(fs::File::create(path)?))
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()
}

/// Whether `dir` is a multi-rank run (holds `rank-{r}` directories).
pub fn is_multi_rank(dir: &Path) -> bool {
    RankedRun::looks_ranked(dir)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;
    use trace_core::{Context, TensorView, Tracer};

    use super::*;
    use crate::Verdict;

    fn record_of(values: &[f32]) -> TraceRecord {
        let fp = fingerprint(Data::F32(values));
        TraceRecord {
            name: "x".into(),
            shape: vec![values.len()],
            dtype: "F32".into(),
            blake3: fp.blake3.to_hex().to_string(),
            rms: fp.rms,
            num_elements: values.len() as u64,
            stats: Some(fp.stats),
            ..TraceRecord::default()
        }
    }

    fn close(a: Option<f64>, b: Option<f64>, scale: f64) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * scale.max(1e-30),
            (None, None) => true,
            _ => false,
        }
    }

    proptest! {
        /// Merged statistics of a split equal the statistics of the whole, within float
        /// reassociation: 1e-9 relative to the largest magnitude (f64 sums of F32 values).
        #[test]
        fn merged_stats_of_a_split_equal_the_whole(
            values in prop::collection::vec(
                prop_oneof![
                    8 => -1e3f32..1e3f32,
                    1 => Just(f32::NAN),
                    1 => Just(f32::INFINITY),
                ],
                1..2000,
            ),
            cuts in prop::collection::vec(0usize..2000, 0..3),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (values.len() + 1)).collect();
            cuts.sort_unstable();
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(values.len());
            let parts: Vec<TraceRecord> =
                bounds.windows(2).map(|w| record_of(&values[w[0]..w[1]])).collect();
            let whole = record_of(&values);
            let (rms, stats) = merge_concat_stats(&parts);
            let stats = stats.unwrap();
            let ws = whole.stats.unwrap();
            let scale = values.iter().filter(|v| v.is_finite()).fold(1.0f64, |m, v| m.max(v.abs() as f64));
            prop_assert!(close(rms, whole.rms, scale), "rms {rms:?} vs {:?}", whole.rms);
            prop_assert!(close(stats.mean, ws.mean, scale), "mean {:?} vs {:?}", stats.mean, ws.mean);
            prop_assert!(close(stats.std, ws.std, scale), "std {:?} vs {:?}", stats.std, ws.std);
            prop_assert_eq!(stats.min, ws.min);
            prop_assert_eq!(stats.max, ws.max);
            prop_assert_eq!((stats.nan_count, stats.inf_count), (ws.nan_count, ws.inf_count));
        }

        /// Slicing the concatenation gives back each shard.
        #[test]
        fn concat_then_slice_round_trips(
            rows in 1usize..5, widths in prop::collection::vec(1usize..5, 1..4), ax in 0usize..2,
        ) {
            let shapes: Vec<Vec<usize>> = widths
                .iter()
                .map(|&w| if ax == 0 { vec![w, rows] } else { vec![rows, w] })
                .collect();
            let mut next = 0.0;
            let shards: Vec<Vec<f64>> = shapes
                .iter()
                .map(|s| (0..s[0] * s[1]).map(|_| { next += 1.0; next }).collect())
                .collect();
            let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
            let (axn, shape) = concat_shape(&refs, ax as i64 - 2).unwrap();
            prop_assert_eq!(axn, ax);
            let whole: Vec<f64> = concat(&shards, &refs, ax).into_iter().map(f64::from).collect();
            for (r, shard) in shards.iter().enumerate() {
                prop_assert_eq!(&slice_of(&whole, &shape, ax, &widths, r), shard);
            }
        }
    }

    #[test]
    fn concat_shape_checks_the_other_axes() {
        assert_eq!(concat_shape(&[&[2, 3], &[2, 5]], -1), Some((1, vec![2, 8])));
        assert_eq!(concat_shape(&[&[2, 3], &[4, 3]], 0), Some((0, vec![6, 3])));
        assert_eq!(concat_shape(&[&[2, 3], &[3, 5]], -1), None);
        assert_eq!(concat_shape(&[&[2, 3], &[2, 3]], 2), None);
    }

    /// A 2-rank run of `q = x W` (column-parallel, traced per rank as `q`, values kept) and an
    /// `out` record that is replicated, against a single-process reference.
    fn write_runs(dir: &Path, bad_rank: Option<u32>, values: bool) -> (PathBuf, PathBuf) {
        let (a, b) = (dir.join("tp"), dir.join("ref"));
        let q: Vec<f32> = (0..8).map(|i| i as f32 * 0.5 - 1.0).collect(); // shape [2, 4]
        let out = [1.0f32, 2.0, 3.0];
        let cx = Context::default();
        let build =
            |t: trace_core::TracerBuilder| if values { t.values("*") } else { t }.build().unwrap();
        let reference = build(Tracer::builder().dir(&b));
        reference
            .record("q", &cx, TensorView::new(&[2, 4], &q[..]).unwrap())
            .unwrap();
        reference
            .record("out", &cx, TensorView::new(&[3], &out[..]).unwrap())
            .unwrap();
        for rank in 0..2u32 {
            let t = build(Tracer::builder().dir(&a).rank(rank).world_size(2));
            // Rank r holds columns 2r..2r+2 of each row.
            let mut shard: Vec<f32> = (0..2)
                .flat_map(|row| {
                    q[row * 4 + 2 * rank as usize..row * 4 + 2 * rank as usize + 2].to_vec()
                })
                .collect();
            if bad_rank == Some(rank) {
                shard[1] += 0.25;
            }
            t.record("q", &cx, TensorView::new(&[2, 2], &shard[..]).unwrap())
                .unwrap();
            let mut o = out;
            if bad_rank == Some(rank) {
                o[0] += 1.0;
            }
            t.record("out", &cx, TensorView::new(&[3], &o[..]).unwrap())
                .unwrap();
        }
        (a, b)
    }

    fn options() -> DiffOptions {
        DiffOptions {
            rules: crate::Rules::from_toml(
                "[[shard]]\nnames = \"q\"\naxis = -1\n",
                Path::new("r.toml"),
            )
            .unwrap(),
            ..DiffOptions::default()
        }
    }

    #[test]
    fn clean_sharded_run_reassembles_to_the_reference() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = write_runs(tmp.path(), None, true);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Agree, "{:?}", report.warnings);
        assert!(report.pairs.iter().all(|p| p.verdict == Verdict::Identical));
        let ranks = report.ranks.unwrap();
        assert_eq!(
            (ranks.mode, ranks.world_size_a, ranks.world_size_b),
            ("reassembled", Some(2), None)
        );
        assert_eq!((ranks.reassembled_values, ranks.replicated), (1, 1));
        assert_eq!(report.a.dir, a.display().to_string());
    }

    #[test]
    fn wrong_shard_is_found_and_its_rank_named() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = write_runs(tmp.path(), Some(1), true);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Diverged);
        assert_eq!(report.first_divergence.as_ref().unwrap().name, "q");
        let ranks = report.ranks.unwrap();
        assert_eq!(ranks.first_divergence_ranks, vec![1]);
        assert!(ranks.attribution.unwrap().contains("axis -1"));
    }

    #[test]
    fn stats_only_shards_merge_and_are_judged_on_stats() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = write_runs(tmp.path(), None, false);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Agree, "{:?}", report.pairs);
        let q = &report.pairs[0];
        assert_eq!(q.verdict, Verdict::WithinTolerance);
        assert!(q
            .reason
            .as_deref()
            .unwrap()
            .contains("hash of a sharded record cannot be merged"));
        assert_eq!(report.ranks.unwrap().merged_stats, 1);

        let (a, b) = write_runs(&tmp.path().join("bad"), Some(0), false);
        let report = diff_paths(&a, &b, &options()).unwrap();
        assert_eq!(report.outcome, Outcome::Diverged);
        assert_eq!(report.first_divergence.as_ref().unwrap().name, "q");
        // The reference has no values to cut into the ranks' parts.
        let ranks = report.ranks.unwrap();
        assert!(ranks.first_divergence_ranks.is_empty());
        assert!(ranks.attribution.unwrap().starts_with("unknown"));
    }

    #[test]
    fn equal_world_sizes_compare_rank_by_rank() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, _) = write_runs(&tmp.path().join("x"), None, true);
        let (b, _) = write_runs(&tmp.path().join("y"), Some(1), true);
        let report = diff_paths(&a, &b, &DiffOptions::default()).unwrap();
        assert_eq!(report.outcome, Outcome::Diverged);
        let ranks = report.ranks.as_ref().unwrap();
        assert_eq!(ranks.mode, "rank-by-rank");
        assert_eq!(ranks.first_divergence_ranks, vec![1]);
        assert_eq!(ranks.per_rank[0].outcome, Outcome::Agree);
        assert_eq!(
            ranks.per_rank[1].first_divergence,
            Some(("q".to_owned(), 0))
        );
        assert!(report.a.dir.ends_with("rank-1"));
    }

    #[test]
    fn unequal_world_sizes_are_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, _) = write_runs(tmp.path(), None, true);
        let b = tmp.path().join("one");
        for r in 0..3 {
            let t = Tracer::builder()
                .dir(&b)
                .rank(r)
                .world_size(3)
                .build()
                .unwrap();
            t.record(
                "q",
                &Context::default(),
                TensorView::new(&[1], &[1.0f32][..]).unwrap(),
            )
            .unwrap();
        }
        let e = diff_paths(&a, &b, &DiffOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a world of 3 ranks, but") && e.contains("has 2"),
            "{e}"
        );
    }

    #[test]
    fn partial_sums_need_values() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("tp"), tmp.path().join("ref"));
        let cx = Context::default();
        Tracer::builder()
            .dir(&b)
            .values("*")
            .build()
            .unwrap()
            .record("o", &cx, TensorView::new(&[2], &[3.0f32, 5.0][..]).unwrap())
            .unwrap();
        for (rank, part) in [(0u32, [1.0f32, 2.0]), (1, [2.0, 3.0])] {
            for (dir, values) in [(&a, true), (&tmp.path().join("nv"), false)] {
                let t = Tracer::builder().dir(dir).rank(rank).world_size(2);
                let t = if values { t.values("*") } else { t };
                t.build()
                    .unwrap()
                    .record("o", &cx, TensorView::new(&[2], &part[..]).unwrap())
                    .unwrap();
            }
        }
        let opts = DiffOptions {
            rules: crate::Rules::from_toml(
                "[[shard]]\nnames = \"o\"\nreduce = \"sum\"\n",
                Path::new("r.toml"),
            )
            .unwrap(),
            ..DiffOptions::default()
        };
        let report = diff_paths(&a, &b, &opts).unwrap();
        assert_eq!(report.outcome, Outcome::Agree);
        assert_eq!(report.pairs[0].verdict, Verdict::Identical);
        let report = diff_paths(&tmp.path().join("nv"), &b, &opts).unwrap();
        assert_eq!(report.outcome, Outcome::Incomplete);
        assert_eq!(report.ranks.as_ref().unwrap().not_mergeable, 1);
        assert!(report
            .warnings
            .iter()
            .any(|w| w.message.contains("the sum of the shard means, 4e0")));
    }
}
