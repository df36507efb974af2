//! The weight of a linear layer: a dense tensor (F32 or BF16, from safetensors or a GGUF's F32,
//! F16 and BF16 tensors) or a GGUF quantized tensor multiplied by candle-core's `QMatMul`, as
//! candle's own quantized Llama multiplies it.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

/// A `[out, in]` weight; `forward` computes `x · wᵀ` in F32.
#[derive(Clone)]
pub(crate) enum Linear {
    /// Stored as is (F32 or BF16), multiplied in F32.
    Dense(Tensor),
    /// GGUF blocks (Q4_0, Q4_1, Q8_0, the K-quants, ...). candle's CPU kernel, like llama.cpp's,
    /// quantizes each row of `x` to the type's companion 8-bit format (Q8_1 for Q4_1, Q8_0 for
    /// Q8_0, Q8_K for the K-quants) and takes integer dot products block by block.
    Quantized(Arc<QTensor>),
}

impl Linear {
    /// The weight of a GGUF tensor: quantized types stay quantized, F32/F16/BF16 become a dense
    /// F32 tensor (what `QMatMul::from_qtensor` does with them too).
    pub(crate) fn from_qtensor(q: QTensor) -> Result<Self> {
        match q.dtype() {
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Ok(Linear::Dense(q.dequantize(&Device::Cpu)?))
            }
            _ => Ok(Linear::Quantized(Arc::new(q))),
        }
    }

    /// `x · wᵀ` in F32: a BF16 weight or input is widened exactly first (candle's CPU backend has
    /// no BF16 matrix product), so in BF16 this is a GEMM accumulating in F32.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        match self {
            Linear::Dense(w) => x.matmul(&w.to_dtype(DType::F32)?.t()?),
            Linear::Quantized(q) => QMatMul::QTensor(q.clone()).forward(&x.contiguous()?),
        }
    }

    /// The `[out, in]` weight whose bytes are those of `wᵀ` (`[in, out]`, row-major), as
    /// [`Bug::MlpTransposedWeight`](super::Bug::MlpTransposedWeight) reads it. A quantized
    /// weight is dequantized, transposed and quantized again to its own type.
    pub(crate) fn data_transposed(&self) -> Result<Self> {
        let transposed = |w: &Tensor| -> Result<Tensor> {
            let (rows, cols) = w.dims2()?;
            w.t()?.contiguous()?.reshape((rows, cols))
        };
        match self {
            Linear::Dense(w) => Ok(Linear::Dense(transposed(w)?)),
            Linear::Quantized(q) => {
                let w = transposed(&q.dequantize(&Device::Cpu)?)?;
                Ok(Linear::Quantized(Arc::new(QTensor::quantize(
                    &w,
                    q.dtype(),
                )?)))
            }
        }
    }

    /// The storage's name: `F32`, `BF16`, `Q4_1`, ...
    pub(crate) fn storage_name(&self) -> String {
        match self {
            Linear::Dense(w) => w.dtype().as_str().to_uppercase(),
            Linear::Quantized(q) => format!("{:?}", q.dtype()).to_uppercase(),
        }
    }
}

/// `q`'s rows in the order `order` gives (row `r` of the result is row `order[r]` of `q`),
/// moving whole rows of blocks: exact for every GGUF type, since a quantized block never spans
/// two rows.
pub(crate) fn reorder_rows(q: &QTensor, order: &[usize]) -> Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    if order.len() != rows {
        return Err(candle_core::Error::msg(format!(
            "row order of {} rows for a tensor of {rows}",
            order.len()
        )));
    }
    let dtype = q.dtype();
    if !cols.is_multiple_of(dtype.block_size()) {
        return Err(candle_core::Error::msg(format!(
            "a row of {cols} elements is not whole {dtype:?} blocks of {}",
            dtype.block_size()
        )));
    }
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = q.data()?;
    // candle reads the blocks in place from the byte slice, so it must be aligned for them
    // (f16/f32 fields): a u64 buffer is, for every block type.
    let mut buf = vec![0u64; data.len().div_ceil(8)];
    let out: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
    for (to, &r) in out.chunks_exact_mut(row_bytes).zip(order) {
        to.copy_from_slice(&data[r * row_bytes..(r + 1) * row_bytes]);
    }
    let storage = QStorage::from_data(Cow::Borrowed(&out[..data.len()]), &Device::Cpu, dtype)?;
    QTensor::new(storage, (rows, cols))
}
