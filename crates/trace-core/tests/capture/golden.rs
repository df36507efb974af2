//! Golden files: the seed README's example record, an upstream record, and one of ours.
//!
//! Regenerate ours with `TENSOR_TRACE_BLESS=1 cargo test -p trace-core --test capture` after a
//! deliberate format change (and bump `FORMAT_VERSION` if old readers would misread it).

use std::fs;
use std::path::{Path, PathBuf};

use trace_core::record::{Flavor, TraceRecord};
use trace_core::{Context, Layout, TensorView, Tracer};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn seed_readme_example_reads_as_a_seed_record() {
    // The README's example with its elided hash written out in full.
    let r = TraceRecord::read(&data("seed-example.trace")).unwrap();
    assert_eq!(r.flavor(), Flavor::Seed);
    assert_eq!(
        (r.name.as_str(), r.shape.as_slice(), r.dtype.as_str()),
        ("blk0/attn_norm", &[1, 2560][..], "F32")
    );
    assert_eq!((r.rms, r.num_elements), (Some(0.9982), 2560));
}

#[test]
fn seed_readme_literal_example_is_rejected_with_the_field_named() {
    // The README prints `"blake3": "abc123..."`, an elision no real file contains.
    let r = TraceRecord::read(&data("seed-example-elided.trace"))
        .unwrap_err()
        .to_string();
    assert!(r.contains("field `blake3`") && r.contains("64 hex"), "{r}");
}

#[test]
fn upstream_record_keeps_its_context() {
    let r = TraceRecord::read(&data("upstream-example.trace")).unwrap();
    assert_eq!(r.flavor(), Flavor::Upstream);
    assert_eq!(
        (r.seq, r.layer, r.stage.as_deref()),
        (Some(1), Some(-1), Some("logits"))
    );
}

#[test]
fn our_record_matches_the_golden_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tracer::builder()
        .dir(dir.path())
        .layout(Layout::Files)
        .build()
        .unwrap();
    let values: Vec<f32> = (0..2560)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let ctx = Context::default().seq(0).layer(0).stage("attn_norm");
    t.record(
        "blk0/attn_norm",
        &ctx,
        TensorView::new(&[1, 2560], &values[..]).unwrap(),
    )
    .unwrap();
    let written = fs::read_to_string(dir.path().join("blk0_attn_norm.trace")).unwrap();
    let golden = data("ours-v1.trace");
    if std::env::var_os("TENSOR_TRACE_BLESS").is_some() {
        fs::write(&golden, &written).unwrap();
    }
    let expected = fs::read_to_string(&golden).unwrap();
    assert_eq!(
        written, expected,
        "record format changed; see this file's docs"
    );
    let r = TraceRecord::read(&golden).unwrap();
    assert_eq!(r.flavor(), Flavor::TensorTrace);
    // The seed's six fields stay at the top, in the seed's order, for people reading files.
    let keys: Vec<&str> = expected
        .lines()
        .filter_map(|l| l.strip_prefix("  \"").and_then(|l| l.split('"').next()))
        .take(6)
        .collect();
    assert_eq!(
        keys,
        ["name", "shape", "dtype", "blake3", "rms", "num_elements"]
    );
}
