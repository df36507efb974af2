//! Throughput of a whole comparison: two generated 10,000-record trace directories, read from
//! disk (manifest, records), matched and judged on stats. Target: >= 50,000 records/s, where a
//! record is one record of side A compared with its partner (both directories are read).

use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use trace_core::{Context, TensorView, Tracer};
use trace_diff::{Comparison, DiffOptions, Outcome};

const RECORDS: usize = 10_000;
const LAYERS: usize = 30;
const STAGES: [&str; 10] = [
    "attn_norm",
    "q",
    "k",
    "v",
    "attn",
    "attn_out",
    "ffn_norm",
    "gate",
    "up",
    "ffn_out",
];

/// Writes a run of `RECORDS` records of 64 elements; `perturb` shifts every 100th record by a
/// little (within F32 tolerance), so those are judged on stats rather than by hash.
fn write_run(dir: &Path, perturb: bool) {
    let tracer = Tracer::builder().dir(dir).build().unwrap();
    let per_step = LAYERS * STAGES.len();
    let mut data = vec![0f32; 64];
    for i in 0..RECORDS {
        let (seq, rest) = (i / per_step, i % per_step);
        let (layer, stage) = (rest / STAGES.len(), STAGES[rest % STAGES.len()]);
        for (j, v) in data.iter_mut().enumerate() {
            *v = ((i * 31 + j * 7) % 101) as f32 / 50.0 - 1.0;
            if perturb && i % 100 == 0 {
                *v *= 1.0 + 1e-7;
            }
        }
        let ctx = Context::default()
            .seq(seq as u64)
            .layer(layer as i64)
            .stage(stage);
        let name = format!("blk{layer}/{stage}");
        tracer
            .record(&name, &ctx, TensorView::new(&[1, 64], &data[..]).unwrap())
            .unwrap();
    }
    tracer.flush().unwrap();
}

/// User + system CPU time of this process (all threads) from `/proc/self/stat`, on Linux, where
/// the clock tick is 1/100 s.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, true);
    write_run(&b, false);
    let options = DiffOptions::default();

    // One plain measurement printed as records/s, for the closing note and `cargo xtask bench`.
    let rounds = 5;
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    for _ in 0..rounds {
        let report = Comparison::new(&a, &b).options(&options).run().unwrap();
        assert_eq!(report.outcome, Outcome::Agree);
        assert_eq!(report.counts.compared, RECORDS as u64);
    }
    let per_run = start.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "trace-diff: {:.0} records/s ({RECORDS} records per side in {:.1} ms; target >= 50000)",
        RECORDS as f64 / per_run,
        per_run * 1e3
    );
    // Wall time swings with other load on a shared machine; CPU time much less so.
    if let (Some(a0), Some(a1)) = (cpu_start, cpu_seconds()) {
        let cpu = (a1 - a0) / rounds as f64;
        println!(
            "trace-diff: {:.0} records per CPU-second (all threads, user + system)",
            RECORDS as f64 / cpu
        );
    }

    // Where the time goes: reading both directories, then matching and judging.
    let start = Instant::now();
    let (run_a, run_b) = (
        trace_core::run::Run::open(&a).unwrap(),
        trace_core::run::Run::open(&b).unwrap(),
    );
    let read = start.elapsed();
    let start = Instant::now();
    let report = Comparison::new(&run_a, &run_b)
        .options(&options)
        .run()
        .unwrap();
    let judge = start.elapsed();
    println!(
        "trace-diff: reading both directories {:.1} ms, matching and judging {:.1} ms ({} pairs)",
        read.as_secs_f64() * 1e3,
        judge.as_secs_f64() * 1e3,
        report.counts.compared
    );

    let mut group = c.benchmark_group("diff");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("10k_records", |bench| {
        bench.iter(|| Comparison::new(&a, &b).options(&options).run().unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
