//! What a valued pair keeps of its elements for the report's detail: a histogram of `|a - b|`
//! on fixed log-spaced bins and the few worst elements, side by side. Both are small and of a
//! fixed size whatever the tensor's, so a report of many valued pairs stays small.
//!
//! The histogram's bins are decades of `|a - b| / scale`, where `scale` is the reference's RMS
//! (`||b|| / sqrt(n)` over the finite pairs): "how far off, relative to the tensor's typical
//! magnitude", the same yardstick as the pair's relative L2 error. When B is all zeros the scale
//! is 1 and the bins are absolute ([`ErrorHistogram::relative`] says which).

use serde::Serialize;

use crate::format::finite_or_null;

/// Lowest decade of the histogram: bin 2 starts at `10^LOWEST_DECADE * scale`.
pub const LOWEST_DECADE: i32 = -9;

/// Decade bins of the histogram, from [`LOWEST_DECADE`] up to `10^1 * scale`.
pub const DECADES: usize = 10;

/// Bins: exact zeros, below the lowest decade, [`DECADES`] decades, at or above `10 * scale`.
pub const BINS: usize = DECADES + 3;

/// Worst elements kept per pair.
pub const WORST: usize = 8;

/// The distribution of `|a - b|` over the finite pairs of elements (JSON `values.histogram`).
///
/// `counts[0]`: `|a - b| = 0`; `counts[1]`: above 0, below `1e-9 * scale`; `counts[2 + i]` for
/// `i` in `0..10`: from `10^(i-9) * scale` up to (not including) `10^(i-8) * scale`;
/// `counts[12]`: `10 * scale` or more. Pairs with a NaN or an infinity on either side are not
/// counted (see `nonfinite_mismatches`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorHistogram {
    /// What `|a - b|` is divided by: B's RMS, or 1 when B is all zeros.
    #[serde(serialize_with = "finite_or_null")]
    pub scale: f64,
    /// Whether `scale` is B's RMS (else the bins are absolute).
    pub relative: bool,
    /// Element counts per bin.
    pub counts: [u32; BINS],
}

/// One of the worst elements: its flat index in C order (of A's shape) and both values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WorstElement {
    /// Flat index in C order.
    pub flat: u64,
    /// Side-A value.
    #[serde(serialize_with = "finite_or_null")]
    pub a: f64,
    /// Side-B value.
    #[serde(serialize_with = "finite_or_null")]
    pub b: f64,
}

impl WorstElement {
    /// `|a - b|`.
    pub fn abs_diff(&self) -> f64 {
        (self.a - self.b).abs()
    }
}

/// The `k` largest `|a - b|` seen, largest first; ties keep the earlier index.
#[derive(Debug, Clone)]
pub(crate) struct TopK {
    k: usize,
    /// `(|a - b|, flat index)`, sorted by decreasing difference.
    best: Vec<(f64, usize)>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            best: Vec::with_capacity(k + 1),
        }
    }

    /// Offers element `i` whose difference is `d` (finite); zeros are never kept. Elements
    /// must come in increasing index order for ties to go to the earlier one.
    #[inline]
    pub(crate) fn offer(&mut self, d: f64, i: usize) {
        if d <= 0.0 || (self.best.len() == self.k && d <= self.best[self.k - 1].0) {
            return;
        }
        self.insert(d, i);
    }

    #[cold]
    fn insert(&mut self, d: f64, i: usize) {
        // After every kept element whose difference is at least `d`: earlier indices win ties.
        let at = self.best.partition_point(|&(x, _)| x >= d);
        self.best.insert(at, (d, i));
        self.best.truncate(self.k);
    }

    /// The kept elements with their values, largest difference first.
    pub(crate) fn finish(self, a: &[f64], b: &[f64]) -> Vec<WorstElement> {
        self.best
            .into_iter()
            .map(|(_, i)| WorstElement {
                flat: i as u64,
                a: a[i],
                b: b[i],
            })
            .collect()
    }
}

/// The histogram of `|a - b|` over the finite pairs, relative to `rms_b` (absolute when it is
/// 0 or not finite).
pub(crate) fn histogram(a: &[f64], b: &[f64], rms_b: f64) -> ErrorHistogram {
    let relative = rms_b > 0.0 && rms_b.is_finite();
    let scale = if relative { rms_b } else { 1.0 };
    let edges: [f64; DECADES + 1] =
        std::array::from_fn(|i| scale * 10f64.powi(LOWEST_DECADE + i as i32));
    let mut counts = [0u32; BINS];
    for (&x, &y) in a.iter().zip(b) {
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let bin = bin(&edges, (x - y).abs());
        counts[bin] = counts[bin].saturating_add(1);
    }
    ErrorHistogram {
        scale,
        relative,
        counts,
    }
}

/// The bin of the difference `d` given the decade edges.
#[inline]
fn bin(edges: &[f64; DECADES + 1], d: f64) -> usize {
    if d == 0.0 {
        0
    } else {
        1 + edges.partition_point(|&e| e <= d)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bins_are_decades_of_the_scale() {
        let check = |d: f64, expected: usize| {
            let h = histogram(&[d], &[0.0], 0.0);
            assert!(!h.relative);
            assert_eq!(h.counts.iter().position(|&c| c == 1), Some(expected), "{d}");
        };
        check(0.0, 0);
        check(1e-12, 1);
        check(1e-9, 2);
        check(5e-9, 2);
        check(1e-8, 3);
        check(0.5, 10);
        check(1.0, 11);
        check(9.99, 11);
        check(10.0, 12);
        check(1e30, 12);
        // Relative to B's RMS: with scale 2, a difference of 2e-6 is in the 1e-6 decade.
        let h = histogram(&[2e-6, f64::NAN], &[0.0, 1.0], 2.0);
        assert!(h.relative);
        assert_eq!(h.scale, 2.0);
        assert_eq!(h.counts[2 + 3], 1);
        assert_eq!(
            h.counts.iter().sum::<u32>(),
            1,
            "non-finite pairs are not counted"
        );
    }

    #[test]
    fn top_k_keeps_the_largest_and_the_earlier_of_ties() {
        let a: [f64; 6] = [0.0, 3.0, 1.0, 3.0, 0.5, 0.0];
        let b = [0.0; 6];
        let mut t = TopK::new(3);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            t.offer((x - y).abs(), i);
        }
        let flats: Vec<u64> = t.finish(&a, &b).iter().map(|w| w.flat).collect();
        assert_eq!(flats, [1, 3, 2]);
        let mut t = TopK::new(3);
        t.offer(0.0, 0);
        assert!(
            t.finish(&a, &b).is_empty(),
            "zeros are never worst elements"
        );
    }

    /// What a valued pair keeps beyond its metrics stays within the figure docs/FORMAT.md gives.
    #[test]
    fn a_valued_pair_keeps_at_most_280_bytes_more() {
        use std::mem::size_of;
        let bytes = size_of::<ErrorHistogram>()
            + size_of::<Vec<WorstElement>>()
            + WORST * size_of::<WorstElement>();
        assert!(bytes <= 280, "{bytes} bytes");
    }

    proptest! {
        /// The top k equal the first k of the nonzero differences sorted largest first (ties by
        /// index).
        #[test]
        fn top_k_is_the_sorts_first_k(
            d in proptest::collection::vec(prop_oneof![Just(0.0), Just(1.0), 0.0..4.0f64], 0..60),
            k in 1usize..10,
        ) {
            let mut t = TopK::new(k);
            for (i, &x) in d.iter().enumerate() {
                t.offer(x, i);
            }
            let zeros = vec![0.0; d.len()];
            let got: Vec<u64> = t.finish(&d, &zeros).iter().map(|w| w.flat).collect();
            let mut sorted: Vec<(f64, usize)> =
                d.iter().copied().enumerate().filter(|(_, x)| *x > 0.0).map(|(i, x)| (x, i)).collect();
            sorted.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
            let expected: Vec<u64> = sorted.iter().take(k).map(|p| p.1 as u64).collect();
            prop_assert_eq!(got, expected);
        }

        /// Every finite pair lands in one bin, the decade `floor(log10(|a - b| / scale))` says
        /// (up to rounding at a power of ten).
        #[test]
        fn histogram_bins_are_the_log10_decades(
            pairs in proptest::collection::vec((-1e3..1e3f64, -30.0..3.0f64), 1..40),
            rms in prop_oneof![Just(0.0), 1e-3..1e3f64],
        ) {
            let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let b: Vec<f64> = pairs.iter().map(|p| p.0 + 10f64.powf(p.1)).collect();
            let h = histogram(&a, &b, rms);
            prop_assert_eq!(h.counts.iter().sum::<u32>() as usize, a.len());
            for (x, y) in a.iter().zip(&b) {
                let d = (x - y).abs();
                let one = histogram(&[*x], &[*y], rms);
                let k = one.counts.iter().position(|&c| c == 1).unwrap();
                let decade = (d / h.scale).log10();
                let expected = if d == 0.0 {
                    0
                } else {
                    (decade.floor() as i64 - i64::from(LOWEST_DECADE) + 2).clamp(1, BINS as i64 - 1) as usize
                };
                let near_edge = (decade - decade.round()).abs() < 1e-9;
                prop_assert!(k == expected || near_edge, "d {} scale {} bin {} expected {}", d, h.scale, k, expected);
            }
        }
    }
}
