//! `tensor-trace completions SHELL`.

use anyhow::Result;
use clap_complete::Shell;

/// Print a shell completion script.
///
/// Example: tensor-trace completions bash > ~/.local/share/bash-completion/completions/tensor-trace
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  tensor-trace completions bash > /etc/bash_completion.d/tensor-trace"
)]
pub struct Args {
    /// The shell to generate completions for.
    shell: Shell,
}

/// Prints the completion script of `cmd`, the whole command line (passed in by `main`, which
/// owns it, so this module does not import the binary's root).
pub fn run(args: Args, mut cmd: clap::Command) -> Result<u8> {
    clap_complete::generate(args.shell, &mut cmd, "tensor-trace", &mut std::io::stdout());
    Ok(0)
}
