//! Capture throughput against baselines measured in the same run (`cargo xtask bench` prints
//! the ratios). Group and function names are read by xtask: keep them in sync.

use std::fs;
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::{bf16, f16};
use trace_core::{fingerprint, Context, Data, Layout, TensorView, Tracer};

const BIG: usize = 16 * 1024 * 1024;

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

/// The seed's approach: a converted copy, its bytes collected, hashed, then a second pass.
fn seed_approach(converted: impl Iterator<Item = f32>) -> (blake3::Hash, f64) {
    let v: Vec<f32> = converted.collect();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let hash = blake3::hash(&bytes);
    let sumsq: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    (hash, (sumsq / v.len() as f64).sqrt())
}

fn big_tensors(c: &mut Criterion) {
    let f32s = values(BIG);
    let f32_bytes: &[u8] = bytemuck::cast_slice(&f32s);
    let bf16s: Vec<bf16> = f32s.iter().map(|&v| bf16::from_f32(v)).collect();
    let f16s: Vec<f16> = f32s.iter().map(|&v| f16::from_f32(v)).collect();
    let bf16_as_f32: Vec<f32> = bf16s.iter().map(|v| v.to_f32()).collect();
    let f16_as_f32: Vec<f32> = f16s.iter().map(|v| v.to_f32()).collect();

    let mut g = c.benchmark_group("capture_16m");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes((BIG * 4) as u64));
    g.bench_function("blake3_single_thread_f32_bytes", |b| {
        b.iter(|| blake3::hash(black_box(f32_bytes)))
    });
    g.bench_function("blake3_single_thread_bf16_converted_bytes", |b| {
        let bytes: &[u8] = bytemuck::cast_slice(&bf16_as_f32);
        b.iter(|| blake3::hash(black_box(bytes)))
    });
    g.bench_function("blake3_single_thread_f16_converted_bytes", |b| {
        let bytes: &[u8] = bytemuck::cast_slice(&f16_as_f32);
        b.iter(|| blake3::hash(black_box(bytes)))
    });
    g.bench_function("naive_hash_then_stats_f32", |b| {
        b.iter(|| {
            let h = blake3::hash(black_box(f32_bytes));
            let fp = fingerprint(Data::F32(&[]));
            let s: f64 = f32s.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            (h, fp, s)
        })
    });
    g.bench_function("capture_f32", |b| {
        b.iter(|| fingerprint(Data::F32(black_box(&f32s))))
    });
    g.bench_function("capture_bf16", |b| {
        b.iter(|| fingerprint(Data::BF16(black_box(&bf16s))))
    });
    g.bench_function("capture_f16", |b| {
        b.iter(|| fingerprint(Data::F16(black_box(&f16s))))
    });
    g.bench_function("seed_f32", |b| {
        b.iter(|| seed_approach(black_box(&f32s).iter().copied()))
    });
    g.bench_function("seed_bf16", |b| {
        b.iter(|| seed_approach(black_box(&bf16s).iter().map(|v| v.to_f32())))
    });
    g.bench_function("seed_f16", |b| {
        b.iter(|| seed_approach(black_box(&f16s).iter().map(|v| v.to_f32())))
    });
    g.finish();
}

fn disabled(c: &mut Criterion) {
    // SAFETY-free in edition 2021: no other thread reads the environment yet.
    std::env::remove_var("TENSOR_TRACE_DIR");
    std::env::remove_var("BITNET_TRACE_DIR");
    let v = [1.0f32; 16];
    let shape = [16usize];
    assert!(!trace_core::enabled());
    static FLAG: AtomicU8 = AtomicU8::new(1);
    let mut g = c.benchmark_group("disabled");
    // The call itself, as a caller pays it: 1,000 calls in a loop with the result checked the
    // way `?` checks it, the view built once. Reported per call (the figure is divided by 1,000
    // in `cargo xtask bench`). A single call per iteration would mostly time criterion's
    // `black_box` of the 72-byte `Result`.
    let view = TensorView::new(&shape, &v[..]).unwrap();
    let ctx = Context::default().layer(0);
    g.bench_function("dump_disabled_x1000", |b| {
        b.iter(|| {
            let (name, view) = black_box(("blk0/attn_norm", view));
            for _ in 0..1000 {
                if trace_core::dump_with(name, &ctx, view).is_err() {
                    panic!("disabled tracing cannot fail");
                }
            }
        })
    });
    g.bench_function("relaxed_atomic_load_x1000", |b| {
        b.iter(|| {
            let mut on = 0u32;
            for _ in 0..1000 {
                on += u32::from(FLAG.load(Ordering::Relaxed) == 2);
            }
            black_box(on)
        })
    });
    // Building and checking the view on every call too: what a caller pays without the macro.
    g.bench_function("dump_disabled_building_view", |b| {
        b.iter(|| {
            trace_core::dump_with(
                black_box("blk0/attn_norm"),
                &Context::default().layer(0),
                TensorView::new(&shape, black_box(&v[..])).unwrap(),
            )
        })
    });
    // The macro: neither the `format!` name nor the view is evaluated when tracing is off.
    g.bench_function("macro_disabled_with_format_x1000", |b| {
        b.iter(|| {
            let v = black_box(&v[..]);
            for i in 0..1000 {
                let r = trace_core::trace_tensor!(
                    format!("blk{i}/q"),
                    TensorView::new(&shape, v).unwrap()
                );
                if r.is_err() {
                    panic!("disabled tracing cannot fail");
                }
            }
        })
    });
    g.finish();
}

fn small_record(c: &mut Criterion) {
    let v = values(2560);
    let shape = [1usize, 2560];
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("record_2560");
    g.measurement_time(Duration::from_secs(4));

    let sync_dir = dir.path().join("sync");
    let tracer = Tracer::builder()
        .dir(&sync_dir)
        .layout(Layout::Files)
        .build()
        .unwrap();
    tracer
        .record(
            "probe",
            &Context::default(),
            TensorView::new(&shape, &v[..]).unwrap(),
        )
        .unwrap();
    let json = fs::read(sync_dir.join("probe.trace")).unwrap();

    let atomic_dir = dir.path().join("atomic");
    fs::create_dir_all(&atomic_dir).unwrap();
    let mut n = 0u64;
    g.bench_function("atomic_write_same_json", |b| {
        b.iter(|| {
            n += 1;
            let tmp = atomic_dir.join(format!(".tmp-{n}.part"));
            fs::write(&tmp, &json).unwrap();
            fs::rename(&tmp, atomic_dir.join(format!("r{n}.trace"))).unwrap();
        })
    });
    g.bench_function("record_sync", |b| {
        b.iter(|| {
            tracer
                .record(
                    "blk0/attn_norm",
                    &Context::default().seq(0),
                    TensorView::new(&shape, black_box(&v[..])).unwrap(),
                )
                .unwrap()
        })
    });
    const BURST: u64 = 512;
    let bg = Tracer::builder()
        .dir(dir.path().join("background"))
        .background_queue(BURST as usize)
        .build()
        .unwrap();
    // The caller's cost while the queue has room: bursts of at most BURST records, timed, then
    // an untimed flush. Sustained, the writer is bound by the same file writes as `record_sync`
    // (the caller then waits for queue space: records are never dropped).
    g.bench_function("record_background_caller", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BURST);
                let start = Instant::now();
                for _ in 0..n {
                    bg.record(
                        "blk0/attn_norm",
                        &Context::default().seq(0),
                        TensorView::new(&shape, black_box(&v[..])).unwrap(),
                    )
                    .unwrap();
                }
                timed += start.elapsed();
                bg.flush().unwrap();
                left -= n;
            }
            timed
        })
    });
    bg.flush().unwrap();
    g.finish();
}

/// Small records (16 elements, the size of a norm output in a tiny model): the packed log
/// against one atomic file write per record (the default layout's cost), on one thread.
fn packed_small(c: &mut Criterion) {
    let v = values(16);
    let shape = [1usize, 16];
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("small_records");
    g.measurement_time(Duration::from_secs(3));

    let files = Tracer::builder()
        .dir(dir.path().join("files"))
        .layout(Layout::Files)
        .build()
        .unwrap();
    let packed = Tracer::builder()
        .dir(dir.path().join("packed"))
        .layout(Layout::Packed)
        .build()
        .unwrap();
    let record = |t: &Tracer| {
        t.record(
            "blk0/attn_norm",
            &Context::default().seq(1).layer(0).stage("attn_norm"),
            TensorView::new(&shape, black_box(&v[..])).unwrap(),
        )
        .unwrap()
    };
    record(&files);
    let json = fs::read(dir.path().join("files/blk0_attn_norm.trace")).unwrap();
    let atomic_dir = dir.path().join("atomic");
    fs::create_dir_all(&atomic_dir).unwrap();
    let mut n = 0u64;
    g.bench_function("atomic_file_write", |b| {
        b.iter(|| {
            n += 1;
            let tmp = atomic_dir.join(format!(".tmp-{n}.part"));
            fs::write(&tmp, &json).unwrap();
            fs::rename(&tmp, atomic_dir.join(format!("r{n}.trace"))).unwrap();
        })
    });
    g.bench_function("record_files", |b| b.iter(|| record(&files)));
    g.bench_function("record_packed", |b| b.iter(|| record(&packed)));
    g.finish();
}

/// The value sketch's cost: capture with the default sketch against capture without, on the
/// 16M-element F32 tensor (fingerprint only) and on small records written to the packed log.
fn sketch_cost(c: &mut Criterion) {
    let big = values(BIG);
    let k = trace_core::sketch::DEFAULT_SKETCH_K;
    let mut g = c.benchmark_group("sketch");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, buckets) in [
        ("capture_16m_f32_nosketch", 0),
        ("capture_16m_f32_sketch", k),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut fp = trace_core::Fingerprinter::new()
                    .with_sketch(buckets)
                    .unwrap();
                fp.update(Data::F32(black_box(&big))).unwrap();
                fp.finish()
            })
        });
    }
    let dir = tempfile::tempdir().unwrap();
    for len in [16usize, 2560] {
        let v = values(len);
        let shape = [1usize, len];
        for (tag, buckets) in [("nosketch", 0), ("sketch", k)] {
            let tracer = Tracer::builder()
                .dir(dir.path().join(format!("{len}-{tag}")))
                .layout(Layout::Packed)
                .sketch(buckets)
                .build()
                .unwrap();
            g.bench_function(format!("record_{len}_packed_{tag}"), |b| {
                b.iter(|| {
                    tracer
                        .record(
                            "blk0/attn_norm",
                            &Context::default().seq(0),
                            TensorView::new(&shape, black_box(&v[..])).unwrap(),
                        )
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    big_tensors,
    disabled,
    small_record,
    packed_small,
    sketch_cost
);
criterion_main!(benches);
