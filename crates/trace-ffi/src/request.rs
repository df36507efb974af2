//! Checking a C tensor description and streaming its elements into a [`Fingerprinter`].
//!
//! # Invariants
//! - Every checkable property of the arguments is checked before a byte of tensor data is read:
//!   NULL pointers, UTF-8, dtype codes, context values, `ndim`, negative dimensions, and that the
//!   element count and the extent addressed by the strides fit `isize` bytes. What cannot be
//!   checked (that the pointers are valid for that extent) is the caller's obligation.
//! - Data is never copied into one tensor-sized buffer. Contiguous runs of elements (the longest
//!   row-major suffix of dimensions the strides leave dense) are handed to the fingerprinter as
//!   slices; short or misaligned runs are gathered into a small reused buffer first.

use std::ffi::{c_char, c_void, CStr};
use std::mem::{align_of, size_of};

use half::{bf16, f16};
use trace_core::{Context, DType, Data, Fingerprinter, Tracer};

use crate::abi::{
    TtContext, TT_DTYPE_BF16, TT_DTYPE_F16, TT_DTYPE_F32, TT_DTYPE_F64, TT_DTYPE_I32, TT_DTYPE_I64,
    TT_DTYPE_U32, TT_DTYPE_U8, TT_MAX_NDIM, TT_UNSET,
};
use crate::error::FfiError;

/// Runs shorter than this many elements are gathered rather than fed one by one.
const MIN_RUN: usize = 256;
/// Elements per gather buffer (64 KiB of F16, 512 KiB of F64).
const GATHER: usize = 32 * 1024;

/// The dtype codes of the header, in the order of [`DType::ALL`].
pub(crate) const DTYPE_CODES: [(i32, DType); 8] = [
    (TT_DTYPE_F32, DType::F32),
    (TT_DTYPE_F64, DType::F64),
    (TT_DTYPE_F16, DType::F16),
    (TT_DTYPE_BF16, DType::BF16),
    (TT_DTYPE_I64, DType::I64),
    (TT_DTYPE_I32, DType::I32),
    (TT_DTYPE_U32, DType::U32),
    (TT_DTYPE_U8, DType::U8),
];

/// Everything `tt_record` was given, checked and turned into Rust values.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) name: &'a str,
    pub(crate) dtype: DType,
    pub(crate) ctx: Context<'a>,
    pub(crate) shape: Vec<usize>,
    plan: Plan,
    data: *const u8,
}

/// How to walk the elements: `run` contiguous elements at every offset of the outer odometer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// Number of elements (product of the shape).
    len: usize,
    /// Contiguous elements per step.
    run: usize,
    /// Outer dimensions (extent > 1 only) and their strides in elements.
    outer_dims: Vec<usize>,
    outer_strides: Vec<isize>,
}

impl<'a> Request<'a> {
    /// Checks the raw arguments of `tt_record`.
    ///
    /// # Safety
    /// `name` and a non-NULL `ctx.stage` must be NUL-terminated strings living for `'a`; `ctx`
    /// NULL or valid; `dims` (and `strides`, unless NULL) valid for `ndim` reads when `ndim > 0`.
    /// `data` is not read here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn parse(
        name: *const c_char,
        dtype: i32,
        data: *const c_void,
        ndim: usize,
        dims: *const i64,
        strides: *const i64,
        ctx: *const TtContext,
    ) -> Result<Self, FfiError> {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { c_str(name, "name") }?.ok_or(FfiError::Null {
            arg: "name",
            expected: "a NUL-terminated UTF-8 tensor name",
        })?;
        let dtype = dtype_of(dtype)?;
        // SAFETY: `ctx` is NULL or valid, per this function's contract.
        let ctx = unsafe { context(ctx) }?;
        if ndim > TT_MAX_NDIM {
            return Err(FfiError::Arg {
                arg: "ndim",
                problem: format!("{ndim} dimensions, expected at most {TT_MAX_NDIM}"),
            });
        }
        // SAFETY: valid for `ndim` reads when non-NULL, per this function's contract.
        let dims = unsafe { array(dims, ndim, "dims") }?.ok_or(FfiError::Null {
            arg: "dims",
            expected: "an array of ndim dimensions (NULL only when ndim is 0)",
        })?;
        // SAFETY: as for `dims`.
        let strides = unsafe { array(strides, ndim, "strides") }?;
        let (shape, plan) = checked_layout(dtype, data.cast(), dims, strides)?;
        Ok(Self {
            name,
            dtype,
            ctx,
            shape,
            plan,
            data: data.cast(),
        })
    }

    /// Captures the tensor on `tracer`, streaming its elements.
    ///
    /// # Safety
    /// The `data` given to [`Request::parse`] must be valid for reads of every element the shape
    /// and strides address.
    pub(crate) unsafe fn record_on(&self, tracer: &Tracer) -> Result<(), FfiError> {
        tracer.record_chunks(self.name, &self.ctx, self.dtype, &self.shape, |fp| {
            // SAFETY: forwarded from this function's contract; the plan was checked by `layout`.
            unsafe { feed(fp, self.dtype, self.data, &self.plan) }
        })?;
        Ok(())
    }
}

/// Captures `dims` elements of `dtype` at `data`, laid out by `strides` (in elements, any sign,
/// zero for broadcast; `None` for dense row-major), on `tracer`: the C ABI's checks and
/// streaming for other bindings (the Python extension). Returns `false` when the filter
/// skipped the name.
///
/// # Safety
/// `data` is readable for every element the shape and strides address (NULL only when the
/// tensor is empty), and no other thread writes it during the call.
pub unsafe fn record_strided(
    tracer: &Tracer,
    name: &str,
    ctx: &Context<'_>,
    dtype: DType,
    data: *const u8,
    dims: &[i64],
    strides: Option<&[i64]>,
) -> Result<bool, FfiError> {
    let (shape, plan) = checked_layout(dtype, data, dims, strides)?;
    Ok(tracer.record_chunks(name, ctx, dtype, &shape, |fp| {
        // SAFETY: forwarded from this function's contract; the plan was checked by `layout`.
        unsafe { feed(fp, dtype, data, &plan) }
    })?)
}

/// The fingerprint of a strided tensor, without a tracer (see [`record_strided`]).
///
/// # Safety
/// As for [`record_strided`].
pub unsafe fn fingerprint_strided(
    dtype: DType,
    data: *const u8,
    dims: &[i64],
    strides: Option<&[i64]>,
) -> Result<trace_core::Fingerprint, FfiError> {
    let (_, plan) = checked_layout(dtype, data, dims, strides)?;
    let mut fp = Fingerprinter::new();
    fp.update(Data::empty(dtype))?;
    // SAFETY: forwarded from this function's contract; the plan was checked by `layout`.
    unsafe { feed(&mut fp, dtype, data, &plan) }?;
    Ok(fp.finish())
}

/// [`layout`], and `data` non-NULL unless the tensor is empty.
fn checked_layout(
    dtype: DType,
    data: *const u8,
    dims: &[i64],
    strides: Option<&[i64]>,
) -> Result<(Vec<usize>, Plan), FfiError> {
    let (shape, plan) = layout(dtype, dims, strides)?;
    if data.is_null() && plan.len > 0 {
        return Err(FfiError::Null {
            arg: "data",
            expected: "a pointer to the elements (NULL only for an empty tensor)",
        });
    }
    Ok((shape, plan))
}

/// A NUL-terminated UTF-8 string, or `None` for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string living for `'a`.
unsafe fn c_str<'a>(p: *const c_char, arg: &'static str) -> Result<Option<&'a str>, FfiError> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, per this function's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map(Some).map_err(|e| FfiError::Arg {
        arg,
        problem: format!("not valid UTF-8 ({e}), expected a UTF-8 string"),
    })
}

/// `n` values at `p`, or `None` for NULL (an empty slice when `n` is 0, whatever `p` is).
///
/// # Safety
/// `p` is NULL or valid for `n` reads of `i64`.
unsafe fn array<'a>(
    p: *const i64,
    n: usize,
    arg: &'static str,
) -> Result<Option<&'a [i64]>, FfiError> {
    if n == 0 {
        return Ok(Some(&[]));
    }
    if p.is_null() {
        return Ok(None);
    }
    if !(p as usize).is_multiple_of(align_of::<i64>()) {
        return Err(FfiError::Arg {
            arg,
            problem: "pointer is not aligned for int64_t".into(),
        });
    }
    // SAFETY: non-NULL, aligned and valid for `n` reads, per this function's contract.
    Ok(Some(unsafe { std::slice::from_raw_parts(p, n) }))
}

fn dtype_of(code: i32) -> Result<DType, FfiError> {
    DTYPE_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, d)| *d)
        .ok_or_else(|| FfiError::Arg {
            arg: "dtype",
            problem: format!("unknown dtype code {code}, expected one of TT_DTYPE_* (0 to 7)"),
        })
}

/// # Safety
/// `ctx` is NULL or points at a valid `tt_context` whose `stage` is NULL or a NUL-terminated
/// string living for `'a`.
unsafe fn context<'a>(ctx: *const TtContext) -> Result<Context<'a>, FfiError> {
    // SAFETY: NULL or valid, per this function's contract.
    let Some(raw) = (unsafe { ctx.as_ref() }) else {
        return Ok(Context::default());
    };
    let mut out = Context::default();
    match raw.seq {
        TT_UNSET => {}
        seq if seq >= 0 => out.seq = Some(seq as u64),
        seq => {
            return Err(FfiError::Arg {
                arg: "ctx.seq",
                problem: format!("{seq}, expected a token position >= 0 or TT_UNSET"),
            })
        }
    }
    if raw.layer != TT_UNSET {
        out.layer = Some(raw.layer);
    }
    // SAFETY: NULL or a NUL-terminated string, per this function's contract.
    out.stage = unsafe { c_str(raw.stage, "ctx.stage") }?;
    Ok(out)
}

/// Checks dimensions and strides; returns the shape and the walk plan.
fn layout(
    dtype: DType,
    dims: &[i64],
    strides: Option<&[i64]>,
) -> Result<(Vec<usize>, Plan), FfiError> {
    let bad = |problem: String| FfiError::Shape {
        dims: dims.to_vec(),
        problem,
    };
    let mut shape = Vec::with_capacity(dims.len());
    for (i, &d) in dims.iter().enumerate() {
        let d =
            usize::try_from(d).map_err(|_| bad(format!("dimension {i} is {d}, expected >= 0")))?;
        shape.push(d);
    }
    let len = trace_core::view::shape_elements(&shape)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad("the element count overflows".into()))?;
    let size = dtype.size_in_bytes();
    let contiguous = Plan {
        len,
        run: len,
        outer_dims: Vec::new(),
        outer_strides: Vec::new(),
    };
    let Some(strides) = strides.filter(|_| len > 0) else {
        // Dense (or empty: nothing is read, so strides do not matter).
        let fits = len
            .checked_mul(size)
            .is_some_and(|b| isize::try_from(b).is_ok());
        if !fits {
            return Err(bad(format!(
                "{len} elements of {dtype} exceed isize::MAX bytes"
            )));
        }
        return Ok((shape, contiguous));
    };
    // The lowest and highest element offsets addressed, then in bytes: both must fit isize.
    let (mut lo, mut hi) = (0i64, 0i64);
    let overflow = || {
        bad(format!(
            "strides {strides:?} address more than isize::MAX bytes"
        ))
    };
    for (&d, &s) in shape.iter().zip(strides) {
        let span = (d as i64 - 1).checked_mul(s).ok_or_else(overflow)?;
        if span > 0 {
            hi = hi.checked_add(span).ok_or_else(overflow)?;
        } else {
            lo = lo.checked_add(span).ok_or_else(overflow)?;
        }
    }
    let size_i = size as i64;
    let hi_bytes = hi.checked_add(1).and_then(|h| h.checked_mul(size_i));
    let lo_bytes = lo.checked_mul(size_i);
    match (hi_bytes, lo_bytes) {
        (Some(h), Some(l)) if isize::try_from(h).is_ok() && isize::try_from(l).is_ok() => {}
        _ => return Err(overflow()),
    }
    let plan = plan(&shape, strides, len);
    Ok((shape, plan))
}

/// Folds the dense row-major suffix of the dimensions into one run.
fn plan(shape: &[usize], strides: &[i64], len: usize) -> Plan {
    let mut run = 1usize;
    let mut k = shape.len();
    while k > 0 && (shape[k - 1] == 1 || i64::try_from(run).ok() == Some(strides[k - 1])) {
        run *= shape[k - 1];
        k -= 1;
    }
    let (outer_dims, outer_strides) = shape[..k]
        .iter()
        .zip(&strides[..k])
        .filter(|(&d, _)| d != 1)
        .map(|(&d, &s)| (d, s as isize))
        .unzip();
    Plan {
        len,
        run,
        outer_dims,
        outer_strides,
    }
}

/// An element type the C API accepts, with its `Data` view.
trait Elem: Copy + 'static {
    fn data(s: &[Self]) -> Data<'_>;
}

macro_rules! impl_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn data(s: &[Self]) -> Data<'_> {
                Data::from(s)
            }
        }
    )*};
}

impl_elem!(f32, f64, f16, bf16, i64, i32, u32, u8);

/// Feeds every element, in row-major order.
///
/// # Safety
/// `data` is valid for reads of every element `plan` addresses (it came from [`layout`]).
unsafe fn feed(
    fp: &mut Fingerprinter,
    dtype: DType,
    data: *const u8,
    plan: &Plan,
) -> trace_core::Result<()> {
    if plan.len == 0 {
        return Ok(());
    }
    // SAFETY (all arms): forwarded from this function's contract. `f16`/`bf16` are
    // `repr(transparent)` over `u16`, so the caller's raw `uint16_t` storage is read as is.
    unsafe {
        match dtype {
            DType::F32 => feed_typed::<f32>(fp, data, plan),
            DType::F64 => feed_typed::<f64>(fp, data, plan),
            DType::F16 => feed_typed::<f16>(fp, data, plan),
            DType::BF16 => feed_typed::<bf16>(fp, data, plan),
            DType::I64 => feed_typed::<i64>(fp, data, plan),
            DType::I32 => feed_typed::<i32>(fp, data, plan),
            DType::U32 => feed_typed::<u32>(fp, data, plan),
            DType::U8 => feed_typed::<u8>(fp, data, plan),
            other => unreachable!("dtype {other} has no C code"),
        }
    }
}

/// # Safety
/// As for [`feed`], with `T` the element type of `dtype`.
unsafe fn feed_typed<T: Elem>(
    fp: &mut Fingerprinter,
    base: *const u8,
    plan: &Plan,
) -> trace_core::Result<()> {
    let size = size_of::<T>() as isize;
    let aligned = (base as usize).is_multiple_of(align_of::<T>());
    let direct = aligned && (plan.run >= MIN_RUN || plan.outer_dims.is_empty());
    let mut buf: Vec<T> = Vec::new();
    if !direct {
        buf.reserve_exact(GATHER);
    }
    walk(plan, |offset| {
        // SAFETY: `offset` is one of the element offsets the plan addresses, and its byte offset
        // fits isize (checked by `layout`); the caller guarantees the memory is readable.
        let src = unsafe { base.offset(offset.wrapping_mul(size)) };
        if direct {
            // SAFETY: aligned, readable for `run` elements (contract), any bit pattern is a
            // valid value of `T`, and `run * size` fits isize (checked by `layout`).
            let run = unsafe { std::slice::from_raw_parts(src.cast::<T>(), plan.run) };
            fp.update(T::data(run))
        } else {
            // SAFETY: readable for `run` elements, per the contract.
            unsafe { gather(fp, &mut buf, src, plan.run) }
        }
    })?;
    if !buf.is_empty() {
        fp.update(T::data(&buf))?;
    }
    Ok(())
}

/// Appends `count` elements at `src` (any alignment) to `buf`, feeding it whenever it fills.
///
/// # Safety
/// `src` is readable for `count * size_of::<T>()` bytes; `buf` has capacity [`GATHER`].
unsafe fn gather<T: Elem>(
    fp: &mut Fingerprinter,
    buf: &mut Vec<T>,
    src: *const u8,
    count: usize,
) -> trace_core::Result<()> {
    let size = size_of::<T>();
    let mut done = 0;
    while done < count {
        let k = (GATHER - buf.len()).min(count - done);
        // SAFETY: `src + done * size` is readable for `k` elements (contract); `buf` has room
        // for `k` more elements, the byte copy ignores alignment, and every bit pattern is a
        // valid `T`, so the new length covers initialized values.
        unsafe {
            let from = src.add(done * size);
            if k == 1 {
                buf.push(from.cast::<T>().read_unaligned());
            } else {
                let to = buf.as_mut_ptr().add(buf.len()).cast::<u8>();
                std::ptr::copy_nonoverlapping(from, to, k * size);
                buf.set_len(buf.len() + k);
            }
        }
        done += k;
        if buf.len() == GATHER {
            fp.update(T::data(buf))?;
            buf.clear();
        }
    }
    Ok(())
}

/// Calls `emit` with the element offset of every run, in row-major order of the outer indexes.
///
/// Offsets are accumulated with wrapping arithmetic: an intermediate value one stride past the
/// end may leave the range `layout` checked, but every emitted offset is back inside it.
fn walk(
    plan: &Plan,
    mut emit: impl FnMut(isize) -> trace_core::Result<()>,
) -> trace_core::Result<()> {
    let k = plan.outer_dims.len();
    let mut idx = vec![0usize; k];
    let mut offset = 0isize;
    loop {
        emit(offset)?;
        let mut d = k;
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            idx[d] += 1;
            offset = offset.wrapping_add(plan.outer_strides[d]);
            if idx[d] < plan.outer_dims[d] {
                break;
            }
            offset = offset
                .wrapping_sub(plan.outer_strides[d].wrapping_mul(plan.outer_dims[d] as isize));
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use trace_core::fingerprint;

    use super::*;

    fn plan_of(shape: &[usize], strides: &[i64]) -> (usize, Vec<usize>, Vec<isize>) {
        let len = shape.iter().product();
        let p = plan(shape, strides, len);
        (p.run, p.outer_dims, p.outer_strides)
    }

    #[test]
    fn plans_fold_the_dense_suffix() {
        assert_eq!(plan_of(&[2, 3, 4], &[12, 4, 1]), (24, vec![], vec![]));
        assert_eq!(plan_of(&[2, 3, 4], &[24, 4, 1]), (12, vec![2], vec![24]));
        assert_eq!(plan_of(&[3, 4], &[1, 3]), (1, vec![3, 4], vec![1, 3]));
        assert_eq!(plan_of(&[1, 5, 1], &[99, 1, 7]), (5, vec![], vec![]));
        assert_eq!(plan_of(&[4, 2], &[0, 1]), (2, vec![4], vec![0]));
    }

    fn shape_err(dtype: DType, dims: &[i64], strides: Option<&[i64]>) -> String {
        layout(dtype, dims, strides).unwrap_err().to_string()
    }

    #[test]
    fn absurd_shapes_are_errors() {
        assert_eq!(
            shape_err(DType::F32, &[2, -1], None),
            "shape [2, -1]: dimension 1 is -1, expected >= 0"
        );
        assert!(shape_err(DType::F32, &[i64::MAX, 3], None).contains("element count overflows"));
        assert!(shape_err(DType::F64, &[1 << 61], None).contains("exceed isize::MAX bytes"));
        let huge = [i64::MAX / 2];
        assert!(shape_err(DType::F32, &[3], Some(&huge)).contains("isize::MAX bytes"));
        assert!(shape_err(DType::F32, &[2, 2], Some(&[i64::MIN, 1])).contains("isize::MAX"));
        // Empty tensors read nothing, so any strides are fine.
        assert!(layout(DType::F32, &[0, 4], Some(&[i64::MAX, 1])).is_ok());
    }

    /// Fingerprints `shape` of `dtype`, stored `offset_bytes` into `data`, through the walker.
    fn walked<T>(
        dtype: DType,
        data: &[T],
        offset_bytes: usize,
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> trace_core::Fingerprint {
        let (_, plan) = layout(dtype, shape, strides).unwrap();
        let mut fp = Fingerprinter::new();
        // SAFETY: the tests' strides address elements inside `data`.
        unsafe {
            feed(
                &mut fp,
                dtype,
                data.as_ptr().cast::<u8>().add(offset_bytes),
                &plan,
            )
        }
        .unwrap();
        fp.finish()
    }

    #[test]
    fn transposed_strides_match_the_dense_copy() {
        // A 300 x 7 matrix stored column-major: short runs, gathered.
        let (r, c) = (300usize, 7usize);
        let col_major: Vec<f32> = (0..r * c).map(|i| i as f32 * 0.25 - 3.0).collect();
        let dense: Vec<f32> = (0..r * c).map(|i| col_major[(i % c) * r + i / c]).collect();
        let got = walked(
            DType::F32,
            &col_major,
            0,
            &[r as i64, c as i64],
            Some(&[1, r as i64]),
        );
        assert_eq!(got, fingerprint(Data::F32(&dense)));
    }

    #[test]
    fn row_padding_and_negative_strides_match() {
        // Rows of 300 with a pitch of 320: long runs fed as slices.
        let (r, c, pitch) = (5usize, 300usize, 320usize);
        let padded: Vec<i32> = (0..r * pitch).map(|i| i as i32 - 700).collect();
        let dense: Vec<i32> = (0..r)
            .flat_map(|i| padded[i * pitch..i * pitch + c].to_vec())
            .collect();
        let got = walked(
            DType::I32,
            &padded,
            0,
            &[r as i64, c as i64],
            Some(&[pitch as i64, 1]),
        );
        assert_eq!(got, fingerprint(Data::I32(&dense)));
        // The same rows in reverse order, starting from the last one.
        let reversed: Vec<i32> = (0..r)
            .rev()
            .flat_map(|i| padded[i * pitch..i * pitch + c].to_vec())
            .collect();
        let last = (r - 1) * pitch * 4;
        let got = walked(
            DType::I32,
            &padded,
            last,
            &[r as i64, c as i64],
            Some(&[-(pitch as i64), 1]),
        );
        assert_eq!(got, fingerprint(Data::I32(&reversed)));
    }

    #[test]
    fn misaligned_data_is_gathered() {
        // f64 values stored one byte into a byte buffer.
        let values: Vec<f64> = (0..GATHER + 17).map(|i| (i as f64).sqrt()).collect();
        let mut bytes = vec![0u8; 1 + values.len() * 8];
        for (i, v) in values.iter().enumerate() {
            bytes[1 + i * 8..9 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        let got = walked(DType::F64, &bytes, 1, &[values.len() as i64], None);
        let mut fp = Fingerprinter::new();
        fp.update(Data::F64(&values)).unwrap();
        assert_eq!(got, fp.finish());
    }

    #[test]
    fn broadcast_stride_zero_repeats() {
        let row = [f16::from_f32(1.5), f16::from_f32(-2.0), f16::from_f32(0.0)];
        let dense: Vec<f16> = (0..4).flat_map(|_| row).collect();
        let got = walked(DType::F16, &row, 0, &[4, 3], Some(&[0, 1]));
        assert_eq!(got, fingerprint(Data::F16(&dense)));
    }

    #[test]
    fn the_rust_entry_points_check_and_walk_like_tt_record() {
        let col_major = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0];
        let dense = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let data = col_major.as_ptr().cast::<u8>();
        // SAFETY: the strides address the six elements of `col_major`.
        let f = unsafe { fingerprint_strided(DType::F32, data, &[2, 3], Some(&[1, 2])) }.unwrap();
        assert_eq!(f, fingerprint(Data::F32(&dense)));
        let tracer = Tracer::builder().filter("!skipped").build().unwrap();
        let ctx = Context::default().seq(1);
        // SAFETY: as above.
        let kept =
            unsafe { record_strided(&tracer, "x", &ctx, DType::F32, data, &[2, 3], Some(&[1, 2])) };
        // SAFETY: as above.
        let skipped =
            unsafe { record_strided(&tracer, "skipped", &ctx, DType::F32, data, &[2, 3], None) };
        assert!(kept.unwrap() && !skipped.unwrap());
        let r = tracer.records().pop().unwrap();
        assert_eq!(
            (r.name.as_str(), r.seq, r.shape),
            ("x", Some(1), vec![2, 3])
        );
        // SAFETY: NULL is checked before anything is read.
        let e = unsafe { fingerprint_strided(DType::F32, std::ptr::null(), &[2], None) };
        assert!(e.unwrap_err().to_string().contains("`data` is NULL"));
        // SAFETY: an empty tensor reads nothing.
        let empty = unsafe { fingerprint_strided(DType::BF16, std::ptr::null(), &[0, 3], None) };
        assert_eq!(empty.unwrap().num_elements, 0);
    }

    #[test]
    fn dtype_codes_follow_dtype_all() {
        for (i, (code, dtype)) in DTYPE_CODES.iter().enumerate() {
            assert_eq!((*code, *dtype), (i as i32, DType::ALL[i]));
            assert_eq!(dtype_of(*code).unwrap(), *dtype);
        }
        assert!(dtype_of(8)
            .unwrap_err()
            .to_string()
            .contains("unknown dtype code 8"));
    }
}
