//! Bad input: every case names the file and field, warns and goes on, and is fatal with
//! `--strict`.

use std::fs;
use std::path::Path;

use trace_diff::DiffOptions;

use crate::common::diff_dirs;

use crate::common::{copy_dir, write_run, Prec, Spec};

fn replace(path: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn truncate(path: &Path, keep: usize) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..keep.min(bytes.len() - 1)]).unwrap();
}

/// The `rms` line of a pretty-printed record, to replace.
fn rms_line(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .find(|l| l.trim_start().starts_with("\"rms\""))
        .unwrap()
        .to_owned()
}

/// Writes a clean F32 run (A) and F64 run (B), both with values, corrupts A with `corrupt`, and
/// checks the warning (non-strict) and the error (strict) both contain `needles`.
fn check(corrupt: impl Fn(&Path), needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, a, b) = (
        tmp.path().join("clean"),
        tmp.path().join("a"),
        tmp.path().join("b"),
    );
    write_run(&clean, Spec::new(Prec::F32).values());
    write_run(&b, Spec::new(Prec::F64).values());
    copy_dir(&clean, &a);
    corrupt(&a);

    let report = diff_dirs(&a, &b, &DiffOptions::default())
        .unwrap_or_else(|e| panic!("{needles:?}: non-strict mode must go on, got {e}"));
    let warnings: Vec<&str> = report.warnings.iter().map(|w| w.message.as_str()).collect();
    let hit = warnings
        .iter()
        .any(|w| needles.iter().all(|n| w.contains(n)));
    assert!(hit, "{needles:?} not in warnings {warnings:#?}");
    assert!(
        report.counts.compared > 10,
        "an honest partial answer still compares the rest"
    );

    let strict = DiffOptions {
        strict: true,
        ..DiffOptions::default()
    };
    let err = diff_dirs(&a, &b, &strict).unwrap_err().to_string();
    assert!(
        needles.iter().all(|n| err.contains(n)),
        "{needles:?} not in {err}"
    );
}

#[test]
fn malformed_json() {
    check(
        |d| fs::write(d.join("blk1_q.trace"), "{ not json").unwrap(),
        &["blk1_q.trace", "not a valid trace record"],
    );
}

#[test]
fn truncated_record() {
    check(
        |d| truncate(&d.join("blk1_q.trace"), 60),
        &["blk1_q.trace", "truncated"],
    );
}

#[test]
fn wrong_field_type() {
    check(
        |d| {
            let p = d.join("blk1_q.trace");
            replace(&p, &rms_line(&p), "  \"rms\": \"high\",");
        },
        &["blk1_q.trace", "`rms`", "invalid type"],
    );
}

#[test]
fn missing_field() {
    check(
        |d| {
            let p = d.join("blk1_q.trace");
            let text = fs::read_to_string(&p).unwrap();
            let kept: Vec<&str> = text.lines().filter(|l| !l.contains("\"blake3\"")).collect();
            fs::write(&p, kept.join("\n")).unwrap();
        },
        &["blk1_q.trace", "missing field `blake3`"],
    );
}

#[test]
fn listed_record_file_is_gone() {
    check(
        |d| fs::remove_file(d.join("blk1_q.trace")).unwrap(),
        &["blk1_q.trace", "cannot read"],
    );
}

#[test]
fn truncated_manifest_last_line() {
    check(
        |d| {
            let p = d.join("manifest.jsonl");
            let mut text = fs::read_to_string(&p).unwrap();
            text.push_str("{\"index\":99,\"na");
            fs::write(&p, text).unwrap();
        },
        &["manifest.jsonl", "cut short"],
    );
}

#[test]
fn malformed_manifest_line() {
    check(
        |d| {
            let p = d.join("manifest.jsonl");
            let text = fs::read_to_string(&p).unwrap();
            fs::write(&p, format!("garbage\n{text}")).unwrap();
        },
        &["manifest.jsonl", "line 1"],
    );
}

#[test]
fn npy_shape_does_not_match_the_record() {
    check(
        |d| crate::common::write_f32_npy(&d.join("blk1_q.npy"), &[2, 4], &[0.0; 8]),
        &["blk1_q.npy", "`shape`", "[2, 4]"],
    );
}

#[test]
fn truncated_npy() {
    check(
        |d| truncate(&d.join("blk1_q.npy"), 140),
        &["blk1_q.npy", "truncated"],
    );
}

#[test]
fn unlisted_record_file() {
    check(
        |d| {
            let p = d.join("manifest.jsonl");
            let text = fs::read_to_string(&p).unwrap();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("\"blk1_q.trace\""))
                .collect();
            fs::write(&p, kept.join("\n") + "\n").unwrap();
        },
        &["blk1_q.trace", "not listed in manifest.jsonl"],
    );
}
