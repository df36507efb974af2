//! Unit tests on a tiny seeded BERT (no model files needed; the model directory tests write
//! a tiny one).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::{
    Batch, Bug, Config, Encoder, Error, LengthSource, Model, Trace, CONFIG_FILE,
    SENTENCE_BERT_CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};

fn config() -> Config {
    Config {
        vocab_size: 16,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 12,
        max_position_embeddings: 10,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".to_owned(),
    }
}

/// Weights from a fixed linear congruential sequence in [-0.5, 0.5), layer norms near 1.
fn tensors(cfg: &Config) -> HashMap<String, Tensor> {
    let mut state = 0x2545_f491_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let mut m = HashMap::new();
    let mut add = |name: String, shape: &[usize], base: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| base + next()).collect();
        m.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    };
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    add(
        "embeddings.word_embeddings.weight".into(),
        &[cfg.vocab_size, h],
        0.0,
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        &[cfg.max_position_embeddings, h],
        0.0,
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        &[cfg.type_vocab_size, h],
        0.0,
    );
    add("embeddings.LayerNorm.weight".into(), &[h], 1.0);
    add("embeddings.LayerNorm.bias".into(), &[h], 0.0);
    for i in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ] {
            add(format!("{p}.{name}.weight"), &[out, inp], 0.0);
            add(format!("{p}.{name}.bias"), &[out], 0.0);
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(format!("{p}.{name}.weight"), &[h], 1.0);
            add(format!("{p}.{name}.bias"), &[h], 0.0);
        }
    }
    m
}

fn model(bug: Option<Bug>) -> Model {
    let cfg = config();
    Model::from_tensors(tensors(&cfg), cfg, bug).unwrap()
}

/// Sentences of token ids, padded with 0 to the longest, as the tokenizer would.
fn batch(sentences: &[&[u32]]) -> Batch {
    let len = sentences.iter().map(|s| s.len()).max().unwrap();
    let mut b = Batch {
        batch: sentences.len(),
        len,
        ids: vec![],
        type_ids: vec![],
        mask: vec![],
    };
    for s in sentences {
        for t in 0..len {
            b.ids.push(s.get(t).copied().unwrap_or(0));
            b.type_ids.push(0);
            b.mask.push(u32::from(t < s.len()));
        }
    }
    b
}

fn embed(m: &Model, b: &Batch) -> Vec<Vec<f32>> {
    m.forward(b, Trace::Env).unwrap().to_vec2().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const SHORT: &[u32] = &[1, 5, 7, 2];
const LONG: &[u32] = &[1, 3, 4, 9, 11, 6, 2];

#[test]
fn embeddings_have_unit_length() {
    for row in embed(&model(None), &batch(&[SHORT, LONG])) {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn padding_does_not_change_a_sentence() {
    let m = model(None);
    let alone = embed(&m, &batch(&[SHORT]));
    let padded = embed(&m, &batch(&[SHORT, LONG]));
    assert!(max_diff(&alone[0], &padded[0]) < 1e-5);
}

#[test]
fn padding_bugs_show_only_with_padding() {
    for bug in [Bug::AttnMaskPadding, Bug::MeanPoolPadding] {
        let (good, bad) = (model(None), model(Some(bug)));
        let unpadded = batch(&[LONG]);
        assert!(max_diff(&embed(&good, &unpadded)[0], &embed(&bad, &unpadded)[0]) < 1e-6);
        let padded = batch(&[SHORT, LONG]);
        assert!(
            max_diff(&embed(&good, &padded)[0], &embed(&bad, &padded)[0]) > 1e-3,
            "{bug}"
        );
    }
}

#[test]
fn numeric_bugs_change_every_sentence() {
    for bug in [Bug::GeluTanh, Bug::LayerNormEps] {
        let b = batch(&[LONG]);
        let d = max_diff(
            &embed(&model(None), &b)[0],
            &embed(&model(Some(bug)), &b)[0],
        );
        assert!(d > 1e-7, "{bug}: {d}");
    }
}

#[test]
fn set_bug_switches_without_reloading() {
    let mut m = model(None);
    let b = batch(&[SHORT, LONG]);
    let clean = embed(&m, &b);
    m.set_bug(Some(Bug::MeanPoolPadding));
    assert_eq!(m.bug(), Some(Bug::MeanPoolPadding));
    assert!(max_diff(&clean[0], &embed(&m, &b)[0]) > 1e-3);
    m.set_bug(None);
    assert_eq!(clean, embed(&m, &b));
}

#[test]
fn traces_every_stage_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let tracer = trace_core::Tracer::builder()
        .dir(dir.path())
        .build()
        .unwrap();
    model(None)
        .forward(&batch(&[SHORT, LONG]), Trace::To(&tracer))
        .unwrap();
    tracer.flush().unwrap();
    let run = trace_core::run::Run::open(dir.path()).unwrap();
    let names: Vec<&str> = run.records().iter().map(|r| &*r.record.name).collect();
    assert_eq!(
        names,
        [
            "tokens",
            "attention_mask",
            "embeddings",
            "layer0/attn_out",
            "layer0/ffn_out",
            "layer1/attn_out",
            "layer1/ffn_out",
            "pooled",
            "normalized",
        ]
    );
    let layer1 = &run.records()[5].record;
    assert_eq!(layer1.layer, Some(1));
    assert_eq!(layer1.stage.as_deref(), Some("attn_out"));
    assert_eq!(layer1.shape, [2, 7, 8]);
}

#[test]
fn errors_name_what_is_wrong() {
    let check = |e: Error, expected: &str| assert_eq!(e.to_string(), expected);
    let mut cfg = config();
    cfg.num_attention_heads = 3;
    check(
        cfg.validate().unwrap_err(),
        "invalid model config: hidden_size 8 is not a multiple of num_attention_heads 3",
    );
    let mut cfg = config();
    cfg.hidden_act = "relu".into();
    check(
        cfg.validate().unwrap_err(),
        "invalid model config: hidden_act \"relu\": expected \"gelu\" (the erf form)",
    );
    let cfg = config();
    let mut t = tensors(&cfg);
    t.remove("encoder.layer.1.output.dense.bias");
    check(
        Model::from_tensors(t, cfg.clone(), None).unwrap_err(),
        "missing weight \"encoder.layer.1.output.dense.bias\"",
    );
    let m = model(None);
    let mut b = batch(&[SHORT]);
    b.mask.pop();
    check(
        m.forward(&b, Trace::Env).unwrap_err(),
        "batch of 1 x 4 tokens holds 4 ids, 4 type ids and 3 mask entries, expected 4 each",
    );
    let long: Vec<u32> = (0..11).collect();
    check(
        m.forward(&batch(&[&long]), Trace::Env).unwrap_err(),
        "11 tokens per sentence, expected at most 10 (max_position_embeddings)",
    );
}

/// A `tokenizer.json` in the layout of all-MiniLM-L6-v2's (BERT normalizer and pre-tokenizer,
/// WordPiece, `[CLS] $A [SEP]`, fixed padding), with the given `truncation` (JSON) and a
/// 16-token vocabulary matching [`config`].
fn tokenizer_json(truncation: &str) -> String {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "##s",
    ];
    let mut vocab = vec![
        r#""[PAD]": 0"#.to_owned(),
        r#""[CLS]": 1"#.to_owned(),
        r#""[SEP]": 2"#.to_owned(),
        r#""[UNK]": 3"#.to_owned(),
    ];
    vocab.extend(
        words
            .iter()
            .enumerate()
            .map(|(i, w)| format!("\"{w}\": {}", i + 4)),
    );
    let special = |name: &str, id: u32| {
        format!(r#""{name}": {{"id": "{name}", "ids": [{id}], "tokens": ["{name}"]}}"#)
    };
    format!(
        r###"{{
  "version": "1.0",
  "truncation": {truncation},
  "padding": {{"strategy": {{"Fixed": 4}}, "direction": "Right", "pad_to_multiple_of": null,
    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}},
  "added_tokens": [],
  "normalizer": {{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
    "strip_accents": null, "lowercase": true}},
  "pre_tokenizer": {{"type": "BertPreTokenizer"}},
  "post_processor": {{"type": "TemplateProcessing",
    "single": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}},
               {{"Sequence": {{"id": "A", "type_id": 0}}}},
               {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}}],
    "pair": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}},
             {{"Sequence": {{"id": "A", "type_id": 0}}}},
             {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}},
             {{"Sequence": {{"id": "B", "type_id": 1}}}},
             {{"SpecialToken": {{"id": "[SEP]", "type_id": 1}}}}],
    "special_tokens": {{{}, {}}}}},
  "decoder": null,
  "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
    "max_input_chars_per_word": 100, "vocab": {{{}}}}}
}}"###,
        special("[CLS]", 1),
        special("[SEP]", 2),
        vocab.join(", ")
    )
}

/// A model directory for the tiny BERT: `config.json`, `model.safetensors`, `tokenizer.json`
/// truncating at 4, and `sentence_bert_config.json` with `sbert` as its text when given.
fn model_dir(sbert: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let config_json = serde_json::json!({
        "architectures": ["BertModel"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "intermediate_size": cfg.intermediate_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_act": cfg.hidden_act,
    });
    std::fs::write(dir.path().join(CONFIG_FILE), config_json.to_string()).unwrap();
    candle_core::safetensors::save(&tensors(&cfg), dir.path().join(WEIGHTS_FILE)).unwrap();
    let truncation = r#"{"direction": "Right", "max_length": 4, "strategy": "LongestFirst",
        "stride": 0}"#;
    std::fs::write(dir.path().join(TOKENIZER_FILE), tokenizer_json(truncation)).unwrap();
    if let Some(text) = sbert {
        std::fs::write(dir.path().join(SENTENCE_BERT_CONFIG_FILE), text).unwrap();
    }
    dir
}

/// 9 words, 10 word pieces (`dog ##s`): 12 tokens with `[CLS]` and `[SEP]`, more than any
/// truncation below.
const NINE_WORDS: &str = "The cat sat on a mat and dogs ran";

/// The tokens per sentence `encoder` gives [`NINE_WORDS`] and "a cat" in one batch.
fn lengths(encoder: &Encoder) -> (usize, Vec<usize>) {
    let batch = encoder.tokenizer.encode(&[NINE_WORDS, "a cat"]).unwrap();
    (batch.len, vec![batch.tokens_in(0), batch.tokens_in(1)])
}

#[test]
fn load_truncates_at_sentence_bert_config_max_seq_length() {
    let dir = model_dir(Some(r#"{"max_seq_length": 7, "do_lower_case": false}"#));
    let encoder = Encoder::load(dir.path(), None).unwrap();
    assert_eq!(encoder.max_tokens.tokens, 7);
    assert_eq!(encoder.max_tokens.source, LengthSource::SentenceBertConfig);
    assert_eq!(encoder.tokenizer.max_tokens(), 7);
    // Cut to 7, padded to the batch's longest (not to tokenizer.json's fixed 4).
    assert_eq!(lengths(&encoder), (7, vec![7, 4]));
    let batch = encoder.tokenizer.encode(&[NINE_WORDS]).unwrap();
    assert_eq!(batch.ids, [1, 4, 5, 6, 7, 8, 2]);
    let embeddings = encoder.embed(&[NINE_WORDS, "a cat"], Trace::Env).unwrap();
    assert_eq!(embeddings.len(), 2);
}

#[test]
fn load_without_sentence_bert_config_takes_tokenizer_json() {
    let dir = model_dir(None);
    let encoder = Encoder::load(dir.path(), None).unwrap();
    assert_eq!(encoder.max_tokens.tokens, 4);
    assert_eq!(encoder.max_tokens.source, LengthSource::TokenizerJson);
    assert_eq!(lengths(&encoder), (4, vec![4, 4]));
    // A sentence_bert_config.json without max_seq_length says nothing about the length.
    let dir = model_dir(Some(r#"{"do_lower_case": false}"#));
    let encoder = Encoder::load(dir.path(), None).unwrap();
    assert_eq!(encoder.max_tokens.source, LengthSource::TokenizerJson);
}

#[test]
fn load_with_overrides_the_model_directory() {
    let dir = model_dir(Some(r#"{"max_seq_length": 7}"#));
    let encoder = Encoder::load_with(dir.path(), 5, None).unwrap();
    assert_eq!(encoder.max_tokens.tokens, 5);
    assert_eq!(encoder.max_tokens.source, LengthSource::Explicit);
    assert_eq!(lengths(&encoder), (5, vec![5, 4]));
    check_error(
        Encoder::load_with(dir.path(), 11, None).unwrap_err(),
        "max_tokens 11: expected 2 ([CLS] and [SEP]) to 10 (max_position_embeddings in \
         config.json)",
    );
}

#[test]
fn load_rejects_a_malformed_sentence_bert_config() {
    let dir = model_dir(Some(r#"{"max_seq_length": 256}"#));
    let e = Encoder::load(dir.path(), None).unwrap_err();
    check_error(
        e,
        &format!(
            "invalid model config {}: max_seq_length 256: expected an integer from 2 ([CLS] and \
             [SEP]) to 10 (max_position_embeddings in config.json)",
            dir.path().join(SENTENCE_BERT_CONFIG_FILE).display()
        ),
    );
}

fn check_error(e: Error, expected: &str) {
    assert_eq!(e.to_string(), expected);
}
