//! `cargo xtask bench`: runs the criterion benchmarks and prints ratios measured in one run.
//!
//! Every figure is a ratio against a baseline measured by the same `cargo bench` invocation on
//! the same machine, so machine speed and noise mostly cancel. Absolute times are printed only
//! where the target is absolute (the disabled path, the background writer's caller cost).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use crossval::workspace::{cargo, project_root, run_step};

/// A benchmark target: package and bench name.
const BENCHES: &[(&str, &str)] = &[
    ("trace-core", "capture"),
    ("trace-events", "topk"),
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
        what: "packed write of a small record (one thread)",
        figure: Figure::RecordsPerSecond {
            subject: "small_records/record_packed",
            records: 1.0,
        },
        target: ">= 500,000 records/s",
    },
    Row {
        what: "packed record vs one atomic file write per record",
        figure: Figure::Speedup {
            subject: "small_records/record_packed",
            baseline: "small_records/atomic_file_write",
        },
        target: "(context)",
    },
    Row {
        what: "files-layout record vs one atomic file write per record",
        figure: Figure::Speedup {
            subject: "small_records/record_files",
            baseline: "small_records/atomic_file_write",
        },
        target: "(context)",
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

/// The value sketch's cost (issue 25): capture with the default sketch against capture without,
/// each pair measured in the same run (`sketch` group of the capture bench).
const SKETCH_ROWS: &[Row] = &[
    Row {
        what: "capture F32 16M with sketch vs without",
        figure: Figure::CostRatio {
            subject: "sketch/capture_16m_f32_sketch",
            baseline: "sketch/capture_16m_f32_nosketch",
        },
        target: "<= 1.3x",
    },
    Row {
        what: "packed record of 2,560 elements with sketch vs without",
        figure: Figure::CostRatio {
            subject: "sketch/record_2560_packed_sketch",
            baseline: "sketch/record_2560_packed_nosketch",
        },
        target: "(context)",
    },
    Row {
        what: "packed record of 16 elements with sketch vs without",
        figure: Figure::CostRatio {
            subject: "sketch/record_16_packed_sketch",
            baseline: "sketch/record_16_packed_nosketch",
        },
        target: "(context)",
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
                "unknown argument {other:?}; usage: cargo xtask bench [BENCH|records|engine|python] [--report-only]"
            ),
        }
    }
    let root = project_root();
    if filter == Some("records") {
        return run_records(&root);
    }
    if filter == Some("python") {
        return crate::python::run_benches();
    }
    if filter == Some("engine") {
        return run_engine(&root);
    }
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
    for row in ROWS.iter().chain(SKETCH_ROWS) {
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

/// Records per run of `cargo xtask bench records` (default 100,000).
const ENV_RECORDS: &str = "TENSOR_TRACE_BENCH_RECORDS";
/// Layouts `cargo xtask bench records` measures (default `files,packed`): a per-file run of
/// 5 M records takes about 20 GB of disk, so large runs are usually measured with `packed` only.
const ENV_LAYOUTS: &str = "TENSOR_TRACE_BENCH_LAYOUTS";

/// `cargo xtask bench records`: for each layout, writes two synthetic runs of N small records
/// with the `bigrun` example (release build; the second run diverges at 80%), then diffs them
/// with `trace-diff --stream --format json` and in memory (`--stream=never`), printing
/// records/s and the peak RSS of each step
/// (peak RSS through `/usr/bin/time`, Debian's `time` package, when it is installed).
fn run_records(root: &Path) -> Result<()> {
    let records: u64 = match std::env::var(ENV_RECORDS) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .with_context(|| format!("{ENV_RECORDS}={v:?}: expected a record count"))?,
        Err(_) => 100_000,
    };
    let layouts = std::env::var(ENV_LAYOUTS).unwrap_or_else(|_| "files,packed".to_owned());
    let layouts: Vec<&str> = layouts.split(',').map(str::trim).collect();
    if let Some(bad) = layouts.iter().find(|l| !matches!(**l, "files" | "packed")) {
        anyhow::bail!("{ENV_LAYOUTS}: expected `files` and/or `packed`, found {bad:?}");
    }
    run_step(
        "build (cargo build --release -p trace-core --example bigrun)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "trace-core",
            "--example",
            "bigrun",
        ]),
    )?;
    run_step(
        "build (cargo build --release -p trace-diff --features cli --bin trace-diff)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "trace-diff",
            "--features",
            "cli",
            "--bin",
            "trace-diff",
        ]),
    )?;
    let release = root.join("target/release");
    let (bigrun, trace_diff) = (release.join("examples/bigrun"), release.join("trace-diff"));
    let work = root.join("target/bench-records");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let time = Path::new("/usr/bin/time");
    println!(
        "\n{:<40} {:>10} {:>14} {:>12}",
        format!("{records} records per run"),
        "seconds",
        "records/s",
        "peak RSS"
    );
    println!("{}", "-".repeat(80));
    for layout in layouts {
        let (a, b) = (
            work.join(format!("{layout}-a")),
            work.join(format!("{layout}-b")),
        );
        let diverge = (records / 5 * 4).to_string();
        let n = records.to_string();
        for (dir, extra) in [(&a, None), (&b, Some(diverge.as_str()))] {
            let mut args = vec![dir.to_str().expect("UTF-8 path"), &n, layout];
            args.extend(extra);
            let m = measure(time, &bigrun, &args, &work, 0)?;
            print_measure(&format!("write {layout} ({})", file_name(dir)), records, m);
        }
        let args = [
            a.to_str().expect("UTF-8 path"),
            b.to_str().expect("UTF-8 path"),
            "--stream",
            "--format",
            "json",
        ];
        // Exit 1: the runs diverge, as they should.
        let m = measure(time, &trace_diff, &args, &work, 1)?;
        print_measure(
            &format!("diff --stream {layout} (both runs)"),
            2 * records,
            m,
        );
        // The in-memory diff (every pair held for the report), text as by default.
        let args = [args[0], args[1], "--stream=never"];
        let m = measure(time, &trace_diff, &args, &work, 1)?;
        print_measure(
            &format!("diff --stream=never {layout} (both runs)"),
            2 * records,
            m,
        );
        fs::remove_dir_all(&a).ok();
        fs::remove_dir_all(&b).ok();
    }
    fs::remove_dir_all(&work).ok();
    Ok(())
}

/// Prompt tokens and decode steps of `cargo xtask bench engine` (the measurement).
const ENGINE_PROMPT_TOKENS: usize = 63;
const ENGINE_STEPS: &str = "2";
/// Runs of each setting; the fastest counts (noise only ever adds time).
const ENGINE_REPEATS: usize = 3;

/// `cargo xtask bench engine`: llama.cpp's `llama-trace` (release trace-ffi) on a real GGUF
/// (SmolLM2-135M-Instruct Q4_1, [`crossval::package::SMOLLM2_135M_Q4_1`]), one thread, 63 prompt
/// tokens and 2 decode steps: untraced, then every named tensor traced (statistics and hashes,
/// no raw values) in the packed layout (the default) and in the per-file layout, each the
/// fastest of three interleaved runs; prints wall times and the ratios to the untraced run.
fn run_engine(root: &Path) -> Result<()> {
    let model = crossval::package::fetch(&crossval::package::SMOLLM2_135M_Q4_1)?;
    let exe = crossval::reference::llama_trace_program(false)?;
    let work = root.join("target/bench-engine");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    // One token per byte (llama-trace's prompt file): ids below 256 are valid for any vocabulary.
    let prompt = work.join("prompt.bin");
    let tokens: Vec<u8> = (0..ENGINE_PROMPT_TOKENS)
        .map(|i| 32 + (i % 90) as u8)
        .collect();
    fs::write(&prompt, tokens).with_context(|| format!("write {}", prompt.display()))?;
    let settings: [(&str, Option<&str>); 3] = [
        ("untraced", None),
        ("traced, packed (default)", Some("packed")),
        ("traced, files", Some("files")),
    ];
    let mut best = [f64::INFINITY; 3];
    let mut records = [0usize; 3];
    for _ in 0..ENGINE_REPEATS {
        for (i, (_, layout)) in settings.iter().enumerate() {
            let dir = work.join(format!("trace-{i}"));
            let _ = fs::remove_dir_all(&dir);
            let mut cmd = Command::new(&exe);
            cmd.arg(&model).arg(&prompt).arg(ENGINE_STEPS);
            for (key, _) in std::env::vars() {
                if key.starts_with("TENSOR_TRACE_") || key == "BITNET_TRACE_DIR" {
                    cmd.env_remove(key);
                }
            }
            if let Some(layout) = layout {
                cmd.env("TENSOR_TRACE_DIR", &dir)
                    .env("TENSOR_TRACE_LAYOUT", layout);
            }
            cmd.stdout(Stdio::null()).stdin(Stdio::null());
            let start = Instant::now();
            let status = cmd
                .status()
                .with_context(|| format!("cannot start {}", exe.display()))?;
            let secs = start.elapsed().as_secs_f64();
            anyhow::ensure!(status.success(), "{} exited with {status}", exe.display());
            best[i] = best[i].min(secs);
            if layout.is_some() {
                let run = trace_core::run::Run::open(&dir)
                    .with_context(|| format!("read the trace {}", dir.display()))?;
                records[i] = run.len();
            }
        }
    }
    println!(
        "\nllama-trace, {}, {ENGINE_PROMPT_TOKENS} prompt tokens + {ENGINE_STEPS} decode steps, \
         1 thread (fastest of {ENGINE_REPEATS})",
        file_name(&model)
    );
    println!(
        "{:<28} {:>9} {:>10} {:>18}",
        "setting", "records", "seconds", "traced / untraced"
    );
    println!("{}", "-".repeat(68));
    for (i, (what, layout)) in settings.iter().enumerate() {
        let ratio = if layout.is_some() {
            format!("{:.2}x", best[i] / best[0])
        } else {
            "1.00x".to_owned()
        };
        println!("{what:<28} {:>9} {:>10.3} {ratio:>18}", records[i], best[i]);
    }
    println!("target: traced, packed (default) <= 1.5x");
    fs::remove_dir_all(&work).ok();
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Wall time in seconds and peak RSS in KiB (when `/usr/bin/time` is there) of `exe args`,
/// which must exit with `expected`; its stdout is discarded.
fn measure(
    time: &Path,
    exe: &Path,
    args: &[&str],
    work: &Path,
    expected: i32,
) -> Result<(f64, Option<u64>)> {
    let report: PathBuf = work.join("time.txt");
    let _ = fs::remove_file(&report);
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "%M", "-o"]).arg(&report).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args).stdout(Stdio::null());
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let secs = start.elapsed().as_secs_f64();
    if status.code() != Some(expected) {
        anyhow::bail!(
            "{} {} exited with {status}, expected {expected}",
            exe.display(),
            args.join(" ")
        );
    }
    let rss = fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last()?.trim().parse().ok());
    Ok((secs, rss))
}

fn print_measure(what: &str, records: u64, (secs, rss): (f64, Option<u64>)) {
    let rss = rss.map_or_else(
        || "not measured".to_owned(),
        |kib| format!("{:.0} MB", kib as f64 / 1024.0),
    );
    println!(
        "{what:<40} {secs:>10.2} {:>14.0} {rss:>12}",
        records as f64 / secs
    );
}
