//! Engine views: how one engine family names and lays out tensor-trace's canonical points
//! (docs/FORMAT.md, "Engine views"), so that any two engines compare with no rules file.
//!
//! A [`View`] lists, for each canonical point the engine records (`blk{L}/q`, `logits`, ...),
//! the engine's name for it and the layout steps ([`crate::transform`]) that bring its values
//! into the canonical layout, plus what the engine records that has no canonical point and why.
//! Two views compose ([`compose`]) into ordinary [`Rules`]: A's name -> point -> B's name, each
//! side laid out by its own steps. A baseline with a view of its own maps onto B's names the
//! same way. [`detect`] picks a run's view from its record names.
//!
//! ```
//! use trace_diff::views::{self, View};
//!
//! let ours = View::preset("ours").unwrap().unwrap();
//! let hf = View::preset("hf-decoder").unwrap().unwrap();
//! let names = ["model.embed_tokens", "model.layers.0.self_attn.q_proj", "lm_head"];
//! let shipped = views::presets().unwrap();
//! let found = views::detect(&shipped, &names);
//! assert_eq!(found.view().map(View::name), Some("hf-decoder"));
//! let rules = views::compose(&ours, &hf, None).unwrap();
//! assert_eq!(rules.map_name("blk3/q"), "model.layers.3.self_attn.q_proj");
//! ```

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::rules::{
    compile_layout, glob_set, BaselineMap, MapRule, Rules, RulesFile, ViewChoice, ViewsUsed,
};
use crate::transform::Step;

/// Version of the view-file format this crate reads (`version` key, optional).
pub const VIEWS_VERSION: u32 = 1;

/// The views shipped with trace-diff (`crates/trace-diff/views/NAME.toml`), by name: detection
/// tries each, and `--view-a NAME` works wherever a view file path does.
pub const PRESETS: &[(&str, &str)] = &[
    ("ours", include_str!("../views/ours.toml")),
    ("hf-decoder", include_str!("../views/hf-decoder.toml")),
    ("llama-cpp", include_str!("../views/llama-cpp.toml")),
    (
        "llama-cpp-qwen2",
        include_str!("../views/llama-cpp-qwen2.toml"),
    ),
    (
        "llama-cpp-qwen3",
        include_str!("../views/llama-cpp-qwen3.toml"),
    ),
    ("hf-bert", include_str!("../views/hf-bert.toml")),
    ("ours-bert", include_str!("../views/ours-bert.toml")),
];

/// The placeholder for a layer number in name templates.
const LAYER: &str = "{L}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewFile {
    version: Option<u32>,
    name: Option<String>,
    about: Option<String>,
    detect: Vec<String>,
    #[serde(default)]
    reject: Vec<String>,
    #[serde(default)]
    ignore: Vec<IgnoreGroup>,
    #[serde(default)]
    point: Vec<PointFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgnoreGroup {
    names: Vec<String>,
    why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointFile {
    point: String,
    name: String,
    #[serde(default)]
    layout: Vec<Step>,
}

/// One canonical point as an engine records it.
#[derive(Debug, Clone)]
pub struct Point {
    /// The canonical point (`blk{L}/q`).
    pub point: String,
    /// The engine's name for it (`model.layers.{L}.self_attn.q_proj`).
    pub name: String,
    /// The steps bringing the engine's values into the canonical layout.
    pub layout: Vec<Step>,
}

/// An engine view, checked.
#[derive(Debug, Clone)]
pub struct View {
    name: String,
    about: String,
    source: String,
    detect: Vec<Glob>,
    reject: GlobSet,
    /// Each group's globs and why they have no canonical point.
    ignore: Vec<(Vec<String>, String)>,
    points: Vec<Point>,
    /// Points of the view that one run of the engine does not record ([`View::as_recorded_by`]).
    absent: Vec<String>,
}

impl View {
    /// A shipped view ([`PRESETS`]) by name; `None` when there is no such preset.
    pub fn preset(name: &str) -> Option<Result<View>> {
        PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Self::from_toml(text, &format!("view:{n}"), n))
    }

    /// What `--view-a SPEC` means: the view file at `spec` when it exists, else the preset of
    /// that name; an error names both when neither exists.
    pub fn load_or_preset(spec: &str) -> Result<View> {
        let path = Path::new(spec);
        if path.exists() {
            let text = fs::read_to_string(path).map_err(|e| view_error(spec, e.to_string()))?;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(spec);
            return Self::from_toml(&text, spec, stem);
        }
        Self::preset(spec).unwrap_or_else(|| {
            Err(view_error(
                spec,
                format!(
                    "no such file, and no shipped view of that name (views: {})",
                    preset_names()
                ),
            ))
        })
    }

    /// Compiles a view from TOML text; `source` names it in messages, `stem` is its name when
    /// the file gives none.
    pub fn from_toml(text: &str, source: &str, stem: &str) -> Result<View> {
        let file: ViewFile = toml::from_str(text)
            .map_err(|e| view_error(source, e.to_string().trim().to_owned()))?;
        if let Some(v) = file.version.filter(|&v| v != VIEWS_VERSION) {
            return Err(view_error(
                source,
                format!("`version`: {v} is not supported, expected {VIEWS_VERSION}"),
            ));
        }
        if file.detect.is_empty() {
            return Err(view_error(
                source,
                "`detect`: expected at least one glob (names every run of the engine has)".into(),
            ));
        }
        let glob_of = |p: &str, key: &str| {
            Glob::new(p).map_err(|e| view_error(source, format!("`{key}`: {p:?}: {e}")))
        };
        let detect = file
            .detect
            .iter()
            .map(|p| glob_of(p, "detect"))
            .collect::<Result<Vec<_>>>()?;
        let reject = globs(file.reject.iter().map(String::as_str), source, "reject")?;
        let mut points = Vec::with_capacity(file.point.len());
        let mut seen = HashSet::new();
        for (i, p) in file.point.into_iter().enumerate() {
            check_point(&p, i, &mut seen).map_err(|m| view_error(source, m))?;
            compile_layout(&p.layout)
                .map_err(|e| view_error(source, format!("`point[{i}].layout`: {e}")))?;
            points.push(Point {
                point: p.point,
                name: p.name,
                layout: p.layout,
            });
        }
        let ignore = file
            .ignore
            .into_iter()
            .map(|g| (g.names, g.why))
            .collect::<Vec<_>>();
        let view = View {
            name: file.name.unwrap_or_else(|| stem.to_owned()),
            about: file.about.unwrap_or_default(),
            source: source.to_owned(),
            detect,
            reject,
            ignore,
            points,
            absent: Vec::new(),
        };
        view.check_ignores_leave_points()?;
        Ok(view)
    }

    /// The view's name (`hf-decoder`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One line on the engine and how it is traced.
    pub fn about(&self) -> &str {
        &self.about
    }

    /// The canonical points the engine records.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The view's `detect` globs.
    pub fn detect_globs(&self) -> impl Iterator<Item = &str> {
        self.detect.iter().map(Glob::glob)
    }

    /// The entry of canonical point `point`, if the engine records it.
    pub fn point(&self, point: &str) -> Option<&Point> {
        self.points.iter().find(|p| p.point == point)
    }

    /// The view as one run of the engine uses it: the points none of `names` records (a
    /// transformers model traced without `inputs=True` has no module inputs; one without the
    /// RoPE wrapper no `q_rope`) are set aside, so that the other side's records of them are left
    /// out with that reason instead of reported missing.
    pub fn as_recorded_by(&self, names: &[&str]) -> View {
        let mut view = self.clone();
        let (kept, absent): (Vec<Point>, Vec<Point>) = view.points.into_iter().partition(|p| {
            let re = Regex::new(&format!("^(?:{})$", template_regex(&p.name)));
            re.is_ok_and(|re| names.iter().any(|n| re.is_match(n)))
        });
        view.points = kept;
        view.absent = absent.into_iter().map(|p| p.point).collect();
        view
    }

    /// The view's points its run does not record (see [`View::as_recorded_by`]).
    pub fn absent(&self) -> &[String] {
        &self.absent
    }

    /// Whether the view fits a run with these record names: why (each `detect` glob and the
    /// first name it matched), or `None`.
    pub fn fits(&self, names: &[&str]) -> Option<String> {
        if names.iter().any(|n| self.reject.is_match(n)) {
            return None;
        }
        let mut why = Vec::with_capacity(self.detect.len());
        for g in &self.detect {
            let m = g.compile_matcher();
            let first = names.iter().find(|n| m.is_match(n))?;
            why.push(format!("{first:?}"));
        }
        Some(format!("its records include {}", why.join(", ")))
    }

    /// A point's name at layer 0 must not be one the view's own ignore groups leave out (the
    /// point would never be compared).
    fn check_ignores_leave_points(&self) -> Result<()> {
        let set = globs(
            self.ignore
                .iter()
                .flat_map(|(g, _)| g.iter().map(String::as_str)),
            &self.source,
            "ignore.names",
        )?;
        for p in &self.points {
            let example = p.name.replace(LAYER, "0");
            if set.is_match(&example) {
                return Err(view_error(
                    &self.source,
                    format!(
                        "point {:?}: its name {example:?} is left out by an `ignore` group",
                        p.point
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A point's templates: both use `{L}` or neither, no other braces, each point once.
fn check_point(
    p: &PointFile,
    i: usize,
    seen: &mut HashSet<String>,
) -> std::result::Result<(), String> {
    for (key, t) in [("point", &p.point), ("name", &p.name)] {
        let rest = t.replace(LAYER, "");
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "`point[{i}].{key}`: {t:?}: the only placeholder is {LAYER}"
            ));
        }
    }
    if p.point.contains(LAYER) != p.name.contains(LAYER) {
        return Err(format!(
            "`point[{i}]`: {:?} and {:?}: {LAYER} must be in both templates or neither",
            p.point, p.name
        ));
    }
    if !seen.insert(p.point.clone()) {
        return Err(format!("`point[{i}]`: point {:?} is listed twice", p.point));
    }
    Ok(())
}

fn globs<'a>(
    patterns: impl IntoIterator<Item = &'a str>,
    source: &str,
    key: &str,
) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| view_error(source, format!("`{key}`: {p:?}: {e}")))?);
    }
    b.build()
        .map_err(|e| view_error(source, format!("`{key}`: {e}")))
}

fn view_error(source: &str, message: String) -> Error {
    Error::View {
        view: source.to_owned(),
        message,
    }
}

/// Every shipped view, compiled.
pub fn presets() -> Result<Vec<View>> {
    PRESETS
        .iter()
        .map(|(n, text)| View::from_toml(text, &format!("view:{n}"), n))
        .collect()
}

fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`detect`] found for one run.
#[derive(Debug)]
pub enum Detection<'v> {
    /// Exactly one view fits, and why.
    Found(&'v View, String),
    /// No view fits.
    Unknown,
    /// Several views fit: each with why.
    Ambiguous(Vec<(&'v View, String)>),
}

impl<'v> Detection<'v> {
    /// The view found, if exactly one fits.
    pub fn view(&self) -> Option<&'v View> {
        match self {
            Detection::Found(v, _) => Some(v),
            _ => None,
        }
    }
}

/// The view among `views` that fits a run with these record names.
pub fn detect<'v>(views: &'v [View], names: &[&str]) -> Detection<'v> {
    let mut fits: Vec<(&View, String)> = views
        .iter()
        .filter_map(|v| v.fits(names).map(|why| (v, why)))
        .collect();
    match fits.len() {
        0 => Detection::Unknown,
        1 => {
            let (v, why) = fits.remove(0);
            Detection::Found(v, why)
        }
        _ => Detection::Ambiguous(fits),
    }
}

/// A name template as a regex matching the engine's names, `{L}` captured as `L`.
fn template_regex(t: &str) -> String {
    t.split(LAYER)
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(r"(?P<L>\d+)")
}

/// A name template as a regex replacement (`{L}` -> `${L}`, `$` escaped).
fn template_replacement(t: &str) -> String {
    t.split(LAYER)
        .map(|s| s.replace('$', "$$"))
        .collect::<Vec<_>>()
        .join("${L}")
}

/// A name template as a glob (`{L}` -> one to four digits; glob syntax escaped).
fn template_glob(t: &str) -> String {
    let escape = |s: &str| {
        s.chars()
            .map(|c| match c {
                '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!' => format!("[{c}]"),
                c => c.to_string(),
            })
            .collect::<String>()
    };
    let digits = "{[0-9],[0-9][0-9],[0-9][0-9][0-9],[0-9][0-9][0-9][0-9]}";
    t.split(LAYER).map(escape).collect::<Vec<_>>().join(digits)
}

/// One side's ignore lists, as a rules file's `ignore_a`/`ignore_b` with their citations: the
/// view's own groups, then its points the other view does not record.
fn side_ignores(own: &View, other: &View) -> (Vec<String>, Vec<String>) {
    let (mut globs, mut cites) = (Vec::new(), Vec::new());
    for (names, why) in &own.ignore {
        for n in names {
            globs.push(n.clone());
            cites.push(format!("view {}: {why}", own.name));
        }
    }
    for p in own
        .points
        .iter()
        .filter(|p| other.point(&p.point).is_none())
    {
        globs.push(template_glob(&p.name));
        cites.push(if other.absent.contains(&p.point) {
            format!(
                "view {}: point {} is not recorded by the other run (view {}; its first {} \
                 records)",
                own.name, p.point, other.name, DETECT_NAMES
            )
        } else {
            format!(
                "view {}: point {} has no record in view {}",
                own.name, p.point, other.name
            )
        });
    }
    (globs, cites)
}

/// The rules comparing an engine seen through view `a` with one seen through view `b` (and a
/// baseline seen through `c`, when its view is not B's): every point both record is mapped,
/// each side laid out into the canonical layout; what only one records is ignored with why.
pub fn compose(a: &View, b: &View, c: Option<&View>) -> Result<Rules> {
    let mut file = RulesFile::default();
    for pa in &a.points {
        if let Some(pb) = b.point(&pa.point) {
            file.map.push(MapRule {
                a: template_regex(&pa.name),
                b: template_replacement(&pb.name),
                a_layout: pa.layout.clone(),
                b_layout: pb.layout.clone(),
            });
        }
    }
    (file.ignore_a, file.cite_a) = side_ignores(a, b);
    (file.ignore_b, file.cite_b) = side_ignores(b, a);
    file.logits = Some(
        b.point("logits")
            .map(|p| vec![template_glob(&p.name)])
            .unwrap_or_default(),
    );
    let source = format!("views {} -> {}", a.name, b.name);
    let mut rules = Rules::compile(file, Path::new(&source))?;
    if let Some(c) = c.filter(|c| c.name != b.name) {
        rules.set_baseline(baseline_map(c, b, &source)?);
    }
    Ok(rules)
}

/// How a baseline seen through view `c` maps onto B's names (view `b`).
fn baseline_map(c: &View, b: &View, source: &str) -> Result<BaselineMap> {
    let mut maps = Vec::new();
    for pc in &c.points {
        if let Some(pb) = b.point(&pc.point) {
            let re = Regex::new(&format!("^(?:{})$", template_regex(&pc.name)))
                .map_err(|e| view_error(source, e.to_string()))?;
            let layout = compile_layout(&pc.layout).map_err(|e| view_error(source, e))?;
            maps.push((re, template_replacement(&pb.name), layout));
        }
    }
    let (ignore, ignore_rules) = side_ignores(c, b);
    Ok(BaselineMap {
        maps,
        ignore: glob_set(
            ignore.iter().map(String::as_str),
            "ignore",
            Path::new(source),
        )?,
        ignore_rules,
    })
}

/// The views each side is seen through, as the report says them.
pub fn used(a: (&View, &str), b: (&View, &str), c: Option<(&View, &str)>) -> ViewsUsed {
    let choice = |(v, how): (&View, &str)| ViewChoice {
        view: v.name.clone(),
        how: how.to_owned(),
    };
    ViewsUsed {
        a: choice(a),
        b: choice(b),
        c: c.map(choice),
    }
}

mod choose;
mod draft;
pub use choose::{choose, run_names, SideSpec, DETECT_NAMES};
pub use draft::{draft, Seen};

#[cfg(test)]
mod tests;
