//! The `trace-diff` binary on multi-rank runs (`DIR/rank-{r}`): detected on either side, shard
//! rules from `--rules`, the ranks in the text and JSON reports, and the errors.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use trace_core::{Context, TensorView, Tracer};

fn trace_diff() -> Command {
    let mut cmd = Command::cargo_bin("trace-diff").unwrap();
    cmd.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    cmd
}

/// `h = x W` on 2 ranks (column-parallel, each rank 3 of the 6 columns) then a replicated
/// `norm`, and the same on one process; `bad` adds 1 to rank 1's first column of `h`.
fn runs(dir: &Path, bad: bool) {
    let cx = Context::default();
    let h: Vec<f32> = (0..12).map(|i| i as f32 / 4.0 - 1.0).collect(); // [2, 6]
    let norm = [0.5f32, -0.5, 1.5];
    let single = Tracer::builder()
        .dir(dir.join("ref"))
        .values("*")
        .build()
        .unwrap();
    single
        .record("h", &cx, TensorView::new(&[2, 6], &h[..]).unwrap())
        .unwrap();
    single
        .record("norm", &cx, TensorView::new(&[3], &norm[..]).unwrap())
        .unwrap();
    for rank in 0..2usize {
        let t = Tracer::builder()
            .dir(dir.join("tp"))
            .rank(rank as u32)
            .world_size(2)
            .values("*")
            .build()
            .unwrap();
        let mut shard: Vec<f32> = (0..2)
            .flat_map(|row| h[row * 6 + 3 * rank..row * 6 + 3 * rank + 3].to_vec())
            .collect();
        if bad && rank == 1 {
            shard[0] += 1.0;
        }
        t.record("h", &cx, TensorView::new(&[2, 3], &shard[..]).unwrap())
            .unwrap();
        t.record("norm", &cx, TensorView::new(&[3], &norm[..]).unwrap())
            .unwrap();
    }
    fs::write(
        dir.join("rules.toml"),
        "[[shard]]\nnames = \"h\"\naxis = 1\n",
    )
    .unwrap();
}

#[test]
fn sharded_run_against_a_single_process_reference() {
    let tmp = tempfile::tempdir().unwrap();
    runs(tmp.path(), false);
    let d = |p: &str| tmp.path().join(p);
    trace_diff()
        .args([d("tp"), d("ref"), "--rules".into(), d("rules.toml")])
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "ranks: reassembled (A: 2 ranks, B: single process)",
        ));
    // The reference may be the multi-rank side too.
    trace_diff()
        .args([d("ref"), d("tp"), "--rules".into(), d("rules.toml")])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("(A: single process, B: 2 ranks)"));

    let tmp = tempfile::tempdir().unwrap();
    runs(tmp.path(), true);
    let d = |p: &str| tmp.path().join(p);
    let out = trace_diff()
        .args([
            d("tp"),
            d("ref"),
            "--rules".into(),
            d("rules.toml"),
            "--format".into(),
            "json".into(),
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["first_divergence"]["name"], "h");
    assert_eq!(
        report["ranks"]["first_divergence_ranks"],
        serde_json::json!([1])
    );
    assert_eq!(report["ranks"]["world_size_a"], 2);
    assert!(report["ranks"]["world_size_b"].is_null());
    assert_eq!(report["a"]["dir"], d("tp").display().to_string());

    let html = d("report.html");
    trace_diff()
        .args([
            d("tp"),
            d("ref"),
            "--rules".into(),
            d("rules.toml"),
            "--html".into(),
            html.clone(),
        ])
        .assert()
        .code(1);
    let page = fs::read_to_string(html).unwrap();
    assert!(
        page.contains("<tr><th>ranks</th><td>reassembled (A: 2 ranks, B: single process); at the first divergence: 1 "),
        "the HTML report names the rank"
    );
}

#[test]
fn without_shard_rules_a_split_record_is_incompatible() {
    let tmp = tempfile::tempdir().unwrap();
    runs(tmp.path(), false);
    let d = |p: &str| tmp.path().join(p);
    // `h` is taken as replicated: rank 0's [2, 3] against the reference's [2, 6].
    trace_diff()
        .args([d("tp"), d("ref")])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("element counts differ"));
}

#[test]
fn single_process_runs_report_no_ranks_and_bad_layouts_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    runs(tmp.path(), false);
    let d = |p: &str| tmp.path().join(p);
    let out = trace_diff()
        .args([d("ref"), d("ref"), "--format".into(), "json".into()])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(
        report.get("ranks").is_none(),
        "no `ranks` key without a multi-rank side"
    );

    fs::remove_dir_all(d("tp/rank-1")).unwrap();
    trace_diff()
        .args([d("tp"), d("ref")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "a world of 2 ranks, but rank-1 is missing",
        ));
    trace_diff()
        .args([d("ref"), d("ref"), "--baseline".into(), d("tp")])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--baseline does not take multi-rank runs",
        ));
}
