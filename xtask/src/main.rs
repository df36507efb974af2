//! Project automation, in the style of rust-analyzer's xtask: plain Rust instead of shell scripts.
//!
//! `cargo xtask ci` is the one test command (README, `.ci/run`); `cargo xtask bench` runs the
//! criterion benchmarks and prints ratios; `cargo xtask crossval` is the end-to-end demo, the
//! product of `crates/crossval`, to which xtask only delegates.

mod bench;
mod browser;
mod ci;
#[cfg(test)]
mod layering;
mod python;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command> [args]

commands:
  ci         fmt check, clippy -D warnings, all tests (nextest when installed), doc tests
  bench      run the criterion benchmarks and print the ratio table (`bench records`: large
             runs written and diffed; `bench engine`: llama.cpp on a real GGUF, traced/untraced;
             `bench python`: the Python package's dump_trace and trace_module ratios)
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
