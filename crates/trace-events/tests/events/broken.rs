//! Hand-broken histories under `tests/data/events/broken/`, each reported with the exact
//! violation.

use std::path::PathBuf;

use trace_events::{validate_file, Error};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/events")
        .join(name)
}

fn check(file: &str, expected: &[&str]) {
    let got: Vec<String> = validate_file(&path(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, expected, "{file}");
}

#[test]
fn the_base_file_is_valid() {
    check("valid.json", &[]);
}

#[test]
fn each_broken_file_reports_its_violation() {
    check(
        "broken/ids_not_increasing.json",
        &["event 1: ids-increasing: id 1 after id 1"],
    );
    check(
        "broken/exit_wrong_step.json",
        &["event 4: exit-links-entry: step SAMPLE closes entry 3 of step ATTENTION"],
    );
    check(
        "broken/exit_unknown_entry.json",
        &[
            "event 4: exit-links-entry: previous_event_id 99 names no earlier event",
            "event 3: no-open-entry: entry of step ATTENTION is never exited",
        ],
    );
    check(
        "broken/exit_links_exit.json",
        &[
            "event 4: exit-links-entry: previous_event_id 2 is a TaskStateExited, not an entry",
            "event 3: no-open-entry: entry of step ATTENTION is never exited",
        ],
    );
    check(
        "broken/closed_twice.json",
        &["event 7: exit-links-entry: entry 1 was already closed"],
    );
    check(
        "broken/open_entry.json",
        &["event 3: no-open-entry: entry of step ATTENTION is never exited"],
    );
    check(
        "broken/failure_without_cause.json",
        &["event 6: failure-has-cause: ExecutionFailed without a cause"],
    );
    check(
        "broken/counts_mismatch.json",
        &["document: counts-match: error_count is 0 but 1 events are errors"],
    );
    check(
        "broken/parent_closed.json",
        &["event 3: parent-open: parent_event_id 1 was already closed"],
    );
    check(
        "broken/bad_timestamp.json",
        &["event 2: time-order: timestamp \"yesterday\" is not RFC 3339"],
    );
    check(
        "broken/stats_inconsistent.json",
        &["event 4: stats-consistent: has_nan=false nan_count=1 has_inf=false inf_count=0"],
    );
}

#[test]
fn unsupported_version_and_garbage_are_load_errors() {
    let err = validate_file(&path("broken/future_version.json")).unwrap_err();
    assert!(matches!(err, Error::Version { found: 2 }), "{err}");
    let err = validate_file(&path("broken/truncated.json")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("not a valid event history: EOF"),
        "{err}"
    );
}
