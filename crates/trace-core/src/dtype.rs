//! Element types a capture accepts, named as the bitnet-trace seed names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The element type of a tensor *before* conversion to canonical F32.
///
/// **API boundary:** the `name()` strings are part of the on-disk format (`dtype` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary64.
    F64,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (the upper 16 bits of a binary32).
    BF16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 8-bit integer.
    U8,
}

impl DType {
    /// Every dtype, in a stable order.
    pub const ALL: [DType; 8] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::U32,
        DType::U8,
    ];

    /// The seed's spelling: `F32`, `BF16`, ...
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::U32 => "U32",
            DType::U8 => "U8",
        }
    }

    /// Bytes per element in the source representation.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// Whether the type is a floating-point type (and can hold NaN or Inf).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dtype string that names no known dtype.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype {found:?}, expected one of F32, F64, F16, BF16, I64, I32, U32, U8")]
pub struct UnknownDType {
    /// The string that was given.
    pub found: String,
}

impl FromStr for DType {
    type Err = UnknownDType;

    /// Parses the seed's spelling, case-insensitively (`bf16` and `BF16` both work).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownDType {
                found: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
            assert_eq!(d.name().to_lowercase().parse::<DType>().unwrap(), d);
        }
        assert!("F8".parse::<DType>().is_err());
    }

    #[test]
    fn serde_uses_seed_spelling() {
        assert_eq!(serde_json::to_string(&DType::BF16).unwrap(), "\"BF16\"");
        let d: DType = serde_json::from_str("\"U8\"").unwrap();
        assert_eq!(d, DType::U8);
    }
}
