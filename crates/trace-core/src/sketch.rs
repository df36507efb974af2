//! The value sketch: a fixed-size linear summary of a tensor's values from which the relative L2
//! error between two records of the same layout can be estimated (see `docs/FORMAT.md`).
//!
//! # Design
//! A CountSketch with a structured hash so the per-element work vectorizes. The values are cut
//! into *sketch blocks* of `k` consecutive elements counted from the start of the tensor. For
//! sketch block `b` a pseudo-random rotation `r_b` in `0..k` and `k` pseudo-random signs
//! `s_b[j]` come from splitmix64 words of the block index; element `j` of the block is added,
//! with its sign, to bucket `(j + r_b) mod k`. Within a block no two elements share a bucket;
//! two elements of different blocks share one with probability `1/k`, as in a CountSketch whose
//! bucket hash is pairwise independent. So for `y = a - b`, `E[Σ_m (S(a) - S(b))_m²] = ||y||²`
//! and `Var ≤ 2 ||y||⁴ / k`: a relative standard deviation of at most `sqrt(2/k)` on the squared
//! norm, about half of that on the norm (4.4% for `k = 256`).
//!
//! # Invariants
//! - Bit-identical whatever the chunking and the thread count: every statistics block
//!   ([`crate::STATS_BLOCK`] elements) gets its own partial sketch, summed in f64 sequentially
//!   from `+0.0` over its sketch blocks in order, and the partials are added to the total in
//!   block order. `k` divides `STATS_BLOCK`.
//! - Non-finite values contribute nothing (they are counted by the statistics).

/// Buckets of the default sketch (`TENSOR_TRACE_SKETCH` unset).
pub const DEFAULT_SKETCH_K: usize = 256;
/// Smallest allowed number of buckets (one sign word per block).
pub const MIN_SKETCH_K: usize = 64;
/// Largest allowed number of buckets (bounds the per-block partials the parallel path keeps).
pub const MAX_SKETCH_K: usize = 1024;
/// The seed of the sign and rotation words, written in every record as `sketch.seed`.
pub const SKETCH_SEED: u64 = 1;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Checks a bucket count: a power of two in `MIN_SKETCH_K..=MAX_SKETCH_K`, or 0 for no sketch.
pub fn check_sketch_k(k: usize) -> std::result::Result<(), String> {
    if k == 0 || (k.is_power_of_two() && (MIN_SKETCH_K..=MAX_SKETCH_K).contains(&k)) {
        Ok(())
    } else {
        Err(format!(
            "expected 0 (off) or a power of two from {MIN_SKETCH_K} to {MAX_SKETCH_K}"
        ))
    }
}

/// The buckets a record of `n` elements gets under the setting `k`: `k`, or for a tensor of
/// fewer elements the smallest power of two holding them (at least [`MIN_SKETCH_K`]). A tensor
/// in one sketch block collides nowhere, so the smaller sketch is exact and the record smaller.
pub fn buckets_for(k: usize, n: u64) -> usize {
    if k == 0 {
        return 0;
    }
    let fit = usize::try_from(n).map_or(k, |n| n.next_power_of_two());
    fit.clamp(MIN_SKETCH_K, k)
}

/// Output number `q` (0-based) of the splitmix64 generator seeded with `seed`.
fn splitmix(seed: u64, q: u64) -> u64 {
    let mut z = seed.wrapping_add(q.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The rotation and sign masks (`0` or the f32 sign bit) of sketch block `b`.
///
/// Block `b` uses words `b·W .. b·W + W` of the stream, `W = 1 + k/64`: the first word's low
/// bits are the rotation, bit `j mod 64` of word `1 + j/64` the sign of element `j` (1 = minus).
#[inline(always)]
fn pattern(k: usize, b: u64, signs: &mut [u32]) -> usize {
    let words = 1 + k as u64 / 64;
    let base = b.wrapping_mul(words);
    let rot = (splitmix(SKETCH_SEED, base) as usize) & (k - 1);
    for (w, chunk) in signs[..k].chunks_exact_mut(64).enumerate() {
        let word = splitmix(SKETCH_SEED, base + 1 + w as u64);
        for (j, s) in chunk.iter_mut().enumerate() {
            *s = (((word >> j) & 1) as u32) << 31;
        }
    }
    rot
}

/// Adds the sketch of one statistics block (`x.len() ≤ STATS_BLOCK`, starting at sketch block
/// `first`) to `out` (`k` buckets, the caller zeroes it). `finite` says every value is finite;
/// otherwise non-finite values are skipped.
pub(crate) fn block_sketch(x: &[f32], first: u64, finite: bool, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { block_sketch_avx512(x, first, finite, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { block_sketch_avx2(x, first, finite, out) };
        }
    }
    block_sketch_portable(x, first, finite, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_sketch_avx512(x: &[f32], first: u64, finite: bool, out: &mut [f64]) {
    block_sketch_portable(x, first, finite, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_sketch_avx2(x: &[f32], first: u64, finite: bool, out: &mut [f64]) {
    block_sketch_portable(x, first, finite, out)
}

/// The same operations in the same order on every CPU; written so the compiler vectorizes it.
#[inline(always)]
fn block_sketch_portable(x: &[f32], first: u64, finite: bool, out: &mut [f64]) {
    let k = out.len();
    let mut signs = [0u32; MAX_SKETCH_K];
    for (t, sub) in x.chunks(k).enumerate() {
        let rot = pattern(k, first + t as u64, &mut signs);
        // Element j goes to bucket (j + rot) mod k: two contiguous runs, so the loops vectorize.
        let split = (k - rot).min(sub.len());
        if finite {
            add_signed(&mut out[rot..rot + split], &sub[..split], &signs[..split]);
            add_signed(
                &mut out[..sub.len() - split],
                &sub[split..],
                &signs[split..sub.len()],
            );
        } else {
            add_signed_finite(&mut out[rot..rot + split], &sub[..split], &signs[..split]);
            let rest = sub.len() - split;
            add_signed_finite(&mut out[..rest], &sub[split..], &signs[split..sub.len()]);
        }
    }
}

#[inline(always)]
fn add_signed(out: &mut [f64], x: &[f32], signs: &[u32]) {
    for ((o, &v), &s) in out.iter_mut().zip(x).zip(signs) {
        *o += f64::from(f32::from_bits(v.to_bits() ^ s));
    }
}

/// [`add_signed`] with non-finite values adding `+0.0`: a no-op, since a sum that starts at
/// `+0.0` is never `-0.0`.
#[inline(always)]
fn add_signed_finite(out: &mut [f64], x: &[f32], signs: &[u32]) {
    for ((o, &v), &s) in out.iter_mut().zip(x).zip(signs) {
        let v = if v.is_finite() { v } else { 0.0 };
        *o += f64::from(f32::from_bits(v.to_bits() ^ s));
    }
}

/// The sketch of `values` computed the obvious way (the definition the fast path must match).
#[cfg(test)]
pub(crate) fn reference_sketch(values: &[f32], k: usize) -> Vec<f64> {
    let mut total = vec![0.0f64; k];
    let mut signs = [0u32; MAX_SKETCH_K];
    for (s, block) in values.chunks(crate::STATS_BLOCK).enumerate() {
        let mut partial = vec![0.0f64; k];
        let per = (crate::STATS_BLOCK / k) as u64;
        for (t, sub) in block.chunks(k).enumerate() {
            let rot = pattern(k, s as u64 * per + t as u64, &mut signs);
            for (j, &v) in sub.iter().enumerate() {
                let v = if v.is_finite() { f64::from(v) } else { 0.0 };
                let signed = if signs[j] != 0 { -v } else { v };
                partial[(j + rot) % k] += signed;
            }
        }
        for (t, p) in total.iter_mut().zip(&partial) {
            *t += p;
        }
    }
    total
}

/// Estimated `||a - b||²` from two sketches of the same `k`, layout and element count.
pub fn estimate_sq_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_must_be_a_power_of_two_in_range() {
        for ok in [0, 64, 256, 1024] {
            assert!(check_sketch_k(ok).is_ok(), "{ok}");
        }
        for bad in [1, 32, 100, 2048] {
            assert!(check_sketch_k(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn small_tensors_get_small_exact_sketches() {
        assert_eq!(buckets_for(256, 0), 64);
        assert_eq!(buckets_for(256, 16), 64);
        assert_eq!(buckets_for(256, 100), 128);
        assert_eq!(buckets_for(256, 1 << 30), 256);
        assert_eq!(buckets_for(0, 100), 0);
        let y: Vec<f32> = (0..100).map(|i| i as f32 - 50.0).collect();
        let exact: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let s = reference_sketch(&y, buckets_for(256, 100));
        assert_eq!(estimate_sq_distance(&s, &[0.0; 128]), exact);
    }

    #[test]
    fn splitmix_matches_the_published_sequence() {
        // splitmix64 seeded with 1234567: the first outputs of Vigna's reference code.
        assert_eq!(splitmix(1234567, 0), 6457827717110365317);
        assert_eq!(splitmix(1234567, 1), 3203168211198807973);
    }

    #[test]
    fn estimates_the_norm_of_a_difference() {
        // Over many independent vectors, the estimate of ||y||² averages to ||y||² and its
        // spread stays within the bound sqrt(2/k).
        let k = 256;
        let n = 20_000;
        let mut ratios = Vec::new();
        for trial in 0..200u64 {
            let y: Vec<f32> = (0..n)
                .map(|i| (splitmix(trial, i) as i64 as f64 / i64::MAX as f64) as f32)
                .collect();
            let exact: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let s = reference_sketch(&y, k);
            ratios.push(estimate_sq_distance(&s, &vec![0.0; k]) / exact);
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        let var = ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / ratios.len() as f64;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        assert!(
            var.sqrt() < 1.2 * (2.0 / k as f64).sqrt(),
            "std {}",
            var.sqrt()
        );
    }
}
