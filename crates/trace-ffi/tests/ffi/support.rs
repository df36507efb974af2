//! Building the C and C++ test programs, test vectors, and comparing trace directories.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use half::{bf16, f16};
use serde_json::Value;
use trace_core::{Context, DType, Data, Layout, TensorView, Tracer};

/// `crates/trace-ffi`.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The static library cargo built for this test run.
///
/// It sits beside the test binary, in `target/<profile>/deps`: cargo copies ("uplifts") it to
/// `target/<profile>` only for `cargo build`, so the copy there may be stale during a test run.
pub fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let deps = exe
        .parent()
        .expect("the test binary sits in target/<profile>/deps");
    let lib = deps.join("libtrace_ffi.a");
    assert!(
        lib.exists(),
        "{} is missing: cargo builds it with the tests (crate-type staticlib)",
        lib.display()
    );
    lib
}

/// Native libraries a Rust staticlib needs on Linux (`cargo rustc -- --print native-static-libs`).
pub const NATIVE_LIBS: &[&str] = &[
    "-lpthread",
    "-ldl",
    "-lm",
    "-lrt",
    "-lutil",
    "-lgcc_s",
    "-lc",
];

/// Compiles `tests/c/{source}` against the static library into `dir`, warnings as errors.
pub fn compile(source: &str, dir: &Path) -> PathBuf {
    let src = crate_dir().join("tests/c").join(source);
    let cpp = source.ends_with(".cpp");
    let compiler = if cpp {
        std::env::var("CXX").unwrap_or_else(|_| "c++".into())
    } else {
        std::env::var("CC").unwrap_or_else(|_| "cc".into())
    };
    let exe = dir.join(source.split('.').next().expect("a file name"));
    let std_flag = if cpp { "-std=c++17" } else { "-std=c11" };
    let out = Command::new(&compiler)
        .args([std_flag, "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg(staticlib())
        .args(NATIVE_LIBS)
        .output()
        .unwrap_or_else(|e| panic!("running {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs `exe args` with a clean tensor-trace environment plus `env`; asserts it succeeded.
pub fn run(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_raw(exe, args, env);
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        exe.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs with a clean tensor-trace environment plus `env`, without checking the exit status.
pub fn run_raw<A: AsRef<OsStr>, V: AsRef<OsStr>>(
    exe: &Path,
    args: &[A],
    env: &[(&str, V)],
) -> Output {
    let mut cmd = Command::new(exe);
    for (key, _) in std::env::vars() {
        if key.starts_with("TENSOR_TRACE_") || key == "BITNET_TRACE_DIR" {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running a test program")
}

/// The manifest entries of a trace directory, in order.
pub fn manifest(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One tensor to record: the shape of an entry of `testdata/golden/inputs.json`.
#[derive(Debug, Clone)]
pub struct Vector {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Raw little-endian bytes of the source dtype, row-major.
    pub data: Vec<u8>,
    /// Whether raw values are saved (`TENSOR_TRACE_VALUES`).
    pub values: bool,
    pub seq: Option<u64>,
    pub layer: Option<i64>,
    pub stage: Option<String>,
}

impl Vector {
    fn new(name: &str, dtype: DType, shape: &[usize], seed: u64) -> Self {
        let n: usize = shape.iter().product();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut data = Vec::with_capacity(n * dtype.size_in_bytes());
        for i in 0..n {
            let r = next();
            let x = (r >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0;
            match dtype {
                DType::F32 => data.extend((x as f32).to_le_bytes()),
                DType::F64 => data.extend((x * 1e3).to_le_bytes()),
                DType::F16 => data.extend(f16::from_f64(x).to_bits().to_le_bytes()),
                DType::BF16 => data.extend(bf16::from_f64(x).to_bits().to_le_bytes()),
                // Some values above 2^24, which lose low bits in canonical F32.
                DType::I64 => data.extend(((r as i64) >> (20 + i % 30)).to_le_bytes()),
                DType::I32 => data.extend(((r as i32) >> (i % 16)).to_le_bytes()),
                DType::U32 => data.extend(((r >> 32) as u32).to_le_bytes()),
                DType::U8 => data.push(r as u8),
                other => panic!("no generator for {other}"),
            }
        }
        Self {
            name: name.to_owned(),
            dtype,
            shape: shape.to_vec(),
            data,
            values: false,
            seq: None,
            layer: None,
            stage: None,
        }
    }

    fn ctx(mut self, seq: Option<u64>, layer: Option<i64>, stage: Option<&str>) -> Self {
        (self.seq, self.layer, self.stage) = (seq, layer, stage.map(str::to_owned));
        self
    }

    fn with_values(mut self) -> Self {
        self.values = true;
        self
    }

    /// Overwrites element `i` of a float vector with raw bits (NaN, Inf).
    fn poke(mut self, i: usize, bytes: &[u8]) -> Self {
        let size = self.dtype.size_in_bytes();
        self.data[i * size..(i + 1) * size].copy_from_slice(bytes);
        self
    }
}

/// Our own vectors: every dtype, 0-d, empty, 1- to 4-d, repeats, colliding and odd names,
/// NaN/Inf, long rows (fed as slices) and a tensor larger than the gather buffer.
pub fn own_vectors() -> Vec<Vector> {
    use DType::*;
    vec![
        Vector::new("embed", F32, &[2, 5], 1)
            .ctx(Some(0), Some(-1), Some("embed"))
            .with_values(),
        Vector::new("blk0/attn_norm", BF16, &[3, 4], 2).ctx(Some(0), Some(0), Some("attn_norm")),
        Vector::new("blk0/q", F16, &[2, 3, 4], 3)
            .ctx(Some(0), Some(0), Some("q_proj"))
            .poke(5, &0x7E00u16.to_le_bytes())
            .poke(7, &0xFC00u16.to_le_bytes()),
        Vector::new("blk0/k", F64, &[4, 3, 2, 2], 4).ctx(None, Some(0), None),
        Vector::new("blk0/attn_norm", BF16, &[3, 4], 5).ctx(Some(1), Some(0), Some("attn_norm")),
        Vector::new("tokens", I64, &[1, 6], 6).ctx(Some(0), None, None),
        Vector::new("positions", I32, &[6], 7),
        Vector::new("mask", U8, &[3, 3], 8).with_values(),
        Vector::new("ids", U32, &[2, 2], 9),
        Vector::new("a/b", F32, &[2], 10),
        Vector::new("a_b", F32, &[2], 11),
        Vector::new("scalar", F32, &[], 12).with_values(),
        Vector::new("empty", F32, &[0, 3], 13).with_values(),
        Vector::new("", F64, &[1], 14),
        Vector::new(".hidden", I32, &[1, 1, 1], 15),
        Vector::new("logits", F32, &[2, 600], 16)
            .ctx(Some(0), Some(-1), Some("logits"))
            .with_values(),
        Vector::new("big", F16, &[200, 200], 17),
    ]
}

/// Decodes lowercase or uppercase hex.
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String");
    }
    s
}

/// Parses `testdata/golden/inputs.json` (format 1).
pub fn golden_vectors(path: &Path) -> Vec<Vector> {
    let text = std::fs::read_to_string(path).expect("reading inputs.json");
    let doc: Value = serde_json::from_str(&text).expect("inputs.json is JSON");
    assert_eq!(doc["format"], 1, "{}: unknown format", path.display());
    let tensors = doc["tensors"].as_array().expect("a `tensors` array");
    tensors
        .iter()
        .map(|t| Vector {
            name: t["name"].as_str().expect("name").to_owned(),
            dtype: t["dtype"]
                .as_str()
                .expect("dtype")
                .parse()
                .expect("a dtype"),
            shape: t["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("a dimension") as usize)
                .collect(),
            data: unhex(t["data"].as_str().expect("data")),
            values: t["values"].as_bool().unwrap_or(false),
            seq: t["seq"].as_u64(),
            layer: t["layer"].as_i64(),
            stage: t["stage"].as_str().map(str::to_owned),
        })
        .collect()
}

/// The `TENSOR_TRACE_VALUES` and `TENSOR_TRACE_VALUES_AT` settings of the golden run, named at
/// the top of `testdata/golden/inputs.json` (absent or empty: not set).
pub fn golden_settings(path: &Path) -> (Option<String>, Option<String>) {
    let text = std::fs::read_to_string(path).expect("reading inputs.json");
    let doc: Value = serde_json::from_str(&text).expect("inputs.json is JSON");
    let setting = |key: &str| {
        doc[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (setting("values"), setting("values_at"))
}

/// The `TENSOR_TRACE_VALUES` glob list selecting exactly the names with `values`, if any.
pub fn values_filter(vectors: &[Vector]) -> Option<String> {
    let mut with = BTreeSet::new();
    for v in vectors.iter().filter(|v| v.values) {
        with.insert(v.name.as_str());
    }
    for v in vectors.iter().filter(|v| !v.values) {
        assert!(
            !with.contains(v.name.as_str()),
            "{:?} both with and without values: not expressible as TENSOR_TRACE_VALUES",
            v.name
        );
    }
    let globs: Vec<String> = with
        .into_iter()
        .map(|name| {
            assert!(
                !name.contains(',') && name.trim() == name && !name.is_empty(),
                "{name:?} cannot be a TENSOR_TRACE_VALUES glob"
            );
            name.chars().fold(String::new(), |mut s, c| {
                if "*?[]{}!\\".contains(c) {
                    s.push('\\');
                }
                s.push(c);
                s
            })
        })
        .collect();
    (!globs.is_empty()).then(|| globs.join(","))
}

/// The input file of `api vectors` (format documented in tests/c/api.c).
pub fn c_input(vectors: &[Vector]) -> String {
    let code = |d: DType| {
        trace_core::DType::ALL
            .iter()
            .position(|x| *x == d)
            .expect("a known dtype")
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "u".into());
    let mut out = String::new();
    for v in vectors {
        write!(
            out,
            "x{} {} {}",
            hex(v.name.as_bytes()),
            code(v.dtype),
            v.shape.len()
        )
        .unwrap();
        for d in &v.shape {
            write!(out, " {d}").unwrap();
        }
        let stage = v
            .stage
            .as_ref()
            .map_or_else(|| "-".to_owned(), |s| format!("x{}", hex(s.as_bytes())));
        writeln!(
            out,
            " {} {} {stage} x{}",
            opt(v.seq.map(|s| s.to_string())),
            opt(v.layer.map(|l| l.to_string())),
            hex(&v.data)
        )
        .unwrap();
    }
    out
}

/// Calls `f` with the vector's elements as a `Data` of its dtype.
fn with_data<R>(v: &Vector, f: impl FnOnce(Data<'_>) -> R) -> R {
    macro_rules! typed {
        ($t:ty, $n:literal, $from:expr) => {{
            let values: Vec<$t> = v
                .data
                .chunks_exact($n)
                .map(|c| $from(c.try_into().expect("chunk size")))
                .collect();
            f(Data::from(&values))
        }};
    }
    match v.dtype {
        DType::F32 => typed!(f32, 4, f32::from_le_bytes),
        DType::F64 => typed!(f64, 8, f64::from_le_bytes),
        DType::F16 => typed!(f16, 2, |b| f16::from_bits(u16::from_le_bytes(b))),
        DType::BF16 => typed!(bf16, 2, |b| bf16::from_bits(u16::from_le_bytes(b))),
        DType::I64 => typed!(i64, 8, i64::from_le_bytes),
        DType::I32 => typed!(i32, 4, i32::from_le_bytes),
        DType::U32 => typed!(u32, 4, u32::from_le_bytes),
        DType::U8 => typed!(u8, 1, u8::from_le_bytes),
        other => panic!("no conversion for {other}"),
    }
}

/// Writes the vectors with trace-core itself: the directory a C run must reproduce.
pub fn record_with_trace_core(vectors: &[Vector], dir: &Path) {
    let mut builder = Tracer::builder().dir(dir).layout(Layout::Files);
    if let Some(values) = values_filter(vectors) {
        builder = builder.values(&values);
    }
    let tracer = builder.build().expect("a directory tracer");
    for v in vectors {
        let ctx = Context {
            seq: v.seq,
            layer: v.layer,
            stage: v.stage.as_deref(),
        };
        with_data(v, |data| {
            let view = TensorView::new(&v.shape, data).expect("data matches the shape");
            tracer.record(&v.name, &ctx, view).expect("recording");
        });
    }
    tracer.flush().expect("flushing");
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .collect()
}

/// Equal JSON, except floats that are not integers: within 1e-12 relative.
fn json_close(a: &Value, b: &Value, at: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            let tolerance = 1e-12 * x.abs().max(y.abs());
            if x == y || (x - y).abs() <= tolerance {
                Ok(())
            } else {
                Err(format!("{at}: {x} != {y}"))
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<_> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => json_close(u, v, &format!("{at}.{k}"))?,
                    (u, v) => return Err(format!("{at}.{k}: {u:?} != {v:?}")),
                }
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (u, v))| json_close(u, v, &format!("{at}[{i}]"))),
        _ if a == b => Ok(()),
        _ => Err(format!("{at}: {a} != {b}")),
    }
}

/// Asserts that `actual` holds the same run as `expected`: the same file names, manifest lines,
/// records (floats within 1e-12 relative) and `.npy` bytes.
pub fn assert_same_run(expected: &Path, actual: &Path) {
    let names = file_names(expected);
    assert_eq!(
        names,
        file_names(actual),
        "file names differ between {} and {}",
        expected.display(),
        actual.display()
    );
    for name in &names {
        let (e, a) = (expected.join(name), actual.join(name));
        let (eb, ab) = (std::fs::read(&e).unwrap(), std::fs::read(&a).unwrap());
        if name.ends_with(".npy") {
            assert!(eb == ab, "{name}: raw values differ");
            continue;
        }
        let parse_lines = |bytes: &[u8]| -> Vec<Value> {
            std::str::from_utf8(bytes)
                .expect("UTF-8")
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("JSON"))
                .collect()
        };
        let (ev, av) = if name == "manifest.jsonl" {
            (
                Value::Array(parse_lines(&eb)),
                Value::Array(parse_lines(&ab)),
            )
        } else {
            let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).expect("a JSON record");
            (parse(&eb), parse(&ab))
        };
        if let Err(diff) = json_close(&ev, &av, name) {
            panic!("{} vs {}: {diff}", e.display(), a.display());
        }
    }
}

#[test]
fn json_close_tolerates_only_float_noise() {
    let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert!(json_close(
        &v(r#"{"a":[1.0,2]}"#),
        &v(r#"{"a":[1.0000000000000002,2]}"#),
        ""
    )
    .is_ok());
    assert!(json_close(&v(r#"{"a":1.0}"#), &v(r#"{"a":1.001}"#), "").is_err());
    assert!(json_close(&v(r#"{"a":1}"#), &v(r#"{"a":2}"#), "").is_err());
    assert!(json_close(&v(r#"{"a":1}"#), &v(r#"{"a":1,"b":null}"#), "").is_err());
}

#[test]
fn values_filter_escapes_globs() {
    let mut a = Vector::new("blk[0]/*", DType::U8, &[1], 1).with_values();
    let b = Vector::new("x", DType::U8, &[1], 1);
    assert_eq!(
        values_filter(&[a.clone(), b.clone()]).as_deref(),
        Some(r"blk\[0\]/\*")
    );
    let filter = trace_core::config::NameFilter::parse(r"blk\[0\]/\*", "v").unwrap();
    assert!(filter.matches("blk[0]/*") && !filter.matches("blk0/q"));
    a.values = false;
    assert_eq!(values_filter(&[a, b]), None);
}
