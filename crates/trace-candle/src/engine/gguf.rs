//! Loading a Llama-family GGUF (llama.cpp's format) into the engine: the configuration from the
//! metadata, the weights F32 or quantized.
//!
//! What candle's own `candle-transformers` quantized Llama does, and where this differs:
//!
//! * **Config** from `{arch}.block_count`, `{arch}.embedding_length`,
//!   `{arch}.feed_forward_length`, `{arch}.attention.head_count`,
//!   `{arch}.attention.head_count_kv` (default: the query heads),
//!   `{arch}.attention.layer_norm_rms_epsilon`, `{arch}.rope.freq_base` (default 10000) and
//!   `{arch}.context_length`, `arch` being `general.architecture` (`llama`). The vocabulary is
//!   `token_embd.weight`'s row count (checked against `{arch}.vocab_size` when present). A
//!   `{arch}.rope.dimension_count` other than the head size (partial rotary) is refused.
//! * **Weights**: the norms and the token embedding are dequantized to F32 (the embedding is a
//!   row lookup); every projection stays in the file's type and is multiplied by
//!   `QMatMul` ([`Linear`]); F32/F16/BF16 projections become dense F32. Without
//!   `output.weight` the embeddings are tied: the output projection is `token_embd.weight` in
//!   its stored type, as llama.cpp and candle do.
//! * **RoPE**: llama.cpp's converter (`convert_hf_to_gguf.py`, `LlamaModel.permute`) stores the
//!   rows of `attn_q` and `attn_k` permuted within each head (row `h * D/2 + i` of the Hugging
//!   Face weight at row `2i + h`), because llama.cpp rotates adjacent pairs `(2i, 2i + 1)`;
//!   candle's quantized Llama rotates those pairs too. This loader undoes the permutation
//!   instead (moving whole quantized rows, which is exact: a block never spans two rows), so the
//!   engine rotates halves (`rotate_half`) like the Hugging Face model, computes the same
//!   attention, and records `q`, `k`, `q_rope`, `k_rope` in the order of the safetensors engine,
//!   of transformers loading the same GGUF (it un-permutes too) and of the `llama-cpp` preset's
//!   mapping of llama.cpp's `Qcur`/`Kcur`.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result};

use super::linear::{reorder_rows, Linear};
use super::{Block, Bug, Config, Llama};

/// The `general.architecture` values [`Llama::load_gguf`] runs: llama.cpp's `LLM_ARCH_LLAMA`.
const GGUF_ARCHITECTURES: [&str; 1] = ["llama"];

fn error(path: &Path, what: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::msg(format!("{}: {what}", path.display()))
}

impl Config {
    /// The configuration of a GGUF's `llama` metadata (see [the loader's
    /// documentation](Llama::load_gguf)); `vocab_size` is the embedding's row count.
    pub fn from_gguf(content: &Content, vocab_size: usize) -> Result<Self> {
        let md = &content.metadata;
        let arch = md
            .get("general.architecture")
            .ok_or_else(|| candle_core::Error::msg("missing `general.architecture`"))?
            .to_string()?
            .clone();
        if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(candle_core::Error::msg(format!(
                "architecture `{arch}`, expected one of {GGUF_ARCHITECTURES:?}"
            )));
        }
        let get = |key: &str| md.get(&format!("{arch}.{key}"));
        let int = |key: &str| -> Result<usize> {
            let v = get(key)
                .ok_or_else(|| candle_core::Error::msg(format!("missing `{arch}.{key}`")))?;
            Ok(value_u64(v).map_err(|e| wrong(&arch, key, e))? as usize)
        };
        let float = |key: &str, default: Option<f64>| -> Result<f64> {
            match (get(key), default) {
                (Some(v), _) => value_f64(v).map_err(|e| wrong(&arch, key, e)),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(candle_core::Error::msg(format!("missing `{arch}.{key}`"))),
            }
        };
        let heads = int("attention.head_count")?;
        if let Some(v) = get("vocab_size") {
            let declared = value_u64(v).map_err(|e| wrong(&arch, "vocab_size", e))?;
            if declared as usize != vocab_size {
                return Err(candle_core::Error::msg(format!(
                    "`{arch}.vocab_size` is {declared} but token_embd.weight has {vocab_size} rows"
                )));
            }
        }
        let cfg = Config {
            vocab_size,
            hidden_size: int("embedding_length")?,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: get("attention.head_count_kv")
                .map_or(Ok(heads), |_| int("attention.head_count_kv"))?,
            // Stored as f32 in the file: widened exactly, as llama.cpp uses it.
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", None)?,
            rope_theta: float("rope.freq_base", Some(10_000.0))?,
            max_position_embeddings: int("context_length").ok(),
        }
        .checked()?;
        if let Some(v) = get("rope.dimension_count") {
            let rope_dim = value_u64(v).map_err(|e| wrong(&arch, "rope.dimension_count", e))?;
            if rope_dim as usize != cfg.head_dim() {
                return Err(candle_core::Error::msg(format!(
                    "`{arch}.rope.dimension_count` is {rope_dim}, but only a rotation of the \
                     whole head ({}) is supported",
                    cfg.head_dim()
                )));
            }
        }
        Ok(cfg)
    }
}

fn wrong(arch: &str, key: &str, e: candle_core::Error) -> candle_core::Error {
    candle_core::Error::msg(format!("`{arch}.{key}`: {e}"))
}

/// An integer metadata value of any integer type, as a count.
fn value_u64(v: &Value) -> Result<u64> {
    let x: i128 = match v {
        Value::U8(x) => (*x).into(),
        Value::U16(x) => (*x).into(),
        Value::U32(x) => (*x).into(),
        Value::U64(x) => (*x).into(),
        Value::I8(x) => (*x).into(),
        Value::I16(x) => (*x).into(),
        Value::I32(x) => (*x).into(),
        Value::I64(x) => (*x).into(),
        other => {
            return Err(candle_core::Error::msg(format!(
                "expected an integer, found {:?}",
                other.value_type()
            )))
        }
    };
    u64::try_from(x).map_err(|_| candle_core::Error::msg(format!("expected a count, found {x}")))
}

/// A float metadata value (f32 or f64).
fn value_f64(v: &Value) -> Result<f64> {
    match v {
        Value::F32(x) => Ok(f64::from(*x)),
        Value::F64(x) => Ok(*x),
        other => Err(candle_core::Error::msg(format!(
            "expected a float, found {:?}",
            other.value_type()
        ))),
    }
}

/// Row order undoing llama.cpp's RoPE permutation of a `[heads * head_dim, in]` projection:
/// row `h * head_dim / 2 + i` of each head is read from the file's row `2i + h`.
fn unpermute_order(heads: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    (0..heads)
        .flat_map(|head| {
            (0..2).flat_map(move |h| (0..half).map(move |i| head * head_dim + 2 * i + h))
        })
        .collect()
}

/// The tensors of one opened GGUF, taken by name with their shape checked.
struct Tensors<'a> {
    path: &'a Path,
    content: &'a Content,
    file: File,
}

impl Tensors<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<QTensor> {
        if !self.content.tensor_infos.contains_key(name) {
            return Err(error(self.path, format!("no tensor `{name}`")));
        }
        let q = self
            .content
            .tensor(&mut self.file, name, &Device::Cpu)
            .map_err(|e| error(self.path, format!("tensor `{name}`: {e}")))?;
        if q.shape().dims() != shape {
            return Err(error(
                self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    q.shape().dims()
                ),
            ));
        }
        Ok(q)
    }

    fn dense(&mut self, name: &str, shape: &[usize]) -> Result<candle_core::Tensor> {
        self.take(name, shape)?.dequantize(&Device::Cpu)
    }

    fn linear(&mut self, name: &str, shape: &[usize]) -> Result<Linear> {
        Linear::from_qtensor(self.take(name, shape)?)
    }

    /// A Q or K projection of `heads` heads, its rows back in the Hugging Face order.
    fn rope_linear(&mut self, name: &str, heads: usize, cfg: &Config) -> Result<Linear> {
        let d = cfg.head_dim();
        let q = self.take(name, &[heads * d, cfg.hidden_size])?;
        let q = reorder_rows(&q, &unpermute_order(heads, d))
            .map_err(|e| error(self.path, format!("tensor `{name}`: {e}")))?;
        Linear::from_qtensor(q)
    }
}

impl Llama {
    /// Loads a Llama GGUF (llama.cpp's format, any type candle-core reads: F32, F16, BF16,
    /// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the K-quants) to run in F32 with the projections in the
    /// file's types, planting `bug` if given.
    ///
    /// The configuration comes from the `llama.*` metadata (heads, key/value heads, rope base,
    /// RMSNorm epsilon, context length); norms and the token embedding are dequantized to F32;
    /// each projection is multiplied by candle-core's `QMatMul` in its stored type (F32, F16 and
    /// BF16 ones as dense F32); without `output.weight` the output projection is the token
    /// embedding (tied). The Q/K rows llama.cpp's converter permutes for its adjacent-pair RoPE
    /// are moved back at load, so the engine's records are in the Hugging Face order of
    /// [`Llama::load`]'s.
    pub fn load_gguf(path: &Path, bug: Option<Bug>) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| error(path, e))?;
        let content = Content::read(&mut file).map_err(|e| error(path, e))?;
        let embd = content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| error(path, "no tensor `token_embd.weight`"))?;
        let vocab = embd.shape.dims().first().copied().unwrap_or(0);
        let cfg = Config::from_gguf(&content, vocab).map_err(|e| error(path, e))?;
        let mut t = Tensors {
            path,
            content: &content,
            file,
        };
        let (e, f) = (cfg.hidden_size, cfg.intermediate_size);
        let kv = cfg.num_key_value_heads * cfg.head_dim();
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("blk.{i}");
            let mut w_gate = t.linear(&format!("{p}.ffn_gate.weight"), &[f, e])?;
            if bug == Some(Bug::MlpTransposedWeight) && i == Bug::mlp_layer(cfg.num_hidden_layers) {
                w_gate = w_gate.data_transposed()?;
            }
            blocks.push(Block {
                wq: t.rope_linear(&format!("{p}.attn_q.weight"), cfg.num_attention_heads, &cfg)?,
                wk: t.rope_linear(&format!("{p}.attn_k.weight"), cfg.num_key_value_heads, &cfg)?,
                wv: t.linear(&format!("{p}.attn_v.weight"), &[kv, e])?,
                wo: t.linear(&format!("{p}.attn_output.weight"), &[e, e])?,
                w_gate,
                w_up: t.linear(&format!("{p}.ffn_up.weight"), &[f, e])?,
                w_down: t.linear(&format!("{p}.ffn_down.weight"), &[e, f])?,
                attn_norm: t.dense(&format!("{p}.attn_norm.weight"), &[e])?,
                ffn_norm: t.dense(&format!("{p}.ffn_norm.weight"), &[e])?,
            });
        }
        let output = if content.tensor_infos.contains_key("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let lm_head = t.linear(output, &[vocab, e])?;
        let quant = blocks[0].wq.storage_name();
        Ok(Llama {
            name: path.display().to_string(),
            embed: t.dense("token_embd.weight", &[vocab, e])?,
            norm: t.dense("output_norm.weight", &[e])?,
            lm_head,
            blocks,
            cfg,
            bug,
            dtype: DType::F32,
            quant,
            device: Device::Cpu,
        })
    }
}
