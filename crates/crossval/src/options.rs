//! The settings of one crossval run, as `crate::args` parses them or a test writes them, and
//! the reference's capabilities enforced on them whatever the model.

use std::path::PathBuf;

use anyhow::{bail, Result};
pub use reference_engine::seeded::Size;

use crate::judge::Judge;
use crate::reference::{self, Reference};
use crate::task::{Model, Precision};

/// Settings of one crossval run.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The model.
    pub model: Model,
    /// Where the model, its inputs and every trace directory go.
    pub out: PathBuf,
    /// The reference the engine is compared with; `None` for a model whose own program computes
    /// the reference side ([`Model::default_reference`]).
    pub reference: Option<&'static dyn Reference>,
    /// `--against NAME`: this reference takes the candle engine's place as side A (run in the
    /// engine's precision), compared with `reference` through their engine views.
    pub against: Option<&'static dyn Reference>,
    /// Calibrated verdicts or tolerances.
    pub judge: Judge,
    /// `Some(window)`: run through trace-cli's bisect instead (hash-only, then values for the
    /// first divergence and the `window` records before it).
    pub bisect: Option<usize>,
    /// Print the JSON report instead of the text one.
    pub json: bool,
    /// No progress lines (tests).
    pub quiet: bool,
    /// The synthetic model's settings.
    pub synthetic: Synthetic,
    /// The MiniLM model's settings.
    pub minilm: MiniLm,
    /// The tensor-parallel run's settings.
    pub tp: TensorParallel,
    /// The SmolLM2 GGUF's settings.
    pub smollm2: SmolLm2,
}

/// Settings of the synthetic model (`--model synthetic`).
#[derive(Clone, Debug, PartialEq)]
pub struct Synthetic {
    /// Transformer layers.
    pub layers: usize,
    /// Decode steps after the prefill.
    pub steps: usize,
    /// Seed of the weights.
    pub seed: u64,
    /// Model width preset.
    pub size: Size,
    /// The prompt, tokenized byte by byte.
    pub prompt: String,
    /// A bug to plant in the candle engine.
    pub inject: Option<trace_candle::engine::Bug>,
    /// The candle engine's precision: F32 (default) or BF16.
    pub precision: Precision,
}

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic {
            layers: 2,
            steps: 4,
            seed: 42,
            size: Size::Tiny,
            prompt: "The quick brown fox".to_owned(),
            inject: None,
            precision: Precision::F32,
        }
    }
}

/// Settings of the MiniLM model (`--model minilm`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MiniLm {
    /// Truncation length in tokens; `None`: the model's own (sentence-transformers'
    /// `max_seq_length`), on both sides.
    pub max_tokens: Option<usize>,
    /// A bug to plant in the candle engine.
    pub inject: Option<minilm::Bug>,
}

/// Settings of the tensor-parallel run (`--tp N`).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorParallel {
    /// Number of processes.
    pub world_size: u32,
    /// A planted bug (`--bug`: a name `python/tp_reference.py` knows), or none.
    pub bug: Option<String>,
    /// Seconds the N processes may take before they are killed.
    pub timeout: u32,
}

impl Default for TensorParallel {
    fn default() -> Self {
        TensorParallel {
            world_size: 2,
            bug: None,
            timeout: 180,
        }
    }
}

/// Which weights the candle engine runs with `--model smollm2` (`--quant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    /// The published Q4_1 file (default): calibrated by llama.cpp on the same file.
    Q4_1,
    /// Its dequantized F32 copy, on both sides: dtype tolerances, no baseline.
    F32,
}

impl Quant {
    /// The `--quant` value.
    pub fn name(self) -> &'static str {
        match self {
            Quant::Q4_1 => "q4_1",
            Quant::F32 => "f32",
        }
    }
}

/// Settings of the SmolLM2 GGUF (`--model smollm2`).
#[derive(Clone, Debug, PartialEq)]
pub struct SmolLm2 {
    /// Decode steps after the prefill.
    pub steps: usize,
    /// The prompt, one token id per byte (ids below 256 are valid tokens of SmolLM2's
    /// vocabulary, so both engines read the same ids without a tokenizer).
    pub prompt: String,
    /// A bug to plant in the candle engine.
    pub inject: Option<trace_candle::engine::Bug>,
    /// The weights the engine runs.
    pub quant: Quant,
}

impl Default for SmolLm2 {
    fn default() -> Self {
        SmolLm2 {
            steps: 2,
            prompt: "Hello, my name is".to_owned(),
            inject: None,
            quant: Quant::Q4_1,
        }
    }
}

impl Options {
    /// The defaults of `model`: its output directory and default reference.
    pub fn new(model: Model) -> Options {
        Options {
            model,
            out: crate::workspace::project_root().join(model.default_out()),
            reference: model
                .default_reference()
                .map(|name| reference::find(name, model).expect("a model's default runs it")),
            against: None,
            judge: Judge {
                baseline: model.default_reference().is_some(),
                ..Judge::default()
            },
            bisect: None,
            json: false,
            quiet: false,
            synthetic: Synthetic::default(),
            minilm: MiniLm::default(),
            tp: TensorParallel::default(),
            smollm2: SmolLm2::default(),
        }
    }

    /// The precision of the engine (side A), which the baseline (side C) computes in.
    pub fn engine_precision(&self) -> Precision {
        match self.model {
            Model::Synthetic => self.synthetic.precision,
            Model::MiniLm | Model::TensorParallel | Model::SmolLm2 => Precision::F32,
        }
    }

    /// Applies what the reference declares it can do, the same way for every model: no
    /// baseline for one that cannot calibrate, an error for `--bisect` with one that cannot
    /// bisect and for a baseline in a precision it cannot compute in.
    pub fn enforce_capabilities(&mut self) -> Result<()> {
        let Some(reference) = self.reference else {
            return Ok(());
        };
        if self.bisect.is_some() && !reference.bisects(self.model) {
            bail!(
                "--bisect cannot use --reference {}: records its rules crop (attention over a \
                 padded KV cache, every row's logits) need raw values, which bisect's first pass \
                 does not save; run without --bisect",
                reference.name()
            );
        }
        if !reference.calibrates(self.model) {
            self.judge.baseline = false;
        }
        let precision = self.engine_precision();
        if self.judge.baseline && !reference.computes_in(precision) {
            bail!(
                "--reference {} cannot compute in {} for the baseline (use --no-baseline)",
                reference.name(),
                precision.name()
            );
        }
        self.enforce_against(precision)
    }

    /// `--against`: a reference other than `--reference`, computing in the engine's precision,
    /// without the candle engine's own flags.
    fn enforce_against(&self, precision: Precision) -> Result<()> {
        let (Some(against), Some(reference)) = (self.against, self.reference) else {
            return Ok(());
        };
        if against.name() == reference.name() {
            bail!(
                "--against {0}: the same engine as --reference {0}",
                against.name()
            );
        }
        if !against.computes_in(precision) {
            bail!(
                "--against {} cannot compute in {}",
                against.name(),
                precision.name()
            );
        }
        if self.bisect.is_some() {
            bail!("--against does not combine with --bisect (it bisects the candle engine)");
        }
        Ok(())
    }
}
