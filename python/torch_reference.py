"""The real references of `cargo xtask crossval --reference torch`: Hugging Face transformers.

The engines people port from are transformers models, so this script runs them as they are,
unedited, and traces them from the outside with `tensor_trace.torch.trace_module` (forward hooks
on every module, inputs included). Record names are transformers' module paths; the shipped
rules presets (`hf-llama`, `hf-bert`) map the candle engines' names onto them.

- `generate`: a decoder checkpoint directory (`config.json` + `model.safetensors`: the
  crossval's synthetic Llama, or a model of `hf_fixture.py`), or a GGUF file in it
  (`--gguf-file`, which transformers dequantizes), loaded by `AutoModelForCausalLM` with eager
  attention (so the attention probabilities are a module output), greedy `generate()` with the
  KV cache: the prefill is step 0, each decode step the next. Prints the generated token ids.
  `--scale PARAM=FACTOR` multiplies one parameter first: a bug planted in this run's copy.
- `embed`: all-MiniLM-L6-v2 through transformers' `BertModel` and its tokenizer, then
  sentence-transformers' pooling done as sentence-transformers does it (mean over the attention
  mask, then L2 normalization), recorded as `pooled` and `normalized`. Truncation at
  `max_seq_length` from `sentence_bert_config.json`, padding to the longest sentence, as
  sentence-transformers encodes.

transformers applies rotary embeddings in a function (`apply_rotary_pos_emb`, one copy in each
architecture's modeling module), not a module, so no hook sees the rotated queries and keys.
While tracing, this script wraps the model's own copy (for the duration of the run only) and
records its two results as `{attention module}/q_rope` and `{attention module}/k_rope`: the
recipe for any function-level point a hook cannot reach.

`--dtype float64` (default) runs the reference in double precision: the side B of a crossval.
Note that transformers itself computes some steps in float32 whatever the model's dtype
(LlamaRMSNorm upcasts to float32 and back, eager attention's softmax runs in float32, rotary
angles are float32): those records carry float32-level error even in a float64 run.

Usage:
    python torch_reference.py generate MODEL_DIR PROMPT_FILE STEPS [--dtype float64|float32|bfloat16]
        [--gguf-file NAME] [--scale PARAM=FACTOR]...
    python torch_reference.py embed MODEL_DIR SENTENCES_JSON [--max-tokens N] [--dtype ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import torch

from tensor_trace import global_tracer
from tensor_trace.torch import TraceHandle, trace_module

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


@contextlib.contextmanager
def traced_rotary(model: torch.nn.Module, handle: TraceHandle) -> Iterator[None]:
    """Records `apply_rotary_pos_emb`'s results as `{attention path}/q_rope` and `/k_rope`
    while the block runs, then restores the function.

    Each transformers architecture has its own copy of the function in its modeling module
    (`modeling_llama`, `modeling_qwen3`, ...), which its attention calls by its global name:
    that module's copy is the one wrapped."""
    tracer = handle.tracer
    if tracer is None:
        yield
        return
    modeling = sys.modules[type(model).__module__]
    if not hasattr(modeling, "apply_rotary_pos_emb"):
        raise SystemExit(f"{modeling.__name__} has no apply_rotary_pos_emb to record q_rope/k_rope from")
    # Which attention module is running: its path and layer, set by a pre-hook.
    current: List[Optional[tuple]] = [None]
    hooks = []
    for path, module in model.named_modules():
        if path.endswith(".self_attn") and type(module).__module__ == modeling.__name__:
            layer = int(path.split(".")[-2]) if path.split(".")[-2].isdigit() else -1

            def enter(_module, _args, path=path, layer=layer):
                current[0] = (path, layer)

            hooks.append(module.register_forward_pre_hook(enter))
    original = modeling.apply_rotary_pos_emb

    def wrapped(q, k, cos, sin, *args, **kwargs):
        q_embed, k_embed = original(q, k, cos, sin, *args, **kwargs)
        if current[0] is not None:
            path, layer = current[0]
            for point, t in (("q_rope", q_embed), ("k_rope", k_embed)):
                tracer.record(
                    f"{path}/{point}", t.detach(), step=handle.step, layer=layer, stage=point
                )
        return q_embed, k_embed

    modeling.apply_rotary_pos_emb = wrapped
    try:
        yield
    finally:
        modeling.apply_rotary_pos_emb = original
        for h in hooks:
            h.remove()


def scale_weights(model: torch.nn.Module, scales: List[str]) -> None:
    """`--scale NAME=FACTOR`: multiplies parameter NAME by FACTOR in this run's copy of the
    weights (a planted bug, for the tests that localize one on this side)."""
    for spec in scales:
        name, _, factor = spec.partition("=")
        try:
            param = model.get_parameter(name)
            value = float(factor)
        except (AttributeError, ValueError) as e:
            raise SystemExit(f"--scale {spec}: expected PARAMETER=FACTOR with a parameter of the model ({e})")
        with torch.no_grad():
            param.mul_(value)


def generate(
    model_dir: Path,
    prompt_file: Path,
    steps: int,
    dtype: torch.dtype,
    gguf_file: Optional[str] = None,
    scales: Sequence[str] = (),
) -> List[int]:
    """Greedy generation of `steps + 1` tokens after the prompt's bytes, traced."""
    from transformers import AutoModelForCausalLM

    # With `gguf_file`, transformers reads the GGUF itself (dequantized, Q/K rows un-permuted).
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="eager", gguf_file=gguf_file
    ).eval()
    scale_weights(model, list(scales))
    prompt = list(prompt_file.read_bytes())
    if not prompt:
        raise SystemExit(f"{prompt_file}: the prompt needs at least one byte")
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.inference_mode(), trace_module(model, inputs=True) as handle, traced_rotary(
        model, handle
    ):
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=steps + 1,
            min_new_tokens=steps + 1,
            do_sample=False,
            num_beams=1,
            use_cache=True,
        )
    flush()
    return out[0, len(prompt) :].tolist()


def max_seq_length(model_dir: Path) -> int:
    """sentence-transformers' truncation length: `max_seq_length` in
    `sentence_bert_config.json` (without it, pass `--max-tokens`)."""
    path = model_dir / "sentence_bert_config.json"
    if path.exists():
        value = json.loads(path.read_text("utf-8")).get("max_seq_length")
        if not isinstance(value, int) or value < 2:
            raise SystemExit(f"{path}: `max_seq_length` should be an integer >= 2, got {value!r}")
        return value
    raise SystemExit(f"{path} is missing: pass --max-tokens")


def embed(
    model_dir: Path, sentences: List[str], max_tokens: Optional[int], dtype: torch.dtype
) -> torch.Tensor:
    """The normalized sentence embeddings, traced."""
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(
        model_dir, add_pooling_layer=False, dtype=dtype, attn_implementation="eager"
    ).eval()
    length = max_tokens if max_tokens is not None else max_seq_length(model_dir)
    batch = tokenizer(
        sentences, padding=True, truncation="longest_first", max_length=length, return_tensors="pt"
    )
    tracer = global_tracer()
    with torch.inference_mode(), trace_module(model, inputs=True):
        hidden = model(**batch).last_hidden_state
        # sentence-transformers' Pooling (mean over the tokens the mask keeps) and Normalize.
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        normalized = torch.nn.functional.normalize(pooled, p=2, dim=1)
    if tracer is not None:
        tracer.record("pooled", pooled, step=0, layer=-1, stage="pooled")
        tracer.record("normalized", normalized, step=0, layer=-1, stage="normalized")
    flush()
    return normalized


def flush() -> None:
    tracer = global_tracer()
    if tracer is not None:
        tracer.flush()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_gen = sub.add_parser("generate", help="greedy generation with AutoModelForCausalLM")
    p_gen.add_argument("model_dir", type=Path)
    p_gen.add_argument("prompt_file", type=Path)
    p_gen.add_argument("steps", type=int)
    p_gen.add_argument("--gguf-file", default=None, help="a GGUF file in MODEL_DIR to load")
    p_gen.add_argument("--scale", action="append", default=[], metavar="PARAM=FACTOR")
    p_emb = sub.add_parser("embed", help="sentence embeddings with BertModel")
    p_emb.add_argument("model_dir", type=Path)
    p_emb.add_argument("sentences", type=Path, help="a JSON list of strings")
    p_emb.add_argument("--max-tokens", type=int, default=None)
    for p in (p_gen, p_emb):
        p.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    dtype = DTYPES[args.dtype]

    if args.command == "generate":
        if args.steps < 0:
            parser.error(f"steps: expected a non-negative integer, got {args.steps}")
        tokens = generate(
            args.model_dir, args.prompt_file, args.steps, dtype, args.gguf_file, args.scale
        )
        print(" ".join(str(t) for t in tokens))
        return 0
    sentences = json.loads(args.sentences.read_text("utf-8"))
    if not (isinstance(sentences, list) and sentences and all(isinstance(s, str) for s in sentences)):
        parser.error(f"{args.sentences}: expected a non-empty JSON list of strings")
    if args.max_tokens is not None and args.max_tokens < 2:
        parser.error(f"--max-tokens: expected at least 2 ([CLS] and [SEP]), got {args.max_tokens}")
    embed(args.model_dir, sentences, args.max_tokens, dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
