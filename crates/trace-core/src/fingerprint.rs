//! One pass over memory: canonical F32 conversion, blake3, RMS and statistics.
//!
//! # Invariants
//! - The hash is blake3 of the canonical F32 little-endian bytes, bit-identical to hashing the
//!   whole converted buffer at once, whatever the chunking and the thread count.
//! - Statistics are bit-identical for the same values however they were split into
//!   [`Fingerprinter::update`] calls and however many threads ran: partial sums are taken over
//!   fixed blocks of [`STATS_BLOCK`] elements counted from the start of the tensor, each block
//!   with fixed lanes, and merged in block order.
//! - The optional value sketch ([`crate::sketch`]) follows the same rule: one partial per
//!   statistics block, added to the total in block order.
//! - Non-F32 input is converted in batches of [`BATCH`] elements into a reused buffer; there is
//!   never a full F32 copy of the tensor.
//!
//! # Definitions
//! - `rms` = sqrt(Σx² / n) accumulated in f64 over all n elements, as the seed computes it. It is
//!   `None` when undefined: n = 0, or a NaN/Inf among the values (where the seed's JSON showed
//!   `null` too, because JSON has no NaN).
//! - `min`, `max`, `mean`, `std` (population) cover the finite values only; `None` when there are
//!   none. Each block's variance is accumulated around a shift (its first finite value) and blocks
//!   are merged with Chan et al.'s formula, so there is no catastrophic cancellation when the mean
//!   is large compared to the spread.

use rayon::prelude::*;

use crate::sketch::{block_sketch, check_sketch_k};
use crate::{
    record::{Stats, TraceRecord},
    view::Data,
    DType, Error, Result,
};

/// Elements per statistics block: the unit of deterministic partial sums (16 KiB of F32).
pub const STATS_BLOCK: usize = 4096;
/// Elements converted per batch for non-F32 input (1 MiB of F32: fits L2 here).
pub const BATCH: usize = 256 * 1024;
/// Below this many elements in one call, everything runs on the caller's thread. Waking
/// rayon's workers costs more than it saves below about 1M elements when records arrive between
/// an engine's own computations (the workers have gone to sleep): at 128K, `trace_module`'s
/// 114 records of 49K-197K elements took 19.2 ms against 15.5 ms all on the caller's thread
/// (docs/PYTHON.md).
const PARALLEL_MIN: usize = 1 << 20;
/// Independent accumulators per block, so the compiler can vectorize the f64 sums.
const LANES: usize = 16;
/// Blocks whose partials the parallel path computes at once (bounds the sketch partials kept).
const GROUP: usize = 256;

/// The fingerprint of a tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// blake3 of the canonical F32 little-endian bytes.
    pub blake3: blake3::Hash,
    /// Number of elements seen.
    pub num_elements: u64,
    /// sqrt of the mean of squares (f64), `None` when empty or not finite.
    pub rms: Option<f64>,
    /// Statistics over the finite values.
    pub stats: Stats,
    /// The value sketch (`k` buckets), when one was asked for
    /// ([`Fingerprinter::with_sketch`]).
    pub sketch: Option<Vec<f64>>,
}

impl Fingerprint {
    /// Stores the hash, RMS, element count, stats and sketch in `record`.
    pub(crate) fn fill_record(&self, record: &mut TraceRecord) {
        record.blake3 = self.blake3.to_hex().to_string();
        record.rms = self.rms;
        record.num_elements = self.num_elements;
        record.stats = Some(self.stats);
        record.sketch = self.sketch.clone().map(crate::record::Sketch::new);
    }
}

/// Fingerprints `data` in one call (see [`Fingerprinter`] for streaming).
pub fn fingerprint(data: Data<'_>) -> Fingerprint {
    let mut fp = Fingerprinter::new();
    fp.update(data)
        .expect("a fresh fingerprinter accepts any dtype");
    fp.finish()
}

/// Incremental fingerprint: feed chunks of one dtype in element order, then [`finish`].
///
/// ```
/// use trace_core::{fingerprint, Data, Fingerprinter};
/// let values: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
/// let mut fp = Fingerprinter::new();
/// for chunk in values.chunks(777) {
///     fp.update(Data::F32(chunk))?;
/// }
/// assert_eq!(fp.finish(), fingerprint(Data::F32(&values)));
/// # Ok::<(), trace_core::Error>(())
/// ```
///
/// [`finish`]: Fingerprinter::finish
#[derive(Debug)]
pub struct Fingerprinter {
    hasher: blake3::Hasher,
    dtype: Option<DType>,
    total: u64,
    acc: Partial,
    /// Converted elements of the current, incomplete statistics block (< STATS_BLOCK).
    carry: Vec<f32>,
    /// Conversion buffer for non-F32 input, reused across batches.
    buf: Vec<f32>,
    /// All converted values, kept only when raw values are saved.
    kept: Option<Vec<f32>>,
    /// Statistics blocks merged so far (global block index of the next one).
    blocks: u64,
    sketch: Option<SketchAcc>,
}

/// The running value sketch: the total and a reused buffer of per-block partials.
#[derive(Debug)]
struct SketchAcc {
    k: usize,
    total: Vec<f64>,
    scratch: Vec<f64>,
}

impl SketchAcc {
    /// Sketch blocks per statistics block.
    fn per_block(&self) -> u64 {
        (STATS_BLOCK / self.k) as u64
    }
}

fn add_into(total: &mut [f64], partial: &[f64]) {
    for (t, p) in total.iter_mut().zip(partial) {
        *t += p;
    }
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Self::new()
    }
}

impl Fingerprinter {
    /// An empty fingerprint (of dtype decided by the first chunk).
    pub fn new() -> Self {
        Self {
            hasher: blake3::Hasher::new(),
            dtype: None,
            total: 0,
            acc: Partial::EMPTY,
            carry: Vec::new(),
            buf: Vec::new(),
            kept: None,
            blocks: 0,
            sketch: None,
        }
    }

    /// Also compute a value sketch of `k` buckets ([`crate::sketch`]); `k = 0` computes none.
    /// `k` must be 0 or a power of two from [`crate::sketch::MIN_SKETCH_K`] to
    /// [`crate::sketch::MAX_SKETCH_K`].
    pub fn with_sketch(mut self, k: usize) -> Result<Self> {
        check_sketch_k(k).map_err(|problem| Error::Config {
            setting: "sketch".into(),
            value: k.to_string(),
            problem,
        })?;
        self.sketch = (k > 0).then(|| SketchAcc {
            k,
            total: vec![0.0; k],
            scratch: Vec::new(),
        });
        Ok(self)
    }

    /// Also keep every converted value (to save them as `.npy`); costs a full F32 copy.
    pub fn keeping_values(mut self) -> Self {
        self.kept = Some(Vec::new());
        self
    }

    /// The dtype of the chunks fed so far.
    pub fn dtype(&self) -> Option<DType> {
        self.dtype
    }

    /// Elements fed so far.
    pub fn num_elements(&self) -> u64 {
        self.total
    }

    /// Feeds the next chunk; all chunks must have the same dtype.
    pub fn update(&mut self, data: Data<'_>) -> Result<()> {
        let dtype = data.dtype();
        match self.dtype {
            None => self.dtype = Some(dtype),
            Some(expected) if expected != dtype => {
                return Err(Error::DTypeMismatch {
                    expected,
                    found: dtype,
                })
            }
            Some(_) => {}
        }
        if let Data::F32(values) = data {
            self.ingest(values);
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        while start < data.len() {
            let end = (start + BATCH).min(data.len());
            buf.resize(end - start, 0.0);
            let batch = data.slice(start, end);
            if self.carry.is_empty() && self.kept.is_none() && data.len() >= PARALLEL_MIN {
                self.ingest_converted_parallel(batch, &mut buf);
            } else {
                batch.convert_into(&mut buf);
                self.ingest(&buf);
            }
            start = end;
        }
        self.buf = buf;
        Ok(())
    }

    /// The fingerprint of everything fed.
    pub fn finish(self) -> Fingerprint {
        self.finish_with_values().0
    }

    /// The fingerprint and, when [`keeping_values`](Self::keeping_values), the converted values.
    pub fn finish_with_values(mut self) -> (Fingerprint, Option<Vec<f32>>) {
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            self.merge_block(&carry);
        }
        let acc = self.acc;
        let n = self.total;
        let all_finite = acc.nan == 0 && acc.inf == 0;
        let rms = (n > 0 && all_finite).then(|| (acc.sumsq / n as f64).sqrt());
        let finite = acc.count > 0;
        let stats = Stats {
            min: finite.then_some(f64::from(acc.min)),
            max: finite.then_some(f64::from(acc.max)),
            mean: finite.then_some(acc.mean),
            std: finite.then(|| (acc.m2.max(0.0) / acc.count as f64).sqrt()),
            nan_count: acc.nan,
            inf_count: acc.inf,
        };
        let fp = Fingerprint {
            blake3: self.hasher.finalize(),
            num_elements: n,
            rms,
            stats,
            sketch: self.sketch.map(|s| s.total),
        };
        (fp, self.kept)
    }

    /// Converts a block-aligned batch on all cores, taking each block's statistics while it is
    /// hot in cache, then hashes the batch (blake3's own tree parallelism).
    fn ingest_converted_parallel(&mut self, batch: Data<'_>, buf: &mut [f32]) {
        debug_assert!(self.carry.is_empty() && self.kept.is_none());
        let whole = batch.len() / STATS_BLOCK * STATS_BLOCK;
        let convert = |i: usize, out: &mut [f32]| {
            batch
                .slice(i * STATS_BLOCK, (i + 1) * STATS_BLOCK)
                .convert_into(out);
        };
        let first = self.blocks;
        match &mut self.sketch {
            None => {
                let partials: Vec<Partial> = buf[..whole]
                    .par_chunks_mut(STATS_BLOCK)
                    .enumerate()
                    .map(|(i, out)| {
                        convert(i, out);
                        block_partial(out)
                    })
                    .collect();
                for p in &partials {
                    self.acc.merge(p);
                }
            }
            Some(s) => {
                let (k, per) = (s.k, s.per_block());
                s.scratch.clear();
                s.scratch.resize(whole / STATS_BLOCK * k, 0.0);
                let partials: Vec<Partial> = buf[..whole]
                    .par_chunks_mut(STATS_BLOCK)
                    .zip(s.scratch.par_chunks_mut(k))
                    .enumerate()
                    .map(|(i, (out, sk))| {
                        convert(i, out);
                        let p = block_partial(out);
                        block_sketch(out, (first + i as u64) * per, p.all_finite(), sk);
                        p
                    })
                    .collect();
                for (p, sk) in partials.iter().zip(s.scratch.chunks(k)) {
                    self.acc.merge(p);
                    add_into(&mut s.total, sk);
                }
            }
        }
        self.blocks += (whole / STATS_BLOCK) as u64;
        hash_f32(&mut self.hasher, &buf[..whole]);
        self.total += whole as u64;
        if whole < batch.len() {
            let rest = &mut buf[whole..];
            batch.slice(whole, batch.len()).convert_into(rest);
            self.ingest(rest);
        }
    }

    /// Hashes and accumulates converted values, keeping block boundaries global.
    fn ingest(&mut self, mut values: &[f32]) {
        if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(values);
        }
        self.total += values.len() as u64;
        if !self.carry.is_empty() {
            let take = (STATS_BLOCK - self.carry.len()).min(values.len());
            self.carry.extend_from_slice(&values[..take]);
            hash_f32(&mut self.hasher, &values[..take]);
            values = &values[take..];
            if self.carry.len() == STATS_BLOCK {
                let carry = std::mem::take(&mut self.carry);
                self.merge_block(&carry);
                self.carry = carry;
                self.carry.clear();
            }
        }
        let whole = values.len() / STATS_BLOCK * STATS_BLOCK;
        let (body, rest) = values.split_at(whole);
        if body.len() >= PARALLEL_MIN {
            let (hasher, acc, sketch) = (&mut self.hasher, &mut self.acc, &mut self.sketch);
            let first = self.blocks;
            rayon::join(
                || hash_f32(hasher, body),
                || merge_blocks_parallel(body, first, acc, sketch.as_mut()),
            );
            self.blocks += (body.len() / STATS_BLOCK) as u64;
        } else {
            // Each block is hashed and reduced while it is in L1 cache, so the values are read
            // from memory once (the hash does not depend on how its input is split).
            for block in body.chunks(STATS_BLOCK) {
                hash_f32(&mut self.hasher, block);
                self.merge_block(block);
            }
        }
        if !rest.is_empty() {
            hash_f32(&mut self.hasher, rest);
            self.carry.extend_from_slice(rest);
        }
    }
}

impl Fingerprinter {
    /// Merges the statistics (and sketch) of the next block, on this thread.
    fn merge_block(&mut self, block: &[f32]) {
        let p = block_partial(block);
        self.acc.merge(&p);
        if let Some(s) = &mut self.sketch {
            s.scratch.clear();
            s.scratch.resize(s.k, 0.0);
            block_sketch(
                block,
                self.blocks * s.per_block(),
                p.all_finite(),
                &mut s.scratch,
            );
            add_into(&mut s.total, &s.scratch);
        }
        self.blocks += 1;
    }
}

/// Statistics (and sketch) partials of whole blocks on all cores, merged in block order; `first`
/// is the global index of the first block.
fn merge_blocks_parallel(
    body: &[f32],
    first: u64,
    acc: &mut Partial,
    sketch: Option<&mut SketchAcc>,
) {
    let Some(s) = sketch else {
        let partials: Vec<Partial> = body.par_chunks(STATS_BLOCK).map(block_partial).collect();
        for p in &partials {
            acc.merge(p);
        }
        return;
    };
    let (k, per) = (s.k, s.per_block());
    for (g, group) in body.chunks(GROUP * STATS_BLOCK).enumerate() {
        let first = first + (g * GROUP) as u64;
        s.scratch.clear();
        s.scratch.resize(group.len() / STATS_BLOCK * k, 0.0);
        let partials: Vec<Partial> = group
            .par_chunks(STATS_BLOCK)
            .zip(s.scratch.par_chunks_mut(k))
            .enumerate()
            .map(|(i, (block, sk))| {
                let p = block_partial(block);
                block_sketch(block, (first + i as u64) * per, p.all_finite(), sk);
                p
            })
            .collect();
        for (p, sk) in partials.iter().zip(s.scratch.chunks(k)) {
            acc.merge(p);
            add_into(&mut s.total, sk);
        }
    }
}

/// Feeds F32 values to blake3 as little-endian bytes.
fn hash_f32(hasher: &mut blake3::Hasher, values: &[f32]) {
    #[cfg(target_endian = "little")]
    {
        let bytes: &[u8] = bytemuck::cast_slice(values);
        if bytes.len() >= 256 * 1024 {
            hasher.update_rayon(bytes);
        } else {
            hasher.update(bytes);
        }
    }
    #[cfg(target_endian = "big")]
    for chunk in values.chunks(1024) {
        let mut le = [0u8; 4096];
        for (dst, v) in le.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        hasher.update(&le[..chunk.len() * 4]);
    }
}

/// Mergeable partial statistics (Chan et al. for the variance).
#[derive(Debug, Clone, Copy)]
struct Partial {
    /// Finite values.
    count: u64,
    mean: f64,
    /// Sum of squared deviations from `mean`.
    m2: f64,
    /// Sum of squares of the finite values (for RMS).
    sumsq: f64,
    min: f32,
    max: f32,
    nan: u64,
    inf: u64,
}

impl Partial {
    const EMPTY: Partial = Partial {
        count: 0,
        mean: 0.0,
        m2: 0.0,
        sumsq: 0.0,
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        nan: 0,
        inf: 0,
    };

    /// No NaN or Inf among the block's values.
    fn all_finite(&self) -> bool {
        self.nan == 0 && self.inf == 0
    }

    fn merge(&mut self, other: &Partial) {
        self.nan += other.nan;
        self.inf += other.inf;
        self.sumsq += other.sumsq;
        if other.count == 0 {
            return;
        }
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if self.count == 0 {
            self.count = other.count;
            self.mean = other.mean;
            self.m2 = other.m2;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
    }
}

/// Statistics of one block (at most [`STATS_BLOCK`] elements).
///
/// The fast kernel assumes every value is finite: a NaN or Inf makes its sums non-finite, and
/// then the block is recomputed by the masked kernel. Both kernels assign element `i` to lane
/// `i % LANES` and reduce lanes in order, so the result does not depend on the CPU features.
fn block_partial(x: &[f32]) -> Partial {
    let shift = x.iter().copied().find(|v| v.is_finite()).unwrap_or(0.0);
    let k = f64::from(shift);
    let sums = fast_sums(x, k);
    if sums.s1.is_finite() && sums.s2.is_finite() && sums.sq.is_finite() {
        return sums.into_partial(x.len() as u64, k, 0, 0);
    }
    masked_partial(x, shift)
}

/// Lane sums of one block: Σd, Σd², Σx² (d = x - shift), min and max.
struct Sums {
    s1: f64,
    s2: f64,
    sq: f64,
    min: f32,
    max: f32,
}

impl Sums {
    fn into_partial(self, count: u64, k: f64, nan: u64, inf: u64) -> Partial {
        let (mean, m2) = if count == 0 {
            (0.0, 0.0)
        } else {
            let n = count as f64;
            (k + self.s1 / n, self.s2 - self.s1 * self.s1 / n)
        };
        Partial {
            count,
            mean,
            m2,
            sumsq: self.sq,
            min: self.min,
            max: self.max,
            nan,
            inf,
        }
    }
}

/// The same loop compiled for the widest vectors the CPU has (the lanes, and so the result,
/// are the same on every path).
fn fast_sums(x: &[f32], k: f64) -> Sums {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { fast_sums_avx512(x, k) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { fast_sums_avx2(x, k) };
        }
    }
    fast_sums_portable(x, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fast_sums_avx512(x: &[f32], k: f64) -> Sums {
    fast_sums_portable(x, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fast_sums_avx2(x: &[f32], k: f64) -> Sums {
    fast_sums_portable(x, k)
}

/// Written so the compiler vectorizes it: independent lanes, no branches, no NaN handling.
#[inline(always)]
fn fast_sums_portable(x: &[f32], k: f64) -> Sums {
    let mut lanes = Lanes::new();
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in c.iter().enumerate() {
            lanes.add(l, v, k);
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        lanes.add(l, v, k);
    }
    lanes.sums()
}

/// Per-lane accumulators; element `i` of a block always goes to lane `i % LANES`.
struct Lanes {
    s1: [f64; LANES],
    s2: [f64; LANES],
    sq: [f64; LANES],
    mn: [f32; LANES],
    mx: [f32; LANES],
}

impl Lanes {
    #[inline(always)]
    fn new() -> Self {
        Self {
            s1: [0.0; LANES],
            s2: [0.0; LANES],
            sq: [0.0; LANES],
            mn: [f32::INFINITY; LANES],
            mx: [f32::NEG_INFINITY; LANES],
        }
    }

    /// Adds a value assumed finite. Branch-free so the compiler vectorizes across lanes; a NaN
    /// is ignored by the comparisons but poisons the sums, which sends the block to
    /// [`masked_partial`].
    #[inline(always)]
    fn add(&mut self, l: usize, v: f32, k: f64) {
        let x64 = f64::from(v);
        let d = x64 - k;
        self.s1[l] += d;
        self.s2[l] += d * d;
        self.sq[l] += x64 * x64;
        self.mn[l] = if v < self.mn[l] { v } else { self.mn[l] };
        self.mx[l] = if v > self.mx[l] { v } else { self.mx[l] };
    }

    /// Reduces the lanes in lane order.
    #[inline(always)]
    fn sums(&self) -> Sums {
        Sums {
            s1: self.s1.iter().sum(),
            s2: self.s2.iter().sum(),
            sq: self.sq.iter().sum(),
            min: self.mn.iter().copied().fold(f32::INFINITY, f32::min),
            max: self.mx.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        }
    }
}

/// The exact kernel for blocks holding NaN or Inf: non-finite values are counted and skipped.
fn masked_partial(x: &[f32], shift: f32) -> Partial {
    let k = f64::from(shift);
    let mut lanes = Lanes::new();
    let (mut nan, mut inf) = (0u64, 0u64);
    for (i, &v) in x.iter().enumerate() {
        if v.is_nan() {
            nan += 1;
        } else if v.is_infinite() {
            inf += 1;
        } else {
            lanes.add(i % LANES, v, k);
        }
    }
    lanes
        .sums()
        .into_partial(x.len() as u64 - nan - inf, k, nan, inf)
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};
    use proptest::prelude::*;

    use super::*;

    /// The obvious computation every optimization must agree with.
    fn naive(values: &[f32]) -> (blake3::Hash, Option<f64>, Stats) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let n = values.len() as f64;
        let sumsq: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let rms = (sumsq / n).sqrt();
        let finite: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v))
            .collect();
        let m = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / m;
        let var = finite.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m;
        let some = !finite.is_empty();
        let stats = Stats {
            min: some.then(|| finite.iter().copied().fold(f64::INFINITY, f64::min)),
            max: some.then(|| finite.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            mean: some.then_some(mean),
            std: some.then(|| var.sqrt()),
            nan_count: values.iter().filter(|v| v.is_nan()).count() as u64,
            inf_count: values.iter().filter(|v| v.is_infinite()).count() as u64,
        };
        (blake3::hash(&bytes), rms.is_finite().then_some(rms), stats)
    }

    /// The stated bound: every statistic within 1e-9 of the naive value, relative to the
    /// largest magnitude present (f64 accumulation of f32 inputs loses far less than that).
    fn assert_close(a: Option<f64>, b: Option<f64>, scale: f64, what: &str) {
        match (a, b) {
            (Some(a), Some(b)) => {
                assert!(
                    (a - b).abs() <= 1e-9 * scale.max(1e-30),
                    "{what}: {a} vs {b}"
                )
            }
            (a, b) => assert_eq!(a.is_some(), b.is_some(), "{what}: {a:?} vs {b:?}"),
        }
    }

    fn check_against_naive(values: &[f32]) {
        let fp = fingerprint(Data::F32(values));
        let (hash, rms, stats) = naive(values);
        assert_eq!(fp.blake3, hash);
        assert_eq!(fp.num_elements, values.len() as u64);
        let scale = values
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f64, |m, &v| m.max(f64::from(v).abs()));
        assert_close(fp.rms, rms, scale, "rms");
        assert_eq!(fp.stats.min, stats.min);
        assert_eq!(fp.stats.max, stats.max);
        assert_close(fp.stats.mean, stats.mean, scale, "mean");
        assert_close(fp.stats.std, stats.std, scale, "std");
        assert_eq!(
            (fp.stats.nan_count, fp.stats.inf_count),
            (stats.nan_count, stats.inf_count)
        );
    }

    #[test]
    fn empty_tensor_is_defined() {
        let fp = fingerprint(Data::F32(&[]));
        assert_eq!(fp.blake3, blake3::hash(b""));
        assert_eq!((fp.num_elements, fp.rms), (0, None));
        assert_eq!(
            (fp.stats.min, fp.stats.mean, fp.stats.std),
            (None, None, None)
        );
    }

    #[test]
    fn scalar_and_known_values() {
        let fp = fingerprint(Data::F32(&[-2.0]));
        assert_eq!(fp.rms, Some(2.0));
        assert_eq!(
            (fp.stats.min, fp.stats.max, fp.stats.std),
            (Some(-2.0), Some(-2.0), Some(0.0))
        );
        let fp = fingerprint(Data::F32(&[3.0, 4.0]));
        assert_eq!(fp.rms, Some((12.5f64).sqrt()));
        assert_eq!((fp.stats.mean, fp.stats.std), (Some(3.5), Some(0.5)));
    }

    #[test]
    fn non_finite_values_are_counted_and_excluded() {
        let v = [
            1.0,
            f32::NAN,
            f32::INFINITY,
            -1.0,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let fp = fingerprint(Data::F32(&v));
        assert_eq!((fp.stats.nan_count, fp.stats.inf_count), (2, 2));
        assert_eq!(
            (fp.stats.min, fp.stats.max, fp.stats.mean),
            (Some(-1.0), Some(1.0), Some(0.0))
        );
        assert_eq!(fp.rms, None);
        let fp = fingerprint(Data::F32(&[f32::NAN; 3]));
        assert_eq!(
            (fp.stats.min, fp.stats.mean, fp.stats.nan_count),
            (None, None, 3)
        );
        check_against_naive(&v);
    }

    #[test]
    fn large_offset_does_not_cancel() {
        let v: Vec<f32> = (0..50_000).map(|i| 1.0e6 + (i % 7) as f32).collect();
        check_against_naive(&v);
        let fp = fingerprint(Data::F32(&v));
        assert!(fp.stats.std.unwrap() > 1.9 && fp.stats.std.unwrap() < 2.1);
    }

    #[test]
    fn large_input_takes_the_parallel_path_and_agrees() {
        let v: Vec<f32> = (0..(3 * PARALLEL_MIN + 123))
            .map(|i| ((i as f32) * 0.37).sin() * 10.0)
            .collect();
        check_against_naive(&v);
        let whole = fingerprint(Data::F32(&v));
        let mut fp = Fingerprinter::new();
        for c in v.chunks(5000) {
            fp.update(Data::F32(c)).unwrap();
        }
        assert_eq!(
            fp.finish(),
            whole,
            "chunked and whole must be bit-identical"
        );
    }

    #[test]
    fn every_dtype_converts_like_as_f32() {
        let f: Vec<f64> = (0..1000).map(|i| (i as f64 - 500.0) / 3.0).collect();
        let expect = |conv: Vec<f32>, data: Data<'_>| {
            assert_eq!(
                fingerprint(data),
                fingerprint(Data::F32(&conv)),
                "{:?}",
                data.dtype()
            );
        };
        expect(f.iter().map(|&v| v as f32).collect(), Data::F64(&f));
        let h: Vec<f16> = f.iter().map(|&v| f16::from_f64(v)).collect();
        expect(h.iter().map(|v| v.to_f32()).collect(), Data::F16(&h));
        let b: Vec<bf16> = f.iter().map(|&v| bf16::from_f64(v)).collect();
        expect(b.iter().map(|v| v.to_f32()).collect(), Data::BF16(&b));
        let i: Vec<i64> = (0..1000).map(|i| (i - 500) * 1_000_000_007).collect();
        expect(i.iter().map(|&v| v as f32).collect(), Data::I64(&i));
        let i: Vec<i32> = (0..1000).map(|i| i * 3 - 1000).collect();
        expect(i.iter().map(|&v| v as f32).collect(), Data::I32(&i));
        let u: Vec<u32> = (0..1000).map(|i| i * 4_000_000).collect();
        expect(u.iter().map(|&v| v as f32).collect(), Data::U32(&u));
        let u: Vec<u8> = (0..1000).map(|i| (i % 256) as u8).collect();
        expect(u.iter().map(|&v| f32::from(v)).collect(), Data::U8(&u));
    }

    #[test]
    fn parallel_conversion_agrees_with_converting_first() {
        let n = PARALLEL_MIN + STATS_BLOCK + 17;
        let b: Vec<bf16> = (0..n)
            .map(|i| bf16::from_f32((i % 1000) as f32 - 499.5))
            .collect();
        let converted: Vec<f32> = b.iter().map(|v| v.to_f32()).collect();
        assert_eq!(
            fingerprint(Data::BF16(&b)),
            fingerprint(Data::F32(&converted))
        );
        let mut with_nan = b.clone();
        with_nan[BATCH + 5] = bf16::NAN;
        with_nan[7] = bf16::INFINITY;
        let fp = fingerprint(Data::BF16(&with_nan));
        assert_eq!(
            (fp.stats.nan_count, fp.stats.inf_count, fp.rms),
            (1, 1, None)
        );
    }

    #[test]
    fn mixing_dtypes_is_an_error() {
        let mut fp = Fingerprinter::new();
        fp.update(Data::F32(&[1.0])).unwrap();
        let err = fp.update(Data::U8(&[1])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "chunk of dtype U8 fed to a capture of dtype F32"
        );
    }

    #[test]
    fn kept_values_are_the_converted_values() {
        let b: Vec<bf16> = (0..70_000).map(|i| bf16::from_f32(i as f32)).collect();
        let mut fp = Fingerprinter::new().keeping_values();
        fp.update(Data::BF16(&b)).unwrap();
        let (_, kept) = fp.finish_with_values();
        let expected: Vec<f32> = b.iter().map(|v| v.to_f32()).collect();
        assert_eq!(kept.unwrap(), expected);
    }

    fn sketched(k: usize, chunks: &[Data<'_>]) -> Vec<f64> {
        let mut fp = Fingerprinter::new().with_sketch(k).unwrap();
        for c in chunks {
            fp.update(*c).unwrap();
        }
        fp.finish().sketch.expect("asked for a sketch")
    }

    #[test]
    fn sketch_is_the_reference_on_every_path() {
        use crate::sketch::reference_sketch;
        // Long enough for the parallel F32 path and, as BF16, the parallel conversion.
        let n = 3 * PARALLEL_MIN + 4 * STATS_BLOCK + 123;
        let b: Vec<bf16> = (0..n)
            .map(|i| bf16::from_f32(((i as f32) * 0.37).sin() * 10.0))
            .collect();
        let mut v: Vec<f32> = b.iter().map(|x| x.to_f32()).collect();
        v[5] = f32::NAN;
        v[PARALLEL_MIN + 9] = f32::INFINITY;
        let mut b = b;
        b[5] = bf16::NAN;
        b[PARALLEL_MIN + 9] = bf16::INFINITY;
        for k in [64, 256, 1024] {
            let expected = reference_sketch(&v, k);
            assert_eq!(sketched(k, &[Data::F32(&v)]), expected, "k={k} whole");
            let (a, rest) = v.split_at(1000);
            assert_eq!(
                sketched(k, &[Data::F32(a), Data::F32(rest)]),
                expected,
                "k={k} chunked"
            );
            assert_eq!(sketched(k, &[Data::BF16(&b)]), expected, "k={k} bf16");
        }
        let off = Fingerprinter::new().with_sketch(0).unwrap();
        assert_eq!(off.finish().sketch, None);
        assert!(Fingerprinter::new().with_sketch(100).is_err());
    }

    fn any_f32() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -1.0e4f32..1.0e4,
            1 => any::<f32>(),
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(-0.0f32),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn matches_naive_and_is_chunking_invariant(
            values in proptest::collection::vec(any_f32(), 0..20_000),
            cuts in proptest::collection::vec(1usize..9000, 0..6),
        ) {
            check_against_naive(&values);
            let whole = fingerprint(Data::F32(&values));
            let mut fp = Fingerprinter::new();
            let mut rest = &values[..];
            for c in cuts {
                let (a, b) = rest.split_at(c.min(rest.len()));
                fp.update(Data::F32(a)).unwrap();
                rest = b;
            }
            fp.update(Data::F32(rest)).unwrap();
            prop_assert_eq!(fp.finish(), whole);
        }

        #[test]
        fn every_cpu_path_sums_bit_for_bit_alike(
            values in proptest::collection::vec(-1.0e4f32..1.0e4, 0..STATS_BLOCK),
            shift in -10.0f64..10.0,
        ) {
            let bits = |s: Sums| (s.s1.to_bits(), s.s2.to_bits(), s.sq.to_bits(), s.min, s.max);
            prop_assert_eq!(
                bits(fast_sums(&values, shift)),
                bits(fast_sums_portable(&values, shift))
            );
        }

        #[test]
        fn sketch_matches_reference_and_is_chunking_invariant(
            values in proptest::collection::vec(any_f32(), 0..20_000),
            cut in 0usize..20_000,
        ) {
            let cut = cut.min(values.len());
            let (a, b) = values.split_at(cut);
            prop_assert_eq!(
                sketched(256, &[Data::F32(a), Data::F32(b)]),
                crate::sketch::reference_sketch(&values, 256)
            );
        }

        #[test]
        fn streamed_bf16_hash_equals_hash_of_converted_buffer(
            bits in proptest::collection::vec(any::<u16>(), 0..(3 * BATCH)),
            cut in 0usize..(3 * BATCH),
        ) {
            let b: Vec<bf16> = bits.iter().map(|&x| bf16::from_bits(x)).collect();
            let converted: Vec<u8> = b.iter().flat_map(|v| v.to_f32().to_le_bytes()).collect();
            let mut fp = Fingerprinter::new();
            let cut = cut.min(b.len());
            fp.update(Data::BF16(&b[..cut])).unwrap();
            fp.update(Data::BF16(&b[cut..])).unwrap();
            prop_assert_eq!(fp.finish().blake3, blake3::hash(&converted));
        }
    }
}
