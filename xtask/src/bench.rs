//! `cargo xtask bench`: runs the criterion benchmarks and prints ratios measured in one run.

use anyhow::Result;

pub fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("no benchmarks yet")
}
