//! The layer-by-point error map shared by the text and HTML reports: for each pass (`seq`: the
//! prefill, then each decode step) a grid whose rows are the points of a layer in execution
//! order and whose columns are the layers, with the records outside any layer (`embed`,
//! `out_norm`, `logits`, ...) in a column of their own.
//!
//! Rows come from a [`View`]: a table of a model family's points in execution order, each point
//! naming the `stage` values that are it. The built-in views are our engines' own point names
//! ([`View::decoder`]: trace-candle's and reference-engine's Llama; [`View::encoder`]:
//! MiniLM). A report is drawn with the view that places most of its pairs; stages no view
//! knows become rows of their own, in the order they first appear in A, so a run of any engine
//! gets a map ("rows by stage name" when no view fits at all). Issue 24's canonical views plug
//! in as more [`View`] values in [`View::builtin`].
//!
//! Each cell shows one pair (the worst when several records share a point: an engine that
//! records a stage twice): its error on a log scale or, in a calibrated report, its ratio
//! `e_A / e_C` on a scale centred on 1 with the threshold `K` marked. Records the rules' ignore
//! lists left out ([`Report::ignored`]) fill the cells no pair has, drawn as ignored, so that a
//! blank cell means a point that was not traced.

use std::collections::HashMap;

use crate::report::{CalibrationStatus, IgnoredRecord, LayerError, Pair, Report, Verdict};

/// A point of a model: the name of its row and the `stage` values recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Point {
    /// The row label.
    pub name: String,
    /// The stage names (of side A's records) that are this point.
    pub stages: Vec<String>,
}

impl Point {
    fn new(name: &str, aliases: &[&str]) -> Point {
        let mut stages = vec![name.to_owned()];
        stages.extend(aliases.iter().map(|s| (*s).to_owned()));
        Point {
            name: name.to_owned(),
            stages,
        }
    }
}

/// The row order of one model family: its points in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    /// What the view describes, for the map's caption.
    pub name: String,
    /// Records outside any layer, before the layers (`embed`).
    pub before: Vec<Point>,
    /// The points of one layer.
    pub layer: Vec<Point>,
    /// Records outside any layer, after the layers (`out_norm`, `logits`).
    pub after: Vec<Point>,
}

impl View {
    /// The decoder of trace-candle's engine and of reference-engine (and the names the
    /// crossval presets map transformers' and llama.cpp's records to).
    pub fn decoder() -> View {
        let p = Point::new;
        View {
            name: "decoder points".to_owned(),
            before: vec![p("tokens", &[]), p("embed", &["tok_embd", "embeddings"])],
            layer: vec![
                p("attn_norm", &[]),
                p("q", &[]),
                p("k", &[]),
                p("v", &[]),
                p("q_rope", &[]),
                p("k_rope", &[]),
                p("attn_probs", &[]),
                p("attn_ctx", &[]),
                p("attn_out", &[]),
                p("ffn_inp", &[]),
                p("ffn_norm", &[]),
                p("gate", &["ffn_gate"]),
                p("up", &["ffn_up"]),
                p("act", &["ffn_act"]),
                p("ffn_out", &[]),
                p("l_out", &[]),
            ],
            after: vec![
                p("out_norm", &["result_norm"]),
                p("logits", &["result_output"]),
                p("next_token", &[]),
            ],
        }
    }

    /// The MiniLM (BERT) encoder of the `minilm` crate and its numpy reference.
    pub fn encoder() -> View {
        let p = Point::new;
        View {
            name: "encoder points".to_owned(),
            before: vec![
                p("tokens", &[]),
                p("attention_mask", &[]),
                p("embeddings", &[]),
            ],
            layer: vec![p("attn_out", &[]), p("ffn_out", &[])],
            after: vec![p("pooled", &[]), p("normalized", &[])],
        }
    }

    /// The views a report is drawn with: the first that places most pairs wins.
    pub fn builtin() -> Vec<View> {
        vec![View::decoder(), View::encoder()]
    }

    /// How many of `keys` the view places (a layered key among its layer points, another
    /// among its points outside the layers).
    fn placed(&self, keys: &[Key]) -> usize {
        let has = |points: &[Point], stage: &str| {
            points.iter().any(|p| p.stages.iter().any(|s| s == stage))
        };
        keys.iter()
            .filter(|k| match k.layer {
                Some(_) => has(&self.layer, &k.stage),
                None => has(&self.before, &k.stage) || has(&self.after, &k.stage),
            })
            .count()
    }
}

/// Where a pair (or an ignored record) goes: its pass, its layer (`None` outside any layer)
/// and its stage; and where it sits in its side's order, for records outside the layers.
#[derive(Debug, Clone)]
struct Key {
    seq: Option<u64>,
    layer: Option<i64>,
    stage: String,
    position: u64,
    /// A record of A (matched or not), whose position is in A's order.
    of_a: bool,
}

impl Key {
    fn of(p: &Pair) -> Key {
        let stage = Key::stage(p.display_name(), p.stage.as_deref());
        Key {
            seq: p.seq,
            layer: p.layer.filter(|l| *l >= 0),
            stage,
            position: p.position,
            of_a: p.only_in != Some("b"),
        }
    }

    fn of_ignored(r: &IgnoredRecord) -> Key {
        Key {
            seq: r.seq,
            layer: r.layer.filter(|l| *l >= 0),
            stage: Key::stage(&r.name, r.stage.as_deref()),
            position: r.position,
            of_a: r.side == "a",
        }
    }

    /// The recorded stage, else the last part of the name (`blk3/q` is `q`).
    fn stage(name: &str, stage: Option<&str>) -> String {
        stage
            .unwrap_or_else(|| name.rsplit('/').next().unwrap_or(""))
            .to_owned()
    }
}

/// What a cell shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shade {
    /// Bit-identical.
    Identical,
    /// The error (or, calibrated, the ratio; infinite when the baseline's error is 0).
    Value(f64),
    /// Compared, but no number (hash-only evidence, or no ratio in a calibrated report).
    Unknown,
    /// The record is on one side only.
    Missing,
    /// Records the rules' ignore lists left out (no pair at this point).
    Ignored,
}

/// What a cell stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// A pair: an index into [`Report::pairs`].
    Pair(usize),
    /// An ignored record: an index into the records of [`Report::ignored`].
    Ignored(usize),
}

/// One cell: the pair (or ignored record) shown and how many share the point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cell {
    /// What it shows.
    pub item: Item,
    /// Pairs (or, for an ignored cell, ignored records) at this point of this layer and pass.
    pub count: usize,
    /// How it shows it.
    pub shade: Shade,
}

impl Cell {
    /// The index into [`Report::pairs`] of the pair shown, unless the cell is ignored records.
    pub fn pair(&self) -> Option<usize> {
        match self.item {
            Item::Pair(i) => Some(i),
            Item::Ignored(_) => None,
        }
    }
}

/// The scale the cells are shaded on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    /// The error, log scale, over decades `lo..hi`.
    Error {
        /// Lowest decade (log10) of the colour scale.
        lo: i32,
        /// Highest decade.
        hi: i32,
    },
    /// The calibrated ratio, log scale centred on 1, over `1/10^span..10^span`.
    Ratio {
        /// `K`: a ratio above it is a divergence.
        k: f64,
        /// Decades on each side of 1.
        span: i32,
    },
}

impl Scale {
    /// Where `v` sits on the scale, from 0 (best) to 1 (worst).
    pub fn position(self, v: f64) -> f64 {
        let t = match self {
            Scale::Error { lo, hi } => (v.log10() - f64::from(lo)) / f64::from(hi - lo),
            Scale::Ratio { span, .. } => (v.log10() + f64::from(span)) / f64::from(2 * span),
        };
        if t.is_nan() {
            1.0
        } else {
            t.clamp(0.0, 1.0)
        }
    }
}

/// Where a row sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Section {
    /// Outside any layer, before the layers.
    Before,
    /// Inside the layers.
    Layer,
    /// Outside any layer, after the layers.
    After,
}

/// A row of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// The label.
    pub name: String,
    /// Where it sits.
    pub section: Section,
}

/// The growth of one layer's output error over the previous layer's, from [`Report::layers`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Growth {
    /// The layer.
    pub layer: i64,
    /// The record taken as the layer's output.
    pub output: String,
    /// The record taken as the previous layer's output (for layer 0, the last record before
    /// the layers: the embedding's output), when the report has it.
    pub previous: Option<String>,
    /// Its error (calibrated: its ratio).
    pub value: Option<f64>,
    /// `value / previous layer's value`.
    pub factor: Option<f64>,
    /// The previous layer's output is exact (error or ratio 0) and this one is not: the error
    /// appears in this layer (no finite factor says so).
    pub from_exact: bool,
}

impl Growth {
    /// Whether there is anything to draw for this layer.
    pub fn known(&self) -> bool {
        self.factor.is_some() || self.from_exact
    }
}

/// One pass's grid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pass {
    /// The `seq` of its records (`None`: records without one).
    pub seq: Option<u64>,
    /// Cells by `(row, column)`; column 0 holds the records outside any layer, column `1 + i`
    /// layer [`Map::layers`]`[i]`.
    pub cells: HashMap<(usize, usize), Cell>,
    /// Per-layer growth, in layer order.
    pub growth: Vec<Growth>,
}

/// The maps of a report, one per pass, on one scale.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Map {
    /// The view the rows follow (`None`: rows by stage name only).
    pub view: Option<String>,
    /// Rows, top to bottom.
    pub rows: Vec<Row>,
    /// Layer numbers, left to right.
    pub layers: Vec<i64>,
    /// Passes in `seq` order.
    pub passes: Vec<Pass>,
    /// The colour scale.
    pub scale: Scale,
}

impl Map {
    /// The map of `report` drawn with the best of `views`; `None` when no pair has a layer
    /// (a map of one column says nothing the records table does not).
    pub fn build(report: &Report, views: &[View]) -> Option<Map> {
        // The pairs' keys, then the ignored records'.
        let keys: Vec<Key> = report
            .pairs
            .iter()
            .map(Key::of)
            .chain(report.ignored.records.iter().map(Key::of_ignored))
            .collect();
        if keys.iter().all(|k| k.layer.is_none()) {
            return None;
        }
        let mut best: Option<(usize, &View)> = None;
        for v in views {
            let n = v.placed(&keys);
            if n > 0 && best.is_none_or(|(m, _)| n > m) {
                best = Some((n, v));
            }
        }
        let view = best.map(|(_, v)| v);
        let sections = sections(&keys);
        let (rows, row_of) = rows(&keys, &sections, view);
        let mut layers: Vec<i64> = keys.iter().filter_map(|k| k.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        let scale = scale(report);
        let mut passes: Vec<Pass> = Vec::new();
        let pairs = report.pairs.len();
        for (i, k) in keys.iter().enumerate() {
            let at = match passes.iter().position(|x| x.seq == k.seq) {
                Some(at) => at,
                None => {
                    passes.push(Pass {
                        seq: k.seq,
                        cells: HashMap::new(),
                        growth: growth(report, k.seq),
                    });
                    passes.len() - 1
                }
            };
            let row = row_of[&(sections[i], k.stage.clone())];
            let col = k.layer.map_or(0, |l| {
                1 + layers.binary_search(&l).expect("collected above")
            });
            let cells = &mut passes[at].cells;
            if i >= pairs {
                // An ignored record fills a cell no pair has.
                let cell = Cell {
                    item: Item::Ignored(i - pairs),
                    count: 1,
                    shade: Shade::Ignored,
                };
                let c = cells.entry((row, col)).or_insert(Cell { count: 0, ..cell });
                if c.shade == Shade::Ignored {
                    c.count += 1;
                }
                continue;
            }
            let cell = Cell {
                item: Item::Pair(i),
                count: 1,
                shade: shade(&report.pairs[i], scale),
            };
            cells
                .entry((row, col))
                .and_modify(|c| {
                    let count = c.count + 1;
                    if rank(report, &cell, scale) > rank(report, c, scale) {
                        *c = cell;
                    }
                    c.count = count;
                })
                .or_insert(cell);
        }
        passes.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
        Some(Map {
            view: view.map(|v| v.name.clone()),
            rows,
            layers,
            passes,
            scale,
        })
    }

    /// "prefill (step 0)", "decode step 3", "records without a step"; "step 0" when it is the
    /// only pass (an encoder has no prefill).
    pub fn title(&self, pass: &Pass) -> String {
        match pass.seq {
            Some(0) if self.passes.len() == 1 => "step 0".to_owned(),
            Some(0) => "prefill (step 0)".to_owned(),
            Some(s) => format!("decode step {s}"),
            None => "records without a step".to_owned(),
        }
    }

    /// The index into [`Map::passes`] of the pass holding the first divergence, if any.
    pub fn first_divergence_pass(&self, report: &Report) -> Option<usize> {
        let at = report.first_divergence_pair()?;
        self.passes.iter().position(|p| p.seq == at.seq)
    }

    /// The `(row, column)` of pair `pair` in its pass, when it is the pair a cell shows.
    pub fn cell_of(&self, pass: &Pass, pair: usize) -> Option<(usize, usize)> {
        pass.cells
            .iter()
            .find(|(_, c)| c.item == Item::Pair(pair))
            .map(|(at, _)| *at)
    }
}

/// What a map of a streaming diff's report lacks: it keeps only the first non-agreeing pairs.
pub(crate) fn streamed_note(report: &Report) -> Option<String> {
    let s = report.streamed.as_ref()?;
    Some(format!(
        "streamed: the report keeps only the first {} non-agreeing records, so the map shows those alone",
        s.pairs_kept
    ))
}

/// Each key's section: a record outside any layer is before the layers when it comes before
/// the first layered record of its pass in A's order (B's records count as before).
fn sections(keys: &[Key]) -> Vec<Section> {
    let mut first_layered: HashMap<Option<u64>, u64> = HashMap::new();
    for k in keys {
        if k.layer.is_some() && k.of_a {
            let e = first_layered.entry(k.seq).or_insert(k.position);
            *e = (*e).min(k.position);
        }
    }
    keys.iter()
        .map(|k| match k.layer {
            Some(_) => Section::Layer,
            None => match first_layered.get(&k.seq) {
                Some(&first) if k.position > first && k.of_a => Section::After,
                _ => Section::Before,
            },
        })
        .collect()
}

/// The rows: in each section the view's points that occur, then the stages it does not know in
/// the order they first appear; and the row of each `(section, stage)`.
fn rows(
    keys: &[Key],
    sections: &[Section],
    view: Option<&View>,
) -> (Vec<Row>, HashMap<(Section, String), usize>) {
    let mut seen: Vec<(Section, &str)> = Vec::new();
    for (k, &section) in keys.iter().zip(sections) {
        if !seen.iter().any(|&(s, st)| s == section && st == k.stage) {
            seen.push((section, &k.stage));
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut row_of = HashMap::new();
    for section in [Section::Before, Section::Layer, Section::After] {
        let points: &[Point] = match (view, section) {
            (None, _) => &[],
            (Some(v), Section::Before) => &v.before,
            (Some(v), Section::Layer) => &v.layer,
            (Some(v), Section::After) => &v.after,
        };
        let here: Vec<&str> = seen
            .iter()
            .filter(|(s, _)| *s == section)
            .map(|&(_, st)| st)
            .collect();
        let known = |st: &str| points.iter().any(|p| p.stages.iter().any(|x| x == st));
        let named = points.iter().map(|p| {
            let stages: Vec<&str> = here
                .iter()
                .copied()
                .filter(|st| p.stages.iter().any(|x| x == st))
                .collect();
            (p.name.as_str(), stages)
        });
        let unknown = here
            .iter()
            .copied()
            .filter(|st| !known(st))
            .map(|st| (st, vec![st]));
        for (name, stages) in named.chain(unknown) {
            if stages.is_empty() {
                continue;
            }
            for st in stages {
                row_of.insert((section, st.to_owned()), rows.len());
            }
            rows.push(Row {
                name: name.to_owned(),
                section,
            });
        }
    }
    (rows, row_of)
}

/// What pair `p`'s cell shows on `scale`.
fn shade(p: &Pair, scale: Scale) -> Shade {
    if p.only_in.is_some() || p.verdict == Verdict::Missing {
        return Shade::Missing;
    }
    if p.verdict == Verdict::Identical {
        return Shade::Identical;
    }
    let value = match scale {
        Scale::Error { .. } => p.error,
        Scale::Ratio { .. } => match &p.calibration {
            Some(c) if c.status == CalibrationStatus::Calibrated => match c.ratio {
                Some(r) => Some(r),
                // The ratio is null when infinite: an error over a baseline that has none.
                None if c.e_a.is_some_and(|e| e > 0.0) => Some(f64::INFINITY),
                None => None,
            },
            _ => None,
        },
    };
    match value {
        Some(v) if !v.is_nan() => Shade::Value(v),
        _ => Shade::Unknown,
    }
}

/// How bad a cell is, to pick the one shown among records at the same point: divergences
/// first, then missing records, then the larger value.
fn rank(report: &Report, c: &Cell, scale: Scale) -> (bool, bool, u64) {
    let Some(i) = c.pair() else {
        return (false, false, 0);
    };
    let p = &report.pairs[i];
    let pos = match c.shade {
        Shade::Value(v) => (scale.position(v) * 1e9) as u64 + 1,
        _ => 0,
    };
    (p.verdict.is_divergence(), c.shade == Shade::Missing, pos)
}

/// The scale of `report`'s cells: the ratio's when calibrated, else the error's decades
/// (at least three, within 1e-12..1e2).
fn scale(report: &Report) -> Scale {
    let decades = |values: &mut dyn Iterator<Item = f64>| {
        values
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(f64::log10)
            .fold(None, |acc: Option<(f64, f64)>, l| match acc {
                None => Some((l, l)),
                Some((lo, hi)) => Some((lo.min(l), hi.max(l))),
            })
    };
    if let Some(cal) = &report.calibration {
        let ratios = &mut report
            .pairs
            .iter()
            .filter_map(|p| p.calibration.as_ref().and_then(|c| c.ratio));
        let widest = decades(ratios).map_or(0.0, |(lo, hi)| lo.abs().max(hi.abs()));
        let k = cal.max_ratio.log10().abs().ceil() + 1.0;
        let span = widest.ceil().max(k).clamp(1.0, 8.0) as i32;
        return Scale::Ratio {
            k: cal.max_ratio,
            span,
        };
    }
    let errors = &mut report.pairs.iter().filter_map(|p| p.error);
    let (lo, hi) = decades(errors).map_or((-8.0, -2.0), |(lo, hi)| (lo.floor(), hi.ceil()));
    let hi = hi.clamp(-9.0, 2.0) as i32;
    let lo = (lo.max(-12.0) as i32).min(hi - 3);
    Scale::Error { lo, hi }
}

/// The growth of each layer's output in pass `seq`: the error's or, calibrated, the ratio's,
/// over the previous layer's output. Layer 0's previous layer is the group of records before
/// the layers (the embedding's output). The diff's amplification stands in where the previous
/// group is not in the report (a streaming diff keeps only the groups near the divergence).
fn growth(report: &Report, seq: Option<u64>) -> Vec<Growth> {
    let calibrated = report.calibration.is_some();
    let value = |l: &LayerError| if calibrated { l.ratio } else { l.error };
    let mut out: Vec<Growth> = Vec::new();
    let mut prev: Option<&LayerError> = None;
    for l in report.layers.iter().filter(|l| l.seq == seq) {
        let before = prev.filter(|p| p.layer == l.layer - 1 || (l.layer == 0 && p.layer < 0));
        prev = Some(l);
        if l.layer < 0 {
            continue;
        }
        let (factor, from_exact) = match (value(l), before.and_then(value)) {
            (Some(v), Some(p)) if p > 0.0 => (Some(v / p), false),
            (Some(v), Some(p)) => (None, p == 0.0 && v > 0.0),
            _ if !calibrated && before.is_none() => (l.amplification, false),
            _ => (None, false),
        };
        out.push(Growth {
            layer: l.layer,
            output: l.output.clone(),
            previous: before.map(|p| p.output.clone()),
            value: value(l),
            factor,
            from_exact,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Counts, Evidence, Outcome, RunInfo};

    /// A matched pair of A's record `name` at `position`, with its context and error.
    fn pair(position: u64, name: &str, seq: u64, layer: i64, error: f64) -> Pair {
        Pair {
            position,
            only_in: None,
            name_a: Some(name.into()),
            name_b: Some(name.into()),
            occurrence: seq,
            index: Some(position),
            seq: Some(seq),
            layer: Some(layer),
            stage: Some(name.rsplit('/').next().unwrap().into()),
            verdict: if error == 0.0 {
                Verdict::Identical
            } else if error > 1e-3 {
                Verdict::Diverged
            } else {
                Verdict::WithinTolerance
            },
            evidence: Evidence::Values,
            reason: None,
            shape: [None, None],
            dtype: [None, None],
            file: [None, None],
            tolerance: None,
            stats: None,
            values: None,
            logits: None,
            error: Some(error),
            calibration: None,
            sketch: None,
        }
    }

    fn report(pairs: Vec<Pair>) -> Report {
        let run = RunInfo {
            dir: "d".into(),
            order: "manifest",
            execution_order_known: true,
            records: pairs.len() as u64,
            ignored: 0,
        };
        Report {
            schema: crate::report::SCHEMA,
            schema_version: crate::report::SCHEMA_VERSION,
            outcome: Outcome::Agree,
            a: run.clone(),
            b: run,
            rules: None,
            views: None,
            counts: Counts::default(),
            first_divergence: None,
            pairs,
            layers: Vec::new(),
            warnings: Vec::new(),
            calibration: None,
            ranks: None,
            streamed: None,
            ignored: Default::default(),
        }
    }

    fn row_names(map: &Map) -> Vec<&str> {
        map.rows.iter().map(|r| r.name.as_str()).collect()
    }

    /// The records of one pass of a decoder with `layers` layers, stages in `stages`.
    fn decoder_pass(seq: u64, layers: i64, stages: &[&str], start: u64) -> Vec<Pair> {
        let mut out = vec![pair(start, "embed", seq, -1, 0.0)];
        for l in 0..layers {
            for st in stages {
                let at = start + out.len() as u64;
                out.push(pair(at, &format!("blk{l}/{st}"), seq, l, 1e-7));
            }
        }
        let at = start + out.len() as u64;
        out.push(pair(at, "logits", seq, -1, 2e-6));
        out
    }

    #[test]
    fn rows_follow_the_view_not_the_capture_order() {
        // The engine records v before q: the map still lists q first, as the view does, and
        // maps the engine's `ffn_gate` to the view's `gate`.
        let r = report(decoder_pass(0, 2, &["v", "q", "ffn_gate", "l_out"], 0));
        let map = Map::build(&r, &View::builtin()).unwrap();
        assert_eq!(map.view.as_deref(), Some("decoder points"));
        assert_eq!(
            row_names(&map),
            ["embed", "q", "v", "gate", "l_out", "logits"]
        );
        assert_eq!(map.layers, [0, 1]);
        assert_eq!(map.passes.len(), 1);
        assert_eq!(map.title(&map.passes[0]), "step 0");
        // Every pair is a cell: 2 outside the layers and 4 points in each of 2 layers.
        assert_eq!(map.passes[0].cells.len(), 10);
        let logits = map.passes[0].cells[&(5, 0)];
        assert_eq!(r.pairs[logits.pair().unwrap()].display_name(), "logits");
        assert_eq!(logits.shade, Shade::Value(2e-6));
        let q1 = map.passes[0].cells[&(1, 2)];
        assert_eq!(r.pairs[q1.pair().unwrap()].display_name(), "blk1/q");
        assert_eq!(map.passes[0].cells[&(0, 0)].shade, Shade::Identical);
    }

    #[test]
    fn unknown_stages_become_rows_in_order_of_appearance() {
        let r = report(decoder_pass(0, 1, &["q", "mystery", "l_out", "extra"], 0));
        let map = Map::build(&r, &View::builtin()).unwrap();
        assert_eq!(
            row_names(&map),
            ["embed", "q", "l_out", "mystery", "extra", "logits"]
        );
        // No view knows any stage: rows by stage name, in order of first appearance.
        let mut pairs = decoder_pass(0, 2, &["self_attn", "mlp"], 0);
        for p in &mut pairs {
            if p.layer == Some(-1) {
                p.stage = Some(format!("model_{}", p.display_name()).into());
            }
        }
        let map = Map::build(&report(pairs), &View::builtin()).unwrap();
        assert_eq!(map.view, None);
        assert_eq!(
            row_names(&map),
            ["model_embed", "self_attn", "mlp", "model_logits"]
        );
        assert_eq!(map.rows[3].section, Section::After);
    }

    #[test]
    fn the_encoder_view_wins_on_minilm_records() {
        let mut pairs = vec![
            pair(0, "tokens", 0, -1, 0.0),
            pair(1, "embeddings", 0, -1, 1e-7),
        ];
        for l in 0..2 {
            for st in ["attn_out", "ffn_out"] {
                let at = pairs.len() as u64;
                pairs.push(pair(at, &format!("layer{l}/{st}"), 0, l, 1e-6));
            }
        }
        pairs.push(pair(6, "pooled", 0, -1, 1e-6));
        let map = Map::build(&report(pairs), &View::builtin()).unwrap();
        assert_eq!(map.view.as_deref(), Some("encoder points"));
        assert_eq!(
            row_names(&map),
            ["tokens", "embeddings", "attn_out", "ffn_out", "pooled"]
        );
    }

    #[test]
    fn one_map_per_pass_and_the_worst_record_of_a_point() {
        let mut pairs = decoder_pass(0, 1, &["q"], 0);
        pairs.extend(decoder_pass(1, 1, &["q"], 3));
        // A second `blk0/q` in step 1 (an engine recording a point twice), the worse one.
        let mut again = pair(6, "blk0/q", 1, 0, 5e-2);
        again.occurrence = 2;
        pairs.push(again);
        let mut r = report(pairs);
        r.first_divergence = Some(crate::report::FirstDivergence {
            pair: 6,
            name: "blk0/q".into(),
            last_agreeing: None,
            diverged_after: 0,
            max_error_after: None,
            execution_order_known: true,
        });
        let map = Map::build(&r, &View::builtin()).unwrap();
        assert_eq!(
            map.passes.iter().map(|p| p.seq).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
        let titles: Vec<String> = map.passes.iter().map(|p| map.title(p)).collect();
        assert_eq!(titles, ["prefill (step 0)", "decode step 1"]);
        let cell = map.passes[1].cells[&(1, 1)];
        assert_eq!((cell.item, cell.count), (Item::Pair(6), 2));
        assert_eq!(map.first_divergence_pass(&r), Some(1));
        assert_eq!(map.cell_of(&map.passes[1], 6), Some((1, 1)));
        assert_eq!(map.cell_of(&map.passes[1], 4), None);
    }

    #[test]
    fn layer_zero_grows_over_the_embedding() {
        let group = |layer: i64, output: &str, error: f64| crate::report::LayerError {
            seq: Some(0),
            layer,
            output: output.into(),
            error: Some(error),
            max_error: Some(error),
            amplification: None,
            baseline_error: None,
            ratio: None,
        };
        let mut r = report(decoder_pass(0, 2, &["l_out"], 0));
        r.layers = vec![
            group(-1, "embed", 1e-8),
            group(0, "blk0/l_out", 1e-7),
            group(1, "blk1/l_out", 1.5e-7),
            group(-1, "logits", 2e-6),
        ];
        let g = growth(&r, Some(0));
        assert_eq!(
            g.len(),
            2,
            "the groups outside the layers are no layer's growth"
        );
        assert_eq!(g[0].previous.as_deref(), Some("embed"));
        assert!((g[0].factor.unwrap() - 10.0).abs() < 1e-9);
        assert!((g[1].factor.unwrap() - 1.5).abs() < 1e-9);
        // An exact embedding: no factor, the error appears in layer 0.
        r.layers[0].error = Some(0.0);
        let g = growth(&r, Some(0));
        assert_eq!((g[0].factor, g[0].from_exact), (None, true));
        assert!(g[0].known() && !g[1].from_exact);
        // No embedding in the report: nothing to compare layer 0 against.
        r.layers.remove(0);
        let g = growth(&r, Some(0));
        assert_eq!((g[0].previous.as_deref(), g[0].known()), (None, false));
    }

    #[test]
    fn ignored_records_fill_cells_no_pair_has() {
        let pairs = decoder_pass(0, 2, &["q", "l_out"], 0);
        let mut r = report(pairs);
        let ignored = |name: &str, side, layer, stage: &str, position| IgnoredRecord {
            side,
            name: name.into(),
            occurrence: 0,
            position,
            index: None,
            seq: Some(0),
            layer: Some(layer),
            stage: Some(stage.into()),
            rule: 0,
        };
        r.ignored.rules = vec![r#"ignore "*/k""#.into()];
        r.ignored.records = vec![
            ignored("blk0/k", "a", 0, "k", 2),
            ignored("blk0/k", "b", 0, "k", 2),
            // A point that also has a pair keeps the pair.
            ignored("blk1/q", "b", 1, "q", 3),
        ];
        let map = Map::build(&r, &View::builtin()).unwrap();
        assert_eq!(row_names(&map), ["embed", "q", "k", "l_out", "logits"]);
        let k0 = map.passes[0].cells[&(2, 1)];
        assert_eq!(
            (k0.item, k0.count, k0.shade),
            (Item::Ignored(0), 2, Shade::Ignored)
        );
        let q1 = map.passes[0].cells[&(1, 2)];
        assert_eq!((q1.pair(), q1.count), (Some(3), 1));
        assert_eq!(map.passes[0].cells.len(), 7);
    }

    #[test]
    fn no_map_without_layers() {
        let r = report(vec![
            pair(0, "embed", 0, -1, 0.0),
            pair(1, "out", 0, -1, 1e-3),
        ]);
        assert_eq!(Map::build(&r, &View::builtin()), None);
    }

    #[test]
    fn missing_records_and_scales() {
        let mut pairs = decoder_pass(0, 1, &["q"], 0);
        pairs[1].only_in = Some("a");
        pairs[1].verdict = Verdict::Missing;
        pairs[1].error = None;
        let r = report(pairs);
        let map = Map::build(&r, &View::builtin()).unwrap();
        assert_eq!(map.passes[0].cells[&(1, 1)].shade, Shade::Missing);
        // Errors 2e-6 only: three decades at least, ending at the largest error's.
        assert_eq!(map.scale, Scale::Error { lo: -8, hi: -5 });
        let s = Scale::Error { lo: -8, hi: -2 };
        assert_eq!(s.position(1e-8), 0.0);
        assert_eq!(s.position(1e-5), 0.5);
        assert_eq!(s.position(1.0), 1.0);
        let s = Scale::Ratio { k: 10.0, span: 2 };
        assert_eq!(s.position(1.0), 0.5);
        assert_eq!(s.position(f64::INFINITY), 1.0);
        assert_eq!(s.position(0.0), 0.0);
    }
}
