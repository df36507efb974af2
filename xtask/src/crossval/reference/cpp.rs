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

use super::native::{build_staticlib, compile, BuildOptions, NATIVE_LIBS};
use super::{Job, Model, Precision, Reference, Task};

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
        crate::crossval::trace_into(&mut cmd, trace_dir)?;
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
        let tokens = super::parse_tokens(
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

#[cfg(test)]
mod tests {
    //! The C++ engine against the Rust reference (bit for bit) and against candle (within
    //! tolerance), on models the crossval writes. The engine is built once per test binary.

    use std::collections::BTreeSet;
    use std::sync::OnceLock;

    use super::*;
    use crate::crossval::synthetic::{self, Size};

    fn engine() -> &'static CppEngine {
        static ENGINE: OnceLock<CppEngine> = OnceLock::new();
        ENGINE.get_or_init(|| {
            CppEngine::build(&BuildOptions {
                quiet: true,
                strict: true,
                ..BuildOptions::default()
            })
            .expect("building the C++ reference engine")
        })
    }

    fn file_names(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    /// Runs the crossval (candle and the Rust reference) and the C++ engine on the same model,
    /// then checks that the C++ traces equal the Rust reference's byte for byte and that candle
    /// agrees with them within tolerance.
    fn check(size: Size, layers: usize, steps: usize, prompt: &str) {
        let dir = tempfile::tempdir().unwrap();
        let o = synthetic::Options {
            out: dir.path().to_path_buf(),
            layers,
            steps,
            seed: 11,
            size,
            prompt: prompt.to_owned(),
            quiet: true,
            ..synthetic::Options::default()
        };
        let outcome = synthetic::run(&o).unwrap();
        assert!(outcome.agree(), "candle and the Rust reference disagree");
        let (reference, cpp) = (dir.path().join("rust"), dir.path().join("cpp"));
        let tokens = engine()
            .run(
                &dir.path().join("model"),
                &dir.path().join("prompt.txt"),
                steps,
                Precision::F64,
                &cpp,
            )
            .unwrap();
        assert_eq!(tokens, outcome.reference_tokens);

        // Rust reference (A) against C++ (B): every record identical.
        let records = ((steps + 1) * (2 + layers * 16 + 3)) as u64;
        let report = trace_diff::diff_dirs(&reference, &cpp, &Default::default()).unwrap();
        let c = &report.counts;
        assert_eq!(
            (c.compared, c.identical, c.missing_in_a, c.missing_in_b),
            (records, records, 0, 0),
            "{}",
            trace_diff::render::text(&report, &Default::default())
        );
        // Stronger: the same files with the same bytes (records, manifest, raw values).
        let names = file_names(&reference);
        assert_eq!(names, file_names(&cpp));
        for name in &names {
            let (a, b) = (reference.join(name), cpp.join(name));
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{} and {} differ",
                a.display(),
                b.display()
            );
        }

        // candle (A) against C++ (B): what `--reference cpp` reports.
        let report =
            trace_diff::diff_dirs(&dir.path().join("candle"), &cpp, &Default::default()).unwrap();
        assert_eq!(report.outcome, trace_diff::Outcome::Agree);
        assert_eq!(
            (report.counts.compared, report.counts.missing_in_b),
            (records, 0)
        );
    }

    #[test]
    fn cpp_engine_equals_the_rust_reference_on_the_tiny_model() {
        check(Size::Tiny, 2, 2, "Hi there");
    }

    #[test]
    fn cpp_engine_equals_the_rust_reference_with_wider_groups_and_utf8() {
        // 8 query heads over 2 key/value heads; multi-byte UTF-8 gives tokens above 127.
        check(Size::Small, 1, 1, "naïve café");
    }

    #[test]
    fn cpp_engine_reports_a_missing_model() {
        let dir = tempfile::tempdir().unwrap();
        let prompt = dir.path().join("prompt.txt");
        std::fs::write(&prompt, "hi").unwrap();
        let err = engine()
            .run(
                &dir.path().join("nope"),
                &prompt,
                1,
                Precision::F64,
                &dir.path().join("cpp"),
            )
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("cannot read") && msg.contains("nope/config.json"),
            "{msg}"
        );
    }
}
