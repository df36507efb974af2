/*
 * tensor_trace.h: the C API of tensor-trace (crate trace-ffi).
 *
 * Records named tensors into a trace directory, exactly as the Rust side does: same environment
 * variables (TENSOR_TRACE_DIR, TENSOR_TRACE_FILTER, TENSOR_TRACE_VALUES, ...), same file names,
 * manifest and fingerprints. Link with libtrace_ffi.a (plus -lpthread -ldl -lm on Linux) or
 * libtrace_ffi.so. See docs/FFI.md for every function and for llama.cpp / PyTorch snippets.
 *
 * Written by hand; crates/trace-ffi/tests/ffi/header.rs checks every prototype, constant and
 * struct field here against crates/trace-ffi/src/lib.rs and src/abi.rs.
 *
 * Thread safety: every function may be called from any thread at any time.
 * Errors: functions return a status (TT_OK = 0 or a TT_ERR_* code); tt_last_error() gives the
 * message. Nothing unwinds out of the library: an internal panic becomes TT_ERR_PANIC.
 */
#ifndef TENSOR_TRACE_H
#define TENSOR_TRACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this ABI; compare with tt_abi_version() to catch a stale library. */
#define TT_ABI_VERSION 1

/* Status codes. */
#define TT_OK 0           /* success */
#define TT_ERR_NULL 1     /* a required pointer argument was NULL */
#define TT_ERR_ARG 2      /* invalid argument: dtype code, ndim, UTF-8, context field */
#define TT_ERR_SHAPE 3    /* negative dimension, or size/strides overflowing the address space */
#define TT_ERR_CONFIG 4   /* an invalid TENSOR_TRACE_* variable (every capture reports it) */
#define TT_ERR_IO 5       /* writing the trace directory failed */
#define TT_ERR_PANIC 6    /* a panic inside the library, caught at the boundary */
#define TT_ERR_INTERNAL 7 /* any other error inside the library */

/* Element types (the value of `dtype`). F16 and BF16 are raw uint16_t storage. */
#define TT_DTYPE_F32 0  /* float */
#define TT_DTYPE_F64 1  /* double */
#define TT_DTYPE_F16 2  /* IEEE binary16 bits, uint16_t */
#define TT_DTYPE_BF16 3 /* bfloat16 bits, uint16_t */
#define TT_DTYPE_I64 4  /* int64_t */
#define TT_DTYPE_I32 5  /* int32_t */
#define TT_DTYPE_U32 6  /* uint32_t */
#define TT_DTYPE_U8 7   /* uint8_t */

/* Most dimensions a tensor may have. */
#define TT_MAX_NDIM 64

/* Marks an absent seq or layer in a tt_context. */
#define TT_UNSET INT64_MIN

/*
 * Where a record sits in the model; written into the record as `seq`, `layer`, `stage`.
 * Start from TT_CONTEXT_INIT (every field absent), not from {0}: 0 is a valid seq and layer.
 */
typedef struct tt_context {
    int64_t seq;       /* token position: 0 = prefill, 1+ = decode step; or TT_UNSET */
    int64_t layer;     /* -1 = embeddings/logits, 0+ = transformer layer; or TT_UNSET */
    const char *stage; /* point within the layer (NUL-terminated UTF-8), e.g. "q_proj"; or NULL */
} tt_context;

#define TT_CONTEXT_INIT { TT_UNSET, TT_UNSET, NULL }

/* The ABI version of the library (TT_ABI_VERSION when header and library match). */
uint32_t tt_abi_version(void);

/* 1 when tracing is enabled, else 0. After the first call: one relaxed atomic load. */
int32_t tt_enabled(void);

/* 1 when tt_record would do anything with `name` (enabled and passing TENSOR_TRACE_FILTER), else
 * 0. Use it to skip copying a tensor off the device. `name` may be NULL (answer: 0). */
int32_t tt_wants(const char *name);

/*
 * Records a tensor on the global tracer. Returns TT_OK or an error status.
 *
 *   name     NUL-terminated UTF-8 tensor name, e.g. "blk0/attn_norm" (file blk0_attn_norm.trace)
 *   dtype    one of TT_DTYPE_*
 *   data     the element at index (0, ..., 0); any alignment; NULL only for an empty tensor
 *   ndim     number of dimensions, 0 (a scalar) to TT_MAX_NDIM
 *   dims     ndim dimensions, row-major (outermost first), each >= 0; NULL only when ndim is 0
 *   strides  ndim strides in ELEMENTS (not bytes), any sign, 0 to broadcast; NULL = dense
 *            row-major
 *   ctx      context, or NULL for none
 *
 * Disabled, returns TT_OK at once without reading any argument. Enabled, every argument is
 * checked before an element is read; what cannot be checked is the caller's obligation: `data`
 * readable for every element that dims and strides address, the arrays readable for ndim values,
 * nothing written concurrently during the call. The data is read during the call only.
 */
int32_t tt_record(const char *name, int32_t dtype, const void *data, size_t ndim,
                  const int64_t *dims, const int64_t *strides, const tt_context *ctx);

/* Waits until every record is on disk (only TENSOR_TRACE_ASYNC=1 has to wait) and reports an
 * error the background writer hit. TT_OK when tracing is off. */
int32_t tt_flush(void);

/* The message of the last call on this thread that returned an error, "" if none did.
 * NUL-terminated, owned by the library, valid until the next tt_* call on this thread. */
const char *tt_last_error(void);

/* The symbolic name of a status ("TT_ERR_NULL"), or "TT_ERR_UNKNOWN". A static string. */
const char *tt_status_name(int32_t status);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TENSOR_TRACE_H */
