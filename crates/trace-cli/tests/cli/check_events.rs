use predicates::prelude::*;

use super::support::{record, tensor_trace};

#[test]
fn check_passes_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    record(tmp.path(), &[]);
    tensor_trace()
        .arg("check")
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "checked 12 records: 0 with NaN/Inf",
        ));
}

#[test]
fn check_names_where_nan_first_appears_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    record(tmp.path(), &["--nan-at-layer", "1", "--steps", "1"]);
    tensor_trace()
        .arg("check")
        .arg(tmp.path())
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("error: #3 blk1/attn_out (layer 1, step 0, stage attn_out)")
                .and(predicate::str::contains(
                    "(the last one: blk0/ffn_out) was finite",
                ))
                .and(predicate::str::contains("softmax scaling"))
                .and(predicate::str::contains("downstream of blk1/attn_out")),
        );
}

fn events_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../trace-core/tests/data/events")
        .join(name)
}

#[test]
fn check_and_render_an_event_history() {
    let valid = events_fixture("valid.json");
    tensor_trace()
        .arg("check")
        .arg(&valid)
        .assert()
        // A valid history recording a failed SAMPLE step: contracts hold, the failure is a finding.
        .code(1)
        .stdout(
            predicate::str::contains("0 contract violations, 1 errors")
                .and(predicate::str::contains("cause: CUDA error 700")),
        );
    tensor_trace().arg("events").arg(&valid).assert().success();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("chrome.json");
    tensor_trace()
        .arg("events")
        .arg(&valid)
        .args(["--format", "chrome", "--output"])
        .arg(&out)
        .assert()
        .success();
    let chrome: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let events = chrome["traceEvents"]
        .as_array()
        .expect("a Chrome trace object");
    assert!(
        events.iter().any(|e| e["ph"] == "X"),
        "complete events: {chrome}"
    );
}

#[test]
fn broken_event_histories_are_findings_or_input_errors() {
    let dir = events_fixture("broken");
    let mut broken = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = tensor_trace().arg("check").arg(&path).output().unwrap();
        let code = out.status.code().unwrap();
        assert!(code == 1 || code == 2, "{}: exit {code}", path.display());
        if code == 1 {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("contract: "),
                "{}",
                path.display()
            );
        } else {
            assert!(String::from_utf8_lossy(&out.stderr)
                .contains(path.file_name().unwrap().to_str().unwrap()));
        }
        broken += 1;
    }
    assert!(broken >= 5);
}
