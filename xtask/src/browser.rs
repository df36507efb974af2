//! Chromium for the HTML report's browser test (`crates/trace-diff/tests/it/browser.rs`):
//! `cargo xtask ci` installs it where it is missing and tells the test where it is, so the test
//! never skips in CI.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use crossval::workspace::run_step;

/// The variable that hands the browser to the test (which then fails instead of skipping).
pub const ENV: &str = "TRACE_DIFF_CHROMIUM";

/// Names of the Chromium executable, as Debian and other distributions install it.
const NAMES: [&str; 2] = ["chromium", "chromium-browser"];

/// The first Chromium executable in a `PATH`-style list of directories.
fn find_in(path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .flat_map(|dir| NAMES.map(|name| dir.join(name)))
        .find(|exe| exe.is_file())
}

fn find() -> Option<PathBuf> {
    if let Some(exe) = std::env::var_os(ENV) {
        return Some(exe.into());
    }
    find_in(&std::env::var_os("PATH")?)
}

/// Chromium's path: `$TRACE_DIFF_CHROMIUM`, else `chromium` on the `PATH`, else the Debian
/// package `chromium` installed with apt-get (as the project's machine image allows: root).
pub fn ensure_chromium() -> Result<PathBuf> {
    if let Some(exe) = find() {
        return Ok(exe);
    }
    eprintln!("xtask: chromium not found: installing the Debian package `chromium`");
    let hint = "the HTML report's browser test needs Chromium: install the Debian package `chromium` (as root) or set TRACE_DIFF_CHROMIUM to a Chromium executable";
    run_step("apt-get update", Command::new("apt-get").arg("update")).context(hint)?;
    run_step(
        "apt-get install chromium",
        Command::new("apt-get")
            .args(["install", "-y", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context(hint)?;
    find().with_context(|| format!("apt-get installed chromium, but it is not on PATH: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_chromium_in_path_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (empty, first, second) = (
            tmp.path().join("empty"),
            tmp.path().join("first"),
            tmp.path().join("second"),
        );
        for dir in [&empty, &first, &second] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::write(first.join("chromium-browser"), "").unwrap();
        std::fs::write(second.join("chromium"), "").unwrap();
        let path = std::env::join_paths([&empty, &first, &second]).unwrap();
        assert_eq!(find_in(&path), Some(first.join("chromium-browser")));
        let path = std::env::join_paths([&empty]).unwrap();
        assert_eq!(find_in(&path), None);
    }
}
