//! The streaming diff gives the in-memory diff's answer, for both layouts, with bounded pairs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use trace_core::run::Run;
use trace_diff::{DiffOptions, Outcome, Pair, Report, Rules, StreamOptions};

use crate::common::{diff_dirs, diff_dirs_streaming, two_runs, Fault, Prec, Spec};

/// Rewrites the per-file run `src` as a packed directory `dst` (same records, same values).
fn to_packed(src: &Path, dst: &Path) {
    let run = Run::open(src).unwrap();
    fs::create_dir_all(dst).unwrap();
    let mut log = fs::File::create(dst.join("records.jsonl")).unwrap();
    for r in run.records() {
        let mut line = serde_json::to_string(&r.record).unwrap();
        line.push('\n');
        log.write_all(line.as_bytes()).unwrap();
        if let Some(v) = &r.values {
            fs::copy(src.join(v), dst.join(v)).unwrap();
        }
    }
}

fn streamed(
    a: &Path,
    b: &Path,
    options: &DiffOptions,
    bounds: &StreamOptions,
) -> (Report, Vec<Pair>) {
    let mut pairs = Vec::new();
    let report = diff_dirs_streaming(a, b, options, bounds, &mut |p| {
        pairs.push(p.clone());
        Ok(())
    })
    .unwrap();
    (report, pairs)
}

/// Everything but the kept pairs and the `streamed` section agrees with the in-memory diff,
/// and the streamed pairs are its pairs, in its order.
fn assert_same(full: &Report, stream: &Report, pairs: &[Pair]) {
    assert_eq!(pairs, &full.pairs[..]);
    assert_eq!(stream.outcome, full.outcome);
    assert_eq!(stream.counts, full.counts);
    assert_eq!(stream.first_divergence, full.first_divergence);
    assert_eq!(stream.layers, full.layers);
    assert_eq!(stream.warnings, full.warnings);
    assert_eq!(stream.a.records, full.a.records);
    assert_eq!(stream.b.records, full.b.records);
    assert_eq!(
        (stream.a.ignored, stream.b.ignored),
        (full.a.ignored, full.b.ignored)
    );
    assert_eq!(
        stream.first_divergence_pair(),
        full.first_divergence_pair(),
        "the first divergence is kept"
    );
    let s = stream.streamed.as_ref().unwrap();
    assert_eq!((s.window_misses, s.layers_dropped), (0, 0));
    assert_eq!(s.pairs_kept as usize, stream.pairs.len());
}

fn both_layouts(tmp: &Path, a: &Path, b: &Path) -> [(PathBuf, PathBuf); 2] {
    let (pa, pb) = (tmp.join("packed_a"), tmp.join("packed_b"));
    to_packed(a, &pa);
    to_packed(b, &pb);
    [(a.to_owned(), b.to_owned()), (pa, pb)]
}

#[test]
fn streaming_matches_the_in_memory_diff_in_both_layouts() {
    let fault = Fault {
        seq: 1,
        layer: 1,
        index: 2,
        delta: 0.25,
    };
    let (tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    for (a, b) in both_layouts(tmp.path(), &a, &b) {
        let options = DiffOptions::default();
        let full = diff_dirs(&a, &b, &options).unwrap();
        assert_eq!(full.outcome, Outcome::Diverged);
        let (stream, pairs) = streamed(&a, &b, &options, &StreamOptions::default());
        assert_same(&full, &stream, &pairs);
        // With a tiny window and only 2 pairs kept: same answer, bounded report.
        let bounds = StreamOptions {
            window: 1,
            keep_pairs: 2,
            layers: 1,
        };
        let (small, pairs) = streamed(&a, &b, &options, &bounds);
        assert_eq!(pairs, full.pairs);
        assert_eq!(small.counts, full.counts);
        // One layer group before the first divergence, one from it on, the rest counted.
        let f = full.first_divergence_pair().unwrap();
        let at = full
            .layers
            .iter()
            .position(|l| l.seq == f.seq && Some(l.layer) == f.layer)
            .unwrap();
        assert_eq!(small.layers, full.layers[at - 1..=at]);
        let dropped = small.streamed.as_ref().unwrap().layers_dropped;
        assert_eq!(dropped as usize, full.layers.len() - 2);
        assert!(small.pairs.len() <= 3, "{}", small.pairs.len());
        assert!(small.first_divergence_pair().is_some());
    }
}

#[test]
fn streaming_with_rules_and_records_without_partner() {
    let (tmp, a, b) = two_runs(Spec::new(Prec::F32).hf_names(), Spec::new(Prec::F32));
    for (a, b) in both_layouts(tmp.path(), &a, &b) {
        for rules in [
            "",
            "ignore_a = ['model.*.mlp*']\nignore_b = ['blk0*']\n",
            r#"
[[map]]
a = 'model\.layers\.(\d+)\.self_attn\.q_proj'
b = 'blk${1}/q'
"#,
        ] {
            let options = DiffOptions {
                rules: Rules::from_toml(rules, Path::new("rules.toml")).unwrap(),
                ..DiffOptions::default()
            };
            let full = diff_dirs(&a, &b, &options).unwrap();
            let (stream, pairs) = streamed(&a, &b, &options, &StreamOptions::default());
            assert_same(&full, &stream, &pairs);
        }
    }
}

#[test]
fn a_full_window_is_reported() {
    let (tmp, a, b) = two_runs(Spec::new(Prec::F32).hf_names(), Spec::new(Prec::F32));
    let options = DiffOptions::default();
    let bounds = StreamOptions {
        window: 1,
        keep_pairs: 10,
        ..StreamOptions::default()
    };
    // B's names all differ from A's: with a window of 1, A stops reading B at once.
    let (report, pairs) = streamed(&a, &b, &options, &bounds);
    let full = diff_dirs(&a, &b, &options).unwrap();
    assert_eq!(pairs.len(), full.pairs.len());
    assert_eq!(report.counts, full.counts);
    let misses = report.streamed.as_ref().unwrap().window_misses;
    assert!(misses > 0);
    assert!(
        report.warnings.iter().any(|w| w
            .message
            .contains(&format!("{misses} records of A found no partner"))),
        "{:?}",
        report.warnings
    );
    drop(tmp);
}

#[test]
fn streamed_json_report_is_the_json_report() {
    let fault = Fault {
        seq: 0,
        layer: 2,
        index: 1,
        delta: 1.0,
    };
    let (tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F32).values(),
    );
    for (a, b) in both_layouts(tmp.path(), &a, &b) {
        let run = |stream: bool| {
            let mut cmd = Command::cargo_bin("trace-diff").unwrap();
            cmd.args([&a, &b]).args(["--format", "json"]);
            if stream {
                cmd.arg("--stream");
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(1));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        };
        let (full, mut stream) = (run(false), run(true));
        let streamed = stream.as_object_mut().unwrap().remove("streamed").unwrap();
        assert_eq!(streamed["window_misses"], 0);
        assert_eq!(full, stream);
    }
    let text = Command::cargo_bin("trace-diff")
        .unwrap()
        .args([&a_text(&tmp), &b_text(&tmp)])
        .args(["--stream", "--baseline"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(text.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&text.stderr).contains("--baseline"));
}

fn a_text(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("a")
}

fn b_text(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("b")
}

/// `trace-diff` on `a` and `b` with `args`: the exit code, stdout and stderr.
fn trace_diff(a: &Path, b: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::cargo_bin("trace-diff")
        .unwrap()
        .args([a, b])
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn auto_streams_large_runs_only_and_says_why() {
    let fault = Fault {
        seq: 1,
        layer: 0,
        index: 3,
        delta: 0.5,
    };
    let (tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F32).values(),
    );
    for (a, b) in both_layouts(tmp.path(), &a, &b) {
        let records = Run::open(&a).unwrap().len();
        let json = |args: &[&str]| {
            let (code, out, err) = trace_diff(&a, &b, &[&["--format", "json"], args].concat());
            assert_eq!(code, Some(1), "{err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        // Below the threshold (the default, or one more than the run), or `never`: in memory.
        let over = (records + 1).to_string();
        for args in [
            &[][..],
            &["--stream-threshold", &over],
            &["--stream=never", "--stream-threshold", "1"],
        ] {
            assert!(json(args).get("streamed").is_none(), "{args:?}");
        }
        // At the threshold: streamed, with the exact count (the logs are small) and the reason.
        let at = records.to_string();
        let report = json(&["--stream-threshold", &at]);
        let reason = report["streamed"]["reason"].as_str().unwrap();
        let log = if a.join("records.jsonl").exists() {
            "records.jsonl"
        } else {
            "manifest.jsonl"
        };
        assert_eq!(
            reason,
            format!(
                "--stream=auto: run A holds {records} records (lines of its {log}), at least --stream-threshold {records}"
            )
        );
        // The same report as the in-memory one otherwise.
        let mut streamed = report.clone();
        streamed.as_object_mut().unwrap().remove("streamed");
        assert_eq!(streamed, json(&["--stream=never"]));
        let (code, text, _) = trace_diff(&a, &b, &["--stream-threshold", "1"]);
        assert_eq!(code, Some(1));
        assert!(
            text.contains("streamed: --stream=auto: run A holds") && text.contains("window 65536"),
            "{text}"
        );
        // Plain `--stream` and `--stream=always` stream whatever the size, and say so.
        for flag in ["--stream", "--stream=always"] {
            let report = json(&[flag]);
            assert_eq!(report["streamed"]["reason"], "--stream given", "{flag}");
        }
        // An option needing every pair keeps the in-memory diff in auto mode...
        let html = tmp.path().join("report.html");
        let (code, out, err) = trace_diff(
            &a,
            &b,
            &["--stream-threshold", "1", "--html", html.to_str().unwrap()],
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(html.is_file() && !out.contains("streamed:"), "{out}");
        // ... and is refused when streaming is forced.
        let (code, _, err) = trace_diff(&a, &b, &["--stream=always", "--junit", "j.xml"]);
        assert_eq!(code, Some(2));
        assert!(
            err.contains("--stream does not combine with --junit"),
            "{err}"
        );
    }
}

#[test]
fn stream_mode_is_checked() {
    let (tmp, a, b) = two_runs(Spec::new(Prec::F32), Spec::new(Prec::F32));
    let (code, _, err) = trace_diff(&a, &b, &["--stream=sometimes"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("sometimes") && err.contains("auto") && err.contains("never"),
        "{err}"
    );
    // `--stream` before the directories takes no value from them.
    let out = Command::cargo_bin("trace-diff")
        .unwrap()
        .arg("--stream")
        .args([&a, &b])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("streamed: --stream given"));
    drop(tmp);
}

#[test]
fn streamed_reports_equal_in_memory_ones_with_divergences_missing_and_ignored_records() {
    let fault = Fault {
        seq: 1,
        layer: 1,
        index: 0,
        delta: 0.5,
    };
    let (tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    // B's blk0/out has no partner (ignored in A), nor has A's embed (ignored in B).
    let rules_text = "ignore_a = ['blk0/out']\nignore_b = ['embed']\n";
    let rules_file = tmp.path().join("rules.toml");
    fs::write(&rules_file, rules_text).unwrap();
    for (a, b) in both_layouts(tmp.path(), &a, &b) {
        let options = DiffOptions {
            rules: Rules::from_toml(rules_text, &rules_file).unwrap(),
            ..DiffOptions::default()
        };
        let full = diff_dirs(&a, &b, &options).unwrap();
        let c = &full.counts;
        assert!(
            c.diverged > 0 && c.missing_in_a > 0 && c.missing_in_b > 0,
            "{c:?}"
        );
        assert!(full.a.ignored > 0 && full.b.ignored > 0);
        let (stream, pairs) = streamed(&a, &b, &options, &StreamOptions::default());
        assert_same(&full, &stream, &pairs);
        // The ignored records with their rules, as the in-memory diff lists them.
        assert_eq!(stream.ignored, full.ignored);
        assert_eq!(
            full.ignored.records.len() as u64,
            full.a.ignored + full.b.ignored
        );
        // Listed as far as the report keeps pairs (on each side), counted beyond.
        let bounds = StreamOptions {
            keep_pairs: 1,
            ..StreamOptions::default()
        };
        let (few, _) = streamed(&a, &b, &options, &bounds);
        assert_eq!(few.ignored.records.len(), 2);
        assert_eq!(
            few.ignored.records[..],
            [
                full.ignored.records[0].clone(),
                full.ignored.records[2].clone()
            ]
        );
        assert_eq!(few.ignored.not_listed, full.a.ignored + full.b.ignored - 2);
        // The command line's JSON reports too, streamed by `auto` with a threshold of 1.
        let rules = rules_file.to_str().unwrap();
        let json = |args: &[&str]| {
            let (code, out, err) = trace_diff(
                &a,
                &b,
                &[&["--format", "json", "--rules", rules], args].concat(),
            );
            assert_eq!(code, Some(1), "{err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        let mut streamed_json = json(&["--stream-threshold", "1"]);
        let s = streamed_json.as_object_mut().unwrap().remove("streamed");
        assert_eq!(s.unwrap()["window_misses"], 0);
        assert_eq!(streamed_json, json(&["--stream=never"]));
    }
}

#[test]
fn partners_out_of_order_in_b_are_found_within_the_window() {
    let fault = Fault {
        seq: 1,
        layer: 2,
        index: 1,
        delta: 0.5,
    };
    let (tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F32).values(),
    );
    let (pa, pb) = (tmp.path().join("packed_a"), tmp.path().join("reordered_b"));
    to_packed(&a, &pa);
    // B written packed with each step's records in reverse order (indexes renumbered, so it is
    // a valid log whose order differs from A's everywhere but at the middle of each step).
    let run = Run::open(&b).unwrap();
    fs::create_dir_all(&pb).unwrap();
    let mut steps: Vec<Vec<trace_core::run::RunRecord>> = Vec::new();
    for r in run.records() {
        match steps.last_mut() {
            Some(step) if step[0].record.seq == r.record.seq => step.push(r.clone()),
            _ => steps.push(vec![r.clone()]),
        }
    }
    let mut log = fs::File::create(pb.join("records.jsonl")).unwrap();
    for (index, r) in steps
        .into_iter()
        .flat_map(|s| s.into_iter().rev())
        .enumerate()
    {
        let mut record = r.record.clone();
        record.index = Some(index as u64);
        writeln!(log, "{}", serde_json::to_string(&record).unwrap()).unwrap();
        if let Some(v) = &r.values {
            fs::copy(b.join(v), pb.join(v)).unwrap();
        }
    }
    drop(log);
    let options = DiffOptions::default();
    let full = diff_dirs(&pa, &pb, &options).unwrap();
    assert_eq!(full.outcome, Outcome::Diverged);
    assert_eq!(full.counts.missing_in_a + full.counts.missing_in_b, 0);
    let (stream, pairs) = streamed(&pa, &pb, &options, &StreamOptions::default());
    assert_same(&full, &stream, &pairs);
}
