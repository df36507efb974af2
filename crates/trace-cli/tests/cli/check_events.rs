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
        .join("../trace-events/tests/data/events")
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

fn realizar_fixture(name: &str) -> std::path::PathBuf {
    events_fixture("realizar").join(name)
}

#[test]
fn check_reads_realizar_histories() {
    // Valid, no recorded error: exit 0 (this was "missing field `nan_count`", exit 2).
    tensor_trace()
        .arg("check")
        .arg(realizar_fixture("clean.json"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("note: realizar history").and(predicate::str::contains(
                "checked 25 events: 0 contract violations, 0 errors, 0 warnings",
            )),
        );
    // Recorded errors are findings: exit 1, each with its event, step and layer.
    tensor_trace()
        .arg("check")
        .arg(realizar_fixture("nan_layer.json"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "error at event 8 (TRANSFORMER_BLOCK layer 1, iteration 0): NaN values detected in layer 1",
            )
            .and(predicate::str::contains(
                "checked 14 events: 0 contract violations, 3 errors, 0 warnings",
            )),
        );
    // Contract violations: an exit whose entry is missing, an entry never exited.
    tensor_trace()
        .arg("check")
        .arg(realizar_fixture("broken_links.json"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "contract: event 3: exit-links-entry: TaskStateExited without previous_event_id",
            )
            .and(predicate::str::contains(
                "contract: event 4: exit-links-entry: previous_event_id 9 names no earlier event",
            ))
            .and(predicate::str::contains(
                "contract: event 5: no-open-entry: entry of step SAMPLE is never exited",
            ))
            .and(predicate::str::contains("0 errors")),
        );
    tensor_trace()
        .arg("check")
        .arg(realizar_fixture("failed.json"))
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains(
                "error at event 4 (RUN, iteration 0): Execution failed: Initialization Failure",
            )
            .and(predicate::str::contains(
                "no-open-entry: entry of step EMBED",
            ))
            // realizar's cause holds terminal escapes: printed escaped, never raw.
            .and(predicate::str::contains(
                r"cause: Missing \u{1b}[1mconfig.json\u{1b}[0m next to",
            ))
            .and(predicate::str::contains("\u{1b}").not()),
        );
    tensor_trace()
        .arg("check")
        .arg(realizar_fixture("empty.json"))
        .assert()
        .success();
}

#[test]
fn unreadable_realizar_input_is_exit_2_naming_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(realizar_fixture("clean.json")).unwrap();
    let cut = tmp.path().join("cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    tensor_trace()
        .arg("check")
        .arg(&cut)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cut.json").and(predicate::str::contains("EOF")));
    let no_stats = tmp.path().join("no_stats.json");
    std::fs::write(&no_stats, text.replace("\"has_nan\"", "\"nan\"")).unwrap();
    tensor_trace()
        .arg("check")
        .arg(&no_stats)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no_stats.json")
                .and(predicate::str::contains("realizar's --trace-output layout"))
                .and(predicate::str::contains("missing field `has_nan`")),
        );
}

#[test]
fn events_renders_realizar_histories_and_normalizes_them() {
    tensor_trace()
        .arg("events")
        .arg(realizar_fixture("nan_layer.json"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Written: 2026-03-14T09:26:54.589793238+00:00 (by realizar)")
                .and(predicate::str::contains(
                    "no finite values has_nan=true has_inf=false  ERROR",
                )),
        );
    let tmp = tempfile::tempdir().unwrap();
    let normalized = tmp.path().join("normalized.json");
    tensor_trace()
        .arg("events")
        .arg(realizar_fixture("nan_layer.json"))
        .args(["--format", "json", "--output"])
        .arg(&normalized)
        .assert()
        .success();
    let json = std::fs::read_to_string(&normalized).unwrap();
    assert!(json.contains("\"producer\": \"realizar\"") && json.contains("\"min\": \"Infinity\""));
    // The normalized file checks the same way as the original.
    tensor_trace()
        .arg("check")
        .arg(&normalized)
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "checked 14 events: 0 contract violations, 3 errors, 0 warnings",
        ));
    let chrome = tmp.path().join("chrome.json");
    tensor_trace()
        .arg("events")
        .arg(realizar_fixture("clean.json"))
        .args(["--format", "chrome", "--output"])
        .arg(&chrome)
        .assert()
        .success();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chrome).unwrap()).unwrap();
    assert!(v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "KERNEL_LAUNCH L0" && e["ph"] == "X"));
}
