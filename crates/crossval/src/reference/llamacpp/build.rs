//! llama.cpp's sources and static libraries, once per version, under `target/`.
//!
//! The sources come from the source distribution of `llama-cpp-python` on PyPI (its
//! `vendor/llama.cpp` is llama.cpp itself), fetched by pip without building it and checked
//! against its pinned sha256 (pip's hash-checking mode). CMake and Ninja come from their PyPI
//! wheels ([`Extra::LlamaCpp`]). The CPU backend is configured and built once into
//! `target/llama.cpp-VERSION/build`; a stamp file there records the version, digest and CMake
//! flags it was built with, and a file lock keeps parallel tests from building twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::venv::{self as python, Extra};

/// The pinned `llama-cpp-python` release whose `vendor/llama.cpp` is built.
pub const VERSION: &str = "0.3.36";
/// sha256 of `llama_cpp_python-0.3.36.tar.gz` on PyPI.
pub const SDIST_SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
/// CMake flags of the build: the CPU backend as static libraries, nothing else.
pub const CMAKE_FLAGS: &[&str] = &[
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_CURL=OFF",
    "-DGGML_OPENMP=OFF",
    "-DGGML_NATIVE=OFF",
];
/// The static libraries to link, in link order, relative to the build directory.
pub const LIBS: &[&str] = &[
    "src/libllama.a",
    "ggml/src/libggml.a",
    "ggml/src/libggml-cpu.a",
    "ggml/src/libggml-base.a",
];

/// A built llama.cpp.
#[derive(Clone, Debug)]
pub struct Built {
    /// `vendor/llama.cpp` of the extracted sources.
    pub source: PathBuf,
    /// The CMake build directory.
    pub build: PathBuf,
}

impl Built {
    /// The include directories of `llama.h` and `ggml.h`.
    pub fn includes(&self) -> [PathBuf; 2] {
        [
            self.source.join("include"),
            self.source.join("ggml/include"),
        ]
    }

    /// The static libraries, in link order.
    pub fn libs(&self) -> Vec<PathBuf> {
        LIBS.iter().map(|l| self.build.join(l)).collect()
    }
}

/// `target/llama.cpp-VERSION`.
pub fn root() -> PathBuf {
    crate::workspace::project_root()
        .join("target")
        .join(format!("llama.cpp-{VERSION}"))
}

/// What the stamp file holds: everything the build depends on.
fn stamp_text() -> String {
    format!(
        "llama-cpp-python {VERSION}\nsha256 {SDIST_SHA256}\n{}\n",
        CMAKE_FLAGS.join("\n")
    )
}

/// Fetches, extracts and builds llama.cpp unless the stamp says it is done.
pub fn ensure(quiet: bool) -> Result<Built> {
    let root = root();
    let _lock = crate::workspace::lock_dir(&root, "build.lock")?;

    let built = Built {
        source: root.join(format!("llama_cpp_python-{VERSION}/vendor/llama.cpp")),
        build: root.join("build"),
    };
    let stamp = built.build.join(".tensor-trace-stamp");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text())
        && built.libs().iter().all(|l| l.exists())
    {
        return Ok(built);
    }
    let python = python::ensure_venv(&[Extra::LlamaCpp])?;
    let bin = python
        .parent()
        .context("the venv's python has no directory")?
        .to_path_buf();
    if !built.source.join("CMakeLists.txt").exists() {
        extract(quiet, &python, &root, &built)?;
    }
    let _ = fs::remove_file(&stamp);
    cmake_build(quiet, &bin, &built)?;
    fs::write(&stamp, stamp_text()).with_context(|| format!("write {}", stamp.display()))?;
    Ok(built)
}

/// Fetches the sdist into `root` and extracts its `vendor/llama.cpp` to `built.source`.
fn extract(quiet: bool, python: &Path, root: &Path, built: &Built) -> Result<()> {
    let sdist = fetch(python, root)?;
    let top = format!("llama_cpp_python-{VERSION}");
    step(
        quiet,
        &format!("llama.cpp: extract {}", sdist.display()),
        Command::new("tar")
            .arg("-xzf")
            .arg(&sdist)
            .arg("-C")
            .arg(root)
            .arg(format!("{top}/vendor/llama.cpp")),
    )?;
    ensure!(
        built.source.join("CMakeLists.txt").exists(),
        "{} holds no {top}/vendor/llama.cpp/CMakeLists.txt",
        sdist.display()
    );
    Ok(())
}

/// Configures and builds the `llama` target with the venv's CMake and Ninja (in `bin`), and
/// checks that every library was made.
fn cmake_build(quiet: bool, bin: &Path, built: &Built) -> Result<()> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    step(
        quiet,
        "llama.cpp: cmake configure (CPU backend, static)",
        Command::new(bin.join("cmake"))
            .arg("-S")
            .arg(&built.source)
            .arg("-B")
            .arg(&built.build)
            .args(["-G", "Ninja"])
            .arg(format!(
                "-DCMAKE_MAKE_PROGRAM={}",
                bin.join("ninja").display()
            ))
            .args(CMAKE_FLAGS),
    )?;
    step(
        quiet,
        &format!("llama.cpp: build the llama target ({jobs} jobs; minutes on a fresh clone)"),
        Command::new(bin.join("cmake"))
            .arg("--build")
            .arg(&built.build)
            .args(["--target", "llama", "--parallel", &jobs.to_string()]),
    )?;
    for lib in built.libs() {
        ensure!(
            lib.exists(),
            "the llama.cpp build made no {}",
            lib.display()
        );
    }
    Ok(())
}

/// `pip download` of the pinned sdist into `root/sdist`, the digest checked by pip.
fn fetch(python: &Path, root: &Path) -> Result<PathBuf> {
    let dir = root.join("sdist");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    // --no-binary for this package only: the sdist, not a wheel (`:all:` would also build
    // CMake from source for the metadata step).
    crate::venv::pip_download(
        python,
        "llama-cpp-python",
        VERSION,
        SDIST_SHA256,
        ["--no-binary", "llama-cpp-python"],
        &dir,
    )?;
    let sdist = dir.join(format!("llama_cpp_python-{VERSION}.tar.gz"));
    ensure!(sdist.exists(), "pip download made no {}", sdist.display());
    Ok(sdist)
}

/// Runs a build step; its output is shown unless `quiet` (then only on failure).
fn step(quiet: bool, what: &str, cmd: &mut Command) -> Result<()> {
    if !quiet {
        return crate::workspace::run_step(what, cmd);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_changes_with_what_the_build_depends_on() {
        let s = stamp_text();
        assert!(s.contains(VERSION) && s.contains(SDIST_SHA256), "{s}");
        for flag in CMAKE_FLAGS {
            assert!(s.contains(flag), "{flag}");
        }
        assert_eq!(SDIST_SHA256.len(), 64);
        assert!(root().ends_with(format!("target/llama.cpp-{VERSION}")));
    }
}
