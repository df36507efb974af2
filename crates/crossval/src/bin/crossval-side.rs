//! `crossval-side KIND ...`: one side of a crossval as a program, for `--bisect` (see the
//! `crossval::side` module). Each program lives next to what it runs; this only dispatches.

use std::process::ExitCode;

use clap::Parser;
use crossval::model::{minilm, synthetic};
use crossval::reference::rust;

/// One side of a crossval, traced through the environment.
#[derive(Parser, Debug)]
#[command(name = "crossval-side")]
enum Side {
    /// The synthetic model's candle engine; prints the generated tokens.
    Candle(synthetic::SideArgs),
    /// The Rust reference engine; prints the generated tokens.
    Rust(rust::SideArgs),
    /// The MiniLM candle engine.
    Minilm(minilm::SideArgs),
}

fn main() -> ExitCode {
    let side = match Side::try_parse() {
        Ok(side) => side,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let result = match &side {
        Side::Candle(args) => synthetic::side(args),
        Side::Rust(args) => rust::side(args),
        Side::Minilm(args) => minilm::side(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crossval-side: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_a_side_does_not_take_are_errors() {
        let err = |a: &[&str]| {
            let args = std::iter::once("crossval-side").chain(a.iter().copied());
            Side::try_parse_from(args).unwrap_err().to_string()
        };
        assert!(err(&["rust", "m", "p", "1", "--inject", "rmsnorm-eps"]).contains("--inject"));
        assert!(err(&["candle", "m", "p", "1", "--max-tokens", "8"]).contains("--max-tokens"));
        assert!(err(&["minilm", "m", "s", "--precision", "f32"]).contains("--precision"));
        assert!(err(&["rust", "m", "p", "1", "--precision", "f16"])
            .contains("expected f64, f32 or bf16"));
        assert!(err(&["gpt", "m"]).contains("gpt"));
    }
}
