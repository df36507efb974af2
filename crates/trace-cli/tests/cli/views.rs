//! `tensor-trace views`: list, show, detect, draft; and the draft used by `tensor-trace diff`.

use std::path::Path;

use trace_core::{Context, TensorView, Tracer};

use super::support::tensor_trace;

/// A run with these names, each a [2, 4] F32 record of the same values.
fn write(dir: &Path, names: &[&str]) {
    let tracer = Tracer::builder().dir(dir).values("*").build().unwrap();
    let v: Vec<f32> = (0..8).map(|i| i as f32 * 0.25).collect();
    for name in names {
        tracer
            .record(
                name,
                &Context::default(),
                TensorView::new(&[2, 4], &v).unwrap(),
            )
            .unwrap();
    }
    tracer.flush().unwrap();
}

fn stdout(args: &[&str], code: i32) -> String {
    let out = tensor_trace()
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn lists_and_shows_the_shipped_views() {
    let list = stdout(&["views"], 0);
    for name in ["ours", "hf-decoder", "llama-cpp", "hf-bert", "ours-bert"] {
        assert!(list.contains(&format!("{name}\n")), "{list}");
    }
    let show = stdout(&["views", "show", "llama-cpp"], 0);
    assert!(
        show.contains("Qcur-{L}#1  [{ rank = 3 }, { reshape = [0, 0, -1, 2] }"),
        "{show}"
    );
    let out = tensor_trace()
        .args(["views", "show", "nope"])
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("no shipped view of that name"), "{err}");
}

#[test]
fn detects_a_run_and_drafts_a_view_for_an_unknown_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let cpp = tmp.path().join("cpp");
    write(
        &cpp,
        &["embd", "attn_norm-0", "l_out-0", "attn_norm-1", "l_out-1"],
    );
    let found = stdout(&["views", "detect", cpp.to_str().unwrap()], 0);
    assert!(
        found.contains(": llama-cpp (detected") || found.contains(": llama-cpp ("),
        "{found}"
    );

    // An engine of its own: layers as `stage.N.*`, plus names llama.cpp's view knows.
    let mine = tmp.path().join("mine");
    write(
        &mine,
        &["stem", "stage.0.mix", "l_out-0", "stage.1.mix", "l_out-1"],
    );
    let none = stdout(&["views", "detect", mine.to_str().unwrap()], 1);
    assert!(none.contains("no view fits"), "{none}");
    let draft = tmp.path().join("mine.toml");
    let out = tensor_trace()
        .args([
            "views",
            "draft",
            mine.to_str().unwrap(),
            "--name",
            "mine",
            "-o",
        ])
        .arg(&draft)
        .assert()
        .success();
    assert!(out.get_output().stdout.is_empty());
    let text = std::fs::read_to_string(&draft).unwrap();
    assert!(text.contains("name = \"mine\""), "{text}");
    assert!(
        text.contains("\"stage.*.mix\", # shape [2, 4], layers 0..1"),
        "{text}"
    );
    assert!(text.contains("point = \"blk{L}/l_out\""), "{text}");

    // The draft, named for A, maps the points it shares with llama.cpp: the layer outputs.
    let report = stdout(
        &[
            "diff",
            mine.to_str().unwrap(),
            cpp.to_str().unwrap(),
            "--view-a",
            draft.to_str().unwrap(),
            "--allow-missing",
        ],
        0,
    );
    assert!(report.contains("view A: mine (--view-a)"), "{report}");
    assert!(report.contains("view B: llama-cpp (detected"), "{report}");
}
