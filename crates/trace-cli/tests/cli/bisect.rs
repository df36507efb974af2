//! `tensor-trace bisect` and `repeat` on the toy engine, with planted divergences and
//! deliberate nondeterminism.

use std::collections::BTreeSet;
use std::path::Path;

use predicates::prelude::*;
use serde_json::Value;

use super::support::{tensor_trace, toy_engine};

/// Runs `bisect --format json` into `out` with `extra` options; returns the exit code and the
/// document.
fn bisect(out: &Path, extra: &[&str], a: &[&str], b: &[&str]) -> (i32, Value) {
    bisect_with_env(&[], out, extra, a, b)
}

/// [`bisect`] with `env` set for bisect and the engines it runs.
fn bisect_with_env(
    env: &[(&str, &str)],
    out: &Path,
    extra: &[&str],
    a: &[&str],
    b: &[&str],
) -> (i32, Value) {
    let output = tensor_trace()
        .envs(env.iter().copied())
        .args(["bisect", "--format", "json", "--out"])
        .arg(out)
        .args(extra)
        .arg("--")
        .arg(toy_engine())
        .args(a)
        .arg("--")
        .arg(toy_engine())
        .args(b)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), doc)
}

/// The `.npy` files of a trace directory.
fn npy_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".npy"))
        .collect()
}

/// Both sides recorded with every value, diffed: what bisect must reproduce.
fn full_values_diff(tmp: &Path, a: &[&str], b: &[&str], extra: &[&str]) -> Value {
    let (da, db) = (tmp.join("full-a"), tmp.join("full-b"));
    for (dir, args) in [(&da, a), (&db, b)] {
        tensor_trace()
            .args(["record", "--values", "*", "--out"])
            .arg(dir)
            .arg("--")
            .arg(toy_engine())
            .args(args)
            .assert()
            .success();
    }
    let out = tensor_trace()
        .args(["diff", "--format", "json"])
        .arg(&da)
        .arg(&db)
        .args(extra)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

/// The first divergent pair of a diff report.
fn first_pair(report: &Value) -> &Value {
    let i = report["first_divergence"]["pair"].as_u64().unwrap() as usize;
    &report["pairs"][i]
}

#[test]
fn bisect_measures_the_planted_divergence_on_values_saved_for_the_window_only() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bisect");
    let a = ["--plant-at", "8"];
    let (code, doc) = bisect(&out, &["--window", "2"], &a, &[]);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["schema"], "tensor-trace-bisect");
    assert_eq!(doc["outcome"], "diverged");
    assert_eq!(doc["passes"].as_array().unwrap().len(), 2);
    assert!(doc["nondeterministic"].is_null());

    // The same first divergence as a full-values capture, with the same exact metrics.
    let full = full_values_diff(tmp.path(), &a, &[], &[]);
    let (got, want) = (first_pair(&doc["report"]), first_pair(&full));
    assert_eq!(got["name_a"], "blk0/ffn_out");
    assert_eq!(
        (&got["name_a"], &got["occurrence"]),
        (&want["name_a"], &want["occurrence"])
    );
    assert_eq!(got["evidence"], "values");
    assert_eq!(got["values"], want["values"]);
    let max_abs = got["values"]["max_abs"].as_f64().unwrap();
    assert!((max_abs - 0.25).abs() < 1e-6, "{max_abs}");

    // Pass 1 saved no values; pass 2 exactly the window: the divergent record and the two
    // before it, on both sides.
    let window = ["blk0_attn_out.1.npy", "blk0_ffn_out.1.npy", "embed.1.npy"];
    for side in ["a", "b"] {
        assert!(npy_files(&out.join("pass1").join(side)).is_empty());
        let got = npy_files(&out.join("pass2").join(side));
        assert_eq!(
            got,
            window.iter().map(|s| s.to_string()).collect(),
            "{side}"
        );
    }
    let names: Vec<&str> = doc["window"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name_a"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["embed", "blk0/attn_out", "blk0/ffn_out"]);
    // Byte counts are measured from the directories.
    let pass2_a = doc["passes"][1]["a"]["bytes"].as_u64().unwrap();
    let on_disk: u64 = std::fs::read_dir(out.join("pass2/a"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(pass2_a, on_disk);
}

#[test]
fn bisect_text_report_and_agreeing_runs_leave_no_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // Agreeing runs: exit 0 after pass 1, and the temporary directory is gone.
    tensor_trace()
        .env("TMPDIR", tmp.path())
        .args(["bisect", "--"])
        .arg(toy_engine())
        .arg("--")
        .arg(toy_engine())
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("pass 1 (without values)")
                .and(predicate::str::contains("bisect result: AGREE (exit 0)"))
                .and(predicate::str::contains("pass 2").not()),
        );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // Diverging runs: the text report of the values diff, and the kept directory named.
    let out = tensor_trace()
        .env("TMPDIR", tmp.path())
        .args(["bisect", "--window", "1", "--"])
        .arg(toy_engine())
        .args(["--plant-at", "3"])
        .arg("--")
        .arg(toy_engine())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("first divergence: #3 blk1/attn_out")
                .and(predicate::str::contains("diverged on values evidence"))
                .and(predicate::str::contains("values for 2 records"))
                .and(predicate::str::contains("bisect result: DIVERGED (exit 1)")),
        )
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let kept = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("runs kept in "))
        .expect("the kept directory is printed");
    assert!(Path::new(kept).join("pass2/a/blk1_attn_out.npy").exists());
}

#[test]
fn nondeterminism_before_the_divergence_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    for (side, a, b) in [
        ("a", &["--plant-at", "8", "--noise-at", "3"][..], &[][..]),
        ("b", &["--plant-at", "8"][..], &["--noise-at", "3"][..]),
    ] {
        let (code, doc) = bisect(&tmp.path().join(side), &[], a, b);
        assert_eq!(code, 1, "{doc:#}");
        assert_eq!(doc["outcome"], "nondeterministic", "{side}");
        let n = &doc["nondeterministic"];
        assert_eq!(n["side"], side);
        assert_eq!(
            (&n["name"], &n["occurrence"], &n["position"]),
            (&"blk1/attn_out".into(), &0.into(), &3.into())
        );
        assert_ne!(n["first"], n["second"]);
    }
}

#[test]
fn differences_after_the_window_are_not_nondeterminism() {
    let tmp = tempfile::tempdir().unwrap();
    // Record 10 differs from run to run on both sides, after the divergence at 8.
    let noisy = ["--noise-at", "10"];
    let (code, doc) = bisect(
        tmp.path(),
        &["--window", "1"],
        &["--plant-at", "8", "--noise-at", "10"],
        &noisy,
    );
    assert_eq!(code, 1);
    assert_eq!(doc["outcome"], "diverged", "{doc:#}");
    assert!(doc["nondeterministic"].is_null());
    assert_eq!(first_pair(&doc["report"])["name_a"], "blk0/ffn_out");
}

#[test]
fn a_divergence_the_statistics_miss_is_found_by_the_sketches_in_pass_1() {
    let tmp = tempfile::tempdir().unwrap();
    // Swapping two elements at record 7 leaves its statistics unchanged (the mixing stage at
    // record 8 makes the change visible to them); the records' value sketches see it at once,
    // so pass 1 names the right record and pass 2 needs no widening.
    let a = ["--mix", "--swap-at", "7"];
    let b = ["--mix"];
    let (code, doc) = bisect(&tmp.path().join("bisect"), &["--window", "1"], &a, &b);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["pass1_first"]["name_a"], "blk0/attn_out");
    assert_eq!(
        doc["passes"].as_array().unwrap().len(),
        2,
        "pass 2 was not widened"
    );
    let full = full_values_diff(tmp.path(), &a, &b, &[]);
    let (got, want) = (first_pair(&doc["report"]), first_pair(&full));
    assert_eq!(got["name_a"], "blk0/attn_out");
    assert_eq!(got["occurrence"], 1);
    assert_eq!(
        (&got["name_a"], &got["occurrence"]),
        (&want["name_a"], &want["occurrence"])
    );
    assert_eq!(got["values"], want["values"]);
}

/// Bytes of a full-values capture of `a` and `b` (sketches off, as the bisection's runs), with
/// the diff of the two.
fn full_capture(tmp: &Path, a: &[&str], b: &[&str]) -> (u64, Value) {
    let mut bytes = 0;
    for (side, args) in [("full-a", a), ("full-b", b)] {
        let dir = tmp.join(side);
        tensor_trace()
            .env("TENSOR_TRACE_SKETCH", "0")
            .args(["record", "--values", "*", "--out"])
            .arg(&dir)
            .arg("--")
            .arg(toy_engine())
            .args(args)
            .assert()
            .success();
        for entry in std::fs::read_dir(&dir).unwrap() {
            bytes += entry.unwrap().metadata().unwrap().len();
        }
    }
    let out = tensor_trace()
        .args(["diff", "--format", "json"])
        .arg(tmp.join("full-a"))
        .arg(tmp.join("full-b"))
        .output()
        .unwrap();
    (bytes, serde_json::from_slice(&out.stdout).unwrap())
}

/// `bisect --format json` with sketches off (statistics alone in pass 1), diverging.
fn bisect_without_sketches(out: &Path, a: &[&str], b: &[&str]) -> Value {
    let (code, doc) = bisect_with_env(&[("TENSOR_TRACE_SKETCH", "0")], out, &[], a, b);
    assert_eq!(code, 1, "{doc:#}");
    doc
}

#[test]
fn without_sketches_a_late_flag_is_searched_back_within_one_full_capture() {
    let tmp = tempfile::tempdir().unwrap();
    // Record 3 permutes its elements (invisible to the statistics); mixing from record 15 on
    // makes the statistics see it at record 16 (blk2/ffn_out of step 1), 13 records late.
    let b = ["--size", "4096", "--layers", "4", "--mix-from", "15"];
    let a = [&b[..], &["--shuffle-at", "3"]].concat();
    let doc = bisect_without_sketches(&tmp.path().join("bisect"), &a, &b);
    assert_eq!(doc["pass1_first"]["name_a"], "blk2/ffn_out", "{doc:#}");
    let search = &doc["search"];
    assert_eq!(search["end"], "found", "{doc:#}");
    assert_eq!(search["upper"]["name_a"], "blk1/attn_out");
    assert_eq!(search["lower"]["name_a"], "blk0/ffn_out");
    // Pass 2 (the flag and the record before it), then two passes that quarter the interval.
    let probes: Vec<u64> = doc["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["window"].as_u64().unwrap())
        .collect();
    assert_eq!(probes, [0, 2, 5, 4], "{doc:#}");

    // The answer of a full-values capture, with its exact metrics, for less than it wrote.
    let (full_bytes, full) = full_capture(tmp.path(), &a, &b);
    let (got, want) = (first_pair(&doc["report"]), first_pair(&full));
    assert_eq!(
        (&got["name_a"], &got["occurrence"], &got["evidence"]),
        (&want["name_a"], &want["occurrence"], &"values".into())
    );
    assert_eq!(got["values"], want["values"]);
    let values_bytes = search["values_bytes"].as_u64().unwrap();
    let estimate = search["full_capture_bytes"].as_u64().unwrap();
    let passes = doc["passes"].as_array().unwrap();
    let written: u64 = passes
        .iter()
        .map(|p| p["a"]["bytes"].as_u64().unwrap() + p["b"]["bytes"].as_u64().unwrap())
        .sum();
    let pass1 =
        passes[0]["a"]["bytes"].as_u64().unwrap() + passes[0]["b"]["bytes"].as_u64().unwrap();
    assert_eq!(values_bytes, written - pass1);
    assert!(estimate <= full_bytes, "{estimate} > {full_bytes}");
    assert!(written <= full_bytes, "{written} > {full_bytes}");
}

#[test]
fn the_search_stops_at_the_byte_budget_with_the_interval() {
    let tmp = tempfile::tempdir().unwrap();
    // Tensors of 64 elements: the record files outweigh the values, so once pass 2 has shown
    // the flag late, a further values pass would write more than a full capture.
    let b = [
        "--size",
        "64",
        "--layers",
        "4",
        "--steps",
        "3",
        "--mix-from",
        "15",
    ];
    let a = [&b[..], &["--shuffle-at", "3"]].concat();
    let doc = bisect_without_sketches(&tmp.path().join("bisect"), &a, &b);
    let search = &doc["search"];
    assert_eq!(search["end"], "budget", "{doc:#}");
    assert_eq!(doc["passes"].as_array().unwrap().len(), 2);
    assert!(search["lower"].is_null());
    assert_eq!(
        (&search["upper"]["name_a"], &search["upper"]["occurrence"]),
        (&"blk2/attn_out".into(), &1.into())
    );
    let (full_bytes, _) = full_capture(tmp.path(), &a, &b);
    let values_bytes = search["values_bytes"].as_u64().unwrap();
    assert!(values_bytes <= full_bytes, "{values_bytes} > {full_bytes}");
}

#[test]
fn rules_pass_through_to_both_diffs() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, "version = 1\nignore = [\"blk0/ffn_out\"]\n").unwrap();
    let rules_s = rules.to_str().unwrap();
    let a = ["--plant-at", "8"];
    let (code, doc) = bisect(&tmp.path().join("bisect"), &["--rules", rules_s], &a, &[]);
    assert_eq!(code, 1);
    let full = full_values_diff(tmp.path(), &a, &[], &["--rules", rules_s]);
    assert_eq!(first_pair(&doc["report"])["name_a"], "blk1/attn_out");
    assert_eq!(
        first_pair(&doc["report"])["values"],
        first_pair(&full)["values"]
    );
    assert_eq!(doc["report"]["rules"], rules_s);
}

#[test]
fn bisect_usage_and_engine_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    tensor_trace()
        .args(["bisect", "--"])
        .arg(toy_engine())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no second `--`"));
    tensor_trace()
        .args(["bisect", "--", "--"])
        .arg(toy_engine())
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "expected a command before the second `--`",
        ));
    let out = tmp.path().join("failing");
    tensor_trace()
        .args(["bisect", "--out"])
        .arg(&out)
        .arg("--")
        .arg(toy_engine())
        .arg("--")
        .arg(toy_engine())
        .args(["--exit", "3"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("side b (")
                .and(predicate::str::contains(
                    "exited with exit status: 3 in pass 1",
                ))
                .and(predicate::str::contains("pass1/b.log"))
                .and(predicate::str::contains("bisect runs kept in")),
        );
    // --out must be fresh.
    tensor_trace()
        .args(["bisect", "--out"])
        .arg(&out)
        .arg("--")
        .arg(toy_engine())
        .arg("--")
        .arg(toy_engine())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not empty"));
}

#[test]
fn repeat_names_the_first_nondeterministic_record() {
    let tmp = tempfile::tempdir().unwrap();
    tensor_trace()
        .env("TMPDIR", tmp.path())
        .args(["repeat", "-n", "3", "--"])
        .arg(toy_engine())
        .assert()
        .code(0)
        .stdout(
            predicate::str::contains("3 runs of")
                .and(predicate::str::contains("12 records in run 1"))
                .and(predicate::str::contains("result: DETERMINISTIC (exit 0)")),
        );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    tensor_trace()
        .args(["repeat", "-n", "2", "--out"])
        .arg(tmp.path().join("r"))
        .arg("--")
        .arg(toy_engine())
        .args(["--noise-at", "4", "--steps", "3"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "first nondeterministic record (run 2 against run 1): blk1/ffn_out@0 (record #4)",
            )
            .and(predicate::str::contains(
                "result: NONDETERMINISTIC (exit 1)",
            )),
        );
    tensor_trace()
        .args(["repeat", "-n", "1", "--"])
        .arg(toy_engine())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("at least 2 runs, got 1"));
}

/// `--baseline`: a third command (the reference in A's precision) runs in every pass beside B,
/// with B's values window, and the diffs are calibrated verdicts.
#[test]
fn bisect_with_a_baseline_judges_by_calibrated_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bisect");
    let output = tensor_trace()
        .args(["bisect", "--format", "json", "--window", "2", "--baseline"])
        .args(["--max-ratio", "5", "--out"])
        .arg(&out)
        .arg("--")
        .arg(toy_engine())
        .args(["--plant-at", "8"])
        .arg("--")
        .arg(toy_engine())
        .arg("--")
        .arg(toy_engine())
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{doc:#}");
    assert_eq!(doc["outcome"], "diverged");
    let report = &doc["report"];
    assert_eq!(report["calibration"]["max_ratio"], 5.0, "{report:#}");
    let first = first_pair(report);
    assert_eq!(first["name_a"], "blk0/ffn_out");
    assert_eq!(first["evidence"], "values");
    assert_eq!(first["calibration"]["status"], "calibrated", "{first:#}");
    // The baseline ran in both passes; in pass 2 with B's window.
    assert!(npy_files(&out.join("pass1/c")).is_empty());
    assert_eq!(
        npy_files(&out.join("pass2/c")),
        npy_files(&out.join("pass2/b"))
    );
    assert_eq!(npy_files(&out.join("pass2/c")).len(), 3);

    // A baseline that changes between two runs of itself is named, as A and B are.
    let output = tensor_trace()
        .args(["bisect", "--format", "json", "--baseline", "--out"])
        .arg(tmp.path().join("noisy"))
        .arg("--")
        .arg(toy_engine())
        .args(["--plant-at", "8"])
        .arg("--")
        .arg(toy_engine())
        .arg("--")
        .arg(toy_engine())
        .args(["--noise-at", "3"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["outcome"], "nondeterministic", "{doc:#}");
    assert_eq!(doc["nondeterministic"]["side"], "c");
    assert_eq!(doc["nondeterministic"]["name"], "blk1/attn_out");

    // Two commands where --baseline wants three: a usage error.
    tensor_trace()
        .args(["bisect", "--baseline", "--"])
        .arg(toy_engine())
        .arg("--")
        .arg(toy_engine())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected three commands"));
}
