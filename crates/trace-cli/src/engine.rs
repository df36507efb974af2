//! Running an engine with tracing on: the command, the trace settings it gets, its exit status.
//!
//! `tensor-trace record`, `bisect` and `repeat` all start engines through [`run_traced`], so
//! the environment an engine sees is decided in one place.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use trace_core::config::{
    ENV_APPEND, ENV_DIR, ENV_DIR_COMPAT, ENV_FILTER, ENV_VALUES, ENV_VALUES_AT,
};

/// A command to run more than once: program, arguments, environment changes, working directory.
///
/// [`std::process::Command`] runs once and cannot be cloned; this keeps what it was built from.
/// [`EngineCommand::from_command`] copies a `Command`'s program, arguments, environment changes
/// and working directory (not an `env_clear`, which `Command` does not expose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineCommand {
    /// The program to run.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment changes: `Some(value)` sets, `None` removes.
    pub env: Vec<(OsString, Option<OsString>)>,
    /// Working directory; the caller's when `None`.
    pub current_dir: Option<PathBuf>,
}

impl EngineCommand {
    /// `argv[0]` with the arguments `argv[1..]`; `None` when `argv` is empty.
    pub fn from_argv<I, S>(argv: I) -> Option<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut it = argv.into_iter().map(Into::into);
        let program = it.next()?;
        Some(Self {
            program,
            args: it.collect(),
            env: Vec::new(),
            current_dir: None,
        })
    }

    /// The program, arguments, environment changes and working directory of `cmd`.
    pub fn from_command(cmd: &Command) -> Self {
        Self {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(OsStr::to_owned).collect(),
            env: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(OsStr::to_owned)))
                .collect(),
            current_dir: cmd.get_current_dir().map(Path::to_path_buf),
        }
    }

    /// The command line for messages: program and arguments, lossily decoded, space-separated.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A fresh [`Command`] for one run.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// The trace settings one run gets (the `TENSOR_TRACE_*` variables besides the directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSettings {
    /// `TENSOR_TRACE_FILTER`.
    pub filter: Option<String>,
    /// `TENSOR_TRACE_VALUES`.
    pub values: Option<String>,
    /// `TENSOR_TRACE_VALUES_AT`.
    pub values_at: Option<String>,
    /// `TENSOR_TRACE_APPEND=1`.
    pub append: bool,
    /// Remove these settings inherited from our own environment when not given here, so the
    /// run sees exactly what was asked (`bisect`, `repeat`). `record` keeps them.
    pub isolate: bool,
}

/// Where an engine's stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineOutput<'a> {
    /// Ours (the terminal).
    Inherit,
    /// Both into this file (created or truncated).
    File(&'a Path),
}

/// Runs `engine` with tracing into `dir` and `settings`, and waits for it.
///
/// Environment, in order: our own, minus the settings when `settings.isolate`; the command's own
/// changes; then `TENSOR_TRACE_DIR` and the seed's `BITNET_TRACE_DIR` (engines built on the seed
/// crate only know that one) and every setting given, which win.
pub fn run_traced(
    engine: &EngineCommand,
    dir: &Path,
    settings: &TraceSettings,
    output: EngineOutput<'_>,
) -> io::Result<ExitStatus> {
    let mut cmd = engine.command();
    if settings.isolate {
        for key in [ENV_FILTER, ENV_VALUES, ENV_VALUES_AT, ENV_APPEND] {
            cmd.env_remove(key);
        }
    }
    for (key, value) in &engine.env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.env(ENV_DIR, dir).env(ENV_DIR_COMPAT, dir);
    let given = [
        (ENV_FILTER, settings.filter.as_deref()),
        (ENV_VALUES, settings.values.as_deref()),
        (ENV_VALUES_AT, settings.values_at.as_deref()),
        (ENV_APPEND, settings.append.then_some("1")),
    ];
    for (key, value) in given {
        if let Some(v) = value {
            cmd.env(key, v);
        }
    }
    if let EngineOutput::File(path) = output {
        let log = File::create(path)?;
        cmd.stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null());
    }
    cmd.status()
}

/// The exit code a status stands for: its code, or 128 + N when killed by signal N, else 2.
pub fn exit_code(status: &ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return (code & 0xff) as u8;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return (128 + signal).min(255) as u8;
        }
    }
    crate::EXIT_ERROR
}

/// Total size in bytes of the files directly in `dir` (a trace directory has no subdirectories).
pub fn dir_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_command_keeps_what_the_command_was_built_from() {
        let mut cmd = Command::new("engine");
        cmd.args(["--steps", "2"])
            .env("A", "1")
            .env_remove("B")
            .current_dir("/tmp");
        let e = EngineCommand::from_command(&cmd);
        assert_eq!(e.program, "engine");
        assert_eq!(e.args, ["--steps", "2"]);
        assert_eq!(e.env, [("A".into(), Some("1".into())), ("B".into(), None)]);
        assert_eq!(e.current_dir.as_deref(), Some(Path::new("/tmp")));
        assert_eq!(e.display(), "engine --steps 2");
        assert!(EngineCommand::from_argv(Vec::<String>::new()).is_none());
    }
}
