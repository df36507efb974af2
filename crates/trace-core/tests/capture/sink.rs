use std::collections::HashSet;
use std::fs;
use std::path::Path;

use trace_core::record::{ManifestEntry, TraceRecord, MANIFEST_FILE};
use trace_core::{Context, DType, Data, Layout, TensorView, Tracer, TracerBuilder};

fn manifest(dir: &Path) -> Vec<ManifestEntry> {
    let path = dir.join(MANIFEST_FILE);
    fs::read_to_string(&path)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| ManifestEntry::from_line(l, &path, i + 1).unwrap())
        .collect()
}

/// These tests are about the per-file layout (the packed one has `tests/packed.rs`).
fn files_builder() -> TracerBuilder {
    Tracer::builder().layout(Layout::Files)
}

fn view(values: &[f32]) -> TensorView<'_> {
    TensorView::new(std::slice::from_ref(&values.len()).to_vec().leak(), values).unwrap()
}

#[test]
fn repeated_and_colliding_names_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let t = files_builder().dir(dir.path()).build().unwrap();
    let names = [
        "blk0/q",
        "blk0/q",
        "blk0_q",
        "blk0\\q",
        "blk0/q",
        "../escape",
        "",
        "x\0y",
    ];
    for (i, name) in names.iter().enumerate() {
        let v = [i as f32];
        t.record(name, &Context::default().seq(i as u64), view(&v))
            .unwrap();
    }
    let entries = manifest(dir.path());
    assert_eq!(entries.len(), names.len());
    let files: HashSet<_> = entries.iter().map(|e| e.file.clone()).collect();
    assert_eq!(
        files.len(),
        names.len(),
        "every record has its own file: {files:?}"
    );
    assert_eq!(
        entries[0].file, "blk0_q.trace",
        "first record keeps the seed's name"
    );
    assert_eq!(entries[1].file, "blk0_q.1.trace");
    assert_eq!(entries[4].file, "blk0_q.2.trace");
    assert_eq!(entries[5].file, "_.._escape.trace");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        assert!(
            !e.file.contains('/') && !e.file.starts_with('.'),
            "{}",
            e.file
        );
        let r = TraceRecord::read(&dir.path().join(&e.file)).unwrap();
        assert_eq!(r.name, names[i]);
        assert_eq!(r.index, Some(i as u64));
        assert_eq!(r.seq, Some(i as u64));
        assert_eq!(r.occurrence, Some(e.occurrence));
        assert_eq!(
            r.stats.unwrap().min,
            Some(i as f64),
            "record {i} holds its own value"
        );
    }
    assert_eq!(
        entries.iter().map(|e| e.occurrence).collect::<Vec<_>>(),
        [0, 1, 0, 0, 2, 0, 0, 0]
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files are cleaned up");
}

#[test]
fn refuses_to_mix_runs_unless_appending() {
    let dir = tempfile::tempdir().unwrap();
    let first = files_builder().dir(dir.path()).build().unwrap();
    first
        .record("a", &Context::default(), view(&[1.0]))
        .unwrap();
    first
        .record("a", &Context::default(), view(&[2.0]))
        .unwrap();

    let second = files_builder().dir(dir.path()).build().unwrap();
    let err = second
        .record("a", &Context::default(), view(&[3.0]))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("already holds a trace run") && msg.contains("TENSOR_TRACE_APPEND"),
        "{msg}"
    );

    let third = files_builder()
        .dir(dir.path())
        .append(true)
        .build()
        .unwrap();
    third
        .record("a", &Context::default(), view(&[3.0]))
        .unwrap();
    let entries = manifest(dir.path());
    assert_eq!(entries.len(), 3);
    assert_eq!(
        (entries[2].index, entries[2].occurrence),
        (2, 2),
        "counters continue"
    );
    assert_eq!(entries[2].file, "a.2.trace");
}

#[test]
fn append_after_a_truncated_manifest_line_keeps_lines_separate() {
    let dir = tempfile::tempdir().unwrap();
    let t = files_builder().dir(dir.path()).build().unwrap();
    t.record("a", &Context::default(), view(&[1.0])).unwrap();
    drop(t);
    let path = dir.path().join(MANIFEST_FILE);
    let mut text = fs::read_to_string(&path).unwrap();
    text.push_str("{\"index\":1,\"na");
    fs::write(&path, text).unwrap();
    let t = files_builder()
        .dir(dir.path())
        .append(true)
        .build()
        .unwrap();
    t.record("b", &Context::default(), view(&[2.0])).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let last = text.lines().last().unwrap();
    let entry = ManifestEntry::from_line(last, &path, 3).unwrap();
    assert_eq!((entry.name.as_str(), entry.index), ("b", 1));
}

#[test]
fn many_threads_lose_nothing_and_indexes_stay_unique() {
    let dir = tempfile::tempdir().unwrap();
    let t = files_builder().dir(dir.path()).build().unwrap();
    std::thread::scope(|s| {
        for thread in 0..4 {
            let t = &t;
            s.spawn(move || {
                for i in 0..50 {
                    let v = [thread as f32, i as f32];
                    let name = if i % 2 == 0 {
                        "shared".to_owned()
                    } else {
                        format!("t{thread}")
                    };
                    t.record(&name, &Context::default(), view(&v)).unwrap();
                }
            });
        }
    });
    let entries = manifest(dir.path());
    assert_eq!(entries.len(), 200);
    let indexes: Vec<u64> = entries.iter().map(|e| e.index).collect();
    assert_eq!(
        indexes,
        (0..200).collect::<Vec<_>>(),
        "manifest is in index order"
    );
    let shared: HashSet<u64> = entries
        .iter()
        .filter(|e| e.name == "shared")
        .map(|e| e.occurrence)
        .collect();
    assert_eq!(shared, (0..100).collect());
    let trace_files = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".trace")
        })
        .count();
    assert_eq!(trace_files, 200);
}

#[test]
fn values_are_saved_as_npy_for_matching_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = files_builder()
        .dir(dir.path())
        .values("logits")
        .build()
        .unwrap();
    let v: Vec<half::bf16> = (0..6)
        .map(|i| half::bf16::from_f32(i as f32 * 0.5))
        .collect();
    t.record(
        "logits",
        &Context::default(),
        TensorView::new(&[2, 3], &v[..]).unwrap(),
    )
    .unwrap();
    t.record(
        "hidden",
        &Context::default(),
        TensorView::new(&[2, 3], &v[..]).unwrap(),
    )
    .unwrap();
    let r = TraceRecord::read(&dir.path().join("logits.trace")).unwrap();
    assert_eq!(r.values.as_deref(), Some("logits.npy"));
    assert_eq!(r.dtype, "BF16");
    let bytes = fs::read(dir.path().join("logits.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[2, 3]);
    let read: Vec<f32> = npy.into_vec().unwrap();
    assert_eq!(read, v.iter().map(|x| x.to_f32()).collect::<Vec<_>>());
    assert!(TraceRecord::read(&dir.path().join("hidden.trace"))
        .unwrap()
        .values
        .is_none());
    assert!(!dir.path().join("hidden.npy").exists());
}

#[test]
fn filter_skips_names_and_reports_it() {
    let t = files_builder().filter("blk*,!*/k").build().unwrap();
    assert!(t
        .record("blk0/q", &Context::default(), view(&[1.0]))
        .unwrap());
    assert!(!t
        .record("blk0/k", &Context::default(), view(&[1.0]))
        .unwrap());
    assert!(!t
        .record("logits", &Context::default(), view(&[1.0]))
        .unwrap());
    let names: Vec<_> = t.records().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["blk0/q"]);
}

#[test]
fn chunked_capture_checks_count_and_dtype() {
    let t = Tracer::in_memory();
    let ctx = Context::default();
    let err = t
        .record_chunks("x", &ctx, DType::F32, &[2, 2], |fp| {
            fp.update(Data::F32(&[1.0, 2.0, 3.0]))
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "capture of \"x\" with shape [2, 2] expected 4 elements, received 3"
    );
    let err = t
        .record_chunks("x", &ctx, DType::F32, &[1], |fp| fp.update(Data::U8(&[1])))
        .unwrap_err();
    assert!(err.to_string().contains("dtype U8"), "{err}");
    t.record_chunks("x", &ctx, DType::F16, &[0, 3], |_| Ok(()))
        .unwrap();
    let r = &t.records()[0];
    assert_eq!((r.dtype.as_str(), r.num_elements, r.rms), ("F16", 0, None));
}

#[test]
fn background_writer_flushes_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let t = files_builder()
            .dir(dir.path())
            .background_queue(4)
            .build()
            .unwrap();
        for i in 0..100 {
            t.record("step", &Context::default().seq(i), view(&[i as f32]))
                .unwrap();
        }
        t.flush().unwrap();
        assert_eq!(manifest(dir.path()).len(), 100);
        for i in 0..10 {
            t.record("late", &Context::default().seq(i), view(&[i as f32]))
                .unwrap();
        }
    } // dropped: drains the queue
    let entries = manifest(dir.path());
    assert_eq!(entries.len(), 110);
    let r = TraceRecord::read(&dir.path().join("step.99.trace")).unwrap();
    assert_eq!(r.seq, Some(99));
}

#[test]
fn io_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let t = files_builder().dir(file.join("sub")).build().unwrap();
    let err = t
        .record("a", &Context::default(), view(&[1.0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("create directory") && err.contains("not-a-dir"),
        "{err}"
    );
}

#[test]
fn background_fingerprinting_writes_the_same_files_as_the_caller_would() {
    use trace_core::BACKGROUND_FINGERPRINT_MAX;
    let (sync_dir, bg_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sync = files_builder()
        .dir(sync_dir.path())
        .values("logits")
        .build()
        .unwrap();
    let bg = files_builder()
        .dir(bg_dir.path())
        .values("logits")
        .background_queue(2)
        .build()
        .unwrap();
    let bf: Vec<half::bf16> = (0..3000)
        .map(|i| half::bf16::from_f32(i as f32 * 0.25 - 9.0))
        .collect();
    let mut f: Vec<f32> = (0..5000).map(|i| (i as f32).sqrt()).collect();
    f[17] = f32::NAN;
    let ints: Vec<i64> = (0..100).map(|i| i * 123_456_789).collect();
    let big: Vec<f32> = (0..BACKGROUND_FINGERPRINT_MAX + 1)
        .map(|i| i as f32)
        .collect();
    for t in [&sync, &bg] {
        for step in 0..2u64 {
            let ctx = Context::default().seq(step);
            t.record(
                "blk0/x",
                &ctx,
                TensorView::new(&[3, 1000], &bf[..]).unwrap(),
            )
            .unwrap();
            t.record(
                "logits",
                &ctx.layer(-1),
                TensorView::new(&[5000], &f[..]).unwrap(),
            )
            .unwrap();
            t.record("ids", &ctx, TensorView::new(&[100], &ints[..]).unwrap())
                .unwrap();
            t.record(
                "big",
                &ctx,
                TensorView::new(&[big.len()], &big[..]).unwrap(),
            )
            .unwrap();
        }
    }
    bg.flush().unwrap();
    let mut names: Vec<_> = fs::read_dir(sync_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        8 + 2 + 1,
        "8 records, 2 values files, the manifest"
    );
    for name in names {
        let a = fs::read(sync_dir.path().join(&name)).unwrap();
        let b = fs::read(bg_dir.path().join(&name)).unwrap();
        assert!(a == b, "{name:?} differs");
    }
}

#[test]
fn values_at_saves_the_selected_occurrences_in_every_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = "h@1, h@3-9, big@0";
    let big: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
    let capture = |tracer: &Tracer| {
        for step in 0..5u64 {
            let h = [step as f32, 1.0];
            tracer
                .record("h", &Context::default().seq(step), view(&h))
                .unwrap();
        }
        tracer
            .record("other", &Context::default(), view(&[1.0]))
            .unwrap();
        // Larger than the background writer fingerprints on its own thread: the chunked path.
        let shape = [big.len()];
        let v = TensorView::new(&shape, &big[..]).unwrap();
        tracer.record("big", &Context::default(), v).unwrap();
        tracer.flush().unwrap();
    };
    let expected = vec![false, true, false, true, true, false, true];
    for background in [false, true] {
        let dir = tmp.path().join(format!("bg{background}"));
        let mut builder = files_builder().dir(&dir).values_at(spec);
        if background {
            builder = builder.background();
        }
        let tracer = builder.build().unwrap();
        capture(&tracer);
        let got: Vec<bool> = manifest(&dir).iter().map(|e| e.values.is_some()).collect();
        assert_eq!(got, expected, "background: {background}");
        assert!(dir.join("h.1.npy").exists() && !dir.join("h.npy").exists());
    }
    let tracer = files_builder().values_at(spec).build().unwrap();
    capture(&tracer);
    let got: Vec<bool> = tracer
        .records_with_values()
        .iter()
        .map(|(_, v)| v.is_some())
        .collect();
    assert_eq!(got, expected, "memory");
    let e = files_builder()
        .values_at("h")
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("invalid values_at=\"h\""), "{e}");
}
