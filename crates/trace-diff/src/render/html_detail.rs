//! The error map's detail panel: what a click on a cell shows beyond its row of the records
//! table. The data of every cell is one JSON object embedded once (`#map-details`): for a pair,
//! its detail lines and, when values were compared, the histogram of `|a - b|`
//! ([`crate::detail`]: log-spaced bins relative to B's RMS) and the worst elements side by side;
//! for a cell of ignored records, which records and the rule that left them out. The panel's
//! script draws the histogram (an SVG, bar heights on a log scale of the count) and the worst
//! elements' table from it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::map::{Item, Map, Shade};
use super::text::measure_lines;
use super::{escape, sci};
use crate::detail::{ErrorHistogram, DECADES, LOWEST_DECADE};
use crate::metrics::unravel;
use crate::report::{Pair, Report};

pub(super) const STYLE: &str = "
#map-detail .map-hist svg { display: block; margin: 0.3em 0; }
#map-detail table.map-worst td { font-family: monospace; text-align: right; }
";

// Fills the histogram and the worst elements' table of the detail panel from a cell's data.
pub(super) const SCRIPT: &str = "
function mapValuesDetail(panel, d, bins) {
  var hist = panel.querySelector('.map-hist'), worst = panel.querySelector('.map-worst');
  hist.textContent = '';
  worst.textContent = '';
  hist.hidden = !(d && d.h);
  worst.hidden = !(d && d.w && d.w.length);
  var NS = 'http://www.w3.org/2000/svg';
  var el = function (name, attrs, text) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  };
  if (d && d.h) {
    var cap = document.createElement('p');
    cap.textContent = 'histogram of |a-b| / ' + (d.h.relative ? 'RMS of B (' + d.h.scale + ')' : '1 (B is all zeros: absolute)')
      + ' over ' + d.h.total + ' finite elements; bar height: log of the count';
    hist.appendChild(cap);
    var W = 44, H = 70, n = d.h.counts.length;
    var max = Math.max.apply(null, d.h.counts);
    var svg = el('svg', { 'class': 'histogram', width: n * W + 8, height: H + 36 });
    d.h.counts.forEach(function (c, k) {
      var h = c > 0 ? Math.max(2, H * Math.log(1 + c) / Math.log(1 + max)) : 0;
      var bar = el('rect', { 'class': 'hist-bar', x: k * W + 4, y: H + 12 - h, width: W - 4, height: h, fill: k === 0 ? '#9ccb86' : '#fd8d3c' });
      bar.appendChild(el('title', {}, bins[k] + ': ' + c + ' elements'));
      svg.appendChild(bar);
      svg.appendChild(el('text', { x: k * W + W / 2 + 2, y: H + 8 - h, 'text-anchor': 'middle', 'font-size': '9' }, c > 0 ? String(c) : ''));
      svg.appendChild(el('text', { x: k * W + W / 2 + 2, y: H + 26, 'text-anchor': 'middle', 'font-size': '9' }, bins[k]));
    });
    hist.appendChild(svg);
  }
  if (d && d.w && d.w.length) {
    var row = function (cells, tag) {
      var tr = document.createElement('tr');
      cells.forEach(function (c) {
        var td = document.createElement(tag);
        td.textContent = c;
        tr.appendChild(td);
      });
      worst.appendChild(tr);
    };
    var caption = document.createElement('caption');
    caption.textContent = 'the ' + d.w.length + ' largest |a-b|';
    worst.appendChild(caption);
    row(['index', 'a', 'b', '|a-b|'], 'th');
    d.w.forEach(function (w) {
      row(['[' + w[0].split(',').join(', ') + ']', String(w[1]), String(w[2]), w[3].toExponential(3)], 'td');
    });
  }
}
";

/// The markup of the panel's value parts, filled by the script.
pub(super) const PANEL: &str = r#"<div class="map-hist" hidden="hidden"></div><table class="map-worst" hidden="hidden"></table>"#;

/// A pair's histogram as the script reads it.
#[derive(Serialize)]
struct Hist<'a> {
    scale: String,
    relative: bool,
    total: u64,
    counts: &'a [u32],
}

/// One cell's data: detail lines, and for valued pairs the histogram and worst elements.
#[derive(Serialize)]
struct Detail<'a> {
    l: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    h: Option<Hist<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    w: Vec<Worst>,
}

/// One worst element as the script reads it, compact (a page may hold 10,000 of these lists):
/// the index per dimension joined by commas, `a` and `b` to 9 significant digits (an F32 value
/// exactly) and `|a - b|` (from the exact values) to 4.
type Worst = (String, f64, f64, f64);

/// `v` rounded to `digits` significant digits.
fn round_to(v: f64, digits: usize) -> f64 {
    format!("{v:.*e}", digits - 1).parse().unwrap_or(v)
}

/// The labels of the histogram's bins: `0`, `<1e-9`, the lower edge of each decade, `>=1e1`.
pub(super) fn bin_labels() -> Vec<String> {
    let mut labels = vec!["0".to_owned(), format!("<1e{LOWEST_DECADE}")];
    labels.extend((0..DECADES as i32).map(|i| format!("1e{}", LOWEST_DECADE + i)));
    labels.push(format!(">=1e{}", LOWEST_DECADE + DECADES as i32));
    labels
}

/// The data of every cell (bit-identical pairs excepted) keyed by pair index, and `i{k}` for
/// ignored record `k`, plus `bins` (the histogram's labels); a JSON object safe inside a
/// `<script>` element of a page that is also XML.
pub(super) fn details_json(report: &Report, map: &Map) -> String {
    let mut details: BTreeMap<String, Detail<'_>> = BTreeMap::new();
    for cell in map.passes.iter().flat_map(|p| p.cells.values()) {
        let (key, detail) = match cell.item {
            Item::Pair(_) if cell.shade == Shade::Identical => continue,
            Item::Pair(i) => (i.to_string(), pair_detail(&report.pairs[i], cell.count)),
            Item::Ignored(k) => (format!("i{k}"), ignored_detail(report, k, cell.count)),
        };
        details.insert(key, detail);
    }
    let mut json = serde_json::to_value(&details).expect("strings serialize");
    json["bins"] = serde_json::json!(bin_labels());
    serde_json::to_string(&json)
        .expect("strings serialize")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

fn pair_detail(p: &Pair, count: usize) -> Detail<'_> {
    let mut l = Vec::new();
    if let [Some(fa), Some(fb)] = &p.file {
        l.push(format!("files: A {fa}, B {fb}"));
    }
    l.extend(measure_lines(p));
    if count > 1 {
        l.push(format!(
            "{count} records share this point; the worst is shown"
        ));
    }
    let Some(m) = &p.values else {
        if p.only_in.is_none() {
            l.push(format!(
                "no histogram: values were not compared ({} evidence)",
                p.evidence.name()
            ));
        }
        return Detail {
            l,
            h: None,
            w: Vec::new(),
        };
    };
    let shape = p.shape[0].as_deref().unwrap_or_default();
    let w = m
        .worst
        .iter()
        .map(|e| {
            let index: Vec<String> = unravel(e.flat as usize, shape)
                .iter()
                .map(usize::to_string)
                .collect();
            (
                index.join(","),
                round_to(e.a, 9),
                round_to(e.b, 9),
                round_to(e.abs_diff(), 4),
            )
        })
        .collect();
    Detail {
        l,
        h: Some(hist(&m.histogram)),
        w,
    }
}

fn hist(h: &ErrorHistogram) -> Hist<'_> {
    Hist {
        scale: sci(Some(h.scale)),
        relative: h.relative,
        total: h.counts.iter().map(|&c| u64::from(c)).sum(),
        counts: &h.counts,
    }
}

fn ignored_detail(report: &Report, k: usize, count: usize) -> Detail<'static> {
    let r = &report.ignored.records[k];
    let mut l = vec![format!(
        "ignored: record {:?} of {} (occurrence {}), left out by the rules' {}{}",
        r.name,
        r.side.to_uppercase(),
        r.occurrence,
        report.ignored.rule_of(r),
        report
            .rules
            .as_deref()
            .map_or(String::new(), |f| format!(" ({f})")),
    )];
    if count > 1 {
        l.push(format!(
            "{count} ignored records at this point; the first is named"
        ));
    }
    l.push("never compared: no partner was looked for".to_owned());
    Detail {
        l,
        h: None,
        w: Vec::new(),
    }
}

/// The hover text of a cell of ignored records.
pub(super) fn ignored_title(report: &Report, k: usize, count: usize) -> String {
    let r = &report.ignored.records[k];
    let more = if count > 1 {
        format!(" ({count} ignored records here)")
    } else {
        String::new()
    };
    escape(&format!(
        "{} ({}): ignored by {}{more}",
        r.name,
        r.side.to_uppercase(),
        report.ignored.rule_of(r)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detail::BINS;

    #[test]
    fn labels_and_rounding() {
        let labels = bin_labels();
        assert_eq!(labels.len(), BINS);
        assert_eq!(
            [&labels[0], &labels[1], &labels[2], &labels[11], &labels[12]],
            ["0", "<1e-9", "1e-9", "1e0", ">=1e1"]
        );
        assert_eq!(round_to(1.234_567_891_23, 4), 1.235);
        assert_eq!(round_to(-2.821_305_994e-1, 9), -0.282_130_599);
        // An F32 value survives 9 significant digits.
        let x = f64::from(0.1f32);
        assert_eq!(round_to(x, 9) as f32, 0.1f32);
    }
}
