//! Renderers: the same [`Report`] as colored text, JSON, JUnit XML or one HTML page.
//!
//! Each renderer returns a `String`; the caller decides where it goes (and, for text, whether
//! the terminal gets the ANSI colors: `anstream` strips them when stdout is not a terminal or
//! `NO_COLOR` is set).

mod html;
mod junit;
mod text;

pub use html::html;
pub use junit::junit;
pub use text::{text, TextOptions};

use crate::report::Report;

/// The report as pretty JSON (schema in `docs/FORMAT.md`), with a trailing newline.
pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("reports always serialize");
    s.push('\n');
    s
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

/// Where a pair sits: `step 0, layer 3, stage q_proj, index 57`.
pub(crate) fn context(p: &crate::Pair) -> String {
    let mut parts = Vec::new();
    if let Some(s) = p.seq {
        parts.push(format!("step {s}"));
    }
    if let Some(l) = p.layer {
        parts.push(format!("layer {l}"));
    }
    if let Some(s) = &p.stage {
        parts.push(format!("stage {s}"));
    }
    if let Some(i) = p.index {
        parts.push(format!("index {i}"));
    }
    parts.push(format!("occurrence {}", p.occurrence));
    parts.join(", ")
}

/// Escapes text for XML and HTML (content and attribute values).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let check = |v, expected: &str| assert_eq!(sci(v), expected);
        check(None, "-");
        check(Some(0.0), "0");
        check(Some(f64::INFINITY), "inf");
        check(Some(0.000123456), "1.235e-4");
        assert_eq!(
            escape("<a & \"b\">\u{1}"),
            "&lt;a &amp; &quot;b&quot;&gt;\\u{1}"
        );
    }
}
