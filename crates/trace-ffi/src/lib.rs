//! # trace-ffi
//!
//! The C ABI of tensor-trace: C and C++ engines (llama.cpp, bitnet.cpp, a PyTorch extension)
//! record named tensors into the same trace directories as the Rust side, byte for byte.
//!
//! This crate *is* the Rust side: every call goes to trace-core's global tracer, so the
//! environment variables (`TENSOR_TRACE_DIR`, `TENSOR_TRACE_FILTER`, ...), the file names, the
//! manifest and the canonical-F32 fingerprint are the ones of [`trace_core::dump_with`]. It builds
//! as a static library (`libtrace_ffi.a`) and a shared one (`libtrace_ffi.so`); the header is
//! `include/tensor_trace.h` and a header-only C++ wrapper is `include/tensor_trace.hpp` (see
//! `docs/FFI.md`).
//!
//! Design:
//! - Disabled, [`tt_record`] costs one relaxed atomic load; [`tt_enabled`] and [`tt_wants`] let
//!   callers skip copying a tensor off the device at all.
//! - Strided data (strides in elements, any sign, zero for broadcast) is streamed through a
//!   [`trace_core::Fingerprinter`] run by run, never copied into one tensor-sized buffer.
//! - Nothing unwinds across the boundary: every entry point catches panics and returns
//!   [`TT_ERR_PANIC`]. Errors are status codes; [`tt_last_error`] returns the message, per thread.
//! - The header is written by hand; a test parses it and checks every prototype, constant and
//!   struct field against this file (`tests/ffi/header.rs`).
//!
//! From Rust (the same calls a C program makes):
//!
//! ```
//! use std::ffi::CStr;
//! use trace_ffi::*;
//!
//! let dir = tempfile::tempdir()?;
//! // The environment is read once, at the first call (a C program would set it before starting).
//! std::env::set_var("TENSOR_TRACE_DIR", dir.path());
//! std::env::set_var("TENSOR_TRACE_LAYOUT", "files"); // a file per record, read back below
//! assert_eq!(tt_enabled(), 1);
//!
//! // A 2 x 3 matrix stored column-major: strides in elements.
//! let col_major = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0];
//! let (dims, strides) = ([2i64, 3], [1i64, 2]);
//! let ctx = TtContext { seq: 0, layer: TT_UNSET, stage: c"attn_norm".as_ptr() };
//! // SAFETY: every pointer is valid for what the shape and strides address.
//! let status = unsafe {
//!     tt_record(c"blk0/attn_norm".as_ptr(), TT_DTYPE_F32, col_major.as_ptr().cast(), 2,
//!               dims.as_ptr(), strides.as_ptr(), &ctx)
//! };
//! assert_eq!(status, TT_OK);
//! assert_eq!(tt_flush(), TT_OK);
//!
//! let record = trace_core::TraceRecord::read(&dir.path().join("blk0_attn_norm.trace"))?;
//! let row_major = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let expected = trace_core::fingerprint(trace_core::Data::F32(&row_major));
//! assert_eq!(record.blake3, expected.blake3.to_hex().as_str());
//! assert_eq!((record.seq, record.layer, record.stage.as_deref()), (Some(0), None, Some("attn_norm")));
//!
//! // Errors are codes with a per-thread message.
//! // SAFETY: a NULL name is checked, not dereferenced.
//! let status = unsafe { tt_record(std::ptr::null(), TT_DTYPE_F32, col_major.as_ptr().cast(), 2,
//!                                 dims.as_ptr(), std::ptr::null(), std::ptr::null()) };
//! assert_eq!(status, TT_ERR_NULL);
//! // SAFETY: both return NUL-terminated strings that are valid until the next call.
//! let message = unsafe { CStr::from_ptr(tt_last_error()) }.to_str()?;
//! assert!(message.starts_with("tt_record: argument `name` is NULL"));
//! assert_eq!(unsafe { CStr::from_ptr(tt_status_name(status)) }.to_str()?, "TT_ERR_NULL");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

use std::ffi::{c_char, c_void};

mod abi;
mod error;
mod request;

pub use abi::{
    TtContext, TT_ABI_VERSION, TT_DTYPE_BF16, TT_DTYPE_F16, TT_DTYPE_F32, TT_DTYPE_F64,
    TT_DTYPE_I32, TT_DTYPE_I64, TT_DTYPE_U32, TT_DTYPE_U8, TT_ERR_ARG, TT_ERR_CONFIG,
    TT_ERR_INTERNAL, TT_ERR_IO, TT_ERR_NULL, TT_ERR_PANIC, TT_ERR_SHAPE, TT_MAX_NDIM, TT_OK,
    TT_UNSET,
};
pub use error::FfiError;
pub use request::{fingerprint_strided, record_strided};

use error::{guard, last_error_ptr, status_name};
use request::Request;

/// The ABI version this library implements ([`TT_ABI_VERSION`]).
#[unsafe(no_mangle)]
pub extern "C" fn tt_abi_version() -> u32 {
    TT_ABI_VERSION
}

/// 1 when tracing is enabled (even with an invalid setting, which capture calls report), else 0.
///
/// After the first call this is one relaxed atomic load ([`trace_core::enabled`]).
#[unsafe(no_mangle)]
pub extern "C" fn tt_enabled() -> i32 {
    std::panic::catch_unwind(trace_core::enabled).unwrap_or(false) as i32
}

/// 1 when [`tt_record`] would do anything with `name`: tracing is enabled and the name passes
/// `TENSOR_TRACE_FILTER` (or the settings are invalid, so the capture reports that); else 0.
///
/// # Safety
/// `name` is NULL (answered with 0) or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tt_wants(name: *const c_char) -> i32 {
    let wants = std::panic::catch_unwind(|| {
        if !trace_core::enabled() || name.is_null() {
            return false;
        }
        match trace_core::global() {
            // SAFETY: non-NULL and NUL-terminated, per this function's contract.
            Ok(Some(tracer)) => match unsafe { std::ffi::CStr::from_ptr(name) }.to_str() {
                Ok(name) => tracer.wants(name),
                // Let `tt_record` report the encoding error.
                Err(_) => true,
            },
            Ok(None) => false,
            Err(_) => true,
        }
    });
    wants.unwrap_or(true) as i32
}

/// Records a tensor on the global tracer; [`TT_OK`] or an error status.
///
/// Disabled, it returns [`TT_OK`] at once without looking at the arguments. Enabled, it checks
/// them all before reading any element; names the filter skips are checked, then not read.
///
/// # Safety
/// - `name`: NULL (an error) or a NUL-terminated string.
/// - `data`: readable for every element that `dims` and `strides` address, of the type `dtype`
///   says; any alignment. NULL is allowed only when an element count is 0.
/// - `dims`: NULL (an error unless `ndim` is 0) or readable for `ndim` aligned `int64_t`.
/// - `strides`: NULL (dense row-major) or readable for `ndim` aligned `int64_t`, in elements.
/// - `ctx`: NULL (no context) or a valid [`TtContext`] whose `stage` is NULL or NUL-terminated.
/// - None of it may be written by another thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tt_record(
    name: *const c_char,
    dtype: i32,
    data: *const c_void,
    ndim: usize,
    dims: *const i64,
    strides: *const i64,
    ctx: *const TtContext,
) -> i32 {
    guard("tt_record", || {
        if !trace_core::enabled() {
            return Ok(());
        }
        let Some(tracer) = trace_core::global()? else {
            return Ok(());
        };
        // SAFETY: forwarded from this function's contract.
        let request = unsafe { Request::parse(name, dtype, data, ndim, dims, strides, ctx) }?;
        // SAFETY: `data` is valid for the checked shape and strides, per the contract.
        unsafe { request.record_on(tracer) }
    })
}

/// Waits until every record is on disk (only `TENSOR_TRACE_ASYNC=1` ever has to wait) and
/// reports an error the background writer hit; [`TT_OK`] when tracing is off.
#[unsafe(no_mangle)]
pub extern "C" fn tt_flush() -> i32 {
    guard("tt_flush", || Ok(trace_core::flush()?))
}

/// The message of the last call on this thread that returned an error (`""` if none did).
///
/// The string is NUL-terminated UTF-8, owned by the library and valid until the next `tt_*`
/// call on the same thread; copy it to keep it. A successful call does not clear it.
#[unsafe(no_mangle)]
pub extern "C" fn tt_last_error() -> *const c_char {
    std::panic::catch_unwind(last_error_ptr).unwrap_or(c"".as_ptr())
}

/// The symbolic name of a status code (`"TT_ERR_NULL"`), or `"TT_ERR_UNKNOWN"`; a static string.
#[unsafe(no_mangle)]
pub extern "C" fn tt_status_name(status: i32) -> *const c_char {
    status_name(status).as_ptr()
}

#[cfg(test)]
mod tests {
    use std::ptr::null;

    use trace_core::{TraceRecord, Tracer};

    use super::*;

    /// Parses and records a dense f32 tensor on an in-memory tracer.
    fn record(
        tracer: &Tracer,
        name: &std::ffi::CStr,
        values: &[f32],
        dims: &[i64],
        ctx: Option<&TtContext>,
    ) -> Result<TraceRecord, FfiError> {
        let ctx = ctx.map_or(null(), |c| c as *const TtContext);
        // SAFETY: every pointer comes from a live slice or string of the right length.
        let request = unsafe {
            Request::parse(
                name.as_ptr(),
                TT_DTYPE_F32,
                values.as_ptr().cast(),
                dims.len(),
                dims.as_ptr(),
                null(),
                ctx,
            )
        }?;
        // SAFETY: `values` holds every element `dims` addresses (or the parse failed).
        unsafe { request.record_on(tracer) }?;
        Ok(tracer.records().pop().expect("one record"))
    }

    #[test]
    fn context_fields_and_sentinels() {
        let t = Tracer::in_memory();
        let ctx = TtContext {
            seq: 3,
            layer: -1,
            stage: c"logits".as_ptr(),
        };
        let r = record(&t, c"logits", &[1.0, 2.0], &[2], Some(&ctx)).unwrap();
        assert_eq!(
            (r.seq, r.layer, r.stage.as_deref()),
            (Some(3), Some(-1), Some("logits"))
        );
        let unset = TtContext {
            seq: TT_UNSET,
            layer: TT_UNSET,
            stage: null(),
        };
        let r = record(&t, c"x", &[1.0], &[], Some(&unset)).unwrap();
        assert_eq!((r.seq, r.layer, r.stage), (None, None, None));
        assert_eq!((r.shape, r.num_elements), (vec![], 1));
        let bad = TtContext { seq: -2, ..unset };
        let e = record(&t, c"x", &[1.0], &[1], Some(&bad)).unwrap_err();
        assert_eq!(e.status(), TT_ERR_ARG);
        assert!(e.to_string().contains("ctx.seq"), "{e}");
    }

    #[test]
    fn argument_errors_have_codes() {
        let t = Tracer::in_memory();
        let e = record(&t, c"x", &[1.0, 2.0], &[2, -2], None).unwrap_err();
        assert_eq!(e.status(), TT_ERR_SHAPE);
        let e = record(&t, c"x", &[], &vec![1; TT_MAX_NDIM + 1], None).unwrap_err();
        assert_eq!(e.status(), TT_ERR_ARG);
        assert!(e.to_string().contains("at most 64"), "{e}");
        let bad_utf8 = c"\xff";
        let e = record(&t, bad_utf8, &[1.0], &[1], None).unwrap_err();
        assert_eq!(e.status(), TT_ERR_ARG);
        // SAFETY: NULL pointers are checked, never dereferenced.
        let e = unsafe {
            Request::parse(
                c"x".as_ptr(),
                TT_DTYPE_U8,
                null(),
                1,
                null(),
                null(),
                null(),
            )
        }
        .unwrap_err();
        assert_eq!(e.status(), TT_ERR_NULL);
        assert!(e.to_string().contains("`dims`"), "{e}");
        let dims = [2i64];
        // SAFETY: as above.
        let e = unsafe {
            Request::parse(
                c"x".as_ptr(),
                TT_DTYPE_U8,
                null(),
                1,
                dims.as_ptr(),
                null(),
                null(),
            )
        }
        .unwrap_err();
        assert!(e.to_string().contains("`data`"), "{e}");
    }

    #[test]
    fn empty_tensors_need_no_data() {
        let t = Tracer::in_memory();
        let dims = [0i64, 5];
        // SAFETY: an empty tensor reads no element, so NULL data is allowed.
        let req = unsafe {
            Request::parse(
                c"e".as_ptr(),
                TT_DTYPE_BF16,
                null(),
                2,
                dims.as_ptr(),
                null(),
                null(),
            )
        }
        .unwrap();
        // SAFETY: nothing is read.
        unsafe { req.record_on(&t) }.unwrap();
        let r = t.records().pop().unwrap();
        assert_eq!((r.num_elements, r.rms, r.dtype.as_str()), (0, None, "BF16"));
    }

    #[test]
    fn disabled_entry_points_are_no_ops() {
        // The global tracer reads the environment once; this test checks it switched off, so a
        // variable inherited from the caller's shell is a failure, not a reason to pass.
        for var in [
            trace_core::config::ENV_DIR,
            trace_core::config::ENV_DIR_COMPAT,
        ] {
            assert!(
                std::env::var_os(var).is_none(),
                "{var} is set in the test's environment; unset it to run this test"
            );
        }
        assert_eq!(tt_enabled(), 0, "the global tracer is off");
        // SAFETY: disabled, the arguments are not looked at.
        let status = unsafe { tt_record(null(), -1, null(), 99, null(), null(), null()) };
        assert_eq!(status, TT_OK);
        // SAFETY: a NUL-terminated literal.
        assert_eq!(unsafe { tt_wants(c"x".as_ptr()) }, 0);
        assert_eq!(tt_flush(), TT_OK);
        assert_eq!(tt_abi_version(), TT_ABI_VERSION);
    }
}
