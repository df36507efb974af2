//! The human report: what the user reads first is where the runs part.

use std::fmt::Write;

use super::map::{Map, View};
use super::styles::Styles;
use super::text_map::error_map;
use super::{context, ratio_text, sci};
use crate::report::{CalibrationStatus, Outcome, Pair, Report, RunInfo, Verdict};

/// Options of the text report.
#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    /// Emit ANSI colors (strip them later with `anstream` if the terminal does not want them).
    pub color: bool,
    /// Most rows of the "records that do not agree" and "layers" tables (0 = all).
    pub max_rows: usize,
    /// Most warnings listed (0 = all).
    pub max_warnings: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            color: false,
            max_rows: 40,
            max_warnings: 20,
        }
    }
}

fn limit(n: usize, max: usize) -> usize {
    if max == 0 {
        n
    } else {
        n.min(max)
    }
}

/// The report as text, ending with a newline.
pub fn text(report: &Report, options: &TextOptions) -> String {
    let st = Styles::new(options.color);
    let mut out = String::new();
    runs(&mut out, report, &st);
    warnings(&mut out, report, &st, options);
    summary(&mut out, report, &st);
    first_divergence(&mut out, report, &st);
    if let Some(map) = Map::build(report, &View::builtin()) {
        error_map(&mut out, report, &map, &st);
    }
    disagreeing(&mut out, report, &st, options);
    layers(&mut out, report, &st, options);
    let (word, style) = match report.outcome {
        Outcome::Agree => ("AGREE", st.green),
        Outcome::Diverged => ("DIVERGED", st.red),
        Outcome::Incomplete => ("INCOMPLETE: records without a partner", st.red),
    };
    let _ = writeln!(
        out,
        "\nresult: {style}{word}{style:#} (exit {})",
        report.outcome.exit_code()
    );
    out
}

/// `DIR (manifest order, N records, M ignored)`.
fn run_line(info: &RunInfo) -> String {
    format!(
        "{} ({} order{}, {} records{})",
        info.dir,
        info.order,
        if info.execution_order_known {
            ""
        } else {
            ": execution order unknown"
        },
        info.records,
        if info.ignored > 0 {
            format!(", {} ignored", info.ignored)
        } else {
            String::new()
        }
    )
}

/// The runs compared, the rules, and how the diff streamed or reassembled ranks.
fn runs(out: &mut String, report: &Report, st: &Styles) {
    let b = st.bold;
    let _ = writeln!(out, "{b}A{b:#} (under test): {}", run_line(&report.a));
    let _ = writeln!(out, "{b}B{b:#} (reference):  {}", run_line(&report.b));
    if let Some(cal) = &report.calibration {
        let _ = writeln!(out, "{b}C{b:#} (baseline):   {}", run_line(&cal.baseline));
    }
    if let Some(v) = &report.views {
        let mut sides = vec![("A", &v.a), ("B", &v.b)];
        sides.extend(v.c.as_ref().map(|c| ("baseline", c)));
        for (side, choice) in sides {
            let _ = writeln!(out, "view {side}: {} ({})", choice.view, choice.how);
        }
    }
    if let Some(rules) = &report.rules {
        let _ = writeln!(out, "rules: {rules}");
    }
    if let Some(s) = &report.streamed {
        let why = s.reason.as_deref().unwrap_or("streaming diff");
        let _ = writeln!(
            out,
            "streamed: {why}; window {} ({} misses), {} non-agreeing pairs kept, {} layer groups left out",
            s.window, s.window_misses, s.pairs_kept, s.layers_dropped
        );
    }
    let Some(ranks) = &report.ranks else {
        return;
    };
    let world = |w: Option<u32>| w.map_or("single process".to_owned(), |n| format!("{n} ranks"));
    let _ = writeln!(
        out,
        "ranks: {} (A: {}, B: {})",
        ranks.mode,
        world(ranks.world_size_a),
        world(ranks.world_size_b)
    );
    if ranks.mode == "reassembled" {
        let _ = writeln!(
            out,
            "  reassembled: {} concatenated from values, {} merged from statistics (hash unknown), {} summed, {} replicated, {} not mergeable",
            ranks.reassembled_values, ranks.merged_stats, ranks.summed, ranks.replicated, ranks.not_mergeable
        );
    }
    for r in &ranks.per_rank {
        let first = r
            .first_divergence
            .as_ref()
            .map(|(name, pos)| format!(", first divergence #{pos} {name}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  rank {}: {:?}{first}", r.rank, r.outcome);
    }
}

fn warnings(out: &mut String, report: &Report, st: &Styles, options: &TextOptions) {
    let y = st.yellow;
    let shown = limit(report.warnings.len(), options.max_warnings);
    for w in &report.warnings[..shown] {
        let side = w.side.map(|s| format!("[{s}]")).unwrap_or_default();
        let _ = writeln!(out, "{y}warning{side}{y:#}: {}", w.message);
    }
    if shown < report.warnings.len() {
        let _ = writeln!(
            out,
            "{y}... and {} more warnings (all are in --format json){y:#}",
            report.warnings.len() - shown
        );
    }
}

/// The verdict counts and, calibrated, the ratio statistics.
fn summary(out: &mut String, report: &Report, st: &Styles) {
    let b = st.bold;
    let c = &report.counts;
    let _ = writeln!(
        out,
        "\n{b}summary{b:#}: {} compared: {} identical, {} within tolerance, {} diverged, {} incompatible; {} missing in B, {} missing in A",
        c.compared, c.identical, c.within_tolerance, c.diverged, c.incompatible, c.missing_in_b, c.missing_in_a
    );
    let Some(cal) = &report.calibration else {
        return;
    };
    let max_at = cal
        .ratio_max_pair
        .and_then(|i| report.pairs.get(i as usize))
        .map(|p| format!(" at #{} {}", p.position, p.display_name()))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{b}calibrated{b:#}: {} judged by ratio = e_A / max(e_C, floor) <= {}: {} diverged; ratio median {}, max {}{max_at}; {} without a baseline record, {} unusable, {} baseline records unused",
        cal.calibrated,
        cal.max_ratio,
        cal.diverged,
        ratio_text(cal.ratio_median),
        ratio_text(cal.ratio_max),
        cal.missing,
        cal.unusable,
        cal.unused_baseline_records
    );
}

/// The first divergence with its detail, or why there is none.
fn first_divergence(out: &mut String, report: &Report, st: &Styles) {
    let (b, r) = (st.bold, st.red);
    let (Some(first), Some(p)) = (&report.first_divergence, report.first_divergence_pair()) else {
        let _ = if report.counts.compared == 0 {
            // Nothing was compared: "no divergence" would claim an agreement nobody checked.
            writeln!(
                out,
                "\nnothing compared: no record of A has a partner in B (different names? see --rules)"
            )
        } else {
            writeln!(
                out,
                "\nno divergence: every matched record is identical or within tolerance"
            )
        };
        return;
    };
    let _ = writeln!(
        out,
        "\n{r}first divergence{r:#}: #{} {b}{}{b:#} ({})",
        p.position,
        first.name,
        context(p)
    );
    write_pair_detail(out, p, st, report);
    if let Some(ranks) = &report.ranks {
        let list: Vec<String> = ranks
            .first_divergence_ranks
            .iter()
            .map(u32::to_string)
            .collect();
        let _ = writeln!(
            out,
            "  {r}rank(s){r:#}: {} ({})",
            if list.is_empty() {
                "unknown".to_owned()
            } else {
                list.join(", ")
            },
            ranks.attribution.as_deref().unwrap_or("")
        );
    }
    let _ = match &first.last_agreeing {
        Some(name) => writeln!(out, "  last agreeing record before it: {name}"),
        None => writeln!(out, "  no record agreed before it"),
    };
    let _ = writeln!(
        out,
        "  after it: {} more diverged records; largest error from here on: {}",
        first.diverged_after,
        sci(first.max_error_after)
    );
    if !first.execution_order_known {
        let _ = writeln!(
            out,
            "  {y}note{y:#}: A has no manifest, so \"first\" follows the seed ordering rule (seq, index, file name), not execution order",
            y = st.yellow
        );
    }
}

/// The table of records that do not agree.
fn disagreeing(out: &mut String, report: &Report, st: &Styles, options: &TextOptions) {
    let bad: Vec<&Pair> = report
        .pairs
        .iter()
        .filter(|p| !matches!(p.verdict, Verdict::Identical | Verdict::WithinTolerance))
        .collect();
    if bad.is_empty() {
        return;
    }
    let calibrated = report.calibration.is_some();
    // A streaming report keeps only the first of them: the count comes from the totals.
    let total = match &report.streamed {
        Some(_) => {
            let c = &report.counts;
            (c.diverged + c.incompatible + c.missing_in_a + c.missing_in_b) as usize
        }
        None => bad.len(),
    };
    let (b, d) = (st.bold, st.dim);
    let _ = writeln!(out, "\n{b}records that do not agree{b:#} ({total}):");
    let _ = writeln!(
        out,
        "  {d}{:>6}  {:<16} {:<9} {:>10}{}  name{d:#}",
        "#",
        "verdict",
        "evidence",
        "error",
        if calibrated {
            format!(" {:>10} {:>10} {:>10}", "e_A", "e_C", "ratio")
        } else {
            String::new()
        },
    );
    let shown = limit(bad.len(), options.max_rows);
    for p in &bad[..shown] {
        let v = st.verdict(p.verdict);
        let pos = match p.only_in {
            Some("b") => format!("B{}", p.position),
            _ => p.position.to_string(),
        };
        let _ = writeln!(
            out,
            "  {:>6}  {v}{:<16}{v:#} {:<9} {:>10}{}  {}{}",
            pos,
            p.verdict.name(),
            p.evidence.name(),
            sci(p.error),
            if calibrated {
                calibration_columns(p)
            } else {
                String::new()
            },
            p.display_name(),
            p.reason
                .as_deref()
                .map(|r| format!("  {d}{r}{d:#}"))
                .unwrap_or_default()
        );
    }
    if shown < total {
        let _ = writeln!(out, "  ... and {} more", total - shown);
    }
}

/// The error profile by layer.
fn layers(out: &mut String, report: &Report, st: &Styles, options: &TextOptions) {
    let layers: Vec<_> = report
        .layers
        .iter()
        .filter(|l| l.error.is_some_and(|e| e > 0.0))
        .collect();
    if layers.is_empty() {
        return;
    }
    let calibrated = report.calibration.is_some();
    let (b, d) = (st.bold, st.dim);
    let _ = writeln!(
        out,
        "\n{b}error profile by layer{b:#} (error at each layer's last record; amplification = error / previous layer's):"
    );
    let _ = writeln!(
        out,
        "  {d}{:>5} {:>6} {:>10} {:>10}{}  output{d:#}",
        "step",
        "layer",
        "error",
        "amplif.",
        if calibrated {
            format!(" {:>10} {:>10}", "e_C", "ratio")
        } else {
            String::new()
        },
    );
    let shown = limit(layers.len(), options.max_rows);
    for l in &layers[..shown] {
        let amp = l.amplification.map(|a| format!("x{a:.2}"));
        let _ = writeln!(
            out,
            "  {:>5} {:>6} {:>10} {:>10}{}  {}",
            l.seq.map_or("-".to_owned(), |s| s.to_string()),
            l.layer,
            sci(l.error),
            amp.as_deref().unwrap_or("-"),
            if calibrated {
                format!(" {:>10} {:>10}", sci(l.baseline_error), ratio_text(l.ratio))
            } else {
                String::new()
            },
            l.output
        );
    }
    if shown < layers.len() {
        let _ = writeln!(out, "  ... and {} more", layers.len() - shown);
    }
}

/// ` e_A e_C ratio` columns of a pair in the table of records that do not agree.
fn calibration_columns(p: &Pair) -> String {
    match &p.calibration {
        Some(cal) => format!(
            " {:>10} {:>10} {:>10}",
            sci(cal.e_a),
            sci(cal.e_c),
            match cal.status {
                CalibrationStatus::Calibrated => ratio_text(cal.ratio),
                other => other.name().to_owned(),
            }
        ),
        None => format!(" {:>10} {:>10} {:>10}", "-", "-", "-"),
    }
}

/// The lines of [`write_measures`] without indentation (the HTML map's detail, which takes the
/// verdict and the reason from the records table).
pub(super) fn measure_lines(p: &Pair) -> Vec<String> {
    let mut s = String::new();
    write_measures(&mut s, p);
    s.lines().map(|l| l.trim().to_owned()).collect()
}

fn write_pair_detail(out: &mut String, p: &Pair, st: &Styles, report: &Report) {
    if p.name_b.as_deref() != p.name_a.as_deref() {
        let _ = writeln!(out, "  B name: {}", p.name_b.as_deref().unwrap_or("-"));
    }
    if let [Some(fa), Some(fb)] = &p.file {
        let _ = writeln!(out, "  files: A {fa}, B {fb}");
    }
    let v = st.verdict(p.verdict);
    let calibrated = p
        .calibration
        .as_ref()
        .is_some_and(|c| c.status == CalibrationStatus::Calibrated);
    let tol = match (&report.calibration, &p.tolerance) {
        (Some(summary), _) if calibrated => {
            format!(" (calibrated: ratio at most {})", summary.max_ratio)
        }
        (_, Some(t)) => format!(
            " (atol {:e}, rtol {:e}{}: {})",
            t.atol,
            t.rtol,
            scale_text(p),
            t.source
        ),
        (_, None) => String::new(),
    };
    let _ = writeln!(
        out,
        "  verdict: {v}{}{v:#} on {} evidence{tol}",
        p.verdict.name(),
        p.evidence.name()
    );
    if let Some(reason) = &p.reason {
        let _ = writeln!(out, "  {reason}");
    }
    write_measures(out, p);
}

/// The scale the tolerance's third term used, for a pair judged on values
/// (` of max(|b|, RMS(b) 7.370e1)`): rtol applies to the larger of the two.
pub(super) fn scale_text(p: &Pair) -> String {
    match &p.values {
        Some(m) => format!(" of max(|b|, RMS(b) {})", sci(Some(m.scale))),
        None => String::new(),
    }
}

/// The shapes and what was measured: element-wise metrics, logits metrics, statistics.
fn write_measures(out: &mut String, p: &Pair) {
    if let [Some(sa), Some(sb)] = &p.shape {
        let dt = match &p.dtype {
            [Some(a), Some(b)] => format!(", dtype {a} vs {b}"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  shape {sa:?} vs {sb:?}{dt}");
    }
    if let Some(m) = &p.values {
        let _ = writeln!(
            out,
            "  values: max |a-b| {} at {:?}, mean |a-b| {}, rel L2 {}, cosine {}, SQNR {} dB, {} of {} elements outside tolerance{}",
            sci(Some(m.max_abs)),
            m.max_abs_at,
            sci(Some(m.mean_abs)),
            sci(Some(m.rel_l2)),
            if m.cosine.is_nan() { "-".to_owned() } else { format!("{:.6}", m.cosine) },
            if m.sqnr_db.is_finite() { format!("{:.1}", m.sqnr_db) } else { "inf".to_owned() },
            m.failed,
            m.elements,
            if m.within_by_scale > 0 {
                format!(", {} within by rtol·RMS(b) only", m.within_by_scale)
            } else {
                String::new()
            }
        );
    }
    if let Some(l) = &p.logits {
        let _ = writeln!(
            out,
            "  logits: top-1 agrees in {} of {} rows, top-{} overlap {:.3}, KL mean {} max {}",
            l.top1_agree,
            l.rows,
            l.top_k,
            l.topk_overlap,
            sci(Some(l.kl_mean)),
            sci(Some(l.kl_max))
        );
    }
    if let Some(s) = &p.stats {
        let _ = writeln!(
            out,
            "  stats: rms {} vs {} (delta {}), mean delta {}, std delta {}",
            sci(s.rms_a),
            sci(s.rms_b),
            sci(s.rms),
            sci(s.mean),
            sci(s.std)
        );
    }
}
