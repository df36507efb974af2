//! A small Llama-style decoder on candle, traced at every named point.
//!
//! The engine under test in `cargo xtask crossval`: token embedding, RMSNorm, rotary embeddings
//! ("rotate half"), multi-head attention with a KV cache and grouped-query heads, SwiGLU MLP,
//! final norm, lm_head, greedy sampling and byte-level decoding. It loads a Hugging Face style
//! model directory (`config.json` + `model.safetensors`, Llama tensor names) onto the CPU in F32
//! (or BF16, below) and records, for the prefill (`seq` 0) and each decode step (`seq` s), the points listed in
//! the `reference-engine` crate's documentation, with the same names, shapes, layers and stages:
//! `tokens`, `embed`, `blk{i}/attn_norm`, `blk{i}/q`, `blk{i}/k`, `blk{i}/v`, `blk{i}/q_rope`,
//! `blk{i}/k_rope`, `blk{i}/attn_probs`, `blk{i}/attn_ctx`, `blk{i}/attn_out`, `blk{i}/ffn_inp`,
//! `blk{i}/ffn_norm`, `blk{i}/ffn_gate`, `blk{i}/ffn_up`, `blk{i}/ffn_act`, `blk{i}/ffn_out`,
//! `blk{i}/l_out`, `out_norm`, `logits`, `next_token`.
//!
//! [`Llama::generate_text`] also records the pipeline events of trace-core
//! ([`trace_events`]) into an [`InferenceTracer`]: the model info, then for iteration 0
//! (the prefill) and each decode step a span per step, with the real tensors' stats and the
//! Jidoka checks at every exit:
//!
//! | step | layer | input → output |
//! |---|---|---|
//! | `TOKENIZE` (prefill only) | - | prompt text → token ids (vocabulary check) |
//! | `EMBED` | - | token ids → `embed` |
//! | `TRANSFORMER_BLOCK` | i | block input → `blk{i}/l_out`, containing: |
//! | `ATTENTION` (nested) | i | block input → `blk{i}/attn_out` (norm, QKV, rotary, softmax, output projection) |
//! | `FFN` (nested) | i | `blk{i}/ffn_inp` → `blk{i}/ffn_out` (norm, SwiGLU) |
//! | `LM_HEAD` | - | last block output → `logits` (top-k logits) |
//! | `SAMPLE` | - | `logits` → the greedy token (top-k probabilities, temperature 0, top_k 1) |
//! | `DECODE` | - | token → its string (`<0xE2>` for a non-ASCII byte) and the text generated so far (garbage check) |
//!
//! Every span is closed on every path: an error inside a step (a `?` return) drops its span,
//! which records `ExecutionFailed`. Off (no events tracer, or a disabled one), a span costs one
//! branch and no tensor is looked at; on, a step's stats are computed once from the tensor's
//! storage, without a copy. Under the `stop` policy the first Jidoka error ends the generation
//! with that error.
//!
//! [`Bug`] lists the mistakes [`Llama::load`] can plant for demonstrations.
//!
//! # GGUF
//! [`Llama::load_gguf`] runs a Llama GGUF (llama.cpp's format) with the same trace points and
//! bugs: the configuration from the file's metadata, the projections in the file's types
//! (quantized ones multiplied by candle-core's `QMatMul`, as candle's quantized Llama does),
//! the Q/K rows llama.cpp's converter permutes moved back to the Hugging Face order.
//!
//! # Precision: F32 (default) or BF16
//! [`Llama::load_with`] picks the dtype of the weights and activations; [`Llama::load`] is F32.
//! In BF16 (candle `DType::BF16`) every weight is rounded to bf16 at load and every tensor
//! between steps is bf16, so the records carry dtype `BF16`. What stays in F32 follows usual
//! practice (Hugging Face's `LlamaRMSNorm` normalizes in float32, its attention takes the
//! softmax in float32, a BF16 GEMM accumulates in f32, PyTorch's elementwise bf16 kernels
//! compute in float): each step below computes in F32 from its bf16 inputs and rounds its
//! output to bf16 **once**. (One difference from `LlamaRMSNorm`: it multiplies by the weight
//! after rounding, a second rounding this engine does not make.)
//!
//! | rounding point (bf16 output) | computed in F32 |
//! |---|---|
//! | `attn_norm`, `ffn_norm`, `out_norm` | RMSNorm: mean square, scale, weight |
//! | `q`, `k`, `v`, `attn_out`, `ffn_gate`, `ffn_up`, `ffn_out`, `logits` | the matrix product (bf16 operands widened, f32 accumulation) |
//! | `q_rope`, `k_rope` (and the KV cache) | the rotation, with F32 cos/sin tables |
//! | `attn_probs` | scores `q·kᵀ`, scale, mask, softmax |
//! | `attn_ctx` | `probs · v` |
//! | `silu(gate)` (not traced) | silu |
//! | `ffn_act` = silu(gate) · up, `ffn_inp`, `l_out` | the product or the residual sum |
//!
//! These are exactly the points where `reference_engine::Precision::Bf16` rounds, so the
//! reference in BF16 is this engine's calibration baseline. In F32 the widenings and roundings
//! are no-ops and the engine computes what it computed before the BF16 mode existed.
//!
//! **Architecture invariant:** no code is shared with the reference engine; the two are written
//! independently so that a mistake in one is not mirrored in the other.

mod bug;
mod events;
mod gguf;
mod linear;

use std::path::Path;

use candle_core::{DType, Device, Result, Tensor, D};
use trace_core::{Context, Tracer};
use trace_events::{Exit, InferenceTracer, ModelInfo, TraceStep};

pub use bug::{Bug, Expected, UnknownBug};
pub use events::{decode_stream, token_string};
use events::{exit_logits, exit_with, stopped, Ev};
use linear::Linear;

/// Greedy sampling, as the SAMPLE events report it: temperature 0 (the probabilities shown are
/// the untempered softmax) and the single best token.
pub const GREEDY: (f32, usize) = (0.0, 1);

/// File name of the model configuration inside a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Model hyper-parameters, read from the Hugging Face Llama `config.json` keys of the same names.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Vocabulary size (256 for byte-level models).
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (fewer than query heads: grouped-query attention).
    pub num_key_value_heads: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embedding base.
    pub rope_theta: f64,
    /// The longest sequence (prompt and generated tokens) the model was trained for, when the
    /// model says (`max_position_embeddings`, a GGUF's `context_length`); longer runs are refused.
    pub max_position_embeddings: Option<usize>,
}

impl Config {
    /// Parses the JSON text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(candle_core::Error::wrap)?;
        let int = |key: &str| -> Result<usize> {
            v.get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| candle_core::Error::msg(format!("config: missing integer `{key}`")))
        };
        let float = |key: &str| -> Result<f64> {
            v.get(key)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| candle_core::Error::msg(format!("config: missing number `{key}`")))
        };
        Config {
            vocab_size: int("vocab_size")?,
            hidden_size: int("hidden_size")?,
            intermediate_size: int("intermediate_size")?,
            num_hidden_layers: int("num_hidden_layers")?,
            num_attention_heads: int("num_attention_heads")?,
            num_key_value_heads: int("num_key_value_heads")?,
            rms_norm_eps: float("rms_norm_eps")?,
            rope_theta: float("rope_theta")?,
            max_position_embeddings: int("max_position_embeddings").ok(),
        }
        .checked()
    }

    /// `self` if its sizes fit together: the hidden size splits into heads of even size, the
    /// query heads into key/value groups, at least one layer and one token.
    fn checked(self) -> Result<Self> {
        let heads_ok = self.num_attention_heads > 0
            && self.num_key_value_heads > 0
            && self.hidden_size.is_multiple_of(self.num_attention_heads)
            && self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
            && self.head_dim().is_multiple_of(2);
        if !heads_ok || self.num_hidden_layers == 0 || self.vocab_size == 0 {
            return Err(candle_core::Error::msg(format!(
                "config: inconsistent sizes (hidden must split into heads of even size, query \
                 heads into key/value groups, at least one layer): {self:?}"
            )));
        }
        Ok(self)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

struct Block {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
}

/// Where a generation is traced: tensor records, pipeline events, both or neither.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traces<'a> {
    /// The tensor records (`blk0/q`, ...), compared by trace-diff.
    pub tensors: Option<&'a Tracer>,
    /// The pipeline events and Jidoka checks.
    pub events: Option<&'a InferenceTracer>,
}

/// What [`Llama::generate_text`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The prompt's token ids (one per byte).
    pub prompt_tokens: Vec<u32>,
    /// The sampled tokens: one for the prefill, then one per decode step.
    pub tokens: Vec<u32>,
    /// The generated text, byte-level decoded.
    pub text: String,
}

/// The loaded model (weights on the CPU in F32 or BF16), possibly with a planted [`Bug`].
pub struct Llama {
    name: String,
    cfg: Config,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    bug: Option<Bug>,
    /// F32 or BF16: the weights' and activations' dtype.
    dtype: DType,
    /// The weights' storage as the events' model info reports it (`F32`, `BF16`, `Q4_1`, ...).
    quant: String,
    device: Device,
}

/// Per-layer KV cache: keys and values as `[kv_heads, positions, head_dim]`.
type Cache = Vec<Option<(Tensor, Tensor)>>;

impl Llama {
    /// Loads `config.json` and `model.safetensors` from `dir` in F32, planting `bug` if given.
    pub fn load(dir: &Path, bug: Option<Bug>) -> Result<Self> {
        Self::load_with(dir, bug, DType::F32)
    }

    /// Loads `config.json` and `model.safetensors` from `dir` to run in `dtype`
    /// ([`DType::F32`] or [`DType::BF16`], see [the module documentation](self)), planting
    /// `bug` if given.
    pub fn load_with(dir: &Path, bug: Option<Bug>, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16) {
            return Err(candle_core::Error::msg(format!(
                "the engine runs in F32 or BF16, not {dtype:?}"
            )));
        }
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| candle_core::Error::msg(format!("{}: {e}", config_path.display())))?;
        let cfg = Config::from_json(&text)?;
        let device = Device::Cpu;
        let mut weights = candle_core::safetensors::load(dir.join(WEIGHTS_FILE), &device)?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = weights
                .remove(name)
                .ok_or_else(|| candle_core::Error::msg(format!("weights: missing `{name}`")))?;
            if t.dims() != shape {
                return Err(candle_core::Error::msg(format!(
                    "weights: `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            t.to_dtype(dtype)
        };
        let (e, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let kv = cfg.num_key_value_heads * cfg.head_dim();
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut w_gate = Linear::Dense(take(&format!("{p}.mlp.gate_proj.weight"), &[f, e])?);
            if bug == Some(Bug::MlpTransposedWeight) && i == Bug::mlp_layer(cfg.num_hidden_layers) {
                w_gate = w_gate.data_transposed()?;
            }
            let mut dense = |name: &str, shape: &[usize]| {
                take(&format!("{p}.{name}"), shape).map(Linear::Dense)
            };
            blocks.push(Block {
                wq: dense("self_attn.q_proj.weight", &[e, e])?,
                wk: dense("self_attn.k_proj.weight", &[kv, e])?,
                wv: dense("self_attn.v_proj.weight", &[kv, e])?,
                wo: dense("self_attn.o_proj.weight", &[e, e])?,
                w_gate,
                w_up: dense("mlp.up_proj.weight", &[f, e])?,
                w_down: dense("mlp.down_proj.weight", &[e, f])?,
                attn_norm: take(&format!("{p}.input_layernorm.weight"), &[e])?,
                ffn_norm: take(&format!("{p}.post_attention_layernorm.weight"), &[e])?,
            });
        }
        Ok(Llama {
            name: dir.display().to_string(),
            embed: take("model.embed_tokens.weight", &[v, e])?,
            norm: take("model.norm.weight", &[e])?,
            lm_head: Linear::Dense(take("lm_head.weight", &[v, e])?),
            blocks,
            cfg,
            bug,
            dtype,
            quant: dtype.as_str().to_uppercase(),
            device,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The dtype of the weights and activations (and of the records).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The model description attached to an event history.
    pub fn model_info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            num_layers: self.cfg.num_hidden_layers,
            hidden_dim: self.cfg.hidden_size,
            vocab_size: self.cfg.vocab_size,
            num_heads: self.cfg.num_attention_heads,
            quant_type: Some(self.quant.clone()),
            ..ModelInfo::default()
        }
    }

    /// Greedy generation: a prefill over `prompt` (`seq` 0), then `steps` decode steps
    /// (`seq` 1..=steps), each feeding back the previous token. Returns the `steps + 1` sampled
    /// tokens; every named point is recorded to `tracer` when given.
    pub fn generate(
        &self,
        prompt: &[u32],
        steps: usize,
        tracer: Option<&Tracer>,
    ) -> Result<Vec<u32>> {
        let off = InferenceTracer::disabled();
        let traces = Traces {
            tensors: tracer,
            events: None,
        };
        self.run(prompt, steps, traces, &off)
    }

    /// Greedy generation from text: byte-level tokenization of `prompt`, then
    /// [`generate`](Self::generate)'s passes, traced into `traces`: tensor records as
    /// `generate` writes them, and the pipeline events (model info, TOKENIZE, then per
    /// iteration EMBED, TRANSFORMER_BLOCK/ATTENTION/FFN per layer, LM_HEAD, SAMPLE, DECODE).
    pub fn generate_text(
        &self,
        prompt: &str,
        steps: usize,
        traces: Traces<'_>,
    ) -> Result<Generation> {
        let off;
        let ev = match traces.events {
            Some(ev) => ev,
            None => {
                off = InferenceTracer::disabled();
                &off
            }
        };
        if ev.is_enabled() {
            ev.set_model_info(self.model_info());
        }
        let span = ev.enter(
            TraceStep::Tokenize,
            trace_events::Site::prefill().name("tokens"),
        );
        let prompt_tokens = encode_bytes(prompt);
        span.exit(Exit::new().tokens(prompt, &prompt_tokens))
            .map_err(stopped)?;
        let tokens = self.run(&prompt_tokens, steps, traces, ev)?;
        Ok(Generation {
            text: decode_bytes(&tokens),
            prompt_tokens,
            tokens,
        })
    }

    /// The passes of a generation; `ev` may be a disabled tracer.
    fn run(
        &self,
        prompt: &[u32],
        steps: usize,
        traces: Traces<'_>,
        ev: &InferenceTracer,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(candle_core::Error::msg(
                "the prompt must hold at least one token",
            ));
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(candle_core::Error::msg(format!(
                "token {bad} is outside the vocabulary of {}",
                self.cfg.vocab_size
            )));
        }
        if let Some(max) = self.cfg.max_position_embeddings {
            if prompt.len() + steps > max {
                return Err(candle_core::Error::msg(format!(
                    "{} prompt tokens and {steps} decode steps exceed the model's context of \
                     {max} positions",
                    prompt.len()
                )));
            }
        }
        let mut cache: Cache = vec![None; self.cfg.num_hidden_layers];
        let mut tokens = Vec::with_capacity(steps + 1);
        let mut input = prompt.to_vec();
        for seq in 0..=steps as u64 {
            let ev = Ev {
                tracer: ev,
                iteration: seq as usize,
            };
            let next = self.forward(&input, seq, &mut cache, traces.tensors, ev)?;
            tokens.push(next);
            let span = ev.enter_bare(TraceStep::Decode, Some("next_token"));
            if span.is_recording() {
                let piece = token_string(next);
                let text = decode_stream(&tokens);
                span.exit(Exit::new().decoded(next, &text).token_string(&piece))
                    .map_err(stopped)?;
            }
            input = vec![next];
        }
        Ok(tokens)
    }

    fn forward(
        &self,
        tokens: &[u32],
        seq: u64,
        cache: &mut Cache,
        tracer: Option<&Tracer>,
        ev: Ev<'_>,
    ) -> Result<u32> {
        let cfg = &self.cfg;
        let t_len = tokens.len();
        let (n_heads, n_kv, head_dim) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let start = cache[0].as_ref().map_or(Ok(0), |(k, _)| k.dim(1))?;
        let tr = Tr { tracer, seq };

        let ids = Tensor::new(tokens, &self.device)?;
        tr.rec("tokens", -1, &ids)?;
        let span = ev.enter(TraceStep::Embed, None, Some("embed"), &ids)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        tr.rec("embed", -1, &x)?;
        exit_with(span, &x)?;

        let rope_start = match self.bug {
            Some(Bug::RopeOffByOne) if seq > 0 => start + 1,
            _ => start,
        };
        let (cos, sin) = self.rope_tables(rope_start, t_len)?;
        let mask = causal_mask(start, t_len, &self.device)?;
        let n_layers = self.blocks.len();

        for (i, (b, slot)) in self.blocks.iter().zip(cache.iter_mut()).enumerate() {
            let block = ev.enter(TraceStep::TransformerBlock, Some(i), None, &x)?;
            let attention = ev.enter(TraceStep::Attention, Some(i), None, &x)?;
            let h = self.rms_norm(&x, &b.attn_norm)?;
            tr.blk(i, "attn_norm", &h)?;
            let q = self.linear(&h, &b.wq)?;
            let k = self.linear(&h, &b.wk)?;
            let v = self.linear(&h, &b.wv)?;
            tr.blk(i, "q", &q)?;
            tr.blk(i, "k", &k)?;
            tr.blk(i, "v", &v)?;

            let heads =
                |m: &Tensor, count: usize| m.reshape((t_len, count, head_dim))?.transpose(0, 1);
            // Rotary embeddings in F32, rounded once.
            let q = rope(&to_f32(&heads(&q, n_heads)?)?, &cos, &sin)?.to_dtype(self.dtype)?;
            let k = rope(&to_f32(&heads(&k, n_kv)?)?, &cos, &sin)?.to_dtype(self.dtype)?;
            let v = heads(&v, n_kv)?;
            tr.blk(i, "q_rope", &q)?;
            tr.blk(i, "k_rope", &k)?;

            let (k_all, v_all) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?),
                None => (k.contiguous()?, v.contiguous()?),
            };
            *slot = Some((k_all.clone(), v_all.clone()));
            let (k_att, v_att) = match self.bug {
                Some(Bug::KvCacheDropNewest) if seq > 0 => {
                    let keep = k_all.dim(1)? - 1;
                    (k_all.narrow(1, 0, keep)?, v_all.narrow(1, 0, keep)?)
                }
                _ => (k_all, v_all),
            };
            let k_att = repeat_kv(&k_att, n_heads / n_kv)?;
            let v_att = repeat_kv(&v_att, n_heads / n_kv)?;

            // Scores, scale, mask and softmax in F32; the probabilities are rounded once.
            let mut scores = to_f32(&q)?.contiguous()?.matmul(&to_f32(&k_att)?.t()?)?;
            if self.bug != Some(Bug::SoftmaxNoScale) {
                scores = scores.affine(1.0 / (head_dim as f64).sqrt(), 0.0)?;
            }
            let own_mask = match self.bug {
                Some(Bug::AttnMaskNan) if i == Bug::mask_layer(n_layers) => {
                    Some(mask_hiding_diagonal(start, t_len, &self.device)?)
                }
                _ => None,
            };
            if let Some(mask) = own_mask.as_ref().or(mask.as_ref()) {
                scores = scores.broadcast_add(mask)?;
            }
            let probs = softmax_last(&scores)?.to_dtype(self.dtype)?;
            tr.blk(i, "attn_probs", &probs)?;
            let ctx = to_f32(&probs)?
                .matmul(&to_f32(&v_att)?)?
                .to_dtype(self.dtype)?
                .transpose(0, 1)?
                .reshape((t_len, n_heads * head_dim))?;
            tr.blk(i, "attn_ctx", &ctx)?;
            let attn_out = self.linear(&ctx, &b.wo)?;
            tr.blk(i, "attn_out", &attn_out)?;
            exit_with(attention, &attn_out)?;
            let x_mid = (&x + &attn_out)?;
            tr.blk(i, "ffn_inp", &x_mid)?;
            let ffn = ev.enter(TraceStep::Ffn, Some(i), None, &x_mid)?;

            let h = self.rms_norm(&x_mid, &b.ffn_norm)?;
            tr.blk(i, "ffn_norm", &h)?;
            let gate = self.linear(&h, &b.w_gate)?;
            let up = self.linear(&h, &b.w_up)?;
            tr.blk(i, "ffn_gate", &gate)?;
            tr.blk(i, "ffn_up", &up)?;
            // silu in F32, rounded once, then the product in the engine's dtype.
            let act = (to_f32(&gate)?.silu()?.to_dtype(self.dtype)? * up)?;
            tr.blk(i, "ffn_act", &act)?;
            let ffn_out = self.linear(&act, &b.w_down)?;
            tr.blk(i, "ffn_out", &ffn_out)?;
            exit_with(ffn, &ffn_out)?;
            x = (x_mid + ffn_out)?;
            tr.blk(i, "l_out", &x)?;
            exit_with(block, &x)?;
        }

        let lm_head = ev.enter(TraceStep::LmHead, None, Some("logits"), &x)?;
        let out = self.rms_norm(&x, &self.norm)?;
        tr.rec("out_norm", -1, &out)?;
        let logits = self
            .linear(&out.narrow(0, t_len - 1, 1)?, &self.lm_head)?
            .squeeze(0)?;
        tr.rec("logits", -1, &logits)?;
        exit_logits(lm_head, &logits, |e| e)?;
        let sample = ev.enter(TraceStep::Sample, None, Some("next_token"), &logits)?;
        let next = logits.argmax(0)?.to_scalar::<u32>()?;
        if tr.tracer.is_some() {
            tr.rec("next_token", -1, &Tensor::new(&[next], &self.device)?)?;
        }
        let (temperature, top_k) = GREEDY;
        exit_logits(sample, &logits, |e| e.sampled(next, temperature, top_k))?;
        Ok(next)
    }

    /// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · w, computed in F32 and
    /// rounded once to the engine's dtype.
    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = match self.bug {
            Some(Bug::RmsNormEps) => self.cfg.rms_norm_eps * 10.0,
            _ => self.cfg.rms_norm_eps,
        };
        let x = to_f32(x)?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&ms.affine(1.0, eps)?.sqrt()?)?
            .broadcast_mul(&to_f32(w)?)?
            .to_dtype(self.dtype)
    }

    /// A linear layer, `x · wᵀ`, rounded once to the engine's dtype (see [`Linear::forward`]).
    fn linear(&self, x: &Tensor, w: &Linear) -> Result<Tensor> {
        w.forward(x)?.to_dtype(self.dtype)
    }

    /// `cos` and `sin` of the rotation angles for positions `start..start + len`, each
    /// `[len, head_dim]` (the half-size table repeated, to match "rotate half").
    fn rope_tables(&self, start: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let d = self.cfg.head_dim();
        let half = d / 2;
        let mut cos = Vec::with_capacity(len * d);
        let mut sin = Vec::with_capacity(len * d);
        for p in start..start + len {
            let angles: Vec<f64> = (0..half)
                .map(|c| p as f64 / self.cfg.rope_theta.powf((2 * c) as f64 / d as f64))
                .collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos() as f32));
                sin.extend(angles.iter().map(|a| a.sin() as f32));
            }
        }
        Ok((
            Tensor::from_vec(cos, (len, d), &self.device)?,
            Tensor::from_vec(sin, (len, d), &self.device)?,
        ))
    }
}

/// `t` in F32: the same tensor when it is F32 already, widened exactly from BF16.
fn to_f32(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// Rotary embedding of `x: [heads, T, D]`: x·cos + rotate_half(x)·sin.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

/// `[kv_heads, L, D]` → `[kv_heads · rep, L, D]`, query head h reading key/value head h / rep.
fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (kv, l, d) = x.dims3()?;
    x.unsqueeze(1)?
        .expand((kv, rep, l, d))?
        .reshape((kv * rep, l, d))
}

/// `[T, start + T]` additive mask hiding future positions, or `None` for a single token.
fn causal_mask(start: usize, len: usize, device: &Device) -> Result<Option<Tensor>> {
    if len == 1 {
        return Ok(None);
    }
    let total = start + len;
    let mask: Vec<f32> = (0..len)
        .flat_map(|t| {
            (0..total).map(move |j| {
                if j > start + t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (len, total), device).map(Some)
}

/// [`causal_mask`] as [`Bug::AttnMaskNan`] builds it: `>=` for `>`, so each token is hidden
/// from itself too and the first token of a prefill sees nothing at all. Built for a single
/// token as well (there it hides the token from itself).
fn mask_hiding_diagonal(start: usize, len: usize, device: &Device) -> Result<Tensor> {
    let total = start + len;
    let mask: Vec<f32> = (0..len)
        .flat_map(|t| {
            (0..total).map(move |j| {
                if j >= start + t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (len, total), device)
}

fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Byte-level decoding: each token is one byte; invalid UTF-8 is replaced.
pub fn decode_bytes(tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens
        .iter()
        .map(|&t| u8::try_from(t).unwrap_or(b'?'))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Byte-level tokenization: one token per UTF-8 byte of `text`.
pub fn encode_bytes(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// Records a tensor with this pass's `seq` and the point's layer and stage.
struct Tr<'a> {
    tracer: Option<&'a Tracer>,
    seq: u64,
}

impl Tr<'_> {
    /// Records point `point` of block `i` as `blk{i}/{point}`; the name is only built when
    /// there is a tracer.
    fn blk(&self, i: usize, point: &str, t: &Tensor) -> Result<()> {
        let Some(tracer) = self.tracer else {
            return Ok(());
        };
        let ctx = Context::default()
            .seq(self.seq)
            .layer(i as i64)
            .stage(point);
        crate::record(tracer, &format!("blk{i}/{point}"), &ctx, t).map(drop)
    }

    fn rec(&self, name: &str, layer: i64, t: &Tensor) -> Result<()> {
        let Some(tracer) = self.tracer else {
            return Ok(());
        };
        let stage = name.rsplit('/').next().unwrap_or(name);
        let ctx = Context::default().seq(self.seq).layer(layer).stage(stage);
        crate::record(tracer, name, &ctx, t).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Tensor, b: &[f32]) {
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} != {b:?}");
        }
    }

    #[test]
    fn rope_rotates_pairs_half_apart() {
        // One head, one token, D = 4, at angle (1, 0.01) for pairs (0, 2) and (1, 3).
        let x = Tensor::new(&[[[1f32, 2.0, 3.0, 4.0]]], &Device::Cpu).unwrap();
        let (a, b) = (1f64, 0.01f64);
        let cos = Tensor::new(
            &[[
                a.cos() as f32,
                b.cos() as f32,
                a.cos() as f32,
                b.cos() as f32,
            ]],
            &Device::Cpu,
        )
        .unwrap();
        let sin = Tensor::new(
            &[[
                a.sin() as f32,
                b.sin() as f32,
                a.sin() as f32,
                b.sin() as f32,
            ]],
            &Device::Cpu,
        )
        .unwrap();
        let r = rope(&x, &cos, &sin).unwrap();
        let expect = [
            (1.0 * a.cos() - 3.0 * a.sin()) as f32,
            (2.0 * b.cos() - 4.0 * b.sin()) as f32,
            (3.0 * a.cos() + 1.0 * a.sin()) as f32,
            (4.0 * b.cos() + 2.0 * b.sin()) as f32,
        ];
        close(&r, &expect);
    }

    #[test]
    fn repeat_kv_maps_query_head_to_group() {
        let x = Tensor::new(&[[[1f32]], [[2.0]]], &Device::Cpu).unwrap();
        close(&repeat_kv(&x, 2).unwrap(), &[1.0, 1.0, 2.0, 2.0]);
    }

    #[test]
    fn mask_and_softmax() {
        let m = causal_mask(1, 2, &Device::Cpu).unwrap().unwrap();
        let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v[..3], [0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(v[3..], [0.0, 0.0, 0.0]);
        assert!(causal_mask(5, 1, &Device::Cpu).unwrap().is_none());
        let s = Tensor::new(&[[0f32, 0.0, f32::NEG_INFINITY]], &Device::Cpu).unwrap();
        close(&softmax_last(&s).unwrap(), &[0.5, 0.5, 0.0]);
    }

    #[test]
    fn config_parsing() {
        let good = r#"{"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0}"#;
        let cfg = Config::from_json(good).unwrap();
        assert_eq!(cfg.head_dim(), 16);
        let bad = good.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
        assert!(Config::from_json(&bad).is_err());
        let missing = good.replace("\"rope_theta\": 10000.0", "\"x\": 1");
        assert!(Config::from_json(&missing)
            .unwrap_err()
            .to_string()
            .contains("rope_theta"));
    }

    /// A tiny model (1 or more layers, hidden 8, 2 heads, 1 kv head) with deterministic weights.
    pub(super) fn tiny_model(dir: &Path, layers: usize) {
        let config = format!(
            r#"{{"vocab_size": 256, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": {layers}, "num_attention_heads": 2, "num_key_value_heads": 1,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0}}"#
        );
        std::fs::write(dir.join(CONFIG_FILE), config).unwrap();
        let mut seed = 1u32;
        let mut tensor = |shape: &[usize], center: f32, scale: f32| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    center + scale * ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
                })
                .collect();
            Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
        };
        let mut w = std::collections::HashMap::new();
        w.insert(
            "model.embed_tokens.weight".to_owned(),
            tensor(&[256, 8], 0.0, 0.1),
        );
        for i in 0..layers {
            let p = format!("model.layers.{i}");
            for (name, shape) in [
                ("self_attn.q_proj.weight", [8, 8]),
                ("self_attn.k_proj.weight", [4, 8]),
                ("self_attn.v_proj.weight", [4, 8]),
                ("self_attn.o_proj.weight", [8, 8]),
                ("mlp.gate_proj.weight", [16, 8]),
                ("mlp.up_proj.weight", [16, 8]),
                ("mlp.down_proj.weight", [8, 16]),
            ] {
                w.insert(format!("{p}.{name}"), tensor(&shape, 0.0, 1.0));
            }
            for name in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
                w.insert(format!("{p}.{name}"), tensor(&[8], 1.0, 0.1));
            }
        }
        w.insert("model.norm.weight".to_owned(), tensor(&[8], 1.0, 0.1));
        w.insert("lm_head.weight".to_owned(), tensor(&[256, 8], 0.0, 1.0));
        candle_core::safetensors::save(&w, dir.join(WEIGHTS_FILE)).unwrap();
    }

    fn events() -> InferenceTracer {
        InferenceTracer::new(trace_events::TraceConfig::enabled())
    }

    #[test]
    fn events_follow_the_pipeline() {
        use trace_events::EventType;
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path(), 2);
        let model = Llama::load(dir.path(), None).unwrap();
        let ev = events();
        let traces = Traces {
            tensors: None,
            events: Some(&ev),
        };
        let g = model.generate_text("ab", 1, traces).unwrap();
        assert_eq!(g.prompt_tokens, vec![97, 98]);
        assert_eq!(g.tokens, model.generate(&[97, 98], 1, None).unwrap());
        assert!(ev.validate_contracts().is_empty());
        let doc = ev.document();
        assert_eq!(doc.model.num_layers, 2);
        // Entries in order for the prefill: TOKENIZE, EMBED, per layer BLOCK, ATTENTION, FFN,
        // then LM_HEAD, SAMPLE, DECODE; then the same from EMBED for the decode step.
        let entered: Vec<(TraceStep, u64, Option<u64>)> = doc
            .events
            .iter()
            .filter(|e| e.event_type == EventType::TaskStateEntered)
            .map(|e| (e.step.unwrap(), e.iteration, e.layer))
            .collect();
        let mut expected = vec![(TraceStep::Tokenize, 0, None)];
        for it in 0..2 {
            expected.push((TraceStep::Embed, it, None));
            for l in 0..2 {
                for step in [
                    TraceStep::TransformerBlock,
                    TraceStep::Attention,
                    TraceStep::Ffn,
                ] {
                    expected.push((step, it, Some(l)));
                }
            }
            for step in [TraceStep::LmHead, TraceStep::Sample, TraceStep::Decode] {
                expected.push((step, it, None));
            }
        }
        assert_eq!(entered, expected);
        // The EMBED entry saw the token ids, its exit the embeddings.
        let embed_exit = doc
            .events
            .iter()
            .find(|e| {
                e.event_type == EventType::TaskStateExited && e.step == Some(TraceStep::Embed)
            })
            .unwrap();
        assert_eq!(
            (
                embed_exit.input_shape.clone(),
                embed_exit.output_shape.clone()
            ),
            (vec![2], vec![2, 8])
        );
    }

    #[test]
    fn a_disabled_or_filtered_tracer_records_nothing_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path(), 1);
        let model = Llama::load(dir.path(), None).unwrap();
        let off = InferenceTracer::disabled();
        let traces = Traces {
            tensors: None,
            events: Some(&off),
        };
        let g = model.generate_text("hi", 2, traces).unwrap();
        assert!(off.events().is_empty());
        assert_eq!(
            g.tokens,
            model
                .generate_text("hi", 2, Traces::default())
                .unwrap()
                .tokens
        );
        let config = trace_events::TraceConfig::enabled()
            .with_steps("sample")
            .unwrap();
        let some = InferenceTracer::new(config);
        let traces = Traces {
            tensors: None,
            events: Some(&some),
        };
        model.generate_text("hi", 2, traces).unwrap();
        assert_eq!(some.events().len(), 2 * 3);
    }

    #[test]
    fn stop_policy_ends_the_run_at_the_nan_and_closes_every_span() {
        use trace_events::{EventType, Policy, TraceConfig};
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path(), 2);
        let model = Llama::load(dir.path(), Some(Bug::AttnMaskNan)).unwrap();
        let ev = InferenceTracer::new(TraceConfig {
            policy: Policy::Stop,
            ..TraceConfig::enabled()
        });
        let traces = Traces {
            tensors: None,
            events: Some(&ev),
        };
        let err = model
            .generate_text("abc", 2, traces)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("NaN in layer 1 ATTENTION output, first at index 0"),
            "{err}"
        );
        // The `?` return dropped layer 1's block span: ExecutionFailed, and the history is sound.
        let doc = ev.document();
        assert!(ev.validate_contracts().is_empty());
        let last = doc.events.last().unwrap();
        assert_eq!(
            (last.event_type, last.step, last.layer),
            (
                EventType::ExecutionFailed,
                Some(TraceStep::TransformerBlock),
                Some(1)
            )
        );
        assert_eq!(doc.error_count, 2);
    }

    #[test]
    fn bf16_runs_with_events_and_rounds_the_weights() {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(dir.path(), 2);
        let model = Llama::load_with(dir.path(), None, DType::BF16).unwrap();
        assert_eq!(model.embed.dtype(), DType::BF16);
        let ev = events();
        let traces = Traces {
            tensors: None,
            events: Some(&ev),
        };
        let g = model.generate_text("ab", 2, traces).unwrap();
        assert_eq!(g.tokens, model.generate(&[97, 98], 2, None).unwrap());
        assert!(ev.validate_contracts().is_empty());
        assert_eq!(ev.document().model.quant_type.as_deref(), Some("BF16"));
        // The BF16 weights are the F32 ones rounded to nearest.
        let f32_model = Llama::load(dir.path(), None).unwrap();
        let (Linear::Dense(w32), Linear::Dense(w16)) = (&f32_model.lm_head, &model.lm_head) else {
            panic!("safetensors weights are dense");
        };
        let w32: Vec<f32> = w32.flatten_all().unwrap().to_vec1().unwrap();
        let w16: Vec<half::bf16> = w16.flatten_all().unwrap().to_vec1().unwrap();
        assert!(w32
            .iter()
            .zip(&w16)
            .all(|(a, b)| half::bf16::from_f32(*a) == *b));
        assert!(w32.iter().zip(&w16).any(|(a, b)| *a != b.to_f32()));
    }

    #[test]
    fn bytes() {
        assert_eq!(decode_bytes(&encode_bytes("héllo")), "héllo");
    }
}
