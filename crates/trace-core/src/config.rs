//! Settings: from environment variables (read once) or from [`crate::TracerBuilder`].
//!
//! | variable | meaning |
//! |---|---|
//! | `TENSOR_TRACE_DIR` | enables tracing into this directory |
//! | `BITNET_TRACE_DIR` | the seed's name for the same, used when `TENSOR_TRACE_DIR` is unset |
//! | `TENSOR_TRACE_FILTER` | comma-separated globs over names; `!glob` excludes |
//! | `TENSOR_TRACE_VALUES` | also save raw values as `.npy`: `1`/`all`, or a glob list |
//! | `TENSOR_TRACE_APPEND` | `1` allows writing into a directory that already holds a run |
//! | `TENSOR_TRACE_ASYNC` | `1` writes files on a background thread (see [`crate::Tracer`]) |
//! | `TENSOR_TRACE_RANK` | process rank recorded in every record |

use std::path::PathBuf;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// Environment variable that enables tracing into a directory.
pub const ENV_DIR: &str = "TENSOR_TRACE_DIR";
/// The seed's variable, honoured when [`ENV_DIR`] is unset.
pub const ENV_DIR_COMPAT: &str = "BITNET_TRACE_DIR";
/// Name filter variable.
pub const ENV_FILTER: &str = "TENSOR_TRACE_FILTER";
/// Raw-values variable.
pub const ENV_VALUES: &str = "TENSOR_TRACE_VALUES";
/// Append-mode variable.
pub const ENV_APPEND: &str = "TENSOR_TRACE_APPEND";
/// Background-writer variable.
pub const ENV_ASYNC: &str = "TENSOR_TRACE_ASYNC";
/// Rank variable.
pub const ENV_RANK: &str = "TENSOR_TRACE_RANK";

/// A name filter: a name passes when it matches an include glob (or there are none) and no
/// exclude glob. `*` matches across `/`, so `*norm*` matches `blk0/attn_norm`.
#[derive(Debug, Clone)]
pub struct NameFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    spec: String,
}

impl NameFilter {
    /// Lets every name through.
    pub fn all() -> Self {
        Self {
            include: None,
            exclude: None,
            spec: "*".to_owned(),
        }
    }

    /// Lets no name through.
    pub fn none() -> Self {
        let mut b = GlobSetBuilder::new();
        b.add(Glob::new("*").expect("`*` is a valid glob"));
        Self {
            include: None,
            exclude: Some(b.build().expect("a one-glob set builds")),
            spec: String::new(),
        }
    }

    /// Parses `glob,glob,!glob`; `setting` names the source in errors.
    pub fn parse(spec: &str, setting: &str) -> Result<Self> {
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let (mut n_inc, mut n_exc) = (0, 0);
        for part in spec.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
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
            spec: spec.to_owned(),
        })
    }

    /// Whether `name` passes.
    pub fn matches(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(name))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(name))
    }

    /// The text the filter was parsed from.
    pub fn spec(&self) -> &str {
        &self.spec
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
    /// Allow writing into a directory that already holds a run.
    pub append: bool,
    /// Write files on a background thread with this queue capacity.
    pub background: Option<usize>,
    /// Rank stamped into every record.
    pub rank: Option<u32>,
}

/// Default queue capacity of the background writer (records in flight).
pub const DEFAULT_QUEUE: usize = 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            dir: None,
            filter: NameFilter::all(),
            values: NameFilter::none(),
            append: false,
            background: None,
            rank: None,
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
        if let Some(v) = non_empty(ENV_APPEND) {
            config.append = parse_bool(&v).ok_or_else(|| bool_error(ENV_APPEND, &v))?;
        }
        if let Some(v) = non_empty(ENV_ASYNC) {
            let on = parse_bool(&v).ok_or_else(|| bool_error(ENV_ASYNC, &v))?;
            config.background = on.then_some(DEFAULT_QUEUE);
        }
        if let Some(v) = non_empty(ENV_RANK) {
            config.rank = Some(v.trim().parse().map_err(|_| Error::Config {
                setting: ENV_RANK.into(),
                value: v.clone(),
                problem: "expected a non-negative integer".into(),
            })?);
        }
        Ok(Some(config))
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
}
