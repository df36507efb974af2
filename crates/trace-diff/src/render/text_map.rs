//! The error map in the terminal: one character per point, readable without color.
//!
//! A cell's character says its error's decade (`6`: between 1e-6 and 1e-5) or, calibrated, its
//! ratio's (`2`: above 10, up to 100); color, when on, adds the verdict. The first divergence
//! is bracketed, `[3]`. Under the layers, one character per layer says how much that layer's
//! output error grew over the previous layer's: a smooth ramp of accumulated rounding shows as
//! `.` or `^` in every column, a bug as one `!`.

use std::fmt::Write;

use anstyle::Style;

use super::map::{streamed_note, Cell, Growth, Map, Pass, Scale, Section, Shade};
use super::styles::Styles;
use crate::report::{Report, Verdict};

/// At most this many layers side by side; wider models are drawn in blocks.
const BLOCK: usize = 32;

/// The character of a cell.
fn glyph(shade: Shade, scale: Scale) -> char {
    let digit = |d: f64| char::from(b'0' + d.clamp(0.0, 9.0) as u8);
    match shade {
        Shade::Identical => '=',
        Shade::Missing => '-',
        Shade::Unknown => '?',
        Shade::Ignored => 'i',
        Shade::Value(v) => match scale {
            Scale::Error { .. } if v <= 0.0 => '9',
            Scale::Error { .. } => digit(-v.log10().floor()),
            Scale::Ratio { .. } if v <= 1.0 => '.',
            Scale::Ratio { .. } => digit(v.log10().ceil()),
        },
    }
}

/// The character of a layer's growth.
fn growth_glyph(g: Option<&Growth>) -> char {
    match g.and_then(|g| g.factor) {
        None if g.is_some_and(|g| g.from_exact) => '*',
        None => ' ',
        Some(f) if f < 2.0 => '.',
        Some(f) if f < 10.0 => '^',
        Some(_) => '!',
    }
}

/// The legend under the map.
fn legend(scale: Scale) -> String {
    let measure = match scale {
        Scale::Error { .. } => "error",
        Scale::Ratio { .. } => "ratio",
    };
    let values = match scale {
        Scale::Error { .. } => {
            "digit d: error from 1e-d up to 1e-(d-1) (0: 1 or more, 9: below 1e-8)".to_owned()
        }
        Scale::Ratio { k, .. } => format!(
            "'.': ratio e_A/e_C at most 1; digit d: ratio above 10^(d-1), up to 10^d; K = {k} (above it: diverged)"
        ),
    };
    format!(
        "cells: {values}; '=' identical, '?' no number, '-' on one side only, 'i' left out by the rules' ignore lists, blank: no record; [x] first divergence\ngrowth: each layer's output {measure} over the previous layer's: '.' below x2, '^' x2 to x10, '!' x10 or more, '*' from an exact previous output (the error appears here); layer 0's previous output is the embedding's"
    )
}

/// The map of the first pass and, when the first divergence is in another, of that pass too.
pub(super) fn error_map(out: &mut String, report: &Report, map: &Map, st: &Styles) {
    let first = map.first_divergence_pass(report);
    let mut shown = vec![0];
    if let Some(f) = first.filter(|&f| f != 0) {
        shown.push(f);
    }
    let b = st.bold;
    for &i in &shown {
        let pass = &map.passes[i];
        let _ = writeln!(
            out,
            "\n{b}error map{b:#}, {}, {} (rows: points in execution order; columns: layers, first the records outside them):",
            map.title(pass),
            map.view.as_deref().unwrap_or("rows by stage name"),
        );
        let first_pair = report
            .first_divergence_pair()
            .and_then(|p| report.pairs.iter().position(|q| std::ptr::eq(p, q)));
        let first_cell = first_pair.and_then(|p| map.cell_of(pass, p));
        let columns = map.layers.len();
        let mut start = 0;
        while start < columns.max(1) {
            let end = (start + BLOCK).min(columns);
            block(out, report, map, pass, start..end, first_cell, st);
            start = end.max(start + 1);
        }
    }
    for line in legend(map.scale).lines() {
        let _ = writeln!(out, "  {d}{line}{d:#}", d = st.dim);
    }
    if let Some(note) = streamed_note(report) {
        let _ = writeln!(out, "  {y}{note}{y:#}", y = st.yellow);
    }
}

/// One block of layer columns `layers` (the first block also has the column of records outside
/// the layers).
fn block(
    out: &mut String,
    report: &Report,
    map: &Map,
    pass: &Pass,
    layers: std::ops::Range<usize>,
    first: Option<(usize, usize)>,
    st: &Styles,
) {
    let width = map
        .rows
        .iter()
        .map(|r| r.name.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let outside = layers.start == 0;
    let mut columns: Vec<usize> = Vec::new();
    if outside {
        columns.push(0);
    }
    columns.extend(layers.clone().map(|i| i + 1));
    let numbers: Vec<i64> = columns
        .iter()
        .map(|&c| if c == 0 { -1 } else { map.layers[c - 1] })
        .collect();
    let label = |n: i64, f: fn(i64) -> String| if n < 0 { ' '.to_string() } else { f(n) };
    if numbers.iter().any(|&n| n >= 10) {
        let tens: Vec<String> = numbers
            .iter()
            .map(|&n| {
                label(n, |n| {
                    if n >= 10 {
                        (n / 10 % 10).to_string()
                    } else {
                        " ".into()
                    }
                })
            })
            .collect();
        let _ = writeln!(out, "  {:width$} {}", "", tens.join(" "));
    }
    let units: Vec<String> = numbers
        .iter()
        .map(|&n| label(n, |n| (n % 10).to_string()))
        .collect();
    let _ = writeln!(out, "  {:<width$} {}", "layer", units.join(" "));
    for (r, row) in map.rows.iter().enumerate() {
        if row.section != Section::Layer && !outside {
            continue;
        }
        let cells: Vec<(char, Style)> = columns
            .iter()
            .map(|&c| match pass.cells.get(&(r, c)) {
                Some(cell) => (glyph(cell.shade, map.scale), style(report, cell, st)),
                None => (' ', Style::new()),
            })
            .collect();
        let marked = first
            .filter(|&(fr, _)| fr == r)
            .and_then(|(_, fc)| columns.iter().position(|&c| c == fc));
        let line = line(&cells, marked);
        let _ = writeln!(out, "  {:<width$}{}", row.name, line.trim_end());
    }
    if !pass.growth.iter().any(Growth::known) {
        return;
    }
    let growth: Vec<(char, Style)> = columns
        .iter()
        .map(|&c| {
            let g = (c > 0)
                .then(|| pass.growth.iter().find(|g| g.layer == map.layers[c - 1]))
                .flatten();
            (growth_glyph(g), Style::new())
        })
        .collect();
    let _ = writeln!(
        out,
        "  {:<width$}{}",
        "growth",
        line(&growth, None).trim_end()
    );
}

/// Cells separated by spaces; the marked one between brackets.
fn line(cells: &[(char, Style)], marked: Option<usize>) -> String {
    let mut s = String::new();
    for (i, (ch, style)) in cells.iter().enumerate() {
        let sep = match marked {
            Some(m) if m == i => '[',
            Some(m) if m + 1 == i => ']',
            _ => ' ',
        };
        let _ = write!(s, "{sep}{style}{ch}{style:#}");
    }
    if marked.is_some_and(|m| m + 1 == cells.len()) {
        s.push(']');
    }
    s
}

/// The color of a cell: its verdict's.
fn style(report: &Report, cell: &Cell, st: &Styles) -> Style {
    let Some(i) = cell.pair() else {
        return st.dim;
    };
    match report.pairs[i].verdict {
        Verdict::Identical => st.dim,
        v => st.verdict(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs() {
        let error = Scale::Error { lo: -9, hi: 0 };
        let check = |shade, expected| assert_eq!(glyph(shade, error), expected);
        check(Shade::Identical, '=');
        check(Shade::Missing, '-');
        check(Shade::Unknown, '?');
        check(Shade::Ignored, 'i');
        check(Shade::Value(3e-6), '6');
        check(Shade::Value(1e-6), '6');
        check(Shade::Value(0.5), '1');
        check(Shade::Value(7.0), '0');
        check(Shade::Value(1e-15), '9');
        check(Shade::Value(0.0), '9');
        let ratio = Scale::Ratio { k: 10.0, span: 3 };
        let check = |v, expected| assert_eq!(glyph(Shade::Value(v), ratio), expected);
        check(0.3, '.');
        check(1.0, '.');
        check(5.0, '1');
        check(10.0, '1');
        check(11.0, '2');
        check(f64::INFINITY, '9');
        let growth = |factor, from_exact| Growth {
            layer: 0,
            output: "blk0/l_out".into(),
            previous: Some("embed".into()),
            value: Some(1e-7),
            factor,
            from_exact,
        };
        let factors = [None, Some(0.5), Some(1.9), Some(2.0), Some(9.9), Some(10.0)];
        assert_eq!(
            factors.map(|f| growth_glyph(Some(&growth(f, false)))),
            [' ', '.', '.', '^', '^', '!']
        );
        assert_eq!(growth_glyph(Some(&growth(None, true))), '*');
        assert_eq!(growth_glyph(None), ' ');
    }

    #[test]
    fn brackets_mark_one_cell() {
        let plain = Style::new();
        let cells = [('1', plain), ('2', plain), ('3', plain)];
        assert_eq!(line(&cells, None), " 1 2 3");
        assert_eq!(line(&cells, Some(0)), "[1]2 3");
        assert_eq!(line(&cells, Some(2)), " 1 2[3]");
    }
}
