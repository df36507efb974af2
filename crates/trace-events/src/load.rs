//! Reading a history: ours (with `format_version`) or realizar's `--trace-output` layout.

use std::borrow::Cow;
use std::path::Path;

use serde::Deserialize;

use crate::realizar;
use crate::schema::TraceDocument;
use crate::version::EVENTS_FORMAT_VERSION;
use crate::Error;

impl TraceDocument {
    /// Parses a history and checks its format version: ours (with `format_version`), or
    /// realizar's `--trace-output` JSON (without), read as `docs/FORMAT.md` ("Reading realizar's
    /// histories") describes: what realizar does not write stays `None`.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        /// Only whether the key is there; every other key is skipped unparsed.
        #[derive(Deserialize)]
        struct Probe {
            format_version: Option<serde::de::IgnoredAny>,
        }
        let probe: Probe = match serde_json::from_str(text) {
            Ok(probe) => probe,
            Err(e) => {
                // realizar prints strings with Rust's `{:?}`, whose `\0` and `\u{..}` JSON lacks.
                if let Cow::Owned(json) = realizar::rust_escapes_to_json(text) {
                    let probe: Result<Probe, _> = serde_json::from_str(&json);
                    if probe.is_ok_and(|p| p.format_version.is_none()) {
                        return realizar::read(&json);
                    }
                }
                return Err(e.into());
            }
        };
        if probe.format_version.is_none() {
            return realizar::read(text);
        }
        let doc: TraceDocument = serde_json::from_str(text)?;
        if doc.format_version == 0 || doc.format_version > EVENTS_FORMAT_VERSION {
            return Err(Error::Version {
                found: doc.format_version,
            });
        }
        Ok(doc)
    }

    /// Reads a history file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }
}

#[cfg(test)]
mod tests {
    use crate::{ModelInfo, Producer, TraceDocument, REALIZAR_VERSION};

    #[test]
    fn version_is_checked() {
        let doc = TraceDocument {
            version: REALIZAR_VERSION.into(),
            format_version: 2,
            producer: Producer::TensorTrace,
            timestamp: String::new(),
            model: ModelInfo::default(),
            events: vec![],
            error_count: 0,
            warning_count: 0,
        };
        let err = TraceDocument::from_json(&doc.to_json()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event format_version 2 is not supported, this reader knows 1..=1"
        );
    }
}
