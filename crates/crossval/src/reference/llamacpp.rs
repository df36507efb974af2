//! `--reference llama.cpp`: llama.cpp itself, traced from its eval callback through trace-ffi.
//!
//! llama.cpp is built from the pinned sources of `llama-cpp-python` ([`build`]); the crossval's
//! synthetic model is written as an F32 GGUF ([`gguf`]); `crates/trace-ffi/examples/llama-trace.cpp`,
//! compiled against llama.cpp's static libraries and `libtrace_ffi.a`, runs the prompt and the
//! decode steps and records every tensor of llama.cpp's graph that tensor-trace asks for, under
//! llama.cpp's own names (`attn_norm-0`, `Qcur-0#2`, `kq_soft_max-0`, ...). The preset
//! `llama-cpp` (crates/trace-diff/presets) maps the candle engine's names onto them and undoes
//! the layout differences.
//!
//! llama.cpp's CPU backend computes in F32 only. The calibrated verdict needs the reference
//! twice under the same names: in higher precision (B) and in the engine's (C); llama.cpp can
//! give neither an F64 run nor, from our F64 reference, its own names and layouts. So this
//! reference is judged by the dtype tolerances (`--no-baseline` is implied): two F32
//! implementations of the same model, where every planted bug is orders of magnitude above
//! F32 rounding. On a quantized GGUF ([`Task::Gguf`], `--model smollm2`) it calibrates: B is
//! its run on the weights dequantized to F32, C its run on the quantized file the engine runs,
//! both under llama.cpp's names.

mod build;
pub mod gguf;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use trace_diff::Rules;

use super::interface::Reference;
use super::native::{build_staticlib, compile, BuildOptions, NATIVE_LIBS};
use crate::task::{Job, Model, Precision, Task};

/// The C++ program's source, relative to the workspace root.
pub const SOURCE: &str = "crates/trace-ffi/examples/llama-trace.cpp";
/// File name of the compiled program, written into `target/llama.cpp-VERSION`.
pub const EXE_NAME: &str = "llama-trace";
/// File name of the GGUF written next to the crossval's checkpoint.
pub const GGUF_FILE: &str = "model.gguf";

/// The pinned llama-cpp-python release whose `vendor/llama.cpp` is built.
pub const LLAMA_CPP_VERSION: &str = build::VERSION;

/// The llama.cpp reference.
pub struct LlamaCpp;

impl Reference for LlamaCpp {
    fn name(&self) -> &'static str {
        "llama.cpp"
    }

    fn about(&self) -> &'static str {
        "llama.cpp (llama-cpp-python 0.3.36's sources, CPU), traced from its eval callback; \
         judged by F32 tolerances, or on a quantized GGUF calibrated by its own run on that file"
    }

    fn runs(&self, model: Model) -> bool {
        matches!(model, Model::Synthetic | Model::SmolLm2)
    }

    fn computes_in(&self, precision: Precision) -> bool {
        precision == Precision::F32
    }

    /// A GGUF only: B on the weights without quantization, C on the engine's file.
    fn calibrates(&self, model: Model) -> bool {
        model == Model::SmolLm2
    }

    /// The attention probabilities (KV axis padded to 256 cells) and the logits (every row)
    /// are cropped before comparing: without raw values they cannot be judged.
    fn bisects(&self, _model: Model) -> bool {
        false
    }

    fn rules(&self, _model: Model) -> Result<Rules> {
        Rules::preset("llama-cpp")
            .context("trace-diff ships no preset \"llama-cpp\"")?
            .map_err(Into::into)
    }

    fn command(&self, job: &Job<'_>) -> Result<Command> {
        let (model, prompt_file, steps) = match job.task {
            Task::Generate {
                model_dir,
                prompt_file,
                steps,
                ..
            } => {
                let model = model_dir.join(GGUF_FILE);
                gguf::write(model_dir, &model)?;
                (model, prompt_file, steps)
            }
            Task::Gguf {
                engine_file,
                reference_file,
                prompt_file,
                steps,
            } => {
                let file = match job.precision {
                    Precision::F64 => reference_file,
                    _ => engine_file,
                };
                (file.to_owned(), prompt_file, steps)
            }
            Task::Embed { .. } => bail!("the llama.cpp reference does not run MiniLM"),
        };
        let exe = build_program(job.quiet)?;
        let mut cmd = Command::new(exe);
        cmd.arg(&model)
            .arg(prompt_file)
            .arg(steps.to_string())
            .stdin(Stdio::null());
        Ok(cmd)
    }
}

/// llama.cpp's source tree (`vendor/llama.cpp` of the pinned llama-cpp-python), built once per
/// version like [`build_program`]'s: `convert_hf_to_gguf.py` and its gguf-py are there.
pub fn sources(quiet: bool) -> Result<PathBuf> {
    Ok(build::ensure(quiet)?.source)
}

/// Builds llama.cpp (once per version) and `libtrace_ffi.a`, then compiles `llama-trace.cpp`
/// against them; returns the program.
pub fn build_program(quiet: bool) -> Result<PathBuf> {
    let llama = build::ensure(quiet)?;
    let trace_ffi = build_staticlib(&BuildOptions {
        quiet,
        ..BuildOptions::default()
    })?;
    let exe = build::root().join(EXE_NAME);
    compile(SOURCE, &exe, quiet, |cmd| {
        cmd.args(["-std=c++17", "-O2", "-Wall", "-Wextra"]);
        for dir in llama.includes() {
            cmd.arg("-I").arg(dir);
        }
        // In a group: llama, the ggml libraries and trace-ffi refer to each other.
        cmd.arg("-Wl,--start-group")
            .args(llama.libs())
            .arg(&trace_ffi)
            .arg("-Wl,--end-group")
            .arg("-lstdc++")
            .args(NATIVE_LIBS);
    })?;
    Ok(exe)
}

#[cfg(test)]
mod tests {
    //! The program's input errors (the crossval test in `synthetic/tests.rs` runs it for real).

    use super::*;

    fn run(args: &[&std::ffi::OsStr]) -> (i32, String) {
        let exe = build_program(true).expect("building llama-trace");
        let out = Command::new(exe)
            .args(args)
            .env_remove("TENSOR_TRACE_DIR")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn llama_trace_reports_bad_input_with_exit_code_2() {
        let dir = tempfile::tempdir().unwrap();
        let prompt = dir.path().join("prompt.txt");
        std::fs::write(&prompt, "hi").unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "").unwrap();
        let model = dir.path().join("nope.gguf");
        let os = |s: &str| std::ffi::OsString::from(s);

        let (code, err) = run(&[model.as_os_str(), prompt.as_os_str(), &os("1")]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("cannot load the GGUF model") && err.contains("nope.gguf"),
            "{err}"
        );

        let (code, err) = run(&[model.as_os_str(), empty.as_os_str(), &os("1")]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("is empty: expected at least one byte"),
            "{err}"
        );

        let (code, err) = run(&[model.as_os_str(), prompt.as_os_str(), &os("-3")]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("STEPS: expected a non-negative integer"),
            "{err}"
        );

        let (code, err) = run(&[
            model.as_os_str(),
            prompt.as_os_str(),
            &os("1"),
            &os("--threads"),
            &os("0"),
        ]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--threads N with N >= 1"), "{err}");
    }
}
