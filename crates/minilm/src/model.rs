//! The BERT encoder on candle-core tensors, with mean pooling and L2 normalization.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use trace_core::{Context, Tracer};

use crate::bug::Bug;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::tokenize::Batch;

/// The epsilon [`Bug::LayerNormEps`] puts in every layer norm (PyTorch's `nn.LayerNorm`
/// default).
const BUGGY_LAYER_NORM_EPS: f64 = 1e-5;

/// Where traces go: an explicit tracer, or the global env-driven one (`TENSOR_TRACE_DIR`).
#[derive(Clone, Copy, Debug, Default)]
pub enum Trace<'a> {
    /// `trace_candle::dump_trace_with`: a no-op unless `TENSOR_TRACE_DIR` is set.
    #[default]
    Env,
    /// `trace_candle::record` into this tracer.
    To(&'a Tracer),
}

impl Trace<'_> {
    fn record(self, name: &str, layer: i64, stage: &str, t: &Tensor) -> Result<()> {
        let ctx = Context::default().seq(0).layer(layer).stage(stage);
        match self {
            Trace::Env => trace_candle::dump_trace_with(name, &ctx, t)?,
            Trace::To(tracer) => {
                trace_candle::record(tracer, name, &ctx, t)?;
            }
        }
        Ok(())
    }

    /// Records `layer{i}/{stage}` reshaped to `shape`; with tracing off it neither builds the
    /// name nor reshapes.
    fn record_layer(
        self,
        i: usize,
        stage: &str,
        t: &Tensor,
        shape: (usize, usize, usize),
    ) -> Result<()> {
        if matches!(self, Trace::Env) && !trace_core::enabled() {
            return Ok(());
        }
        self.record(
            &format!("layer{i}/{stage}"),
            i as i64,
            stage,
            &t.reshape(shape)?,
        )
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

struct Linear {
    /// `[out, in]`, as PyTorch stores it.
    weight: Tensor,
    bias: Tensor,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_output: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// all-MiniLM-L6-v2's BERT encoder with its sentence-transformers head (mean pooling, L2
/// normalization), in F32 on the CPU.
pub struct Model {
    config: Config,
    bug: Option<Bug>,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("bug", &self.bug)
            .finish_non_exhaustive()
    }
}

struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| Error::MissingWeight {
            name: name.to_owned(),
        })?;
        if t.dims() != shape {
            return Err(Error::WeightShape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                actual: t.dims().to_vec(),
            });
        }
        Ok(t.to_dtype(DType::F32)?)
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{prefix}.weight"), &[out, inp])?,
            bias: self.get(&format!("{prefix}.bias"), &[out])?,
        })
    }

    fn norm(&self, prefix: &str, n: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.get(&format!("{prefix}.weight"), &[n])?,
            bias: self.get(&format!("{prefix}.bias"), &[n])?,
        })
    }
}

impl Model {
    /// Loads `model.safetensors` (sentence-transformers' tensor names, without a `bert.`
    /// prefix) for `config`, planting `bug` if given.
    pub fn load(weights: &Path, config: Config, bug: Option<Bug>) -> Result<Self> {
        config.validate()?;
        let tensors =
            candle_core::safetensors::load(weights, &Device::Cpu).map_err(|e| Error::Weights {
                path: weights.to_owned(),
                message: e.to_string(),
            })?;
        // Some exports prefix every name with `bert.`; accept both spellings.
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| (k.strip_prefix("bert.").map(str::to_owned).unwrap_or(k), v))
            .collect();
        Self::from_tensors(tensors, config, bug)
    }

    /// Builds the model from named tensors (the names of `model.safetensors`).
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        config: Config,
        bug: Option<Bug>,
    ) -> Result<Self> {
        config.validate()?;
        let w = Weights { tensors };
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                Ok(Layer {
                    query: w.linear(&format!("{p}.attention.self.query"), h, h)?,
                    key: w.linear(&format!("{p}.attention.self.key"), h, h)?,
                    value: w.linear(&format!("{p}.attention.self.value"), h, h)?,
                    attn_output: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                    attn_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                    intermediate: w.linear(&format!("{p}.intermediate.dense"), f, h)?,
                    output: w.linear(&format!("{p}.output.dense"), h, f)?,
                    output_norm: w.norm(&format!("{p}.output.LayerNorm"), h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            word: w.get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position: w.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type: w.get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?,
            embed_norm: w.norm("embeddings.LayerNorm", h)?,
            layers,
            config,
            bug,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The planted bug, if any.
    pub fn bug(&self) -> Option<Bug> {
        self.bug
    }

    /// Plants `bug` (or removes the planted one with `None`) without reloading the weights.
    pub fn set_bug(&mut self, bug: Option<Bug>) {
        self.bug = bug;
    }

    /// Runs the encoder on a tokenized batch and returns the normalized sentence embeddings,
    /// `[batch, hidden]`, tracing every stage (see the crate docs for the names).
    pub fn forward(&self, batch: &Batch, trace: Trace<'_>) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t, h) = (batch.batch, batch.len, cfg.hidden_size);
        if batch.ids.len() != b * t || batch.type_ids.len() != b * t || batch.mask.len() != b * t {
            return Err(Error::BatchShape {
                batch: b,
                len: t,
                ids: batch.ids.len(),
                type_ids: batch.type_ids.len(),
                mask: batch.mask.len(),
            });
        }
        if t > cfg.max_position_embeddings {
            return Err(Error::TooLong {
                len: t,
                max: cfg.max_position_embeddings,
            });
        }
        let dev = Device::Cpu;
        let ids = Tensor::from_slice(&batch.ids, (b, t), &dev)?;
        let type_ids = Tensor::from_slice(&batch.type_ids, (b, t), &dev)?;
        let mask_u32 = Tensor::from_slice(&batch.mask, (b, t), &dev)?;
        trace.record("tokens", -1, "tokens", &ids)?;
        trace.record("attention_mask", -1, "attention_mask", &mask_u32)?;
        let mask = mask_u32.to_dtype(DType::F32)?;

        // Embeddings: word + position + token type, then layer norm. Rows are `b * t` tokens.
        let word = self.word.index_select(&ids.flatten_all()?, 0)?;
        let types = self.token_type.index_select(&type_ids.flatten_all()?, 0)?;
        let positions = self.position.narrow(0, 0, t)?.repeat((b, 1))?;
        let x = ((word + types)? + positions)?;
        let mut x = self.layer_norm(&x, &self.embed_norm)?;
        trace.record("embeddings", -1, "embeddings", &x.reshape((b, t, h))?)?;

        // Additive key mask `[b, 1, 1, t]`: 0 for real tokens, -f32::MAX for padding (as
        // transformers uses the dtype's minimum), so padded keys get exactly zero weight.
        let key_mask = mask
            .affine(f64::from(f32::MAX), -f64::from(f32::MAX))?
            .reshape((b, 1, 1, t))?;
        for (i, layer) in self.layers.iter().enumerate() {
            let attn = self.attention(&x, layer, &key_mask, b, t)?;
            let attn_out = self.layer_norm(&(attn + &x)?, &layer.attn_norm)?;
            trace.record_layer(i, "attn_out", &attn_out, (b, t, h))?;
            let up = linear(&attn_out, &layer.intermediate)?;
            let act = if self.bug == Some(Bug::GeluTanh) {
                up.gelu()?
            } else {
                up.gelu_erf()?
            };
            let down = linear(&act, &layer.output)?;
            x = self.layer_norm(&(down + &attn_out)?, &layer.output_norm)?;
            trace.record_layer(i, "ffn_out", &x, (b, t, h))?;
        }

        // Mean pooling over the real tokens, then L2 normalization (sentence-transformers'
        // Pooling and Normalize modules).
        let x = x.reshape((b, t, h))?;
        let pooled = if self.bug == Some(Bug::MeanPoolPadding) {
            x.mean(1)?
        } else {
            let summed = x.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
            let count = mask.sum_keepdim(1)?.maximum(1e-9f32)?;
            summed.broadcast_div(&count)?
        };
        trace.record("pooled", -1, "pooled", &pooled)?;
        let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12f32)?;
        let normalized = pooled.broadcast_div(&norm)?;
        trace.record("normalized", -1, "normalized", &normalized)?;
        Ok(normalized)
    }

    /// Multi-head self-attention of `x` (`[b * t, hidden]`) up to the output projection,
    /// before the residual.
    fn attention(
        &self,
        x: &Tensor,
        layer: &Layer,
        key_mask: &Tensor,
        b: usize,
        t: usize,
    ) -> Result<Tensor> {
        let heads = self.config.num_attention_heads;
        let d = self.config.hidden_size / heads;
        let split = |l: &Linear| -> Result<Tensor> {
            Ok(linear(x, l)?
                .reshape((b, t, heads, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (
            split(&layer.query)?,
            split(&layer.key)?,
            split(&layer.value)?,
        );
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        let scores = if self.bug == Some(Bug::AttnMaskPadding) {
            scores
        } else {
            scores.broadcast_add(key_mask)?
        };
        let probs = softmax_last(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * t, heads * d))?;
        linear(&ctx, &layer.attn_output)
    }

    fn layer_norm(&self, x: &Tensor, norm: &LayerNorm) -> Result<Tensor> {
        let eps = if self.bug == Some(Bug::LayerNormEps) {
            BUGGY_LAYER_NORM_EPS
        } else {
            self.config.layer_norm_eps
        };
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_std = (var + eps)?.sqrt()?.recip()?;
        Ok(centered
            .broadcast_mul(&inv_std)?
            .broadcast_mul(&norm.weight)?
            .broadcast_add(&norm.bias)?)
    }
}

/// `x W^T + b` for `x` of shape `[rows, in]`.
fn linear(x: &Tensor, l: &Linear) -> Result<Tensor> {
    Ok(x.matmul(&l.weight.t()?)?.broadcast_add(&l.bias)?)
}

/// Softmax over the last dimension, shifted by the row maximum.
fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}
