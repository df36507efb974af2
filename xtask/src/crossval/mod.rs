//! `cargo xtask crossval`: a candle engine and a reference on the same model, both traced, and
//! the first divergence between them.
//!
//! Two drivers, one per model: [`synthetic`] (a seeded Llama-style model, the candle engine of
//! `trace_candle::engine`) and [`minilm`] (all-MiniLM-L6-v2, the candle engine of
//! `crates/minilm`). Each writes or extracts its model, runs its candle engine as side A, runs the
//! chosen [`reference`] as side B, diffs the two with `trace_diff` under the reference's rules,
//! and prints the report. The references are plug-ins behind one interface
//! ([`reference::Reference`]); the drivers never name one.

pub mod bisect;
pub mod minilm;
pub mod reference;
pub mod side;
pub mod synthetic;
pub mod tp;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use trace_core::record::{MANIFEST_FILE, PACKED_LOG};
use trace_core::run::Run;
use trace_core::Tracer;

use reference::{Model, Precision};

/// The entry point for `cargo xtask crossval ARGS`: 0 agree, 1 diverged, 2 error.
pub fn main(args: &[String]) -> ExitCode {
    // `--tp N`: the tensor-parallel crossval (its own driver and flags).
    let tensor_parallel = args.iter().any(|a| a == "--tp" || a.starts_with("--tp="));
    let result = if tensor_parallel {
        tp::main(args)
    } else {
        select_model(args).and_then(|(model, rest)| match model {
            Model::Synthetic => synthetic::main(&rest),
            Model::MiniLm => minilm::main(&rest),
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask crossval: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Takes `--model NAME` out of `crossval`'s arguments: the model (default
/// [`Model::Synthetic`]) and the other arguments, in order.
pub fn select_model(args: &[String]) -> Result<(Model, Vec<String>)> {
    let mut model = Model::Synthetic;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = match arg.strip_prefix("--model") {
            Some("") => it
                .next()
                .context("--model needs a value (see --help)")?
                .as_str(),
            Some(v) if v.starts_with('=') => &v[1..],
            _ => {
                rest.push(arg.clone());
                continue;
            }
        };
        model = Model::ALL
            .into_iter()
            .find(|m| m.name() == value)
            .with_context(|| {
                format!(
                    "--model {value:?}: expected one of {}",
                    Model::ALL.map(Model::name).join(", ")
                )
            })?;
    }
    Ok((model, rest))
}

/// How a crossval judges each pair of records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judge {
    /// Calibrated verdicts (the default): the reference also runs in the engine's precision
    /// (side C, the baseline) and a record agrees when the engine's error is at most
    /// `max_ratio` times the baseline's (`trace_diff::diff_runs_calibrated`). Off: dtype
    /// tolerances (`--no-baseline`).
    pub baseline: bool,
    /// The largest ratio of the engine's error to the baseline's that agrees.
    pub max_ratio: f64,
}

impl Default for Judge {
    fn default() -> Self {
        Judge {
            baseline: true,
            max_ratio: trace_diff::calibrate::DEFAULT_MAX_RATIO,
        }
    }
}

impl Judge {
    /// Takes `--no-baseline`, or `--max-ratio K` with its value from `value`.
    pub(crate) fn parse_flag(
        &mut self,
        flag: &str,
        value: impl FnOnce() -> Result<String>,
    ) -> Result<()> {
        match flag {
            "--no-baseline" => self.baseline = false,
            _ => {
                let v = value()?;
                self.max_ratio = trace_diff::cli::parse_max_ratio(&v)
                    .map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"))?;
            }
        }
        Ok(())
    }

    /// How pairs are judged, for the progress line.
    pub(crate) fn describe(&self) -> &'static str {
        if self.baseline {
            "calibrated by the baseline (C)"
        } else {
            "dtype tolerances"
        }
    }

    /// The `--help` lines of the two flags.
    pub(crate) fn help() -> String {
        format!(
            "  --no-baseline     judge by dtype tolerances instead of calibrated verdicts
  --max-ratio K     calibrated verdicts: the largest ratio of the engine's error to the
                    baseline's that agrees (default {})
",
            trace_diff::calibrate::DEFAULT_MAX_RATIO
        )
    }

    /// Where the baseline's traces go: the reference's directory name with the precision.
    pub(crate) fn baseline_dir(out: &Path, reference: &str, precision: Precision) -> PathBuf {
        out.join(format!("{reference}-{}", precision.name()))
    }

    /// Diffs `a` (the engine) with `b` (the reference in f64), calibrated against `baseline`
    /// when there is one.
    pub(crate) fn diff(
        &self,
        a: &Run,
        b: &Run,
        baseline: Option<&Run>,
        rules: trace_diff::Rules,
    ) -> Result<trace_diff::Report> {
        let options = trace_diff::DiffOptions {
            rules,
            max_ratio: self.max_ratio,
            ..Default::default()
        };
        match baseline {
            Some(c) => trace_diff::diff_runs_calibrated(a, b, c, &options),
            None => trace_diff::diff_runs(a, b, &options),
        }
        .context("compare the traces")
    }
}

/// Reads a trace directory.
pub(crate) fn open_run(dir: &Path) -> Result<Run> {
    Run::open(dir).with_context(|| format!("read the traces in {}", dir.display()))
}

/// Parses a flag's integer value.
pub(crate) fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    v.parse()
        .with_context(|| format!("{flag} {v:?}: expected a non-negative integer"))
}

/// A directory tracer saving every raw value, into a directory emptied of an earlier run.
pub(crate) fn fresh_tracer(dir: &Path) -> Result<Tracer> {
    clear_trace_dir(dir)?;
    Tracer::builder()
        .dir(dir)
        .values("*")
        .build()
        .with_context(|| format!("trace into {}", dir.display()))
}

/// Makes `cmd`, a program that traces through the environment, trace into `trace_dir` (emptied
/// of an earlier run first) with every raw value, and with no other tracing setting of the
/// caller's environment (a `TENSOR_TRACE_FILTER` there would silently drop records).
pub(crate) fn trace_into(cmd: &mut Command, trace_dir: &Path) -> Result<()> {
    clear_trace_dir(trace_dir)?;
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("TENSOR_TRACE_") || name == "BITNET_TRACE_DIR" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("TENSOR_TRACE_DIR", trace_dir)
        .env("TENSOR_TRACE_VALUES", "*");
    Ok(())
}

/// Runs `cmd` to the end; fails naming `what` with its stderr when it exits non-zero.
pub(crate) fn run_program(what: &str, cmd: &mut Command) -> Result<std::process::Output> {
    let output = cmd
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(output)
}

/// Removes an earlier run's traces; refuses to delete a directory that is not one.
pub(crate) fn clear_trace_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let is_trace_dir = [MANIFEST_FILE, PACKED_LOG]
        .iter()
        .any(|f| dir.join(f).exists())
        || std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .next()
            .is_none();
    if !is_trace_dir {
        bail!(
            "{} exists and is not a trace directory (no {MANIFEST_FILE} or {PACKED_LOG}): refusing to clear it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))
}

/// One line per stage on stderr, with the time since the start.
pub(crate) struct Progress {
    quiet: bool,
    start: Instant,
    count: Cell<u32>,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            start: Instant::now(),
            count: Cell::new(0),
        }
    }

    pub(crate) fn stage(&self, what: &str) {
        let n = self.count.get() + 1;
        self.count.set(n);
        if !self.quiet {
            eprintln!(
                "crossval: [{n}] {what} ({:.2}s)",
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_selection() {
        let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let check = |input: &[&str], model: Model, rest: &[&str]| {
            assert_eq!(
                select_model(&args(input)).unwrap(),
                (model, args(rest)),
                "{input:?}"
            );
        };
        check(&[], Model::Synthetic, &[]);
        check(&["--steps", "2"], Model::Synthetic, &["--steps", "2"]);
        check(&["--model", "minilm", "--json"], Model::MiniLm, &["--json"]);
        check(&["--json", "--model=minilm"], Model::MiniLm, &["--json"]);
        check(
            &["--model", "synthetic", "--help"],
            Model::Synthetic,
            &["--help"],
        );
        let e = format!(
            "{:#}",
            select_model(&args(&["--model", "bert"])).unwrap_err()
        );
        assert!(e.contains("expected one of synthetic, minilm"), "{e}");
        assert!(select_model(&args(&["--model"])).is_err());
    }

    #[test]
    fn refuses_to_clear_a_foreign_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = format!("{:#}", clear_trace_dir(dir.path()).unwrap_err());
        assert!(err.contains("not a trace directory"), "{err}");
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn traced_commands_see_only_their_own_settings() {
        let dir = tempfile::tempdir().unwrap();
        let trace_dir = dir.path().join("t");
        let mut cmd = Command::new("true");
        trace_into(&mut cmd, &trace_dir).unwrap();
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs.contains(&(
            std::ffi::OsStr::new("TENSOR_TRACE_DIR"),
            Some(trace_dir.as_os_str())
        )));
        assert!(envs.contains(&(
            std::ffi::OsStr::new("TENSOR_TRACE_VALUES"),
            Some(std::ffi::OsStr::new("*"))
        )));
    }
}
