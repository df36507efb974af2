//! Renderers: the same [`Report`] as colored text, JSON, JUnit XML or one HTML page.
//!
//! Each renderer returns a `String`; the caller decides where it goes (and, for text, whether
//! the terminal gets the ANSI colors: `anstream` strips them when stdout is not a terminal or
//! `NO_COLOR` is set).
//!
//! The text and HTML reports both draw the layer-by-point error map of `map.rs` (one grid per
//! pass, rows from a table of views); `text_map.rs` and `html_map.rs` draw it.

mod html;
mod html_detail;
mod html_map;
mod junit;
mod map;
mod styles;
mod text;
mod text_map;

pub use html::html;
pub use junit::junit;
pub use text::{text, TextOptions};

use std::io::{self, Write};

use serde::Serialize;

// The number formats live in `crate::format`, shared with the comparison's notes.
pub(crate) use crate::format::{ratio_text, sci};
use crate::report::{
    CalibrationSummary, Counts, FirstDivergence, Ignored, LayerError, Outcome, Pair, Report,
    RunInfo, Streamed, Warning, SCHEMA, SCHEMA_VERSION,
};

/// The JSON report of a streaming diff, written as the pairs come: `schema`, `schema_version`
/// and `pairs` (one compact pair per line) first, then every other field of [`json`]'s report
/// once the diff is done. The same document as [`json`] but for the order of its fields and
/// its whitespace, in memory flat in the number of pairs.
pub struct JsonStream<W: Write> {
    out: W,
    pairs: u64,
}

/// The report's fields after `pairs`, in [`Report`]'s order.
#[derive(Serialize)]
struct Tail<'a> {
    outcome: Outcome,
    a: &'a RunInfo,
    b: &'a RunInfo,
    rules: &'a Option<String>,
    counts: &'a Counts,
    first_divergence: &'a Option<FirstDivergence>,
    layers: &'a [LayerError],
    warnings: &'a [Warning],
    calibration: &'a Option<CalibrationSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    streamed: &'a Option<Streamed>,
    #[serde(skip_serializing_if = "Ignored::is_empty")]
    ignored: &'a Ignored,
}

impl<W: Write> JsonStream<W> {
    /// Writes the opening of the document to `out`.
    pub fn begin(mut out: W) -> io::Result<Self> {
        write!(
            out,
            "{{\n  \"schema\": {},\n  \"schema_version\": {SCHEMA_VERSION},\n  \"pairs\": [",
            serde_json::to_string(SCHEMA).expect("strings serialize")
        )?;
        Ok(JsonStream { out, pairs: 0 })
    }

    /// Writes one pair.
    pub fn pair(&mut self, pair: &Pair) -> io::Result<()> {
        let sep = if self.pairs == 0 { "\n    " } else { ",\n    " };
        self.out.write_all(sep.as_bytes())?;
        serde_json::to_writer(&mut self.out, pair).map_err(io::Error::other)?;
        self.pairs += 1;
        Ok(())
    }

    /// Writes the rest of `report` (its `pairs` were written one by one) and the closing brace.
    pub fn finish(mut self, report: &Report) -> io::Result<W> {
        let tail = Tail {
            outcome: report.outcome,
            a: &report.a,
            b: &report.b,
            rules: &report.rules,
            counts: &report.counts,
            first_divergence: &report.first_divergence,
            layers: &report.layers,
            warnings: &report.warnings,
            calibration: &report.calibration,
            streamed: &report.streamed,
            ignored: &report.ignored,
        };
        let text = serde_json::to_string_pretty(&tail).map_err(io::Error::other)?;
        // `{\n  "outcome": ...}`: drop the opening brace, keep the fields and the closing one.
        let fields = text.strip_prefix('{').unwrap_or(&text);
        let close = if self.pairs == 0 { "]," } else { "\n  ]," };
        self.out.write_all(close.as_bytes())?;
        self.out.write_all(fields.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The report as pretty JSON (schema in `docs/FORMAT.md`), with a trailing newline.
pub fn json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("reports always serialize");
    s.push('\n');
    s
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
        assert_eq!(
            escape("<a & \"b\">\u{1}"),
            "&lt;a &amp; &quot;b&quot;&gt;\\u{1}"
        );
    }
}
