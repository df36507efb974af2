//! Project automation, in the style of rust-analyzer's xtask: plain Rust instead of shell scripts.
//!
//! `cargo xtask ci` is the one test command (README, `.ci/run`); `cargo xtask bench` runs the
//! criterion benchmarks and prints ratios; `cargo xtask crossval` is the end-to-end demo.

mod bench;
mod browser;
mod ci;
mod crossval;
#[cfg(test)]
mod layering;
mod models;
mod python;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const HELP: &str = "\
cargo xtask <command> [args]

commands:
  ci         fmt check, clippy -D warnings, all tests (nextest when installed), doc tests
  bench      run the criterion benchmarks and print the ratio table (`bench records`: large
             runs written and diffed; `bench engine`: llama.cpp on a real GGUF, traced/untraced)
  crossval   two engines, one model: the first divergence, plus event/Jidoka checks
             (`cargo xtask crossval --help`; `--tp N`: a tensor-parallel engine on N
             torch.distributed processes against one process, `cargo xtask crossval --tp --help`)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("crossval") => return crossval::main(&args[1..]),
        // One side of a crossval as a program, for `crossval --bisect` (not in the help).
        Some("crossval-side") => return crossval::side::main(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// The cargo that runs this xtask, so toolchain overrides carry through.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

/// Runs `cmd`, failing with `step` named when it exits non-zero.
pub fn run_step(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: ==> {step}");
    let status = cmd
        .status()
        .with_context(|| format!("step `{step}`: cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("step `{step}` failed ({status})");
    }
    Ok(())
}
