//! `cargo xtask ci`: the whole gate, stopping at the first failing step.

use std::process::{Command, Stdio};

use anyhow::Result;

use crate::{cargo, python, run_step};

pub fn run(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        anyhow::bail!("`ci` takes no arguments, got {extra:?}");
    }
    run_step("fmt check", cargo().args(["fmt", "--all", "--check"]))?;
    run_step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    if nextest_installed() {
        run_step(
            "tests (nextest)",
            cargo().args([
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ]),
        )?;
    } else {
        run_step(
            "tests (cargo test)",
            cargo().args([
                "test",
                "--workspace",
                "--locked",
                "--lib",
                "--bins",
                "--tests",
            ]),
        )?;
    }
    run_step(
        "doc tests",
        cargo().args(["test", "--workspace", "--locked", "--doc"]),
    )?;
    // The Python emitter against the same golden vectors (venv under target/, made on demand).
    python::run_tests()?;
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
