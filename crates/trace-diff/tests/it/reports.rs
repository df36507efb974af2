//! Renderers: snapshots of text and JSON, the HTML page and JUnit XML parsed and checked.

use trace_diff::render::{self, TextOptions};
use trace_diff::{DiffOptions, Report};

use crate::common::diff_dirs;

use crate::common::{data, profile_plot, redact, two_runs, Fault, Prec, Spec};

fn seed_report() -> Report {
    // The fixture paths are absolute: redact the crate directory.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut r = diff_dirs(&data("seed_a"), &data("seed_b"), &DiffOptions::default()).unwrap();
    redact_dirs(&mut r, &dir.display().to_string());
    r
}

fn redact_dirs(r: &mut Report, prefix: &str) {
    r.a.dir = r.a.dir.replace(prefix, "[DIR]");
    r.b.dir = r.b.dir.replace(prefix, "[DIR]");
    for w in &mut r.warnings {
        w.message = w.message.replace(prefix, "[DIR]");
    }
}

fn faulty_report() -> (tempfile::TempDir, Report) {
    let fault = Fault {
        seq: 0,
        layer: 1,
        index: 5,
        delta: 0.5,
    };
    let (tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    let r = diff_dirs(&a, &b, &DiffOptions::default()).unwrap();
    (tmp, r)
}

#[test]
fn text_report_snapshot_seed() {
    let r = seed_report();
    insta::assert_snapshot!("text_seed", render::text(&r, &TextOptions::default()));
}

#[test]
fn json_report_snapshot_seed() {
    let r = seed_report();
    insta::assert_snapshot!("json_seed", render::json(&r));
}

#[test]
fn text_report_snapshot_values() {
    let (tmp, r) = faulty_report();
    let text = render::text(&r, &TextOptions::default());
    insta::assert_snapshot!("text_values", redact(&text, tmp.path()));
}

#[test]
fn json_report_snapshot_values() {
    let (tmp, r) = faulty_report();
    insta::assert_snapshot!("json_values", redact(&render::json(&r), tmp.path()));
}

#[test]
fn json_report_is_versioned_and_parses() {
    let (_tmp, r) = faulty_report();
    let v: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(v["schema"], "tensor-trace-diff");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["outcome"], "diverged");
    assert_eq!(v["first_divergence"]["name"], "blk1/q");
    let first = v["first_divergence"]["pair"].as_u64().unwrap() as usize;
    assert_eq!(
        v["pairs"][first]["values"]["first_failed_at"],
        serde_json::json!([0, 5])
    );
    // Infinite SQNR of identical records is null, not an invalid token.
    assert!(v["pairs"][0]["values"].is_null() || v["pairs"][0]["values"]["sqnr_db"].is_null());
}

#[test]
fn colored_text_only_when_asked() {
    let r = seed_report();
    let plain = render::text(&r, &TextOptions::default());
    assert!(!plain.contains('\x1b'));
    let colored = render::text(
        &r,
        &TextOptions {
            color: true,
            ..TextOptions::default()
        },
    );
    assert!(colored.contains("\x1b["));
}

/// All descendants of `node` with tag `tag`.
fn elements<'a>(
    doc: &'a roxmltree::Document<'a>,
    tag: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'a>> + 'a {
    doc.descendants()
        .filter(move |n| n.is_element() && n.tag_name().name() == tag)
}

#[test]
fn html_report_structure() {
    let (_tmp, r) = faulty_report();
    let html = render::html(&r);
    // The page is well-formed XML (so strict tools can read it) and pulls in nothing external.
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("HTML does not parse: {e}"));
    for attr in ["src", "href"] {
        assert!(
            doc.descendants().all(|n| n.attribute(attr).is_none()),
            "external asset via {attr}"
        );
    }
    let ids: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("id"))
        .collect();
    for id in [
        "summary",
        "first-divergence",
        "profile",
        "records",
        "records-table",
        "layers",
    ] {
        assert!(ids.contains(&id), "missing #{id} in {ids:?}");
    }
    let summary = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("summary"))
        .unwrap();
    assert!(summary.descendants().any(|n| n.text() == Some("diverged")));
    let first = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("first-divergence"))
        .unwrap();
    assert!(first
        .descendants()
        .any(|n| n.text().is_some_and(|t| t.contains("blk1/q"))));

    let svg = profile_plot(&doc);
    assert!(svg.descendants().any(|n| n.tag_name().name() == "polyline"));
    let circles = svg
        .descendants()
        .filter(|n| n.tag_name().name() == "circle")
        .count();
    assert!(circles > 10);
    assert!(svg
        .descendants()
        .any(|n| n.attribute("class") == Some("first-divergence")));

    let table = doc
        .descendants()
        .find(|n| n.attribute("id") == Some("records-table"))
        .unwrap();
    assert_eq!(table.attribute("class"), Some("sortable"));
    let rows = table
        .descendants()
        .filter(|n| n.tag_name().name() == "tr")
        .count();
    assert_eq!(rows, r.pairs.len() + 1);
    assert!(elements(&doc, "script").next().is_some(), "sorting script");
}

#[test]
fn junit_report_structure() {
    let (_tmp, r) = faulty_report();
    let xml = render::junit(&r);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = elements(&doc, "testsuite").next().unwrap();
    assert_eq!(
        suite.attribute("tests"),
        Some(r.pairs.len().to_string().as_str())
    );
    let failures = elements(&doc, "failure").count() as u64;
    assert_eq!(failures, r.counts.diverged + r.counts.incompatible);
    assert_eq!(
        suite.attribute("failures"),
        Some(failures.to_string().as_str())
    );
    let first = elements(&doc, "failure")
        .find(|f| f.attribute("message").unwrap().contains("first divergence"))
        .unwrap();
    assert_eq!(first.parent().unwrap().attribute("name"), Some("blk1/q#0"));
}

#[test]
fn html_profile_points_stay_inside_the_plot_when_a_has_unmatched_records() {
    let fault = Fault {
        seq: 0,
        layer: 1,
        index: 5,
        delta: 0.5,
    };
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    // Remove B's first records: A's first records have no partner, and A's positions then run
    // past the number of matched pairs.
    let manifest = b.join("manifest.jsonl");
    let text = std::fs::read_to_string(&manifest).unwrap();
    for line in text.lines().take(6) {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = entry["file"].as_str().unwrap();
        std::fs::remove_file(b.join(file)).unwrap();
    }
    let kept: Vec<&str> = text.lines().skip(6).collect();
    std::fs::write(&manifest, kept.join("\n") + "\n").unwrap();
    let options = DiffOptions {
        allow_missing: true,
        ..DiffOptions::default()
    };
    let r = diff_dirs(&a, &b, &options).unwrap();
    assert!(r.counts.missing_in_b >= 6);
    let html = render::html(&r);
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    let svg = profile_plot(&doc);
    let width: f64 = svg.attribute("width").unwrap().parse().unwrap();
    let xs: Vec<f64> = svg
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .map(|n| n.attribute("cx").unwrap().parse().unwrap())
        .collect();
    assert!(!xs.is_empty());
    assert!(
        xs.iter().all(|&x| x <= width),
        "points past the plot: {xs:?} (width {width})"
    );
}
