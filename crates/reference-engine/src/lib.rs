//! # reference-engine
//!
//! The "known good" side of a cross-validation: a Llama-style decoder written out loop by loop
//! in `f64` on plain slices, with no tensor library at all. It reads the same files as the
//! engine under test (a Hugging Face style `config.json` and `model.safetensors` with F32
//! weights) and traces the same named points through trace-core, so `trace-diff` can line the two
//! runs up record by record.
//!
//! # Precision modes
//! [`Model::load_with`] picks the arithmetic ([`Precision`]): `F64` (the default, the
//! high-precision reference), `F32` (the same loops in f32: the baseline a calibrated diff
//! judges an F32 engine against) or `Bf16` (f32 arithmetic with weights and activations rounded
//! to bf16 where a BF16 engine rounds them: the baseline for a BF16 engine). One generic forward
//! pass serves all three; the records carry the mode's dtype (`F64`, `F32`, `BF16`) and the same
//! names, in the same order. [`Precision`] lists exactly what is rounded where.
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

pub mod seeded;

use std::path::{Path, PathBuf};

use half::bf16;
use serde::Deserialize;
use trace_core::{Context, DType, Data, TensorView, Tracer};

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
            && self.hidden_size.is_multiple_of(self.num_attention_heads)
            && self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
            && self.head_dim().is_multiple_of(2);
        if !ok {
            return Err(Error::Model(format!(
                "inconsistent sizes (hidden must split into heads of even size, query heads into \
                 key/value groups): {self:?}"
            )));
        }
        Ok(())
    }
}

/// The arithmetic a [`Model`] runs in.
///
/// | mode | weights | activations, accumulators, constants | records |
/// |---|---|---|---|
/// | `F64` | f64 (the file's f32 values, exactly) | f64 | `F64` |
/// | `F32` | f32 (exactly the file's values) | f32: every sum, product, `exp`, `sqrt`, `powf`, `sin`/`cos`, and `eps`, `theta` and the attention scale rounded to f32 | `F32` |
/// | `Bf16` | rounded to bf16 | f32 arithmetic, rounded to bf16 at the points below | `BF16` |
///
/// The F32 mode is the straightforward f32 port of the same loops (the same order of every
/// sum), the baseline an F32 engine is calibrated against: it makes the rounding errors a
/// correct f32 implementation makes.
///
/// **BF16 rounding points** (where `trace_candle::engine` in BF16 rounds too, so the two
/// correspond): every weight at load; every traced activation once, after it is computed in
/// f32 from bf16 inputs (`embed`, `attn_norm`, `q`, `k`, `v`, `q_rope`, `k_rope`,
/// `attn_probs`, `attn_ctx`, `attn_out`, `ffn_inp`, `ffn_norm`, `ffn_gate`, `ffn_up`,
/// `ffn_act`, `ffn_out`, `l_out`, `out_norm`, `logits`), which is also what the KV cache holds;
/// and one point that is not traced: `silu(gate)` before it multiplies `up`. Within a point
/// everything stays f32: a matrix product accumulates in f32 (a bf16 GEMM's f32 accumulator),
/// RMSNorm, rotary embeddings and the attention scores with their softmax are computed in f32
/// and rounded once at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f64 throughout: the high-precision reference.
    #[default]
    F64,
    /// f32 throughout: the baseline for an F32 engine.
    F32,
    /// f32 arithmetic with weights and activations rounded to bf16: the baseline for a BF16
    /// engine.
    Bf16,
}

impl Precision {
    /// Every mode, in the order `--help` texts list them.
    pub const ALL: [Precision; 3] = [Precision::F64, Precision::F32, Precision::Bf16];

    /// The lowercase name (`f64`, `f32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The dtype of the records this mode writes (`F64`, `F32`, `BF16`).
    pub fn dtype(self) -> DType {
        match self {
            Precision::F64 => DType::F64,
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Precision::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {found:?}, expected f64, f32 or bf16")]
pub struct UnknownPrecision {
    /// The name that was given.
    pub found: String,
}

impl std::str::FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPrecision {
                found: s.to_owned(),
            })
    }
}

/// The float type a pass computes in: f64 or f32, with the operations the model uses.
trait Real:
    Copy
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::iter::Sum
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    /// Nearest value (a configuration constant).
    fn from_f64(v: f64) -> Self;
    /// Nearest value (a size or a position).
    fn from_usize(n: usize) -> Self;
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn sin_cos(self) -> (Self, Self);
    fn max(self, other: Self) -> Self;
    /// Nearest bf16.
    fn to_bf16(self) -> bf16;
    /// This type's elements for a tensor view.
    fn data(v: &[Self]) -> Data<'_>;
}

macro_rules! real {
    ($t:ident, $variant:ident) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            fn exp(self) -> Self {
                $t::exp(self)
            }
            fn powf(self, e: Self) -> Self {
                $t::powf(self, e)
            }
            fn sin_cos(self) -> (Self, Self) {
                $t::sin_cos(self)
            }
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            fn to_bf16(self) -> bf16 {
                bf16::$variant(self)
            }
            fn data(v: &[Self]) -> Data<'_> {
                Data::from(v)
            }
        }
    };
}

real!(f64, from_f64);
real!(f32, from_f32);

/// A row-major `[rows, cols]` matrix, stored as a linear layer stores it: `[out, in]`.
#[derive(Debug, Clone)]
struct Matrix<T> {
    rows: usize,
    cols: usize,
    data: Vec<T>,
}

impl<T: Real> Matrix<T> {
    fn row(&self, r: usize) -> &[T] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// `x · Wᵀ` for each of the `x.len() / cols` input rows: out[t][o] = Σ_i x[t][i] · W[o][i].
    fn apply(&self, x: &[T]) -> Vec<T> {
        let mut out = Vec::with_capacity(x.len() / self.cols * self.rows);
        for input in x.chunks(self.cols) {
            for o in 0..self.rows {
                out.push(dot(input, self.row(o)));
            }
        }
        out
    }

    fn map<U>(&self, f: impl Fn(T) -> U) -> Matrix<U> {
        Matrix {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Block<T> {
    attn_norm: Vec<T>,
    wq: Matrix<T>,
    wk: Matrix<T>,
    wv: Matrix<T>,
    wo: Matrix<T>,
    ffn_norm: Vec<T>,
    w_gate: Matrix<T>,
    w_up: Matrix<T>,
    w_down: Matrix<T>,
}

/// The weights in one float type.
#[derive(Debug, Clone)]
struct Weights<T> {
    embed: Matrix<T>,
    blocks: Vec<Block<T>>,
    norm: Vec<T>,
    lm_head: Matrix<T>,
}

impl<T: Real> Weights<T> {
    /// The same weights with `f` applied to every value.
    fn map<U: Real>(&self, f: impl Fn(T) -> U + Copy) -> Weights<U> {
        let v = |w: &[T]| w.iter().map(|&x| f(x)).collect();
        Weights {
            embed: self.embed.map(f),
            blocks: self
                .blocks
                .iter()
                .map(|b| Block {
                    attn_norm: v(&b.attn_norm),
                    wq: b.wq.map(f),
                    wk: b.wk.map(f),
                    wv: b.wv.map(f),
                    wo: b.wo.map(f),
                    ffn_norm: v(&b.ffn_norm),
                    w_gate: b.w_gate.map(f),
                    w_up: b.w_up.map(f),
                    w_down: b.w_down.map(f),
                })
                .collect(),
            norm: v(&self.norm),
            lm_head: self.lm_head.map(f),
        }
    }
}

/// The weights as the precision stores them: BF16 runs on f32 weights rounded to bf16.
#[derive(Debug, Clone)]
enum Stored {
    F64(Weights<f64>),
    F32(Weights<f32>),
}

/// A loaded model: configuration, precision and weights.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    precision: Precision,
    weights: Stored,
}

/// Per-layer key/value cache: `keys[kv_head][position]` is one `D`-vector.
#[derive(Debug, Clone)]
struct Cache<T> {
    keys: Vec<Vec<Vec<T>>>,
    values: Vec<Vec<Vec<T>>>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl Model {
    /// Loads `config.json` and `model.safetensors` (F32 tensors, Hugging Face Llama names) from
    /// `dir`, to run in f64 ([`Precision::F64`]).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with(dir, Precision::F64)
    }

    /// Loads `config.json` and `model.safetensors` from `dir`, to run in `precision`.
    pub fn load_with(dir: &Path, precision: Precision) -> Result<Self> {
        let cfg = Config::from_file(&dir.join(CONFIG_FILE))?;
        let path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let get = |name: &str, rows: usize, cols: usize| -> Result<Matrix<f32>> {
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
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
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
        let file = Weights {
            embed: get("model.embed_tokens.weight", v, e)?,
            norm: get("model.norm.weight", 1, e)?.data,
            lm_head: get("lm_head.weight", v, e)?,
            blocks,
        };
        let weights = match precision {
            Precision::F64 => Stored::F64(file.map(f64::from)),
            Precision::F32 => Stored::F32(file),
            Precision::Bf16 => Stored::F32(file.map(|w| bf16::from_f32(w).to_f32())),
        };
        Ok(Model {
            cfg,
            precision,
            weights,
        })
    }

    /// A model of the given shape whose matrices are all zero and whose norm weights are one
    /// (for examples and tests), in f64.
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
        let weights = Weights {
            embed: m(cfg.vocab_size, e),
            blocks: vec![block; cfg.num_hidden_layers],
            norm: vec![1.0; e],
            lm_head: m(cfg.vocab_size, e),
        };
        Ok(Model {
            cfg,
            precision: Precision::F64,
            weights: Stored::F64(weights),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The precision the model runs in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Greedy generation: a prefill over `prompt` (`seq` 0), then `steps` decode steps
    /// (`seq` 1..=steps), each feeding back the previous token. Returns the `steps + 1` sampled
    /// tokens. Every named point is recorded to `tracer` when given, with the dtype of the
    /// model's [`Precision`].
    pub fn generate(
        &self,
        prompt: &[u32],
        steps: usize,
        tracer: Option<&Tracer>,
    ) -> Result<Vec<u32>> {
        match &self.weights {
            Stored::F64(w) => self.generate_in(w, prompt, steps, tracer),
            Stored::F32(w) => self.generate_in(w, prompt, steps, tracer),
        }
    }

    fn generate_in<T: Real>(
        &self,
        weights: &Weights<T>,
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
            let pass = Pass {
                tracer,
                seq,
                bf16: self.precision == Precision::Bf16,
            };
            let next = self.forward(weights, &input, &pass, &mut caches)?;
            out.push(next);
            input = vec![next];
        }
        Ok(out)
    }

    /// One pass over `tokens`, appending to the caches; returns the greedy next token.
    fn forward<T: Real>(
        &self,
        w: &Weights<T>,
        tokens: &[u32],
        tr: &Pass<'_>,
        caches: &mut [Cache<T>],
    ) -> Result<u32> {
        let cfg = &self.cfg;
        let (t_len, e) = (tokens.len(), cfg.hidden_size);
        let (h_n, kv_n, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let eps = T::from_f64(cfg.rms_norm_eps);
        let theta = T::from_f64(cfg.rope_theta);
        let start = caches[0].keys.first().map_or(0, Vec::len);

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
            x.extend_from_slice(w.embed.row(tok as usize));
        }
        tr.point("embed", -1, &[t_len, e], &mut x)?;

        for (i, (b, cache)) in w.blocks.iter().zip(caches.iter_mut()).enumerate() {
            let layer = i as i64;
            let n = |point: &str| format!("blk{i}/{point}");
            let mut h = rms_norm(&x, &b.attn_norm, eps);
            tr.point(&n("attn_norm"), layer, &[t_len, e], &mut h)?;
            let mut q = b.wq.apply(&h);
            let mut k = b.wk.apply(&h);
            let mut v = b.wv.apply(&h);
            tr.point(&n("q"), layer, &[t_len, h_n * d], &mut q)?;
            tr.point(&n("k"), layer, &[t_len, kv_n * d], &mut k)?;
            tr.point(&n("v"), layer, &[t_len, kv_n * d], &mut v)?;

            // Heads first: q_rope[h][t] is the rotated D-vector of head h at token t.
            let heads = |m: &[T], count: usize, rotate: bool| -> Vec<Vec<Vec<T>>> {
                (0..count)
                    .map(|hd| {
                        (0..t_len)
                            .map(|t| {
                                let row = &m[(t * count + hd) * d..(t * count + hd + 1) * d];
                                if rotate {
                                    tr.round(rope(row, start + t, theta))
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
            tr.rounded(&n("q_rope"), layer, &[h_n, t_len, d], &flatten(&q_rope))?;
            tr.rounded(&n("k_rope"), layer, &[kv_n, t_len, d], &flatten(&k_rope))?;

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
            let scale = T::ONE / T::from_usize(d).sqrt();
            let mut probs = vec![T::ZERO; h_n * t_len * l_len];
            let mut ctx = vec![T::ZERO; t_len * h_n * d];
            for hd in 0..h_n {
                let g = hd / (h_n / kv_n);
                for t in 0..t_len {
                    let visible = start + t + 1;
                    let scores: Vec<T> = (0..visible)
                        .map(|j| dot(&q_rope[hd][t], &cache.keys[g][j]) * scale)
                        .collect();
                    // The context is a weighted sum of the probabilities as stored.
                    let p = tr.round(softmax(&scores));
                    let row = &mut probs[(hd * t_len + t) * l_len..][..visible];
                    row.copy_from_slice(&p);
                    for (j, &pj) in p.iter().enumerate() {
                        for c in 0..d {
                            ctx[t * h_n * d + hd * d + c] += pj * cache.values[g][j][c];
                        }
                    }
                }
            }
            tr.rounded(&n("attn_probs"), layer, &[h_n, t_len, l_len], &probs)?;
            tr.point(&n("attn_ctx"), layer, &[t_len, h_n * d], &mut ctx)?;
            let mut attn_out = b.wo.apply(&ctx);
            tr.point(&n("attn_out"), layer, &[t_len, e], &mut attn_out)?;
            let mut x_mid: Vec<T> = x.iter().zip(&attn_out).map(|(&a, &b)| a + b).collect();
            tr.point(&n("ffn_inp"), layer, &[t_len, e], &mut x_mid)?;

            let mut hn = rms_norm(&x_mid, &b.ffn_norm, eps);
            tr.point(&n("ffn_norm"), layer, &[t_len, e], &mut hn)?;
            let f = cfg.intermediate_size;
            let mut gate = b.w_gate.apply(&hn);
            let mut up = b.w_up.apply(&hn);
            tr.point(&n("ffn_gate"), layer, &[t_len, f], &mut gate)?;
            tr.point(&n("ffn_up"), layer, &[t_len, f], &mut up)?;
            let mut act: Vec<T> = gate
                .iter()
                .zip(&up)
                .map(|(&g, &u)| tr.round_one(silu(g)) * u)
                .collect();
            tr.point(&n("ffn_act"), layer, &[t_len, f], &mut act)?;
            let mut ffn_out = b.w_down.apply(&act);
            tr.point(&n("ffn_out"), layer, &[t_len, e], &mut ffn_out)?;
            x = x_mid.iter().zip(&ffn_out).map(|(&a, &b)| a + b).collect();
            tr.point(&n("l_out"), layer, &[t_len, e], &mut x)?;
        }

        let mut out = rms_norm(&x, &w.norm, eps);
        tr.point("out_norm", -1, &[t_len, e], &mut out)?;
        let mut logits = w.lm_head.apply(&out[(t_len - 1) * e..]);
        tr.point("logits", -1, &[cfg.vocab_size], &mut logits)?;
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

/// One pass: where and at which step records go, and whether values are rounded to bf16.
struct Pass<'a> {
    tracer: Option<&'a Tracer>,
    seq: u64,
    /// [`Precision::Bf16`]: round at each point, record as BF16.
    bf16: bool,
}

impl Pass<'_> {
    fn context<'n>(&self, name: &'n str, layer: i64) -> Context<'n> {
        let stage = name.rsplit('/').next().unwrap_or(name);
        Context::default().seq(self.seq).layer(layer).stage(stage)
    }

    /// `v` rounded to bf16 in BF16 mode, unchanged otherwise.
    fn round_one<T: Real>(&self, v: T) -> T {
        if self.bf16 {
            T::from_f64(v.to_bf16().to_f64())
        } else {
            v
        }
    }

    /// Every value of `v` through [`Pass::round_one`].
    fn round<T: Real>(&self, mut v: Vec<T>) -> Vec<T> {
        if self.bf16 {
            v.iter_mut().for_each(|x| *x = self.round_one(*x));
        }
        v
    }

    /// A traced point: rounds `data` in place (BF16 mode), then records it.
    fn point<T: Real>(
        &self,
        name: &str,
        layer: i64,
        shape: &[usize],
        data: &mut Vec<T>,
    ) -> Result<()> {
        if self.bf16 {
            *data = self.round(std::mem::take(data));
        }
        self.rounded(name, layer, shape, data)
    }

    /// Records `data`, already rounded where the precision rounds, with the precision's dtype.
    fn rounded<T: Real>(&self, name: &str, layer: i64, shape: &[usize], data: &[T]) -> Result<()> {
        let Some(t) = self.tracer else { return Ok(()) };
        let halves: Vec<bf16>;
        let data = if self.bf16 {
            halves = data.iter().map(|v| v.to_bf16()).collect();
            Data::from(&halves[..])
        } else {
            T::data(data)
        };
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

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

fn flatten<T: Real>(m: &[Vec<Vec<T>>]) -> Vec<T> {
    m.iter().flatten().flatten().copied().collect()
}

/// RMSNorm of each row: x / sqrt(mean(x²) + eps) · w.
fn rms_norm<T: Real>(x: &[T], w: &[T], eps: T) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(w.len()) {
        let ms = row.iter().map(|&v| v * v).sum::<T>() / T::from_usize(row.len());
        let inv = T::ONE / (ms + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(&v, &wi)| v * inv * wi));
    }
    out
}

/// Rotary embedding, "rotate half" convention: dimension c pairs with c + D/2, rotated by
/// pos · theta^(-2c/D).
fn rope<T: Real>(x: &[T], pos: usize, theta: T) -> Vec<T> {
    let half = x.len() / 2;
    let mut out = vec![T::ZERO; x.len()];
    for c in 0..half {
        let freq = theta.powf(T::from_f64(-2.0) * T::from_usize(c) / T::from_usize(x.len()));
        let (sin, cos) = (T::from_usize(pos) * freq).sin_cos();
        out[c] = x[c] * cos - x[c + half] * sin;
        out[c + half] = x[c + half] * cos + x[c] * sin;
    }
    out
}

fn softmax<T: Real>(s: &[T]) -> Vec<T> {
    let max = s.iter().copied().fold(T::NEG_INFINITY, T::max);
    let exp: Vec<T> = s.iter().map(|&v| (v - max).exp()).collect();
    let sum: T = exp.iter().copied().sum();
    exp.iter().map(|&v| v / sum).collect()
}

fn silu<T: Real>(x: T) -> T {
    x / (T::ONE + (-x).exp())
}

/// Index of the largest value; the first one on ties.
fn argmax<T: Real>(v: &[T]) -> usize {
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
    fn precision_names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
        let err = "fp16".parse::<Precision>().unwrap_err().to_string();
        assert_eq!(err, "unknown precision \"fp16\", expected f64, f32 or bf16");
    }

    #[test]
    fn bf16_rounding_applies_only_in_bf16_mode() {
        let pass = |bf16| Pass {
            tracer: None,
            seq: 0,
            bf16,
        };
        // 1 + 2^-8 is halfway between two bf16 values (8 significant bits): ties to even, 1.
        let x = 1.0f32 + 1.0 / 256.0;
        assert_eq!(pass(true).round_one(x), 1.0);
        assert_eq!(pass(false).round_one(x), x);
        assert_eq!(pass(true).round(vec![x, 3.0]), [1.0, 3.0]);
        // Generic code computes in the pass's type: the same formula in f32 and f64 differs.
        let (a, b) = (silu(0.3f32), silu(0.3f64));
        assert_ne!(f64::from(a), b);
        assert!((f64::from(a) - b).abs() < 1e-7);
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
