//! The models a crossval runs, one module each behind one interface, [`Harness`]: what a model
//! brings to the one driver (`crate::driver`): its files and inputs, its engine (side A) run
//! in-process or as a program for `--bisect`, the task a reference computes, and the verdict.
//! A model never names a reference: it reaches the chosen one only through the driver.

pub mod minilm;
pub mod smollm2;
pub mod synthetic;
pub mod tp;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};
use trace_diff::Report;

use crate::exec::Progress;
use crate::options::Options;
use crate::task::{Model, Task};

/// The directories of one comparison: the engine's traces (A), the reference's (B), and the
/// calibration baseline's (C) when there is one.
#[derive(Clone, Debug)]
pub struct Sides {
    /// Side A.
    pub engine: PathBuf,
    /// Side B.
    pub reference: PathBuf,
    /// Side C.
    pub baseline: Option<PathBuf>,
}

/// A model as the driver runs it.
pub trait Harness: Sync {
    /// What [`Harness::prepare`] wrote: the model's files and inputs.
    type Inputs;
    /// What the engine run leaves beside its traces (tokens, an event history).
    type Engine;
    /// What the run found.
    type Outcome: Verdict;

    /// Which model this is.
    fn model(&self) -> Model;

    /// Writes, extracts or installs the model and its inputs under `o.out`.
    fn prepare(&self, o: &Options, progress: &Progress) -> Result<Self::Inputs>;

    /// The engine's trace directory inside `o.out`.
    fn engine_dir(&self) -> &'static str {
        "candle"
    }

    /// Runs the engine (side A) in-process, traced into `dir` with every raw value.
    fn run_engine(
        &self,
        o: &Options,
        inputs: &Self::Inputs,
        dir: &Path,
        progress: &Progress,
    ) -> Result<Self::Engine>;

    /// What a reference computes for this model.
    fn task<'a>(&self, o: &'a Options, inputs: &'a Self::Inputs) -> Result<Task<'a>>;

    /// The engine as a program tracing through the environment (`crossval-side`), for
    /// `--bisect`.
    fn engine_command(&self, _o: &Options, _inputs: &Self::Inputs) -> Result<Command> {
        bail!("--model {} cannot be bisected", self.model().name())
    }

    /// Side B when the engine's own program also computes the reference (its directory in
    /// `o.out`, and the rules the diff needs); `None`: a reference of the registry does.
    fn own_reference(&self, _o: &Options) -> Result<Option<(&'static str, trace_diff::Rules)>> {
        Ok(None)
    }

    /// Turns the diff's report into the model's verdict.
    fn conclude(
        &self,
        o: &Options,
        report: Report,
        engine: Self::Engine,
        reference_tokens: Vec<u32>,
        sides: &Sides,
    ) -> Result<Self::Outcome>;
}

/// What a run found, as the command reports it.
pub trait Verdict {
    /// Whether the run passes (exit code 0).
    fn passed(&self) -> bool;

    /// The report as the command prints it on stdout.
    fn render(&self, o: &Options) -> String;

    /// A line for stderr when stdout holds the JSON report only.
    fn note(&self) -> Option<String> {
        None
    }
}
