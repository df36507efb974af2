//! The packed layout read back: whatever the names and values, `Run::open` on a packed
//! directory gives exactly the records the tracer produced, in capture order; appending after a
//! crash continues the run.

use std::fs;
use std::io::Write;

use proptest::prelude::*;
use trace_core::record::PACKED_LOG;
use trace_core::run::{Run, RunOrder};
use trace_core::{Context, Layout, TensorView, Tracer};

fn write(tracer: &Tracer, name: &str, seq: u64, values: &[f32]) {
    tracer
        .record(
            name,
            &Context::default().seq(seq),
            TensorView::new(&[values.len()], values).unwrap(),
        )
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn packed_round_trip(
        records in prop::collection::vec(
            (
                prop::sample::select(vec!["blk0/q", "logits", "a\nb", "é/\"x\"", "", "..", "t\\ab"]),
                prop::collection::vec(-1e30f32..1e30, 0..6),
            ),
            1..40,
        ),
        background in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Tracer::builder().dir(dir.path()).layout(Layout::Packed).values("logits");
        if background {
            builder = builder.background_queue(4);
        }
        let packed = builder.build().unwrap();
        let memory = Tracer::in_memory();
        for (i, (name, values)) in records.iter().enumerate() {
            write(&packed, name, i as u64, values);
            write(&memory, name, i as u64, values);
        }
        packed.flush().unwrap();
        let run = Run::open(dir.path()).unwrap();
        prop_assert_eq!(run.order(), RunOrder::Packed);
        prop_assert!(run.problems().is_empty(), "{:?}", run.problems());
        let want = memory.records();
        prop_assert_eq!(run.len(), want.len());
        for (got, want) in run.records().iter().zip(&want) {
            let mut got_record = got.record.clone();
            // Only the directory knows the values file name.
            prop_assert_eq!(got_record.values.is_some(), want.name == "logits");
            if let Some(file) = &got_record.values {
                let bytes = fs::read(dir.path().join(file)).unwrap();
                let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
                let values: Vec<f32> = npy.into_vec().unwrap();
                let hash = blake3::hash(bytemuck::cast_slice(&values));
                prop_assert_eq!(hash.to_hex().to_string(), want.blake3.clone());
            }
            got_record.values = None;
            prop_assert_eq!(&got_record, want);
            prop_assert_eq!(Some(got.occurrence), want.occurrence);
        }
    }
}

#[test]
fn appending_after_a_cut_short_line_continues_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = Tracer::builder()
        .dir(dir.path())
        .layout(Layout::Packed)
        .build()
        .unwrap();
    write(&first, "a", 0, &[1.0]);
    write(&first, "a", 1, &[2.0]);
    drop(first);
    let log = dir.path().join(PACKED_LOG);
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(br#"{"name":"a","shape":[1],"dt"#)
        .unwrap();

    // Without append: refused; in the other layout: refused, naming the right setting.
    let files = Tracer::builder()
        .dir(dir.path())
        .layout(Layout::Files)
        .append(true)
        .build()
        .unwrap();
    let err = files
        .record(
            "a",
            &Context::default(),
            TensorView::new(&[1], &[3.0f32][..]).unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("TENSOR_TRACE_LAYOUT=packed"), "{err}");
    let fresh = Tracer::builder()
        .dir(dir.path())
        .layout(Layout::Packed)
        .build()
        .unwrap();
    let err = fresh
        .record(
            "a",
            &Context::default(),
            TensorView::new(&[1], &[3.0f32][..]).unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds a trace run"), "{err}");

    let again = Tracer::builder()
        .dir(dir.path())
        .layout(Layout::Packed)
        .append(true)
        .build()
        .unwrap();
    write(&again, "a", 2, &[3.0]);
    write(&again, "b", 2, &[4.0]);
    let run = Run::open(dir.path()).unwrap();
    let got: Vec<_> = run
        .records()
        .iter()
        .map(|r| (r.record.name.as_str(), r.occurrence, r.record.index))
        .collect();
    assert_eq!(
        got,
        [
            ("a", 0, Some(0)),
            ("a", 1, Some(1)),
            ("a", 2, Some(2)),
            ("b", 0, Some(3))
        ]
    );
    // The cut-short line is now a complete bad line: reported, naming its line.
    assert_eq!(run.problems().len(), 1);
    let msg = run.problems()[0].to_string();
    assert!(
        msg.contains("records.jsonl") && msg.contains("line 3"),
        "{msg}"
    );
}
