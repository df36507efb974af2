//! `tensor-trace diff`: the same implementation as the `trace-diff` binary ([`trace_diff::cli`]).

use anyhow::Result;

/// The arguments, exactly those of `trace-diff`.
pub type Args = trace_diff::cli::Args;

pub fn run(args: Args) -> Result<u8> {
    trace_diff::cli::run(&args)
}
