//! Top-k logits and probabilities by partial selection.
//!
//! realizar sorted the whole vocabulary (O(V log V), 128k entries per decode step) to show five
//! tokens. Here `select_nth_unstable_by` partitions in O(V) and only the k winners are sorted.
//! Ranking is total and deterministic: higher value first, ties by lower token id. NaN and
//! infinite logits are left out of the ranking (they are reported by the NaN/Inf checks, and JSON
//! cannot carry them); softmax runs over the finite logits only.

use std::cmp::Ordering;

/// Ranking order: higher value first, then lower token id. Only called on finite values.
fn rank(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// The `k` highest finite logits as `(token_id, logit)`, highest first, ties by lower id.
///
/// ```
/// use trace_events::top_k_logits;
/// assert_eq!(top_k_logits(&[0.5, 2.0, f32::NAN, 2.0, -1.0], 3), vec![(1, 2.0), (3, 2.0), (0, 0.5)]);
/// ```
pub fn top_k_logits(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut candidates: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, &v)| (i as u32, v))
        .collect();
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, rank);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(rank);
    candidates
}

/// Softmax normalizer over the finite logits divided by `temperature`: `(max, Σ exp(l/T - max))`
/// in f64. `None` when no logit is finite.
fn softmax_normalizer(logits: &[f32], temperature: f64) -> Option<(f64, f64)> {
    let max = logits
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| f64::from(v) / temperature)
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return None;
    }
    let sum = logits
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| (f64::from(v) / temperature - max).exp())
        .sum();
    Some((max, sum))
}

/// Probabilities of the `top` tokens under the softmax of all finite `logits` divided by
/// `temperature`, as `(token_id, probability)` in the order of `top`.
///
/// Numerically stable: the maximum is subtracted before `exp` and sums run in f64, so logits of
/// 1e4 give probabilities, not NaN. A `temperature` that is not a positive finite number (greedy
/// decoding uses 0) is treated as 1: there is no distribution to report, so the untempered one is
/// shown.
pub fn top_k_probs(logits: &[f32], top: &[(u32, f32)], temperature: f32) -> Vec<(u32, f32)> {
    let t = if temperature.is_finite() && temperature > 0.0 {
        f64::from(temperature)
    } else {
        1.0
    };
    let Some((max, sum)) = softmax_normalizer(logits, t) else {
        return Vec::new();
    };
    top.iter()
        .map(|&(id, logit)| (id, ((f64::from(logit) / t - max).exp() / sum) as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn full_sort(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| (i as u32, v))
            .collect();
        all.sort_by(rank);
        all.truncate(k);
        all
    }

    #[test]
    fn edge_cases() {
        assert!(top_k_logits(&[1.0, 2.0], 0).is_empty());
        assert!(top_k_logits(&[], 3).is_empty());
        assert_eq!(top_k_logits(&[1.0, 2.0], 5), vec![(1, 2.0), (0, 1.0)]);
        assert_eq!(
            top_k_logits(&[0.0, -0.0, 0.0], 2),
            vec![(0, 0.0), (1, -0.0)]
        );
        assert!(top_k_logits(&[f32::NAN, f32::INFINITY], 2).is_empty());
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let logits = [1e4f32, 1e4 - 1.0, -1e4, f32::NEG_INFINITY];
        let top = top_k_logits(&logits, 3);
        let probs = top_k_probs(&logits, &top, 1.0);
        let e = (-1.0f64).exp();
        assert!(
            (f64::from(probs[0].1) - 1.0 / (1.0 + e)).abs() < 1e-6,
            "{probs:?}"
        );
        assert!(
            (f64::from(probs[1].1) - e / (1.0 + e)).abs() < 1e-6,
            "{probs:?}"
        );
        assert_eq!(probs[2].1, 0.0);
        let total: f32 = top_k_probs(&logits, &top_k_logits(&logits, 4), 1.0)
            .iter()
            .map(|p| p.1)
            .sum();
        assert!((total - 1.0).abs() < 1e-6);
        let hot = top_k_probs(&[0.0, 1.0], &[(1, 1.0)], 0.5)[0].1;
        let cold = top_k_probs(&[0.0, 1.0], &[(1, 1.0)], 2.0)[0].1;
        assert!(hot > top_k_probs(&[0.0, 1.0], &[(1, 1.0)], 0.0)[0].1 && cold < 0.731);
    }

    proptest! {
        #[test]
        fn matches_a_full_sort(
            // Few distinct values so ties are common.
            logits in prop::collection::vec(prop_oneof![
                8 => (-4i8..4).prop_map(|v| f32::from(v) * 0.5),
                1 => Just(f32::NAN),
                1 => Just(f32::INFINITY),
                1 => any::<f32>(),
            ], 0..300),
            k in 0usize..40,
        ) {
            prop_assert_eq!(top_k_logits(&logits, k), full_sort(&logits, k));
        }
    }
}
