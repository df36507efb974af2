//! `cargo xtask ci`'s Python step: the emitter's tests (`python/tests`, the shared golden vectors
//! included) in a venv that this step creates under `target/python-venv`.
//!
//! The venv is made once with `python3 -m venv`; `pip install -e python[test]` (numpy, blake3,
//! pytest from PyPI) runs again only when `python/pyproject.toml` changed or an import fails, so a
//! warm run costs the pytest run alone.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::{project_root, run_step};

/// Where the venv lives (gitignored with the rest of `target/`).
const VENV: &str = "target/python-venv";
/// Holds the `pyproject.toml` the venv was installed from.
const STAMP: &str = ".tensor-trace-pyproject";

pub fn run_tests() -> Result<()> {
    let root = project_root();
    let venv = root.join(VENV);
    let python = venv_python(&venv);
    if !python.exists() {
        run_step(
            "python venv (python3 -m venv target/python-venv)",
            Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .current_dir(&root),
        )?;
    }
    let pyproject_path = root.join("python/pyproject.toml");
    let pyproject =
        fs::read(&pyproject_path).with_context(|| format!("read {}", pyproject_path.display()))?;
    let stamp = venv.join(STAMP);
    let installed = fs::read(&stamp).is_ok_and(|s| s == pyproject) && imports_work(&python);
    if !installed {
        run_step(
            "python install (pip install -e python[test])",
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-e",
                    "python[test]",
                ])
                .current_dir(&root),
        )?;
        fs::write(&stamp, &pyproject).with_context(|| format!("write {}", stamp.display()))?;
    }
    run_step(
        "python tests (pytest python/tests)",
        Command::new(&python)
            .args(["-m", "pytest", "-q", "python/tests"])
            .current_dir(&root),
    )
}

fn venv_python(venv: &Path) -> std::path::PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Whether the venv can import everything the tests need (catches a half-finished install).
fn imports_work(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import tensor_trace, numpy, blake3, pytest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
