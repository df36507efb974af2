//! Bugs the engine can plant in itself, for `cargo xtask crossval --model minilm --inject NAME`.

use std::fmt;
use std::str::FromStr;

/// A bug planted in the candle MiniLM engine.
///
/// Each one is a mistake that real BERT ports have made. None crashes and each still produces
/// unit-length embeddings that look plausible, which is why a trace diff is needed to find it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bug {
    /// Self-attention ignores the padding mask: real tokens of a padded sentence attend to the
    /// `[PAD]` positions too (a mask that was built but never added to the scores).
    AttnMaskPadding,
    /// The MLP uses the tanh approximation of GELU (`gelu_new`) where the model was trained with
    /// the exact erf form (`hidden_act: "gelu"`).
    GeluTanh,
    /// Every layer norm uses a hard-coded epsilon of `1e-5` (PyTorch's `nn.LayerNorm` default)
    /// where the model says `layer_norm_eps: 1e-12`.
    LayerNormEps,
    /// Mean pooling divides by the padded length and sums the `[PAD]` positions too, instead of
    /// averaging over the attention mask.
    MeanPoolPadding,
}

/// Where a bug must first show up in a trace diff of the engine against a correct reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Name of the first diverging record, e.g. `layer0/attn_out`.
    pub name: &'static str,
    /// Layer of that record (-1 outside the encoder layers).
    pub layer: i64,
}

impl Bug {
    /// Every bug, in the order `--help` lists them.
    pub const ALL: [Bug; 4] = [
        Bug::AttnMaskPadding,
        Bug::GeluTanh,
        Bug::LayerNormEps,
        Bug::MeanPoolPadding,
    ];

    /// The `--inject` name.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AttnMaskPadding => "attn-mask-padding",
            Bug::GeluTanh => "gelu-tanh",
            Bug::LayerNormEps => "layernorm-eps",
            Bug::MeanPoolPadding => "mean-pool-padding",
        }
    }

    /// One line for `--help`.
    pub fn description(self) -> &'static str {
        match self {
            Bug::AttnMaskPadding => "self-attention ignores the padding mask (attends to [PAD])",
            Bug::GeluTanh => "GELU tanh approximation instead of the exact erf form",
            Bug::LayerNormEps => "layer norms use eps 1e-5 instead of the model's 1e-12",
            Bug::MeanPoolPadding => "mean pooling averages over [PAD] positions too",
        }
    }

    /// The first record a trace diff must name for this bug, given a batch that holds at least
    /// one padded sentence.
    pub fn expected(self) -> Expected {
        match self {
            Bug::AttnMaskPadding => Expected {
                name: "layer0/attn_out",
                layer: 0,
            },
            Bug::GeluTanh => Expected {
                name: "layer0/ffn_out",
                layer: 0,
            },
            Bug::LayerNormEps => Expected {
                name: "embeddings",
                layer: -1,
            },
            Bug::MeanPoolPadding => Expected {
                name: "pooled",
                layer: -1,
            },
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an unknown bug name; its message lists the known ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug {name:?}: expected one of {}", Bug::ALL.map(Bug::name).join(", "))]
pub struct UnknownBug {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>(), Ok(bug));
            assert_eq!(bug.to_string(), bug.name());
        }
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = "gelu".parse::<Bug>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown bug \"gelu\": expected one of attn-mask-padding, gelu-tanh, layernorm-eps, \
             mean-pool-padding"
        );
    }
}
