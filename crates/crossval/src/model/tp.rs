//! `--tp N` (`--model tp`): a tensor-parallel engine against a single-process reference.
//!
//! `python/tp_reference.py` runs a Llama-style block as N torch.distributed processes (gloo, on
//! this machine) traced per rank into `OUT/tp/rank-{r}`, and the same block with the same
//! weights in one process into `OUT/ref`; it writes the block's `[[shard]]` rules to
//! `OUT/rules.toml`. The one program computes both sides, so this model brings its own
//! reference ([`Harness::own_reference`]) instead of taking one of the registry. The driver
//! compares the two runs, reassembling the ranks by those rules and naming, at the first
//! divergence, the rank(s) whose record disagrees. `--bug` plants one of the classic
//! tensor-parallel mistakes. Needs the venv's torch package set (installed on first use, about
//! 4.2 GB).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use trace_diff::render::{self, TextOptions};
use trace_diff::{Outcome, Report, Rules};

use super::{Harness, Sides, Verdict};
use crate::exec::{clear_trace_env, run_program, Progress};
use crate::options::{Options, TensorParallel};
use crate::task::{Model, Task};
use crate::venv::{self as python, Extra};

/// The planted bugs `python/tp_reference.py --bug` knows, with what each should be found as:
/// the first diverging record and the ranks named.
pub const BUGS: &[(&str, &str, &[u32])] = &[
    ("wrong-slice", "q", &[1]),
    ("skip-allreduce", "o", &[0, 1]),
    ("gather-order", "logits", &[0, 1]),
];

/// The `--help` description of `--tp N`.
pub const ABOUT: &str = "\
A tensor-parallel Llama-style block on N torch.distributed processes (gloo, loopback), traced
per rank, against the same block in one process (python/tp_reference.py); the ranks are
reassembled by the block's [[shard]] rules (DIR/rules.toml) and the first divergence names its
rank(s). N: 2 or 4.
Exit: 0 agree, 1 diverged, 2 error. Installs the torch package set into target/python-venv on
first use.";

/// The world sizes the block splits evenly over (its 4 heads and its widths).
pub const WORLD_SIZES: [u32; 2] = [2, 4];

/// The tensor-parallel run's [`Harness`].
pub struct TensorParallelHarness;

/// What the tensor-parallel run found: the diff of the ranks with the single process.
#[derive(Debug)]
pub struct TpOutcome {
    /// The comparison of the reassembled ranks (A) with the single process (B).
    pub report: Report,
}

impl Harness for TensorParallelHarness {
    type Inputs = std::path::PathBuf;
    type Engine = ();
    type Outcome = TpOutcome;

    fn model(&self) -> Model {
        Model::TensorParallel
    }

    /// Installs torch and empties `o.out`; returns the venv's python.
    fn prepare(&self, o: &Options, _progress: &Progress) -> Result<std::path::PathBuf> {
        check(&o.tp)?;
        let python = python::ensure_venv(&[Extra::Torch]).context("install torch into the venv")?;
        if o.out.exists() {
            std::fs::remove_dir_all(&o.out)
                .with_context(|| format!("clear {}", o.out.display()))?;
        }
        Ok(python)
    }

    fn engine_dir(&self) -> &'static str {
        "tp"
    }

    /// Runs both sides: the N ranks into `dir` (`OUT/tp`), the single process into `OUT/ref`.
    fn run_engine(
        &self,
        o: &Options,
        python: &std::path::PathBuf,
        _dir: &Path,
        _progress: &Progress,
    ) -> Result<()> {
        let t = &o.tp;
        let mut cmd = Command::new(python);
        cmd.arg(crate::workspace::project_root().join("python/tp_reference.py"))
            .arg(&o.out)
            .args(["--world-size", &t.world_size.to_string()])
            .args(["--bug", t.bug.as_deref().unwrap_or("none")])
            .args(["--timeout", &t.timeout.to_string()]);
        clear_trace_env(&mut cmd);
        run_program("python/tp_reference.py", &mut cmd)?;
        Ok(())
    }

    fn task<'a>(&self, _o: &'a Options, _inputs: &'a std::path::PathBuf) -> Result<Task<'a>> {
        bail!("the tensor-parallel run computes its own reference")
    }

    fn own_reference(&self, o: &Options) -> Result<Option<(&'static str, Rules)>> {
        Ok(Some(("ref", Rules::load(&o.out.join("rules.toml"))?)))
    }

    fn conclude(
        &self,
        _o: &Options,
        report: Report,
        _engine: (),
        _reference_tokens: Vec<u32>,
        _sides: &Sides,
    ) -> Result<TpOutcome> {
        Ok(TpOutcome { report })
    }
}

impl Verdict for TpOutcome {
    fn passed(&self) -> bool {
        self.report.outcome == Outcome::Agree
    }

    fn render(&self, o: &Options) -> String {
        if o.json {
            return render::json(&self.report);
        }
        let options = TextOptions {
            color: false,
            ..TextOptions::default()
        };
        render::text(&self.report, &options)
    }
}

/// Checks the world size and the bug name.
pub fn check(t: &TensorParallel) -> Result<()> {
    if !WORLD_SIZES.contains(&t.world_size) {
        bail!(
            "--tp {}: expected 2 or 4 (the block's 4 heads and widths split evenly)",
            t.world_size
        );
    }
    if let Some(bug) = &t.bug {
        if !BUGS.iter().any(|b| b.0 == bug) {
            bail!("--bug {bug:?}: expected one of {}", bug_names());
        }
    }
    Ok(())
}

/// The `--bug` values, for messages and `--help`.
pub fn bug_names() -> String {
    BUGS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
