//! `tensor-trace gguf`: GGUF files of every type candle-core quantizes, dequantized by the
//! binary and judged tensor for tensor by gguf-py (`gguf.quants.dequantize`, llama.cpp's own
//! Python); bad input exits 2 naming the file, the byte offset and the tensor.
//!
//! The judge runs in the project venv: `cargo xtask ci` installs gguf-py there and hands its
//! python over in `TRACE_CLI_GGUF_PYTHON` (the test then fails rather than skip); elsewhere the
//! test uses `target/python-venv` if gguf imports there, and records a skip otherwise.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde_json::Value as Json;
use trace_cli::gguf::read_header;

use super::support::tensor_trace;

/// Every type candle-core dequantizes, and its ggml name.
const TYPES: [(GgmlDType, &str); 13] = [
    (GgmlDType::F32, "F32"),
    (GgmlDType::F16, "F16"),
    (GgmlDType::BF16, "BF16"),
    (GgmlDType::Q4_0, "Q4_0"),
    (GgmlDType::Q4_1, "Q4_1"),
    (GgmlDType::Q5_0, "Q5_0"),
    (GgmlDType::Q5_1, "Q5_1"),
    (GgmlDType::Q8_0, "Q8_0"),
    (GgmlDType::Q2K, "Q2_K"),
    (GgmlDType::Q3K, "Q3_K"),
    (GgmlDType::Q4K, "Q4_K"),
    (GgmlDType::Q5K, "Q5_K"),
    (GgmlDType::Q6K, "Q6_K"),
];

/// Writes a GGUF (candle-core's writer) with one [3, 512] tensor per type, named `t.TYPE`,
/// and metadata of several value types, including a 20-string array.
fn write_model(path: &Path) {
    let values: Vec<f32> = (0..3 * 512)
        .map(|i| (i as f32 * 0.37).sin() * (1.0 + i as f32 / 200.0))
        .collect();
    let x = Tensor::from_vec(values, (3, 512), &Device::Cpu).unwrap();
    let tensors: Vec<(String, QTensor)> = TYPES
        .iter()
        .map(|&(dtype, name)| (format!("t.{name}"), QTensor::quantize(&x, dtype).unwrap()))
        .collect();
    let tokens = (0..20)
        .map(|i| gguf_file::Value::String(format!("tok{i}")))
        .collect();
    let metadata = [
        (
            "general.architecture",
            gguf_file::Value::String("llama".into()),
        ),
        ("general.file_type", gguf_file::Value::U32(3)),
        ("test.u8", gguf_file::Value::U8(7)),
        ("test.i64", gguf_file::Value::I64(-5)),
        ("test.f32", gguf_file::Value::F32(0.25)),
        ("test.bool", gguf_file::Value::Bool(true)),
        ("test.tokens", gguf_file::Value::Array(tokens)),
    ];
    let metadata: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata, &tensors).unwrap();
}

/// The venv python with gguf-py, or `None` (with the skip recorded) outside `cargo xtask ci`.
fn judge_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("TRACE_CLI_GGUF_PYTHON") {
        return Some(python.into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("target/python-venv/bin/python");
    let has_gguf = Command::new(&python)
        .args(["-c", "import gguf"])
        .output()
        .is_ok_and(|out| out.status.success());
    if has_gguf {
        return Some(python);
    }
    record_skip(
        "trace-cli gguf: skipped the gguf-py comparison: no target/python-venv with gguf \
         (cargo xtask ci installs it and never skips)",
        &root,
    );
    None
}

/// Records a skip where `cargo xtask ci` prints them (`target/test-skips.txt`), and on stderr.
fn record_skip(reason: &str, root: &Path) {
    eprintln!("{reason}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target.join("test-skips.txt"))
    {
        let _ = writeln!(f, "{reason}");
    }
}

fn judge(python: &Path, args: &[&Path]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/gguf_judge.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gguf_judge.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn dequantize(input: &Path, output: &Path) {
    tensor_trace()
        .args(["gguf", "dequantize"])
        .arg(input)
        .arg(output)
        .assert()
        .code(0);
}

/// Dequantizes `input` with the binary and checks gguf-py's verdict: every tensor F32, in
/// order, bit for bit what gguf-py dequantizes, at the alignment; the metadata unchanged but for
/// `general.file_type`, now 0. Returns the report.
fn dequantize_and_judge(python: &Path, input: &Path) -> Json {
    let output = input.with_extension("f32.gguf");
    dequantize(input, &output);
    let out = judge(python, &[Path::new("compare"), input, &output]);
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    for t in report["tensors"].as_array().unwrap() {
        assert_eq!(t["out_name"], t["name"], "{t}");
        assert_eq!(t["out_type"], "F32", "{t}");
        assert_eq!(t["out_shape"], t["in_shape"], "{t}");
        assert_eq!(t["bit_exact"], true, "{t}");
        assert_eq!(t["aligned"], true, "{t}");
    }
    let mut want = report["in_metadata"].as_array().unwrap().clone();
    match want.iter_mut().find(|kv| kv[0] == "general.file_type") {
        Some(kv) => kv[2] = 0.into(),
        None => want.push(serde_json::json!(["general.file_type", [4], 0])),
    }
    assert_eq!(report["out_metadata"].as_array().unwrap(), &want);
    report
}

#[test]
fn dequantize_matches_gguf_py_for_every_type() {
    let Some(python) = judge_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("all-types.gguf");
    write_model(&input);
    let report = dequantize_and_judge(&python, &input);
    let types: Vec<&str> = report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["in_type"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = TYPES.iter().map(|(_, name)| *name).collect();
    assert_eq!(types, expected);
    assert_eq!(report["tensors"][0]["elements"], 3 * 512);
}

#[test]
fn dequantize_keeps_gguf_py_files_alignment() {
    let Some(python) = judge_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("aligned-64.gguf");
    judge(&python, &[Path::new("make"), &input]);
    let report = dequantize_and_judge(&python, &input);
    assert_eq!(report["out_alignment"], 64);
    assert_eq!(report["tensors"].as_array().unwrap().len(), 3);
}

#[test]
fn info_lists_tensors_and_abbreviates_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("m.gguf");
    write_model(&input);
    let out = tensor_trace()
        .args(["gguf", "info"])
        .arg(&input)
        .assert()
        .code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("GGUF v2, 7 metadata keys, 13 tensors, alignment 32"),
        "{text}"
    );
    assert!(
        text.contains("test.tokens = [string; 20] [\"tok0\""),
        "{text}"
    );
    assert!(text.contains("\"tok7\", ...]"), "{text}");
    assert!(!text.contains("tok8"), "{text}");
    assert!(text.contains("t.Q4_K  Q4_K"), "{text}");

    let out = tensor_trace()
        .args(["gguf", "info", "--json"])
        .arg(&input)
        .assert()
        .code(0);
    let json: Json = serde_json::from_slice(&out.get_output().stdout).unwrap();
    for args in [
        &["gguf", "--help"][..],
        &["gguf", "info", "--help"],
        &["gguf", "dequantize", "--help"],
    ] {
        let help = tensor_trace().args(args).assert().code(0);
        assert!(String::from_utf8_lossy(&help.get_output().stdout).contains("Example"));
    }
    assert_eq!(json["tensors"].as_array().unwrap().len(), 13);
    assert_eq!(json["tensors"][5]["name"], "t.Q5_0");
    assert_eq!(json["tensors"][5]["type"], "Q5_0");
    assert_eq!(json["tensors"][5]["shape"], serde_json::json!([512, 3]));
    assert_eq!(json["metadata"]["general.file_type"], 3);
    assert_eq!(json["metadata"]["test.tokens"]["len"], 20);
    assert_eq!(
        json["metadata"]["test.tokens"]["head"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
}

/// Runs `gguf dequantize` on bad input: exit 2, a message with each of `needles`, no output
/// file and no temporary file left behind, the input unchanged.
fn rejects(input_bytes: &[u8], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bad.gguf");
    fs::write(&input, input_bytes).unwrap();
    let output = tmp.path().join("out.gguf");
    let assert = tensor_trace()
        .args(["gguf", "dequantize"])
        .arg(&input)
        .arg(&output)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains(&input.display().to_string()), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the input remains");
    assert_eq!(fs::read(&input).unwrap(), input_bytes);
}

fn model_bytes() -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.gguf");
    write_model(&path);
    fs::read(path).unwrap()
}

#[test]
fn bad_input_exits_2_naming_file_offset_and_tensor() {
    rejects(b"hello, not a model", &["byte 0", "not a GGUF file"]);
    let good = model_bytes();
    rejects(
        &good[..40],
        &["byte 32", "truncated: a metadata key needs 20 bytes"],
    );

    // The last tensor's data cut short.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.gguf");
    fs::write(&path, &good).unwrap();
    let header = read_header(&path).unwrap();
    let last = header.tensors.last().unwrap();
    let at = header.data_offset + last.offset;
    rejects(
        &good[..good.len() - 100],
        &[
            &format!("byte {at}, tensor \"t.Q6_K\""),
            "runs past the end of the file",
        ],
    );

    // An unknown tensor type: the type field follows the name and the dimensions.
    let t = &header.tensors[3];
    let type_at = t.entry_offset as usize + 8 + t.name.len() + 4 + 8 * t.dims.len();
    let mut bad = good.clone();
    bad[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    rejects(
        &bad,
        &[
            &format!("byte {}, tensor \"t.Q4_0\"", t.entry_offset),
            "tensor type 99 (type 99) cannot be dequantized",
        ],
    );
}

#[test]
fn dequantize_never_overwrites_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("m.gguf");
    write_model(&input);
    let before = fs::read(&input).unwrap();
    let same = tmp.path().join(".").join("m.gguf");
    let assert = tensor_trace()
        .args(["gguf", "dequantize"])
        .arg(&input)
        .arg(&same)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("the output is the input file"), "{stderr}");
    assert_eq!(fs::read(&input).unwrap(), before);
}
