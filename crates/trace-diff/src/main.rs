//! `trace-diff DIR_A DIR_B`: compare a run under test with a reference run.
//!
//! Exit codes: 0 the runs agree within tolerance, 1 they diverge (or records have no partner),
//! 2 error (bad arguments, unreadable input, or any input problem under `--strict`). The work is
//! in [`trace_diff::cli`], shared with `tensor-trace diff`.

use std::process::ExitCode;

use clap::Parser;
use trace_diff::cli::{is_broken_pipe, one_line, run, Args};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // Help and version go to stdout with success; usage errors are exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace-diff: error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}
