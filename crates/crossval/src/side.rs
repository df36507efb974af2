//! `cargo xtask crossval-side KIND ...`: one side of a crossval as a program of its own, traced
//! through the environment (`TENSOR_TRACE_DIR`, `TENSOR_TRACE_VALUES_AT`, ...).
//!
//! The crossvals run their engines in-process; `--bisect` (trace-cli's bisect) needs programs it
//! can run twice with different tracing settings. These are those programs:
//!
//! ```text
//! xtask crossval-side candle MODEL_DIR PROMPT_FILE STEPS [--precision f32|bf16] [--inject BUG]
//! xtask crossval-side rust   MODEL_DIR PROMPT_FILE STEPS [--precision f64|f32|bf16]
//! xtask crossval-side minilm MODEL_DIR SENTENCES_JSON [--max-tokens N] [--inject BUG]
//! ```
//!
//! `candle` and `rust` print the generated tokens. Exit code 0, or 2 on an error.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use trace_candle::engine::{Bug, Llama, Traces};

use super::number;
use super::reference::Precision;

/// The entry point for `cargo xtask crossval-side ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask crossval-side: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let (positional, flags) = split(args)?;
    // A flag the chosen side does not take is an error, not silently dropped.
    let kind = positional.first().map(String::as_str).unwrap_or_default();
    let unused = match kind {
        "candle" => flags.max_tokens.map(|_| "--max-tokens"),
        "rust" => flags
            .max_tokens
            .map(|_| "--max-tokens")
            .or(flags.inject.as_ref().map(|_| "--inject")),
        "minilm" => flags.precision.map(|_| "--precision"),
        _ => None,
    };
    if let Some(flag) = unused {
        bail!("crossval-side {kind} does not take {flag}");
    }
    let tracer = trace_core::global().context("tracing settings")?;
    match positional.as_slice() {
        [kind, model, prompt, steps] if kind == "candle" => {
            let dtype = match flags.precision.unwrap_or(Precision::F32) {
                Precision::F32 => candle_core::DType::F32,
                Precision::Bf16 => candle_core::DType::BF16,
                Precision::F64 => bail!("--precision f64: the candle engine runs in f32 or bf16"),
            };
            let prompt = read_prompt(Path::new(prompt))?;
            let engine = Llama::load_with(
                Path::new(model),
                flags.inject.map(parse_bug).transpose()?,
                dtype,
            )
            .context("load the candle engine")?;
            let generation = engine
                .generate_text(
                    &prompt,
                    number("STEPS", steps)?,
                    Traces {
                        tensors: tracer,
                        events: None,
                    },
                )
                .context("run the candle engine")?;
            print_tokens(&generation.tokens);
        }
        [kind, model, prompt, steps] if kind == "rust" => {
            let precision = flags.precision.unwrap_or(Precision::F64);
            let engine = reference_engine::Model::load_with(Path::new(model), precision)
                .context("load the reference engine")?;
            let prompt: Vec<u32> = read_prompt(Path::new(prompt))?
                .bytes()
                .map(u32::from)
                .collect();
            let tokens = engine
                .generate(&prompt, number("STEPS", steps)?, tracer)
                .context("run the reference engine")?;
            print_tokens(&tokens);
        }
        [kind, model, sentences] if kind == "minilm" => {
            let sentences: Vec<String> = serde_json::from_str(
                &std::fs::read_to_string(sentences).with_context(|| format!("read {sentences}"))?,
            )
            .with_context(|| format!("{sentences}: expected a JSON list of strings"))?;
            let bug = flags.inject.map(|b| b.parse::<minilm::Bug>()).transpose()?;
            let encoder = super::minilm::load_encoder(Path::new(model), flags.max_tokens, bug)?;
            let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
            let batch = encoder.tokenizer.encode(&refs)?;
            // The environment's settings, as trace_candle's global tracer reads them.
            encoder
                .model
                .forward(&batch, minilm::Trace::Env)
                .context("run the candle engine")?;
        }
        _ => bail!(
            "usage: crossval-side candle|rust MODEL_DIR PROMPT_FILE STEPS [flags] | \
             crossval-side minilm MODEL_DIR SENTENCES_JSON [flags] (got {positional:?})"
        ),
    }
    if let Some(t) = tracer {
        t.flush()?;
    }
    Ok(())
}

#[derive(Default)]
struct Flags {
    precision: Option<Precision>,
    inject: Option<String>,
    max_tokens: Option<usize>,
}

fn split(args: &[String]) -> Result<(Vec<String>, Flags)> {
    let mut positional = Vec::new();
    let mut flags = Flags::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--precision" => {
                let v = value()?;
                flags.precision = Some(
                    Precision::ALL
                        .into_iter()
                        .find(|p| p.name() == v)
                        .with_context(|| format!("--precision {v:?}: expected f64, f32 or bf16"))?,
                );
            }
            "--inject" => flags.inject = Some(value()?),
            "--max-tokens" => flags.max_tokens = Some(number("--max-tokens", &value()?)?),
            flag if flag.starts_with("--") => bail!("unknown option {flag:?}"),
            _ => positional.push(arg.clone()),
        }
    }
    Ok((positional, flags))
}

fn parse_bug(name: String) -> Result<Bug> {
    name.parse().context("--inject")
}

fn read_prompt(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

fn print_tokens(tokens: &[u32]) {
    let text: Vec<String> = tokens.iter().map(u32::to_string).collect();
    println!("{}", text.join(" "));
}

/// `xtask crossval-side ARGS`, with this build of xtask (cargo reports where it is).
pub fn command(args: &[String]) -> Result<Command> {
    let mut cmd = Command::new(xtask_exe()?);
    cmd.arg("crossval-side")
        .args(args)
        .current_dir(crate::project_root())
        .stdin(Stdio::null());
    Ok(cmd)
}

/// The xtask executable: built (a no-op when it is up to date) and located through cargo's JSON
/// messages, so it is right whatever the target directory and whether this is the binary or a
/// test.
fn xtask_exe() -> Result<PathBuf> {
    let out = crate::cargo()
        .args([
            "build",
            "--quiet",
            "-p",
            "xtask",
            "--bin",
            "xtask",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("cargo build -p xtask failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "xtask")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo build -p xtask reported no executable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_a_side_does_not_take_are_errors() {
        let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let err = |a: &[&str]| format!("{:#}", run(&args(a)).unwrap_err());
        assert!(err(&["rust", "m", "p", "1", "--inject", "rmsnorm-eps"])
            .contains("does not take --inject"));
        assert!(err(&["candle", "m", "p", "1", "--max-tokens", "8"])
            .contains("does not take --max-tokens"));
        assert!(
            err(&["minilm", "m", "s", "--precision", "f32"]).contains("does not take --precision")
        );
        assert!(err(&["rust", "m", "p", "1", "--precision", "f16"])
            .contains("expected f64, f32 or bf16"));
        assert!(err(&["gpt", "m"]).contains("usage: crossval-side"));
    }
}
