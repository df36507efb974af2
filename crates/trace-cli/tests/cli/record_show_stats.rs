use predicates::prelude::*;

use super::support::{record, tensor_trace, toy_engine};

#[test]
fn record_passes_the_exit_code_and_summarizes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    tensor_trace()
        .args(["record", "--out"])
        .arg(&dir)
        .args(["--values", "logits", "--"])
        .arg(toy_engine())
        .args(["--exit", "3"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("12 records (6 names, 2 steps)"));
    assert!(dir.join("logits.npy").exists() && dir.join("logits.1.npy").exists());
    assert!(!dir.join("embed.npy").exists());
}

#[test]
fn record_refuses_a_non_empty_directory_unless_appending() {
    let tmp = tempfile::tempdir().unwrap();
    record(tmp.path(), &["--steps", "1"]);
    tensor_trace()
        .args(["record", "--out"])
        .arg(tmp.path())
        .arg("--")
        .arg(toy_engine())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not empty").and(predicate::str::contains("--append")));
    tensor_trace()
        .args(["record", "--append", "--out"])
        .arg(tmp.path())
        .args(["--"])
        .arg(toy_engine())
        .args(["--steps", "1"])
        .assert()
        .success()
        .stderr(predicate::str::contains("12 records"));
}

#[test]
fn record_checks_globs_and_the_command_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    tensor_trace()
        .args(["record", "--filter", "blk[", "--out"])
        .arg(tmp.path().join("x"))
        .args(["--", "true"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--filter").and(predicate::str::contains("bad glob")));
    tensor_trace()
        .args(["record", "--out"])
        .arg(tmp.path().join("y"))
        .args(["--", "/nonexistent/engine"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot run /nonexistent/engine"));
}

#[test]
fn show_lists_records_in_capture_order_with_filters() {
    let tmp = tempfile::tempdir().unwrap();
    record(tmp.path(), &[]);
    let out = tensor_trace()
        .arg("show")
        .arg(tmp.path())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let names: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        &names[..6],
        [
            "embed",
            "blk0/attn_out",
            "blk0/ffn_out",
            "blk1/attn_out",
            "blk1/ffn_out",
            "logits"
        ]
    );
    assert_eq!(names.len(), 12);
    tensor_trace()
        .arg("show")
        .arg(tmp.path())
        .args(["--filter", "blk*", "--layer", "1", "--step", "1"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("blk1/attn_out").and(predicate::str::contains("blk0").not()),
        );
    let json = tensor_trace()
        .arg("show")
        .arg(tmp.path())
        .args(["--format", "json", "--filter", "logits"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    // The default layout: packed, so a record's file is its line of the log.
    assert!(
        rows[1]["file"]
            .as_str()
            .unwrap()
            .starts_with("records.jsonl:"),
        "{}",
        rows[1]
    );
    assert_eq!(
        (&rows[1]["seq"], &rows[1]["occurrence"]),
        (&1.into(), &1.into())
    );
}

#[test]
fn stats_summarizes_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    record(tmp.path(), &["--nan-at-layer", "1"]);
    tensor_trace()
        .arg("stats")
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("records        12")
                .and(predicate::str::contains("names          6"))
                .and(predicate::str::contains("steps          2"))
                .and(predicate::str::contains("blk1/attn_out  nan=1 inf=0")),
        );
    let json = tensor_trace()
        .arg("stats")
        .arg(tmp.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["records"], 12);
    assert!(v["bytes_on_disk"].as_u64().unwrap() > 0);
}

#[test]
fn unreadable_input_is_exit_2_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    tensor_trace()
        .arg("show")
        .arg(tmp.path().join("missing"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing"));
    tensor_trace()
        .arg("show")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Usage"));
}

#[test]
fn help_version_and_completions() {
    for sub in [
        "record",
        "show",
        "stats",
        "diff",
        "check",
        "events",
        "completions",
    ] {
        tensor_trace()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    tensor_trace()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains("tensor-trace"));
    tensor_trace()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("COMPREPLY").and(predicate::str::contains("tensor-trace")),
        );
}

#[test]
fn diff_is_trace_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    record(&a, &[]);
    record(&b, &[]);
    record(&c, &["--nan-at-layer", "1"]);
    tensor_trace()
        .arg("diff")
        .args([&a, &b])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("result: AGREE"));
    let out = tensor_trace()
        .arg("diff")
        .args([&a, &c])
        .args(["--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["outcome"], "diverged");
    assert_eq!(report["first_divergence"]["name"], "blk1/attn_out");
}

#[test]
fn quiet_and_verbose_control_diagnostics() {
    // A seed-format directory (no manifest, no indexes): reading it warns that the execution
    // order is unknown.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("blk0_q.trace"),
        r#"{"name":"blk0/q","shape":[2],"dtype":"F32","blake3":"af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262","rms":1.0,"num_elements":2}"#,
    )
    .unwrap();
    let warning = "execution order is unknown";
    tensor_trace()
        .arg("show")
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("blk0/q"))
        .stderr(predicate::str::contains(warning));
    tensor_trace()
        .args(["-q", "show"])
        .arg(tmp.path())
        .assert()
        .success()
        .stderr(predicate::str::contains(warning).not());
    tensor_trace()
        .args(["-vv", "record", "--out"])
        .arg(tmp.path().join("run"))
        .args(["--", "true"])
        .assert()
        .success()
        .stderr(
            predicate::str::contains("running").and(predicate::str::contains("wrote no records")),
        );
}

/// The same toy run in the packed layout (`TENSOR_TRACE_LAYOUT=packed`) reads the same in
/// every command: show lists the same records with the same hashes, check finds the same
/// NaN origin, and diff finds the two layouts' runs identical.
#[test]
fn every_command_reads_the_packed_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, packed) = (tmp.path().join("files"), tmp.path().join("packed"));
    record(&files, &["--nan-at-layer", "1"]);
    tensor_trace()
        .env("TENSOR_TRACE_LAYOUT", "packed")
        .arg("record")
        .arg("--out")
        .arg(&packed)
        .arg("--")
        .arg(toy_engine())
        .args(["--nan-at-layer", "1"])
        .assert()
        .success();
    assert!(packed.join("records.jsonl").exists());
    assert!(!packed.join("manifest.jsonl").exists() && !packed.join("embed.trace").exists());

    let rows = |dir: &std::path::Path| -> Vec<(String, String)> {
        let json = tensor_trace()
            .arg("show")
            .arg(dir)
            .args(["--format", "json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let rows: serde_json::Value = serde_json::from_slice(&json).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].to_string(), r["blake3"].to_string()))
            .collect()
    };
    let packed_rows = rows(&packed);
    assert_eq!(packed_rows.len(), 12);
    assert_eq!(packed_rows, rows(&files));

    tensor_trace()
        .arg("stats")
        .arg(&packed)
        .assert()
        .success()
        .stdout(predicate::str::contains("records        12"));
    tensor_trace()
        .arg("check")
        .arg(&packed)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("error: #3 blk1/attn_out"));
    tensor_trace()
        .arg("diff")
        .arg(&files)
        .arg(&packed)
        .assert()
        .success()
        .stdout(predicate::str::contains("12 identical"));
}

#[test]
fn check_lists_the_origin_and_counts_the_notes_it_leaves_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    record(&dir, &["--nan-at-layer", "1"]);
    let output = |notes: &str| {
        let out = tensor_trace()
            .arg("check")
            .arg(&dir)
            .args(["--notes", notes])
            .assert()
            .code(1)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let all = output("20");
    assert_eq!(all.matches("error: #").count(), 1, "{all}");
    assert_eq!(all.matches("note: #").count(), 8, "{all}");
    assert!(!all.contains("more records"), "{all}");
    let one = output("1");
    assert!(one.starts_with("error: #3 blk1/attn_out"), "{one}");
    assert_eq!(one.matches("note: #").count(), 1, "{one}");
    assert!(
        one.contains("note: 7 more records with NaN/Inf downstream")
            && one.contains("checked 12 records: 9 with NaN/Inf"),
        "{one}"
    );
}

#[test]
fn stats_lists_the_same_largest_magnitudes_as_a_full_sort() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    record(&dir, &["--nan-at-layer", "1", "--steps", "3"]);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = tensor_trace()
            .args(args)
            .arg(&dir)
            .args(["--format", "json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let records = json(&["show"]);
    let records = records.as_array().unwrap();
    let mut expected: Vec<(f64, usize, String)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let (min, max) = (r["stats"]["min"].as_f64()?, r["stats"]["max"].as_f64()?);
            Some((min.abs().max(max.abs()), i, r["name"].as_str()?.to_owned()))
        })
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let nan_records = records
        .iter()
        .filter(|r| r["stats"]["nan_count"].as_u64().unwrap_or(0) > 0)
        .count();
    for top in [1usize, 3, 100] {
        let summary = json(&["stats", "--top", &top.to_string()]);
        let largest: Vec<(f64, usize, String)> = summary["largest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["max_abs"].as_f64().unwrap(),
                    m["position"].as_u64().unwrap() as usize,
                    m["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: Vec<_> = expected.iter().take(top).cloned().collect();
        assert_eq!(largest, want, "--top {top}");
        assert_eq!(summary["non_finite_records"], nan_records);
        assert_eq!(
            summary["non_finite"].as_array().unwrap().len(),
            nan_records.min(top)
        );
    }
    assert!(
        nan_records > 3,
        "the run propagates NaN into several records"
    );
}
