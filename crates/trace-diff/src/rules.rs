//! The comparison policy as data: name mapping, ignore lists, tolerances (see
//! `docs/FORMAT-diff.md` for the rules-file format).
//!
//! **API boundary:** the TOML keys of the rules file.

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde::{Deserialize, Serialize};
use trace_core::DType;

use crate::error::{Error, Result};
use crate::transform::{Layout, Step};

/// Version of the rules-file format this crate reads (`version` key, optional).
pub const RULES_VERSION: u32 = 1;

/// Element-wise tolerance. An element passes when `|a - b|` is within any one of three terms:
/// `atol`, `rtol * |b|` (Polygraphy's semantics) or `rtol * scale`, where `scale` is the RMS of
/// B's finite values over the whole record (`b` is the reference side). The third term is there
/// because a floating-point result's rounding error follows the magnitudes that went into it,
/// not the element it lands in: a near-zero element of a tensor whose RMS is 73.7 carries
/// rounding error of that tensor's size (see `docs/FORMAT.md`, "The record's scale"). Where
/// `|b| >= scale` the rule is Polygraphy's; with `rtol = 0` (integers) it stays exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance, relative to the reference (side B) value and to the scale of its
    /// record.
    pub rtol: f64,
}

/// The term of a [`Tolerance`] that admits an element, tried in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// `|a - b| <= atol`.
    Atol,
    /// `|a - b| <= rtol * |b|`.
    Rtol,
    /// `|a - b| <= rtol * scale` only: the element is small against its record.
    Scale,
}

impl Tolerance {
    /// The largest `|a - b|` that passes for the reference value `b` in a record of scale
    /// `scale` (the RMS of B's finite values): `max(atol, rtol * max(|b|, scale))`.
    pub fn bound(&self, b: f64, scale: f64) -> f64 {
        self.atol.max(self.rtol * b.abs().max(scale))
    }

    /// Whether the pair `(a, b)` of finite values passes in a record of scale `scale`.
    pub fn passes(&self, a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= self.bound(b, scale)
    }

    /// The first term that admits the pair `(a, b)` in a record of scale `scale`, `None` when
    /// it fails.
    pub fn term(&self, a: f64, b: f64, scale: f64) -> Option<Term> {
        let d = (a - b).abs();
        if d <= self.atol {
            Some(Term::Atol)
        } else if d <= self.rtol * b.abs() {
            Some(Term::Rtol)
        } else if d <= self.rtol * scale {
            Some(Term::Scale)
        } else {
            None
        }
    }

    /// The bound on `|x_a - x_b|` for each of a record's RMS, mean and standard deviation (and
    /// on the RMS of the difference) that every element passing implies, given B's RMS:
    /// `atol + sqrt(2) * rtol * rms_b`. Each of those is at most the RMS of the difference, at
    /// most `atol + rtol * RMS(max(|b|, rms_b))` by Minkowski's inequality, and
    /// `mean(max(b², rms_b²)) <= mean(b²) + rms_b² = 2 rms_b²`.
    pub fn stats_bound(&self, rms_b: f64) -> f64 {
        self.atol + std::f64::consts::SQRT_2 * self.rtol * rms_b.abs()
    }

    /// The default for comparing a record of dtype `a` with one of dtype `b` (seed spelling),
    /// chosen by the less precise of the two, and its name for reports.
    ///
    /// | less precise dtype | atol | rtol |
    /// |---|---|---|
    /// | F64 (both F64) | 1e-10 | 1e-9 |
    /// | F32 (or unknown) | 1e-5 | 1e-4 |
    /// | F16 | 1e-3 | 1e-2 |
    /// | BF16 | 1e-2 | 5e-2 |
    /// | integers on both sides | 0 | 0 |
    pub fn default_for(a: &str, b: &str) -> (Tolerance, &'static str) {
        fn rank(d: Option<DType>) -> u8 {
            match d {
                Some(DType::BF16) => 0,
                Some(DType::F16) => 1,
                Some(DType::F64) => 3,
                Some(d) if !d.is_float() => 4,
                _ => 2,
            }
        }
        let (da, db) = (a.parse::<DType>().ok(), b.parse::<DType>().ok());
        // Integers only count when both sides are integers; otherwise the float side decides.
        let ra = rank(da);
        let rb = rank(db);
        let r = match (ra, rb) {
            (4, 4) => 4,
            (4, r) | (r, 4) => r,
            (x, y) => x.min(y),
        };
        match r {
            0 => (Tolerance::new(1e-2, 5e-2), "default for BF16"),
            1 => (Tolerance::new(1e-3, 1e-2), "default for F16"),
            3 => (Tolerance::new(1e-10, 1e-9), "default for F64"),
            4 => (Tolerance::new(0.0, 0.0), "default for integers (exact)"),
            _ => (Tolerance::new(1e-5, 1e-4), "default for F32"),
        }
    }

    /// A tolerance from its two parts.
    pub const fn new(atol: f64, rtol: f64) -> Self {
        Tolerance { atol, rtol }
    }
}

/// A compiled rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    source: Option<PathBuf>,
    maps: Vec<(Regex, String)>,
    /// `a_layout` and `b_layout` of each `[[map]]` entry (index-aligned with `maps`).
    layouts: Vec<SideLayouts>,
    /// How the baseline's names and layout differ from B's, when it has a view of its own.
    baseline: Option<BaselineMap>,
    /// The views these rules were composed from, for the report.
    views: Option<ViewsUsed>,
    ignore_a: GlobSet,
    ignore_b: GlobSet,
    /// Each glob of `ignore_a` as the report cites it (`ignore "*rotary*"`), index-aligned.
    ignore_a_rules: Vec<String>,
    /// Each glob of `ignore_b`, as `ignore_a_rules`.
    ignore_b_rules: Vec<String>,
    logits: GlobSet,
    top_k: usize,
    default_tolerance: Option<PartialTolerance>,
    /// The glob's source text is the pattern the report cites.
    tolerances: Vec<(GlobMatcher, PartialTolerance)>,
    /// `[[shard]]`: how the records of a multi-rank run are split (see [`crate::shard`]).
    shards: Vec<(GlobMatcher, ShardSplit)>,
}

/// The engine view of each side (crate::views).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewsUsed {
    /// Side A's view.
    pub a: ViewChoice,
    /// Side B's view.
    pub b: ViewChoice,
    /// The baseline's view, with `--baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub c: Option<ViewChoice>,
}

/// One side's view and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewChoice {
    /// The view's name (`hf-decoder`).
    pub view: String,
    /// How it was chosen: `--view-a`, or `detected: its records include "..."`.
    pub how: String,
}

/// The layouts of one `[[map]]` entry: how each side's values are brought into the layout
/// they are compared in (`None`: as recorded).
#[derive(Debug, Clone, Default)]
pub struct SideLayouts {
    /// `a_layout`: side A's values.
    pub a: Option<Layout>,
    /// `b_layout`: side B's values (and the baseline's, unless it has a view of its own).
    pub b: Option<Layout>,
}

/// A baseline run whose engine names and lays out its records unlike B's (an engine view of
/// its own, [`crate::views`]): its names are mapped onto B's before matching, and its values
/// laid out by its own steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct BaselineMap {
    /// The baseline's name regex, B's name template and the baseline's layout.
    pub(crate) maps: Vec<(Regex, String, Option<Layout>)>,
    /// The baseline's records with no partner in B's view, and why (as `ignore_b`).
    pub(crate) ignore: GlobSet,
    pub(crate) ignore_rules: Vec<String>,
}

/// How one record of a multi-rank run is split across the ranks (`[[shard]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardSplit {
    /// Each rank holds a slice; the whole is the slices concatenated in rank order along this
    /// axis (negative counts from the last, as in numpy).
    Concat {
        /// The axis.
        axis: i64,
    },
    /// Each rank holds a partial sum (before an all-reduce); the whole is their element-wise sum.
    Sum,
    /// Each rank holds the whole tensor (the default for names no `[[shard]]` matches).
    Replicated,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialTolerance {
    atol: Option<f64>,
    rtol: Option<f64>,
}

/// A rules file as written (also what two engine views compose into, [`crate::views`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesFile {
    version: Option<u32>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    pub(crate) ignore_a: Vec<String>,
    #[serde(default)]
    pub(crate) ignore_b: Vec<String>,
    /// How the report cites each glob of `ignore_a` (index-aligned; `ignore_a "GLOB"` when
    /// absent): a view's reasons.
    #[serde(skip)]
    pub(crate) cite_a: Vec<String>,
    /// As `cite_a`, for `ignore_b`.
    #[serde(skip)]
    pub(crate) cite_b: Vec<String>,
    pub(crate) logits: Option<Vec<String>>,
    top_k: Option<usize>,
    default_tolerance: Option<PartialTolerance>,
    #[serde(default)]
    pub(crate) map: Vec<MapRule>,
    #[serde(default)]
    tolerance: Vec<ToleranceRule>,
    #[serde(default)]
    shard: Vec<ShardRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardRule {
    names: String,
    axis: Option<i64>,
    reduce: Option<String>,
    replicated: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MapRule {
    pub(crate) a: String,
    pub(crate) b: String,
    /// Steps bringing A's values into the compared layout (crate::transform).
    #[serde(default)]
    pub(crate) a_layout: Vec<Step>,
    /// Steps bringing B's values into A's layout, or into the one `a_layout` gives.
    #[serde(default)]
    pub(crate) b_layout: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToleranceRule {
    names: String,
    atol: Option<f64>,
    rtol: Option<f64>,
}

/// Names of records that get logits metrics when the rules file does not say.
pub const DEFAULT_LOGITS: &[&str] = &["*logits*"];

/// `k` of the top-k overlap when the rules file does not say.
pub const DEFAULT_TOP_K: usize = 5;

impl Default for Rules {
    fn default() -> Self {
        Rules {
            source: None,
            maps: Vec::new(),
            layouts: Vec::new(),
            baseline: None,
            views: None,
            ignore_a: GlobSet::empty(),
            ignore_b: GlobSet::empty(),
            ignore_a_rules: Vec::new(),
            ignore_b_rules: Vec::new(),
            logits: glob_set(DEFAULT_LOGITS.iter().copied(), "logits", Path::new(""))
                .expect("default logits globs are valid"),
            top_k: DEFAULT_TOP_K,
            default_tolerance: None,
            tolerances: Vec::new(),
            shards: Vec::new(),
        }
    }
}

/// The citation of the first glob of `set` that matches `name`.
fn first_rule<'r>(set: &GlobSet, rules: &'r [String], name: &str) -> Option<&'r str> {
    // `is_match` first: most names match nothing, and it stops at the first glob that matches.
    if set.is_empty() || !set.is_match(name) {
        return None;
    }
    let first = set.matches(name).into_iter().min()?;
    rules.get(first).map(String::as_str)
}

/// A layout from its steps, `None` when there are none.
pub(crate) fn compile_layout(steps: &[Step]) -> std::result::Result<Option<Layout>, String> {
    if steps.is_empty() {
        return Ok(None);
    }
    Layout::new(steps.to_vec()).map(Some)
}

pub(crate) fn glob_set<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
    key: &str,
    path: &Path,
) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(glob(p, key, path)?);
    }
    b.build()
        .map_err(|e| rules_error(path, format!("`{key}`: {e}")))
}

fn glob(pattern: &str, key: &str, path: &Path) -> Result<Glob> {
    Glob::new(pattern)
        .map_err(|e| rules_error(path, format!("`{key}`: invalid glob {pattern:?}: {e}")))
}

fn rules_error(path: &Path, message: String) -> Error {
    Error::Rules {
        path: path.to_owned(),
        message,
    }
}

fn check_tolerance(t: &PartialTolerance, key: &str, path: &Path) -> Result<()> {
    for (name, v) in [("atol", t.atol), ("rtol", t.rtol)] {
        if let Some(v) = v {
            if !v.is_finite() || v < 0.0 {
                return Err(rules_error(
                    path,
                    format!("`{key}.{name}`: expected a finite number >= 0, found {v}"),
                ));
            }
        }
    }
    Ok(())
}

/// Rules files shipped with trace-diff, by name: `--rules NAME` works wherever a rules file
/// path does (`crates/trace-diff/presets/NAME.toml`; docs/FORMAT.md lists what each maps).
pub const PRESETS: &[(&str, &str)] = &[
    ("hf-llama", include_str!("../presets/hf-llama.toml")),
    ("hf-bert", include_str!("../presets/hf-bert.toml")),
    ("llama-cpp", include_str!("../presets/llama-cpp.toml")),
];

impl Rules {
    /// A shipped rules file ([`PRESETS`]) by name; `None` when there is no such preset.
    pub fn preset(name: &str) -> Option<Result<Rules>> {
        PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Self::from_toml(text, Path::new(&format!("preset:{n}"))))
    }

    /// What `--rules SPEC` means: the rules file at `spec` when it exists, otherwise the preset
    /// of that name. An error names both when neither exists.
    pub fn load_or_preset(spec: &Path) -> Result<Rules> {
        if spec.exists() {
            return Self::load(spec);
        }
        let preset = spec.to_str().and_then(Self::preset);
        preset.unwrap_or_else(|| {
            Err(rules_error(
                spec,
                format!(
                    "no such file, and no preset of that name (presets: {})",
                    PRESETS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        })
    }

    /// Reads and compiles a rules file.
    pub fn load(path: &Path) -> Result<Rules> {
        let text = fs::read_to_string(path).map_err(|source| Error::RulesIo {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Compiles rules from TOML text; `path` is only used in messages and reports.
    pub fn from_toml(text: &str, path: &Path) -> Result<Rules> {
        let file: RulesFile =
            toml::from_str(text).map_err(|e| rules_error(path, e.to_string().trim().to_owned()))?;
        Self::compile(file, path)
    }

    /// Compiles a rules file read or composed; `path` is only used in messages and reports.
    pub(crate) fn compile(file: RulesFile, path: &Path) -> Result<Rules> {
        if let Some(v) = file.version {
            if v != RULES_VERSION {
                return Err(rules_error(
                    path,
                    format!("`version`: {v} is not supported, expected {RULES_VERSION}"),
                ));
            }
        }
        let mut maps = Vec::with_capacity(file.map.len());
        let mut layouts = Vec::with_capacity(file.map.len());
        for (i, m) in file.map.iter().enumerate() {
            let layout = |steps: &[Step], key: &str| -> Result<Option<Layout>> {
                compile_layout(steps)
                    .map_err(|e| rules_error(path, format!("`map[{i}].{key}`: {e}")))
            };
            layouts.push(SideLayouts {
                a: layout(&m.a_layout, "a_layout")?,
                b: layout(&m.b_layout, "b_layout")?,
            });
            let re = Regex::new(&format!("^(?:{})$", m.a)).map_err(|e| {
                rules_error(path, format!("`map[{i}].a`: invalid regex {:?}: {e}", m.a))
            })?;
            maps.push((re, m.b.clone()));
        }
        let both = file.ignore.iter().map(String::as_str);
        let ignore_a = glob_set(
            both.clone().chain(file.ignore_a.iter().map(String::as_str)),
            "ignore_a",
            path,
        )?;
        let ignore_b = glob_set(
            both.chain(file.ignore_b.iter().map(String::as_str)),
            "ignore_b",
            path,
        )?;
        let cite = |key: &str, list: &[String]| -> Vec<String> {
            list.iter().map(|p| format!("{key} {p:?}")).collect()
        };
        let own = |key: &str, list: &[String], given: &[String]| -> Vec<String> {
            if given.len() == list.len() {
                given.to_vec()
            } else {
                cite(key, list)
            }
        };
        let mut ignore_a_rules = cite("ignore", &file.ignore);
        ignore_a_rules.extend(own("ignore_a", &file.ignore_a, &file.cite_a));
        let mut ignore_b_rules = cite("ignore", &file.ignore);
        ignore_b_rules.extend(own("ignore_b", &file.ignore_b, &file.cite_b));
        let logits = match &file.logits {
            Some(l) => glob_set(l.iter().map(String::as_str), "logits", path)?,
            None => glob_set(DEFAULT_LOGITS.iter().copied(), "logits", path)?,
        };
        let top_k = file.top_k.unwrap_or(DEFAULT_TOP_K);
        if top_k == 0 {
            return Err(rules_error(path, "`top_k`: expected at least 1".to_owned()));
        }
        if let Some(t) = &file.default_tolerance {
            check_tolerance(t, "default_tolerance", path)?;
        }
        let mut tolerances = Vec::with_capacity(file.tolerance.len());
        for (i, t) in file.tolerance.iter().enumerate() {
            let key = format!("tolerance[{i}]");
            let partial = PartialTolerance {
                atol: t.atol,
                rtol: t.rtol,
            };
            check_tolerance(&partial, &key, path)?;
            tolerances.push((glob(&t.names, &key, path)?.compile_matcher(), partial));
        }
        let mut shards = Vec::with_capacity(file.shard.len());
        for (i, r) in file.shard.iter().enumerate() {
            let key = format!("shard[{i}]");
            let split = match (r.axis, r.reduce.as_deref(), r.replicated) {
                (Some(axis), None, None | Some(false)) => ShardSplit::Concat { axis },
                (None, Some("sum"), None | Some(false)) => ShardSplit::Sum,
                (None, Some(other), None | Some(false)) => {
                    return Err(rules_error(
                        path,
                        format!("`{key}.reduce`: expected \"sum\", found {other:?}"),
                    ))
                }
                (None, None, Some(true)) => ShardSplit::Replicated,
                _ => {
                    return Err(rules_error(
                        path,
                        format!(
                            "`{key}`: expected exactly one of `axis = N`, `reduce = \"sum\"` or \
                             `replicated = true`"
                        ),
                    ))
                }
            };
            shards.push((glob(&r.names, &key, path)?.compile_matcher(), split));
        }
        Ok(Rules {
            shards,
            source: Some(path.to_owned()),
            maps,
            layouts,
            baseline: None,
            views: None,
            ignore_a,
            ignore_b,
            ignore_a_rules,
            ignore_b_rules,
            logits,
            top_k,
            default_tolerance: file.default_tolerance,
            tolerances,
        })
    }

    /// Sets how a baseline with a view of its own maps onto B (crate::views).
    pub(crate) fn set_baseline(&mut self, map: BaselineMap) {
        self.baseline = Some(map);
    }

    /// Records the views these rules were composed from (the report says them).
    pub fn set_views(&mut self, views: ViewsUsed) {
        self.views = Some(views);
    }

    /// The views these rules were composed from, if any.
    pub fn views(&self) -> Option<&ViewsUsed> {
        self.views.as_ref()
    }

    /// The file the rules came from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Whether any `[[map]]` entry renames records (then two names of A may map to one of B).
    pub(crate) fn maps_names(&self) -> bool {
        !self.maps.is_empty()
    }

    /// The side-B name a side-A name maps to: the first `[[map]]` whose regex matches the whole
    /// name, with `$1`/`${name}` replaced by captures; the name itself when none matches.
    pub fn map_name<'a>(&self, a_name: &'a str) -> Cow<'a, str> {
        for (re, replacement) in &self.maps {
            if re.is_match(a_name) {
                return Cow::Owned(re.replace(a_name, replacement.as_str()).into_owned());
            }
        }
        Cow::Borrowed(a_name)
    }

    /// How the record `name` (a name of the multi-rank side) is split across ranks: the first
    /// `[[shard]]` whose glob matches, else [`ShardSplit::Replicated`]; with the glob, if any.
    pub fn shard_split(&self, name: &str) -> (ShardSplit, Option<&str>) {
        self.shards
            .iter()
            .find(|(g, _)| g.is_match(name))
            .map_or((ShardSplit::Replicated, None), |(g, s)| {
                (*s, Some(g.glob().glob()))
            })
    }

    /// The layouts of the `[[map]]` entry that maps `a_name` (the one [`Rules::map_name`]
    /// uses): how A's and B's values are brought into the layout they are compared in.
    pub fn layouts(&self, a_name: &str) -> &SideLayouts {
        const AS_RECORDED: &SideLayouts = &SideLayouts { a: None, b: None };
        let i = self.maps.iter().position(|(re, _)| re.is_match(a_name));
        i.and_then(|i| self.layouts.get(i)).unwrap_or(AS_RECORDED)
    }

    /// The B name a baseline record stands for; `None` when the baseline's own view has no
    /// point for it. Without a baseline view: the name itself.
    pub(crate) fn baseline_name<'a>(&self, c_name: &'a str) -> Option<Cow<'a, str>> {
        let Some(map) = &self.baseline else {
            return Some(Cow::Borrowed(c_name));
        };
        map.maps
            .iter()
            .find(|(re, ..)| re.is_match(c_name))
            .map(|(re, b, _)| Cow::Owned(re.replace(c_name, b.as_str()).into_owned()))
    }

    /// The baseline record `c_name`'s own layout (its view's), if it has one; `None` also when
    /// the baseline is laid out as B (then [`SideLayouts::b`] applies).
    pub(crate) fn baseline_layout(&self, c_name: &str) -> Option<Option<&Layout>> {
        let map = self.baseline.as_ref()?;
        let found = map.maps.iter().find(|(re, ..)| re.is_match(c_name));
        Some(found.and_then(|(.., l)| l.as_ref()))
    }

    /// The rule that leaves out the baseline record `name`: its view's, or B's when the
    /// baseline has no view of its own.
    pub fn ignore_rule_c(&self, name: &str) -> Option<&str> {
        match &self.baseline {
            Some(m) => first_rule(&m.ignore, &m.ignore_rules, name),
            None => self.ignore_rule_b(name),
        }
    }

    /// Whether a side-A record name is ignored (`ignore` or `ignore_a`).
    pub fn ignores_a(&self, name: &str) -> bool {
        !self.ignore_a.is_empty() && self.ignore_a.is_match(name)
    }

    /// Whether a side-B record name is ignored (`ignore` or `ignore_b`).
    pub fn ignores_b(&self, name: &str) -> bool {
        !self.ignore_b.is_empty() && self.ignore_b.is_match(name)
    }

    /// The rule that leaves out the side-A record `name`, as the report cites it (`ignore
    /// "*rotary*"` or `ignore_a "tokens"`: the first that matches); `None` when none does.
    pub fn ignore_rule_a(&self, name: &str) -> Option<&str> {
        first_rule(&self.ignore_a, &self.ignore_a_rules, name)
    }

    /// The rule that leaves out the side-B record `name`, as [`Rules::ignore_rule_a`].
    pub fn ignore_rule_b(&self, name: &str) -> Option<&str> {
        first_rule(&self.ignore_b, &self.ignore_b_rules, name)
    }

    /// Whether a record (by its side-B name) gets logits metrics.
    pub fn is_logits(&self, name: &str) -> bool {
        self.logits.is_match(name)
    }

    /// `k` of the top-k overlap.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// The tolerance for a record (by its side-B name and the two dtypes), and where it came
    /// from: the first `[[tolerance]]` whose glob matches, then `[default_tolerance]`, then the
    /// dtype default; a rule giving only one of `atol`/`rtol` takes the other from the next
    /// level down.
    pub fn tolerance(&self, b_name: &str, dtype_a: &str, dtype_b: &str) -> (Tolerance, String) {
        let (base, base_source) = Tolerance::default_for(dtype_a, dtype_b);
        let mut t = base;
        let mut source = base_source.to_owned();
        if let Some(d) = &self.default_tolerance {
            t = Tolerance::new(d.atol.unwrap_or(t.atol), d.rtol.unwrap_or(t.rtol));
            source = "rules default_tolerance".to_owned();
        }
        if let Some((g, p)) = self.tolerances.iter().find(|(g, _)| g.is_match(b_name)) {
            t = Tolerance::new(p.atol.unwrap_or(t.atol), p.rtol.unwrap_or(t.rtol));
            source = format!("rules tolerance {:?}", g.glob().glob());
        }
        (t, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        Rules::from_toml(text, Path::new("r.toml")).unwrap()
    }

    fn err(text: &str) -> String {
        Rules::from_toml(text, Path::new("r.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn shard_rules_first_match_wins_and_default_is_replicated() {
        let r = rules(
            r#"
            [[shard]]
            names = "blk*/q"
            axis = -1
            [[shard]]
            names = "blk*/o_partial"
            reduce = "sum"
            [[shard]]
            names = "blk*"
            replicated = true
            "#,
        );
        assert_eq!(
            r.shard_split("blk0/q"),
            (ShardSplit::Concat { axis: -1 }, Some("blk*/q"))
        );
        assert_eq!(r.shard_split("blk3/o_partial").0, ShardSplit::Sum);
        assert_eq!(r.shard_split("blk0/k").0, ShardSplit::Replicated);
        assert_eq!(r.shard_split("logits"), (ShardSplit::Replicated, None));
    }

    #[test]
    fn shard_rules_need_exactly_one_kind() {
        for (body, expected) in [
            ("axis = 0\nreduce = \"sum\"", "exactly one of"),
            ("", "exactly one of"),
            ("replicated = false", "exactly one of"),
            (
                "reduce = \"mean\"",
                "`shard[0].reduce`: expected \"sum\", found \"mean\"",
            ),
            ("axis = \"x\"", "invalid type"),
        ] {
            let e = err(&format!("[[shard]]\nnames = \"q\"\n{body}"));
            assert!(e.contains(expected), "{body}: {e}");
        }
    }

    #[test]
    fn maps_with_captures() {
        let r = rules(
            r#"
            [[map]]
            a = 'model\.layers\.(\d+)\.self_attn\.o_proj'
            b = 'blk${1}/attn_out'
            [[map]]
            a = 'lm_head'
            b = 'logits'
            "#,
        );
        let check = |a: &str, b: &str| assert_eq!(r.map_name(a), b);
        check("model.layers.12.self_attn.o_proj", "blk12/attn_out");
        check(
            "model.layers.12.self_attn.o_proj.bias",
            "model.layers.12.self_attn.o_proj.bias",
        );
        check("lm_head", "logits");
        check("other", "other");
    }

    /// Every shipped preset compiles, and maps the points of its engine onto transformers'
    /// module paths without ignoring a mapped name.
    #[test]
    fn presets_map_our_names_onto_transformers() {
        let llama = Rules::preset("hf-llama").unwrap().unwrap();
        assert_eq!(llama.source(), Some(Path::new("preset:hf-llama")));
        let check = |r: &Rules, a: &str, b: &str| {
            assert_eq!(r.map_name(a), b, "{a}");
            assert!(!r.ignores_a(a) && !r.ignores_b(b), "{a} -> {b} is ignored");
        };
        check(&llama, "tokens", "input/input_ids");
        check(&llama, "embed", "model.embed_tokens");
        check(&llama, "blk0/attn_norm", "model.layers.0.input_layernorm");
        check(&llama, "blk12/k", "model.layers.12.self_attn.k_proj");
        check(&llama, "blk3/q_rope", "model.layers.3.self_attn/q_rope");
        check(&llama, "blk3/attn_probs", "model.layers.3.self_attn/1");
        check(
            &llama,
            "blk3/attn_ctx",
            "model.layers.3.self_attn.o_proj/input",
        );
        check(&llama, "blk3/attn_out", "model.layers.3.self_attn.o_proj");
        check(
            &llama,
            "blk3/ffn_inp",
            "model.layers.3.post_attention_layernorm/input",
        );
        check(&llama, "blk3/ffn_up", "model.layers.3.mlp.up_proj");
        check(&llama, "blk3/ffn_act", "model.layers.3.mlp.down_proj/input");
        check(&llama, "blk3/l_out", "model.layers.3");
        check(&llama, "out_norm", "model.norm");
        check(&llama, "logits", "logits");
        assert!(llama.ignores_a("next_token"));
        for b in [
            "model.layers.3/input",
            "model.layers.3.self_attn/input/hidden_states",
            "model.layers.3.self_attn",
            "model.layers.3.mlp.act_fn",
            "model.rotary_emb/1",
            "lm_head",
        ] {
            assert!(llama.ignores_b(b), "{b}");
        }

        let bert = Rules::preset("hf-bert").unwrap().unwrap();
        check(&bert, "tokens", "input/input_ids");
        check(&bert, "embeddings", "embeddings");
        check(&bert, "layer5/attn_out", "encoder.layer.5.attention.output");
        check(&bert, "layer5/ffn_out", "encoder.layer.5.output");
        check(&bert, "normalized", "normalized");
        for b in [
            "encoder.layer.5",
            "encoder.layer.5.attention.output.dense",
            "encoder.layer.5.output/input",
            "embeddings.word_embeddings",
            "last_hidden_state",
        ] {
            assert!(bert.ignores_b(b), "{b}");
        }
        assert!(Rules::preset("hf-gpt").is_none());
    }

    /// The llama.cpp preset maps every point of ours onto the names llama-trace records, with
    /// a layout where llama.cpp stores the tensor differently, and ignores the rest of its names
    /// (as a run of the pinned llama.cpp records them) without ignoring a mapped one.
    #[test]
    fn llama_cpp_preset_maps_onto_ggml_names() {
        let r = Rules::preset("llama-cpp").unwrap().unwrap();
        let check = |a: &str, b: &str, layout: bool| {
            assert_eq!(r.map_name(a), b, "{a}");
            assert!(!r.ignores_a(a) && !r.ignores_b(b), "{a} -> {b} is ignored");
            assert_eq!(r.layouts(a).b.is_some(), layout, "{a}");
        };
        check("embed", "embd", false);
        check("blk0/attn_norm", "attn_norm-0", false);
        check("blk11/q", "Qcur-11#1", true);
        check("blk11/k", "Kcur-11#1", true);
        check("blk11/v", "Vcur-11", false);
        check("blk2/q_rope", "Qcur-2#2", true);
        check("blk2/k_rope", "Kcur-2#2", true);
        check("blk2/attn_probs", "kq_soft_max-2", true);
        check("blk2/attn_ctx", "kqv_out-2", false);
        check("blk2/attn_out", "attn_out-2", false);
        check("blk2/ffn_inp", "ffn_inp-2", false);
        check("blk2/ffn_norm", "ffn_norm-2", false);
        check("blk2/ffn_gate", "ffn_gate-2", false);
        check("blk2/ffn_up", "ffn_up-2", false);
        check("blk2/ffn_act", "ffn_swiglu-2", false);
        check("blk2/ffn_out", "ffn_out-2", false);
        check("blk2/l_out", "l_out-2", false);
        check("out_norm", "result_norm", false);
        check("logits", "result_output", true);
        assert!(r.is_logits("result_output"));
        // The F32 default: its scale term admits the two F32 engines' rounding (the preset's
        // comment says where it was measured).
        let (t, source) = r.tolerance("l_out-3", "F32", "F32");
        assert_eq!(
            (t.atol, t.rtol, source.as_str()),
            (1e-5, 1e-4, "default for F32")
        );
        assert!(r.ignores_a("tokens") && r.ignores_a("next_token"));
        for b in [
            "norm",
            "norm-0",
            "norm-1#1",
            "Qcur-0",
            "Kcur-12",
            "Vcur-3#1",
            "kq-0",
            "kqv-1",
            "kqv-1 (permuted)",
            "cache_k_l0 (view)#1",
            "cache_v_l1 (reshaped) (view)",
            "Qcur-0 (view) (permuted)",
            "node_65",
        ] {
            assert!(r.ignores_b(b), "{b}");
        }
        // The layouts fit the shapes llama.cpp records: a prefill of 19 tokens and a decode
        // step (ggml drops the extent 1), 4 heads of 16.
        let q = r.layouts("blk0/q_rope").b.as_ref().unwrap();
        assert_eq!(
            q.plan(&[19, 4, 16], &[4, 19, 16]).unwrap().shape,
            vec![4, 19, 16]
        );
        assert_eq!(q.plan(&[4, 16], &[4, 1, 16]).unwrap().shape, vec![4, 1, 16]);
        let q = r.layouts("blk0/q").b.as_ref().unwrap();
        assert_eq!(q.plan(&[4, 16], &[1, 64]).unwrap().shape, vec![1, 64]);
        let p = r.layouts("blk0/attn_probs").b.as_ref().unwrap();
        assert_eq!(
            p.plan(&[4, 1, 256], &[4, 1, 20]).unwrap().shape,
            vec![4, 1, 20]
        );
        let l = r.layouts("logits").b.as_ref().unwrap();
        assert_eq!(l.plan(&[19, 256], &[256]).unwrap().shape, vec![256]);
        assert_eq!(l.plan(&[256], &[256]).unwrap().shape, vec![256]);
    }

    #[test]
    fn a_rules_file_wins_over_a_preset_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hf-llama");
        std::fs::write(&path, "top_k = 9\n").unwrap();
        assert_eq!(Rules::load_or_preset(&path).unwrap().top_k(), 9);
        let preset = Rules::load_or_preset(Path::new("hf-llama")).unwrap();
        assert_eq!(preset.map_name("embed"), "model.embed_tokens");
        let e = Rules::load_or_preset(&dir.path().join("nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nope.toml")
                && e.contains(
                    "no such file, and no preset of that name (presets: hf-llama, hf-bert, llama-cpp)"
                ),
            "{e}"
        );
    }

    #[test]
    fn ignore_and_logits() {
        let r = rules(
            r#"
            ignore = ["*rotary*"]
            ignore_b = ["ref_only/*"]
            logits = ["out/*"]
            top_k = 3
            "#,
        );
        assert!(r.ignores_a("rotary_emb") && r.ignores_b("rotary_emb"));
        assert!(r.ignores_b("ref_only/x") && !r.ignores_a("ref_only/x"));
        assert_eq!(r.ignore_rule_a("rotary_emb"), Some(r#"ignore "*rotary*""#));
        assert_eq!(
            r.ignore_rule_b("ref_only/x"),
            Some(r#"ignore_b "ref_only/*""#)
        );
        assert_eq!(r.ignore_rule_a("ref_only/x"), None);
        assert!(r.is_logits("out/x") && !r.is_logits("logits"));
        assert_eq!(r.top_k(), 3);
        assert!(Rules::default().is_logits("final_logits"));
    }

    #[test]
    fn tolerance_levels() {
        let check = |a: &str, b: &str, atol: f64, rtol: f64| {
            let (t, _) = Tolerance::default_for(a, b);
            assert_eq!((t.atol, t.rtol), (atol, rtol), "{a} vs {b}");
        };
        check("F32", "F64", 1e-5, 1e-4);
        check("F64", "F64", 1e-10, 1e-9);
        check("BF16", "F64", 1e-2, 5e-2);
        check("F16", "F32", 1e-3, 1e-2);
        check("I64", "I32", 0.0, 0.0);
        check("I64", "BF16", 1e-2, 5e-2);
        check("Q4_K", "F32", 1e-5, 1e-4);

        let r = rules(
            r#"
            [default_tolerance]
            rtol = 0.5
            [[tolerance]]
            names = "blk*/ffn"
            atol = 0.25
            "#,
        );
        let (t, src) = r.tolerance("blk3/ffn", "F32", "F32");
        assert_eq!((t.atol, t.rtol), (0.25, 0.5));
        assert!(src.contains("blk*/ffn"));
        let (t, src) = r.tolerance("x", "F32", "F32");
        assert_eq!(
            (t.atol, t.rtol, src.as_str()),
            (1e-5, 0.5, "rules default_tolerance")
        );
    }

    #[test]
    fn polygraphy_semantics() {
        // A record of scale 1: the third term is rtol itself, below atol.
        let t = Tolerance::new(0.1, 0.01);
        assert!(t.passes(1.05, 1.0, 1.0)); // inside atol
        assert!(t.passes(1000.5, 1000.0, 1.0)); // outside atol, inside rtol
        assert!(!t.passes(1.5, 1.0, 1.0)); // outside both
    }

    #[test]
    fn bad_rules_name_the_key() {
        let check = |text: &str, needle: &str| {
            let msg = err(text);
            assert!(
                msg.contains("r.toml") && msg.contains(needle),
                "{needle}: {msg}"
            );
        };
        check("[[map]]\na = '('\nb = 'x'", "map[0].a");
        check("ignore = ['[']", "ignore");
        check("unknown_key = 1", "unknown_key");
        check(
            "[[tolerance]]\nnames = 'x'\natol = -1.0",
            "tolerance[0].atol",
        );
        check("version = 7", "version");
        check("top_k = 0", "top_k");
        check("ignore = 3", "ignore");
    }
}
