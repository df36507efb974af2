//! Running one side of a crossval: trace directories, programs, progress lines.

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use trace_core::record::{MANIFEST_FILE, PACKED_LOG};
use trace_core::run::Run;
use trace_core::Tracer;

/// Reads a trace directory.
pub(crate) fn open_run(dir: &Path) -> Result<Run> {
    Run::open(dir).with_context(|| format!("read the traces in {}", dir.display()))
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

/// Removes every tracing setting of the caller's environment from `cmd` (a
/// `TENSOR_TRACE_FILTER` there would silently drop records).
pub(crate) fn clear_trace_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("TENSOR_TRACE_") || name == "BITNET_TRACE_DIR" {
            cmd.env_remove(&key);
        }
    }
}

/// Makes `cmd`, a program that traces through the environment, trace into `trace_dir` (emptied
/// of an earlier run first) with every raw value, and with no other tracing setting of the
/// caller's environment.
pub(crate) fn trace_into(cmd: &mut Command, trace_dir: &Path) -> Result<()> {
    clear_trace_dir(trace_dir)?;
    clear_trace_env(cmd);
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
            "{} exists and is not a trace directory (no {MANIFEST_FILE} or {PACKED_LOG}): refusing \
             to clear it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))
}

/// One line per stage on stderr, with the time since the start.
pub struct Progress {
    quiet: bool,
    start: Instant,
    count: Cell<u32>,
}

impl Progress {
    /// Starts the clock; `quiet` prints nothing (tests).
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            start: Instant::now(),
            count: Cell::new(0),
        }
    }

    /// Prints `crossval: [N] WHAT (SECONDS)`.
    pub fn stage(&self, what: &str) {
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
