//! Top-k over a 128k vocabulary: partial selection against the full sort realizar used, measured
//! in the same run. Also the cost of a span when tracing is off.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use trace_events::{top_k_logits, Exit, InferenceTracer, Site, TraceStep};

/// Llama 3's vocabulary size.
const VOCAB: usize = 128_256;

/// Deterministic pseudo-random logits in about [-10, 10] (xorshift, no dependency).
fn logits() -> Vec<f32> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..VOCAB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0
        })
        .collect()
}

/// The baseline: sort the whole vocabulary, keep the first k (same order as `top_k_logits`).
fn full_sort(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, &v)| (i as u32, v))
        .collect();
    all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn topk(c: &mut Criterion) {
    let logits = logits();
    assert_eq!(top_k_logits(&logits, 40), full_sort(&logits, 40));
    let mut group = c.benchmark_group("topk_128k");
    for k in [5usize, 40] {
        group.bench_with_input(BenchmarkId::new("select_nth", k), &k, |b, &k| {
            b.iter(|| top_k_logits(black_box(&logits), k))
        });
        group.bench_with_input(BenchmarkId::new("full_sort", k), &k, |b, &k| {
            b.iter(|| full_sort(black_box(&logits), k))
        });
    }
    group.finish();
}

fn disabled_span(c: &mut Criterion) {
    let tracer = InferenceTracer::disabled();
    let logits = logits();
    c.bench_function("disabled_enter_exit", |b| {
        b.iter(|| {
            let span = black_box(&tracer).enter(TraceStep::Sample, Site::iteration(1));
            span.exit(Exit::new().logits(black_box(&logits)).sampled(1, 0.7, 40))
        })
    });
}

criterion_group!(benches, topk, disabled_span);
criterion_main!(benches);
