//! Borrowed, tensor-library-agnostic views of element data.

use half::{bf16, f16};

use crate::DType;

/// A borrowed slice of elements of one dtype: the unit a capture consumes.
///
/// Adapters that cannot hand over one contiguous slice (strided or device tensors) feed several
/// `Data` chunks, in element order, to a [`crate::Fingerprinter`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Data<'a> {
    /// binary32 elements.
    F32(&'a [f32]),
    /// binary64 elements.
    F64(&'a [f64]),
    /// binary16 elements.
    F16(&'a [f16]),
    /// bfloat16 elements.
    BF16(&'a [bf16]),
    /// i64 elements.
    I64(&'a [i64]),
    /// i32 elements.
    I32(&'a [i32]),
    /// u32 elements.
    U32(&'a [u32]),
    /// u8 elements.
    U8(&'a [u8]),
}

impl<'a> Data<'a> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::F16(_) => DType::F16,
            Data::BF16(_) => DType::BF16,
            Data::I64(_) => DType::I64,
            Data::I32(_) => DType::I32,
            Data::U32(_) => DType::U32,
            Data::U8(_) => DType::U8,
        }
    }

    /// No elements, of `dtype` (for empty tensors, or to pin a streamed capture's dtype).
    pub fn empty(dtype: DType) -> Data<'static> {
        match dtype {
            DType::F32 => Data::F32(&[]),
            DType::F64 => Data::F64(&[]),
            DType::F16 => Data::F16(&[]),
            DType::BF16 => Data::BF16(&[]),
            DType::I64 => Data::I64(&[]),
            DType::I32 => Data::I32(&[]),
            DType::U32 => Data::U32(&[]),
            DType::U8 => Data::U8(&[]),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(s) => s.len(),
            Data::F64(s) => s.len(),
            Data::F16(s) => s.len(),
            Data::BF16(s) => s.len(),
            Data::I64(s) => s.len(),
            Data::I32(s) => s.len(),
            Data::U32(s) => s.len(),
            Data::U8(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sub-range `start..end` of elements, in the same dtype.
    pub fn slice(&self, start: usize, end: usize) -> Data<'a> {
        match *self {
            Data::F32(s) => Data::F32(&s[start..end]),
            Data::F64(s) => Data::F64(&s[start..end]),
            Data::F16(s) => Data::F16(&s[start..end]),
            Data::BF16(s) => Data::BF16(&s[start..end]),
            Data::I64(s) => Data::I64(&s[start..end]),
            Data::I32(s) => Data::I32(&s[start..end]),
            Data::U32(s) => Data::U32(&s[start..end]),
            Data::U8(s) => Data::U8(&s[start..end]),
        }
    }

    /// Converts the elements to canonical F32 into `out` (which must have the same length).
    ///
    /// Floats round to nearest (`as f32`); F16/BF16 widen exactly; integers round to nearest.
    /// This is the single definition of "canonical F32" that every emitter must reproduce.
    pub fn convert_into(&self, out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        assert_eq!(self.len(), out.len(), "convert_into needs equal lengths");
        match *self {
            Data::F32(s) => out.copy_from_slice(s),
            Data::F16(s) => s.convert_to_f32_slice(out),
            Data::BF16(s) => s.convert_to_f32_slice(out),
            Data::F64(s) => out.iter_mut().zip(s).for_each(|(o, &v)| *o = v as f32),
            Data::I64(s) => out.iter_mut().zip(s).for_each(|(o, &v)| *o = v as f32),
            Data::I32(s) => out.iter_mut().zip(s).for_each(|(o, &v)| *o = v as f32),
            Data::U32(s) => out.iter_mut().zip(s).for_each(|(o, &v)| *o = v as f32),
            Data::U8(s) => out.iter_mut().zip(s).for_each(|(o, &v)| *o = f32::from(v)),
        }
    }
}

macro_rules! impl_from_slice {
    ($($t:ty => $variant:ident),*) => {$(
        impl<'a> From<&'a [$t]> for Data<'a> {
            fn from(s: &'a [$t]) -> Self {
                Data::$variant(s)
            }
        }
        impl<'a> From<&'a Vec<$t>> for Data<'a> {
            fn from(s: &'a Vec<$t>) -> Self {
                Data::$variant(s.as_slice())
            }
        }
    )*};
}

impl_from_slice!(f32 => F32, f64 => F64, f16 => F16, bf16 => BF16, i64 => I64, i32 => I32, u32 => U32, u8 => U8);

/// A whole tensor: its shape and all of its elements in row-major order.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    shape: &'a [usize],
    data: Data<'a>,
}

/// The element count does not match the shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shape {shape:?} holds {expected} elements but {found} were given")]
pub struct ShapeError {
    /// The shape given.
    pub shape: Vec<usize>,
    /// The product of the shape (None on overflow).
    pub expected: u64,
    /// The number of elements given.
    pub found: u64,
}

/// The number of elements a shape holds (1 for a 0-d tensor), or `None` on overflow.
pub fn shape_elements(shape: &[usize]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
}

impl<'a> TensorView<'a> {
    /// A view of `data` with dimensions `shape`; fails when the element count does not match.
    pub fn new(shape: &'a [usize], data: impl Into<Data<'a>>) -> Result<Self, ShapeError> {
        let data = data.into();
        let expected = shape_elements(shape).unwrap_or(u64::MAX);
        if expected != data.len() as u64 {
            return Err(ShapeError {
                shape: shape.to_vec(),
                expected,
                found: data.len() as u64,
            });
        }
        Ok(Self { shape, data })
    }

    /// The dimensions.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The elements.
    pub fn data(&self) -> Data<'a> {
        self.data
    }
}
