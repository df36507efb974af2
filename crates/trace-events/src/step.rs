//! The states of the inference state machine, their names and how users spell them.
//!
//! **API boundary:** [`TraceStep::name`] is the `step` field of the event format, and the aliases
//! are what `--trace=...` and `TENSOR_TRACE_STEPS` accept.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One state of the inference pipeline (AWS Step Functions style state names).
///
/// Steps 1 to 6 are the text-in, text-out pipeline; layer norm, attention, FFN and the
/// transformer block all belong to step 3; kernel launches (7) and brick profiles (8) describe
/// how a step ran rather than what it computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TraceStep {
    /// Tokenization: text to token ids.
    #[serde(rename = "TOKENIZE", alias = "ENCODE")]
    Tokenize,
    /// Token embedding lookup: token ids to vectors.
    #[serde(rename = "EMBED")]
    Embed,
    /// Layer normalization (RMSNorm or LayerNorm).
    #[serde(rename = "LAYER_NORM")]
    LayerNorm,
    /// Attention.
    #[serde(rename = "ATTENTION")]
    Attention,
    /// Feed-forward network (MLP).
    #[serde(rename = "FFN")]
    Ffn,
    /// A whole transformer block (contains attention and FFN).
    #[serde(rename = "TRANSFORMER_BLOCK", alias = "TRANSFORMER")]
    TransformerBlock,
    /// LM head projection: hidden state to logits.
    #[serde(rename = "LM_HEAD")]
    LmHead,
    /// Sampling: logits to a token id.
    #[serde(rename = "SAMPLE")]
    Sample,
    /// Decoding: token id to text.
    #[serde(rename = "DECODE")]
    Decode,
    /// A GPU kernel launch (PTX-level tracing).
    #[serde(rename = "KERNEL_LAUNCH")]
    KernelLaunch,
    /// A compute brick profiling breakdown.
    #[serde(rename = "BRICK_PROFILE")]
    BrickProfile,
}

/// Every step with its accepted lowercase spellings; the first alias is the canonical one.
const ALIASES: [(TraceStep, &[&str]); 11] = [
    (TraceStep::Tokenize, &["tokenize", "encode"]),
    (TraceStep::Embed, &["embed", "embedding"]),
    (
        TraceStep::LayerNorm,
        &["layernorm", "layer_norm", "ln", "norm"],
    ),
    (TraceStep::Attention, &["attention", "attn"]),
    (TraceStep::Ffn, &["ffn", "mlp"]),
    (
        TraceStep::TransformerBlock,
        &["transformer_block", "transformer", "block", "layer"],
    ),
    (TraceStep::LmHead, &["lm_head", "lmhead", "head"]),
    (TraceStep::Sample, &["sample", "sampling"]),
    (TraceStep::Decode, &["decode", "detokenize"]),
    (
        TraceStep::KernelLaunch,
        &["kernel_launch", "kernel", "ptx", "cuda"],
    ),
    (
        TraceStep::BrickProfile,
        &["brick_profile", "brick", "bricks", "profiler"],
    ),
];

impl TraceStep {
    /// Every step, in pipeline order.
    pub const ALL: [TraceStep; 11] = [
        TraceStep::Tokenize,
        TraceStep::Embed,
        TraceStep::LayerNorm,
        TraceStep::Attention,
        TraceStep::Ffn,
        TraceStep::TransformerBlock,
        TraceStep::LmHead,
        TraceStep::Sample,
        TraceStep::Decode,
        TraceStep::KernelLaunch,
        TraceStep::BrickProfile,
    ];

    /// The state name written to the `step` field: `TOKENIZE`, `LAYER_NORM`, ...
    pub fn name(self) -> &'static str {
        match self {
            TraceStep::Tokenize => "TOKENIZE",
            TraceStep::Embed => "EMBED",
            TraceStep::LayerNorm => "LAYER_NORM",
            TraceStep::Attention => "ATTENTION",
            TraceStep::Ffn => "FFN",
            TraceStep::TransformerBlock => "TRANSFORMER_BLOCK",
            TraceStep::LmHead => "LM_HEAD",
            TraceStep::Sample => "SAMPLE",
            TraceStep::Decode => "DECODE",
            TraceStep::KernelLaunch => "KERNEL_LAUNCH",
            TraceStep::BrickProfile => "BRICK_PROFILE",
        }
    }

    /// The pre-3.0 spelling realizar used (`ENCODE`, `TRANSFORMER`); kept so old files and
    /// scripts still read. The parser accepts these too.
    pub fn legacy_name(self) -> &'static str {
        match self {
            TraceStep::Tokenize => "ENCODE",
            TraceStep::TransformerBlock => "TRANSFORMER",
            other => other.name(),
        }
    }

    /// Position in the 8-step pipeline (3 for everything inside a transformer layer).
    pub fn step_number(self) -> usize {
        match self {
            TraceStep::Tokenize => 1,
            TraceStep::Embed => 2,
            TraceStep::LayerNorm
            | TraceStep::Attention
            | TraceStep::Ffn
            | TraceStep::TransformerBlock => 3,
            TraceStep::LmHead => 4,
            TraceStep::Sample => 5,
            TraceStep::Decode => 6,
            TraceStep::KernelLaunch => 7,
            TraceStep::BrickProfile => 8,
        }
    }

    /// The lowercase spellings the parser accepts; the first is the canonical one.
    pub fn aliases(self) -> &'static [&'static str] {
        ALIASES
            .iter()
            .find(|(step, _)| *step == self)
            .map(|(_, names)| *names)
            .unwrap_or(&[])
    }

    /// Parses one step name, case-insensitively, accepting every alias, the state name
    /// (`LM_HEAD`) and the legacy name (`ENCODE`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let wanted = s.trim();
        TraceStep::ALL
            .into_iter()
            .find(|step| {
                step.aliases()
                    .iter()
                    .chain([step.name(), step.legacy_name()].iter())
                    .any(|alias| alias.eq_ignore_ascii_case(wanted))
            })
            .ok_or_else(|| Error::UnknownStep {
                found: wanted.to_owned(),
                expected: valid_steps(),
            })
    }
}

impl fmt::Display for TraceStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TraceStep {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceStep::parse(s)
    }
}

/// The accepted names, one group per step: `tokenize (encode), embed (embedding), ...`.
pub fn valid_steps() -> String {
    TraceStep::ALL
        .iter()
        .map(|step| {
            let (first, rest) = step
                .aliases()
                .split_first()
                .expect("every step has aliases");
            if rest.is_empty() {
                (*first).to_owned()
            } else {
                format!("{first} ({})", rest.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a step list such as `tokenize,sample` (the value of `--trace=` or of
/// `TENSOR_TRACE_STEPS`); a leading `--trace=` is tolerated.
///
/// An empty list, `all` or `*` means every step and returns an empty set, as
/// [`TraceConfig::steps`](super::TraceConfig::steps) reads it. Blank items (`a,,b`) are skipped.
pub fn parse_steps(s: &str) -> Result<HashSet<TraceStep>, Error> {
    let list = s.trim();
    let list = list.strip_prefix("--trace=").unwrap_or(list);
    let mut steps = HashSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "*" || part.eq_ignore_ascii_case("all") {
            return Ok(HashSet::new());
        }
        steps.insert(TraceStep::parse(part)?);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&[TraceStep], &str>) {
        let got = parse_steps(input);
        match expected {
            Ok(steps) => assert_eq!(got.unwrap(), steps.iter().copied().collect(), "{input}"),
            Err(name) => assert!(
                matches!(got, Err(Error::UnknownStep { ref found, .. }) if found == name),
                "{input}"
            ),
        }
    }

    #[test]
    fn step_lists() {
        use TraceStep::*;
        check("tokenize,sample", Ok(&[Tokenize, Sample]));
        check("--trace=ENCODE, Attn ,mlp", Ok(&[Tokenize, Attention, Ffn]));
        check("lm_head,LM_HEAD,head", Ok(&[LmHead]));
        check(
            "ptx,bricks,layer,ln",
            Ok(&[KernelLaunch, BrickProfile, TransformerBlock, LayerNorm]),
        );
        check("", Ok(&[]));
        check("all", Ok(&[]));
        check("decode,,detokenize", Ok(&[Decode]));
        check("tokenize,smaple", Err("smaple"));
    }

    #[test]
    fn unknown_lists_valid_names() {
        let msg = TraceStep::parse("foo").unwrap_err().to_string();
        assert!(msg.starts_with("unknown trace step \"foo\", expected one of: tokenize (encode)"));
        for step in TraceStep::ALL {
            assert!(msg.contains(step.aliases()[0]), "{msg}");
        }
    }

    #[test]
    fn every_name_parses_back() {
        for step in TraceStep::ALL {
            assert_eq!(TraceStep::parse(step.name()).unwrap(), step);
            assert_eq!(TraceStep::parse(step.legacy_name()).unwrap(), step);
            for alias in step.aliases() {
                assert_eq!(alias.parse::<TraceStep>().unwrap(), step);
            }
            let json = serde_json::to_string(&step).unwrap();
            assert_eq!(json, format!("\"{}\"", step.name()));
            assert_eq!(serde_json::from_str::<TraceStep>(&json).unwrap(), step);
        }
    }

    #[test]
    fn step_numbers_follow_the_pipeline() {
        let numbers: Vec<usize> = TraceStep::ALL.iter().map(|s| s.step_number()).collect();
        assert_eq!(numbers, [1, 2, 3, 3, 3, 3, 4, 5, 6, 7, 8]);
    }
}
