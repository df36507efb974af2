//! `--reference cpp`: the crossval's f64 reference model as a C++ program.
//!
//! `crates/trace-ffi/examples/reference-engine.cpp` is a one-file C++17 port of
//! `reference_engine::Model` that records the same names, shapes and context through the C++
//! wrapper of trace-ffi (`tensor_trace.hpp`). This module builds it (cargo builds
//! `libtrace_ffi.a`, then the system C++ compiler compiles and links the engine against it) and
//! runs it on the model directory and prompt file the crossval writes, traced with raw values
//! into its own directory. That is the seed's workflow literally: a Rust engine under test, a C++
//! reference, and `trace_diff` naming the first divergence between them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[cfg(test)]
use anyhow::Context;
use anyhow::{bail, Result};

use super::interface::Reference;
use super::native::{build_staticlib, compile, BuildOptions, NATIVE_LIBS};
use crate::task::{Job, Model, Precision, Task};

/// `--reference cpp`: the C++ port, built and run as a separate program.
pub struct Cpp;

impl Reference for Cpp {
    fn name(&self) -> &'static str {
        "cpp"
    }

    fn about(&self) -> &'static str {
        "the f64 reference engine's C++ port (crates/trace-ffi/examples), traced through the C ABI"
    }

    fn runs(&self, model: Model) -> bool {
        model == Model::Synthetic
    }

    fn computes_in(&self, _precision: Precision) -> bool {
        true
    }

    fn command(&self, job: &Job<'_>) -> Result<Command> {
        let Task::Generate {
            model_dir,
            prompt_file,
            steps,
            ..
        } = job.task
        else {
            bail!("the cpp reference runs the synthetic model only");
        };
        let engine = CppEngine::build(&BuildOptions {
            quiet: job.quiet,
            ..BuildOptions::default()
        })?;
        Ok(engine.command(model_dir, prompt_file, steps, job.precision))
    }
}

/// The C++ engine's source, relative to the workspace root.
pub const SOURCE: &str = "crates/trace-ffi/examples/reference-engine.cpp";
/// File name of the compiled engine, written next to `libtrace_ffi.a`.
pub const EXE_NAME: &str = "reference-engine-cpp";

/// A compiled C++ reference engine.
#[derive(Clone, Debug)]
pub struct CppEngine {
    exe: PathBuf,
}

impl CppEngine {
    /// Builds `libtrace_ffi.a` with cargo, then compiles [`SOURCE`] against it with `$CXX`
    /// (default `c++`), `-std=c++17 -O2`.
    pub fn build(o: &BuildOptions) -> Result<Self> {
        let lib = build_staticlib(o)?;
        let exe = lib.with_file_name(EXE_NAME);
        compile(SOURCE, &exe, o.quiet, |cmd| {
            // -ffp-contract=off: no fused multiply-adds, so the results are the Rust
            // reference's to the last bit.
            cmd.args(["-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra"]);
            if o.strict {
                cmd.args(["-Werror", "-pedantic"]);
            }
            cmd.arg(&lib).args(NATIVE_LIBS);
        })?;
        Ok(CppEngine { exe })
    }

    /// The command that runs the engine on `model_dir` (`config.json`, `model.safetensors`)
    /// with the prompt in `prompt_file` for `steps` decode steps in `precision`, tracing through
    /// the environment and printing the generated tokens.
    pub fn command(
        &self,
        model_dir: &Path,
        prompt_file: &Path,
        steps: usize,
        precision: Precision,
    ) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(model_dir)
            .arg(prompt_file)
            .arg(steps.to_string())
            .args(["--precision", precision.name()])
            .stdin(Stdio::null());
        cmd
    }

    /// Runs [`CppEngine::command`] traced with every raw value into `trace_dir` (emptied of an
    /// earlier run first), and returns the `steps + 1` tokens it generated; checks that it wrote
    /// a trace (the tests' stricter form of [`Reference::run`]).
    #[cfg(test)]
    pub fn run(
        &self,
        model_dir: &Path,
        prompt_file: &Path,
        steps: usize,
        precision: Precision,
        trace_dir: &Path,
    ) -> Result<Vec<u32>> {
        let mut cmd = self.command(model_dir, prompt_file, steps, precision);
        crate::exec::trace_into(&mut cmd, trace_dir)?;
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            out.status.success(),
            "{} failed ({}): {}",
            self.exe.display(),
            out.status,
            stderr.trim_end()
        );
        let tokens = super::interface::parse_tokens(
            &self.exe.display().to_string(),
            &String::from_utf8_lossy(&out.stdout),
            steps + 1,
        )?;
        anyhow::ensure!(
            [
                trace_core::record::MANIFEST_FILE,
                trace_core::record::PACKED_LOG
            ]
            .iter()
            .any(|f| trace_dir.join(f).exists()),
            "{} wrote no trace into {}",
            self.exe.display(),
            trace_dir.display()
        );
        Ok(tokens)
    }
}
