//! The reference engine's precision modes on the crossval's default model (tiny, 2 layers,
//! seed 42, the prompt "The quick brown fox", 4 decode steps): F64 against a committed golden
//! file, F32 and BF16 against F64.

use std::path::Path;

use reference_engine::{encode_bytes, seeded, Model, Precision};
use trace_core::{TraceRecord, Tracer};

const PROMPT: &str = "The quick brown fox";
const STEPS: usize = 4;
const GOLDEN: &str = "tests/data/f64-records.txt";

/// Writes the crossval's default model into `dir`.
fn crossval_model(dir: &Path) {
    seeded::write(dir, seeded::Size::Tiny, 2, 42).unwrap();
}

/// One line per record: what a change to the F64 arithmetic would change (the blake3 of the
/// canonical F32 values, and the RMS and moments computed from the f64 values).
fn golden_line(r: &TraceRecord) -> String {
    let stats = r.stats.as_ref();
    format!(
        "{} {} {} {:?} {} rms={:?} mean={:?} std={:?}",
        r.seq.unwrap_or_default(),
        r.name,
        r.dtype,
        r.shape,
        r.blake3,
        r.rms,
        stats.and_then(|s| s.mean),
        stats.and_then(|s| s.std),
    )
}

#[test]
fn f64_records_match_the_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    crossval_model(dir.path());
    let model = Model::load(dir.path()).unwrap();
    let tracer = Tracer::builder().build().unwrap();
    let tokens = model
        .generate(&encode_bytes(PROMPT), STEPS, Some(&tracer))
        .unwrap();
    let mut text = format!("tokens {tokens:?}\n");
    for r in tracer.records() {
        text.push_str(&golden_line(&r));
        text.push('\n');
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("REFERENCE_ENGINE_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1 + (STEPS + 1) * (2 + 2 * 16 + 3));
    for (k, (got, want)) in text.lines().zip(golden.lines()).enumerate() {
        assert_eq!(got, want, "line {} of {GOLDEN}", k + 1);
    }
    assert_eq!(text.lines().count(), golden.lines().count());
}

/// A traced run: the generated tokens and every record with its values (as F32, the format's
/// canonical values).
struct Run {
    tokens: Vec<u32>,
    records: Vec<(TraceRecord, Vec<f32>)>,
}

fn run(dir: &Path, precision: Precision) -> Run {
    let model = Model::load_with(dir, precision).unwrap();
    assert_eq!(model.precision(), precision);
    let tracer = Tracer::builder().values("*").build().unwrap();
    let tokens = model
        .generate(&encode_bytes(PROMPT), STEPS, Some(&tracer))
        .unwrap();
    let records = tracer
        .records_with_values()
        .into_iter()
        .map(|(r, v)| (r, v.expect("values of every record")))
        .collect();
    Run { tokens, records }
}

/// ‖a − b‖ / ‖b‖ in f64 (0 when both are zero).
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

/// Checks that `a` has F64's records (names, order, shapes, context) with `dtype` for the float
/// ones, and returns the relative L2 error of each float record against F64, with its name.
fn errors_against(a: &Run, f64_run: &Run, dtype: &str) -> Vec<(String, f64)> {
    assert_eq!(
        a.tokens, f64_run.tokens,
        "the modes generate different tokens"
    );
    assert_eq!(a.records.len(), f64_run.records.len());
    let mut errors = Vec::new();
    for ((ra, va), (rb, vb)) in a.records.iter().zip(&f64_run.records) {
        let key = |r: &TraceRecord| {
            (
                r.name.clone(),
                r.shape.clone(),
                r.seq,
                r.layer,
                r.stage.clone(),
            )
        };
        assert_eq!(key(ra), key(rb));
        if rb.dtype == "U32" {
            assert_eq!(
                (ra.dtype.as_str(), &ra.blake3),
                ("U32", &rb.blake3),
                "{}",
                ra.name
            );
            continue;
        }
        assert_eq!(
            (rb.dtype.as_str(), ra.dtype.as_str()),
            ("F64", dtype),
            "{}",
            ra.name
        );
        errors.push((
            format!("{}@{}", ra.name, ra.seq.unwrap_or_default()),
            rel_l2(va, vb),
        ));
    }
    errors
}

/// min, median, max of the errors, and the record of the max.
fn summary(errors: &[(String, f64)]) -> (f64, f64, f64, String) {
    let mut sorted: Vec<&(String, f64)> = errors.iter().collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let last = sorted[sorted.len() - 1];
    (
        sorted[0].1,
        sorted[sorted.len() / 2].1,
        last.1,
        last.0.clone(),
    )
}

#[test]
fn f32_mode_is_close_to_f64_but_not_identical() {
    let dir = tempfile::tempdir().unwrap();
    crossval_model(dir.path());
    let (f64_run, f32_run) = (
        run(dir.path(), Precision::F64),
        run(dir.path(), Precision::F32),
    );
    let errors = errors_against(&f32_run, &f64_run, "F32");
    let (min, median, max, worst) = summary(&errors);
    println!("reference F32 vs F64, relative L2 over {} records: min {min:.2e} median {median:.2e} max {max:.2e} ({worst})", errors.len());
    assert!(max < 1e-5, "{worst}: {max:e}");
    // Rounding to f32 at every operation changes the values of almost every record: only the
    // embeddings (the file's f32 values, copied) and a few attention rows can come out equal.
    let differing = errors.iter().filter(|(_, e)| *e > 0.0).count();
    assert!(
        differing * 10 >= errors.len() * 9,
        "{differing} of {} records differ",
        errors.len()
    );
    assert!(median > 1e-8, "{median:e}");
}

#[test]
fn bf16_mode_is_within_bf16_rounding_of_f64() {
    let dir = tempfile::tempdir().unwrap();
    crossval_model(dir.path());
    let (f64_run, bf16_run) = (
        run(dir.path(), Precision::F64),
        run(dir.path(), Precision::Bf16),
    );
    let errors = errors_against(&bf16_run, &f64_run, "BF16");
    let (min, median, max, worst) = summary(&errors);
    println!("reference BF16 vs F64, relative L2 over {} records: min {min:.2e} median {median:.2e} max {max:.2e} ({worst})", errors.len());
    // bf16 keeps 8 significant bits: one rounding is up to 2^-9 = 2e-3 relative.
    assert!(max < 0.1, "{worst}: {max:e}");
    assert!(median > 1e-4, "{median:e}");
    // Every recorded value is a bf16 value.
    for (r, v) in &bf16_run.records {
        if r.dtype == "BF16" {
            assert!(
                v.iter().all(|&x| half::bf16::from_f32(x).to_f32() == x),
                "{}",
                r.name
            );
        }
    }
}
