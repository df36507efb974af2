//! The on-disk record: one JSON document per captured tensor (`*.trace`), and the JSONL manifest.
//!
//! **API boundary:** these types *are* the file format described in `docs/FORMAT.md`. Only they
//! derive serde; the capture internals are free to change. Field order matters for humans reading
//! files, so the seed's six fields come first, then the upstream context, then ours.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DType;

/// Version of the record and manifest format written by this crate (`format_version` field).
pub const FORMAT_VERSION: u32 = 1;

/// File name of the append-only manifest inside a trace directory.
pub const MANIFEST_FILE: &str = "manifest.jsonl";

/// File name of the append-only record log of a packed trace directory: one compact
/// [`TraceRecord`] JSON document per line, in capture order (see `docs/FORMAT.md`).
pub const PACKED_LOG: &str = "records.jsonl";

/// Extension of record files (without the dot).
pub const RECORD_EXTENSION: &str = "trace";

/// One captured tensor, as written to `{name}.trace`.
///
/// Readers accept three flavours (see [`Flavor`]): the seed's plain six fields, the upstream
/// crate's records with `seq`/`layer`/`stage`, and ours with `format_version` and friends.
/// Unknown fields are ignored so newer minor additions stay readable. `Default` is for struct
/// update syntax only: its empty `blake3` does not validate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Tensor identifier as given by the engine (unsanitized).
    pub name: String,
    /// Tensor dimensions; empty for a 0-d (scalar) tensor.
    pub shape: Vec<usize>,
    /// Element type before conversion to F32, spelled as the seed spells it (`F32`, `BF16`, ...).
    /// A string rather than [`DType`] so records from engines with more dtypes stay readable.
    pub dtype: String,
    /// 64 lowercase hex characters: blake3 of the values as canonical F32 little-endian bytes.
    pub blake3: String,
    /// Root mean square over all elements (f64 accumulation); `null` when undefined: no elements,
    /// or a NaN/Inf among them (see `stats` for counts).
    pub rms: Option<f64>,
    /// Number of elements (the product of `shape`; 1 for a 0-d tensor).
    pub num_elements: u64,
    /// Token position: 0 = prefill, 1+ = decode step (upstream extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Layer: -1 = embeddings/logits, 0+ = transformer layers (upstream extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<i64>,
    /// Stage within a layer, e.g. `q_proj` (upstream extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Format version; present exactly on records written by tensor-trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    /// Global capture index in the writing process: execution order, unique per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// This record is the k-th (0-based) record with this `name` in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<u64>,
    /// Process rank for multi-process runs (tensor/pipeline parallel engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// Statistics over the finite values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// File name (in the same directory) of the raw values as a little-endian F32 `.npy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// The value sketch (see [`crate::sketch`]), absent when sketches are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sketch: Option<Sketch>,
}

/// A record's value sketch: `k` f64 buckets, stored as base64 of their little-endian bytes
/// (exact, and about 2.7 KB for `k = 256` against some 6 KB as JSON numbers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Number of buckets.
    pub k: u32,
    /// Seed of the bucket and sign hash ([`crate::sketch::SKETCH_SEED`]).
    pub seed: u64,
    /// The buckets; on disk, base64 (standard alphabet, padded) of `k` little-endian f64.
    #[serde(with = "f64le_base64")]
    pub f64le: Vec<f64>,
}

impl Sketch {
    /// The sketch of this crate's hash for `buckets`.
    pub fn new(buckets: Vec<f64>) -> Self {
        Self {
            k: buckets.len() as u32,
            seed: crate::sketch::SKETCH_SEED,
            f64le: buckets,
        }
    }

    /// The base64 text of the buckets, as written to disk.
    pub fn encoded(&self) -> String {
        f64le_base64::encode(&self.f64le)
    }
}

/// Serde for `Vec<f64>` as base64 of little-endian bytes.
mod f64le_base64 {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn encode(values: &[f64]) -> String {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        STANDARD.encode(bytes)
    }

    pub(super) fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(values))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(format!("expected base64 of little-endian f64: {e}")))?;
        if bytes.len() % 8 != 0 {
            return Err(D::Error::custom(format!(
                "expected a multiple of 8 bytes of little-endian f64, found {}",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
}

/// Statistics over the finite values of a tensor.
///
/// `min`, `max`, `mean` and `std` are `null` when no element is finite. `std` is the population
/// standard deviation (divide by the count of finite values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean of the finite values.
    pub mean: Option<f64>,
    /// Population standard deviation of the finite values.
    pub std: Option<f64>,
    /// Number of NaN elements.
    pub nan_count: u64,
    /// Number of +Inf or -Inf elements.
    pub inf_count: u64,
}

/// Which writer produced a record, judged by the fields present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// bitnet-trace: the six plain fields only.
    Seed,
    /// The upstream crate: at least one of `seq`, `layer`, `stage`, but no `format_version`.
    Upstream,
    /// tensor-trace: `format_version` is present.
    TensorTrace,
}

/// One line of `manifest.jsonl`: where the record with capture index `index` lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Global capture index (execution order).
    pub index: u64,
    /// Tensor name (unsanitized).
    pub name: String,
    /// k-th record of this name (0-based).
    pub occurrence: u64,
    /// Record file name, relative to the trace directory.
    pub file: String,
    /// `.npy` file name of the raw values, when they were saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
}

/// A record file that could not be read or is not a valid record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not JSON of the record shape (serde names the field and position).
    #[error("{path}: not a valid trace record: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde reported (names the field and line/column).
        message: String,
    },
    /// The JSON parsed but a field has a value that cannot be right.
    #[error("{path}: field `{field}`: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending field.
        field: &'static str,
        /// What is wrong and what was expected.
        problem: String,
    },
}

impl TraceRecord {
    /// Which writer produced this record.
    pub fn flavor(&self) -> Flavor {
        if self.format_version.is_some() {
            Flavor::TensorTrace
        } else if self.seq.is_some() || self.layer.is_some() || self.stage.is_some() {
            Flavor::Upstream
        } else {
            Flavor::Seed
        }
    }

    /// The parsed dtype, when it is one trace-core knows.
    pub fn dtype(&self) -> Option<DType> {
        self.dtype.parse().ok()
    }

    /// Parses a record from JSON text; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, RecordError> {
        let record: TraceRecord = parse_json(text).map_err(|message| RecordError::Parse {
            path: path.to_owned(),
            message,
        })?;
        record.validate(path)?;
        Ok(record)
    }

    /// Reads and validates one `.trace` file.
    pub fn read(path: &Path) -> Result<Self, RecordError> {
        let text = fs::read_to_string(path).map_err(|source| RecordError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Checks the invariants serde cannot: hash shape, element count, format version.
    pub fn validate(&self, path: &Path) -> Result<(), RecordError> {
        let invalid = |field, problem: String| RecordError::Invalid {
            path: path.to_owned(),
            field,
            problem,
        };
        if self.blake3.len() != 64 || !self.blake3.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "blake3",
                format!("expected 64 hex characters, found {:?}", self.blake3),
            ));
        }
        let product = crate::view::shape_elements(&self.shape);
        if product != Some(self.num_elements) {
            return Err(invalid(
                "num_elements",
                format!(
                    "{} does not match shape {:?} (product {})",
                    self.num_elements,
                    self.shape,
                    product.map_or_else(|| "overflows u64".to_owned(), |p| p.to_string())
                ),
            ));
        }
        if let Some(s) = &self.sketch {
            let problem = crate::sketch::check_sketch_k(s.k as usize)
                .err()
                .or_else(|| (s.k == 0).then(|| "k = 0 is written as no sketch".to_owned()))
                .or_else(|| {
                    (s.f64le.len() != s.k as usize)
                        .then(|| format!("k = {} but {} buckets", s.k, s.f64le.len()))
                });
            if let Some(problem) = problem {
                return Err(invalid("sketch", problem));
            }
        }
        if let Some(v) = self.format_version {
            if v == 0 || v > FORMAT_VERSION {
                return Err(invalid(
                    "format_version",
                    format!("version {v} is not supported, this reader knows 1..={FORMAT_VERSION}"),
                ));
            }
        }
        Ok(())
    }

    /// Serializes as the pretty JSON written to disk (with a trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("records always serialize");
        s.push('\n');
        s
    }

    /// Appends the record as compact JSON to `out`: byte for byte what `serde_json::to_writer`
    /// writes (a property test holds the two together), without serde's per-field dispatch and
    /// key escaping. This is the packed log's hot path; numbers and escaped strings still go
    /// through `serde_json`, so their spelling cannot drift from the derive's.
    pub(crate) fn write_compact(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":");
        json_str(out, &self.name);
        out.extend_from_slice(b",\"shape\":[");
        for (i, &d) in self.shape.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_number(out, d);
        }
        out.extend_from_slice(b"],\"dtype\":");
        json_str(out, &self.dtype);
        out.extend_from_slice(b",\"blake3\":");
        json_str(out, &self.blake3);
        field(out, b",\"rms\":", self.rms);
        field(out, b",\"num_elements\":", self.num_elements);
        // `skip_serializing_if = "Option::is_none"` fields: absent, not null.
        if let Some(v) = self.seq {
            field(out, b",\"seq\":", v);
        }
        if let Some(v) = self.layer {
            field(out, b",\"layer\":", v);
        }
        if let Some(v) = &self.stage {
            out.extend_from_slice(b",\"stage\":");
            json_str(out, v);
        }
        if let Some(v) = self.format_version {
            field(out, b",\"format_version\":", v);
        }
        if let Some(v) = self.index {
            field(out, b",\"index\":", v);
        }
        if let Some(v) = self.occurrence {
            field(out, b",\"occurrence\":", v);
        }
        if let Some(v) = self.rank {
            field(out, b",\"rank\":", v);
        }
        if let Some(s) = &self.stats {
            field(out, b",\"stats\":{\"min\":", s.min);
            field(out, b",\"max\":", s.max);
            field(out, b",\"mean\":", s.mean);
            field(out, b",\"std\":", s.std);
            field(out, b",\"nan_count\":", s.nan_count);
            field(out, b",\"inf_count\":", s.inf_count);
            out.push(b'}');
        }
        if let Some(v) = &self.values {
            out.extend_from_slice(b",\"values\":");
            json_str(out, v);
        }
        if let Some(s) = &self.sketch {
            field(out, b",\"sketch\":{\"k\":", s.k);
            field(out, b",\"seed\":", s.seed);
            out.extend_from_slice(b",\"f64le\":\"");
            out.extend_from_slice(s.encoded().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.push(b'}');
    }
}

/// A JSON string: copied between quotes when nothing needs escaping (serde_json escapes only
/// `"`, `\` and control characters below U+0020), else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
    }
}

/// A number (or `null`) exactly as serde_json spells it.
fn json_number(out: &mut Vec<u8>, v: impl Serialize) {
    serde_json::to_writer(out, &v).expect("writing to a Vec cannot fail");
}

/// `key` (the separator, the quoted name and the colon) and a number.
fn field(out: &mut Vec<u8>, key: &[u8], v: impl Serialize) {
    out.extend_from_slice(key);
    json_number(out, v);
}

impl ManifestEntry {
    /// Parses one manifest line; `path` and `line` (1-based) are used in error messages.
    pub fn from_line(text: &str, path: &Path, line: usize) -> Result<Self, RecordError> {
        parse_json(text).map_err(|message| RecordError::Parse {
            path: path.to_owned(),
            message: format!("line {line}: {message}"),
        })
    }
}

/// Parses JSON, describing a failure with the path of the offending field (`shape[1]: invalid
/// type ...`) and a hint for the common case of a file cut short by a crash.
///
/// Plain serde first: it is several times faster than the path-tracking parse, which only runs
/// again to describe a failure (reading records dominates a diff).
fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let mut message = if field == "." {
            inner.to_string()
        } else {
            format!("field `{field}`: {inner}")
        };
        if inner.is_eof() {
            message.push_str(&format!(
                " (the text ends early after {} bytes: truncated write?)",
                text.len()
            ));
        }
        message
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    fn parse(text: &str) -> Result<TraceRecord, RecordError> {
        TraceRecord::from_json(text, Path::new("t.trace"))
    }

    #[test]
    fn reads_the_three_flavors() {
        let seed = format!(
            r#"{{"name":"a","shape":[2],"dtype":"F32","blake3":"{HASH}","rms":1.0,"num_elements":2}}"#
        );
        assert_eq!(parse(&seed).unwrap().flavor(), Flavor::Seed);
        let upstream = format!(
            r#"{{"name":"a","shape":[2],"dtype":"F32","blake3":"{HASH}","rms":1.0,"num_elements":2,"seq":1,"layer":-1}}"#
        );
        let r = parse(&upstream).unwrap();
        assert_eq!(
            (r.flavor(), r.seq, r.layer),
            (Flavor::Upstream, Some(1), Some(-1))
        );
        let ours = format!(
            r#"{{"name":"a","shape":[],"dtype":"BF16","blake3":"{HASH}","rms":null,"num_elements":1,"format_version":1,"index":3,"occurrence":0}}"#
        );
        let r = parse(&ours).unwrap();
        assert_eq!(
            (r.flavor(), r.index, r.rms),
            (Flavor::TensorTrace, Some(3), None)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let missing = r#"{"name":"a","shape":[2],"dtype":"F32","rms":1.0,"num_elements":2}"#;
        let msg = parse(missing).unwrap_err().to_string();
        assert!(msg.contains("t.trace") && msg.contains("blake3"), "{msg}");

        let wrong_type = format!(
            r#"{{"name":"a","shape":"2","dtype":"F32","blake3":"{HASH}","rms":1.0,"num_elements":2}}"#
        );
        let msg = parse(&wrong_type).unwrap_err().to_string();
        assert!(msg.contains("field `shape`: invalid type"), "{msg}");

        let bad_count = format!(
            r#"{{"name":"a","shape":[2,3],"dtype":"F32","blake3":"{HASH}","rms":1.0,"num_elements":5}}"#
        );
        let msg = parse(&bad_count).unwrap_err().to_string();
        assert!(
            msg.contains("num_elements") && msg.contains("product 6"),
            "{msg}"
        );

        let bad_hash =
            r#"{"name":"a","shape":[],"dtype":"F32","blake3":"xyz","rms":1.0,"num_elements":1}"#;
        assert!(parse(bad_hash)
            .unwrap_err()
            .to_string()
            .contains("`blake3`"));

        let truncated = &bad_count[..60];
        let msg = parse(truncated).unwrap_err().to_string();
        assert!(msg.contains("truncated"), "{msg}");
    }

    mod compact {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9_./]{0,16}",
                "[a-z\"\\\\\u{0}-\u{1f}\u{7f}é€😀]{0,8}",
                any::<String>(),
            ]
        }

        fn number() -> impl Strategy<Value = Option<f64>> {
            prop::option::of(prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::NEG_INFINITY),
                Just(-0.0),
                Just(5e-324),
                Just(0.1),
            ])
        }

        fn stats() -> impl Strategy<Value = Stats> {
            (
                number(),
                number(),
                number(),
                number(),
                any::<u64>(),
                any::<u64>(),
            )
                .prop_map(|(min, max, mean, std, nan_count, inf_count)| Stats {
                    min,
                    max,
                    mean,
                    std,
                    nan_count,
                    inf_count,
                })
        }

        fn record() -> impl Strategy<Value = TraceRecord> {
            let head = (
                text(),
                prop::collection::vec(any::<usize>(), 0..4),
                text(),
                text(),
                number(),
                any::<u64>(),
            );
            let tail = (
                prop::option::of(any::<u64>()),
                prop::option::of(any::<i64>()),
                prop::option::of(text()),
                prop::option::of(any::<u32>()),
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u32>()),
                prop::option::of(stats()),
                prop::option::of(text()),
                prop::option::of(prop::collection::vec(any::<f64>(), 0..8).prop_map(Sketch::new)),
            );
            (head, tail).prop_map(
                |(
                    (name, shape, dtype, blake3, rms, num_elements),
                    (
                        seq,
                        layer,
                        stage,
                        format_version,
                        index,
                        occurrence,
                        rank,
                        stats,
                        values,
                        sketch,
                    ),
                )| TraceRecord {
                    name,
                    shape,
                    dtype,
                    blake3,
                    rms,
                    num_elements,
                    seq,
                    layer,
                    stage,
                    format_version,
                    index,
                    occurrence,
                    rank,
                    stats,
                    values,
                    sketch,
                },
            )
        }

        proptest! {
            #[test]
            fn is_byte_identical_to_serde(r in record()) {
                let mut fast = Vec::new();
                r.write_compact(&mut fast);
                prop_assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    serde_json::to_string(&r).unwrap()
                );
            }
        }
    }
}
