//! The C ABI's data: status and dtype codes, limits and `tt_context`, mirrored one to one by
//! `include/tensor_trace.h` (checked by `tests/ffi/header.rs`).

use std::ffi::c_char;

/// Version of this ABI; bumped on any incompatible change to the header.
pub const TT_ABI_VERSION: u32 = 1;

/// Success.
pub const TT_OK: i32 = 0;
/// A required pointer argument was NULL.
pub const TT_ERR_NULL: i32 = 1;
/// An argument has an invalid value: dtype code, `ndim`, UTF-8, context field, alignment.
pub const TT_ERR_ARG: i32 = 2;
/// The shape cannot describe a tensor: negative dimension, overflowing size or strides.
pub const TT_ERR_SHAPE: i32 = 3;
/// A `TENSOR_TRACE_*` environment variable is invalid (returned by every capture call).
pub const TT_ERR_CONFIG: i32 = 4;
/// Writing the trace directory failed.
pub const TT_ERR_IO: i32 = 5;
/// A panic inside the library was caught at the boundary.
pub const TT_ERR_PANIC: i32 = 6;
/// Any other error inside the library.
pub const TT_ERR_INTERNAL: i32 = 7;

/// `float` (binary32).
pub const TT_DTYPE_F32: i32 = 0;
/// `double` (binary64).
pub const TT_DTYPE_F64: i32 = 1;
/// IEEE binary16, as raw `uint16_t` storage.
pub const TT_DTYPE_F16: i32 = 2;
/// bfloat16, as raw `uint16_t` storage.
pub const TT_DTYPE_BF16: i32 = 3;
/// `int64_t`.
pub const TT_DTYPE_I64: i32 = 4;
/// `int32_t`.
pub const TT_DTYPE_I32: i32 = 5;
/// `uint32_t`.
pub const TT_DTYPE_U32: i32 = 6;
/// `uint8_t`.
pub const TT_DTYPE_U8: i32 = 7;

/// Most dimensions a tensor may have.
pub const TT_MAX_NDIM: usize = 64;

/// Marks an absent `seq` or `layer` in a [`TtContext`].
pub const TT_UNSET: i64 = i64::MIN;

/// Where a record sits in the model (`tt_context` in C); pass NULL for no context.
///
/// Initialize it with `TT_CONTEXT_INIT` in C, so absent fields are [`TT_UNSET`] and NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TtContext {
    /// Token position (0 = prefill, 1+ = decode step), or [`TT_UNSET`].
    pub seq: i64,
    /// Layer (-1 = embeddings/logits, 0+ = transformer layer), or [`TT_UNSET`].
    pub layer: i64,
    /// Stage within the layer (NUL-terminated UTF-8, e.g. `q_proj`), or NULL.
    pub stage: *const c_char,
}
