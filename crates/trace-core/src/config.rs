//! Settings: from environment variables (read once) or from [`crate::TracerBuilder`].
//!
//! | variable | meaning |
//! |---|---|
//! | `TENSOR_TRACE_DIR` | enables tracing into this directory |
//! | `BITNET_TRACE_DIR` | the seed's name for the same, used when `TENSOR_TRACE_DIR` is unset |
//! | `TENSOR_TRACE_FILTER` | comma-separated globs over names; `!glob` excludes |
//! | `TENSOR_TRACE_VALUES` | also save raw values as `.npy`: `1`/`all`, or a glob list |
//! | `TENSOR_TRACE_VALUES_AT` | also save raw values of single records: `name@occurrence` items (see [`ValuesAt`]) |
//! | `TENSOR_TRACE_APPEND` | `1` allows writing into a directory that already holds a run |
//! | `TENSOR_TRACE_ASYNC` | `1` writes files on a background thread (see [`crate::Tracer`]) |
//! | `TENSOR_TRACE_RANK` | process rank recorded in every record (else torch.distributed's `RANK`) |
//! | `TENSOR_TRACE_WORLD_SIZE` | number of processes (else `WORLD_SIZE`); above 1, rank `r` writes into `DIR/rank-{r}` (see [`crate::ranks`]) |
//! | `TENSOR_TRACE_LAYOUT` | `files` (default: one `.trace` file per record) or `packed` (one JSON line per record in `records.jsonl`) |
//! | `TENSOR_TRACE_SKETCH` | buckets of the value sketch in every record: a power of two from 64 to 1024, default 256; `0` = none (see [`crate::sketch`]) |

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// Environment variable setting the value sketch's bucket count (`0` = no sketch).
pub const ENV_SKETCH: &str = "TENSOR_TRACE_SKETCH";

/// Parses a sketch bucket count (see [`crate::sketch::check_sketch_k`]); `setting` names the
/// source in the error.
pub fn parse_sketch(value: &str, setting: &str) -> Result<usize> {
    let config_error = |problem: String| Error::Config {
        setting: setting.into(),
        value: value.into(),
        problem,
    };
    let k: usize = match value.trim().to_ascii_lowercase().as_str() {
        "off" | "false" | "no" | "none" => 0,
        v => v
            .parse()
            .map_err(|_| config_error(crate::sketch::check_sketch_k(3).unwrap_err()))?,
    };
    crate::sketch::check_sketch_k(k).map_err(config_error)?;
    Ok(k)
}

/// Environment variable choosing the directory layout: `files` (default) or `packed`.
pub const ENV_LAYOUT: &str = "TENSOR_TRACE_LAYOUT";

/// How a trace directory holds its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    /// One `{name}.trace` file per record plus `manifest.jsonl` (the seed's layout; `jq
    /// DIR/*.trace` works).
    #[default]
    Files,
    /// Every record is one JSON line of the append-only log `records.jsonl`; raw values stay
    /// per-record `.npy` files. One write per record instead of a new file.
    Packed,
}

impl Layout {
    /// Parses `files` or `packed` (case-insensitive); `setting` names the source in the error.
    pub fn parse(value: &str, setting: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "files" | "file" => Ok(Layout::Files),
            "packed" => Ok(Layout::Packed),
            _ => Err(Error::Config {
                setting: setting.into(),
                value: value.into(),
                problem: "expected `files` or `packed`".into(),
            }),
        }
    }

    /// The setting's spelling: `files` or `packed`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Files => "files",
            Layout::Packed => "packed",
        }
    }
}

/// Environment variable that enables tracing into a directory.
pub const ENV_DIR: &str = "TENSOR_TRACE_DIR";
/// The seed's variable, honoured when [`ENV_DIR`] is unset.
pub const ENV_DIR_COMPAT: &str = "BITNET_TRACE_DIR";
/// Name filter variable.
pub const ENV_FILTER: &str = "TENSOR_TRACE_FILTER";
/// Raw-values variable.
pub const ENV_VALUES: &str = "TENSOR_TRACE_VALUES";
/// Raw values of single records, by name and occurrence (see [`ValuesAt`]).
pub const ENV_VALUES_AT: &str = "TENSOR_TRACE_VALUES_AT";
/// Append-mode variable.
pub const ENV_APPEND: &str = "TENSOR_TRACE_APPEND";
/// Background-writer variable.
pub const ENV_ASYNC: &str = "TENSOR_TRACE_ASYNC";
/// Rank variable.
pub const ENV_RANK: &str = "TENSOR_TRACE_RANK";
/// World-size variable: the number of processes of a multi-process run (see [`crate::ranks`]).
pub const ENV_WORLD_SIZE: &str = "TENSOR_TRACE_WORLD_SIZE";
/// torch.distributed's launcher variable for the rank (torchrun), used when [`ENV_RANK`] is unset.
pub const ENV_LAUNCHER_RANK: &str = "RANK";
/// torch.distributed's launcher variable for the world size, used when [`ENV_WORLD_SIZE`] is
/// unset.
pub const ENV_LAUNCHER_WORLD_SIZE: &str = "WORLD_SIZE";

/// A name filter: a name passes when it matches an include glob (or there are none) and no
/// exclude glob. `*` matches across `/`, so `*norm*` matches `blk0/attn_norm`.
#[derive(Debug, Clone)]
pub struct NameFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// [`NameFilter::none`]: answered without a glob match, because "no values" is the default
    /// and is asked twice per captured record.
    rejects_all: bool,
    spec: String,
}

impl NameFilter {
    /// Lets every name through.
    pub fn all() -> Self {
        Self {
            include: None,
            exclude: None,
            rejects_all: false,
            spec: "*".to_owned(),
        }
    }

    /// Lets no name through.
    pub fn none() -> Self {
        Self {
            include: None,
            exclude: None,
            rejects_all: true,
            spec: String::new(),
        }
    }

    /// Parses `glob,glob,!glob`; `setting` names the source in errors.
    pub fn parse(spec: &str, setting: &str) -> Result<Self> {
        let parts: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        Self::from_globs(&parts, setting, spec)
    }

    /// One glob per item, so commas inside `{a,b}` alternatives are allowed; `!glob` excludes.
    /// `setting` and `spec` (the value as the user wrote it) name the source in errors.
    pub fn from_globs(globs: &[&str], setting: &str, spec: &str) -> Result<Self> {
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let (mut n_inc, mut n_exc) = (0, 0);
        for &part in globs {
            let (negated, pattern) = match part.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, part),
            };
            let glob = Glob::new(pattern).map_err(|e| Error::Config {
                setting: setting.to_owned(),
                value: spec.to_owned(),
                problem: format!("bad glob {pattern:?}: {}", e.kind()),
            })?;
            if negated {
                exclude.add(glob);
                n_exc += 1;
            } else {
                include.add(glob);
                n_inc += 1;
            }
        }
        if n_inc + n_exc == 0 {
            return Err(Error::Config {
                setting: setting.to_owned(),
                value: spec.to_owned(),
                problem: "expected a comma-separated list of globs, `!glob` to exclude".into(),
            });
        }
        let build = |b: GlobSetBuilder, n| (n > 0).then(|| b.build().expect("globs were valid"));
        Ok(Self {
            include: build(include, n_inc),
            exclude: build(exclude, n_exc),
            rejects_all: false,
            spec: spec.to_owned(),
        })
    }

    /// Whether `name` passes.
    pub fn matches(&self, name: &str) -> bool {
        !self.rejects_all
            && self.include.as_ref().is_none_or(|g| g.is_match(name))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(name))
    }

    /// The text the filter was parsed from.
    pub fn spec(&self) -> &str {
        &self.spec
    }
}

/// Records selected by name and occurrence: the `TENSOR_TRACE_VALUES_AT` setting.
///
/// Grammar: comma-separated items `NAME@K` (the record of `NAME` with occurrence `K`) or
/// `NAME@K-M` (occurrences `K` to `M`, both included). The name is exact (no globs) and ends at
/// the last `@` of the item, so names holding `@` need no escape. A backslash makes the next
/// character literal: `\,` for a comma in a name, `\\` for a backslash, `\ ` for a space kept at
/// either end of an item (unescaped spaces, tabs and line breaks around an item are trimmed).
/// Empty items are skipped. Occurrences are ASCII decimal integers below 2^64.
///
/// Occurrence, not capture index, because it is what the diff pairs records by: the same
/// `(name, occurrence)` picks partners on both sides even when the two engines record different
/// sets of tensors. The tracer keeps a tensor's values in memory only when its name is listed;
/// the sink, which numbers occurrences, decides whether they are written.
///
/// ```
/// use trace_core::config::ValuesAt;
/// let at = ValuesAt::parse("blk0/q@1, logits@0-2, a\\,b@0", "TENSOR_TRACE_VALUES_AT")?;
/// assert!(at.selects("blk0/q", 1) && !at.selects("blk0/q", 0));
/// assert!(at.selects("logits", 2) && !at.selects("logits", 3));
/// assert!(at.selects("a,b", 0));
/// assert_eq!(ValuesAt::item("a,b"), "a\\,b");
/// # Ok::<(), trace_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValuesAt {
    /// Inclusive occurrence ranges per exact name.
    items: HashMap<String, Vec<(u64, u64)>>,
    spec: String,
}

/// Characters trimmed around an item when not escaped.
const TRIMMED: [char; 4] = [' ', '\t', '\n', '\r'];

impl ValuesAt {
    /// Selects nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses the grammar above; `setting` names the source in errors.
    pub fn parse(spec: &str, setting: &str) -> Result<Self> {
        let error = |problem: String| Error::Config {
            setting: setting.to_owned(),
            value: spec.to_owned(),
            problem,
        };
        let mut items: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        // Each item as (character, escaped) pairs.
        let mut raw_items: Vec<Vec<(char, bool)>> = vec![Vec::new()];
        let mut chars = spec.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let next = chars.next().ok_or_else(|| {
                        error(
                            "a `\\` at the end escapes nothing (write `\\\\` for a backslash)"
                                .into(),
                        )
                    })?;
                    raw_items.last_mut().expect("one item").push((next, true));
                }
                ',' => raw_items.push(Vec::new()),
                c => raw_items.last_mut().expect("one item").push((c, false)),
            }
        }
        for mut item in raw_items {
            while item
                .first()
                .is_some_and(|&(c, esc)| !esc && TRIMMED.contains(&c))
            {
                item.remove(0);
            }
            while item
                .last()
                .is_some_and(|&(c, esc)| !esc && TRIMMED.contains(&c))
            {
                item.pop();
            }
            if item.is_empty() {
                continue;
            }
            let text: String = item.iter().map(|&(c, _)| c).collect();
            let Some(at) = item.iter().rposition(|&(c, esc)| c == '@' && !esc) else {
                return Err(error(format!(
                    "item {text:?} has no `@`: expected NAME@OCCURRENCE or NAME@FIRST-LAST"
                )));
            };
            let name: String = item[..at].iter().map(|&(c, _)| c).collect();
            let occ: String = item[at + 1..].iter().map(|&(c, _)| c).collect();
            let number = |s: &str| -> Option<u64> {
                let s = s.trim_matches(TRIMMED);
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                s.parse().ok()
            };
            let range = match occ.split_once('-') {
                None => number(&occ).map(|k| (k, k)),
                Some((first, last)) => number(first).zip(number(last)),
            };
            let Some((first, last)) = range else {
                return Err(error(format!(
                    "item {text:?}: expected an occurrence (a non-negative integer) or a range \
                     FIRST-LAST after the last `@`, found {occ:?}"
                )));
            };
            if first > last {
                return Err(error(format!(
                    "item {text:?}: the range {first}-{last} is empty (FIRST must not exceed LAST)"
                )));
            }
            items.entry(name).or_default().push((first, last));
        }
        if items.is_empty() {
            return Err(error(
                "expected comma-separated NAME@OCCURRENCE or NAME@FIRST-LAST items".into(),
            ));
        }
        Ok(Self {
            items,
            spec: spec.to_owned(),
        })
    }

    /// The selection of exactly these `(name, occurrence)` records, with its spec text.
    pub fn from_records<'a>(records: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut items: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        let mut spec = String::new();
        for (name, occurrence) in records {
            if !spec.is_empty() {
                spec.push(',');
            }
            let _ = write!(spec, "{}@{occurrence}", Self::item(name));
            items
                .entry(name.to_owned())
                .or_default()
                .push((occurrence, occurrence));
        }
        Self { items, spec }
    }

    /// `name` escaped for an item: `\` before every backslash, comma and trimmed character.
    pub fn item(name: &str) -> String {
        let mut out = String::with_capacity(name.len());
        for c in name.chars() {
            if c == '\\' || c == ',' || TRIMMED.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// Whether no record is selected.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether some occurrence of `name` is selected.
    pub fn mentions(&self, name: &str) -> bool {
        !self.items.is_empty() && self.items.contains_key(name)
    }

    /// Whether the record `(name, occurrence)` is selected.
    pub fn selects(&self, name: &str, occurrence: u64) -> bool {
        self.items
            .get(name)
            .is_some_and(|r| r.iter().any(|&(a, b)| (a..=b).contains(&occurrence)))
    }

    /// The text the selection was parsed from (or built as, by [`ValuesAt::from_records`]).
    pub fn spec(&self) -> &str {
        &self.spec
    }
}

/// Which records get their raw values saved: a name filter ([`ENV_VALUES`]) or a
/// `(name, occurrence)` selection ([`ENV_VALUES_AT`]), either one.
#[derive(Debug, Clone)]
pub(crate) struct ValuesChoice {
    names: NameFilter,
    at: ValuesAt,
}

impl ValuesChoice {
    /// Whether the values of the record `(name, occurrence)` are saved.
    pub(crate) fn keeps(&self, name: &str, occurrence: u64) -> bool {
        self.names.matches(name) || self.at.selects(name, occurrence)
    }
}

impl Default for ValuesChoice {
    fn default() -> Self {
        Self {
            names: NameFilter::none(),
            at: ValuesAt::none(),
        }
    }
}

/// Where and how records are written.
#[derive(Debug, Clone)]
pub struct Config {
    /// Output directory; `None` keeps records in memory.
    pub dir: Option<PathBuf>,
    /// Which names are recorded.
    pub filter: NameFilter,
    /// Which names also get their raw values saved as `.npy`.
    pub values: NameFilter,
    /// Which single records (by name and occurrence) also get their raw values saved.
    pub values_at: ValuesAt,
    /// Allow writing into a directory that already holds a run.
    pub append: bool,
    /// Write files on a background thread with this queue capacity.
    pub background: Option<usize>,
    /// Rank stamped into every record.
    pub rank: Option<u32>,
    /// Number of processes of the run; above 1 the run is written into `dir/rank-{rank}`
    /// (see [`crate::ranks`]). `None` or 1: a single-process run.
    pub world_size: Option<u32>,
    /// Directory layout: a file per record, or the packed log.
    pub layout: Layout,
    /// Buckets of the value sketch in every record; 0 = none.
    pub sketch: usize,
}

/// Default queue capacity of the background writer (records in flight).
pub const DEFAULT_QUEUE: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            dir: None,
            filter: NameFilter::all(),
            values: NameFilter::none(),
            values_at: ValuesAt::none(),
            append: false,
            background: None,
            rank: None,
            world_size: None,
            layout: Layout::Files,
            sketch: crate::sketch::DEFAULT_SKETCH_K,
        }
    }
}

impl Config {
    /// Reads the environment through `get`; `Ok(None)` when tracing is not enabled.
    ///
    /// Taking a lookup function keeps this testable without mutating the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Config>> {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let Some(dir) = non_empty(ENV_DIR).or_else(|| non_empty(ENV_DIR_COMPAT)) else {
            return Ok(None);
        };
        let mut config = Config {
            dir: Some(PathBuf::from(dir)),
            ..Config::default()
        };
        if let Some(spec) = non_empty(ENV_FILTER) {
            config.filter = NameFilter::parse(&spec, ENV_FILTER)?;
        }
        if let Some(spec) = non_empty(ENV_VALUES) {
            config.values = match parse_bool(&spec) {
                Some(true) => NameFilter::all(),
                Some(false) => NameFilter::none(),
                None => NameFilter::parse(&spec, ENV_VALUES)?,
            };
        }
        if let Some(spec) = non_empty(ENV_VALUES_AT) {
            config.values_at = ValuesAt::parse(&spec, ENV_VALUES_AT)?;
        }
        if let Some(v) = non_empty(ENV_APPEND) {
            config.append = parse_bool(&v).ok_or_else(|| bool_error(ENV_APPEND, &v))?;
        }
        if let Some(v) = non_empty(ENV_ASYNC) {
            let on = parse_bool(&v).ok_or_else(|| bool_error(ENV_ASYNC, &v))?;
            config.background = on.then_some(DEFAULT_QUEUE);
        }
        // Ours win over the launcher's; errors name the variable that was read.
        let first = |ours: &'static str, launcher: &'static str| {
            [ours, launcher]
                .into_iter()
                .find_map(|k| non_empty(k).map(|v| (k, v)))
        };
        let rank = first(ENV_RANK, ENV_LAUNCHER_RANK);
        let world = first(ENV_WORLD_SIZE, ENV_LAUNCHER_WORLD_SIZE);
        if let Some((key, v)) = &rank {
            config.rank = Some(v.trim().parse().map_err(|_| Error::Config {
                setting: (*key).into(),
                value: v.clone(),
                problem: "expected a non-negative integer".into(),
            })?);
        }
        if let Some((key, v)) = &world {
            config.world_size = Some(v.trim().parse().map_err(|_| Error::Config {
                setting: (*key).into(),
                value: v.clone(),
                problem: "expected the number of processes, a positive integer".into(),
            })?);
        }
        // Checked here too so that errors name the variables, not the `Config` fields.
        crate::ranks::RankInfo::from_settings(
            config.rank,
            config.world_size,
            rank.map_or(ENV_RANK, |(k, _)| k),
            world.map_or(ENV_WORLD_SIZE, |(k, _)| k),
        )?;
        if let Some(v) = non_empty(ENV_LAYOUT) {
            config.layout = Layout::parse(&v, ENV_LAYOUT)?;
        }
        if let Some(v) = non_empty(ENV_SKETCH) {
            config.sketch = parse_sketch(&v, ENV_SKETCH)?;
        }
        Ok(Some(config))
    }

    /// Whether values of a record named `name` may be saved, so the capture must keep them (the
    /// sink decides by occurrence, see [`ValuesChoice::keeps`]).
    pub(crate) fn may_keep_values(&self, name: &str) -> bool {
        self.values.matches(name) || self.values_at.mentions(name)
    }

    /// The values decision of this configuration, for the sinks.
    pub(crate) fn values_choice(&self) -> ValuesChoice {
        ValuesChoice {
            names: self.values.clone(),
            at: self.values_at.clone(),
        }
    }

    /// Reads the process environment (see the module docs for the variables).
    pub fn from_env() -> Result<Option<Config>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "all" => Some(true),
        "0" | "false" | "no" | "off" | "none" => Some(false),
        _ => None,
    }
}

fn bool_error(setting: &str, value: &str) -> Error {
    Error::Config {
        setting: setting.to_owned(),
        value: value.to_owned(),
        problem: "expected 1/true/yes/on or 0/false/no/off".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<Config>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn disabled_without_a_directory() {
        assert!(env(&[]).unwrap().is_none());
        assert!(env(&[(ENV_DIR, "  ")]).unwrap().is_none());
        assert!(env(&[(ENV_FILTER, "*")]).unwrap().is_none());
    }

    #[test]
    fn seed_variable_still_enables_and_ours_wins() {
        let c = env(&[(ENV_DIR_COMPAT, "/tmp/a")]).unwrap().unwrap();
        assert_eq!(c.dir.unwrap(), PathBuf::from("/tmp/a"));
        let c = env(&[(ENV_DIR_COMPAT, "/tmp/a"), (ENV_DIR, "/tmp/b")])
            .unwrap()
            .unwrap();
        assert_eq!(c.dir.unwrap(), PathBuf::from("/tmp/b"));
    }

    #[test]
    fn filter_includes_and_excludes() {
        let f = NameFilter::parse("blk*, logits, !*/k", "F").unwrap();
        for (name, expected) in [
            ("blk0/q", true),
            ("blk0/k", false),
            ("logits", true),
            ("embed", false),
        ] {
            assert_eq!(f.matches(name), expected, "{name}");
        }
        let only_exclude = NameFilter::parse("!*norm*", "F").unwrap();
        assert!(only_exclude.matches("blk0/q") && !only_exclude.matches("blk0/attn_norm"));
        assert!(!NameFilter::none().matches("x") && NameFilter::all().matches("x"));
    }

    #[test]
    fn invalid_values_are_errors_naming_the_variable() {
        let e = env(&[(ENV_DIR, "d"), (ENV_FILTER, "blk[")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid TENSOR_TRACE_FILTER=\"blk[\": bad glob"),
            "{e}"
        );
        let e = env(&[(ENV_DIR, "d"), (ENV_FILTER, " , ")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a comma-separated list"), "{e}");
        let e = env(&[(ENV_DIR, "d"), (ENV_APPEND, "maybe")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TENSOR_TRACE_APPEND") && e.contains("expected 1/true"),
            "{e}"
        );
        let e = env(&[(ENV_DIR, "d"), (ENV_RANK, "-1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("TENSOR_TRACE_RANK"), "{e}");
    }

    #[test]
    fn world_size_is_read_and_checked_against_the_rank() {
        let c = env(&[(ENV_DIR, "d"), (ENV_RANK, "1"), (ENV_WORLD_SIZE, " 2 ")])
            .unwrap()
            .unwrap();
        assert_eq!((c.rank, c.world_size), (Some(1), Some(2)));
        let c = env(&[(ENV_DIR, "d"), (ENV_WORLD_SIZE, "1")])
            .unwrap()
            .unwrap();
        assert_eq!((c.rank, c.world_size), (None, Some(1)));
        let e = env(&[(ENV_DIR, "d"), (ENV_WORLD_SIZE, "2")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid TENSOR_TRACE_WORLD_SIZE=\"2\"")
                && e.contains("TENSOR_TRACE_RANK"),
            "{e}"
        );
        let e = env(&[(ENV_DIR, "d"), (ENV_RANK, "2"), (ENV_WORLD_SIZE, "2")])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid TENSOR_TRACE_RANK=\"2\""), "{e}");
        let e = env(&[(ENV_DIR, "d"), (ENV_WORLD_SIZE, "two")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TENSOR_TRACE_WORLD_SIZE") && e.contains("positive integer"),
            "{e}"
        );
    }

    #[test]
    fn launcher_variables_are_used_and_ours_win() {
        let c = env(&[(ENV_DIR, "d"), ("RANK", "3"), ("WORLD_SIZE", "4")])
            .unwrap()
            .unwrap();
        assert_eq!((c.rank, c.world_size), (Some(3), Some(4)));
        let ours = [(ENV_RANK, "0"), (ENV_WORLD_SIZE, "1")];
        let launcher = [(ENV_DIR, "d"), ("RANK", "3"), ("WORLD_SIZE", "4")];
        let c = env(&[&launcher[..], &ours[..]].concat()).unwrap().unwrap();
        assert_eq!((c.rank, c.world_size), (Some(0), Some(1)));
        let e = env(&[(ENV_DIR, "d"), ("WORLD_SIZE", "2"), ("RANK", "5")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "invalid RANK=\"5\": expected a rank below the world size 2 (WORLD_SIZE)"
            ),
            "{e}"
        );
        let e = env(&[(ENV_DIR, "d"), ("RANK", "-1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid RANK=\"-1\": expected a non-negative"),
            "{e}"
        );
    }

    #[test]
    fn globs_one_per_item_allow_commas_in_alternatives() {
        let f = NameFilter::from_globs(&["blk{0,1}/q", "!*k"], "include", "x").unwrap();
        assert!(f.matches("blk1/q") && !f.matches("blk2/q") && !f.matches("blk0/k"));
        let e = NameFilter::from_globs(&["blk["], "include", "blk[").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid include=\"blk[\": bad glob"),
            "{e}"
        );
    }

    #[test]
    fn values_accepts_booleans_and_globs() {
        let c = env(&[(ENV_DIR, "d"), (ENV_VALUES, "1")]).unwrap().unwrap();
        assert!(c.values.matches("anything"));
        let c = env(&[(ENV_DIR, "d"), (ENV_VALUES, "logits")])
            .unwrap()
            .unwrap();
        assert!(c.values.matches("logits") && !c.values.matches("blk0/q"));
        let c = env(&[(ENV_DIR, "d")]).unwrap().unwrap();
        assert!(!c.values.matches("logits"));
    }

    #[test]
    fn values_at_selects_records_by_name_and_occurrence() {
        // (spec, name, occurrence, selected)
        let check = |spec: &str, name: &str, occ: u64, expected: bool| {
            let at = ValuesAt::parse(spec, ENV_VALUES_AT).unwrap();
            assert_eq!(at.selects(name, occ), expected, "{spec} {name}@{occ}");
            assert!(at.mentions(name) || !expected);
        };
        check("blk0/q@1", "blk0/q", 1, true);
        check("blk0/q@1", "blk0/q", 0, false);
        check("blk0/q@1", "blk0/k", 1, false);
        check("logits@2-4", "logits", 2, true);
        check("logits@2-4", "logits", 4, true);
        check("logits@2-4", "logits", 5, false);
        check(" a@0 ,\tb@3 ", "b", 3, true);
        check(" a@0 ,\tb@3 ", "a", 0, true);
        check("a@ 7 ", "a", 7, true);
        check("user@host@2", "user@host", 2, true);
        check(r"with space\, comma@0", "with space, comma", 0, true);
        check(r"back\\slash@0", r"back\slash", 0, true);
        check(r"\ padded\ @1", " padded ", 1, true);
        check("@0", "", 0, true);
        check("a@0,,a@5", "a", 5, true);
        check("blk*@0", "blk0", 0, false); // names are exact, not globs
        check("x@18446744073709551615", "x", u64::MAX, true);
    }

    #[test]
    fn values_at_errors_name_the_variable_and_what_was_expected() {
        let check = |spec: &str, needle: &str| {
            let e = ValuesAt::parse(spec, ENV_VALUES_AT)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("invalid TENSOR_TRACE_VALUES_AT="), "{e}");
            assert!(e.contains(needle), "{spec}: {e}");
        };
        check("logits", "has no `@`");
        check("a@", "expected an occurrence");
        check("a@x", "found \"x\"");
        check("a@-1", "expected an occurrence");
        check("a@+1", "expected an occurrence");
        check("a@1-2-3", "expected an occurrence");
        check("a@18446744073709551616", "expected an occurrence");
        check("a@5-2", "range 5-2 is empty");
        check(r"a@1\", "escapes nothing");
        check(" , ", "expected comma-separated");
        let e = env(&[(ENV_DIR, "d"), (ENV_VALUES_AT, "q")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("TENSOR_TRACE_VALUES_AT"), "{e}");
    }

    #[test]
    fn values_at_items_round_trip_through_the_parser() {
        let names = ["a,b", r"c\d", " e ", "f@g", "", "\t"];
        let at = ValuesAt::from_records(names.iter().map(|n| (*n, 3)));
        let parsed = ValuesAt::parse(at.spec(), ENV_VALUES_AT).unwrap();
        for name in names {
            assert!(
                parsed.selects(name, 3) && !parsed.selects(name, 2),
                "{name:?}"
            );
        }
        assert_eq!(
            parsed,
            ValuesAt {
                spec: at.spec().to_owned(),
                ..at
            }
        );
    }

    #[test]
    fn values_choice_is_the_union_of_both_settings() {
        let c = env(&[
            (ENV_DIR, "d"),
            (ENV_VALUES, "logits"),
            (ENV_VALUES_AT, "h@1"),
        ])
        .unwrap()
        .unwrap();
        let choice = c.values_choice();
        assert!(choice.keeps("logits", 9) && choice.keeps("h", 1) && !choice.keeps("h", 0));
        assert!(c.may_keep_values("h") && c.may_keep_values("logits") && !c.may_keep_values("q"));
    }

    proptest::proptest! {
        /// Any names, escaped by `from_records`, parse back to exactly the records given.
        #[test]
        fn values_at_spec_round_trips_any_names(
            records in proptest::collection::vec(("\\PC{0,12}|[ ,@\\\\\t]{1,4}", 0u64..5), 1..8),
            probe in 0u64..5,
        ) {
            let at = ValuesAt::from_records(records.iter().map(|(n, k)| (n.as_str(), *k)));
            let parsed = ValuesAt::parse(at.spec(), ENV_VALUES_AT).unwrap();
            for (name, _) in &records {
                let expected = records.iter().any(|(n, k)| n == name && *k == probe);
                proptest::prop_assert_eq!(parsed.selects(name, probe), expected);
            }
        }
    }
}
