//! Choosing each side's view: named with `--view-a`, `--view-b` or `--view-c`, else detected
//! from the names the run records.

use std::collections::HashSet;
use std::path::Path;

use trace_core::run::{RunOptions, RunStream};

use super::{compose, detect, preset_names, presets, used, Detection, Seen, View};
use crate::error::{Error, Result};
use crate::rules::Rules;

/// How many record names detection reads from the start of a run: every shipped view's
/// `detect` globs name records of the first layer or the embedding, which come early.
pub const DETECT_NAMES: usize = 10_000;

/// One side to choose a view for.
#[derive(Debug, Clone, Copy)]
pub struct SideSpec<'a> {
    /// `A`, `B` or `the baseline`.
    pub side: &'static str,
    /// The flag that names its view (`--view-a`).
    pub flag: &'static str,
    /// The run directory.
    pub dir: &'a Path,
    /// The view file or shipped view the flag named, if any.
    pub given: Option<&'a str>,
}

impl<'a> SideSpec<'a> {
    /// The side `side` (`A`), its view named by `flag` (`--view-a`), its run in `dir`, the view
    /// named for it if any.
    pub fn new(
        side: &'static str,
        flag: &'static str,
        dir: &'a Path,
        given: Option<&'a str>,
    ) -> Self {
        SideSpec {
            side,
            flag,
            dir,
            given,
        }
    }
}

/// What was chosen for one side.
enum Chosen {
    View(Box<View>, String),
    Unknown(Vec<String>),
    Ambiguous(Vec<(String, String)>),
}

/// The rules comparing A with B (and the baseline) through their views, or `None` when the
/// records can be matched by their own names, as without views: neither A nor B fits a view,
/// or every side fits the same one (unless a view was named: then the report says it).
///
/// An error, naming the side, what fits and how to choose, when one side fits no view while
/// the other does, or when several views fit a side.
pub fn choose(a: SideSpec<'_>, b: SideSpec<'_>, c: Option<SideSpec<'_>>) -> Result<Option<Rules>> {
    let all = presets()?;
    let (ca, cb) = (pick(&a, &all)?, pick(&b, &all)?);
    let (va, vb) = match (ca, cb) {
        (Chosen::Unknown(_), Chosen::Unknown(_)) if c.and_then(|c| c.given).is_none() => {
            return Ok(None)
        }
        (Chosen::View(va, ha), Chosen::View(vb, hb)) => ((va, ha), (vb, hb)),
        (ca, cb) => {
            let known = [(&a, &ca), (&b, &cb)];
            return Err(choice_error(&known));
        }
    };
    let vc = match c {
        None => None,
        Some(c) => match pick(&c, &all)? {
            Chosen::View(v, how) => Some((v, how)),
            other => return Err(choice_error(&[(&c, &other)])),
        },
    };
    let same = va.0.name() == vb.0.name() && vc.as_ref().is_none_or(|c| c.0.name() == vb.0.name());
    let named = a.given.is_some() || b.given.is_some() || c.is_some_and(|c| c.given.is_some());
    if same && !named {
        // One engine family on every side: its names already match, as without views.
        return Ok(None);
    }
    let mut rules = if same {
        Rules::default()
    } else {
        compose(&va.0, &vb.0, vc.as_ref().map(|c| c.0.as_ref()))?
    };
    rules.set_views(used(
        (&va.0, &va.1),
        (&vb.0, &vb.1),
        vc.as_ref().map(|(v, h)| (v.as_ref(), h.as_str())),
    ));
    Ok(Some(rules))
}

/// The view named for `spec`, else the one its names fit.
fn pick(spec: &SideSpec<'_>, all: &[View]) -> Result<Chosen> {
    // A run that cannot be read fits no view; the diff then says why it cannot be read.
    let names: Vec<String> = run_names(spec.dir)
        .map(|seen| seen.into_iter().map(|s| s.name).collect())
        .unwrap_or_default();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // The view as this run uses it (the points it records), when the run could be read.
    let used = |v: &View| {
        if refs.is_empty() {
            v.clone()
        } else {
            v.as_recorded_by(&refs)
        }
    };
    if let Some(given) = spec.given {
        let view = View::load_or_preset(given)?;
        return Ok(Chosen::View(Box::new(used(&view)), spec.flag.to_owned()));
    }
    Ok(match detect(all, &refs) {
        Detection::Found(v, why) => Chosen::View(Box::new(used(v)), format!("detected: {why}")),
        Detection::Unknown => Chosen::Unknown(names.into_iter().take(5).collect()),
        Detection::Ambiguous(fits) => Chosen::Ambiguous(
            fits.into_iter()
                .map(|(v, why)| (v.name().to_owned(), why))
                .collect(),
        ),
    })
}

/// The distinct record names among the first [`DETECT_NAMES`] records of the run in `dir` (rank
/// 0's of a multi-rank run), in capture order, each with its first shape.
pub fn run_names(dir: &Path) -> Result<Vec<Seen>> {
    let rank0 = dir.join("rank-0");
    let dir = if rank0.is_dir() { rank0.as_path() } else { dir };
    let mut stream = RunStream::open(dir, &RunOptions::default())?;
    let (mut read, mut seen, mut names) = (0, HashSet::new(), Vec::new());
    while read < DETECT_NAMES {
        let Some(chunk) = stream.next_chunk()? else {
            break;
        };
        read += chunk.len();
        for r in chunk {
            if seen.insert(r.record.name.clone()) {
                names.push(Seen {
                    name: r.record.name,
                    shape: r.record.shape,
                });
            }
        }
    }
    Ok(names)
}

/// The error for sides with no view or several: what each side is, and how to choose.
fn choice_error(sides: &[(&SideSpec<'_>, &Chosen)]) -> Error {
    let mut lines = Vec::new();
    let mut flags = Vec::new();
    for (spec, chosen) in sides {
        let at = format!("{} ({})", spec.side, spec.dir.display());
        match chosen {
            Chosen::View(v, how) => {
                lines.push(format!("{at} is seen through view {} ({how})", v.name()))
            }
            Chosen::Unknown(first) => {
                flags.push(spec.flag);
                lines.push(format!(
                    "{at}: no engine view fits its records (its first: {})",
                    if first.is_empty() {
                        "none could be read".to_owned()
                    } else {
                        first
                            .iter()
                            .map(|n| format!("{n:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
            }
            Chosen::Ambiguous(fits) => {
                flags.push(spec.flag);
                let each: Vec<String> =
                    fits.iter().map(|(n, why)| format!("{n} ({why})")).collect();
                lines.push(format!("{at}: several views fit: {}", each.join("; ")));
            }
        }
    }
    lines.push(format!(
        "choose with {} NAME|FILE (shipped views: {}), or give a rules file with --rules; \
         `tensor-trace views draft DIR` writes a starting view from a run of a new engine",
        flags.join(" / "),
        preset_names()
    ));
    Error::ViewChoice {
        message: lines.join("\n"),
    }
}
