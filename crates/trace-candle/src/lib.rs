//! # trace-candle
//!
//! The candle adapter for tensor-trace: [`dump_trace`] records a named [`Tensor`] exactly as
//! trace-core records the same values from a plain slice, plus [`engine`], a small traced
//! Llama-style decoder built on candle for cross-validation demos (`cargo xtask crossval`).
//!
//! # How a tensor is captured
//! - **Disabled** (no `TENSOR_TRACE_DIR` / `BITNET_TRACE_DIR`): [`dump_trace`] returns after one
//!   relaxed atomic load, before touching the tensor.
//! - **Device**: a tensor that is not on the CPU is copied to the CPU first (the only copy of a
//!   whole tensor this crate ever makes).
//! - **Contiguous** (any dtype): the storage slice goes straight to trace-core, no copy; trace-core
//!   converts non-F32 dtypes to canonical F32 in cache-sized batches.
//! - **Strided, transposed, broadcast**: the elements are streamed in row-major order through
//!   trace-core's chunked form ([`trace_core::Fingerprinter`]), gathered in cache-friendly tiles,
//!   never through candle's `to_dtype(F32)` or `contiguous()` of the whole tensor.
//! - **Dtypes**: U8, U32, I32, I64, BF16, F16, F32, F64 are recorded with that dtype; candle's
//!   I16 and 8/6/4-bit float types have no trace-core counterpart and are a clear error
//!   (see [`trace_dtype`]).
//!
//! **Architecture invariant:** the record of a tensor is identical, field for field, to the
//! record trace-core writes for a slice holding the same values in row-major order, whatever the
//! layout: the hash, RMS and statistics are computed by trace-core, never here.
//!
//! # Example
//! ```
//! use candle_core::{Device, Tensor};
//! use trace_candle::{fingerprint_tensor, record, Context};
//! use trace_core::{fingerprint, Data, Tracer};
//!
//! let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
//! let t = Tensor::from_vec(values, (3, 4), &Device::Cpu)?;
//! let tt = t.t()?; // a transposed (strided) view
//!
//! // The fingerprint of the view equals trace-core's fingerprint of its row-major values.
//! let row_major: Vec<f32> = tt.flatten_all()?.to_vec1()?;
//! assert_eq!(fingerprint_tensor(&tt)?, fingerprint(Data::F32(&row_major)));
//!
//! // With an explicit tracer (no environment variables):
//! let dir = tempfile::tempdir()?;
//! let tracer = Tracer::builder().dir(dir.path()).build()?;
//! record(&tracer, "blk0/q", &Context::default().seq(0).layer(0), &tt)?;
//! assert!(dir.path().join("records.jsonl").exists()); // the packed layout, the default
//!
//! // The global, env-driven form is the seed's drop-in: a no-op unless TENSOR_TRACE_DIR or
//! // BITNET_TRACE_DIR is set.
//! trace_candle::dump_trace("layer_output", &t)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod engine;
mod stream;

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use trace_core::{Data, Fingerprint, Fingerprinter, Tracer};

pub use stream::{CHUNK, TILE};
pub use trace_core::Context;

/// Records `tensor` as `name` through the global, env-driven tracer: the seed's `dump_trace`.
///
/// A no-op unless `TENSOR_TRACE_DIR` (or `BITNET_TRACE_DIR`) is set; disabled, it returns before
/// touching the tensor.
#[inline]
pub fn dump_trace(name: &str, tensor: &Tensor) -> Result<()> {
    if !trace_core::enabled() {
        return Ok(());
    }
    dump_enabled(name, &Context::default(), tensor)
}

/// [`dump_trace`] with context: token position `seq` (0 = prefill, 1+ = decode step), signed
/// `layer` (-1 = embeddings/logits) and `stage`.
#[inline]
pub fn dump_trace_with(name: &str, ctx: &Context<'_>, tensor: &Tensor) -> Result<()> {
    if !trace_core::enabled() {
        return Ok(());
    }
    dump_enabled(name, ctx, tensor)
}

#[cold]
#[inline(never)]
fn dump_enabled(name: &str, ctx: &Context<'_>, tensor: &Tensor) -> Result<()> {
    let dtype = trace_dtype(tensor.dtype())?;
    let cpu = to_cpu(tensor)?;
    trace_core::dump_chunks_with(name, ctx, dtype, cpu.dims(), |fp| feed(&cpu, fp))
        .map_err(candle_core::Error::wrap)
}

/// Records `tensor` as `name` with an explicit [`Tracer`] (builder API, no environment
/// variables). Returns `false`, without touching the tensor, when the tracer's filter excludes
/// `name`.
pub fn record(tracer: &Tracer, name: &str, ctx: &Context<'_>, tensor: &Tensor) -> Result<bool> {
    if !tracer.wants(name) {
        return Ok(false);
    }
    let dtype = trace_dtype(tensor.dtype())?;
    let cpu = to_cpu(tensor)?;
    tracer
        .record_chunks(name, ctx, dtype, cpu.dims(), |fp| feed(&cpu, fp))
        .map_err(candle_core::Error::wrap)
}

/// trace-core's fingerprint of `tensor`'s values in row-major order, without writing anything.
pub fn fingerprint_tensor(tensor: &Tensor) -> Result<Fingerprint> {
    trace_dtype(tensor.dtype())?;
    let cpu = to_cpu(tensor)?;
    let mut fp = Fingerprinter::new();
    feed(&cpu, &mut fp).map_err(candle_core::Error::wrap)?;
    Ok(fp.finish())
}

/// The trace-core dtype a candle dtype is recorded as; an error for the dtypes trace-core
/// cannot represent (I16, F8E4M3, F6E2M3, F6E3M2, F4, F8E8M0).
pub fn trace_dtype(dtype: DType) -> Result<trace_core::DType> {
    Ok(match dtype {
        DType::U8 => trace_core::DType::U8,
        DType::U32 => trace_core::DType::U32,
        DType::I32 => trace_core::DType::I32,
        DType::I64 => trace_core::DType::I64,
        DType::BF16 => trace_core::DType::BF16,
        DType::F16 => trace_core::DType::F16,
        DType::F32 => trace_core::DType::F32,
        DType::F64 => trace_core::DType::F64,
        other => {
            return Err(candle_core::Error::msg(format!(
                "trace-candle: cannot record a tensor of dtype {other:?}: trace-core has no such \
                 dtype (expected one of U8, U32, I32, I64, BF16, F16, F32, F64); convert it first"
            )))
        }
    })
}

/// The tensor itself when it lives on the CPU (a cheap handle clone), else a CPU copy.
fn to_cpu(tensor: &Tensor) -> Result<Tensor> {
    if tensor.device().is_cpu() {
        Ok(tensor.clone())
    } else {
        tensor.to_device(&Device::Cpu)
    }
}

/// Streams a CPU tensor (of a dtype [`trace_dtype`] accepted) into `fp`.
fn feed(cpu: &Tensor, fp: &mut Fingerprinter) -> trace_core::Result<()> {
    let (storage, layout) = cpu.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else {
        unreachable!("to_cpu returns a CPU tensor");
    };
    let sink = &mut |d: Data<'_>| fp.update(d);
    match storage {
        CpuStorage::U8(v) => stream::stream(v, layout, sink),
        CpuStorage::U32(v) => stream::stream(v, layout, sink),
        CpuStorage::I32(v) => stream::stream(v, layout, sink),
        CpuStorage::I64(v) => stream::stream(v, layout, sink),
        CpuStorage::BF16(v) => stream::stream(v, layout, sink),
        CpuStorage::F16(v) => stream::stream(v, layout, sink),
        CpuStorage::F32(v) => stream::stream(v, layout, sink),
        CpuStorage::F64(v) => stream::stream(v, layout, sink),
        _ => unreachable!("trace_dtype rejects the other dtypes before any storage is read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_mapping() {
        assert_eq!(trace_dtype(DType::BF16).unwrap(), trace_core::DType::BF16);
        assert_eq!(trace_dtype(DType::U8).unwrap(), trace_core::DType::U8);
        for bad in [DType::I16, DType::F8E4M3, DType::F4] {
            let msg = trace_dtype(bad).unwrap_err().to_string();
            assert!(msg.contains("trace-core has no such dtype"), "{msg}");
        }
    }

    #[test]
    fn unsupported_dtype_is_an_error_not_a_panic() {
        let t = Tensor::new(&[1i16, 2, 3], &Device::Cpu).unwrap();
        assert!(fingerprint_tensor(&t).is_err());
    }
}
