//! Reading realizar's own event histories: the JSON its `InferenceTracer::to_json` prints for
//! `--trace-output`.
//!
//! realizar prints that JSON by hand, not with serde. What it writes, and how each part is read:
//!
//! - Top level: `version` (the string `"1.0"`, checked), `timestamp` (when the file was
//!   *written*), `model` with exactly `name`, `num_layers`, `hidden_dim`, `vocab_size`,
//!   `num_heads`, then `events`, `error_count`, `warning_count`. No `format_version`: its absence
//!   is what marks a realizar history. The document is held in our format with
//!   [`Producer::Realizar`].
//! - Per event: `id`, `timestamp` (wall clock, milliseconds), `type`, `previous_event_id`,
//!   `step`, `iteration`, `layer`, `input_shape`, `output_shape`, `duration_us`, `stats`,
//!   `error` (the violation's display text), `cause`; no `details`, no elapsed time, no
//!   severity, hint or error kind. Those stay `None`: nothing is made up, except that every
//!   recorded `error` has severity `error`, because realizar counts each one in `error_count`
//!   and has no warnings.
//! - `stats` has only `min`, `max`, `mean`, `std`, `has_nan`, `has_inf`, read into a
//!   [`StatsSummary`] (the counts, RMS and hash of [`EventStats`](super::EventStats) are
//!   unknown). Every float is printed with six decimals, NaN as `null` and infinities as the
//!   strings `"Infinity"` and `"-Infinity"` (an all-NaN tensor has `"min": "Infinity",
//!   "max": "-Infinity"`). Events without a tensor carry an all-zero block; that block is read
//!   as "no statistics" (`summary: None`), since realizar writes the same block for an entry, a
//!   tokenize or decode step and an empty tensor.
//! - A run-level failure (`ExecutionFailed` without `previous_event_id`) carries realizar's
//!   placeholder step `TOKENIZE`; it is read with step `None`, as our format records it.
//! - Strings are printed with Rust's `{:?}`, which writes escapes JSON does not have (`\0`,
//!   `\u{1b}`): a file that only parses once those are rewritten is read that way.

use std::borrow::Cow;

use serde::Deserialize;

use super::schema::{
    EventType, ModelInfo, Producer, Severity, StatsSummary, TraceDetails, TraceDocument, TraceEvent,
};
use super::step::TraceStep;
use crate::version::{EVENTS_FORMAT_VERSION, REALIZAR_VERSION};
use crate::Error;

/// realizar's top level, key for key.
#[derive(Deserialize)]
struct Document {
    version: String,
    timestamp: String,
    model: ModelInfo,
    events: Vec<Event>,
    error_count: u64,
    warning_count: u64,
}

/// One realizar event, key for key.
#[derive(Deserialize)]
struct Event {
    id: u64,
    timestamp: String,
    #[serde(rename = "type")]
    event_type: EventType,
    previous_event_id: Option<u64>,
    step: TraceStep,
    iteration: u64,
    layer: Option<u64>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    duration_us: u64,
    stats: StatsSummary,
    error: Option<String>,
    cause: Option<String>,
}

impl Event {
    fn into_event(self) -> TraceEvent {
        let run_level = self.event_type == EventType::ExecutionFailed
            && self.previous_event_id.is_none()
            && self.step == TraceStep::Tokenize;
        let blank = self.stats
            == StatsSummary {
                min: Some(0.0),
                max: Some(0.0),
                mean: Some(0.0),
                std: Some(0.0),
                has_nan: false,
                has_inf: false,
            };
        TraceEvent {
            id: self.id,
            timestamp: self.timestamp,
            event_type: self.event_type,
            previous_event_id: self.previous_event_id,
            parent_event_id: None,
            step: (!run_level).then_some(self.step),
            name: None,
            iteration: self.iteration,
            layer: self.layer,
            input_shape: self.input_shape,
            output_shape: self.output_shape,
            elapsed_us: None,
            duration_us: self.duration_us,
            stats: None,
            summary: (!blank).then_some(self.stats),
            severity: self.error.as_ref().map(|_| Severity::Error),
            error: self.error,
            error_kind: None,
            cause: self.cause,
            hint: None,
            details: TraceDetails::default(),
        }
    }
}

/// Reads a history without `format_version` as realizar's layout.
pub(super) fn read(text: &str) -> Result<TraceDocument, Error> {
    let doc: Document = serde_json::from_str(text).map_err(Error::Realizar)?;
    if doc.version != REALIZAR_VERSION {
        return Err(Error::RealizarVersion { found: doc.version });
    }
    Ok(TraceDocument {
        version: doc.version,
        format_version: EVENTS_FORMAT_VERSION,
        producer: Producer::Realizar,
        timestamp: doc.timestamp,
        model: doc.model,
        events: doc.events.into_iter().map(Event::into_event).collect(),
        error_count: doc.error_count,
        warning_count: doc.warning_count,
    })
}

/// Rewrites the escapes Rust's `{:?}` puts in strings and JSON lacks (`\0`, `\'`, `\u{...}`)
/// as JSON escapes. `Borrowed` when there is none, so valid JSON is never changed: in valid JSON
/// a backslash inside a string is always followed by one of `"\/bfnrtu` and `\u` by four hex
/// digits, never by `{`.
pub(super) fn rust_escapes_to_json(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut in_string = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            '\\' if in_string => {
                let Some(&(_, next)) = chars.peek() else {
                    break;
                };
                let replacement = match next {
                    '0' => Some((2, "\\u0000".to_owned())),
                    '\'' => Some((2, "'".to_owned())),
                    'u' if text[i + 2..].starts_with('{') => braced_escape(&text[i..]),
                    _ => None,
                };
                match replacement {
                    Some((len, json)) => {
                        changed = true;
                        out.push_str(&text[copied..i]);
                        out.push_str(&json);
                        copied = i + len;
                        while chars.peek().is_some_and(|&(j, _)| j < copied) {
                            chars.next();
                        }
                    }
                    // A JSON escape: skip the escaped character (it may be a quote).
                    None => {
                        chars.next();
                    }
                }
            }
            _ => {}
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// `\u{1f600}` at the start of `s`: its length in bytes and the JSON escape(s) for it.
fn braced_escape(s: &str) -> Option<(usize, String)> {
    let close = s.find('}')?;
    let hex = &s[3..close];
    if hex.is_empty() || hex.len() > 6 {
        return None;
    }
    let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
    let mut units = [0u16; 2];
    let json = c
        .encode_utf16(&mut units)
        .iter()
        .map(|u| format!("\\u{u:04x}"))
        .collect();
    Some((close + 1, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_escapes_become_json_and_json_is_left_alone() {
        let rust = r#"{"a": "x\u{1b}y\0z\u{1f600}", "b": "it\'s"}"#;
        let json = rust_escapes_to_json(rust);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["a"], "x\u{1b}y\0z\u{1f600}");
        assert_eq!(v["b"], "it's");
        // Escaped backslashes followed by "u{" or "0" are text, not escapes.
        for valid in [
            r#"{"a": "C:\\u{1b}\\0", "b": "\"\\"}"#,
            r#"{"a": "\u001b"}"#,
            "{}",
        ] {
            assert!(
                matches!(rust_escapes_to_json(valid), Cow::Borrowed(_)),
                "{valid}"
            );
        }
        // A brace escape outside a string is not touched (and stays invalid JSON).
        assert!(matches!(
            rust_escapes_to_json(r"{\u{1b}}"),
            Cow::Borrowed(_)
        ));
    }
}
