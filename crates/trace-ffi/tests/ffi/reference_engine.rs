//! The C++ reference engine (`examples/reference-engine.cpp`): it builds without a warning, traces
//! every point of every pass with the crossval's names, shapes and context, and reports broken
//! model files clearly. In each precision mode (`--precision f64|f32|bf16`) its trace directory
//! is byte-identical to the Rust reference engine's in the same mode (`reference_engine::
//! Precision`); the tests of `crates/crossval/src/model/synthetic/tests.rs` check the default
//! (f64) mode on the crossval's models too.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::support::{crate_dir, manifest, run_raw, staticlib, NATIVE_LIBS};

// The tiny model: vocabulary 256 (byte tokens), hidden 8, 2 query heads over 1 key/value head
// of size 4, MLP 16.
const V: usize = 256;
const E: usize = 8;
const H: usize = 2;
const KV: usize = 1;
const D: usize = E / H;
const F: usize = 16;

/// The engine compiled against the static library of this test run, warnings as errors; once
/// per test binary, next to the library.
fn engine() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let test_exe = std::env::current_exe().unwrap();
        let deps = test_exe.parent().unwrap();
        let exe = deps.join("reference-engine-cpp-test");
        // A private name, then a rename: a concurrent test run never executes a partial file.
        let tmp = deps.join(format!("reference-engine-cpp-test.{}", std::process::id()));
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let out = Command::new(&cxx)
            .args(["-std=c++17", "-O1", "-ffp-contract=off"])
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
            .arg(crate_dir().join("include"))
            .arg(crate_dir().join("examples/reference-engine.cpp"))
            .arg("-o")
            .arg(&tmp)
            .arg(staticlib())
            .args(NATIVE_LIBS)
            .output()
            .unwrap_or_else(|e| panic!("running {cxx}: {e}"));
        assert!(
            out.status.success(),
            "{cxx} reference-engine.cpp failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &exe).unwrap();
        exe
    })
}

/// A model directory's contents: config.json and the tensors of model.safetensors.
struct Model {
    config: Value,
    /// Name, dtype, shape, raw little-endian bytes.
    tensors: Vec<(String, &'static str, Vec<usize>, Vec<u8>)>,
}

impl Model {
    /// Seeded uniform weights in [-0.5, 0.5), norm weights near one.
    fn tiny(layers: usize) -> Self {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut tensor = |name: String, shape: Vec<usize>, center: f32| {
            let n: usize = shape.iter().product();
            let bytes = (0..n)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let u = (state >> 40) as f32 / (1u32 << 24) as f32 - 0.5;
                    (center + u).to_le_bytes()
                })
                .collect();
            (name, "F32", shape, bytes)
        };
        let mut tensors = vec![tensor("model.embed_tokens.weight".into(), vec![V, E], 0.0)];
        for i in 0..layers {
            let p = format!("model.layers.{i}");
            tensors.extend([
                tensor(format!("{p}.input_layernorm.weight"), vec![E], 1.0),
                tensor(format!("{p}.self_attn.q_proj.weight"), vec![E, E], 0.0),
                tensor(format!("{p}.self_attn.k_proj.weight"), vec![KV * D, E], 0.0),
                tensor(format!("{p}.self_attn.v_proj.weight"), vec![KV * D, E], 0.0),
                tensor(format!("{p}.self_attn.o_proj.weight"), vec![E, E], 0.0),
                tensor(format!("{p}.post_attention_layernorm.weight"), vec![E], 1.0),
                tensor(format!("{p}.mlp.gate_proj.weight"), vec![F, E], 0.0),
                tensor(format!("{p}.mlp.up_proj.weight"), vec![F, E], 0.0),
                tensor(format!("{p}.mlp.down_proj.weight"), vec![E, F], 0.0),
            ]);
        }
        tensors.push(tensor("model.norm.weight".into(), vec![E], 1.0));
        tensors.push(tensor("lm_head.weight".into(), vec![V, E], 0.0));
        let config = json!({
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": V, "hidden_size": E, "intermediate_size": F,
            "num_hidden_layers": layers, "num_attention_heads": H, "num_key_value_heads": KV,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "torch_dtype": "float32",
        });
        Model { config, tensors }
    }

    fn safetensors(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in &self.tensors {
            let begin = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.clone(),
                json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
            );
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header);
        out.extend(data);
        out
    }

    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), self.config.to_string()).unwrap();
        std::fs::write(dir.join("model.safetensors"), self.safetensors()).unwrap();
    }
}

/// Runs the engine with a clean tensor-trace environment plus `env`.
fn run(exe: &Path, args: &[&Path], steps: &str, env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut all: Vec<&OsStr> = args.iter().map(|p| p.as_os_str()).collect();
    all.push(OsStr::new(steps));
    let out = run_raw(exe, &all, env);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The f32 values of a `.npy` file (NPY 1.0, `<f4`, as trace-core writes them).
fn npy(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn cpp_reference_engine_traces_every_point() {
    let work = tempfile::tempdir().unwrap();
    let exe = engine();
    let (model, trace) = (work.path().join("model"), work.path().join("trace"));
    Model::tiny(2).write(&model);
    let prompt = work.path().join("prompt.txt");
    std::fs::write(&prompt, "abc").unwrap();
    let (ok, stdout, stderr) = run(
        exe,
        &[&model, &prompt],
        "2",
        &[
            ("TENSOR_TRACE_DIR", &trace),
            ("TENSOR_TRACE_LAYOUT", Path::new("files")),
            ("TENSOR_TRACE_VALUES", Path::new("1")),
        ],
    );
    assert!(ok, "{stderr}");
    let tokens: Vec<u32> = stdout
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(tokens.len(), 3, "{stdout}");

    // The records, in capture order, with their context and shape: the crossval's table.
    let manifest = manifest(&trace);
    let mut expected = Vec::new();
    for seq in 0..3usize {
        let (t, l) = if seq == 0 { (3, 3) } else { (1, 3 + seq) };
        let top = |name: &str, shape: Vec<usize>| (seq, name.to_owned(), -1i64, shape);
        expected.push(top("tokens", vec![t]));
        expected.push(top("embed", vec![t, E]));
        for i in 0..2i64 {
            let points: [(&str, Vec<usize>); 16] = [
                ("attn_norm", vec![t, E]),
                ("q", vec![t, H * D]),
                ("k", vec![t, KV * D]),
                ("v", vec![t, KV * D]),
                ("q_rope", vec![H, t, D]),
                ("k_rope", vec![KV, t, D]),
                ("attn_probs", vec![H, t, l]),
                ("attn_ctx", vec![t, H * D]),
                ("attn_out", vec![t, E]),
                ("ffn_inp", vec![t, E]),
                ("ffn_norm", vec![t, E]),
                ("ffn_gate", vec![t, F]),
                ("ffn_up", vec![t, F]),
                ("ffn_act", vec![t, F]),
                ("ffn_out", vec![t, E]),
                ("l_out", vec![t, E]),
            ];
            for (point, shape) in points {
                expected.push((seq, format!("blk{i}/{point}"), i, shape));
            }
        }
        expected.push(top("out_norm", vec![t, E]));
        expected.push(top("logits", vec![V]));
        expected.push(top("next_token", vec![1]));
    }
    assert_eq!(manifest.len(), expected.len());
    for (line, (seq, name, layer, shape)) in manifest.iter().zip(&expected) {
        assert_eq!(line["name"], name.as_str());
        let file = trace.join(line["file"].as_str().unwrap());
        let record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let stage = name.rsplit('/').next().unwrap();
        let dtype = if stage.contains("token") {
            "U32"
        } else {
            "F64"
        };
        assert_eq!(
            (&record["seq"], &record["layer"], &record["stage"]),
            (&json!(seq), &json!(layer), &json!(stage)),
            "{}",
            file.display()
        );
        assert_eq!(
            (&record["shape"], &record["dtype"]),
            (&json!(shape), &json!(dtype)),
            "{}",
            file.display()
        );
    }

    // Values: the prompt, then each sampled token fed back; the greedy token is the logits'
    // argmax; attention rows are causal probability distributions.
    let values = |name: &str, seq: usize| {
        let file = if seq == 0 {
            format!("{name}.npy")
        } else {
            format!("{name}.{seq}.npy")
        };
        npy(&trace.join(file))
    };
    assert_eq!(values("tokens", 0), [97.0, 98.0, 99.0]);
    for seq in 0..3 {
        let next = values("next_token", seq);
        assert_eq!(next, [tokens[seq] as f32]);
        if seq > 0 {
            assert_eq!(values("tokens", seq), [tokens[seq - 1] as f32]);
        }
        let logits = values("logits", seq);
        let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(logits[tokens[seq] as usize], best);
        let (t, l) = if seq == 0 { (3, 3) } else { (1, 3 + seq) };
        let probs = values("blk1_attn_probs", seq);
        for (r, row) in probs.chunks_exact(l).enumerate() {
            let visible = l - t + r % t + 1;
            let sum: f32 = row[..visible].iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-5,
                "row {r} of step {seq} sums to {sum}"
            );
            assert!(row[visible..].iter().all(|&p| p == 0.0), "row {r}: {row:?}");
        }
    }

    // Untraced, it generates the same tokens and writes nothing.
    let (ok, again, stderr) = run(exe, &[&model, &prompt], "2", &[]);
    assert!(ok, "{stderr}");
    assert_eq!(again, stdout);
}

/// Every file of a trace directory, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// In every precision, on the crossval's default model (tiny, 2 layers, seed 42), the C++
/// engine's trace directory equals the Rust reference's in the same precision byte for byte:
/// records, manifest and raw values. f32 and bf16 summation order is the Rust loops' order, so
/// exact equality holds there too.
#[test]
fn cpp_reference_engine_equals_the_rust_reference_in_every_precision() {
    use reference_engine::{encode_bytes, seeded, Model, Precision};
    let work = tempfile::tempdir().unwrap();
    let exe = engine();
    let model_dir = work.path().join("model");
    seeded::write(&model_dir, seeded::Size::Tiny, 2, 42).unwrap();
    let text = "The quick brown fox";
    let prompt = work.path().join("prompt.txt");
    std::fs::write(&prompt, text).unwrap();
    let mut runs = Vec::new();
    for precision in Precision::ALL {
        let name = precision.name();
        let (cpp, rust) = (
            work.path().join(format!("cpp-{name}")),
            work.path().join(format!("rust-{name}")),
        );
        let flag = format!("--precision={name}");
        let (ok, stdout, stderr) = run(
            exe,
            &[Path::new(&flag), &model_dir, &prompt],
            "3",
            &[
                ("TENSOR_TRACE_DIR", &cpp),
                ("TENSOR_TRACE_LAYOUT", Path::new("files")),
                ("TENSOR_TRACE_VALUES", Path::new("1")),
            ],
        );
        assert!(ok, "{name}: {stderr}");
        let tracer = trace_core::Tracer::builder()
            .dir(&rust)
            .layout(trace_core::Layout::Files)
            .values("*")
            .build()
            .unwrap();
        let model = Model::load_with(&model_dir, precision).unwrap();
        let tokens = model
            .generate(&encode_bytes(text), 3, Some(&tracer))
            .unwrap();
        tracer.flush().unwrap();
        let printed: Vec<u32> = stdout
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(printed, tokens, "{name}");
        let (cpp_files, rust_files) = (files(&cpp), files(&rust));
        let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&cpp_files), names(&rust_files), "{name}");
        // 4 passes of 37 records, each a record file and a .npy, plus the manifest.
        assert_eq!(cpp_files.len(), 4 * 37 * 2 + 1, "{name}");
        for ((file, a), (_, b)) in cpp_files.iter().zip(&rust_files) {
            assert!(a == b, "{name}: {file} differs between C++ and Rust");
        }
        let q: Value =
            serde_json::from_slice(&std::fs::read(cpp.join("blk0_q.trace")).unwrap()).unwrap();
        assert_eq!(q["dtype"], precision.dtype().to_string(), "{name}");
        runs.push(files(&cpp));
    }
    // The three modes compute different values: the hash of the same record differs.
    let hash = |run: &[(String, Vec<u8>)]| -> Value {
        let (_, bytes) = run.iter().find(|(n, _)| n == "blk1_l_out.trace").unwrap();
        serde_json::from_slice::<Value>(bytes).unwrap()["blake3"].clone()
    };
    assert_ne!(hash(&runs[0]), hash(&runs[1]));
    assert_ne!(hash(&runs[1]), hash(&runs[2]));
}

/// A change to a written model directory.
type Edit = dyn Fn(&mut Model, &Path);

#[test]
fn cpp_reference_engine_reports_bad_input() {
    let work = tempfile::tempdir().unwrap();
    let exe = engine();
    let prompt = work.path().join("prompt.txt");
    std::fs::write(&prompt, "hi").unwrap();
    let mut case = 0;
    // Writes a model changed by `edit` (or nothing, for `None`), runs the engine and checks it
    // fails with a message containing `expected`.
    let mut check = |edit: Option<&Edit>, steps: &str, expected: &str| {
        case += 1;
        let dir = work.path().join(format!("case{case}"));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(edit) = edit {
            let mut model = Model::tiny(1);
            model.write(&dir);
            edit(&mut model, &dir);
        }
        let (ok, _, stderr) = run(exe, &[&dir, &prompt], steps, &[]);
        assert!(!ok, "case {case} succeeded");
        assert!(
            stderr.contains(expected),
            "case {case}: expected {expected:?} in:\n{stderr}"
        );
    };
    let config = |edit: fn(&mut Value)| {
        move |m: &mut Model, dir: &Path| {
            edit(&mut m.config);
            std::fs::write(dir.join("config.json"), m.config.to_string()).unwrap();
        }
    };
    let weights = |edit: fn(&mut Model)| {
        move |m: &mut Model, dir: &Path| {
            edit(m);
            std::fs::write(dir.join("model.safetensors"), m.safetensors()).unwrap();
        }
    };
    let raw = |bytes: &'static [u8]| {
        move |_: &mut Model, dir: &Path| {
            std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
        }
    };

    check(None, "1", "config.json: No such file");
    check(Some(&|_, _| {}), "x", "STEPS x: expected an integer");
    check(Some(&|_, _| {}), "-1", "STEPS -1: expected an integer");
    check(
        Some(&|_, d| std::fs::write(d.join("config.json"), "{\"vocab_size\": 256,").unwrap()),
        "1",
        "config.json: invalid JSON at byte 19",
    );
    check(
        Some(&config(|c| {
            c.as_object_mut().unwrap().remove("rope_theta");
        })),
        "1",
        "config.json: rope_theta: missing",
    );
    check(
        Some(&config(|c| c["num_attention_heads"] = json!(3))),
        "1",
        "inconsistent sizes",
    );
    check(
        Some(&config(|c| c["hidden_size"] = json!(-8))),
        "1",
        "hidden_size: expected a non-negative integer",
    );
    check(
        Some(&|m: &mut Model, d: &Path| {
            m.config["vocab_size"] = json!(16);
            for t in m.tensors.iter_mut().filter(|t| t.2 == [V, E]) {
                (t.2, t.3) = (vec![16, E], t.3[..16 * E * 4].to_vec());
            }
            m.write(d);
        }),
        "1",
        "token 104 is outside the vocabulary of 16",
    );
    check(Some(&raw(b"abc")), "1", "3 bytes, too short");
    check(
        Some(&raw(b"\xe8\x03\0\0\0\0\0\0{}")),
        "1",
        "header of 1000 bytes, but the file has only 2",
    );
    check(
        Some(&raw(b"\x02\0\0\0\0\0\0\0[]")),
        "1",
        "the header is not a JSON object",
    );
    check(
        Some(&raw(b"\x05\0\0\0\0\0\0\0{\"a\":")),
        "1",
        "header: invalid JSON at byte 5: unexpected end of input",
    );
    check(
        Some(&weights(|m| {
            m.tensors.retain(|t| t.0 != "model.norm.weight");
        })),
        "1",
        "tensor model.norm.weight: not in the file",
    );
    check(
        Some(&weights(|m| m.tensors[1].1 = "F16")),
        "1",
        "tensor model.layers.0.input_layernorm.weight: expected F32 [8], found F16 [8]",
    );
    check(
        Some(&weights(|m| m.tensors[0].2 = vec![E, V])),
        "1",
        "tensor model.embed_tokens.weight: expected F32 [256, 8], found F32 [8, 256]",
    );
    check(
        Some(&weights(|m| {
            let last = m.tensors.len() - 1;
            m.tensors[last].3.truncate(12);
        })),
        "1",
        "tensor lm_head.weight: data_offsets",
    );
    // An unknown precision, a flag without its value, a wrong argument count: the usage line.
    Model::tiny(1).write(&work.path().join("good"));
    let good = work.path().join("good");
    let (ok, _, stderr) = run(
        exe,
        &[Path::new("--precision"), Path::new("f16"), &good, &prompt],
        "1",
        &[],
    );
    assert!(
        !ok && stderr.contains("--precision f16: expected f64, f32 or bf16"),
        "{stderr}"
    );
    let args = [
        good.as_os_str(),
        prompt.as_os_str(),
        OsStr::new("1"),
        OsStr::new("--precision"),
    ];
    let out = run_raw(exe, &args, &[] as &[(&str, &str)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--precision needs a value"),
        "{stderr}"
    );
    assert!(stderr.contains("usage:"), "{stderr}");
    let (ok, _, stderr) = run(exe, &[], "1", &[]);
    assert!(!ok && stderr.contains("usage:"), "{stderr}");
}
