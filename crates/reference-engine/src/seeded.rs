//! Seeded Llama-style models, written as a Hugging Face checkpoint directory: the model of
//! `cargo xtask crossval` and of the engines' precision tests.
//!
//! splitmix64 turned into uniform floats with integer arithmetic only, so a seed gives
//! bit-identical weights on every platform.
//!
//! The directory is a real Hugging Face checkpoint: `config.json` with `LlamaForCausalLM`'s keys
//! and `model.safetensors` with its tensor names and layouts (`[out, in]` linear weights, the
//! `"format": "pt"` metadata transformers checks). The candle engine, the f64 references and
//! transformers itself load it unchanged. Rotary embeddings pair dimension `c` with
//! `c + head_dim / 2` in every engine here, which is transformers' `rotate_half` convention, so
//! no permutation of the q/k rows is needed (a model converted to GGUF for llama.cpp, which pairs
//! adjacent dimensions, would need one).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::{Error, Result, CONFIG_FILE, WEIGHTS_FILE};

/// `config.json`'s RMSNorm epsilon (the crossval's).
pub const RMS_NORM_EPS: f64 = 1e-6;
/// Rotary embedding base.
pub const ROPE_THETA: f64 = 10_000.0;
/// Byte-level vocabulary.
pub const VOCAB: usize = 256;
/// `max_position_embeddings` in `config.json`: the longest prompt plus decode steps a reference
/// may be asked to run.
pub const MAX_POSITIONS: usize = 4096;
/// Scale of the `lm_head` rows of bytes that are not printable ASCII or `\n` (so greedy decoding
/// produces ASCII, as in the crossval).
pub const RARE_BYTE_SCALE: f32 = 0.1;

/// Model widths: `(hidden, query heads, key/value heads, intermediate)`; the crossval's `tiny`
/// (its default), `small` and `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// hidden 64, 4 query heads, 2 key/value heads, MLP 128 (the crossval's default).
    Tiny,
    /// hidden 128, 8 query heads, 2 key/value heads, MLP 256.
    Small,
    /// hidden 256, 8 query heads, 4 key/value heads, MLP 512.
    Base,
}

impl Size {
    /// Every size, in the order `--help` lists them.
    pub const ALL: [Size; 3] = [Size::Tiny, Size::Small, Size::Base];

    /// The `--size` name.
    pub fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny",
            Size::Small => "small",
            Size::Base => "base",
        }
    }

    /// Parses a `--size` value.
    pub fn parse(s: &str) -> Option<Size> {
        Size::ALL.into_iter().find(|z| z.name() == s)
    }

    /// `(hidden, heads, kv_heads, intermediate)`.
    pub fn dims(self) -> (usize, usize, usize, usize) {
        match self {
            Size::Tiny => (64, 4, 2, 128),
            Size::Small => (128, 8, 2, 256),
            Size::Base => (256, 8, 4, 512),
        }
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), exactly representable (24 random bits).
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) / (1u32 << 23) as f32 - 1.0
    }

    fn fill(&mut self, n: usize, center: f32, scale: f32) -> Vec<f32> {
        (0..n).map(|_| center + scale * self.uniform()).collect()
    }
}

/// Writes `config.json` and `model.safetensors` (F32) for a model of `size` with `layers`
/// layers into `dir`, weights drawn from `seed`.
pub fn write(dir: &Path, size: Size, layers: usize, seed: u64) -> Result<()> {
    let (e, heads, kv_heads, f) = size.dims();
    let kv = kv_heads * (e / heads);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": e,
        "intermediate_size": f,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_theta": ROPE_THETA,
        "torch_dtype": "float32",
        // What `transformers.LlamaForCausalLM` needs beyond the keys above, so the directory
        // loads there as it is: no biases, SiLU, untied lm_head, and no end-of-sequence token
        // (every byte is a token; generation stops after the steps asked for).
        "head_dim": e / heads,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": false,
        "max_position_embeddings": MAX_POSITIONS,
        "bos_token_id": null,
        "eos_token_id": null,
        "pad_token_id": null,
    });
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, format!("{config:#}\n")).map_err(io(&path))?;

    // Uniform on [-a, a) with a = sqrt(3 / fan_in): standard deviation 1 / sqrt(fan_in).
    let lin = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    let mut rng = Rng(seed);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut add = |name: String, shape: Vec<usize>, center: f32, scale: f32| {
        let values = rng.fill(shape.iter().product(), center, scale);
        tensors.insert(name, (shape, values));
    };
    add(
        "model.embed_tokens.weight".into(),
        vec![VOCAB, e],
        0.0,
        0.02 * 3f32.sqrt(),
    );
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        add(format!("{p}.input_layernorm.weight"), vec![e], 1.0, 0.1);
        add(
            format!("{p}.self_attn.q_proj.weight"),
            vec![e, e],
            0.0,
            lin(e),
        );
        add(
            format!("{p}.self_attn.k_proj.weight"),
            vec![kv, e],
            0.0,
            lin(e),
        );
        add(
            format!("{p}.self_attn.v_proj.weight"),
            vec![kv, e],
            0.0,
            lin(e),
        );
        add(
            format!("{p}.self_attn.o_proj.weight"),
            vec![e, e],
            0.0,
            lin(e),
        );
        add(
            format!("{p}.post_attention_layernorm.weight"),
            vec![e],
            1.0,
            0.1,
        );
        add(format!("{p}.mlp.gate_proj.weight"), vec![f, e], 0.0, lin(e));
        add(format!("{p}.mlp.up_proj.weight"), vec![f, e], 0.0, lin(e));
        add(format!("{p}.mlp.down_proj.weight"), vec![e, f], 0.0, lin(f));
    }
    add("model.norm.weight".into(), vec![e], 1.0, 0.1);
    add("lm_head.weight".into(), vec![VOCAB, e], 0.0, lin(e));
    if let Some((_, head)) = tensors.get_mut("lm_head.weight") {
        for (byte, row) in head.chunks_exact_mut(e).enumerate() {
            let common = (0x20..0x7f).contains(&byte) || byte == usize::from(b'\n');
            if !common {
                row.iter_mut().for_each(|w| *w *= RARE_BYTE_SCALE);
            }
        }
    }

    let bytes: BTreeMap<&str, (Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.as_str(), (shape.clone(), raw))
        })
        .collect();
    let path = dir.join(WEIGHTS_FILE);
    let invalid =
        |e: safetensors::SafeTensorError| Error::Model(format!("{}: {e}", path.display()));
    let views = bytes
        .iter()
        .map(|(name, (shape, raw))| {
            TensorView::new(Dtype::F32, shape.clone(), raw).map(|v| (*name, v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    // One metadata entry only (the header's map is written in hash order, and the file must be
    // byte-identical for the same seed): the one transformers checks.
    let info = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize_to_file(views, Some(info), &path).map_err(invalid)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_and_the_engine_loads_them() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("a"), Size::Tiny, 1, 3).unwrap();
        write(&d.path().join("b"), Size::Tiny, 1, 3).unwrap();
        write(&d.path().join("c"), Size::Tiny, 1, 4).unwrap();
        let read = |s: &str| std::fs::read(d.path().join(s).join(WEIGHTS_FILE)).unwrap();
        assert!(read("a") == read("b"), "same seed, different bytes");
        assert!(read("a") != read("c"), "different seeds, same bytes");
        let model = crate::Model::load(&d.path().join("a")).unwrap();
        assert_eq!(model.config().hidden_size, 64);
        assert_eq!(model.config().num_key_value_heads, 2);
    }

    #[test]
    fn rng_is_uniform_in_range() {
        let a = Rng(7).fill(1000, 0.0, 1.0);
        assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / 1000.0;
        assert!(mean.abs() < 0.1, "{mean}");
    }
}
