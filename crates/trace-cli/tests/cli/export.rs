//! `tensor-trace export`: either layout out as the packed log's lines or as CSV.

use std::fs;
use std::path::{Path, PathBuf};

use predicates::prelude::*;

use super::support::{record, tensor_trace};

fn golden(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/golden")
        .join(dir)
}

fn export(args: &[&str]) -> Vec<u8> {
    tensor_trace()
        .arg("export")
        .args(args)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone()
}

#[test]
fn a_files_layout_run_exports_as_the_packed_log_of_the_same_run() {
    // The golden vectors written both ways by the same emitter: exporting the per-file run
    // must give the packed run's log byte for byte (order, fields, numbers, values file names).
    let expected = fs::read(golden("expected-packed").join("records.jsonl")).unwrap();
    let files = golden("expected");
    assert_eq!(export(&[files.to_str().unwrap()]), expected);
    let packed = golden("expected-packed");
    assert_eq!(export(&[packed.to_str().unwrap()]), expected);

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run.jsonl");
    export(&[files.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(fs::read(&out).unwrap(), expected);
    let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the output file: {leftovers:?}");
    // A missing directory is an error naming it, not created behind the user's back.
    tensor_trace()
        .arg("export")
        .arg(&files)
        .arg("-o")
        .arg(tmp.path().join("no/such/dir/run.jsonl"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no/such/dir"));
}

#[test]
fn csv_has_one_escaped_row_per_record_and_the_filters_select() {
    let files = golden("expected");
    let text = export(&[files.to_str().unwrap(), "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(&text[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(&header[..4], ["index", "name", "occurrence", "shape"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let log = fs::read_to_string(golden("expected-packed").join("records.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), records.len());
    for (row, rec) in rows.iter().zip(&records) {
        // Names with commas, quotes, braces and control characters survive CSV quoting.
        assert_eq!(row.get(1).unwrap(), rec["name"].as_str().unwrap());
        assert_eq!(row.get(5).unwrap(), rec["blake3"].as_str().unwrap());
        let nan = &rec["stats"]["nan_count"];
        let cell = row.get(header.iter().position(|h| h == "nan_count").unwrap());
        assert_eq!(
            cell.unwrap(),
            nan.as_u64().map_or(String::new(), |n| n.to_string())
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r["name"].as_str().unwrap().contains(',')),
        "the golden names include a comma, so quoting is exercised"
    );

    let selected = export(&[
        files.to_str().unwrap(),
        "--filter",
        "blk0/*",
        "--format",
        "csv",
    ]);
    let names: Vec<String> = csv::Reader::from_reader(&selected[..])
        .records()
        .map(|r| r.unwrap()[1].to_owned())
        .collect();
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("blk0/")));
}

#[test]
fn a_cut_short_last_line_is_left_out_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("packed");
    tensor_trace()
        .env("TENSOR_TRACE_LAYOUT", "packed")
        .arg("record")
        .arg("--out")
        .arg(&run)
        .arg("--")
        .arg(super::support::toy_engine())
        .assert()
        .success();
    let log = run.join("records.jsonl");
    let whole = fs::read(&log).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"{"name":"blk0/attn_norm","sha"#);
    fs::write(&log, &torn).unwrap();

    tensor_trace()
        .arg("export")
        .arg(&run)
        .assert()
        .success()
        .stdout(predicate::eq(whole.clone()))
        .stderr(predicate::str::contains("records.jsonl").and(predicate::str::contains("line 13")));
    tensor_trace()
        .arg("export")
        .arg(&run)
        .arg("--strict")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("records.jsonl"));

    // One layer and one step of a per-file run.
    let files = tmp.path().join("files");
    record(&files, &[]);
    let text = String::from_utf8(export(&[
        files.to_str().unwrap(),
        "--layer",
        "1",
        "--step",
        "0",
    ]))
    .unwrap();
    let layers: Vec<(i64, u64)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["layer"].as_i64().unwrap(), v["seq"].as_u64().unwrap())
        })
        .collect();
    assert!(!layers.is_empty() && layers.iter().all(|&l| l == (1, 0)));
}
