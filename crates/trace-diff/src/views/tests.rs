use super::*;

fn preset(name: &str) -> View {
    View::preset(name).unwrap().unwrap()
}

fn err(text: &str) -> String {
    View::from_toml(text, "v.toml", "v")
        .unwrap_err()
        .to_string()
}

#[test]
fn every_preset_compiles_and_is_detected_from_its_own_names() {
    let all = presets().unwrap();
    let runs: &[(&str, &[&str])] = &[
        (
            "ours",
            &["tokens", "embed", "blk0/q", "blk0/l_out", "logits"],
        ),
        (
            "ours-bert",
            &["tokens", "embeddings", "layer0/attn_out", "layer0/ffn_out"],
        ),
        (
            "hf-decoder",
            &[
                "input/input_ids",
                "model.embed_tokens",
                "model.layers.0.self_attn.q_proj",
            ],
        ),
        (
            "llama-cpp",
            &["embd", "attn_norm-0", "Qcur-0", "l_out-0", "result_output"],
        ),
        (
            "hf-bert",
            &["embeddings", "encoder.layer.0.output", "input/input_ids"],
        ),
    ];
    for (name, names) in runs {
        match detect(&all, names) {
            Detection::Found(v, why) => {
                assert_eq!(v.name(), *name);
                assert!(why.starts_with("its records include"), "{why}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(detect(&all, &["x", "y"]), Detection::Unknown));
}

#[test]
fn two_views_that_fit_are_ambiguous() {
    let text = |name: &str| format!("name = {name:?}\ndetect = [\"blk0/*\"]\n");
    let views = vec![
        View::from_toml(&text("one"), "one.toml", "one").unwrap(),
        View::from_toml(&text("two"), "two.toml", "two").unwrap(),
    ];
    match detect(&views, &["blk0/q"]) {
        Detection::Ambiguous(v) => assert_eq!(v.len(), 2),
        other => panic!("{other:?}"),
    }
    // `reject` tells them apart.
    let three = View::from_toml(
        "detect = [\"blk0/*\"]\nreject = [\"blk*/q_norm\"]\n",
        "three.toml",
        "three",
    )
    .unwrap();
    assert!(three.fits(&["blk0/q"]).is_some());
    assert!(three.fits(&["blk0/q", "blk3/q_norm"]).is_none());
}

#[test]
fn ours_against_llama_cpp_maps_and_lays_out_b_only() {
    let rules = compose(&preset("ours"), &preset("llama-cpp"), None).unwrap();
    assert_eq!(rules.map_name("blk3/q"), "Qcur-3#1");
    assert_eq!(rules.map_name("blk12/attn_probs"), "kq_soft_max-12");
    assert_eq!(rules.map_name("logits"), "result_output");
    let l = rules.layouts("blk3/q_rope");
    assert!(l.a.is_none() && l.b.is_some());
    // ours records tokens, llama.cpp does not: ignored, with why.
    let why = rules.ignore_rule_a("tokens").unwrap();
    assert_eq!(
        why,
        "view ours: point tokens has no record in view llama-cpp"
    );
    assert!(rules
        .ignore_rule_a("next_token")
        .unwrap()
        .starts_with("view ours: "));
    assert!(rules
        .ignore_rule_b("norm-7")
        .unwrap()
        .starts_with("view llama-cpp: RMSNorm before its weight"));
    assert!(rules.is_logits("result_output") && !rules.is_logits("logits"));
}

#[test]
fn two_foreign_views_compose_both_ways() {
    let (hf, cpp) = (preset("hf-decoder"), preset("llama-cpp"));
    let forward = compose(&hf, &cpp, None).unwrap();
    assert_eq!(
        forward.map_name("model.layers.2.self_attn.q_proj"),
        "Qcur-2#1"
    );
    let l = forward.layouts("model.layers.2.self_attn.q_proj");
    assert!(l.a.is_some() && l.b.is_some());
    let back = compose(&cpp, &hf, None).unwrap();
    assert_eq!(back.map_name("Qcur-2#1"), "model.layers.2.self_attn.q_proj");
    assert_eq!(back.map_name("result_output"), "logits");
    assert!(back.is_logits("logits"));
    // The raw Q projection is llama.cpp's own ignore; an unmapped name passes through.
    assert!(back.ignore_rule_a("Qcur-2").is_some());
    assert!(back.ignore_rule_a("Qcur-2#1").is_none());
}

#[test]
fn a_baseline_with_its_own_view_is_renamed_into_b() {
    let rules = compose(
        &preset("ours"),
        &preset("llama-cpp"),
        Some(&preset("hf-decoder")),
    )
    .unwrap();
    assert_eq!(
        rules.baseline_name("model.layers.1.mlp.down_proj").unwrap(),
        "ffn_out-1"
    );
    assert!(rules
        .baseline_layout("model.layers.1.mlp.down_proj")
        .unwrap()
        .is_some());
    assert!(rules.ignore_rule_c("model.rotary_emb").is_some());
    // Without a view of its own the baseline is B's: its names and layout.
    let plain = compose(&preset("ours"), &preset("llama-cpp"), None).unwrap();
    assert_eq!(plain.baseline_name("ffn_out-1").unwrap(), "ffn_out-1");
    assert!(plain.baseline_layout("ffn_out-1").is_none());
}

#[test]
fn a_point_missing_on_the_other_side_ignores_only_its_own_names() {
    let glob = Glob::new(&template_glob("Qcur-{L}"))
        .unwrap()
        .compile_matcher();
    assert!(glob.is_match("Qcur-0") && glob.is_match("Qcur-123"));
    assert!(!glob.is_match("Qcur-0#1") && !glob.is_match("Qcur-x"));
    let glob = Glob::new(&template_glob("a*[{L}]"))
        .unwrap()
        .compile_matcher();
    assert!(glob.is_match("a*[4]") && !glob.is_match("ab[4]"));
}

#[test]
fn bad_views_say_what_is_wrong() {
    assert!(err("detect = []").contains("`detect`: expected at least one glob"));
    assert!(err("version = 2\ndetect = [\"x\"]").contains("`version`: 2 is not supported"));
    let point =
        |p: &str, n: &str| format!("detect = [\"x\"]\n[[point]]\npoint = {p:?}\nname = {n:?}\n");
    assert!(err(&point("blk{N}/q", "q{N}")).contains("the only placeholder is {L}"));
    assert!(err(&point("blk{L}/q", "q")).contains("must be in both templates or neither"));
    let twice = format!(
        "{}[[point]]\npoint = \"a\"\nname = \"c\"\n",
        point("a", "b")
    );
    assert!(err(&twice).contains("point \"a\" is listed twice"));
    let hidden = format!(
        "{}[[ignore]]\nnames = [\"q*\"]\nwhy = \"w\"\n",
        point("blk{L}/q", "q{L}")
    );
    assert!(err(&hidden).contains("its name \"q0\" is left out by an `ignore` group"));
    assert!(err("detect = [\"x\"]\nbogus = 1").contains("bogus"));
    let e = View::load_or_preset("no-such-view")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no shipped view of that name") && e.contains("hf-decoder"),
        "{e}"
    );
}
