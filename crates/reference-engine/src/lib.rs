//! # reference-engine
//!
//! The "known good" side of a cross-validation: a Llama-style decoder written out loop by loop
//! in `f64` on plain slices, with no tensor library at all. It reads the same files as the
//! engine under test (a Hugging Face style `config.json` and `model.safetensors` with F32
//! weights) and traces the same named points through trace-core, so `trace-diff` can line the two
//! runs up record by record.
//!
//! **Architecture invariant:** this crate shares no model code with the engine it checks (the
//! candle engine in `trace-candle`); a bug there cannot be mirrored here. It is deliberately
//! slow and short: every step is a plain loop that reads like the paper's formula.
//!
//! # Traced points
//! Each forward pass (`seq` 0 = prefill of the prompt, `seq` s = decode step s) records, in
//! order, with `T` tokens in the pass, `L` positions in the KV cache after it, `E` hidden, `F`
//! intermediate, `H`/`KV` query/key-value heads of size `D`, `V` vocabulary:
//!
//! | name | shape | layer |
//! |---|---|---|
//! | `tokens` (U32) | `[T]` | -1 |
//! | `embed` | `[T, E]` | -1 |
//! | `blk{i}/attn_norm` | `[T, E]` | i |
//! | `blk{i}/q`, `blk{i}/k`, `blk{i}/v` | `[T, H·D]`, `[T, KV·D]`, `[T, KV·D]` | i |
//! | `blk{i}/q_rope`, `blk{i}/k_rope` | `[H, T, D]`, `[KV, T, D]` | i |
//! | `blk{i}/attn_probs` | `[H, T, L]` | i |
//! | `blk{i}/attn_ctx` | `[T, H·D]` | i |
//! | `blk{i}/attn_out` | `[T, E]` | i |
//! | `blk{i}/ffn_inp` | `[T, E]` | i |
//! | `blk{i}/ffn_norm` | `[T, E]` | i |
//! | `blk{i}/ffn_gate`, `blk{i}/ffn_up`, `blk{i}/ffn_act` | `[T, F]` | i |
//! | `blk{i}/ffn_out`, `blk{i}/l_out` | `[T, E]` | i |
//! | `out_norm` | `[T, E]` | -1 |
//! | `logits` | `[V]` (last position) | -1 |
//! | `next_token` (U32) | `[1]` | -1 |
//!
//! The `stage` of each record is the name without its `blk{i}/` prefix.
//!
//! # Example
//! ```
//! use reference_engine::{decode_bytes, Config, Model};
//!
//! // A one-layer model whose weights are all zero except the norms: every logit is 0 and greedy
//! // sampling picks token 0 each time.
//! let cfg = Config {
//!     vocab_size: 8,
//!     hidden_size: 4,
//!     intermediate_size: 8,
//!     num_hidden_layers: 1,
//!     num_attention_heads: 2,
//!     num_key_value_heads: 1,
//!     rms_norm_eps: 1e-6,
//!     rope_theta: 10_000.0,
//! };
//! let model = Model::zeros(cfg)?;
//! let tokens = model.generate(&[1, 2, 3], 2, None)?;
//! assert_eq!(tokens, vec![0, 0, 0]);
//! assert_eq!(decode_bytes(&[104, 105]), "hi");
//! # Ok::<(), reference_engine::Error>(())
//! ```
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use trace_core::{Context, TensorView, Tracer};

/// File name of the model configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Everything that can go wrong while loading or running the reference model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration or the weights are not what a Llama-style model needs.
    #[error("invalid model: {0}")]
    Model(String),
    /// A token is outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab_size}")]
    Token {
        /// The offending token.
        token: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// Recording a traced tensor failed.
    #[error("trace: {0}")]
    Trace(#[from] trace_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The model hyper-parameters, with the field names of a Hugging Face Llama `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Number of tokens (256 for byte-level models).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Epsilon added to the mean square in RMSNorm.
    pub rms_norm_eps: f64,
    /// Base of the rotary embedding frequencies.
    pub rope_theta: f64,
}

impl Config {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = serde_json::from_str(&text)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn check(&self) -> Result<()> {
        let ok = self.vocab_size > 0
            && self.hidden_size > 0
            && self.num_attention_heads > 0
            && self.num_key_value_heads > 0
            && self.hidden_size % self.num_attention_heads == 0
            && self.num_attention_heads % self.num_key_value_heads == 0
            && self.head_dim() % 2 == 0;
        if !ok {
            return Err(Error::Model(format!(
                "inconsistent sizes (hidden must split into heads of even size, query heads into \
                 key/value groups): {self:?}"
            )));
        }
        Ok(())
    }
}

/// A row-major `[rows, cols]` matrix, stored as a linear layer stores it: `[out, in]`.
#[derive(Debug, Clone)]
struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// `x · Wᵀ` for each of the `x.len() / cols` input rows: out[t][o] = Σ_i x[t][i] · W[o][i].
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(x.len() / self.cols * self.rows);
        for input in x.chunks(self.cols) {
            for o in 0..self.rows {
                out.push(dot(input, self.row(o)));
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Block {
    attn_norm: Vec<f64>,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    wo: Matrix,
    ffn_norm: Vec<f64>,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
}

/// A loaded model: configuration and f64 weights.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    embed: Matrix,
    blocks: Vec<Block>,
    norm: Vec<f64>,
    lm_head: Matrix,
}

/// Per-layer key/value cache: `keys[kv_head][position]` is one `D`-vector.
#[derive(Debug, Clone, Default)]
struct Cache {
    keys: Vec<Vec<Vec<f64>>>,
    values: Vec<Vec<Vec<f64>>>,
}

impl Model {
    /// Loads `config.json` and `model.safetensors` (F32 tensors, Hugging Face Llama names) from
    /// `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg = Config::from_file(&dir.join(CONFIG_FILE))?;
        let path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let get = |name: &str, rows: usize, cols: usize| -> Result<Matrix> {
            let view = st
                .tensor(name)
                .map_err(|e| Error::Model(format!("{}: {name}: {e}", path.display())))?;
            let expected: &[usize] = if rows == 1 { &[cols] } else { &[rows, cols] };
            if view.dtype() != safetensors::Dtype::F32 || view.shape() != expected {
                return Err(Error::Model(format!(
                    "{name}: expected F32 {expected:?}, found {:?} {:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect();
            Ok(Matrix { rows, cols, data })
        };
        let (e, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let kv = cfg.num_key_value_heads * cfg.head_dim();
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            blocks.push(Block {
                attn_norm: get(&format!("{p}.input_layernorm.weight"), 1, e)?.data,
                wq: get(&format!("{p}.self_attn.q_proj.weight"), e, e)?,
                wk: get(&format!("{p}.self_attn.k_proj.weight"), kv, e)?,
                wv: get(&format!("{p}.self_attn.v_proj.weight"), kv, e)?,
                wo: get(&format!("{p}.self_attn.o_proj.weight"), e, e)?,
                ffn_norm: get(&format!("{p}.post_attention_layernorm.weight"), 1, e)?.data,
                w_gate: get(&format!("{p}.mlp.gate_proj.weight"), f, e)?,
                w_up: get(&format!("{p}.mlp.up_proj.weight"), f, e)?,
                w_down: get(&format!("{p}.mlp.down_proj.weight"), e, f)?,
            });
        }
        Ok(Model {
            embed: get("model.embed_tokens.weight", v, e)?,
            norm: get("model.norm.weight", 1, e)?.data,
            lm_head: get("lm_head.weight", v, e)?,
            blocks,
            cfg,
        })
    }

    /// A model of the given shape whose matrices are all zero and whose norm weights are one
    /// (for examples and tests).
    pub fn zeros(cfg: Config) -> Result<Self> {
        cfg.check()?;
        let m = |rows: usize, cols: usize| Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        };
        let (e, f) = (cfg.hidden_size, cfg.intermediate_size);
        let kv = cfg.num_key_value_heads * cfg.head_dim();
        let block = Block {
            attn_norm: vec![1.0; e],
            wq: m(e, e),
            wk: m(kv, e),
            wv: m(kv, e),
            wo: m(e, e),
            ffn_norm: vec![1.0; e],
            w_gate: m(f, e),
            w_up: m(f, e),
            w_down: m(e, f),
        };
        Ok(Model {
            embed: m(cfg.vocab_size, e),
            blocks: vec![block; cfg.num_hidden_layers],
            norm: vec![1.0; e],
            lm_head: m(cfg.vocab_size, e),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Greedy generation: a prefill over `prompt` (`seq` 0), then `steps` decode steps
    /// (`seq` 1..=steps), each feeding back the previous token. Returns the `steps + 1` sampled
    /// tokens. Every named point is recorded to `tracer` when given.
    pub fn generate(
        &self,
        prompt: &[u32],
        steps: usize,
        tracer: Option<&Tracer>,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(Error::Model(
                "the prompt must hold at least one token".into(),
            ));
        }
        let mut caches = vec![Cache::default(); self.cfg.num_hidden_layers];
        let mut out = Vec::with_capacity(steps + 1);
        let mut input = prompt.to_vec();
        for seq in 0..=steps as u64 {
            let next = self.forward(&input, seq, &mut caches, tracer)?;
            out.push(next);
            input = vec![next];
        }
        Ok(out)
    }

    /// One pass over `tokens`, appending to the caches; returns the greedy next token.
    fn forward(
        &self,
        tokens: &[u32],
        seq: u64,
        caches: &mut [Cache],
        tracer: Option<&Tracer>,
    ) -> Result<u32> {
        let cfg = &self.cfg;
        let (t_len, e) = (tokens.len(), cfg.hidden_size);
        let (h_n, kv_n, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let start = caches[0].keys.first().map_or(0, Vec::len);
        let tr = Tr { tracer, seq };

        let ids: Vec<u32> = tokens.to_vec();
        tr.u32("tokens", -1, &[t_len], &ids)?;
        let mut x = Vec::with_capacity(t_len * e);
        for &tok in tokens {
            if tok as usize >= cfg.vocab_size {
                return Err(Error::Token {
                    token: tok,
                    vocab_size: cfg.vocab_size,
                });
            }
            x.extend_from_slice(self.embed.row(tok as usize));
        }
        tr.f64("embed", -1, &[t_len, e], &x)?;

        for (i, (b, cache)) in self.blocks.iter().zip(caches.iter_mut()).enumerate() {
            let layer = i as i64;
            let n = |point: &str| format!("blk{i}/{point}");
            let h = rms_norm(&x, &b.attn_norm, cfg.rms_norm_eps);
            tr.f64(&n("attn_norm"), layer, &[t_len, e], &h)?;
            let q = b.wq.apply(&h);
            let k = b.wk.apply(&h);
            let v = b.wv.apply(&h);
            tr.f64(&n("q"), layer, &[t_len, h_n * d], &q)?;
            tr.f64(&n("k"), layer, &[t_len, kv_n * d], &k)?;
            tr.f64(&n("v"), layer, &[t_len, kv_n * d], &v)?;

            // Heads first: q_rope[h][t] is the rotated D-vector of head h at token t.
            let heads = |m: &[f64], count: usize, rotate: bool| -> Vec<Vec<Vec<f64>>> {
                (0..count)
                    .map(|hd| {
                        (0..t_len)
                            .map(|t| {
                                let row = &m[(t * count + hd) * d..(t * count + hd + 1) * d];
                                if rotate {
                                    rope(row, start + t, cfg.rope_theta)
                                } else {
                                    row.to_vec()
                                }
                            })
                            .collect()
                    })
                    .collect()
            };
            let q_rope = heads(&q, h_n, true);
            let k_rope = heads(&k, kv_n, true);
            let v_heads = heads(&v, kv_n, false);
            tr.f64(&n("q_rope"), layer, &[h_n, t_len, d], &flatten(&q_rope))?;
            tr.f64(&n("k_rope"), layer, &[kv_n, t_len, d], &flatten(&k_rope))?;

            if cache.keys.is_empty() {
                cache.keys = vec![Vec::new(); kv_n];
                cache.values = vec![Vec::new(); kv_n];
            }
            for g in 0..kv_n {
                cache.keys[g].extend(k_rope[g].iter().cloned());
                cache.values[g].extend(v_heads[g].iter().cloned());
            }
            let l_len = start + t_len;

            // probs[h][t][j]: token t (absolute position start + t) attends to positions j ≤ it.
            let scale = 1.0 / (d as f64).sqrt();
            let mut probs = vec![0.0; h_n * t_len * l_len];
            let mut ctx = vec![0.0; t_len * h_n * d];
            for hd in 0..h_n {
                let g = hd / (h_n / kv_n);
                for t in 0..t_len {
                    let visible = start + t + 1;
                    let scores: Vec<f64> = (0..visible)
                        .map(|j| dot(&q_rope[hd][t], &cache.keys[g][j]) * scale)
                        .collect();
                    let p = softmax(&scores);
                    let row = &mut probs[(hd * t_len + t) * l_len..][..visible];
                    row.copy_from_slice(&p);
                    for (j, pj) in p.iter().enumerate() {
                        for c in 0..d {
                            ctx[t * h_n * d + hd * d + c] += pj * cache.values[g][j][c];
                        }
                    }
                }
            }
            tr.f64(&n("attn_probs"), layer, &[h_n, t_len, l_len], &probs)?;
            tr.f64(&n("attn_ctx"), layer, &[t_len, h_n * d], &ctx)?;
            let attn_out = b.wo.apply(&ctx);
            tr.f64(&n("attn_out"), layer, &[t_len, e], &attn_out)?;
            let x_mid: Vec<f64> = x.iter().zip(&attn_out).map(|(a, b)| a + b).collect();
            tr.f64(&n("ffn_inp"), layer, &[t_len, e], &x_mid)?;

            let hn = rms_norm(&x_mid, &b.ffn_norm, cfg.rms_norm_eps);
            tr.f64(&n("ffn_norm"), layer, &[t_len, e], &hn)?;
            let f = cfg.intermediate_size;
            let gate = b.w_gate.apply(&hn);
            let up = b.w_up.apply(&hn);
            tr.f64(&n("ffn_gate"), layer, &[t_len, f], &gate)?;
            tr.f64(&n("ffn_up"), layer, &[t_len, f], &up)?;
            let act: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
            tr.f64(&n("ffn_act"), layer, &[t_len, f], &act)?;
            let ffn_out = b.w_down.apply(&act);
            tr.f64(&n("ffn_out"), layer, &[t_len, e], &ffn_out)?;
            x = x_mid.iter().zip(&ffn_out).map(|(a, b)| a + b).collect();
            tr.f64(&n("l_out"), layer, &[t_len, e], &x)?;
        }

        let out = rms_norm(&x, &self.norm, cfg.rms_norm_eps);
        tr.f64("out_norm", -1, &[t_len, e], &out)?;
        let logits = self.lm_head.apply(&out[(t_len - 1) * e..]);
        tr.f64("logits", -1, &[cfg.vocab_size], &logits)?;
        let next = argmax(&logits) as u32;
        tr.u32("next_token", -1, &[1], &[next])?;
        Ok(next)
    }
}

/// Greedy decoding of byte-level tokens: each token is one byte; invalid UTF-8 is replaced.
pub fn decode_bytes(tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens.iter().map(|&t| t.min(255) as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Byte-level tokenization of a prompt: one token per UTF-8 byte.
pub fn encode_bytes(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// Where and at which step records go.
struct Tr<'a> {
    tracer: Option<&'a Tracer>,
    seq: u64,
}

impl Tr<'_> {
    fn context<'n>(&self, name: &'n str, layer: i64) -> Context<'n> {
        let stage = name.rsplit('/').next().unwrap_or(name);
        Context::default().seq(self.seq).layer(layer).stage(stage)
    }

    fn f64(&self, name: &str, layer: i64, shape: &[usize], data: &[f64]) -> Result<()> {
        let Some(t) = self.tracer else { return Ok(()) };
        let view = TensorView::new(shape, data).map_err(trace_core::Error::from)?;
        t.record(name, &self.context(name, layer), view)?;
        Ok(())
    }

    fn u32(&self, name: &str, layer: i64, shape: &[usize], data: &[u32]) -> Result<()> {
        let Some(t) = self.tracer else { return Ok(()) };
        let view = TensorView::new(shape, data).map_err(trace_core::Error::from)?;
        t.record(name, &self.context(name, layer), view)?;
        Ok(())
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn flatten(m: &[Vec<Vec<f64>>]) -> Vec<f64> {
    m.iter().flatten().flatten().copied().collect()
}

/// RMSNorm of each row: x / sqrt(mean(x²) + eps) · w.
fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(w.len()) {
        let ms = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(v, wi)| v * inv * wi));
    }
    out
}

/// Rotary embedding, "rotate half" convention: dimension c pairs with c + D/2, rotated by
/// pos · theta^(-2c/D).
fn rope(x: &[f64], pos: usize, theta: f64) -> Vec<f64> {
    let half = x.len() / 2;
    let mut out = vec![0.0; x.len()];
    for c in 0..half {
        let freq = theta.powf(-2.0 * c as f64 / x.len() as f64);
        let (sin, cos) = (pos as f64 * freq).sin_cos();
        out[c] = x[c] * cos - x[c + half] * sin;
        out[c + half] = x[c + half] * cos + x[c] * sin;
    }
    out
}

fn softmax(s: &[f64]) -> Vec<f64> {
    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|v| v / sum).collect()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Index of the largest value; the first one on ties.
fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} != {b:?}");
        }
    }

    #[test]
    fn rms_norm_makes_unit_rms() {
        let out = rms_norm(&[3.0, 4.0, 0.0, 0.0], &[1.0, 1.0], 0.0);
        // Row [3, 4]: rms = sqrt(12.5). Row [0, 0] with eps 0 is 0/0: eps is what keeps it 0.
        close(&out[..2], &[3.0 / 12.5f64.sqrt(), 4.0 / 12.5f64.sqrt()]);
        assert!(out[2].is_nan());
        close(&rms_norm(&[0.0, 0.0], &[1.0, 1.0], 1e-6), &[0.0, 0.0]);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let x = [1.0, 2.0, 3.0, 4.0];
        close(&rope(&x, 0, 10_000.0), &x);
        let r = rope(&x, 7, 10_000.0);
        close(&[dot(&r, &r)], &[dot(&x, &x)]);
        // Pair (0, 2) turns by 7 radians at frequency 1.
        close(&r[..1], &[1.0 * 7f64.cos() - 3.0 * 7f64.sin()]);
    }

    #[test]
    fn softmax_silu_argmax() {
        close(&softmax(&[0.0, 0.0]), &[0.5, 0.5]);
        close(&softmax(&[1000.0, 0.0]), &[1.0, 0.0]);
        close(&[silu(0.0)], &[0.0]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn bytes_round_trip() {
        let t = encode_bytes("héllo");
        assert_eq!(t.len(), 6);
        assert_eq!(decode_bytes(&t), "héllo");
    }

    #[test]
    fn config_is_checked() {
        let mut cfg = Config {
            vocab_size: 8,
            hidden_size: 6,
            intermediate_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 4,
            num_key_value_heads: 1,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
        };
        assert!(Model::zeros(cfg.clone()).is_err());
        cfg.hidden_size = 8;
        assert!(Model::zeros(cfg.clone()).is_ok());
        cfg.num_key_value_heads = 3;
        assert!(Model::zeros(cfg).is_err());
    }

    #[test]
    fn rejects_out_of_vocabulary_tokens() {
        let cfg = Config {
            vocab_size: 4,
            hidden_size: 4,
            intermediate_size: 4,
            num_hidden_layers: 1,
            num_attention_heads: 1,
            num_key_value_heads: 1,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
        };
        let m = Model::zeros(cfg).unwrap();
        assert!(matches!(
            m.generate(&[9], 0, None),
            Err(Error::Token { token: 9, .. })
        ));
        assert!(m.generate(&[], 0, None).is_err());
    }
}
