//! A process killed mid-run leaves every completed record readable.
//!
//! The test re-runs its own binary as a child that writes records forever (with large values
//! files, so the kill often lands mid-write), kills it with SIGKILL, and reads the directory back.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trace_core::record::{ManifestEntry, TraceRecord, MANIFEST_FILE, PACKED_LOG};
use trace_core::run::{Run, RunOrder};
use trace_core::{Context, Layout, TensorView, Tracer};

const CHILD_ENV: &str = "TRACE_CORE_CRASH_CHILD_DIR";
const PACKED_CHILD_ENV: &str = "TRACE_CORE_PACKED_CRASH_CHILD_DIR";

#[test]
fn packed_crash_child() {
    let Some(dir) = std::env::var_os(PACKED_CHILD_ENV) else {
        return; // only does something when run as the child
    };
    // Small records as fast as possible, and every 64th occurrence with a large values file,
    // so the kill lands either inside a log append or inside a values file.
    let t = Tracer::builder()
        .dir(dir)
        .layout(Layout::Packed)
        .values_at("logits@0-1000000")
        .build()
        .unwrap();
    let small = [1.0f32, 2.0, 3.0, 4.0];
    let big: Vec<f32> = (0..200_000).map(|i| i as f32).collect();
    for step in 0u64.. {
        for layer in 0..8 {
            t.record(
                &format!("blk{layer}/out"),
                &Context::default().seq(step).layer(layer),
                TensorView::new(&[4], &small[..]).unwrap(),
            )
            .unwrap();
        }
        if step % 64 == 0 {
            t.record(
                "logits",
                &Context::default().seq(step),
                TensorView::new(&[big.len()], &big[..]).unwrap(),
            )
            .unwrap();
        }
    }
}

#[test]
fn killed_packed_writer_leaves_every_completed_line_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "packed_crash_child", "--nocapture"])
        .env(PACKED_CHILD_ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.path().join(PACKED_LOG);
    let deadline = Instant::now() + Duration::from_secs(60);
    // About 1 KB per line: every record carries a value sketch (64 buckets for these).
    while fs::metadata(&log).map_or(0, |m| m.len()) < 2_000_000 {
        assert!(Instant::now() < deadline, "child wrote too little");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();

    let run = Run::open(dir.path()).unwrap();
    assert_eq!(run.order(), RunOrder::Packed);
    // At most one problem: a last line cut short by the kill, reported as such.
    assert!(run.problems().len() <= 1, "{:?}", run.problems());
    if let Some(p) = run.problems().first() {
        assert!(p.to_string().contains("cut short"), "{p}");
    }
    assert!(run.len() > 1500, "only {} records", run.len());
    let mut with_values = 0;
    for (i, r) in run.records().iter().enumerate() {
        assert_eq!(r.record.index, Some(i as u64), "records are contiguous");
        if let Some(path) = run.values_path(r) {
            check_npy(&path);
            with_values += 1;
        }
    }
    assert!(with_values >= 1);
    // Every values file on disk was published whole, listed or not.
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "npy") {
            check_npy(&path);
        }
    }
}

#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // only does something when run as the child
    };
    let t = Tracer::builder().dir(dir).values("*").build().unwrap();
    let v: Vec<f32> = (0..200_000).map(|i| i as f32).collect();
    for step in 0.. {
        t.record(
            "blk0/out",
            &Context::default().seq(step),
            TensorView::new(&[v.len()], &v[..]).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn killed_process_leaves_completed_records_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let manifest = dir.path().join(MANIFEST_FILE);
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::read_to_string(&manifest).map_or(0, |t| t.lines().count()) < 20 {
        assert!(Instant::now() < deadline, "child wrote too little");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();

    let text = fs::read_to_string(&manifest).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut listed = 0;
    for (i, line) in lines.iter().enumerate() {
        match ManifestEntry::from_line(line, &manifest, i + 1) {
            Ok(entry) => {
                listed += 1;
                let r = TraceRecord::read(&dir.path().join(&entry.file)).unwrap();
                assert_eq!(r.index, Some(entry.index));
                assert!(dir.path().join(entry.values.unwrap()).exists());
            }
            Err(e) => assert_eq!(i + 1, lines.len(), "only the last line may be cut: {e}"),
        }
    }
    assert!(listed >= 20);
    // Every published record parses, including one the manifest may not list yet.
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "trace") {
            TraceRecord::read(&path).unwrap();
        }
        if path.extension().is_some_and(|e| e == "npy") {
            check_npy(&path);
        }
    }
}

fn check_npy(path: &Path) {
    let bytes = fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[200_000]);
    let values: Vec<f32> = npy.into_vec().unwrap();
    assert_eq!(values[199_999], 199_999.0);
}
