//! The layer-by-point error map: snapshots of the text map, its presence in the HTML page.

use trace_diff::render::{self, TextOptions};
use trace_diff::rules::Rules;
use trace_diff::{DiffOptions, Report, StreamOptions};

use crate::common::{diff_dirs, diff_dirs_streaming, two_runs, Fault, Prec, Spec};

/// The text report's error maps (from the first "error map" line to the legend's end).
fn text_maps(report: &Report) -> String {
    let text = render::text(report, &TextOptions::default());
    let start = text.find("error map").expect("an error map");
    let end = text.rfind("growth: ").expect("a growth legend");
    let end = end + text[end..].find('\n').unwrap();
    text[start..end].to_owned()
}

/// A fault in the first decode step (`seq` 1), and one record of B removed: the map of the
/// prefill shows the missing record, the map of step 1 the first divergence and its growth.
#[test]
fn text_map_snapshot_fault_in_a_decode_step() {
    let fault = Fault {
        seq: 1,
        layer: 1,
        index: 2,
        delta: 1e-2,
    };
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    std::fs::remove_file(b.join("blk2_q.trace")).unwrap();
    let manifest = b.join("manifest.jsonl");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"blk2_q.trace\""))
        .collect();
    assert_eq!(kept.len() + 1, text.lines().count());
    std::fs::write(&manifest, kept.join("\n") + "\n").unwrap();
    let options = DiffOptions {
        allow_missing: true,
        ..DiffOptions::default()
    };
    let r = diff_dirs(&a, &b, &options).unwrap();
    insta::assert_snapshot!("text_map_decode_step", text_maps(&r));
}

/// Hugging Face names with the toy model's stages: the same map as `blkN/...` names, since rows
/// follow the recorded stage, not the name.
#[test]
fn text_map_follows_stages_not_names() {
    let fault = Fault {
        seq: 0,
        layer: 0,
        index: 1,
        delta: 0.25,
    };
    let maps: Vec<String> = [false, true]
        .into_iter()
        .map(|hf| {
            let spec = |p| {
                let s = Spec::new(p).values();
                if hf {
                    s.hf_names()
                } else {
                    s
                }
            };
            let (_tmp, a, b) = two_runs(spec(Prec::F32).fault(fault), spec(Prec::F64));
            text_maps(&diff_dirs(&a, &b, &DiffOptions::default()).unwrap())
        })
        .collect();
    assert_eq!(maps[0], maps[1]);
    insta::assert_snapshot!("text_map_prefill", maps[0]);
}

#[test]
fn colored_text_map_keeps_its_characters() {
    let fault = Fault {
        seq: 0,
        layer: 2,
        index: 0,
        delta: 0.5,
    };
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    let r = diff_dirs(&a, &b, &DiffOptions::default()).unwrap();
    let colored = render::text(
        &r,
        &TextOptions {
            color: true,
            ..TextOptions::default()
        },
    );
    let stripped = anstream::adapter::strip_str(&colored).to_string();
    assert!(colored.contains("\x1b["));
    assert_eq!(stripped, render::text(&r, &TextOptions::default()));
    assert!(stripped.contains("[1]"), "{stripped}");
}

/// Records the rules ignore are cells of their own (`i`), not blanks: `blk2/q` on both sides,
/// and the embedding, so layer 0's growth has no previous output to compare against.
#[test]
fn text_map_snapshot_with_ignored_records() {
    let fault = Fault {
        seq: 0,
        layer: 1,
        index: 3,
        delta: 1e-3,
    };
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    let options = DiffOptions {
        rules: Rules::from_toml(
            r#"ignore = ["blk2/q", "embed"]"#,
            std::path::Path::new("rules.toml"),
        )
        .unwrap(),
        ..DiffOptions::default()
    };
    let r = diff_dirs(&a, &b, &options).unwrap();
    // Both sides' `blk2/q` and `embed` in each of the two steps.
    assert_eq!(r.ignored.records.len(), 8);
    // In the order of their first use.
    assert_eq!(r.ignored.rules, [r#"ignore "embed""#, r#"ignore "blk2/q""#]);
    assert_eq!((r.a.ignored, r.b.ignored), (4, 4));
    let html = render::html(&r);
    assert!(
        html.contains(r#"class="cell ignored""#),
        "no ignored cell in the HTML map"
    );
    assert!(
        html.contains("blk2/q (A): ignored by ignore &quot;blk2/q&quot; (2 ignored records here)")
    );
    insta::assert_snapshot!("text_map_ignored", text_maps(&r));
}

/// A streaming diff keeps only the first non-agreeing pairs: its map draws those and says so.
#[test]
fn streamed_map_says_what_it_lacks() {
    let fault = Fault {
        seq: 0,
        layer: 1,
        index: 0,
        delta: 0.5,
    };
    let (_tmp, a, b) = two_runs(
        Spec::new(Prec::F32).values().fault(fault),
        Spec::new(Prec::F64).values(),
    );
    let bounds = StreamOptions {
        keep_pairs: 2,
        ..StreamOptions::default()
    };
    let r = diff_dirs_streaming(&a, &b, &DiffOptions::default(), &bounds, &mut |_| Ok(())).unwrap();
    assert_eq!(r.pairs.len(), 2);
    let text = text_maps(&r);
    assert!(text.contains("[1]"), "{text}");
    let note = "streamed: the report keeps only the first 2 non-agreeing records, so the map shows those alone";
    assert!(
        render::text(&r, &TextOptions::default()).contains(note),
        "{text}"
    );
    assert!(render::html(&r).contains(note));
}
