//! Realistic bugs the candle engine can plant in itself, for cross-validation demos and tests.

use std::fmt;
use std::str::FromStr;

/// A bug planted in the candle engine (`cargo xtask crossval --inject NAME`).
///
/// Each one is a mistake that real ports of Llama-style models have made; each leaves the model
/// running and producing plausible text, which is why a trace diff is needed to find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bug {
    /// Decode steps rotate queries and keys for position `pos + 1`: the offset is taken from the
    /// cache length after the new token was counted.
    RopeOffByOne,
    /// Attention scores go into the softmax without the `1/sqrt(head_dim)` scale.
    SoftmaxNoScale,
    /// RMSNorm adds an epsilon ten times the configured one (a hard-coded `1e-5` where the model
    /// says `1e-6`).
    RmsNormEps,
    /// Decode steps attend over the KV cache without its newest entry (the current token's own
    /// key and value): an off-by-one in the cache slice.
    KvCacheDropNewest,
    /// The last layer's MLP gate weight is read with its data transposed (the bytes of `Wᵀ`
    /// under the shape of `W`), like a converter that mixed up the linear layout.
    MlpTransposedWeight,
    /// The last layer builds its own causal mask (as a sliding-window layer with a mask builder
    /// of its own would) with `>=` for `>`: the diagonal is hidden too, so the first prompt
    /// token's row is fully masked and its softmax is `0 / 0 = NaN`. The event history's Jidoka
    /// check reports the NaN in that layer's ATTENTION output at iteration 0.
    AttnMaskNan,
}

/// Where a bug must first show up in a trace diff: the first diverging record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Record name, e.g. `blk0/q_rope`.
    pub name: String,
    /// Layer of that record.
    pub layer: i64,
    /// `seq` of that record: 0 = prefill, s = decode step s.
    pub seq: u64,
}

impl Bug {
    /// Every bug, in the order `--help` lists them.
    pub const ALL: [Bug; 6] = [
        Bug::RopeOffByOne,
        Bug::SoftmaxNoScale,
        Bug::RmsNormEps,
        Bug::KvCacheDropNewest,
        Bug::MlpTransposedWeight,
        Bug::AttnMaskNan,
    ];

    /// The `--inject` name.
    pub fn name(self) -> &'static str {
        match self {
            Bug::RopeOffByOne => "rope-off-by-one",
            Bug::SoftmaxNoScale => "softmax-no-scale",
            Bug::RmsNormEps => "rmsnorm-eps",
            Bug::KvCacheDropNewest => "kv-cache-drop-newest",
            Bug::MlpTransposedWeight => "mlp-transposed-weight",
            Bug::AttnMaskNan => "attn-mask-nan",
        }
    }

    /// One line for `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Bug::RopeOffByOne => "decode steps apply rotary embeddings at position pos+1",
            Bug::SoftmaxNoScale => "attention softmax without the 1/sqrt(head_dim) scale",
            Bug::RmsNormEps => "RMSNorm epsilon 10x the configured value (1e-5 for 1e-6)",
            Bug::KvCacheDropNewest => {
                "decode steps attend over the KV cache minus its newest entry"
            }
            Bug::MlpTransposedWeight => {
                "last layer's MLP gate weight read with its data transposed"
            }
            Bug::AttnMaskNan => {
                "last layer's causal mask also hides the diagonal: a fully masked row, NaN softmax"
            }
        }
    }

    /// Whether the bug only shows in decode steps (so needs at least one).
    pub fn decode_only(self) -> bool {
        matches!(self, Bug::RopeOffByOne | Bug::KvCacheDropNewest)
    }

    /// The layer whose MLP [`Bug::MlpTransposedWeight`] corrupts in a model of `layers` layers.
    pub fn mlp_layer(layers: usize) -> usize {
        layers.saturating_sub(1)
    }

    /// The layer whose causal mask [`Bug::AttnMaskNan`] breaks in a model of `layers` layers.
    pub fn mask_layer(layers: usize) -> usize {
        layers.saturating_sub(1)
    }

    /// The first record a trace diff must report for this bug in a model of `layers` layers.
    pub fn expected(self, layers: usize) -> Expected {
        let (name, layer, seq) = match self {
            Bug::RopeOffByOne => ("blk0/q_rope".to_owned(), 0, 1),
            Bug::SoftmaxNoScale => ("blk0/attn_probs".to_owned(), 0, 0),
            Bug::RmsNormEps => ("blk0/attn_norm".to_owned(), 0, 0),
            Bug::KvCacheDropNewest => ("blk0/attn_probs".to_owned(), 0, 1),
            Bug::MlpTransposedWeight => {
                let l = Bug::mlp_layer(layers);
                (format!("blk{l}/ffn_gate"), l as i64, 0)
            }
            Bug::AttnMaskNan => {
                let l = Bug::mask_layer(layers);
                (format!("blk{l}/attn_probs"), l as i64, 0)
            }
        };
        Expected { name, layer, seq }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Bug::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug {found:?}, expected one of: {}", Bug::ALL.map(Bug::name).join(", "))]
pub struct UnknownBug {
    /// The name that was given.
    pub found: String,
}

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug {
                found: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for b in Bug::ALL {
            assert_eq!(b.name().parse::<Bug>().unwrap(), b);
            assert!(!b.description().is_empty());
        }
        let err = "rope".parse::<Bug>().unwrap_err().to_string();
        assert!(err.contains("rope-off-by-one, softmax-no-scale"), "{err}");
    }

    #[test]
    fn expected_points() {
        let e = Bug::MlpTransposedWeight.expected(3);
        assert_eq!((e.name.as_str(), e.layer, e.seq), ("blk2/ffn_gate", 2, 0));
        assert_eq!(Bug::RopeOffByOne.expected(3).seq, 1);
        let e = Bug::AttnMaskNan.expected(2);
        assert_eq!((e.name.as_str(), e.layer, e.seq), ("blk1/attn_probs", 1, 0));
    }
}
