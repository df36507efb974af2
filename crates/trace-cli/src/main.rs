//! The `tensor-trace` command-line tool. Not implemented yet (issue 7).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("tensor-trace: no commands yet (issue 7); use `cargo xtask` and `trace-diff`");
    ExitCode::from(2)
}
