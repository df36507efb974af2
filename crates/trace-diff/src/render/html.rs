//! One self-contained HTML page: summary, first divergence, error-profile plot (inline SVG),
//! sortable table. No external assets; the markup is also well-formed XML so tools can parse it.

use std::fmt::Write;

use super::{context, escape, sci};
use crate::report::{Outcome, Pair, Report};

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

/// The report as one HTML page.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!DOCTYPE html>");
    let _ = writeln!(out, r#"<html lang="en"><head><meta charset="utf-8"/>"#);
    let _ = writeln!(out, "<title>trace-diff: {}</title>", escape(&report.a.dir));
    let _ = writeln!(out, "<style>{STYLE}</style></head><body>");
    let _ = writeln!(out, "<h1>trace-diff</h1>");
    summary(&mut out, report);
    first_divergence(&mut out, report);
    profile_svg(&mut out, report);
    table(&mut out, report);
    layers(&mut out, report);
    let _ = writeln!(out, "<script>//<![CDATA[{SCRIPT}//]]></script>");
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
    if let Some(rules) = &report.rules {
        let _ = writeln!(out, "<tr><th>rules</th><td>{}</td></tr>", escape(rules));
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
            if let Some(t) = &p.tolerance {
                item(format!(
                    "atol {:e}, rtol {:e} ({})",
                    t.atol, t.rtol, t.source
                ));
            }
            if let Some(r) = &p.reason {
                item(r.clone());
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

fn profile_svg(out: &mut String, report: &Report) {
    const W: f64 = 900.0;
    const H: f64 = 260.0;
    const L: f64 = 60.0;
    const R: f64 = 10.0;
    const T: f64 = 10.0;
    const B: f64 = 30.0;
    const FLOOR: f64 = 1e-12;
    let points: Vec<(&Pair, f64)> = report
        .pairs
        .iter()
        .filter(|p| p.only_in.is_none())
        .filter_map(|p| p.error.filter(|e| e.is_finite()).map(|e| (p, e.max(FLOOR))))
        .collect();
    let _ = writeln!(
        out,
        r#"<section id="profile"><h2>Error profile along A's execution order</h2>"#
    );
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"><title>error (log scale) by position in A</title>"#
    );
    // Points sit at their position in A's order, which counts A's unmatched records too.
    let n = report
        .pairs
        .iter()
        .filter(|p| p.only_in != Some("b"))
        .map(|p| p.position + 1)
        .max()
        .unwrap_or(1);
    let lo = points
        .iter()
        .map(|(_, e)| e.log10())
        .fold(f64::INFINITY, f64::min)
        .min(-8.0)
        .floor();
    let hi = points
        .iter()
        .map(|(_, e)| e.log10())
        .fold(f64::NEG_INFINITY, f64::max)
        .max(lo + 1.0)
        .ceil();
    let x = |pos: u64| L + (W - L - R) * (pos as f64 + 0.5) / n as f64;
    let y = |e: f64| T + (H - T - B) * (hi - e.log10()) / (hi - lo);
    let _ = writeln!(
        out,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        W - L - R,
        H - T - B
    );
    let mut decade = lo as i64;
    while decade as f64 <= hi {
        let yy = y(10f64.powi(decade as i32));
        let _ = writeln!(
            out,
            r##"<line x1="{L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">1e{decade}</text>"##,
            W - R,
            L - 4.0,
            yy + 4.0
        );
        decade += 1;
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">position in A (capture order)</text>"#,
        (L + W - R) / 2.0,
        H - 8.0
    );
    if let Some(f) = &report.first_divergence {
        let xx = x(f.pair);
        let _ = writeln!(
            out,
            r##"<line class="first-divergence" x1="{xx:.1}" x2="{xx:.1}" y1="{T}" y2="{}" stroke="#c62828" stroke-dasharray="4 3"/>"##,
            H - B
        );
    }
    if !points.is_empty() {
        let path: Vec<String> = points
            .iter()
            .map(|(p, e)| format!("{:.1},{:.1}", x(p.position), y(*e)))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="#5470c6" stroke-width="1" points="{}"/>"##,
            path.join(" ")
        );
        for (p, e) in &points {
            let color = if p.verdict.is_divergence() {
                "#c62828"
            } else {
                "#5470c6"
            };
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"><title>#{} {}: {}</title></circle>"#,
                x(p.position),
                y(*e),
                p.position,
                escape(p.display_name()),
                sci(p.error)
            );
        }
    }
    let _ = writeln!(out, "</svg>");
    let _ = writeln!(
        out,
        "<p>Error: relative L2 with raw values, else relative RMS delta; 0 is drawn at 1e-12. Red: diverged or incompatible; dashed line: first divergence.</p></section>"
    );
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
        "reason",
    ] {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    let _ = writeln!(out, "</tr></thead><tbody>");
    for p in &report.pairs {
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
            r#"<tr>{pos}<td>{}</td><td>{}</td>{}{}<td>{}</td><td class="{v}" data-v="{verdict_rank}">{v}</td><td>{}</td>{}{}<td>{}</td></tr>"#,
            escape(p.name_a.as_deref().unwrap_or("-")),
            escape(p.name_b.as_deref().unwrap_or("-")),
            int(p.seq.map(|s| s as i64)),
            int(p.layer),
            escape(p.stage.as_deref().unwrap_or("")),
            p.evidence.name(),
            num_cell(p.error),
            num_cell(p.values.as_ref().map(|m| m.max_abs)),
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
    let _ = writeln!(
        out,
        r#"<section id="layers"><h2>Error by layer</h2><table id="layers-table" class="sortable"><thead><tr><th>step</th><th>layer</th><th>output</th><th>error</th><th>max error</th><th>amplification</th></tr></thead><tbody>"#
    );
    for l in &report.layers {
        let _ = writeln!(
            out,
            r#"<tr><td class="num" data-v="{}">{}</td><td class="num" data-v="{}">{}</td><td>{}</td>{}{}{}</tr>"#,
            l.seq.map_or(-1, |s| s as i64),
            l.seq.map_or("-".to_owned(), |s| s.to_string()),
            l.layer,
            l.layer,
            escape(&l.output),
            num_cell(l.error),
            num_cell(l.max_error),
            num_cell(l.amplification)
        );
    }
    let _ = writeln!(out, "</tbody></table></section>");
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
