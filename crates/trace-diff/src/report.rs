//! The result of a comparison.
//!
//! **API boundary:** these types serialize to the JSON report (`--format json`), whose schema is
//! documented in `docs/FORMAT.md` and versioned by [`SCHEMA_VERSION`]. Adding a field is a
//! compatible change; renaming or removing one bumps the version.

use std::sync::Arc;

use serde::Serialize;
use trace_core::run::RunRecord;

use crate::format::opt_finite_or_null;
use crate::intern::Interner;
use crate::metrics::{LogitMetrics, ValueMetrics};
use crate::rules::{Tolerance, ViewsUsed};

/// Name of the JSON report schema (`schema` field).
pub const SCHEMA: &str = "tensor-trace-diff";

/// Version of the JSON report schema (`schema_version` field).
pub const SCHEMA_VERSION: u32 = 1;

/// The judgement on one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Same hash: bit-identical canonical F32 values.
    Identical,
    /// Values differ but pass the tolerance on the evidence available.
    WithinTolerance,
    /// Values differ beyond tolerance.
    Diverged,
    /// No partner on the other side.
    Missing,
    /// Element counts differ: the two cannot be compared.
    Incompatible,
}

impl Verdict {
    /// The snake_case name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Identical => "identical",
            Verdict::WithinTolerance => "within_tolerance",
            Verdict::Diverged => "diverged",
            Verdict::Missing => "missing",
            Verdict::Incompatible => "incompatible",
        }
    }

    /// Whether this verdict counts as the run parting from the reference.
    pub fn is_divergence(self) -> bool {
        matches!(self, Verdict::Diverged | Verdict::Incompatible)
    }
}

/// What a verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Equal blake3 hashes.
    Hash,
    /// Raw values from `.npy` files on both sides: element-wise.
    Values,
    /// `stats` (rms, mean, std, NaN and Inf counts) on both sides.
    Stats,
    /// Only `rms` on both sides (seed records).
    Rms,
    /// Shape or element count.
    Shape,
    /// Nothing beyond differing hashes (no values, no finite rms).
    HashOnly,
    /// No partner record.
    None,
    /// Value sketches on both sides: the relative L2 error estimated (see [`crate::sketch`]).
    Sketch,
}

impl Evidence {
    /// The snake_case name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            Evidence::Hash => "hash",
            Evidence::Values => "values",
            Evidence::Stats => "stats",
            Evidence::Rms => "rms",
            Evidence::Shape => "shape",
            Evidence::HashOnly => "hash_only",
            Evidence::None => "none",
            Evidence::Sketch => "sketch",
        }
    }
}

/// Overall answer, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every matched record is identical or within tolerance (exit code 0).
    Agree,
    /// At least one matched record diverged or is incompatible (exit code 1).
    Diverged,
    /// Every matched record agrees, but records of one side have no partner on the other, so
    /// part of the run was never compared (exit code 1; `--allow-missing` accepts it as agree).
    Incomplete,
}

impl Outcome {
    /// The process exit code: 0 agree, 1 diverged or incomplete (2, error, is the binary's).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Agree => 0,
            Outcome::Diverged | Outcome::Incomplete => 1,
        }
    }
}

/// One run as the report describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// The directory, as given.
    pub dir: String,
    /// `manifest`, `index` or `guessed` (see `trace_core::run`).
    pub order: &'static str,
    /// Whether the order is the execution order.
    pub execution_order_known: bool,
    /// Readable records.
    pub records: u64,
    /// Records left out by the ignore lists.
    pub ignored: u64,
}

/// Counts of verdicts (with a baseline, `within_tolerance` includes calibrated agreements).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Matched pairs.
    pub compared: u64,
    /// Bit-identical pairs.
    pub identical: u64,
    /// Pairs within tolerance.
    pub within_tolerance: u64,
    /// Diverged pairs.
    pub diverged: u64,
    /// Pairs with differing element counts.
    pub incompatible: u64,
    /// Records of A with no partner in B.
    pub missing_in_b: u64,
    /// Records of B with no partner in A.
    pub missing_in_a: u64,
}

impl Counts {
    /// Counts a matched pair by its verdict (missing records are counted where they are found).
    pub fn count_compared(&mut self, verdict: Verdict) {
        self.compared += 1;
        match verdict {
            Verdict::Identical => self.identical += 1,
            Verdict::WithinTolerance => self.within_tolerance += 1,
            Verdict::Diverged => self.diverged += 1,
            Verdict::Incompatible => self.incompatible += 1,
            Verdict::Missing => {}
        }
    }
}

/// Deltas of the recorded statistics (B is the reference); `null` where a side lacks the value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsDelta {
    /// Side-A RMS.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub rms_a: Option<f64>,
    /// Side-B RMS.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub rms_b: Option<f64>,
    /// `|rms_a - rms_b|`.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub rms: Option<f64>,
    /// `|mean_a - mean_b|`.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub mean: Option<f64>,
    /// `|std_a - std_b|`.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub std: Option<f64>,
    /// `|min_a - min_b|`.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub min: Option<f64>,
    /// `|max_a - max_b|`.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub max: Option<f64>,
    /// NaN counts `[a, b]`, when both sides have stats.
    pub nan_count: Option<[u64; 2]>,
    /// Inf counts `[a, b]`, when both sides have stats.
    pub inf_count: Option<[u64; 2]>,
}

/// The tolerance applied to a pair and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedTolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// `default for F32`, `rules default_tolerance`, `rules tolerance "blk*"`, ...
    pub source: String,
}

impl AppliedTolerance {
    /// The tolerance without its source.
    pub fn tolerance(&self) -> Tolerance {
        Tolerance::new(self.atol, self.rtol)
    }
}

/// One record of A with its partner in B (or its absence), or a record of B alone.
///
/// A report holds every pair, so a pair's size is most of a long diff's memory (the runs are
/// read a few chunks at a time): the sections only some pairs have (`values`, `logits`,
/// `calibration`, `sketch`) are boxed, eight bytes when absent, and the names, stage, dtypes,
/// shapes and tolerance are shared between the pairs of a diff (`Arc`: a long run repeats a few
/// hundred names and one dtype), so a matched pair costs its 472 bytes, its record file names and its reason.
/// A section added for some pairs only belongs in a box too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    /// Position in A's capture order (0-based); for B-only records, in B's.
    pub position: u64,
    /// Which side the record comes from when unmatched (`a` or `b`); `null` for matched pairs.
    pub only_in: Option<&'static str>,
    /// Name on side A (`null` for B-only records).
    pub name_a: Option<Arc<str>>,
    /// Name on side B (after mapping; `null` when nothing matched).
    pub name_b: Option<Arc<str>>,
    /// k-th record of this name.
    pub occurrence: u64,
    /// Capture index on the record's own side, when recorded.
    pub index: Option<u64>,
    /// Token position (0 = prefill, 1+ = decode step).
    pub seq: Option<u64>,
    /// Layer (-1 = embeddings/logits).
    pub layer: Option<i64>,
    /// Stage within the layer.
    pub stage: Option<Arc<str>>,
    /// The verdict.
    pub verdict: Verdict,
    /// What the verdict rests on.
    pub evidence: Evidence,
    /// Why, in one sentence (what failed, or notes such as differing shapes).
    pub reason: Option<String>,
    /// Shapes `[a, b]`.
    pub shape: [Option<Arc<[usize]>>; 2],
    /// Dtypes `[a, b]`.
    pub dtype: [Option<Arc<str>>; 2],
    /// Record files `[a, b]`, relative to their directories (one copy when they are equal).
    pub file: [Option<Arc<str>>; 2],
    /// The tolerance applied (matched pairs).
    pub tolerance: Option<Arc<AppliedTolerance>>,
    /// Deltas of the recorded statistics (matched pairs).
    pub stats: Option<StatsDelta>,
    /// Element-wise metrics (when both sides have values).
    pub values: Option<Box<ValueMetrics>>,
    /// Logits metrics (values on both sides and the name matches a `logits` glob).
    pub logits: Option<Box<LogitMetrics>>,
    /// The error profile scalar: relative L2 with values, else relative RMS delta
    /// (`|rms_a - rms_b| / rms_b`), 0 when identical; `null` when unknown.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub error: Option<f64>,
    /// The judgement against the baseline run (calibrated diffs, matched pairs); `null`
    /// otherwise.
    pub calibration: Option<Box<Calibration>>,
    /// The error estimated from the value sketches, when the verdict rests on them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sketch: Option<Box<SketchEstimate>>,
}

/// The sketch estimate of a pair's error (JSON field `sketch` of a pair).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SketchEstimate {
    /// Buckets of the two sketches.
    pub k: u32,
    /// Estimated relative L2 error `||a - b|| / ||b||`.
    pub rel_l2: f64,
    /// Lower end of the range holding the exact relative L2 error at 2 standard deviations.
    pub rel_l2_low: f64,
    /// Upper end of that range.
    pub rel_l2_high: f64,
    /// Estimated RMS of the difference, `||a - b|| / sqrt(n)` (what the tolerance bounds).
    pub rms_diff: f64,
}

impl Pair {
    /// A record without a partner, from side `side` (`a` or `b`) at `position` in its order.
    #[cfg(test)]
    pub(crate) fn unmatched(
        position: u64,
        side: &'static str,
        r: &RunRecord,
        reason: Option<String>,
    ) -> Pair {
        Pair::unmatched_in(&mut Interner::default(), position, side, r, reason)
    }

    /// [`Pair::unmatched`] with its text from `texts`.
    pub(crate) fn unmatched_in(
        texts: &mut Interner<AppliedTolerance>,
        position: u64,
        side: &'static str,
        r: &RunRecord,
        reason: Option<String>,
    ) -> Pair {
        let rec = &r.record;
        // `[a, b]` with the record's value on its own side.
        fn sided<T>(side: &str, v: T) -> [Option<T>; 2] {
            match side {
                "a" => [Some(v), None],
                _ => [None, Some(v)],
            }
        }
        let [name_a, name_b] = sided(side, texts.text(&rec.name));
        Pair {
            position,
            only_in: Some(side),
            name_a,
            name_b,
            occurrence: r.occurrence,
            index: rec.index,
            seq: rec.seq,
            layer: rec.layer,
            stage: rec.stage.as_deref().map(|s| texts.text(s)),
            verdict: Verdict::Missing,
            evidence: Evidence::None,
            reason,
            shape: sided(side, texts.shape(&rec.shape)),
            dtype: sided(side, texts.text(&rec.dtype)),
            file: sided(side, Arc::from(r.file.as_str())),
            tolerance: None,
            stats: None,
            values: None,
            logits: None,
            error: None,
            calibration: None,
            sketch: None,
        }
    }

    /// The name to show: A's name, else B's.
    pub fn display_name(&self) -> &str {
        self.name_a
            .as_deref()
            .or(self.name_b.as_deref())
            .unwrap_or("")
    }
}

/// Whether a matched pair could be judged against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationStatus {
    /// `e_A`, `e_C` and the ratio are known; the verdict rests on the ratio.
    Calibrated,
    /// The baseline has no record of this name and occurrence: the verdict rests on the
    /// tolerance, as without a baseline, and the pair says so.
    Missing,
    /// The baseline has the record but its error cannot be measured (element count differs
    /// from B's, no common statistic, or B's values are all zero while the baseline's are not):
    /// judged by the tolerance, as for `Missing`.
    Unusable,
}

impl CalibrationStatus {
    /// The snake_case name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            CalibrationStatus::Calibrated => "calibrated",
            CalibrationStatus::Missing => "missing",
            CalibrationStatus::Unusable => "unusable",
        }
    }
}

/// A pair judged against the baseline run C: the engine's error `e_A` (A vs B), the
/// baseline's `e_C` (C vs B) and `ratio = e_A / max(e_C, floor)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Whether the ratio could be measured.
    pub status: CalibrationStatus,
    /// What both errors are computed from: `values` (relative L2, values in all three runs),
    /// `stats` or `rms` (the statistics-based lower bound); `null` unless calibrated.
    pub evidence: Option<Evidence>,
    /// The engine's error against the reference (0 when A and B are identical).
    #[serde(serialize_with = "opt_finite_or_null")]
    pub e_a: Option<f64>,
    /// The baseline's error against the reference.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub e_c: Option<f64>,
    /// The least `e_C` the ratio divides by: the unit roundoff of the less precise of A's and
    /// C's dtypes.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub floor: Option<f64>,
    /// `e_A / max(e_C, floor)`; `null` when unknown or infinite.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub ratio: Option<f64>,
    /// Elements (or, from statistics, NaN/Inf counts) where A is NaN or Inf and B is not (or
    /// the reverse) while the baseline does not do the same: a divergence whatever the ratio.
    pub nonfinite_unexcused: u64,
    /// The baseline's record file, relative to its directory.
    pub baseline_file: Option<String>,
}

/// What a calibrated diff adds to the report: the baseline run and how the pairs fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationSummary {
    /// The baseline run C: the reference in A's precision.
    pub baseline: RunInfo,
    /// `K`: a ratio above it is a divergence.
    pub max_ratio: f64,
    /// Matched pairs judged on their ratio.
    pub calibrated: u64,
    /// Calibrated pairs that diverged (ratio above `max_ratio`, NaN/Inf the baseline lacks, or a
    /// top-1 token the baseline keeps).
    pub diverged: u64,
    /// Matched pairs whose B record has no partner in the baseline (judged by tolerance).
    pub missing: u64,
    /// Matched pairs whose baseline record could not be used (judged by tolerance).
    pub unusable: u64,
    /// Baseline records that match no record of B (after the ignore lists).
    pub unused_baseline_records: u64,
    /// Median ratio over calibrated pairs that are not identical; `null` when there are none.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub ratio_median: Option<f64>,
    /// Largest ratio over calibrated pairs (`null` when none, or infinite).
    #[serde(serialize_with = "opt_finite_or_null")]
    pub ratio_max: Option<f64>,
    /// Index into `pairs` of the largest ratio.
    pub ratio_max_pair: Option<u64>,
}

/// The first diverged record in A's execution order, with what surrounds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirstDivergence {
    /// Index into [`Report::pairs`] (equal to the pair's `position`).
    pub pair: u64,
    /// Name on side A.
    pub name: String,
    /// Name of the last compared record before it that agreed, if any.
    pub last_agreeing: Option<String>,
    /// Matched records after it that also diverge.
    pub diverged_after: u64,
    /// Largest error-profile value after it.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub max_error_after: Option<f64>,
    /// Whether the order of A is the execution order (if not, "first" is only a guess).
    pub execution_order_known: bool,
}

/// The error at the output of one layer (the last compared record of that layer in a step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerError {
    /// Step (`seq`), when recorded.
    pub seq: Option<u64>,
    /// Layer.
    pub layer: i64,
    /// Name of the record taken as the layer output.
    pub output: String,
    /// Error-profile value of that record.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub error: Option<f64>,
    /// Largest error-profile value within the layer.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub max_error: Option<f64>,
    /// `error / previous layer's error` within the same step; `null` when either is unknown or
    /// the previous is 0.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub amplification: Option<f64>,
    /// Calibrated diffs: the baseline's error `e_C` at the same record; `null` otherwise.
    #[serde(serialize_with = "opt_finite_or_null")]
    pub baseline_error: Option<f64>,
    /// Calibrated diffs: the ratio at the same record; `null` otherwise (or infinite).
    #[serde(serialize_with = "opt_finite_or_null")]
    pub ratio: Option<f64>,
}

/// A problem met and tolerated (strict mode would have failed on it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// `a`, `b`, or `null` for problems of neither run (rules, order).
    pub side: Option<&'static str>,
    /// The message, naming the file and field.
    pub message: String,
}

/// The result of comparing two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The overall answer.
    pub outcome: Outcome,
    /// Side A (the run under test).
    pub a: RunInfo,
    /// Side B (the reference).
    pub b: RunInfo,
    /// The rules file, if one was used.
    pub rules: Option<String>,
    /// The engine views the sides were seen through, when the rules were composed from views
    /// (no rules file): which view each side has and how it was chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub views: Option<ViewsUsed>,
    /// Verdict counts.
    pub counts: Counts,
    /// The first diverged or incompatible pair in A's order.
    pub first_divergence: Option<FirstDivergence>,
    /// Every record of A in capture order, then the records only in B in B's order.
    pub pairs: Vec<Pair>,
    /// Per-layer error at each layer output, in A's order.
    pub layers: Vec<LayerError>,
    /// Problems tolerated.
    pub warnings: Vec<Warning>,
    /// The baseline run and the ratio statistics (calibrated diffs); `null` otherwise.
    pub calibration: Option<CalibrationSummary>,
    /// Multi-rank runs (see the `shard` module): how the ranks were compared and which rank(s)
    /// the first divergence is on. Absent when neither side is a multi-rank run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks: Option<RanksReport>,
    /// Streaming diffs only (absent otherwise): `pairs` then holds only the first non-agreeing
    /// pairs (the JSON report streams every pair instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streamed: Option<Streamed>,
    /// The records of A and B the rules' ignore lists left out, and which rule did (absent
    /// when none was): the map draws them as ignored, not as untraced.
    #[serde(skip_serializing_if = "Ignored::is_empty")]
    pub ignored: Ignored,
}

/// Records left out by the ignore lists, with their context and the rule that left each out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ignored {
    /// The rules that left records out, as the rules file writes them (`ignore "*rotary*"`,
    /// `ignore_b "ref_only/*"`), in the order of their first use; a record's `rule` indexes this
    /// list.
    pub rules: Vec<String>,
    /// The records, A's in A's order, then B's in B's order.
    pub records: Vec<IgnoredRecord>,
    /// Records left out but not listed: a streaming diff lists only the first ones (as many as
    /// it keeps pairs); the counts in `a.ignored` and `b.ignored` are complete.
    pub not_listed: u64,
}

/// One record left out by an ignore list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IgnoredRecord {
    /// `a` or `b`.
    pub side: &'static str,
    /// Its name on its side.
    pub name: String,
    /// k-th record of this name.
    pub occurrence: u64,
    /// Where it sits: for A's records, the `position` of the next pair of A (the record comes
    /// just before it); for B's, its position in B's order.
    pub position: u64,
    /// Capture index, when recorded.
    pub index: Option<u64>,
    /// Token position.
    pub seq: Option<u64>,
    /// Layer (-1 = embeddings/logits).
    pub layer: Option<i64>,
    /// Stage within the layer.
    pub stage: Option<String>,
    /// Index into [`Ignored::rules`] of the rule that left it out.
    pub rule: u32,
}

impl Ignored {
    /// Whether no record was left out (then the JSON report has no `ignored` field).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.not_listed == 0
    }

    /// The rule that left `record` out.
    pub fn rule_of(&self, record: &IgnoredRecord) -> &str {
        self.rules
            .get(record.rule as usize)
            .map_or("", String::as_str)
    }

    /// Lists the record `r` of `side` at `position`, left out by `rule`; once `limit` records
    /// are listed, only counts it.
    pub(crate) fn push(
        &mut self,
        side: &'static str,
        position: u64,
        r: &RunRecord,
        rule: &str,
        limit: usize,
    ) {
        if self.records.len() >= limit {
            self.not_listed += 1;
            return;
        }
        let rule = self.intern(rule);
        let rec = &r.record;
        self.records.push(IgnoredRecord {
            side,
            name: rec.name.clone(),
            occurrence: r.occurrence,
            position,
            index: rec.index,
            seq: rec.seq,
            layer: rec.layer,
            stage: rec.stage.clone(),
            rule,
        });
    }

    /// Appends the records of `other` after these.
    pub(crate) fn append(&mut self, other: Ignored) {
        for mut r in other.records {
            r.rule = self.intern(&other.rules[r.rule as usize]);
            self.records.push(r);
        }
        self.not_listed += other.not_listed;
    }

    /// The index of `rule` in [`Ignored::rules`], added when new.
    fn intern(&mut self, rule: &str) -> u32 {
        let i = match self.rules.iter().position(|x| x == rule) {
            Some(i) => i,
            None => {
                self.rules.push(rule.to_owned());
                self.rules.len() - 1
            }
        };
        i as u32
    }
}

/// How the ranks of a multi-rank comparison were handled, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RanksReport {
    /// `rank-by-rank` (equal world sizes) or `reassembled` (one side was reassembled).
    pub mode: &'static str,
    /// World size of side A (`null`: a single-process run).
    pub world_size_a: Option<u32>,
    /// World size of side B.
    pub world_size_b: Option<u32>,
    /// Rank-by-rank: each rank's outcome and first divergence.
    pub per_rank: Vec<RankOutcome>,
    /// The rank(s) whose record disagrees at the first divergence (empty when none diverges or
    /// when it cannot be told; see `attribution`).
    pub first_divergence_ranks: Vec<u32>,
    /// How the ranks at the first divergence were found, or why they could not be.
    pub attribution: Option<String>,
    /// Reassembled: records concatenated from values.
    pub reassembled_values: u64,
    /// Reassembled: records merged from statistics only (hash unknown, judged on stats).
    pub merged_stats: u64,
    /// Reassembled: partial sums added from values.
    pub summed: u64,
    /// Reassembled: replicated records.
    pub replicated: u64,
    /// Reassembled: records left out because they cannot be merged (named in the warnings).
    pub not_mergeable: u64,
}

/// One rank of a rank-by-rank comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankOutcome {
    /// The rank.
    pub rank: u32,
    /// Its outcome.
    pub outcome: Outcome,
    /// Its first diverging record (side A's name) and that record's position.
    pub first_divergence: Option<(String, u64)>,
}

/// How a streaming comparison ([`crate::Streaming`]) bounded its memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Streamed {
    /// Largest number of unmatched B records held while looking for a partner.
    pub window: u64,
    /// Records of A declared without a partner because the window was full (their partner, if
    /// any, lies further on in B); 0 means the matching is exactly the in-memory diff's.
    pub window_misses: u64,
    /// Non-agreeing pairs kept in [`Report::pairs`] (the first ones in order).
    pub pairs_kept: u64,
    /// Layer groups left out of [`Report::layers`], which keeps those nearest the first
    /// divergence (the latest before it and the first from it on).
    pub layers_dropped: u64,
    /// Why the diff streamed, as the command line decided it (`--stream` given, or
    /// `--stream=auto` finding a run at least `--stream-threshold` records long); `null` when
    /// a program asked for [`crate::Streaming::Always`] itself.
    pub reason: Option<String>,
}

impl Report {
    /// The first diverged pair, if any.
    pub fn first_divergence_pair(&self) -> Option<&Pair> {
        let f = self.first_divergence.as_ref()?;
        // A streaming report keeps only some pairs: look the position up.
        match self.pairs.get(f.pair as usize) {
            Some(p) if p.position == f.pair && p.only_in != Some("b") => Some(p),
            _ => self
                .pairs
                .iter()
                .find(|p| p.position == f.pair && p.only_in != Some("b")),
        }
    }
}
