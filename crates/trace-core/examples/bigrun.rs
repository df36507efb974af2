//! Writes a synthetic run of many small records, for measuring capture speed, and diff speed
//! and memory on long runs (`docs/ARCHITECTURE.md`, "Runs of millions of records").
//!
//! ```text
//! cargo run --release -p trace-core --example bigrun -- DIR RECORDS [files|packed] [DIVERGE_AT]
//! ```
//!
//! Records follow a decoder's shape: steps of 80 layers x 15 points (`blk{L}/p{P}`, with
//! `seq`, `layer` and `stage`), 16 elements each. From capture index `DIVERGE_AT` on, every
//! value is nudged by 1e-3, so two runs diverge there. Prints the records written per second.

use std::process::ExitCode;
use std::time::Instant;

use trace_core::{Context, Layout, TensorView, Tracer};

const LAYERS: u64 = 80;
const POINTS: u64 = 15;
const STAGES: [&str; POINTS as usize] = [
    "attn_norm",
    "q",
    "k",
    "v",
    "q_rope",
    "k_rope",
    "scores",
    "probs",
    "attn",
    "attn_out",
    "resid1",
    "ffn_norm",
    "gate",
    "up",
    "out",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bigrun DIR RECORDS [files|packed] [DIVERGE_AT]";
    let (Some(dir), Some(records)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let Ok(records) = records.replace('_', "").parse::<u64>() else {
        eprintln!("RECORDS: expected a count, found {records:?}\n{usage}");
        return ExitCode::from(2);
    };
    let layout = match args.get(2) {
        None => Layout::Files,
        Some(v) => match Layout::parse(v, "layout") {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}\n{usage}");
                return ExitCode::from(2);
            }
        },
    };
    let diverge_at = match args.get(3).map(|v| v.replace('_', "").parse::<u64>()) {
        None => u64::MAX,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("DIVERGE_AT: expected a capture index\n{usage}");
            return ExitCode::from(2);
        }
    };
    let tracer = match Tracer::builder().dir(dir).layout(layout).build() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut values = [0f32; 16];
    let start = Instant::now();
    for i in 0..records {
        let step = i / (LAYERS * POINTS);
        let layer = (i / POINTS) % LAYERS;
        let point = i % POINTS;
        let nudge = if i >= diverge_at { 1e-3 } else { 0.0 };
        for (k, v) in values.iter_mut().enumerate() {
            *v = ((layer * POINTS + point) as f32 * 0.01 + k as f32 * 0.1).sin() + nudge;
        }
        let name = format!("blk{layer}/p{point}");
        let ctx = Context::default()
            .seq(step)
            .layer(layer as i64)
            .stage(STAGES[point as usize]);
        let shape = [1, values.len()];
        let view = TensorView::new(&shape, &values[..]).expect("shape matches");
        if let Err(e) = tracer.record(&name, &ctx, view) {
            eprintln!("record {i}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = tracer.flush() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {records} records ({}) in {secs:.2} s: {:.0} records/s",
        layout.name(),
        records as f64 / secs
    );
    ExitCode::SUCCESS
}
