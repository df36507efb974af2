//! Where the workspace is and how to run its tools: the one copy of these helpers, used by the
//! crossval (building trace-ffi, its side programs, the venv, llama.cpp) and by xtask.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root (this crate lives at `crates/crossval`).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/crossval is inside the workspace")
        .to_path_buf()
}

/// The cargo that runs this program, so toolchain overrides carry through.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

/// Runs `cmd`, failing with `step` named when it exits non-zero; announces the step on stderr
/// under the running program's name (`xtask: ==> fmt check`).
pub fn run_step(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("{}: ==> {step}", program_name());
    let status = cmd
        .status()
        .with_context(|| format!("step `{step}`: cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("step `{step}` failed ({status})");
    }
    Ok(())
}

/// Creates `dir` and holds an exclusive lock on its file `name` until the returned file is
/// dropped: parallel tests and runs set up a cached directory (a build, a download) once.
pub fn lock_dir(dir: &Path, name: &str) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(name);
    let lock =
        std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
    lock.lock()
        .with_context(|| format!("lock {}", path.display()))?;
    Ok(lock)
}

/// The running executable's file name (`xtask`, `crossval-side`), for messages.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "crossval".to_owned())
}
