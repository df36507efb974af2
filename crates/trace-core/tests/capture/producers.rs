//! bitnet-trace's own files, laid out byte for byte as its writer leaves them
//! (`serde_json::to_string_pretty`: one array element per line, no trailing newline; the
//! upstream crate adds `first_values`, then `seq`/`layer`/`stage`, each omitted when unset; a
//! NaN/Inf/empty RMS is `null`), read as records and as runs.
//!
//! The tensors are small, so `first_values` holds every element: the producer's `blake3` and
//! `rms` are checked against this crate's fingerprint of the same values.

use std::fs;
use std::path::{Path, PathBuf};

use trace_core::record::{Flavor, TraceRecord};
use trace_core::run::{Run, RunOrder};
use trace_core::{fingerprint, Data};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/bitnet-trace")
        .join(name)
}

fn files(name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn the_goldens_are_laid_out_as_serde_pretty_writes_them() {
    for run in ["seed", "upstream-a", "upstream-b", "upstream-edge"] {
        for path in files(run) {
            let text = fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("{\n  \"name\": ") && text.ends_with("\n}"),
                "{}",
                path.display()
            );
            assert!(
                text.contains("\"shape\": [\n    ") || text.contains("\"shape\": [],"),
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn seed_files_read_as_seed_records() {
    let records: Vec<TraceRecord> = files("seed")
        .iter()
        .map(|p| TraceRecord::read(p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(records.len(), 5);
    for r in &records {
        assert_eq!(r.flavor(), Flavor::Seed, "{}", r.name);
        assert!(r.stats.is_none() && r.index.is_none() && r.seq.is_none());
    }
    let logits = records.iter().find(|r| r.name == "logits").unwrap();
    assert_eq!(
        (logits.shape.as_slice(), logits.num_elements, logits.rms),
        (&[1, 12][..], 12, Some(1.847365804778974))
    );
}

#[test]
fn upstream_files_keep_their_context_and_hash_like_ours() {
    let mut checked = 0;
    for run in ["upstream-a", "upstream-b", "upstream-edge"] {
        for path in files(run) {
            let r = TraceRecord::read(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.flavor(), Flavor::Upstream, "{}", path.display());
            assert_eq!(r.seq, Some(0), "{}", path.display());
            let stage = r.stage.as_deref().unwrap();
            assert!(r.name.ends_with(stage), "{} vs {stage}", r.name);
            // `first_values` is the producer's field, not ours: read it from the file.
            let raw: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            let values: Vec<f32> = raw
                .get("first_values")
                .map(|v| {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32))
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(values.len() as u64, r.num_elements, "{}", path.display());
            let fp = fingerprint(Data::F32(&values));
            assert_eq!(r.blake3, fp.blake3.to_hex().as_str(), "{}", path.display());
            match (r.rms, fp.rms) {
                (Some(theirs), Some(ours)) => {
                    assert!((theirs - ours).abs() <= 1e-12 * ours, "{theirs} vs {ours}")
                }
                (theirs, ours) => assert_eq!(theirs, ours, "{}", path.display()),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

#[test]
fn upstream_edge_cases_read() {
    let read = |f: &str| TraceRecord::read(&dir("upstream-edge").join(f)).unwrap();
    let nan = read("t0_blk0_attn_scores.trace");
    assert_eq!((nan.rms, nan.num_elements), (None, 4));
    let empty = read("t0_blk0_kv_cache_k.trace");
    assert_eq!(
        (empty.shape.as_slice(), empty.num_elements, empty.rms),
        (&[0, 4][..], 0, None)
    );
    let scalar = read("t0_temperature.trace");
    assert_eq!(
        (scalar.shape.as_slice(), scalar.num_elements, scalar.layer),
        (&[][..], 1, None)
    );
    let bf16 = read("t0_blk0_ffn_out.trace");
    assert_eq!(
        (bf16.dtype.as_str(), bf16.dtype()),
        ("BF16", Some(trace_core::DType::BF16))
    );
}

#[test]
fn producer_directories_read_as_runs() {
    for (name, len) in [("seed", 5), ("upstream-a", 6), ("upstream-edge", 4)] {
        let run = Run::open(&dir(name)).unwrap();
        assert_eq!(run.order(), RunOrder::Guessed, "{name}");
        assert_eq!(run.len(), len, "{name}");
        assert!(run.problems().is_empty(), "{name}: {:?}", run.problems());
        assert!(run.records().iter().all(|r| r.occurrence == 0), "{name}");
    }
    // Without a manifest or indexes the order is a guess: seq, then natural file-name order.
    let names: Vec<String> = Run::open(&dir("upstream-a"))
        .unwrap()
        .records()
        .iter()
        .map(|r| r.record.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "t0/blk0/attn_norm",
            "t0/blk0/q_proj",
            "t0/blk1/attn_norm",
            "t0/blk1/q_proj",
            "t0/embeddings",
            "t0/logits"
        ]
    );
}
