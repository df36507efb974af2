//! The crossval's synthetic Llama as a GGUF file for llama.cpp: F32 tensors under llama.cpp's
//! names, the `llama` architecture's hyperparameters, and no tokenizer.
//!
//! Written with candle's GGUF writer (`candle_core::quantized::gguf_file`) from the Hugging Face
//! checkpoint the crossval writes (`config.json`, `model.safetensors`), doing what llama.cpp's
//! `convert_hf_to_gguf.py` does for a Llama in F32:
//!
//! * names: `model.layers.N.self_attn.q_proj.weight` becomes `blk.N.attn_q.weight`, and so on
//!   (the table in [`gguf_name`]);
//! * the rows of `q_proj` and `k_proj` are permuted within each head, row `h * D/2 + i` going to
//!   row `2 * i + h` (`h` in 0..2, `D` the head size): transformers rotates dimension `i` with
//!   `i + D/2` (`rotate_half`), llama.cpp's `LLM_ARCH_LLAMA` rotates adjacent pairs
//!   (`2i`, `2i + 1`). With the rows permuted both compute the same attention; llama.cpp's
//!   `Qcur`/`Kcur` are ours with the same permutation of their last axis, which the preset
//!   `llama-cpp` undoes before comparing (its `b_layout`);
//! * the vocabulary: `tokenizer.ggml.model = "none"` with `llama.vocab_size`, so llama.cpp
//!   accepts token ids `0..vocab` without a tokenizer (the crossval feeds byte ids).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// llama.cpp's name of one of our (Hugging Face) tensor names; `None` for a name that has none.
pub fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".to_owned()),
        "model.norm.weight" => return Some("output_norm.weight".to_owned()),
        "lm_head.weight" => return Some("output.weight".to_owned()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let short = match tail {
        "input_layernorm.weight" => "attn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "post_attention_layernorm.weight" => "ffn_norm",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.weight"))
}

/// The rows of a `[heads * head_dim, in]` projection in llama.cpp's RoPE order: within each
/// head, row `h * head_dim / 2 + i` moves to row `2 * i + h`.
pub fn permute_rope_rows(data: &[f32], heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; data.len()];
    for head in 0..heads {
        for h in 0..2 {
            for i in 0..half {
                let from = head * head_dim + h * half + i;
                let to = head * head_dim + 2 * i + h;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// Writes `model_dir`'s checkpoint as GGUF to `out`.
pub fn write(model_dir: &Path, out: &Path) -> Result<()> {
    let hyper = Hyper::read(model_dir)?;
    let tensors = read_tensors(model_dir, &hyper)?;
    write_atomic(out, &metadata(&hyper), &tensors)
}

/// The hyperparameters of the checkpoint's `config.json` that the GGUF needs.
struct Hyper {
    vocab: usize,
    hidden: usize,
    ffn: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f64,
    theta: f64,
    positions: usize,
}

impl Hyper {
    /// Reads `model_dir`'s `config.json`.
    fn read(model_dir: &Path) -> Result<Hyper> {
        let config_path = model_dir.join(reference_engine::CONFIG_FILE);
        let config: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?,
        )
        .with_context(|| format!("{}: not JSON", config_path.display()))?;
        let int = |key: &str| -> Result<usize> {
            config[key].as_u64().map(|v| v as usize).with_context(|| {
                format!(
                    "{}: `{key}`: expected a non-negative integer",
                    config_path.display()
                )
            })
        };
        let float = |key: &str| -> Result<f64> {
            config[key]
                .as_f64()
                .with_context(|| format!("{}: `{key}`: expected a number", config_path.display()))
        };
        let (hidden, heads) = (int("hidden_size")?, int("num_attention_heads")?);
        ensure!(
            heads > 0 && hidden % heads == 0 && (hidden / heads) % 2 == 0,
            "{}: hidden_size {hidden} over {heads} heads: expected an even head size",
            config_path.display()
        );
        Ok(Hyper {
            vocab: int("vocab_size")?,
            hidden,
            ffn: int("intermediate_size")?,
            layers: int("num_hidden_layers")?,
            heads,
            kv_heads: int("num_key_value_heads")?,
            head_dim: hidden / heads,
            eps: float("rms_norm_eps")?,
            theta: float("rope_theta")?,
            positions: int("max_position_embeddings").unwrap_or(4096),
        })
    }
}

/// The checkpoint's tensors under llama.cpp's names, Q and K rows in its RoPE order, sorted by
/// name.
fn read_tensors(model_dir: &Path, hyper: &Hyper) -> Result<Vec<(String, QTensor)>> {
    let weights_path = model_dir.join(reference_engine::WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path)
        .with_context(|| format!("cannot read {}", weights_path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", weights_path.display()))?;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, view) in st.tensors() {
        let Some(gguf) = gguf_name(&name) else {
            bail!(
                "{}: tensor {name:?} has no llama.cpp name",
                weights_path.display()
            );
        };
        if view.dtype() != safetensors::Dtype::F32 {
            bail!(
                "{}: tensor {name:?} is {:?}, expected F32",
                weights_path.display(),
                view.dtype()
            );
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let shape = view.shape().to_vec();
        let (heads, head_dim) = (hyper.heads, hyper.head_dim);
        let data = match gguf.rsplit('.').nth(1) {
            Some("attn_q") => permute_rope_rows(&data, heads, head_dim, shape[1]),
            Some("attn_k") => permute_rope_rows(&data, hyper.kv_heads, head_dim, shape[1]),
            _ => data,
        };
        let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
        tensors.push((gguf, QTensor::quantize(&t, GgmlDType::F32)?));
    }
    // llama.cpp does not care about the order; a stable one makes the file reproducible.
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// The GGUF metadata: the `llama` architecture's hyperparameters, F32, no tokenizer.
fn metadata(h: &Hyper) -> Vec<(&'static str, Value)> {
    let u32v = |v: usize| Value::U32(v as u32);
    vec![
        ("general.architecture", Value::String("llama".to_owned())),
        (
            "general.name",
            Value::String("tensor-trace synthetic".to_owned()),
        ),
        ("llama.vocab_size", u32v(h.vocab)),
        ("llama.context_length", u32v(h.positions)),
        ("llama.embedding_length", u32v(h.hidden)),
        ("llama.block_count", u32v(h.layers)),
        ("llama.feed_forward_length", u32v(h.ffn)),
        ("llama.attention.head_count", u32v(h.heads)),
        ("llama.attention.head_count_kv", u32v(h.kv_heads)),
        ("llama.rope.dimension_count", u32v(h.head_dim)),
        ("llama.rope.freq_base", Value::F32(h.theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(h.eps as f32),
        ),
        ("general.file_type", Value::U32(0)), // ALL_F32
        ("tokenizer.ggml.model", Value::String("none".to_owned())),
    ]
}

/// Writes the GGUF to a temporary file beside `out`, then renames it to `out`.
fn write_atomic(
    out: &Path,
    metadata: &[(&str, Value)],
    tensors: &[(String, QTensor)],
) -> Result<()> {
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = out.with_extension(format!("gguf.{}.tmp", std::process::id()));
    {
        let file = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        gguf_file::write(&mut w, &metadata_refs, &tensor_refs)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::io::Write::flush(&mut w).with_context(|| format!("write {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("rename {} to {}", tmp.display(), out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeded model written as GGUF reads back (candle's reader) with llama.cpp's keys,
    /// every tensor renamed, the Q/K rows permuted and every other tensor unchanged.
    #[test]
    fn the_seeded_model_round_trips_with_q_k_permuted() {
        let dir = tempfile::tempdir().unwrap();
        let layers = 2;
        reference_engine::seeded::write(
            dir.path(),
            reference_engine::seeded::Size::Tiny,
            layers,
            5,
        )
        .unwrap();
        let out = dir.path().join("model.gguf");
        write(dir.path(), &out).unwrap();

        let mut f = std::fs::File::open(&out).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        let meta = |k: &str| content.metadata.get(k).unwrap_or_else(|| panic!("{k}"));
        assert_eq!(meta("general.architecture").to_string().unwrap(), "llama");
        assert_eq!(meta("tokenizer.ggml.model").to_string().unwrap(), "none");
        assert_eq!(meta("llama.block_count").to_u32().unwrap(), layers as u32);
        assert_eq!(meta("llama.attention.head_count").to_u32().unwrap(), 4);
        assert_eq!(meta("llama.attention.head_count_kv").to_u32().unwrap(), 2);
        assert_eq!(meta("llama.vocab_size").to_u32().unwrap(), 256);
        assert_eq!(content.tensor_infos.len(), 3 + 9 * layers);

        let bytes = std::fs::read(dir.path().join(reference_engine::WEIGHTS_FILE)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let hf = |name: &str| -> Vec<f32> {
            st.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let mut gguf = |name: &str| -> Vec<f32> {
            content
                .tensor(&mut f, name, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(
            gguf("blk.1.attn_q.weight"),
            permute_rope_rows(&hf("model.layers.1.self_attn.q_proj.weight"), 4, 16, 64)
        );
        assert_eq!(
            gguf("blk.0.attn_k.weight"),
            permute_rope_rows(&hf("model.layers.0.self_attn.k_proj.weight"), 2, 16, 64)
        );
        assert_ne!(
            gguf("blk.0.attn_k.weight"),
            hf("model.layers.0.self_attn.k_proj.weight")
        );
        assert_eq!(
            gguf("blk.0.attn_v.weight"),
            hf("model.layers.0.self_attn.v_proj.weight")
        );
        assert_eq!(gguf("output.weight"), hf("lm_head.weight"));
    }

    #[test]
    fn a_directory_without_a_model_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!(
            "{:#}",
            write(dir.path(), &dir.path().join("m.gguf")).unwrap_err()
        );
        assert!(
            e.contains("cannot read") && e.contains("config.json"),
            "{e}"
        );
    }

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(
            gguf_name("model.embed_tokens.weight").unwrap(),
            "token_embd.weight"
        );
        assert_eq!(
            gguf_name("model.layers.12.self_attn.k_proj.weight").unwrap(),
            "blk.12.attn_k.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight").unwrap(),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
        assert_eq!(gguf_name("model.layers.x.mlp.down_proj.weight"), None);
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
    }

    #[test]
    fn rope_rows_interleave_the_two_halves_of_each_head() {
        // 2 heads of size 4, one column: rows 0..8 hold their own index.
        let rows: Vec<f32> = (0..8).map(|r| r as f32).collect();
        let p = permute_rope_rows(&rows, 2, 4, 1);
        // Within a head: [0, 1 | 2, 3] -> [0, 2, 1, 3] (row i of the first half, then its
        // rotation partner i + D/2).
        assert_eq!(p, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        // Columns move with their row.
        let wide: Vec<f32> = (0..8).flat_map(|r| [r as f32, -(r as f32)]).collect();
        let p = permute_rope_rows(&wide, 1, 8, 2);
        assert_eq!(&p[..6], &[0.0, -0.0, 4.0, -4.0, 1.0, -1.0]);
    }
}
