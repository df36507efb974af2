//! The candle adapter against its baselines, measured in the same run (`cargo xtask bench`
//! prints the ratios). Group and function names are read by xtask: keep them in sync.
//!
//! | group | `adapter` against | target |
//! |---|---|---|
//! | `candle_f32_contiguous_16m` | `trace_core_slice`: trace-core on the same slice | ≤ 1.1× its time |
//! | `candle_bf16_16m` | `candle_to_dtype_to_vec1_hash` | ≥ 5× faster |
//! | `candle_f32_transposed_4096` | `candle_contiguous_to_vec1_hash` | ≥ 2× faster |
//! | `candle_disabled` | (absolute) the disabled `dump_trace` call | one atomic load |
//!
//! "hash" in the baselines is trace-core's own fingerprint of the converted buffer, so each
//! baseline does the same hashing and statistics work plus candle's conversion and copies.

use std::hint::black_box;
use std::time::Duration;

use candle_core::{DType, Device, Storage, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use trace_candle::fingerprint_tensor;
use trace_core::{fingerprint, Data};

const BIG: usize = 16 * 1024 * 1024;
const SIDE: usize = 4096;

fn values(n: usize) -> Vec<f32> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    elements: usize,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(elements as u64));
    g
}

fn f32_contiguous(c: &mut Criterion) {
    let t = Tensor::from_vec(values(BIG), BIG, &Device::Cpu).unwrap();
    let (storage, _) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        unreachable!()
    };
    let slice: &[f32] = cpu.as_slice().unwrap();
    let mut g = group(c, "candle_f32_contiguous_16m", BIG);
    g.bench_function("adapter", |b| {
        b.iter(|| fingerprint_tensor(black_box(&t)).unwrap())
    });
    g.bench_function("trace_core_slice", |b| {
        b.iter(|| fingerprint(Data::F32(black_box(slice))))
    });
    g.finish();
}

fn bf16(c: &mut Criterion) {
    let t = Tensor::from_vec(values(BIG), BIG, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let mut g = group(c, "candle_bf16_16m", BIG);
    g.bench_function("adapter", |b| {
        b.iter(|| fingerprint_tensor(black_box(&t)).unwrap())
    });
    g.bench_function("candle_to_dtype_to_vec1_hash", |b| {
        b.iter(|| {
            let v: Vec<f32> = black_box(&t)
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1()
                .unwrap();
            fingerprint(Data::F32(&v))
        })
    });
    g.finish();
}

fn f32_transposed(c: &mut Criterion) {
    let t = Tensor::from_vec(values(SIDE * SIDE), (SIDE, SIDE), &Device::Cpu)
        .unwrap()
        .t()
        .unwrap();
    let mut g = group(c, "candle_f32_transposed_4096", SIDE * SIDE);
    g.bench_function("adapter", |b| {
        b.iter(|| fingerprint_tensor(black_box(&t)).unwrap())
    });
    g.bench_function("candle_contiguous_to_vec1_hash", |b| {
        b.iter(|| {
            let v: Vec<f32> = black_box(&t)
                .contiguous()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            fingerprint(Data::F32(&v))
        })
    });
    g.finish();
}

fn disabled(c: &mut Criterion) {
    // No TENSOR_TRACE_DIR / BITNET_TRACE_DIR in a benchmark run: the call must return at once.
    std::env::remove_var("TENSOR_TRACE_DIR");
    std::env::remove_var("BITNET_TRACE_DIR");
    let t = Tensor::zeros((64, 2560), DType::F32, &Device::Cpu).unwrap();
    let mut g = c.benchmark_group("candle_disabled");
    g.bench_function("dump_trace", |b| {
        b.iter(|| trace_candle::dump_trace(black_box("blk0/attn_norm"), black_box(&t)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, f32_contiguous, bf16, f32_transposed, disabled);
criterion_main!(benches);
