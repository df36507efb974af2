//! Jidoka checks over a recorded run: where NaN or Inf first appear, with cause and hint.
//!
//! A trace directory has no pipeline steps, only named records in execution order, so the
//! check works on names, layers and stages: the first record holding a non-finite value is the
//! origin (every record before it was finite), later ones are reported as propagation. The hint
//! is chosen from the name and stage of the origin.

use crate::run::{Run, RunRecord};
use crate::TraceRecord;

/// A record holding NaN or Inf.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Position in the run's capture order.
    pub position: usize,
    /// Record file name.
    pub file: String,
    /// Tensor name.
    pub name: String,
    /// Layer, when recorded.
    pub layer: Option<i64>,
    /// Token position, when recorded.
    pub seq: Option<u64>,
    /// Stage, when recorded.
    pub stage: Option<String>,
    /// NaN elements.
    pub nan_count: u64,
    /// Inf elements.
    pub inf_count: u64,
    /// Whether this is the first non-finite record of the run (the origin).
    pub origin: bool,
    /// Why it matters / where it came from.
    pub cause: String,
    /// Where to look.
    pub hint: String,
}

impl Finding {
    /// `blk3/attn_out (layer 3, step 0, stage attn_out)`.
    pub fn location(&self) -> String {
        location(&self.name, self.layer, self.seq, self.stage.as_deref())
    }
}

/// A record's name with its layer, step and stage, as findings print it:
/// `blk3/attn_out (layer 3, step 0, stage attn_out)`.
pub fn record_location(r: &TraceRecord) -> String {
    location(&r.name, r.layer, r.seq, r.stage.as_deref())
}

fn location(name: &str, layer: Option<i64>, seq: Option<u64>, stage: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(l) = layer {
        parts.push(format!("layer {l}"));
    }
    if let Some(s) = seq {
        parts.push(format!("step {s}"));
    }
    if let Some(s) = stage {
        parts.push(format!("stage {s}"));
    }
    if parts.is_empty() {
        name.to_owned()
    } else {
        format!("{name} ({})", parts.join(", "))
    }
}

/// Every record of `run` holding NaN or Inf, in capture order, the first marked as the origin.
///
/// Records written without stats (the seed's format) cannot be checked: they are skipped, and
/// [`unchecked`] counts them so callers can say so.
pub fn non_finite(run: &Run) -> Vec<Finding> {
    let mut scan = NonFiniteScan::new();
    run.records().iter().filter_map(|r| scan.push(r)).collect()
}

/// [`non_finite`] one record at a time, for runs read as a stream
/// ([`crate::run::RunStream`]): the same findings, in memory that does not grow with the run.
#[derive(Debug, Default)]
pub struct NonFiniteScan {
    /// Records looked at so far (the next record's position).
    seen: usize,
    /// Records without stats among them.
    unchecked: usize,
    /// Name of the last record looked at, kept until the origin is found (its cause names it).
    previous: Option<String>,
    /// Position and name of the first non-finite record, once found.
    origin: Option<(usize, String)>,
}

impl NonFiniteScan {
    /// A scan that has seen no record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records looked at so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Records looked at that have no stats (seed format), which cannot be checked.
    pub fn unchecked(&self) -> usize {
        self.unchecked
    }

    /// Looks at the next record in capture order; its finding when it holds NaN or Inf.
    pub fn push(&mut self, r: &RunRecord) -> Option<Finding> {
        let position = self.seen;
        self.seen += 1;
        let rec = &r.record;
        let stats = match &rec.stats {
            Some(s) if s.nan_count + s.inf_count > 0 => s,
            other => {
                self.unchecked += usize::from(other.is_none());
                if self.origin.is_none() {
                    let previous = self.previous.get_or_insert_with(String::new);
                    previous.clear();
                    previous.push_str(&rec.name);
                }
                return None;
            }
        };
        // "1 NaN first appears", "4 NaN first appear".
        let (what, verb) = match (stats.nan_count, stats.inf_count) {
            (n, 0) => (
                format!("{n} NaN"),
                if n == 1 { "appears" } else { "appear" },
            ),
            (0, i) => (
                format!("{i} Inf"),
                if i == 1 { "appears" } else { "appear" },
            ),
            (n, i) => (format!("{n} NaN and {i} Inf"), "appear"),
        };
        let (is_origin, cause, hint) = match &self.origin {
            None => {
                let before = match &self.previous {
                    Some(name) => {
                        format!(" while every earlier record (the last one: {name}) was finite")
                    }
                    None => " in the very first record".to_owned(),
                };
                self.origin = Some((position, rec.name.clone()));
                self.previous = None;
                (
                    true,
                    format!("{what} first {verb}{before}"),
                    hint_for(&rec.name, rec.stage.as_deref(), stats.nan_count > 0),
                )
            }
            Some((at, name)) => (
                false,
                format!("{what}, downstream of {name} (record #{at}) where non-finite values first appeared"),
                format!("fix {name} first; this record only propagates it"),
            ),
        };
        Some(Finding {
            position,
            file: r.file.clone(),
            name: rec.name.clone(),
            layer: rec.layer,
            seq: rec.seq,
            stage: rec.stage.clone(),
            nan_count: stats.nan_count,
            inf_count: stats.inf_count,
            origin: is_origin,
            cause,
            hint,
        })
    }
}

/// Records without stats (seed-format records), which [`non_finite`] cannot check.
pub fn unchecked(run: &Run) -> usize {
    run.records()
        .iter()
        .filter(|r| r.record.stats.is_none())
        .count()
}

/// Likely culprits by tensor name or stage, checked in order (norms before attention, so
/// `attn_norm` is a norm).
const HINTS: &[(&[&str], &str)] = &[
    (
        &["norm", "ln", "rms"],
        "look at the normalization: epsilon (0 or too small), the variance of an all-zero row, \
         the weight scale",
    ),
    (
        &[
            "softmax",
            "score",
            "attn",
            "attention",
            "q_proj",
            "k_proj",
            "/q",
            "/k",
            "/v",
        ],
        "look at the attention: softmax scaling (1/sqrt(d)), masking with -inf on a fully masked \
         row, KV-cache positions, overflow of Q·K in f16/bf16",
    ),
    (
        &["ffn", "mlp", "gate", "up", "down", "act", "gelu", "silu"],
        "look at the MLP: activation overflow (exp in SiLU/GELU), a transposed or wrongly scaled \
         weight, f16 overflow in the up projection",
    ),
    (
        &["logit", "lm_head", "head"],
        "look at lm_head and the final norm: a weight loaded with the wrong dtype or shape",
    ),
    (
        &["embed", "tok"],
        "look at the embedding lookup: token ids out of range, uninitialized or wrongly \
         dequantized embedding rows",
    ),
];

/// Where a non-finite value usually comes from, judged by the tensor's name and stage.
fn hint_for(name: &str, stage: Option<&str>, nan: bool) -> String {
    let key = format!("{} {}", name, stage.unwrap_or("")).to_ascii_lowercase();
    let by_name = HINTS
        .iter()
        .find(|(words, _)| words.iter().any(|w| key.contains(w)))
        .map(|(_, hint)| *hint);
    let generic = if nan {
        "a NaN comes from 0/0, inf-inf, sqrt or log of a negative number, or an uninitialized \
         buffer: check the operations producing this tensor"
    } else {
        "an Inf comes from overflow (exp, large products in f16/bf16) or division by zero: check \
         the operations producing this tensor"
    };
    by_name.unwrap_or(generic).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, TensorView, Tracer};

    #[test]
    fn first_non_finite_record_is_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracer::builder().dir(dir.path()).build().unwrap();
        let finite = [1.0f32, 2.0];
        let bad = [f32::NAN, 1.0];
        let inf = [f32::INFINITY, f32::NAN];
        let rec = |name: &str, layer: i64, stage: &str, v: &[f32]| {
            let ctx = Context::default().layer(layer).seq(0).stage(stage);
            t.record(name, &ctx, TensorView::new(&[2], v).unwrap())
                .unwrap();
        };
        rec("blk0/attn_norm", 0, "attn_norm", &finite);
        rec("blk0/scores", 0, "scores", &bad);
        rec("blk0/ffn_out", 0, "ffn_out", &inf);
        let run = Run::open(dir.path()).unwrap();
        let f = non_finite(&run);
        assert_eq!(f.len(), 2);
        assert!(f[0].origin && !f[1].origin);
        assert_eq!(f[0].position, 1);
        assert_eq!(
            f[0].cause,
            "1 NaN first appears while every earlier record (the last one: blk0/attn_norm) was finite"
        );
        assert!(f[0].hint.contains("softmax scaling"), "{}", f[0].hint);
        assert_eq!(
            f[0].location(),
            "blk0/scores (layer 0, step 0, stage scores)"
        );
        assert!(f[1]
            .cause
            .contains("1 NaN and 1 Inf, downstream of blk0/scores"));
        assert_eq!(unchecked(&run), 0);
    }

    #[test]
    fn a_scan_counts_records_without_stats_and_names_a_first_record_origin() {
        let record = |name: &str, stats: Option<crate::Stats>| RunRecord {
            file: format!("{name}.trace"),
            record: TraceRecord {
                name: name.to_owned(),
                shape: vec![1],
                dtype: "F32".to_owned(),
                blake3: "0".repeat(64),
                num_elements: 1,
                stats,
                ..TraceRecord::default()
            },
            occurrence: 0,
            values: None,
        };
        let nan = crate::Stats {
            nan_count: 1,
            ..crate::Stats::default()
        };
        let mut scan = NonFiniteScan::new();
        let first = scan.push(&record("embed", Some(nan))).unwrap();
        assert!(first.origin && first.cause.ends_with("in the very first record"));
        assert_eq!(scan.push(&record("seed_style", None)), None);
        let later = scan.push(&record("out", Some(nan))).unwrap();
        assert!(!later.origin && later.cause.contains("downstream of embed (record #0)"));
        assert_eq!((scan.seen(), scan.unchecked()), (3, 1));
    }

    #[test]
    fn hints_follow_the_name() {
        assert!(hint_for("blk1/attn_norm", None, true).contains("epsilon"));
        assert!(hint_for("blk1/ffn_out", None, false).contains("MLP"));
        assert!(hint_for("logits", None, false).contains("lm_head"));
        assert!(hint_for("tok_embeddings", None, true).contains("embedding"));
        assert!(hint_for("mystery", None, true).contains("0/0"));
        assert!(hint_for("mystery", None, false).contains("overflow"));
    }
}
