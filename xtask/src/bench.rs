//! `cargo xtask bench`: runs the criterion benchmarks and prints ratios measured in one run.
//!
//! Every figure is a ratio against a baseline measured by the same `cargo bench` invocation on
//! the same machine, so machine speed and noise mostly cancel. Absolute times are printed only
//! where the target is absolute (the disabled path, the background writer's caller cost).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::{cargo, project_root, run_step};

/// A benchmark target: package and bench name.
const BENCHES: &[(&str, &str)] = &[
    ("trace-core", "capture"),
    ("trace-core", "topk"),
    ("trace-candle", "dump_trace"),
    ("trace-diff", "diff"),
];

/// How a row turns two measurements into a figure.
enum Figure {
    /// baseline time / subject time: how many times faster (or the throughput ratio).
    Speedup {
        subject: &'static str,
        baseline: &'static str,
    },
    /// subject time / baseline time: how many times the baseline's cost.
    CostRatio {
        subject: &'static str,
        baseline: &'static str,
    },
    /// The subject's mean time.
    Absolute { subject: &'static str },
    /// The subject's mean time divided by 1,000 (a benchmark looping 1,000 times).
    PerThousand { subject: &'static str },
    /// Records per second from a per-run time and a record count.
    RecordsPerSecond { subject: &'static str, records: f64 },
}

struct Row {
    what: &'static str,
    figure: Figure,
    target: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        what: "capture F32 16M, throughput vs single-thread blake3",
        figure: Figure::Speedup {
            subject: "capture_16m/capture_f32",
            baseline: "capture_16m/blake3_single_thread_f32_bytes",
        },
        target: ">= 1.0x (aim 1.3x)",
    },
    Row {
        what: "capture BF16 16M vs blake3 on converted bytes",
        figure: Figure::Speedup {
            subject: "capture_16m/capture_bf16",
            baseline: "capture_16m/blake3_single_thread_bf16_converted_bytes",
        },
        target: ">= 0.7x",
    },
    Row {
        what: "capture F16 16M vs blake3 on converted bytes",
        figure: Figure::Speedup {
            subject: "capture_16m/capture_f16",
            baseline: "capture_16m/blake3_single_thread_f16_converted_bytes",
        },
        target: ">= 0.7x",
    },
    Row {
        what: "capture F32 vs the seed's approach",
        figure: Figure::Speedup {
            subject: "capture_16m/capture_f32",
            baseline: "capture_16m/seed_f32",
        },
        target: ">= 6x",
    },
    Row {
        what: "capture BF16 vs the seed's approach",
        figure: Figure::Speedup {
            subject: "capture_16m/capture_bf16",
            baseline: "capture_16m/seed_bf16",
        },
        target: ">= 6x",
    },
    Row {
        what: "capture F16 vs the seed's approach",
        figure: Figure::Speedup {
            subject: "capture_16m/capture_f16",
            baseline: "capture_16m/seed_f16",
        },
        target: ">= 6x",
    },
    Row {
        what: "capture F32 vs naive hash-then-stats",
        figure: Figure::Speedup {
            subject: "capture_16m/capture_f32",
            baseline: "capture_16m/naive_hash_then_stats_f32",
        },
        target: "(context)",
    },
    Row {
        what: "disabled dump_with call (per call, loop of 1,000)",
        figure: Figure::PerThousand {
            subject: "disabled/dump_disabled_x1000",
        },
        target: "<= 2 ns",
    },
    Row {
        what: "disabled call vs one relaxed atomic load (loops of 1,000)",
        figure: Figure::CostRatio {
            subject: "disabled/dump_disabled_x1000",
            baseline: "disabled/relaxed_atomic_load_x1000",
        },
        target: "~1x",
    },
    Row {
        what: "disabled call building its TensorView each time",
        figure: Figure::Absolute {
            subject: "disabled/dump_disabled_building_view",
        },
        target: "(context)",
    },
    Row {
        what: "disabled macro with format! name (per call, loop of 1,000)",
        figure: Figure::PerThousand {
            subject: "disabled/macro_disabled_with_format_x1000",
        },
        target: "<= 2 ns",
    },
    Row {
        what: "2,560-element record vs atomic write of its JSON",
        figure: Figure::CostRatio {
            subject: "record_2560/record_sync",
            baseline: "record_2560/atomic_write_same_json",
        },
        target: "<= 1.5x",
    },
    Row {
        what: "2,560-element record, background writer (caller)",
        figure: Figure::Absolute {
            subject: "record_2560/record_background_caller",
        },
        target: "<= 5 us",
    },
    Row {
        what: "top-5 of a 128k vocabulary vs full sort",
        figure: Figure::Speedup {
            subject: "topk_128k/select_nth/5",
            baseline: "topk_128k/full_sort/5",
        },
        target: "(faster)",
    },
    Row {
        what: "top-40 of a 128k vocabulary vs full sort",
        figure: Figure::Speedup {
            subject: "topk_128k/select_nth/40",
            baseline: "topk_128k/full_sort/40",
        },
        target: "(faster)",
    },
    Row {
        what: "disabled event span (enter + exit)",
        figure: Figure::Absolute {
            subject: "disabled_enter_exit",
        },
        target: "(small)",
    },
    Row {
        what: "candle contiguous F32 capture vs trace-core slice",
        figure: Figure::CostRatio {
            subject: "candle_f32_contiguous_16m/adapter",
            baseline: "candle_f32_contiguous_16m/trace_core_slice",
        },
        target: "<= 1.1x",
    },
    Row {
        what: "candle BF16 capture vs to_dtype+to_vec1+hash",
        figure: Figure::Speedup {
            subject: "candle_bf16_16m/adapter",
            baseline: "candle_bf16_16m/candle_to_dtype_to_vec1_hash",
        },
        target: ">= 5x",
    },
    Row {
        what: "candle transposed 4096x4096 vs contiguous+to_vec1+hash",
        figure: Figure::Speedup {
            subject: "candle_f32_transposed_4096/adapter",
            baseline: "candle_f32_transposed_4096/candle_contiguous_to_vec1_hash",
        },
        target: ">= 2x",
    },
    Row {
        what: "candle disabled dump_trace",
        figure: Figure::Absolute {
            subject: "candle_disabled/dump_trace",
        },
        target: "<= 2 ns",
    },
    Row {
        what: "trace-diff on two 10,000-record runs",
        figure: Figure::RecordsPerSecond {
            subject: "diff/10k_records",
            records: 10_000.0,
        },
        target: ">= 50,000 records/s",
    },
];

pub fn run(args: &[String]) -> Result<()> {
    let mut filter: Option<&str> = None;
    let mut report_only = false;
    for arg in args {
        match arg.as_str() {
            "--report-only" => report_only = true,
            other if filter.is_none() && !other.starts_with('-') => filter = Some(other),
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: cargo xtask bench [BENCH] [--report-only]"
            ),
        }
    }
    let root = project_root();
    if !report_only {
        for (package, bench) in BENCHES {
            if filter.is_some_and(|f| f != *bench) {
                continue;
            }
            let file = root.join(bench_path(package, bench));
            if !file.exists() {
                eprintln!(
                    "xtask: skipping {package}/{bench}: {} does not exist",
                    file.display()
                );
                continue;
            }
            run_step(
                &format!("bench {package}/{bench}"),
                cargo().args(["bench", "-p", package, "--bench", bench]),
            )?;
        }
    }
    print_table(&root.join("target/criterion"))
}

fn bench_path(package: &str, bench: &str) -> String {
    format!("crates/{package}/benches/{bench}.rs")
}

/// Mean time in nanoseconds of `group/function`, from criterion's last run.
fn mean_ns(criterion: &Path, id: &str) -> Result<Option<f64>> {
    let path = criterion.join(id).join("new/estimates.json");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => return Ok(None),
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mean = json["mean"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("{}: no mean.point_estimate", path.display()))?;
    Ok(Some(mean))
}

fn human_time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.2} ns")
    } else if ns < 1e6 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn print_table(criterion: &Path) -> Result<()> {
    println!(
        "\n{:<58} {:>14}  target",
        "measurement (same run)", "figure"
    );
    println!("{}", "-".repeat(96));
    for row in ROWS {
        let figure = match row.figure {
            Figure::Speedup { subject, baseline } => {
                match (mean_ns(criterion, subject)?, mean_ns(criterion, baseline)?) {
                    (Some(s), Some(b)) => Some(format!("{:.2}x", b / s)),
                    _ => None,
                }
            }
            Figure::CostRatio { subject, baseline } => {
                match (mean_ns(criterion, subject)?, mean_ns(criterion, baseline)?) {
                    (Some(s), Some(b)) => Some(format!("{:.2}x", s / b)),
                    _ => None,
                }
            }
            Figure::Absolute { subject } => mean_ns(criterion, subject)?.map(human_time),
            Figure::PerThousand { subject } => {
                mean_ns(criterion, subject)?.map(|ns| human_time(ns / 1000.0))
            }
            Figure::RecordsPerSecond { subject, records } => {
                mean_ns(criterion, subject)?.map(|ns| format!("{:.0}/s", records / (ns / 1e9)))
            }
        };
        let figure = figure.unwrap_or_else(|| "not measured".to_owned());
        println!("{:<58} {:>14}  {}", row.what, figure, row.target);
    }
    Ok(())
}
