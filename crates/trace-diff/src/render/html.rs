//! One self-contained HTML page: summary, first divergence, the layer-by-point error map
//! (`html_map.rs`), error-profile plot (inline SVG), sortable table. No external assets; the
//! markup is also well-formed XML so tools can parse it.
//!
//! Opened with the fragment `#selftest`, the page tests itself in the browser (a header click
//! sorts the records table; the plot holds its lines; the error map holds its cells and a click
//! on the first divergence opens its detail) and writes the result into
//! `<pre id="selftest-result">`; `tests/it/browser.rs` runs it in headless Chromium.

use std::fmt::Write;

use super::map::{Map, View};
use super::{context, escape, ratio_text, sci};
use super::{html_detail, html_map};
use crate::report::{CalibrationStatus, Outcome, Pair, Report};

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
td.num { text-align: right; font-family: monospace; }
.identical { color: #1a7f37; } .within_tolerance { color: #4d7f1a; }
.diverged, .incompatible { color: #c62828; font-weight: bold; } .missing { color: #9a6700; }
.agree { color: #1a7f37; } .outcome-diverged { color: #c62828; }
.warning { color: #9a6700; }
svg text { font-size: 11px; font-family: sans-serif; }
#selftest-result { font-family: monospace; }
";

// Sorts the table whose header cell was clicked; numbers by their data-v attribute.
const SCRIPT: &str = "
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute('data-asc') !== 'true';
    th.setAttribute('data-asc', asc);
    rows.sort(function (r1, r2) {
      var a = r1.cells[col], b = r2.cells[col];
      var x = a.getAttribute('data-v'), y = b.getAttribute('data-v');
      var c = (x !== null) ? (parseFloat(x) - parseFloat(y)) : a.textContent.localeCompare(b.textContent);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
";

// With #selftest in the URL: click a numeric header of the records table (the ratio when the
// report is calibrated, else the error) twice, check both orders, count the plot's lines
// against its data-lines attribute and its legend entries, count the error map's cells against
// their data-cells attributes, check that one pass (the first divergence's) is shown, click the
// first divergence's cell and check the detail it opens (with values: its histogram's bars and
// worst elements' rows), click an ignored cell if any and check its detail names the rule, and
// write the verdict into
// <pre id="selftest-result"> (read back by a headless browser's --dump-dom).
const SELFTEST: &str = "
(function () {
  if (location.hash !== '#selftest') { return; }
  var problems = [], summary = '';
  try {
    var table = document.getElementById('records-table');
    var heads = table.tHead.rows[0].cells, col = -1, i;
    for (i = 0; i < heads.length; i++) { if (heads[i].textContent === 'ratio') { col = i; } }
    for (i = 0; col < 0 && i < heads.length; i++) { if (heads[i].textContent === 'error') { col = i; } }
    var values = function () {
      return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
        return parseFloat(r.cells[col].getAttribute('data-v'));
      });
    };
    var sorted = function (v, asc) {
      for (var j = 1; j < v.length; j++) {
        if (asc ? v[j - 1] > v[j] : v[j - 1] < v[j]) { return false; }
      }
      return true;
    };
    var click = function () {
      heads[col].dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true }));
    };
    click();
    var up = values();
    if (!sorted(up, true)) { problems.push('not ascending after one click: ' + up.join(',')); }
    click();
    var down = values();
    if (!sorted(down, false)) { problems.push('not descending after two clicks: ' + down.join(',')); }
    if (up.length < 2 || up[0] === up[up.length - 1]) { problems.push('nothing to sort in column ' + heads[col].textContent); }
    var svg = document.querySelector('#profile svg');
    var lines = svg.querySelectorAll('polyline').length;
    var expected = parseInt(svg.getAttribute('data-lines'), 10);
    var legend = svg.querySelectorAll('.legend text').length;
    if (lines !== expected) { problems.push(lines + ' plot lines, expected ' + expected); }
    if (legend !== expected) { problems.push(legend + ' legend entries, expected ' + expected); }
    summary = 'sorted ' + up.length + ' rows by ' + heads[col].textContent + ' both ways; ' + lines + ' plot lines';
    var maps = document.querySelectorAll('svg.map'), cells = 0, expected_cells = 0;
    maps.forEach(function (m) {
      cells += m.querySelectorAll('rect.cell').length;
      expected_cells += parseInt(m.getAttribute('data-cells'), 10);
    });
    if (maps.length === 0) { problems.push('no error map'); }
    if (cells !== expected_cells) { problems.push(cells + ' map cells, expected ' + expected_cells); }
    var shown = Array.prototype.filter.call(document.querySelectorAll('.map-pass'), function (p) {
      return !p.hidden;
    });
    if (shown.length !== 1) { problems.push(shown.length + ' passes shown, expected 1'); }
    var cell = document.querySelector('svg.map rect.first-divergence'), opened = '';
    var detail = document.getElementById('map-detail');
    if (!cell) {
      problems.push('no first divergence in the map');
    } else {
      if (cell.closest('.map-pass').hidden) { problems.push('the pass shown is not the one of the first divergence'); }
      cell.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true }));
      opened = detail.querySelector('h3').textContent;
      var name = document.querySelector('#first-divergence strong').textContent;
      if (detail.hidden) { problems.push('a click on the first divergence opened no detail'); }
      if (opened.indexOf(name + ' (') !== 0) { problems.push('detail of ' + opened + ', expected ' + name); }
      if (detail.querySelector('pre').textContent.indexOf('verdict: diverged') < 0) {
        problems.push('the detail has no verdict: ' + detail.querySelector('pre').textContent);
      }
      var data = JSON.parse(document.getElementById('map-details').textContent);
      var entry = data[cell.getAttribute('data-p')];
      if (entry && entry.h) {
        var bars = detail.querySelectorAll('.map-hist rect.hist-bar').length;
        var worst = detail.querySelectorAll('table.map-worst tr').length - 1;
        if (detail.querySelector('.map-hist').hidden || bars !== data.bins.length) {
          problems.push(bars + ' histogram bars shown, expected ' + data.bins.length);
        }
        if (detail.querySelector('table.map-worst').hidden || worst !== entry.w.length || worst < 1) {
          problems.push(worst + ' worst elements shown, expected ' + entry.w.length);
        }
        opened += ' with a histogram of ' + bars + ' bins and ' + worst + ' worst elements';
      }
    }
    var ignored = document.querySelector('svg.map rect.cell.ignored');
    if (ignored) {
      ignored.dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true }));
      var text = detail.querySelector('pre').textContent;
      if (detail.hidden || text.indexOf('left out by the rules') < 0) { problems.push('an ignored cell opened ' + text); }
      if (!detail.querySelector('.map-hist').hidden) { problems.push('an ignored cell shows a histogram'); }
      opened += '; ignored cell opened: ' + detail.querySelector('h3').textContent;
    }
    summary += '; map of ' + cells + ' cells in ' + maps.length + ' passes, '
      + document.querySelectorAll('svg.growth rect.growth-bar').length + ' growth bars; detail opened for ' + opened;
  } catch (e) {
    problems.push('exception: ' + e);
  }
  var out = document.createElement('pre');
  out.id = 'selftest-result';
  out.textContent = problems.length ? 'selftest FAIL: ' + problems.join('; ') : 'selftest ok: ' + summary;
  document.body.appendChild(out);
})();
";

/// The report as one HTML page.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!DOCTYPE html>");
    let _ = writeln!(out, r#"<html lang="en"><head><meta charset="utf-8"/>"#);
    let _ = writeln!(out, "<title>trace-diff: {}</title>", escape(&report.a.dir));
    let _ = writeln!(
        out,
        "<style>{STYLE}{}{}</style></head><body>",
        html_map::STYLE,
        html_detail::STYLE
    );
    let _ = writeln!(out, "<h1>trace-diff</h1>");
    summary(&mut out, report);
    first_divergence(&mut out, report);
    if let Some(map) = Map::build(report, &View::builtin()) {
        html_map::map_section(&mut out, report, &map);
    }
    profile_svg(&mut out, report);
    table(&mut out, report);
    layers(&mut out, report);
    let _ = writeln!(
        out,
        "<script>//<![CDATA[{SCRIPT}{}{}{SELFTEST}//]]></script>",
        html_detail::SCRIPT,
        html_map::SCRIPT
    );
    let _ = writeln!(out, "</body></html>");
    out
}

fn summary(out: &mut String, report: &Report) {
    let c = &report.counts;
    let (class, word) = match report.outcome {
        Outcome::Agree => ("agree", "agree"),
        Outcome::Diverged => ("outcome-diverged", "diverged"),
        Outcome::Incomplete => ("outcome-diverged", "incomplete"),
    };
    let _ = writeln!(out, r#"<section id="summary"><h2>Summary</h2>"#);
    let _ = writeln!(
        out,
        r#"<p>Result: <strong class="{class}">{word}</strong> (exit {})</p>"#,
        report.outcome.exit_code()
    );
    let _ = writeln!(out, "<table><tbody>");
    for (label, info) in [("A (under test)", &report.a), ("B (reference)", &report.b)] {
        let _ = writeln!(
            out,
            "<tr><th>{label}</th><td>{} ({} order{}, {} records, {} ignored)</td></tr>",
            escape(&info.dir),
            info.order,
            if info.execution_order_known {
                ""
            } else {
                ": execution order unknown"
            },
            info.records,
            info.ignored
        );
    }
    if let Some(cal) = &report.calibration {
        let info = &cal.baseline;
        let _ = writeln!(
            out,
            "<tr><th>C (baseline)</th><td>{} ({} order, {} records, {} ignored)</td></tr>",
            escape(&info.dir),
            info.order,
            info.records,
            info.ignored
        );
    }
    if let Some(v) = &report.views {
        let mut sides = vec![("A", &v.a), ("B", &v.b)];
        sides.extend(v.c.as_ref().map(|c| ("baseline", c)));
        for (side, choice) in sides {
            let _ = writeln!(
                out,
                "<tr><th>view {side}</th><td>{} ({})</td></tr>",
                escape(&choice.view),
                escape(&choice.how)
            );
        }
    }
    if let Some(rules) = &report.rules {
        let _ = writeln!(out, "<tr><th>rules</th><td>{}</td></tr>", escape(rules));
    }
    if let Some(ranks) = &report.ranks {
        let world =
            |w: Option<u32>| w.map_or("single process".to_owned(), |n| format!("{n} ranks"));
        let at = if ranks.first_divergence_ranks.is_empty() {
            "unknown".to_owned()
        } else {
            let list: Vec<String> = ranks
                .first_divergence_ranks
                .iter()
                .map(u32::to_string)
                .collect();
            list.join(", ")
        };
        let _ = writeln!(
            out,
            "<tr><th>ranks</th><td>{} (A: {}, B: {}); at the first divergence: {} {}</td></tr>",
            ranks.mode,
            world(ranks.world_size_a),
            world(ranks.world_size_b),
            escape(&at),
            escape(ranks.attribution.as_deref().unwrap_or("")),
        );
    }
    for (label, n) in [
        ("compared", c.compared),
        ("identical", c.identical),
        ("within tolerance", c.within_tolerance),
        ("diverged", c.diverged),
        ("incompatible", c.incompatible),
        ("missing in B", c.missing_in_b),
        ("missing in A", c.missing_in_a),
    ] {
        let _ = writeln!(out, r#"<tr><th>{label}</th><td class="num">{n}</td></tr>"#);
    }
    if let Some(cal) = &report.calibration {
        for (label, value) in [
            ("max ratio", cal.max_ratio.to_string()),
            ("calibrated", cal.calibrated.to_string()),
            ("calibrated, diverged", cal.diverged.to_string()),
            ("ratio median", ratio_text(cal.ratio_median)),
            ("ratio max", ratio_text(cal.ratio_max)),
            ("without a baseline record", cal.missing.to_string()),
            ("baseline unusable", cal.unusable.to_string()),
            (
                "baseline records unused",
                cal.unused_baseline_records.to_string(),
            ),
        ] {
            let _ = writeln!(
                out,
                r#"<tr><th>{label}</th><td class="num">{value}</td></tr>"#
            );
        }
    }
    let _ = writeln!(out, "</tbody></table>");
    if !report.warnings.is_empty() {
        let _ = writeln!(out, r#"<ul class="warnings">"#);
        for w in &report.warnings {
            let side = w.side.map(|s| format!("[{s}] ")).unwrap_or_default();
            let _ = writeln!(
                out,
                r#"<li class="warning">{}{}</li>"#,
                side,
                escape(&w.message)
            );
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = writeln!(out, "</section>");
}

fn first_divergence(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        r#"<section id="first-divergence"><h2>First divergence</h2>"#
    );
    match (&report.first_divergence, report.first_divergence_pair()) {
        (Some(f), Some(p)) => {
            let _ = writeln!(
                out,
                r#"<p><strong class="{}">#{} {}</strong> ({})</p><ul>"#,
                p.verdict.name(),
                p.position,
                escape(&f.name),
                escape(&context(p))
            );
            let mut item = |s: String| {
                let _ = writeln!(out, "<li>{}</li>", escape(&s));
            };
            if let Some(b) = p.name_b.as_ref().filter(|b| p.name_a.as_ref() != Some(*b)) {
                item(format!("B name: {b}"));
            }
            item(format!(
                "verdict {} on {} evidence",
                p.verdict.name(),
                p.evidence.name()
            ));
            let calibrated = p
                .calibration
                .as_ref()
                .is_some_and(|c| c.status == CalibrationStatus::Calibrated);
            match (&p.tolerance, &report.calibration) {
                (_, Some(summary)) if calibrated => {
                    item(format!("calibrated: ratio at most {}", summary.max_ratio))
                }
                (Some(t), _) => item(format!(
                    "atol {:e}, rtol {:e}{} ({})",
                    t.atol,
                    t.rtol,
                    super::text::scale_text(p),
                    t.source
                )),
                (None, _) => {}
            }
            if let Some(r) = &p.reason {
                item(r.clone());
            }
            if let Some(cal) = &p.calibration {
                item(format!(
                    "calibration status {}: e_A {}, e_C {}, floor {}, ratio {}",
                    cal.status.name(),
                    sci(cal.e_a),
                    sci(cal.e_c),
                    sci(cal.floor),
                    ratio_text(cal.ratio)
                ));
            }
            item(match &f.last_agreeing {
                Some(n) => format!("last agreeing record before it: {n}"),
                None => "no record agreed before it".to_owned(),
            });
            item(format!(
                "{} more diverged records after it; largest error from here on {}",
                f.diverged_after,
                sci(f.max_error_after)
            ));
            if !f.execution_order_known {
                item("A has no manifest: the order is the seed rule, not execution order".into());
            }
            let _ = writeln!(out, "</ul>");
        }
        _ => {
            let _ = writeln!(
                out,
                "<p>None: every matched record is identical or within tolerance.</p>"
            );
        }
    }
    let _ = writeln!(out, "</section>");
}

/// ` stroke-dasharray="..."`, or nothing for a solid line.
fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

/// The engine's error at a matched pair: the calibration's `e_A` when calibrated (the same
/// measure as the baseline's line), else the error-profile value.
fn engine_error(p: &Pair) -> Option<f64> {
    match &p.calibration {
        Some(c) if c.status == CalibrationStatus::Calibrated => c.e_a,
        _ => p.error,
    }
}

/// The baseline's error at a matched pair, when calibrated.
fn baseline_error(p: &Pair) -> Option<f64> {
    p.calibration
        .as_ref()
        .filter(|c| c.status == CalibrationStatus::Calibrated)
        .and_then(|c| c.e_c)
}

/// A line of the error profile: its points, CSS class, color, dash pattern and legend label.
struct Line<'r> {
    points: Vec<(&'r Pair, f64)>,
    class: &'static str,
    color: &'static str,
    dash: &'static str,
    label: &'static str,
}

/// The profile plot's frame: its size, margins and axes.
struct Frame {
    /// Positions on the x axis (A's records).
    n: u64,
    /// Decades of the y axis.
    lo: f64,
    hi: f64,
}

impl Frame {
    const W: f64 = 900.0;
    /// The plot area's height; the legend sits under it, off the data.
    const H: f64 = 260.0;
    const L: f64 = 60.0;
    const R: f64 = 10.0;
    const T: f64 = 10.0;
    const B: f64 = 30.0;
    const LEGEND: f64 = 24.0;

    fn x(&self, pos: u64) -> f64 {
        Self::L + (Self::W - Self::L - Self::R) * (pos as f64 + 0.5) / self.n as f64
    }

    fn y(&self, e: f64) -> f64 {
        Self::T + (Self::H - Self::T - Self::B) * (self.hi - e.log10()) / (self.hi - self.lo)
    }
}

/// The profile's lines: the engine's error and, calibrated, the baseline's; empty ones left out.
fn profile_lines(report: &Report) -> Vec<Line<'_>> {
    const FLOOR: f64 = 1e-12;
    let series = |f: fn(&Pair) -> Option<f64>| -> Vec<(&Pair, f64)> {
        report
            .pairs
            .iter()
            .filter(|p| p.only_in.is_none())
            .filter_map(|p| f(p).filter(|e| e.is_finite()).map(|e| (p, e.max(FLOOR))))
            .collect()
    };
    let calibrated = report.calibration.is_some();
    let mut lines = vec![Line {
        points: series(engine_error),
        class: "engine",
        color: "#5470c6",
        dash: "",
        label: if calibrated {
            "engine: e_A (A vs B)"
        } else {
            "error (A vs B)"
        },
    }];
    if calibrated {
        lines.push(Line {
            points: series(baseline_error),
            class: "baseline",
            color: "#ee8a00",
            dash: "5 3",
            label: "baseline: e_C (C vs B)",
        });
    }
    lines.retain(|l| !l.points.is_empty());
    lines
}

fn profile_svg(out: &mut String, report: &Report) {
    let lines = profile_lines(report);
    // Points sit at their position in A's order, which counts A's unmatched records too.
    let n = report
        .pairs
        .iter()
        .filter(|p| p.only_in != Some("b"))
        .map(|p| p.position + 1)
        .max()
        .unwrap_or(1);
    let logs = || lines.iter().flat_map(|l| &l.points).map(|(_, e)| e.log10());
    let lo = logs().fold(f64::INFINITY, f64::min).min(-8.0).floor();
    let hi = logs()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(lo + 1.0)
        .ceil();
    let frame = Frame { n, lo, hi };
    let (w, h) = (Frame::W, Frame::H + Frame::LEGEND);
    let _ = writeln!(
        out,
        r#"<section id="profile"><h2>Error profile along A's execution order</h2>"#
    );
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" data-lines="{}"><title>error (log scale) by position in A</title>"#,
        lines.len()
    );
    axes(out, &frame, report);
    for line in &lines {
        let path: Vec<String> = line
            .points
            .iter()
            .map(|(p, e)| format!("{:.1},{:.1}", frame.x(p.position), frame.y(*e)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline class="{}" fill="none" stroke="{}" stroke-width="1"{} points="{}"/>"#,
            line.class,
            line.color,
            dash_attr(line.dash),
            path.join(" ")
        );
    }
    points(out, &frame, &lines);
    profile_legend(out, &lines);
    let _ = writeln!(out, "</svg>");
    let _ = writeln!(
        out,
        "<p>Error: relative L2 with raw values, else {}; 0 is drawn at 1e-12. Red: diverged or incompatible; dashed red line: first divergence.{}</p></section>",
        if report.calibration.is_some() {
            "a statistics-based lower bound of it (calibrated pairs) or the relative RMS delta"
        } else {
            "relative RMS delta"
        },
        if report.calibration.is_some() {
            " The engine's error should stay within max ratio times the baseline's."
        } else {
            ""
        }
    );
}

/// The frame, the decade grid, the x axis' label and the first divergence's marker.
fn axes(out: &mut String, frame: &Frame, report: &Report) {
    let (l, r, t, b) = (Frame::L, Frame::R, Frame::T, Frame::B);
    let (w, h) = (Frame::W, Frame::H);
    let _ = writeln!(
        out,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        w - l - r,
        h - t - b
    );
    let mut decade = frame.lo as i64;
    while decade as f64 <= frame.hi {
        let yy = frame.y(10f64.powi(decade as i32));
        let _ = writeln!(
            out,
            r##"<line x1="{l}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">1e{decade}</text>"##,
            w - r,
            l - 4.0,
            yy + 4.0
        );
        decade += 1;
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">position in A (capture order)</text>"#,
        (l + w - r) / 2.0,
        h - 8.0
    );
    if let Some(f) = &report.first_divergence {
        let xx = frame.x(f.pair);
        let _ = writeln!(
            out,
            r##"<line class="first-divergence" x1="{xx:.1}" x2="{xx:.1}" y1="{t}" y2="{}" stroke="#c62828" stroke-dasharray="4 3"/>"##,
            h - b
        );
    }
}

/// The points of each line, with their hover text; the engine's red where it diverged.
fn points(out: &mut String, frame: &Frame, lines: &[Line<'_>]) {
    for line in lines.iter().rev() {
        for (p, e) in &line.points {
            let (color, r, what) = match line.class {
                "baseline" => (line.color, 1.5, "e_C"),
                _ if p.verdict.is_divergence() => ("#c62828", 2.5, "error"),
                _ => (line.color, 2.5, "error"),
            };
            let ratio = match line.class {
                "baseline" => String::new(),
                _ => p
                    .calibration
                    .as_ref()
                    .and_then(|c| c.ratio)
                    .map(|r| format!(", ratio {}", sci(Some(r))))
                    .unwrap_or_default(),
            };
            let _ = writeln!(
                out,
                r#"<circle class="{}" cx="{:.1}" cy="{:.1}" r="{r}" fill="{color}"><title>#{} {}: {what} {}{ratio}</title></circle>"#,
                line.class,
                frame.x(p.position),
                frame.y(*e),
                p.position,
                escape(p.display_name()),
                sci(Some(*e))
            );
        }
    }
}

/// The legend, in a row under the plot area (not over the data).
fn profile_legend(out: &mut String, lines: &[Line<'_>]) {
    let _ = writeln!(out, r#"<g class="legend">"#);
    let y = Frame::H + Frame::LEGEND / 2.0;
    for (i, line) in lines.iter().enumerate() {
        let x = Frame::L + 240.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{}" stroke-width="2"{}/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            line.color,
            dash_attr(line.dash),
            x + 30.0,
            y + 4.0,
            escape(line.label)
        );
    }
    let _ = writeln!(out, "</g>");
}

fn table(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        r#"<section id="records"><h2>Records</h2><table id="records-table" class="sortable"><thead><tr>"#
    );
    for h in [
        "#",
        "name",
        "B name",
        "step",
        "layer",
        "stage",
        "verdict",
        "evidence",
        "error",
        "max |a-b|",
    ] {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    let calibrated = report.calibration.is_some();
    if calibrated {
        for h in ["e_A", "e_C", "ratio", "calibration"] {
            let _ = write!(out, "<th>{h}</th>");
        }
    }
    let _ = write!(out, "<th>reason</th>");
    let _ = writeln!(out, "</tr></thead><tbody>");
    for (i, p) in report.pairs.iter().enumerate() {
        let int = |v: Option<i64>| match v {
            Some(v) => format!(r#"<td class="num" data-v="{v}">{v}</td>"#),
            None => r#"<td class="num" data-v="-1000000">-</td>"#.to_owned(),
        };
        let pos = match p.only_in {
            Some("b") => format!(
                r#"<td class="num" data-v="{}">B{}</td>"#,
                1e12 + p.position as f64,
                p.position
            ),
            _ => format!(r#"<td class="num" data-v="{0}">{0}</td>"#, p.position),
        };
        let verdict_rank = p.verdict as u8;
        let _ = writeln!(
            out,
            r#"<tr id="pair-{i}">{pos}<td>{}</td><td>{}</td>{}{}<td>{}</td><td class="{v}" data-v="{verdict_rank}">{v}</td><td>{}</td>{}{}{}<td>{}</td></tr>"#,
            escape(p.name_a.as_deref().unwrap_or("-")),
            escape(p.name_b.as_deref().unwrap_or("-")),
            int(p.seq.map(|s| s as i64)),
            int(p.layer),
            escape(p.stage.as_deref().unwrap_or("")),
            p.evidence.name(),
            num_cell(p.error),
            num_cell(p.values.as_ref().map(|m| m.max_abs)),
            if calibrated {
                calibration_cells(p)
            } else {
                String::new()
            },
            escape(p.reason.as_deref().unwrap_or("")),
            v = p.verdict.name(),
        );
    }
    let _ = writeln!(out, "</tbody></table></section>");
}

fn layers(out: &mut String, report: &Report) {
    if report.layers.is_empty() {
        return;
    }
    let calibrated = report.calibration.is_some();
    let _ = writeln!(
        out,
        r#"<section id="layers"><h2>Error by layer</h2><table id="layers-table" class="sortable"><thead><tr><th>step</th><th>layer</th><th>output</th><th>error</th><th>max error</th><th>amplification</th>{}</tr></thead><tbody>"#,
        if calibrated {
            "<th>e_C</th><th>ratio</th>"
        } else {
            ""
        }
    );
    for l in &report.layers {
        let _ = writeln!(
            out,
            r#"<tr><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td><td>{}</td>{}{}{}{}</tr>"#,
            l.seq.map_or(-1, |s| s as i64),
            l.seq.map_or("-".to_owned(), |s| s.to_string()),
            l.layer,
            l.layer,
            escape(&l.output),
            num_cell(l.error),
            num_cell(l.max_error),
            num_cell(l.amplification),
            if calibrated {
                format!("{}{}", num_cell(l.baseline_error), num_cell(l.ratio))
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(out, "</tbody></table></section>");
}

/// The e_A, e_C, ratio and status cells of a calibrated report's row; an infinite ratio shows
/// as `inf` and sorts last.
fn calibration_cells(p: &Pair) -> String {
    let Some(c) = &p.calibration else {
        return format!(
            "{}{}{}<td>-</td>",
            num_cell(None),
            num_cell(None),
            num_cell(None)
        );
    };
    let ratio = match c.ratio {
        Some(r) if r.is_infinite() => r#"<td class="num" data-v="1e308">inf</td>"#.to_owned(),
        r => num_cell(r),
    };
    format!(
        "{}{}{ratio}<td>{}</td>",
        num_cell(c.e_a),
        num_cell(c.e_c),
        c.status.name()
    )
}

/// A sortable numeric table cell; `-` (sorting first) when absent or not finite.
fn num_cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            format!(r#"<td class="num" data-v="{v}">{}</td>"#, sci(Some(v)))
        }
        _ => r#"<td class="num" data-v="-1">-</td>"#.to_owned(),
    }
}
