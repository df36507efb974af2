//! What the references that are C++ programs share: `libtrace_ffi.a` built by cargo, the
//! include directory of the C ABI, and the system libraries a Rust static library needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, ensure, Context, Result};

/// The directory of `tensor_trace.h` and `tensor_trace.hpp`, relative to the workspace root.
pub const INCLUDE: &str = "crates/trace-ffi/include";

/// System libraries a Rust static library needs on Linux
/// (`cargo rustc -p trace-ffi --lib --crate-type staticlib -- --print native-static-libs`).
pub const NATIVE_LIBS: &[&str] = &[
    "-lpthread",
    "-ldl",
    "-lm",
    "-lrt",
    "-lutil",
    "-lgcc_s",
    "-lc",
];

/// Compiles the C++ program `source` (relative to the workspace root) into `exe` with `$CXX`
/// (default `c++`): `configure` adds the flags and the libraries after `-I INCLUDE SOURCE -o ...`
/// (libraries must follow the program for the linker). The compiler writes a private temporary name (per process and
/// per call: tests build from several threads), renamed onto `exe` once complete, so a concurrent
/// build never runs a half-written program. Warnings are printed unless `quiet`.
pub fn compile(
    source: &str,
    exe: &Path,
    quiet: bool,
    configure: impl FnOnce(&mut Command),
) -> Result<()> {
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let name = exe.file_name().unwrap_or_default().to_string_lossy();
    let tmp = exe.with_file_name(format!("{name}.{}.{n}.tmp", std::process::id()));
    let root = crate::workspace::project_root();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    let mut cmd = Command::new(&cxx);
    cmd.arg("-I")
        .arg(root.join(INCLUDE))
        .arg(root.join(source))
        .arg("-o")
        .arg(&tmp);
    configure(&mut cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run the C++ compiler {cxx:?} (set CXX)"))?;
    let diagnostics = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "{cxx} {source} failed ({}):\n{}",
            out.status,
            diagnostics.trim_end()
        );
    }
    if !quiet && !diagnostics.trim().is_empty() {
        eprintln!("{}", diagnostics.trim_end());
    }
    std::fs::rename(&tmp, exe)
        .with_context(|| format!("rename {} to {}", tmp.display(), exe.display()))
}

/// How to build the C++ engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build `libtrace_ffi.a` with `--release` (the default: a debug trace-ffi makes a traced
    /// run of a real engine several times slower, see issue 29).
    pub release: bool,
    /// Hide cargo's and the compiler's warnings (errors are still reported, in the `Err`).
    pub quiet: bool,
    /// Compile with `-Werror -pedantic` (the tests do).
    pub strict: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            release: true,
            quiet: false,
            strict: false,
        }
    }
}

/// `cargo build -p trace-ffi --lib`; returns the `libtrace_ffi.a` cargo reports.
pub fn build_staticlib(o: &BuildOptions) -> Result<PathBuf> {
    let mut cmd = crate::workspace::cargo();
    cmd.args([
        "build",
        "-p",
        "trace-ffi",
        "--lib",
        "--message-format=json-render-diagnostics",
    ]);
    if o.release {
        cmd.arg("--release");
    }
    // --quiet drops cargo's "Compiling"/"Finished" lines; warnings and errors still show.
    cmd.arg("--quiet");
    cmd.stdout(Stdio::piped()).stderr(if o.quiet {
        Stdio::piped()
    } else {
        Stdio::inherit()
    });
    let out = cmd.output().context("cannot run cargo")?;
    ensure!(
        out.status.success(),
        "cargo build -p trace-ffi failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    staticlib_from_messages(&String::from_utf8_lossy(&out.stdout))
        .context("cargo build -p trace-ffi reported no libtrace_ffi.a")
}

/// The `.a` of trace-ffi among cargo's JSON messages (`compiler-artifact`), wherever the target
/// directory is.
fn staticlib_from_messages(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "trace_ffi")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
        })
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "a"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_staticlib_in_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"trace_core"},"filenames":["/t/libtrace_core.rlib"]}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"trace_ffi"},"filenames":["/t/libtrace_ffi.so","/t/libtrace_ffi.a","/t/libtrace_ffi.rlib"]}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            staticlib_from_messages(messages),
            Some(PathBuf::from("/t/libtrace_ffi.a"))
        );
        assert_eq!(staticlib_from_messages("not json\n"), None);
    }
}
