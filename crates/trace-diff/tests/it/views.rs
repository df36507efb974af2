//! Engine views: runs of three engines that name and lay out the same computation their own
//! way (tensor-trace's names, transformers', llama.cpp's) compared with no rules file.

use std::path::{Path, PathBuf};

use trace_core::{Context, TensorView, Tracer};
use trace_diff::views::{self, SideSpec};
use trace_diff::{DiffOptions, Outcome, Report};

use crate::common::{diff_dirs, diff_dirs_calibrated};

const T: usize = 3;
const H: usize = 2;
const D: usize = 4;
const E: usize = 8;
const V: usize = 5;
/// llama.cpp's KV cells (padded past the T that exist).
const KV: usize = 8;
const LAYERS: usize = 2;

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Ours,
    Hf,
    /// transformers traced without the RoPE wrapper: no `q_rope` records.
    HfNoRope,
    LlamaCpp,
}

/// The canonical values of one point: distinct, smooth numbers; `bug` scales layer 1's
/// records from the Q projection on by 1.01.
fn canonical(point: &str, layer: usize, len: usize, bug: bool) -> Vec<f32> {
    let seed = point.bytes().map(f32::from).sum::<f32>() + 100.0 * layer as f32;
    let scale = if bug && layer == 1 { 1.01 } else { 1.0 };
    (0..len)
        .map(|i| scale * ((seed + i as f32) * 0.37).sin())
        .collect()
}

/// Attention probabilities [H, T, T]: causal rows summing to 1.
fn probs(layer: usize) -> Vec<f32> {
    let mut p = vec![0.0; H * T * T];
    for h in 0..H {
        for t in 0..T {
            for s in 0..=t {
                p[(h * T + t) * T + s] = (1 + s + h + layer) as f32;
            }
            let sum: f32 = p[(h * T + t) * T..(h * T + t + 1) * T].iter().sum();
            p[(h * T + t) * T..(h * T + t + 1) * T]
                .iter_mut()
                .for_each(|x| *x /= sum);
        }
    }
    p
}

/// Canonical q [T, H*D] in llama.cpp's layout [T, H, D]: within a head, llama.cpp's row
/// 2i + j is the canonical row j * D/2 + i (convert_hf_to_gguf.py's permutation).
fn permute_rows(q: &[f32], heads_major: bool) -> Vec<f32> {
    let mut out = vec![0.0; q.len()];
    for t in 0..T {
        for h in 0..H {
            for k in 0..D {
                let (i, j) = (k / 2, k % 2);
                let c = j * D / 2 + i;
                let src = if heads_major {
                    (h * T + t) * D + c
                } else {
                    (t * H + h) * D + c
                };
                out[(t * H + h) * D + k] = q[src];
            }
        }
    }
    out
}

/// One engine's records of the same forward pass, as its view says it names and lays them out.
fn records(engine: Engine, bug: bool) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, v: Vec<f32>| out.push((name, shape, v));
    let embed = canonical("embed", 0, T * E, false);
    match engine {
        Engine::Ours => push("embed".into(), vec![T, E], embed),
        Engine::Hf | Engine::HfNoRope => push("model.embed_tokens".into(), vec![1, T, E], embed),
        Engine::LlamaCpp => push("embd".into(), vec![T, E], embed),
    }
    for l in 0..LAYERS {
        let q = canonical("q", l, T * H * D, bug);
        let q_rope = canonical("q_rope", l, H * T * D, bug);
        let p = probs(l);
        let l_out = canonical("l_out", l, T * E, bug);
        let norm = canonical("attn_norm", l, T * E, false);
        match engine {
            Engine::Ours => push(format!("blk{l}/attn_norm"), vec![T, E], norm),
            Engine::Hf | Engine::HfNoRope => push(
                format!("model.layers.{l}.input_layernorm"),
                vec![1, T, E],
                norm,
            ),
            Engine::LlamaCpp => push(format!("attn_norm-{l}"), vec![T, E], norm),
        }
        match engine {
            Engine::Ours => {
                push(format!("blk{l}/q"), vec![T, H * D], q);
                push(format!("blk{l}/q_rope"), vec![H, T, D], q_rope);
                push(format!("blk{l}/attn_probs"), vec![H, T, T], p);
                push(format!("blk{l}/l_out"), vec![T, E], l_out);
            }
            Engine::Hf | Engine::HfNoRope => {
                push("model.rotary_emb".into(), vec![1, T, D], vec![0.5; T * D]);
                push(
                    format!("model.layers.{l}.self_attn.q_proj"),
                    vec![1, T, H * D],
                    q,
                );
                if engine == Engine::Hf {
                    push(
                        format!("model.layers.{l}.self_attn/q_rope"),
                        vec![1, H, T, D],
                        q_rope,
                    );
                }
                push(format!("model.layers.{l}.self_attn/1"), vec![1, H, T, T], p);
                push(format!("model.layers.{l}"), vec![1, T, E], l_out);
            }
            Engine::LlamaCpp => {
                push(format!("norm-{l}"), vec![T, E], vec![0.25; T * E]);
                push(format!("Qcur-{l}"), vec![T, H * D], permute_rows(&q, false));
                push(
                    format!("Qcur-{l}#1"),
                    vec![T, H, D],
                    permute_rows(&q, false),
                );
                push(
                    format!("Qcur-{l}#2"),
                    vec![T, H, D],
                    permute_rows(&q_rope, true),
                );
                let mut padded = vec![0.0; H * T * KV];
                for r in 0..H * T {
                    padded[r * KV..r * KV + T].copy_from_slice(&p[r * T..(r + 1) * T]);
                }
                push(format!("kq_soft_max-{l}"), vec![H, T, KV], padded);
                push(format!("l_out-{l}"), vec![T, E], l_out);
            }
        }
    }
    // Logits: ours the last row, the others every row.
    let all_rows: Vec<f32> = (0..T)
        .flat_map(|t| canonical("logits", t, V, bug))
        .collect();
    let last = all_rows[(T - 1) * V..].to_vec();
    match engine {
        Engine::Ours => push("logits".into(), vec![V], last),
        Engine::Hf | Engine::HfNoRope => push("logits".into(), vec![1, T, V], all_rows),
        Engine::LlamaCpp => push("result_output".into(), vec![T, V], all_rows),
    }
    out
}

fn write(dir: &Path, engine: Engine, bug: bool) {
    let tracer = Tracer::builder().dir(dir).values("*").build().unwrap();
    for (name, shape, v) in records(engine, bug) {
        tracer
            .record(
                &name,
                &Context::default().seq(0),
                TensorView::new(&shape, &v).unwrap(),
            )
            .unwrap();
    }
    tracer.flush().unwrap();
}

fn side<'a>(side: &'static str, dir: &'a Path, given: Option<&'a str>) -> SideSpec<'a> {
    SideSpec::new(side, "--view-x", dir, given)
}

/// `a` against `b` (and the baseline `c`) with the rules their detected views compose into.
fn diff(a: &Path, b: &Path, c: Option<&Path>) -> Report {
    let rules = views::choose(
        side("A", a, None),
        side("B", b, None),
        c.map(|c| side("the baseline", c, None)),
    )
    .unwrap()
    .expect("both sides fit a view");
    let options = DiffOptions {
        rules,
        ..Default::default()
    };
    match c {
        Some(c) => diff_dirs_calibrated(a, b, c, &options).unwrap(),
        None => diff_dirs(a, b, &options).unwrap(),
    }
}

fn run(root: &Path, name: &str, engine: Engine, bug: bool) -> PathBuf {
    let dir = root.join(name);
    write(&dir, engine, bug);
    dir
}

#[test]
fn transformers_and_llama_cpp_agree_in_both_directions_with_no_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = run(tmp.path(), "hf", Engine::Hf, false);
    let cpp = run(tmp.path(), "cpp", Engine::LlamaCpp, false);
    for (a, b, names) in [
        (&hf, &cpp, ["hf-decoder", "llama-cpp"]),
        (&cpp, &hf, ["llama-cpp", "hf-decoder"]),
    ] {
        let r = diff(a, b, None);
        assert_eq!(r.outcome, Outcome::Agree, "{r:#?}");
        // embed, 2 x (attn_norm, q, q_rope, probs, l_out), logits.
        assert_eq!(r.counts.compared, 12, "{r:#?}");
        let v = r.views.as_ref().unwrap();
        assert_eq!([v.a.view.as_str(), v.b.view.as_str()], names);
        assert!(
            v.a.how.starts_with("detected: its records include"),
            "{}",
            v.a.how
        );
        // The rotary tables, the unweighted norms and the raw Q projections, with why.
        assert!(r
            .ignored
            .rules
            .iter()
            .any(|w| w.contains("the rotary tables")));
        assert!(r
            .ignored
            .rules
            .iter()
            .any(|w| w.contains("RMSNorm before its weight")));
    }
}

/// A run that does not record a point of its view (transformers without the RoPE wrapper):
/// the other side's records of that point are left out, saying why, not reported missing.
#[test]
fn a_point_one_run_does_not_record_is_left_out_with_why() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = run(tmp.path(), "hf", Engine::HfNoRope, false);
    let cpp = run(tmp.path(), "cpp", Engine::LlamaCpp, false);
    for (a, b) in [(&hf, &cpp), (&cpp, &hf)] {
        let r = diff(a, b, None);
        assert_eq!(r.outcome, Outcome::Agree, "{r:#?}");
        // 12 pairs less the two layers' q_rope.
        assert_eq!(r.counts.compared, 10, "{r:#?}");
        let why = "point blk{L}/q_rope is not recorded by the other run (view hf-decoder";
        assert!(
            r.ignored.rules.iter().any(|w| w.contains(why)),
            "{:?}",
            r.ignored.rules
        );
    }
}

#[test]
fn a_bug_on_either_side_is_localized_at_its_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = run(tmp.path(), "hf", Engine::Hf, false);
    let cpp = run(tmp.path(), "cpp", Engine::LlamaCpp, false);
    let hf_bug = run(tmp.path(), "hf-bug", Engine::Hf, true);
    let cpp_bug = run(tmp.path(), "cpp-bug", Engine::LlamaCpp, true);
    for (a, b, first) in [
        (&hf, &cpp_bug, "model.layers.1.self_attn.q_proj"),
        (&hf_bug, &cpp, "model.layers.1.self_attn.q_proj"),
        (&cpp, &hf_bug, "Qcur-1#1"),
        (&cpp_bug, &hf, "Qcur-1#1"),
    ] {
        let r = diff(a, b, None);
        assert_eq!(r.outcome, Outcome::Diverged, "{r:#?}");
        let f = r.first_divergence.as_ref().unwrap();
        assert_eq!(f.name, first, "{a:?} against {b:?}");
        // Everything before layer 1 agreed.
        assert_eq!(f.pair, 7, "{r:#?}");
    }
}

#[test]
fn ours_against_llama_cpp_calibrated_by_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = run(tmp.path(), "ours", Engine::Ours, false);
    let cpp = run(tmp.path(), "cpp", Engine::LlamaCpp, false);
    let hf = run(tmp.path(), "hf", Engine::Hf, false);
    let r = diff(&ours, &cpp, Some(&hf));
    assert_eq!(r.outcome, Outcome::Agree, "{r:#?}");
    let v = r.views.as_ref().unwrap();
    assert_eq!(v.c.as_ref().unwrap().view, "hf-decoder");
    let cal = r.calibration.as_ref().unwrap();
    assert_eq!(cal.calibrated, r.counts.compared, "{cal:#?}");
    // A bug in A shows against the same baseline.
    let ours_bug = run(tmp.path(), "ours-bug", Engine::Ours, true);
    let r = diff(&ours_bug, &cpp, Some(&hf));
    assert_eq!(r.first_divergence.unwrap().name, "blk1/q");
}

#[test]
fn an_unknown_side_against_a_known_one_says_how_to_choose() {
    let tmp = tempfile::tempdir().unwrap();
    let cpp = run(tmp.path(), "cpp", Engine::LlamaCpp, false);
    let other = tmp.path().join("other");
    let tracer = Tracer::builder().dir(&other).build().unwrap();
    tracer
        .record(
            "conv1",
            &Context::default(),
            TensorView::new(&[2], &vec![1.0f32, 2.0]).unwrap(),
        )
        .unwrap();
    tracer.flush().unwrap();
    let e = views::choose(side("A", &other, None), side("B", &cpp, None), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no engine view fits its records (its first: \"conv1\")"),
        "{e}"
    );
    assert!(
        e.contains("is seen through view llama-cpp (detected"),
        "{e}"
    );
    assert!(
        e.contains("--view-x NAME|FILE") && e.contains("tensor-trace views draft"),
        "{e}"
    );
    // Naming A's view is the way out; two unknown sides match by name as before.
    let named = views::choose(side("A", &other, Some("ours")), side("B", &cpp, None), None);
    assert!(named.unwrap().is_some());
    assert!(
        views::choose(side("A", &other, None), side("B", &other, None), None)
            .unwrap()
            .is_none()
    );
}
