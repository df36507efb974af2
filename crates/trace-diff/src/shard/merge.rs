//! Reassembly: the ranks of a multi-rank run turned into one logical run, in memory, by the
//! `[[shard]]` rules (see the table in the `shard` module's documentation).
//!
//! The logical records are built as the trace format would hold them (the hash, rms and
//! statistics of the whole tensor), but nothing is written: a logical record's values are
//! computed from the ranks' `.npy` files when the comparison asks for them ([`Reassembly`] is
//! a [`ValueSource`]), once to fingerprint the record and once to judge it, so memory holds one
//! record's values at a time, as for any run.

use std::path::PathBuf;

use trace_core::record::TraceRecord;
use trace_core::run::{Run, RunRecord};
use trace_core::{fingerprint, Data, Stats};

use crate::error::{Error, Result};
use crate::options::DiffOptions;
use crate::report::{RanksReport, Warning};
use crate::rules::ShardSplit;
use crate::values::ValueSource;

/// The `blake3` of a reassembled record whose hash cannot be known (statistics-only shards):
/// 64 zeros, which blake3 is not expected to produce for any input, so the pair is never taken
/// as identical and is judged on its statistics.
pub const UNKNOWN_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where a logical record came from.
#[derive(Debug)]
pub(crate) struct Origin<'r> {
    pub(crate) split: ShardSplit,
    /// Each rank's record (rank order).
    pub(crate) parts: Vec<&'r RunRecord>,
    /// Whether the hash is [`UNKNOWN_HASH`].
    pub(crate) hash_unknown: bool,
    /// How its values are made from the parts', when it has values.
    values: Option<Combine>,
}

/// How a logical record's values are made from its parts' values.
#[derive(Debug, Clone)]
enum Combine {
    /// The values of one rank (replicated records).
    Rank(usize),
    /// Concatenated along an axis.
    Concat(usize),
    /// Summed element-wise in f64, in rank order.
    Sum,
}

/// A multi-rank run as one logical run: records in rank 0's order (the `r{index:06}.trace`
/// names a written copy of it would have), and where each came from.
pub(crate) struct Reassembly<'r> {
    runs: &'r [Run],
    /// The logical records, in order.
    pub(crate) records: Vec<RunRecord>,
    /// Their origins, by position (each record's `index`).
    pub(crate) origins: Vec<Origin<'r>>,
}

/// The reassembly of one multi-rank run against the single-process run it is compared with.
pub(crate) struct Reassembler<'r, 'o> {
    /// Each rank's run, in rank order.
    pub(crate) runs: &'r [Run],
    /// The single-process run on the other side, for choosing among replicas.
    pub(crate) other: &'r Run,
    /// Whether the multi-rank run is side A (so its names map to the other side's).
    pub(crate) is_a: bool,
    pub(crate) options: &'o DiffOptions,
}

/// One record merged from its parts, before it takes its place in the logical run.
struct Merged {
    record: TraceRecord,
    values: Option<Combine>,
    hash_unknown: bool,
}

impl<'r> Reassembler<'r, '_> {
    /// Builds the logical run, counting in `summary` how each record was merged and warning
    /// about those left out.
    pub(crate) fn reassemble(
        &self,
        summary: &mut RanksReport,
        warnings: &mut Vec<Warning>,
    ) -> Result<Reassembly<'r>> {
        let side = if self.is_a { "a" } else { "b" };
        let mut warn = |message: String| {
            warnings.push(Warning {
                side: Some(side),
                message,
            })
        };
        let indexes: Vec<std::collections::HashMap<(&str, u64), &RunRecord>> = self
            .runs
            .iter()
            .map(|run| run.records().iter().map(|r| (r.key(), r)).collect())
            .collect();
        let other: std::collections::HashMap<(&str, u64), &RunRecord> =
            self.other.records().iter().map(|r| (r.key(), r)).collect();
        let mut out = Reassembly {
            runs: self.runs,
            records: Vec::new(),
            origins: Vec::new(),
        };
        for r0 in self.runs[0].records() {
            let key = r0.key();
            let missing = indexes.iter().position(|idx| !idx.contains_key(&key));
            if let Some(rank) = missing {
                warn(format!(
                    "rank {rank} has no record {:?} (occurrence {}): left out of the \
                     reassembled run",
                    key.0, key.1
                ));
                summary.not_mergeable += 1;
                continue;
            }
            let parts: Vec<&'r RunRecord> = indexes.iter().map(|idx| idx[&key]).collect();
            let (split, _) = self.options.rules.shard_split(&r0.record.name);
            // The reference's record of this name, for choosing among replicas.
            let partner_name = if self.is_a {
                self.options.rules.map_name(&r0.record.name)
            } else {
                std::borrow::Cow::Borrowed(r0.record.name.as_str())
            };
            let partner = other.get(&(partner_name.as_ref(), r0.occurrence)).copied();
            let merged = match split {
                ShardSplit::Replicated => {
                    summary.replicated += 1;
                    self.merge_replicated(&parts, partner)?
                }
                ShardSplit::Concat { axis } => {
                    self.merge_concat(&parts, axis, summary, &mut warn)?
                }
                ShardSplit::Sum => self.merge_sum(r0, &parts, summary, &mut warn)?,
            };
            let Some(merged) = merged else {
                continue;
            };
            out.push(r0.occurrence, merged, split, parts);
        }
        Ok(out)
    }

    /// Rank `rank`'s values of `part`: `None` when it has none or, outside strict mode, they
    /// cannot be read.
    fn load(&self, rank: usize, part: &RunRecord) -> Result<Option<Vec<f64>>> {
        match self.runs[rank].values(part) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err((path, problem))) if self.options.strict => {
                Err(Error::Values { path, problem })
            }
            Some(Err(_)) => Ok(None),
        }
    }

    /// Every rank's values, or `None` when one is missing or raw values are not to be used.
    fn load_all(&self, parts: &[&RunRecord], usable: bool) -> Result<Option<Vec<Vec<f64>>>> {
        let all_values = parts.iter().all(|p| p.values.is_some());
        if !(all_values && usable && self.options.use_values) {
            return Ok(None);
        }
        parts
            .iter()
            .enumerate()
            .map(|(rank, p)| self.load(rank, p))
            .collect()
    }

    /// A replicated record: the rank agreeing least with the reference (rank 0 when every rank
    /// has the reference's hash), with its own hash.
    fn merge_replicated(
        &self,
        parts: &[&RunRecord],
        partner: Option<&RunRecord>,
    ) -> Result<Option<Merged>> {
        let differs = |p: &RunRecord| {
            partner.is_some_and(|b| !b.record.blake3.eq_ignore_ascii_case(&p.record.blake3))
        };
        let chosen = parts.iter().position(|p| differs(p)).unwrap_or(0);
        // Values the chosen rank cannot provide leave the record without values.
        let readable =
            parts[chosen].values.is_some() && self.load(chosen, parts[chosen])?.is_some();
        Ok(Some(Merged {
            record: parts[chosen].record.clone(),
            values: readable.then_some(Combine::Rank(chosen)),
            hash_unknown: false,
        }))
    }

    /// Shards concatenated along `axis`: from values when every rank has them, else from the
    /// merged statistics with an unknown hash.
    fn merge_concat(
        &self,
        parts: &[&RunRecord],
        axis: i64,
        summary: &mut RanksReport,
        warn: &mut dyn FnMut(String),
    ) -> Result<Option<Merged>> {
        let shapes: Vec<&[usize]> = parts.iter().map(|p| p.record.shape.as_slice()).collect();
        let name = &parts[0].record.name;
        let Some((ax, shape)) = concat_shape(&shapes, axis) else {
            warn(format!(
                "{name:?}: shapes {shapes:?} cannot be concatenated along axis {axis}: left out \
                 of the reassembled run"
            ));
            summary.not_mergeable += 1;
            return Ok(None);
        };
        let mut record = parts[0].record.clone();
        record.shape = shape;
        record.num_elements = parts.iter().map(|p| p.record.num_elements).sum();
        if let Some(shards) = self.load_all(parts, true)? {
            summary.reassembled_values += 1;
            set_fingerprint(&mut record, &concat(&shards, &shapes, ax));
            return Ok(Some(Merged {
                record,
                values: Some(Combine::Concat(ax)),
                hash_unknown: false,
            }));
        }
        summary.merged_stats += 1;
        (record.rms, record.stats) = merge_concat_stats(parts.iter().map(|p| &p.record));
        Ok(Some(Merged {
            record,
            values: None,
            hash_unknown: true,
        }))
    }

    /// Partial sums: only from values (the statistics of a sum are not those of its parts).
    fn merge_sum(
        &self,
        r0: &RunRecord,
        parts: &[&RunRecord],
        summary: &mut RanksReport,
        warn: &mut dyn FnMut(String),
    ) -> Result<Option<Merged>> {
        let same_shape = parts.iter().all(|p| p.record.shape == r0.record.shape);
        if let Some(shards) = self.load_all(parts, same_shape)? {
            summary.summed += 1;
            let mut record = r0.record.clone();
            set_fingerprint(&mut record, &add_up(&shards));
            return Ok(Some(Merged {
                record,
                values: Some(Combine::Sum),
                hash_unknown: false,
            }));
        }
        summary.not_mergeable += 1;
        let mean: Option<f64> = parts
            .iter()
            .map(|p| p.record.stats.as_ref().and_then(|s| s.mean))
            .sum();
        warn(format!(
            "{:?} (occurrence {}): partial sums without values on every rank (or of different \
             shapes) cannot be merged: the rms, std, min and max of a sum are not determined by \
             the shards' statistics (the sum of the shard means, {}, is the mean of the sum); \
             record values (TENSOR_TRACE_VALUES) to compare it. Left out of the reassembled run",
            r0.record.name,
            r0.occurrence,
            mean.map_or("unknown".to_owned(), |m| format!("{m:e}"))
        ));
        Ok(None)
    }
}

impl<'r> Reassembly<'r> {
    /// Appends a merged record as the next logical record: its index, its fingerprint when it
    /// has values, and the `r{index:06}` file names a written copy would give it.
    fn push(
        &mut self,
        occurrence: u64,
        merged: Merged,
        split: ShardSplit,
        parts: Vec<&'r RunRecord>,
    ) {
        let index = self.records.len() as u64;
        let Merged {
            mut record,
            values,
            hash_unknown,
        } = merged;
        let stem = format!("r{index:06}");
        record.index = Some(index);
        record.occurrence = Some(occurrence);
        record.rank = None;
        record.values = None;
        if split != ShardSplit::Replicated {
            // A shard's sketch is not a part of the whole's: its block indices start at 0.
            record.sketch = None;
        }
        if values.is_some() {
            record.values = Some(format!("{stem}.npy"));
        }
        if hash_unknown {
            record.blake3 = UNKNOWN_HASH.to_owned();
        }
        self.records.push(RunRecord {
            file: format!("{stem}.trace"),
            values: record.values.clone(),
            occurrence,
            record,
        });
        self.origins.push(Origin {
            split,
            parts,
            hash_unknown,
            values,
        });
    }

    /// The values of a logical record, rounded to F32 as the trace format stores them.
    fn combine(&self, origin: &Origin<'_>) -> Result<Vec<f32>, (PathBuf, String)> {
        let load = |rank: usize| -> Result<Vec<f64>, (PathBuf, String)> {
            let part = origin.parts[rank];
            self.runs[rank]
                .values(part)
                .unwrap_or_else(|| Err((self.runs[rank].record_path(part), "no values".into())))
        };
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        match origin.values {
            None => Err((PathBuf::new(), "no values".into())),
            Some(Combine::Rank(rank)) => load(rank).map(to_f32),
            Some(Combine::Concat(ax)) => {
                let shards = (0..origin.parts.len())
                    .map(load)
                    .collect::<Result<Vec<_>, _>>()?;
                let shapes: Vec<&[usize]> = origin
                    .parts
                    .iter()
                    .map(|p| p.record.shape.as_slice())
                    .collect();
                Ok(concat(&shards, &shapes, ax))
            }
            Some(Combine::Sum) => {
                let shards = (0..origin.parts.len())
                    .map(load)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(add_up(&shards))
            }
        }
    }
}

/// The hash, rms and statistics of `values`, as at capture.
fn set_fingerprint(record: &mut TraceRecord, values: &[f32]) {
    let fp = fingerprint(Data::F32(values));
    record.blake3 = fp.blake3.to_hex().to_string();
    record.rms = fp.rms;
    record.stats = Some(fp.stats);
}

/// The element-wise sum of partial sums (f64, in rank order), rounded to F32 once.
fn add_up(shards: &[Vec<f64>]) -> Vec<f32> {
    let mut sum = vec![0f64; shards[0].len()];
    for s in shards {
        for (acc, x) in sum.iter_mut().zip(s) {
            *acc += x;
        }
    }
    sum.into_iter().map(|x| x as f32).collect()
}

/// A logical record's values, computed from the ranks' files.
impl ValueSource for Reassembly<'_> {
    fn values(&self, r: &RunRecord) -> Option<Result<Vec<f64>, (PathBuf, String)>> {
        let origin = self.origins.get(usize::try_from(r.record.index?).ok()?)?;
        origin.values.as_ref()?;
        Some(
            self.combine(origin)
                .map(|v| v.into_iter().map(f64::from).collect()),
        )
    }
}

/// The normalized axis and the concatenated shape, when the shapes agree off the axis.
pub(crate) fn concat_shape(shapes: &[&[usize]], axis: i64) -> Option<(usize, Vec<usize>)> {
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
pub(crate) fn slice_of(
    whole: &[f64],
    shape: &[usize],
    ax: usize,
    sizes: &[usize],
    rank: usize,
) -> Vec<f64> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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
}
