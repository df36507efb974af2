//! The error map in the HTML report: an SVG grid per pass (rows the points of a layer in
//! execution order, columns the layers), a bar per layer for its growth, one shared legend, and
//! a detail panel a click on a cell fills.
//!
//! Hovering a cell shows its numbers (an SVG `<title>`, no script needed). Clicking one shows
//! the record's detail: its verdict, numbers and reason from its row of the records table, and
//! what the table lacks (files, shapes, element-wise metrics, statistics, the histogram of
//! `|a-b|` and the worst elements) from a JSON object embedded once (`#map-details`, see
//! `html_detail.rs`); bit-identical pairs have no entry. Cells of records the rules' ignore
//! lists left out are drawn apart (dotted violet), their hover and detail naming the rule.

use std::fmt::Write;

use super::html_detail::{details_json, ignored_title, PANEL};
use super::map::{streamed_note, Cell, Growth, Item, Map, Pass, Scale, Section, Shade};
use super::{escape, ratio_text, sci};
use crate::report::{CalibrationStatus, Report};

/// Side of a cell, in pixels (cells are 1 pixel apart).
const CELL: f64 = 14.0;
/// Pixels per character of a row label.
const CHAR: f64 = 7.0;
/// Height of the column header.
const HEAD: f64 = 16.0;
/// Height of the growth bars' plot.
const GROWTH_H: f64 = 60.0;
/// The fill of a cell of ignored records.
const IGNORED_FILL: &str = "#e7e1ef";
/// Its outline: dotted violet, apart from the dashed brown of a record on one side only.
const IGNORED_STROKE: &str = r##"stroke="#756bb1" stroke-dasharray="1 1.5""##;

pub(super) const STYLE: &str = "
#map select { font: inherit; }
.map-pass h3 { font-size: 1em; margin: 1em 0 0.3em; }
#map svg { display: block; }
svg.map rect.cell { cursor: pointer; }
#map-detail { border: 1px solid #ccc; padding: 0.5em 1em; margin-top: 1em; max-width: 70em; }
#map-detail pre { white-space: pre-wrap; margin: 0.3em 0; }
";

// Shows the chosen pass only; a click on a cell fills the detail panel from #map-details.
pub(super) const SCRIPT: &str = "
(function () {
  var select = document.getElementById('map-pass');
  if (!select) { return; }
  var passes = document.querySelectorAll('.map-pass');
  var show = function () {
    passes.forEach(function (p) { p.hidden = p.getAttribute('data-pass') !== select.value; });
  };
  select.addEventListener('change', show);
  show();
  var details = JSON.parse(document.getElementById('map-details').textContent);
  var panel = document.getElementById('map-detail');
  var table = document.getElementById('records-table');
  var heads = Array.prototype.map.call(table.tHead.rows[0].cells, function (c) {
    return c.textContent;
  });
  // An ignored record has no row: its detail is all in #map-details.
  var openIgnored = function (cell) {
    var d = details['i' + cell.getAttribute('data-i')];
    panel.querySelector('h3').textContent = cell.querySelector('title').textContent;
    panel.querySelector('pre').textContent = d.l.join('\\n');
    mapValuesDetail(panel, null, details.bins);
    panel.querySelector('button').hidden = true;
    panel.hidden = false;
  };
  // The verdict, numbers and reason come from the record's row of the records table.
  var open = function (cell) {
    if (cell.hasAttribute('data-i')) { return openIgnored(cell); }
    var i = cell.getAttribute('data-p');
    var row = document.getElementById('pair-' + i);
    var v = function (h) {
      var k = heads.indexOf(h);
      return k < 0 ? '' : row.cells[k].textContent;
    };
    var lines = ['verdict: ' + v('verdict') + ' on ' + v('evidence') + ' evidence, error ' + v('error')
      + (heads.indexOf('ratio') < 0 ? '' : ', e_A ' + v('e_A') + ', e_C ' + v('e_C') + ', ratio '
        + v('ratio') + ' (' + v('calibration') + ')')];
    if (v('reason')) { lines.push(v('reason')); }
    panel.querySelector('h3').textContent = '#' + v('#') + ' ' + v('name') + ' (step ' + v('step')
      + ', layer ' + v('layer') + ', stage ' + v('stage') + ')';
    var d = details[i];
    panel.querySelector('pre').textContent = lines.concat(d ? d.l : []).join('\\n');
    mapValuesDetail(panel, d, details.bins);
    panel.querySelector('button').hidden = false;
    panel.setAttribute('data-p', i);
    panel.hidden = false;
  };
  document.querySelectorAll('svg.map').forEach(function (svg) {
    svg.addEventListener('click', function (ev) {
      var cell = ev.target.closest('rect.cell');
      if (cell) { open(cell); }
    });
  });
  panel.querySelector('button').addEventListener('click', function () {
    var row = document.getElementById('pair-' + panel.getAttribute('data-p'));
    if (row) { row.scrollIntoView(); }
  });
})();
";

/// The map section, or nothing when the report has no layered records.
pub(super) fn map_section(out: &mut String, report: &Report, map: &Map) {
    let first = map.first_divergence_pass(report).unwrap_or(0);
    let _ = writeln!(
        out,
        r#"<section id="map"><h2>Error map: layer by point</h2>"#
    );
    let _ = writeln!(
        out,
        "<p>Rows: {}, in execution order; columns: layers, first the records outside any layer. Each cell is one record, colored by {}. Hover a cell for its numbers, click it for its detail. Under each map, the growth of each layer's output {} over the previous layer's: accumulated rounding grows smoothly, a bug jumps once.</p>",
        map.view.as_deref().unwrap_or("the stage names of A's records"),
        match map.scale {
            Scale::Error { .. } => "its error (log scale)",
            Scale::Ratio { .. } => "its ratio e_A / e_C (log scale, white at 1, the threshold K marked)",
        },
        match map.scale {
            Scale::Error { .. } => "error",
            Scale::Ratio { .. } => "ratio",
        }
    );
    if let Some(note) = streamed_note(report) {
        let _ = writeln!(out, r#"<p class="warning">{}</p>"#, escape(&note));
    }
    legend(out, map.scale);
    let _ = write!(out, r#"<p><label>pass <select id="map-pass">"#);
    for (i, pass) in map.passes.iter().enumerate() {
        let selected = if i == first {
            r#" selected="selected""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<option value="{i}"{selected}>{}</option>"#,
            escape(&map.title(pass))
        );
    }
    let _ = writeln!(out, "</select></label></p>");
    let first_pair = report.first_divergence_pair().map(|p| p.position);
    for (i, pass) in map.passes.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<div class="map-pass" data-pass="{i}"><h3>{}</h3>"#,
            escape(&map.title(pass))
        );
        grid(out, report, map, pass, first_pair);
        growth(out, map, pass);
        let _ = writeln!(out, "</div>");
    }
    let _ = writeln!(
        out,
        r#"<div id="map-detail" hidden="hidden"><h3></h3><pre></pre>{PANEL}<button type="button">show in the records table</button></div>"#
    );
    let _ = writeln!(
        out,
        r#"<script type="application/json" id="map-details">{}</script></section>"#,
        details_json(report, map)
    );
}

/// The x of column `c` and the y of row `r`, after the labels and the header.
fn origin(map: &Map) -> (f64, f64) {
    let label = map.rows.iter().map(|r| r.name.len()).max().unwrap_or(4) as f64;
    (label * CHAR + 8.0, HEAD)
}

fn grid(out: &mut String, report: &Report, map: &Map, pass: &Pass, first_pair: Option<u64>) {
    let (x0, y0) = origin(map);
    let w = x0 + (map.layers.len() + 1) as f64 * (CELL + 1.0) + 4.0;
    let h = y0 + map.rows.len() as f64 * (CELL + 1.0) + 4.0;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="map" width="{w}" height="{h}" viewBox="0 0 {w} {h}" data-cells="{}">"#,
        pass.cells.len()
    );
    let cx = |c: usize| x0 + c as f64 * (CELL + 1.0);
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">-</text>"#,
        cx(0) + CELL / 2.0,
        HEAD - 4.0
    );
    for (i, layer) in map.layers.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="9">{layer}</text>"#,
            cx(i + 1) + CELL / 2.0,
            HEAD - 4.0
        );
    }
    for (r, row) in map.rows.iter().enumerate() {
        let y = y0 + r as f64 * (CELL + 1.0);
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 4.0,
            y + CELL - 3.0,
            escape(&row.name)
        );
        if row.section != Section::Layer {
            // A faint band marks the column of the records outside the layers.
            let _ = write!(
                out,
                r##"<rect x="{:.1}" y="{y:.1}" width="{CELL}" height="{CELL}" fill="#f4f4f4"/>"##,
                cx(0)
            );
        }
    }
    let _ = writeln!(out);
    let mut cells: Vec<(&(usize, usize), &Cell)> = pass.cells.iter().collect();
    cells.sort_by_key(|(at, _)| **at);
    for ((r, c), cell) in cells {
        let first = first_pair.is_some_and(|f| {
            cell.pair().is_some_and(|i| {
                let p = &report.pairs[i];
                p.position == f && p.only_in != Some("b")
            })
        });
        cell_rect(
            out,
            report,
            map.scale,
            cell,
            (cx(*c), y0 + *r as f64 * (CELL + 1.0)),
            first,
        );
    }
    let _ = writeln!(out, "</svg>");
}

/// One cell: its color, outline and hover text.
fn cell_rect(
    out: &mut String,
    report: &Report,
    scale: Scale,
    cell: &Cell,
    (x, y): (f64, f64),
    first: bool,
) {
    let i = match cell.item {
        Item::Pair(i) => i,
        Item::Ignored(k) => {
            let _ = writeln!(
                out,
                r##"<rect class="cell ignored" data-i="{k}" x="{x:.1}" y="{y:.1}" width="{CELL}" height="{CELL}" fill="{IGNORED_FILL}" {IGNORED_STROKE}><title>{}</title></rect>"##,
                ignored_title(report, k, cell.count)
            );
            return;
        }
    };
    let p = &report.pairs[i];
    let (fill, extra) = match cell.shade {
        Shade::Identical => ("#d9f0d3".to_owned(), ""),
        Shade::Unknown => ("#bdbdbd".to_owned(), ""),
        Shade::Missing => (
            "#ffffff".to_owned(),
            r##" stroke="#9a6700" stroke-dasharray="2 2""##,
        ),
        Shade::Value(v) => (color(scale, scale.position(v)), ""),
        Shade::Ignored => unreachable!("a cell of ignored records is drawn above"),
    };
    let (class, stroke) = if first {
        (
            "cell first-divergence",
            r##" stroke="#000" stroke-width="3""##,
        )
    } else if p.verdict.is_divergence() {
        ("cell diverged", r##" stroke="#000" stroke-width="1""##)
    } else {
        ("cell", extra)
    };
    let more = if cell.count > 1 {
        format!(" ({} records here, the worst shown)", cell.count)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        r#"<rect class="{class}" data-p="{i}" x="{x:.1}" y="{y:.1}" width="{CELL}" height="{CELL}" fill="{fill}"{stroke}><title>{}</title></rect>"#,
        escape(&format!(
            "#{} {}: {}{more}",
            p.position,
            p.display_name(),
            numbers(p)
        )),
    );
}

/// A pair's verdict and numbers in one line, for the hover text.
fn numbers(p: &crate::Pair) -> String {
    let mut s = p.verdict.name().to_owned();
    if let Some(e) = p.error {
        let _ = write!(s, ", error {}", sci(Some(e)));
    }
    if let Some(c) = p
        .calibration
        .as_ref()
        .filter(|c| c.status == CalibrationStatus::Calibrated)
    {
        let _ = write!(
            s,
            ", e_A {}, e_C {}, ratio {}",
            sci(c.e_a),
            sci(c.e_c),
            ratio_text(c.ratio)
        );
    }
    if let Some(m) = &p.values {
        let _ = write!(s, ", max |a-b| {}", sci(Some(m.max_abs)));
    }
    s
}

/// The growth bars of a pass, under the layer columns: up for growth, down for shrinkage, on
/// a log scale of 3 decades each way; the dashed line is x10. A layer whose previous output is
/// exact gets a hatched bar: its error has no finite factor, it starts there.
fn growth(out: &mut String, map: &Map, pass: &Pass) {
    if !pass.growth.iter().any(Growth::known) {
        return;
    }
    let (x0, _) = origin(map);
    let w = x0 + (map.layers.len() + 1) as f64 * (CELL + 1.0) + 4.0;
    let mid = GROWTH_H / 2.0;
    let per_decade = mid / 3.0;
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="growth" width="{w}" height="{GROWTH_H}" viewBox="0 0 {w} {GROWTH_H}"><text x="{:.1}" y="{:.1}" text-anchor="end">growth</text><line x1="{x0}" x2="{w}" y1="{mid}" y2="{mid}" stroke="#999"/><line x1="{x0}" x2="{w}" y1="{:.1}" y2="{:.1}" stroke="#ccc" stroke-dasharray="3 2"/>"##,
        x0 - 4.0,
        mid + 4.0,
        mid - per_decade,
        mid - per_decade
    );
    for g in &pass.growth {
        let Ok(i) = map.layers.binary_search(&g.layer) else {
            continue;
        };
        let x = x0 + (i + 1) as f64 * (CELL + 1.0);
        let over = g.previous.as_deref().map_or_else(
            || "the previous layer's".to_owned(),
            |p| format!("the previous output's ({})", escape(p)),
        );
        if g.from_exact {
            // No finite factor: a hatched bar the full height up, "the error starts here".
            let _ = writeln!(
                out,
                r##"<rect class="growth-bar from-exact" x="{x:.1}" y="0" width="{CELL}" height="{mid:.1}" fill="#fbe3e3" stroke="#c62828" stroke-dasharray="2 2"><title>layer {}: {} {}, the error appears here: {over} is exact</title></rect>"##,
                g.layer,
                escape(&g.output),
                sci(g.value),
            );
            continue;
        }
        let Some(f) = g.factor else {
            continue;
        };
        let l = f.log10().clamp(-3.0, 3.0);
        let hgt = (l.abs() * per_decade).max(1.0);
        let y = if l >= 0.0 { mid - hgt } else { mid };
        let fill = match f {
            f if f >= 10.0 => "#c62828",
            f if f >= 2.0 => "#ee8a00",
            _ => "#8a8a8a",
        };
        let _ = writeln!(
            out,
            r#"<rect class="growth-bar" x="{x:.1}" y="{y:.1}" width="{CELL}" height="{hgt:.1}" fill="{fill}"><title>layer {}: {} {}, x{} {over}</title></rect>"#,
            g.layer,
            escape(&g.output),
            sci(g.value),
            ratio_text(Some(f)),
        );
    }
    let _ = writeln!(out, "</svg>");
}

/// The color bar with its ticks (and K), and the swatches of the other cell kinds.
fn legend(out: &mut String, scale: Scale) {
    const STEPS: usize = 60;
    const BAR_W: f64 = 300.0;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="map-legend" width="1080" height="52" viewBox="0 0 1080 52">"#
    );
    for i in 0..STEPS {
        let t = (i as f64 + 0.5) / STEPS as f64;
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="4" width="{:.1}" height="14" fill="{}"/>"#,
            10.0 + BAR_W * i as f64 / STEPS as f64,
            BAR_W / STEPS as f64 + 0.5,
            color(scale, t)
        );
    }
    // Decade ticks, at most 7 labelled; K's label goes under the others.
    let tick = |out: &mut String, t: f64, label: &str, strong: bool| {
        let x = 10.0 + BAR_W * t;
        let (stroke, width, y) = if strong {
            ("#000", 2, 46)
        } else {
            ("#555", 1, 34)
        };
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="2" y2="22" stroke="{stroke}" stroke-width="{width}"/><text x="{x:.1}" y="{y}" text-anchor="middle">{}</text>"#,
            escape(label)
        );
    };
    let (lo, hi) = match scale {
        Scale::Error { lo, hi } => (lo, hi),
        Scale::Ratio { span, .. } => (-span, span),
    };
    let every = ((hi - lo) as usize).div_ceil(6).max(1);
    for d in (lo..=hi).filter(|d| d.rem_euclid(every as i32) == 0) {
        tick(out, scale.position(10f64.powi(d)), &format!("1e{d}"), false);
    }
    if let Scale::Ratio { k, .. } = scale {
        tick(out, scale.position(k), &format!("K = {k}"), true);
    }
    let swatches: [(&str, &str, &str); 7] = [
        ("#d9f0d3", r##"stroke="none""##, "identical"),
        ("#bdbdbd", r##"stroke="none""##, "no number"),
        (
            "#ffffff",
            r##"stroke="#9a6700" stroke-dasharray="2 2""##,
            "one side only",
        ),
        ("#fed976", r##"stroke="#000" stroke-width="1""##, "diverged"),
        (
            "#fed976",
            r##"stroke="#000" stroke-width="3""##,
            "first divergence",
        ),
        (IGNORED_FILL, IGNORED_STROKE, "ignored (rules)"),
        ("none", r##"stroke="#ddd""##, "no record"),
    ];
    for (i, (fill, stroke, label)) in swatches.iter().enumerate() {
        let x = 340.0 + 104.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="4" width="{CELL}" height="{CELL}" fill="{fill}" {stroke}/><text x="{}" y="15">{label}</text>"#,
            x + CELL + 4.0
        );
    }
    let _ = writeln!(out, "</svg>");
}

/// The color at position `t` (0 best, 1 worst) of `scale`: yellow to dark red for the error;
/// blue, white at 1, red for the ratio.
fn color(scale: Scale, t: f64) -> String {
    const ERROR: [(f64, [u8; 3]); 5] = [
        (0.0, [0xff, 0xff, 0xcc]),
        (0.25, [0xfe, 0xd9, 0x76]),
        (0.5, [0xfd, 0x8d, 0x3c]),
        (0.75, [0xe3, 0x1a, 0x1c]),
        (1.0, [0x80, 0x00, 0x26]),
    ];
    const RATIO: [(f64, [u8; 3]); 5] = [
        (0.0, [0x21, 0x66, 0xac]),
        (0.3, [0x92, 0xc5, 0xde]),
        (0.5, [0xf7, 0xf7, 0xf7]),
        (0.7, [0xf4, 0xa5, 0x82]),
        (1.0, [0xb2, 0x18, 0x2b]),
    ];
    let stops = match scale {
        Scale::Error { .. } => &ERROR,
        Scale::Ratio { .. } => &RATIO,
    };
    let t = t.clamp(0.0, 1.0);
    let i = stops
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(stops.len() - 2);
    let ((t0, c0), (t1, c1)) = (stops[i], stops[i + 1]);
    let f = (t - t0) / (t1 - t0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(c0[0], c1[0]),
        mix(c0[1], c1[1]),
        mix(c0[2], c1[2])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_run_from_one_end_to_the_other() {
        let error = Scale::Error { lo: -9, hi: 0 };
        assert_eq!(color(error, 0.0), "#ffffcc");
        assert_eq!(color(error, 1.0), "#800026");
        assert_eq!(color(error, 2.0), "#800026");
        assert_eq!(color(error, 0.5), "#fd8d3c");
        let ratio = Scale::Ratio { k: 10.0, span: 2 };
        assert_eq!(color(ratio, ratio.position(1.0)), "#f7f7f7");
        assert_eq!(color(ratio, 0.0), "#2166ac");
    }
}
