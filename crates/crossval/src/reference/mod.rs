//! The references a crossval compares the candle engines with: one module each, one interface.
//!
//! A reference is a [`Reference`]: a name for `--reference`, the models it can run, the rules
//! (name mapping) the diff needs for its record names, and `run`, which computes a [`Task`] and
//! writes its traces, with raw values, into the job's directory. It also declares what it can
//! do ([`Reference::runs`], [`Reference::computes_in`], [`Reference::calibrates`],
//! [`Reference::bisects`]), which the driver enforces for every model. The models and the driver
//! (`crate::model`, `crate::driver`) own everything else: the model files, the engine run, the
//! diff and the report; a reference never imports them. A reference that runs as a program of
//! ours (`--bisect` needs one) has it next to it (`rust.rs`, run through `crate::side`). Adding a
//! reference is one new module here and one line in [`REFERENCES`].

pub(crate) mod cpp;
mod llamacpp;
pub(crate) mod native;
mod numpy;
pub mod rust;
mod torch;

/// `llama-trace` built against llama.cpp and a release trace-ffi (for `cargo xtask bench engine`).
pub use llamacpp::build_program as llama_trace_program;

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Result};
use trace_diff::Rules;

pub use crate::task::{Job, Model, Precision, Task};

/// Every reference, in the order `--help` lists them.
pub static REFERENCES: &[&dyn Reference] = &[
    &rust::Rust,
    &cpp::Cpp,
    &numpy::Numpy,
    &torch::Torch,
    &llamacpp::LlamaCpp,
];

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

    /// Whether a crossval against it is calibrated by default (side B in F64, the baseline C
    /// in the engine's precision, both under this reference's names). A reference that cannot
    /// (llama.cpp computes in F32 only) is judged by dtype tolerances, as with `--no-baseline`.
    fn calibrates(&self) -> bool {
        true
    }

    /// Whether `--bisect` can use it: bisect's first pass judges on hashes and statistics
    /// only, and a reference whose rules drop elements of its records before comparing
    /// (`b_layout` with `slice` or `crop`, docs/FORMAT.md) has pairs only raw values can judge.
    fn bisects(&self) -> bool {
        true
    }

    /// The rules the diff needs for this reference's records (name mapping, records only one
    /// side has); no rules by default, for references that trace under the engines' names.
    fn rules(&self, _model: Model) -> Result<Rules> {
        Ok(Rules::default())
    }

    /// The program that computes `job.task` and traces through the environment
    /// (`TENSOR_TRACE_DIR` and the other settings, which the caller sets): what `bisect` runs,
    /// twice. `job.trace_dir` is not used. For [`Task::Generate`] the program prints the
    /// generated tokens.
    fn command(&self, job: &Job<'_>) -> Result<Command>;

    /// Computes `job.task`, traced into `job.trace_dir` with every raw value. Returns the
    /// generated tokens for [`Task::Generate`], nothing for [`Task::Embed`]. By default it runs
    /// [`Reference::command`].
    fn run(&self, job: &Job<'_>) -> Result<Vec<u32>> {
        let mut cmd = self.command(job)?;
        crate::exec::trace_into(&mut cmd, job.trace_dir)?;
        let output = crate::exec::run_program(&format!("the {} reference", self.name()), &mut cmd)?;
        match job.task {
            Task::Generate { steps, .. } => parse_tokens(
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

/// The reference named `name` that runs `model`.
pub fn find(name: &str, model: Model) -> Result<&'static dyn Reference> {
    let candidates: Vec<&str> = REFERENCES
        .iter()
        .filter(|r| r.runs(model))
        .map(|r| r.name())
        .collect();
    match REFERENCES.iter().find(|r| r.name() == name) {
        Some(r) if r.runs(model) => Ok(*r),
        Some(_) => bail!(
            "reference {name:?} cannot run the {} model: expected one of {}",
            model.name(),
            candidates.join(", ")
        ),
        None => bail!(
            "unknown reference {name:?}: expected one of {}",
            candidates.join(", ")
        ),
    }
}

/// The `--reference` lines of `--help` for `model`.
pub fn help(model: Model) -> String {
    let mut s = String::new();
    for r in REFERENCES.iter().filter(|r| r.runs(model)) {
        let default = if Some(r.name()) == model.default_reference() {
            " (default)"
        } else {
            ""
        };
        let _ = writeln!(s, "  {:<10}  {}{default}", r.name(), r.about());
    }
    s
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
    fn names_are_unique_and_found() {
        let mut names: Vec<&str> = REFERENCES.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REFERENCES.len());
        for model in Model::ALL {
            let Some(d) = model.default_reference() else {
                assert!(REFERENCES.iter().all(|r| !r.runs(model)));
                continue;
            };
            assert_eq!(find(d, model).unwrap().name(), d, "{}", model.name());
        }
        assert_eq!(find("cpp", Model::Synthetic).unwrap().name(), "cpp");
        assert_eq!(find("torch", Model::MiniLm).unwrap().name(), "torch");
    }

    #[test]
    fn unknown_or_unfit_references_are_errors_listing_the_choices() {
        let e = format!("{:#}", find("c++", Model::Synthetic).unwrap_err());
        assert!(
            e.contains("unknown reference \"c++\": expected one of rust, cpp"),
            "{e}"
        );
        let e = format!("{:#}", find("cpp", Model::MiniLm).unwrap_err());
        assert!(
            e.contains("cannot run the minilm model: expected one of numpy, torch"),
            "{e}"
        );
    }

    #[test]
    fn help_marks_the_default() {
        let h = help(Model::Synthetic);
        assert!(
            h.contains("rust") && h.contains("(default)") && h.contains("torch"),
            "{h}"
        );
        assert!(!h.contains("numpy"), "{h}");
    }

    #[test]
    fn tokens_are_counted() {
        assert_eq!(parse_tokens("p", "1 2\n3\n", 3).unwrap(), vec![1, 2, 3]);
        assert!(parse_tokens("p", "1 2", 3).is_err());
        assert!(parse_tokens("p", "1 x 3", 3).is_err());
    }
}
