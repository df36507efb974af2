//! `crossval-side KIND ...`: one side of a crossval as a program of its own, traced through the
//! environment (`TENSOR_TRACE_DIR`, `TENSOR_TRACE_VALUES_AT`, ...).
//!
//! The crossvals run their engines in-process; `--bisect` (trace-cli's bisect) needs programs it
//! can run twice with different tracing settings. Each such program lives next to what it runs
//! (the candle engines with their models in `crate::model`, the Rust reference engine with its
//! reference in `crate::reference::rust`); `src/bin/crossval-side.rs` only dispatches:
//!
//! ```text
//! crossval-side candle MODEL_DIR|MODEL.gguf PROMPT_FILE STEPS [--precision f32|bf16] [--inject BUG]
//! crossval-side rust   MODEL_DIR PROMPT_FILE STEPS [--precision f64|f32|bf16]
//! crossval-side minilm MODEL_DIR SENTENCES_JSON [--max-tokens N] [--inject BUG]
//! ```
//!
//! `candle` and `rust` print the generated tokens. Exit code 0, or 2 on an error. This module
//! is what they share; it imports no model and no reference.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::task::Precision;
use crate::workspace::{cargo, project_root};

/// The side program's name.
pub const BIN: &str = "crossval-side";

/// `crossval-side ARGS`, with this build of the program (cargo reports where it is).
pub fn command(args: &[String]) -> Result<Command> {
    let mut cmd = Command::new(exe()?);
    cmd.args(args)
        .current_dir(project_root())
        .stdin(Stdio::null());
    Ok(cmd)
}

/// A `--precision` value.
pub fn precision(v: &str) -> Result<Precision, String> {
    Precision::ALL
        .into_iter()
        .find(|p| p.name() == v)
        .ok_or_else(|| format!("expected f64, f32 or bf16, found {v:?}"))
}

/// The prompt file's text.
pub fn read_prompt(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// Prints the generated tokens on one line, as the reference programs do.
pub fn print_tokens(tokens: &[u32]) {
    let text: Vec<String> = tokens.iter().map(u32::to_string).collect();
    println!("{}", text.join(" "));
}

/// The side program: built (a no-op when it is up to date) and located through cargo's JSON
/// messages, so it is right whatever the target directory and whether the caller is xtask or
/// a test.
fn exe() -> Result<PathBuf> {
    let out = cargo()
        .args(["build", "--quiet", "-p", "crossval", "--bin", BIN])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!(
            "cargo build -p crossval --bin {BIN} failed ({})",
            out.status
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == BIN)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo build -p crossval --bin {BIN} reported no executable"))
}
