use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The toy engine example (cargo builds examples next to the test binaries' directory).
pub fn toy_engine() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile_dir = deps.parent().unwrap().parent().unwrap();
    let exe = profile_dir
        .join("examples")
        .join(format!("toy_engine{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.exists(),
        "{} missing: cargo test builds examples",
        exe.display()
    );
    exe
}

pub fn tensor_trace() -> Command {
    let mut cmd = Command::cargo_bin("tensor-trace").unwrap();
    cmd.env_remove("TENSOR_TRACE_DIR")
        .env_remove("BITNET_TRACE_DIR")
        .env_remove("TENSOR_TRACE_FILTER")
        .env_remove("TENSOR_TRACE_VALUES")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// Records a toy run into `dir` with extra engine arguments.
pub fn record(dir: &Path, engine_args: &[&str]) {
    tensor_trace()
        .arg("record")
        .arg("--out")
        .arg(dir)
        .arg("--")
        .arg(toy_engine())
        .args(engine_args)
        .assert()
        .success();
}
