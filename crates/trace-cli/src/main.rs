//! `tensor-trace`: record, inspect, check and export trace runs from a terminal.
//!
//! This binary only parses arguments and prints; the semantics live in the libraries
//! (`trace-core` for records, runs, events and Jidoka checks; `trace-diff` for comparisons).
//! Exit codes: 0 ok, 1 finding (divergence, violation), 2 usage or input error.

mod cmd;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use trace_cli::EXIT_ERROR;

#[derive(Debug, Parser)]
#[command(
    name = "tensor-trace",
    version,
    about = "Record, inspect, compare and check tensor traces of inference engines",
    after_help = "Exit codes: 0 ok, 1 finding (divergence or violation), 2 usage or input error.\n\
                  RUST_LOG (e.g. RUST_LOG=debug) overrides -v/-q for diagnostic logs."
)]
struct Cli {
    /// More diagnostic logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Record(cmd::record::Args),
    Show(cmd::show::Args),
    Stats(cmd::stats::Args),
    /// Compare two trace directories and name the first divergence (the same as `trace-diff`).
    Diff(cmd::diff::Args),
    Check(cmd::check::Args),
    Bisect(cmd::bisect::Args),
    Repeat(cmd::repeat::Args),
    Events(cmd::events::Args),
    Export(cmd::export::Args),
    Gguf(cmd::gguf::Args),
    Views(cmd::views::Args),
    Completions(cmd::completions::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Record(args) => cmd::record::run(args),
        Command::Show(args) => cmd::show::run(args),
        Command::Stats(args) => cmd::stats::run(args),
        Command::Diff(args) => cmd::diff::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Bisect(args) => cmd::bisect::run(args),
        Command::Repeat(args) => cmd::repeat::run(args),
        Command::Events(args) => cmd::events::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Gguf(args) => cmd::gguf::run(args),
        Command::Views(args) => cmd::views::run(args),
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if trace_diff::cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tensor-trace: error: {}", trace_diff::cli::one_line(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
