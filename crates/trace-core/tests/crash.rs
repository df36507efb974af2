//! A process killed mid-run leaves every completed record readable.
//!
//! The test re-runs its own binary as a child that writes records forever (with large values
//! files, so the kill often lands mid-write), kills it with SIGKILL, and reads the directory back.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trace_core::record::{ManifestEntry, TraceRecord, MANIFEST_FILE};
use trace_core::{Context, TensorView, Tracer};

const CHILD_ENV: &str = "TRACE_CORE_CRASH_CHILD_DIR";

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
