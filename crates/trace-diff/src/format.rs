//! Numbers for people and for JSON, shared by the comparison (its notes) and the renderers, so
//! that neither depends on the other.

use serde::Serializer;

/// A value for humans: up to 6 significant digits, scientific outside `[1e-3, 1e5)`.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.5e}");
    }
    let decimals = (5 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    s.to_owned()
}

/// A float in short scientific notation, `-` when absent, `inf` when infinite.
pub(crate) fn sci(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(0.0) => "0".to_owned(),
        Some(v) if v.is_infinite() => if v > 0.0 { "inf" } else { "-inf" }.to_owned(),
        Some(v) if v.is_nan() => "nan".to_owned(),
        Some(v) => format!("{v:.3e}"),
    }
}

/// A ratio for humans: 3 decimals between 0.01 and 1e5, else like [`sci`].
pub(crate) fn ratio_text(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() && (0.01..1e5).contains(&r) => format!("{r:.3}"),
        other => sci(other),
    }
}

/// Serializes a non-finite float as `null` (JSON has no NaN or infinity).
pub(crate) fn finite_or_null<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

/// [`finite_or_null`] for an optional float (`None` is `null` too).
pub(crate) fn opt_finite_or_null<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => finite_or_null(v, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_numbers() {
        let check = |v: f64, expected: &str| assert_eq!(num(v), expected);
        check(0.5540952682495117, "0.554095");
        check(1.5, "1.5");
        check(3.0, "3");
        check(-12345.678, "-12345.7");
        check(1e-7, "1.00000e-7");
        check(0.0, "0");
        check(f64::NAN, "NaN");
    }

    #[test]
    fn short_forms() {
        let check = |v, expected: &str| assert_eq!(sci(v), expected);
        check(None, "-");
        check(Some(0.0), "0");
        check(Some(f64::INFINITY), "inf");
        check(Some(0.000123456), "1.235e-4");
    }
}
