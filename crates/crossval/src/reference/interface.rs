//! The one interface every reference implements: what it is, what it can do, and how it runs.

use std::process::Command;

use anyhow::{bail, Result};
use trace_diff::Rules;

use crate::task::{Job, Model, Precision, Task};

/// A reference implementation a crossval compares a candle engine with.
pub trait Reference: Sync {
    /// The `--reference` value; also the name of its trace directory.
    fn name(&self) -> &'static str;

    /// One line for `--help` and the progress lines: what it is and in which precision.
    fn about(&self) -> &'static str;

    /// Whether it can run `model`.
    fn runs(&self, model: Model) -> bool;

    /// Whether it can compute in `precision` (every reference computes in F64).
    fn computes_in(&self, precision: Precision) -> bool {
        precision == Precision::F64
    }

    /// Whether a crossval of `model` against it is calibrated by default (side B in F64, the
    /// baseline C in the engine's precision, both under this reference's names; for a
    /// [`Task::Gguf`], B on the dequantized weights and C on the engine's file). A reference
    /// that cannot (llama.cpp on the synthetic model: it computes in F32 only) is judged by
    /// dtype tolerances, as with `--no-baseline`.
    fn calibrates(&self, _model: Model) -> bool {
        true
    }

    /// The engine that computes the baseline (side C) of `task`, when it is not this reference:
    /// a reference that cannot compute in the engine's arithmetic (transformers on a quantized
    /// GGUF) names one that can, which then runs C through its own engine view.
    fn baseline_engine(&self, _task: &Task<'_>) -> Option<&'static dyn Reference> {
        None
    }

    /// Whether `--bisect` can use it: bisect's first pass judges on hashes and statistics
    /// only, and a reference whose rules drop elements of its records before comparing
    /// (`b_layout` with `slice` or `crop`, docs/FORMAT.md) has pairs only raw values can judge,
    /// for `model`.
    fn bisects(&self, _model: Model) -> bool {
        true
    }

    /// The rules the diff needs for this reference's records (name mapping, records only one
    /// side has); no rules by default, for references that trace under the engines' names.
    fn rules(&self, _model: Model) -> Result<Rules> {
        Ok(Rules::default())
    }

    /// The program that computes `job.task` and traces through the environment
    /// (`TENSOR_TRACE_DIR` and the other settings, which the caller sets): what `bisect` runs,
    /// twice. `job.trace_dir` is not used. For [`Task::Generate`] and [`Task::Gguf`] the
    /// program prints the generated tokens.
    fn command(&self, job: &Job<'_>) -> Result<Command>;

    /// Computes `job.task`, traced into `job.trace_dir` with every raw value. Returns the
    /// generated tokens for [`Task::Generate`] and [`Task::Gguf`], nothing for [`Task::Embed`]. By default it runs
    /// [`Reference::command`].
    fn run(&self, job: &Job<'_>) -> Result<Vec<u32>> {
        let mut cmd = self.command(job)?;
        crate::exec::trace_into(&mut cmd, job.trace_dir)?;
        let output = crate::exec::run_program(&format!("the {} reference", self.name()), &mut cmd)?;
        match job.task {
            Task::Generate { steps, .. } | Task::Gguf { steps, .. } => parse_tokens(
                &format!("the {} reference", self.name()),
                &String::from_utf8_lossy(&output.stdout),
                steps + 1,
            ),
            Task::Embed { .. } => Ok(Vec::new()),
        }
    }
}

impl std::fmt::Debug for dyn Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for dyn Reference {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

/// The generated tokens a program printed on stdout (whitespace-separated integers): exactly
/// `expected` of them.
pub(crate) fn parse_tokens(program: &str, stdout: &str, expected: usize) -> Result<Vec<u32>> {
    let tokens = stdout
        .split_whitespace()
        .map(str::parse::<u32>)
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|e| anyhow::anyhow!("{program}: expected tokens, got {stdout:?} ({e})"))?;
    if tokens.len() != expected {
        bail!("{program}: expected {expected} tokens, got {stdout:?}");
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted() {
        assert_eq!(parse_tokens("p", "1 2\n3\n", 3).unwrap(), vec![1, 2, 3]);
        assert!(parse_tokens("p", "1 2", 3).is_err());
        assert!(parse_tokens("p", "1 x 3", 3).is_err());
    }
}
