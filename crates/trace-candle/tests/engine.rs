//! The candle engine's precision modes on the crossval's default model (tiny, 2 layers, seed
//! 42, the prompt "The quick brown fox", 4 decode steps; written by
//! `reference_engine::seeded`): BF16 against the f64 reference, the planted bugs in BF16, and
//! the per-record errors of every mode against F64 (printed with `--nocapture`: the figures a
//! calibrated verdict's default ratio is chosen from).

use std::path::Path;

use candle_core::DType;
use reference_engine::{encode_bytes, seeded, Precision};
use trace_candle::engine::{Bug, Llama};
use trace_core::{TraceRecord, Tracer};

const PROMPT: &str = "The quick brown fox";
const STEPS: usize = 4;
const LAYERS: usize = 2;

/// A traced run: the generated tokens and every record with its values (as F32, the format's
/// canonical values).
struct Run {
    tokens: Vec<u32>,
    records: Vec<(TraceRecord, Vec<f32>)>,
}

fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    seeded::write(dir.path(), seeded::Size::Tiny, LAYERS, 42).unwrap();
    dir
}

fn traced(run: impl FnOnce(&Tracer) -> Vec<u32>) -> Run {
    let tracer = Tracer::builder().values("*").build().unwrap();
    let tokens = run(&tracer);
    let records = tracer
        .records_with_values()
        .into_iter()
        .map(|(r, v)| (r, v.expect("values of every record")))
        .collect();
    Run { tokens, records }
}

fn candle(dir: &Path, dtype: DType, bug: Option<Bug>) -> Run {
    let engine = Llama::load_with(dir, bug, dtype).unwrap();
    assert_eq!(engine.dtype(), dtype);
    traced(|t| {
        engine
            .generate(&encode_bytes(PROMPT), STEPS, Some(t))
            .unwrap()
    })
}

fn reference(dir: &Path, precision: Precision) -> Run {
    let model = reference_engine::Model::load_with(dir, precision).unwrap();
    traced(|t| {
        model
            .generate(&encode_bytes(PROMPT), STEPS, Some(t))
            .unwrap()
    })
}

/// ‖a − b‖ / ‖b‖ in f64 (0 when they are equal).
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        diff += (f64::from(x) - f64::from(y)).powi(2);
        norm += f64::from(y).powi(2);
    }
    if diff == 0.0 {
        0.0
    } else {
        (diff / norm).sqrt()
    }
}

/// Checks that `a` has `b`'s records (names, order, shapes, context), its float records in
/// `dtype`, and returns the relative L2 error of each float record of `a` against `b`.
fn errors(a: &Run, b: &Run, dtype: &str) -> Vec<(String, f64)> {
    assert_eq!(a.records.len(), b.records.len());
    let mut out = Vec::new();
    for ((ra, va), (rb, vb)) in a.records.iter().zip(&b.records) {
        let key = |r: &TraceRecord| (r.name.clone(), r.shape.clone(), r.seq, r.layer);
        assert_eq!(key(ra), key(rb));
        if ra.dtype == "U32" {
            continue;
        }
        assert_eq!(ra.dtype, dtype, "{}", ra.name);
        let name = format!("{}@{}", ra.name, ra.seq.unwrap_or_default());
        out.push((name, rel_l2(va, vb)));
    }
    out
}

/// `min / median / max (worst record)` of some values.
fn summary(values: &[(String, f64)]) -> String {
    let mut sorted: Vec<&(String, f64)> = values.iter().collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (first, last) = (sorted[0], sorted[sorted.len() - 1]);
    format!(
        "min {:.2e} median {:.2e} max {:.2e} ({}) over {} records",
        first.1,
        sorted[sorted.len() / 2].1,
        last.1,
        last.0,
        sorted.len()
    )
}

fn max(values: &[(String, f64)]) -> f64 {
    values.iter().map(|(_, e)| *e).fold(0.0, f64::max)
}

#[test]
fn bf16_engine_is_within_bf16_error_of_the_f64_reference() {
    let dir = model_dir();
    let (bf16, f64_ref) = (
        candle(dir.path(), DType::BF16, None),
        reference(dir.path(), Precision::F64),
    );
    // Valid generation: the same greedy tokens as the f64 reference on this model.
    assert_eq!(bf16.tokens.len(), STEPS + 1);
    assert!(bf16.tokens.iter().all(|&t| t < 256));
    assert_eq!(bf16.tokens, f64_ref.tokens);
    let e = errors(&bf16, &f64_ref, "BF16");
    assert!(max(&e) < 0.1, "{}", summary(&e));
    // Every recorded value is a bf16 value.
    for (r, v) in &bf16.records {
        if r.dtype == "BF16" {
            assert!(
                v.iter().all(|&x| half::bf16::from_f32(x).to_f32() == x),
                "{}",
                r.name
            );
        }
    }
}

#[test]
fn planted_bugs_still_show_first_where_expected_in_bf16() {
    let dir = model_dir();
    let clean = candle(dir.path(), DType::BF16, None);
    for bug in Bug::ALL {
        let buggy = candle(dir.path(), DType::BF16, Some(bug));
        // The first record whose shape or values differ from the clean BF16 run's.
        let first = buggy
            .records
            .iter()
            .zip(&clean.records)
            .find(|((a, _), (b, _))| {
                (a.name.as_str(), &a.shape, &a.blake3) != (b.name.as_str(), &b.shape, &b.blake3)
            })
            .map(|((a, _), _)| (a.name.clone(), a.layer, a.seq))
            .unwrap_or_else(|| panic!("{bug}: no record differs"));
        let want = bug.expected(LAYERS);
        assert_eq!(
            first,
            (want.name, Some(want.layer), Some(want.seq)),
            "{bug}"
        );
    }
}

#[test]
fn f32_stays_the_default() {
    let dir = model_dir();
    let engine = Llama::load(dir.path(), None).unwrap();
    assert_eq!(engine.dtype(), DType::F32);
    assert_eq!(engine.model_info().quant_type.as_deref(), Some("F32"));
    let bf16 = Llama::load_with(dir.path(), None, DType::BF16).unwrap();
    assert_eq!(bf16.model_info().quant_type.as_deref(), Some("BF16"));
    let err = Llama::load_with(dir.path(), None, DType::F16)
        .err()
        .unwrap();
    assert!(err.to_string().contains("F32 or BF16, not F16"), "{err}");
}

/// The per-record relative L2 error against the f64 reference of the reference in F32 and
/// BF16 (the calibrated verdict's baselines) and of the candle engine in F32 and BF16, and the
/// ratios engine / baseline, record by record. Asserts the orders of magnitude.
#[test]
fn precision_error_profile() {
    for (size, layers, seed) in [
        (seeded::Size::Tiny, LAYERS, 42),
        (seeded::Size::Small, 1, 7),
    ] {
        println!("model {size:?}, {layers} layers, seed {seed}:");
        let dir = tempfile::tempdir().unwrap();
        seeded::write(dir.path(), size, layers, seed).unwrap();
        error_profile(dir.path(), layers);
    }
}

/// Prints (and bounds) the errors of every mode against F64 on the model in `dir`, and the ratio
/// at each planted bug's first record.
fn error_profile(dir: &Path, layers: usize) {
    let f64_ref = reference(dir, Precision::F64);
    let runs = [
        reference(dir, Precision::F32),
        reference(dir, Precision::Bf16),
        candle(dir, DType::F32, None),
        candle(dir, DType::BF16, None),
    ];
    let ref_f32 = errors(&runs[0], &f64_ref, "F32");
    let ref_bf16 = errors(&runs[1], &f64_ref, "BF16");
    let candle_f32 = errors(&runs[2], &f64_ref, "F32");
    let candle_bf16 = errors(&runs[3], &f64_ref, "BF16");
    // How often the engine computes exactly its baseline's values.
    let same = |a: &Run, b: &Run| {
        let n = a.records.iter().zip(&b.records);
        n.filter(|((ra, _), (rb, _))| ra.blake3 == rb.blake3)
            .count()
    };
    println!(
        "hash-identical records, candle vs reference: F32 {} of {n}, BF16 {} of {n}",
        same(&runs[2], &runs[0]),
        same(&runs[3], &runs[1]),
        n = f64_ref.records.len()
    );
    // r = e_A / max(e_C, floor); the floor only matters where the baseline is exact.
    let ratios = |engine: &[(String, f64)], baseline: &[(String, f64)]| -> Vec<(String, f64)> {
        engine
            .iter()
            .zip(baseline)
            .map(|((name, a), (_, c))| (name.clone(), a / c.max(1e-9)))
            .collect()
    };
    let r_f32 = ratios(&candle_f32, &ref_f32);
    let r_bf16 = ratios(&candle_bf16, &ref_bf16);
    for (what, values) in [
        ("reference F32 vs F64", &ref_f32),
        ("candle F32 vs F64", &candle_f32),
        ("reference BF16 vs F64", &ref_bf16),
        ("candle BF16 vs F64", &candle_bf16),
        ("ratio candle F32 / reference F32", &r_f32),
        ("ratio candle BF16 / reference BF16", &r_bf16),
    ] {
        println!("{what}: {}", summary(values));
    }
    assert!(max(&ref_f32) < 1e-5 && max(&candle_f32) < 1e-5);
    assert!(max(&ref_bf16) < 0.1 && max(&candle_bf16) < 0.1);
    // A correct engine makes errors of its baseline's size: ratios of order one.
    assert!(max(&r_f32) < 10.0 && max(&r_bf16) < 10.0);

    // Each planted bug: the ratio at the record where it first shows, in F32 and BF16.
    for bug in Bug::ALL {
        let want = bug.expected(layers);
        let mut line = format!("  {bug} at {}@{}:", want.name, want.seq);
        for (dtype, baseline) in [(DType::F32, &runs[0]), (DType::BF16, &runs[1])] {
            let buggy = candle(dir, dtype, Some(bug));
            let at = |run: &Run| {
                run.records
                    .iter()
                    .find(|(r, _)| r.name == want.name && r.seq == Some(want.seq))
                    .cloned()
                    .unwrap()
            };
            let ((ra, va), (rb, vb), (_, vc)) = (at(&buggy), at(&f64_ref), at(baseline));
            let r = if ra.shape != rb.shape {
                "shape differs".to_owned()
            } else {
                let (e_a, e_c) = (rel_l2(&va, &vb), rel_l2(&vc, &vb));
                format!(
                    "r = {:.2e} (e_A {e_a:.2e}, e_C {e_c:.2e})",
                    e_a / e_c.max(1e-9)
                )
            };
            line.push_str(&format!(" {dtype:?} {r};"));
        }
        println!("{line}");
    }
}
