//! `TENSOR_TRACE_ASYNC=1`: records queued on the background writer reach the disk even when the
//! process ends with `std::process::exit` (statics are never dropped; the exit hook flushes).

use std::process::Command;

use trace_core::record::MANIFEST_FILE;
use trace_core::{dump_with, Context, TensorView};

const CHILD_ENV: &str = "TRACE_CORE_ASYNC_EXIT_CHILD";
const RECORDS: usize = 300;

#[test]
fn async_exit_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // only does something when run as the child
    }
    let v: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    for i in 0..RECORDS {
        let ctx = Context::default().seq(i as u64);
        dump_with("blk0/out", &ctx, TensorView::new(&[4096], &v[..]).unwrap()).unwrap();
    }
    std::process::exit(0); // no destructors, no explicit flush
}

#[test]
fn queued_records_are_flushed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "async_exit_child", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env("TENSOR_TRACE_DIR", dir.path())
        .env("TENSOR_TRACE_ASYNC", "1")
        .env_remove("BITNET_TRACE_DIR")
        .status()
        .unwrap();
    assert!(status.success());
    let manifest = std::fs::read_to_string(dir.path().join(MANIFEST_FILE)).unwrap();
    assert_eq!(manifest.lines().count(), RECORDS);
    assert!(dir
        .path()
        .join(format!("blk0_out.{}.trace", RECORDS - 1))
        .exists());
}
