//! `TENSOR_TRACE_ASYNC=1`: records queued on the background writer reach the disk even when the
//! process ends with `std::process::exit` (statics are never dropped; the exit hook flushes).
//!
//! The test re-runs itself as a child (its own binary, `--exact` its own name) with the child's
//! variable set; only then does it capture and exit, so no test passes by doing nothing.

use std::process::Command;

use trace_core::run::{Run, RunOrder};
use trace_core::{dump_with, Context, TensorView};

const CHILD_ENV: &str = "TRACE_CORE_ASYNC_EXIT_CHILD";
const RECORDS: usize = 300;

/// The child: captures through the global tracer, then exits without flushing.
fn async_exit_child() -> ! {
    let v: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    for i in 0..RECORDS {
        let ctx = Context::default().seq(i as u64);
        dump_with("blk0/out", &ctx, TensorView::new(&[4096], &v[..]).unwrap()).unwrap();
    }
    std::process::exit(0); // no destructors, no explicit flush
}

#[test]
fn queued_records_are_flushed_at_exit() {
    if std::env::var_os(CHILD_ENV).is_some() {
        async_exit_child();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "queued_records_are_flushed_at_exit",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("TENSOR_TRACE_DIR", dir.path())
        .env("TENSOR_TRACE_ASYNC", "1")
        .env_remove("TENSOR_TRACE_LAYOUT")
        .env_remove("BITNET_TRACE_DIR")
        .status()
        .unwrap();
    assert!(status.success());
    // `TENSOR_TRACE_DIR` alone: the packed layout, every queued record in it.
    let run = Run::open(dir.path()).unwrap();
    assert_eq!(run.order(), RunOrder::Packed);
    assert!(run.problems().is_empty(), "{:?}", run.problems());
    assert_eq!(run.len(), RECORDS);
    let last = &run.records()[RECORDS - 1].record;
    assert_eq!(
        (last.name.as_str(), last.seq),
        ("blk0/out", Some(RECORDS as u64 - 1))
    );
}
