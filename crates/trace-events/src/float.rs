//! serde for realizar's floats (`Option<f64>`, `None` = NaN): a number, `null` for NaN, and the
//! strings `"Infinity"` / `"-Infinity"`; written back the same way.

use std::fmt;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Serializer;

/// Writes `None` (and NaN) as `null`, infinities as realizar's strings, else the number.
pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match *v {
        Some(x) if x == f64::INFINITY => s.serialize_str("Infinity"),
        Some(x) if x == f64::NEG_INFINITY => s.serialize_str("-Infinity"),
        Some(x) if !x.is_nan() => s.serialize_f64(x),
        _ => s.serialize_none(),
    }
}

/// Reads a number, `null` (NaN), `"Infinity"` or `"-Infinity"`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(FloatVisitor)
}

struct FloatVisitor;

impl<'de> Visitor<'de> for FloatVisitor {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a number, null (NaN), "Infinity" or "-Infinity""#)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v {
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_read_and_write_as_realizar_prints_them() {
        #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
        struct F(#[serde(with = "crate::float")] Option<f64>);
        for (text, value) in [
            ("1.500000", Some(1.5)),
            ("-0.000000", Some(-0.0)),
            ("3", Some(3.0)),
            ("null", None),
            (r#""Infinity""#, Some(f64::INFINITY)),
            (r#""-Infinity""#, Some(f64::NEG_INFINITY)),
        ] {
            let f: F = serde_json::from_str(text).unwrap();
            assert_eq!(f, F(value), "{text}");
            let back: F = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            assert_eq!(back, f, "{text}");
        }
        let err = serde_json::from_str::<F>(r#""NaN""#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"expected a number, null (NaN), "Infinity" or "-Infinity""#),
            "{err}"
        );
    }
}
