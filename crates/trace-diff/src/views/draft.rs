//! A starting view for an engine no view fits, drafted from one of its runs: its names grouped
//! into templates with the layer number abstracted as `{L}`, each with its shape, for a person
//! to finish (`tensor-trace views draft DIR`).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::View;
use crate::transform::Step;

/// One record name as the draft sees it: the name, its shape and its capture position.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The record name.
    pub name: String,
    /// Its shape (the first occurrence's).
    pub shape: Vec<usize>,
}

/// A name split into text and digit runs.
fn segments(name: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = name.as_bytes();
    for i in 1..=bytes.len() {
        if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[i - 1].is_ascii_digit() {
            out.push(&name[start..i]);
            start = i;
        }
    }
    out
}

/// One template of the draft: the name with its layer digits as `{L}`, the layers seen, and
/// the first name's shape.
struct Template {
    name: String,
    layers: Vec<u64>,
    shape: Vec<usize>,
    first: usize,
}

/// Groups names into templates: names alike but for one digit run that varies (the first such
/// run of their shape of name) share a template; other names stand alone.
fn templates(seen: &[Seen]) -> Vec<Template> {
    // Names by their shape with every digit run blanked.
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in seen.iter().enumerate() {
        let key: String = segments(&s.name)
            .iter()
            .map(|seg| {
                if seg.as_bytes()[0].is_ascii_digit() {
                    "#"
                } else {
                    seg
                }
            })
            .collect();
        by_key.entry(key).or_default().push(i);
    }
    let mut out: BTreeMap<String, Template> = BTreeMap::new();
    for members in by_key.values() {
        let segs: Vec<Vec<&str>> = members.iter().map(|&i| segments(&seen[i].name)).collect();
        let varies = (0..segs[0].len()).find(|&k| {
            segs[0][k].as_bytes()[0].is_ascii_digit() && segs.iter().any(|s| s[k] != segs[0][k])
        });
        for (&i, s) in members.iter().zip(&segs) {
            let (name, layer) = match varies {
                Some(k) => {
                    let mut t = s.clone();
                    let layer = t[k].parse::<u64>().ok();
                    t[k] = "{L}";
                    (t.concat(), layer)
                }
                None => (seen[i].name.clone(), None),
            };
            let t = out.entry(name.clone()).or_insert_with(|| Template {
                name,
                layers: Vec::new(),
                shape: seen[i].shape.clone(),
                first: i,
            });
            t.layers.extend(layer);
        }
    }
    let mut list: Vec<Template> = out.into_values().collect();
    list.sort_by_key(|t| t.first);
    list
}

/// The draft view's TOML for a run whose distinct record names (in capture order, first
/// occurrences) are `seen`; `known` are views whose points fill in the names they share.
pub fn draft(name: &str, seen: &[Seen], known: &[View]) -> String {
    let list = templates(seen);
    let mut out = format!(
        "# Draft view `{name}`, written by `tensor-trace views draft` from a run of {} distinct \
         record names.\n# Finish it: give each record under `not mapped yet` a [[point]] \
         (the canonical points and\n# layouts are in docs/FORMAT.md, \"Engine views\") or a \
         reason in an [[ignore]] group, and add\n# `layout` steps where its shape is not the \
         canonical one. Shapes are the first occurrence's.\nversion = 1\nname = {name:?}\n\
         about = \"\"\n",
        seen.len()
    );
    let detect: Vec<String> = list
        .iter()
        .filter(|t| t.layers.contains(&0))
        .take(2)
        .map(|t| format!("{:?}", t.name.replace("{L}", "0")))
        .collect();
    let detect = if detect.is_empty() {
        list.iter()
            .take(1)
            .map(|t| format!("{:?}", t.name))
            .collect()
    } else {
        detect
    };
    let _ = writeln!(out, "detect = [{}]", detect.join(", "));
    let mut unmapped = Vec::new();
    for t in &list {
        match known
            .iter()
            .find_map(|v| v.points().iter().find(|p| p.name == t.name).map(|p| (v, p)))
        {
            Some((v, p)) => {
                let _ = write!(
                    out,
                    "\n# {}; as in view {}\n[[point]]\npoint = {:?}\nname = {:?}\n",
                    describe(t),
                    v.name(),
                    p.point,
                    p.name
                );
                if !p.layout.is_empty() {
                    let steps: Vec<String> = p.layout.iter().map(Step::inline_toml).collect();
                    let _ = writeln!(out, "layout = [{}]", steps.join(", "));
                }
            }
            None => unmapped.push(t),
        }
    }
    if !unmapped.is_empty() {
        out.push_str("\n[[ignore]]\nwhy = \"not mapped yet\"\nnames = [\n");
        for t in unmapped {
            let glob = t.name.replace("{L}", "*");
            let _ = writeln!(out, "  {glob:?}, # {}", describe(t));
        }
        out.push_str("]\n");
    }
    out
}

/// `shape [1, 3, 64], layers 0..29` for a template.
fn describe(t: &Template) -> String {
    let mut s = format!("shape {:?}", t.shape);
    if let (Some(lo), Some(hi)) = (t.layers.iter().min(), t.layers.iter().max()) {
        let _ = write!(s, ", layers {lo}..{hi}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(names: &[(&str, &[usize])]) -> Vec<Seen> {
        names
            .iter()
            .map(|(n, s)| Seen {
                name: (*n).to_owned(),
                shape: s.to_vec(),
            })
            .collect()
    }

    #[test]
    fn layers_become_a_placeholder_and_other_digits_stay() {
        let s = seen(&[
            ("embd", &[3, 8]),
            ("Qcur-0", &[3, 8]),
            ("Qcur-0#1", &[3, 2, 4]),
            ("Qcur-1", &[3, 8]),
            ("Qcur-1#1", &[3, 2, 4]),
            ("conv2d", &[4]),
        ]);
        let names: Vec<String> = templates(&s).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["embd", "Qcur-{L}", "Qcur-{L}#1", "conv2d"]);
    }

    #[test]
    fn a_draft_is_a_view_that_fits_its_run() {
        let known = super::super::presets().unwrap();
        let s = seen(&[
            ("input_ids", &[1, 3]),
            ("layers.0.mix", &[1, 3, 8]),
            ("l_out-0", &[3, 8]),
            ("layers.1.mix", &[1, 3, 8]),
            ("l_out-1", &[3, 8]),
        ]);
        let text = draft("mine", &s, &known);
        let view =
            View::from_toml(&text, "draft", "mine").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(view.name(), "mine");
        // l_out-{L} is llama.cpp's: its point and layout are filled in.
        let p = view.point("blk{L}/l_out").unwrap();
        assert_eq!(p.name, "l_out-{L}");
        assert!(!p.layout.is_empty());
        assert!(
            text.contains("\"layers.*.mix\", # shape [1, 3, 8], layers 0..1"),
            "{text}"
        );
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert!(view.fits(&names).is_some(), "{text}");
    }
}
