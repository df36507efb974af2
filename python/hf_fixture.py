"""Tiny random-weight transformers decoders for the engine views' tests (issue #24).

Each architecture the shipped views name (`crates/trace-diff/views/`) gets a model built from a
config: 3 layers, hidden 64, grouped-query attention (4 query heads, 2 KV heads), random weights
from a fixed seed, saved with `save_pretrained` (F32 safetensors) next to a tokenizer, so that
llama.cpp's `convert_hf_to_gguf.py` turns the directory into an F32 GGUF. The Rust side
(`crossval::fixtures`) runs this script and the converter, and caches the result.

The tokenizer is a SentencePiece BPE model of 512 pieces (256 of them byte fallbacks) trained
here on this file's own text, saved as `tokenizer.model`. The converter needs some tokenizer,
and this is the one path every architecture's converter takes without a check: a `tokenizer.json`
makes it hash the tokens of a test string and refuse a pre-tokenizer it does not know, and
transformers 5 rebuilds a Qwen2 tokenizer with Qwen2's own pre-tokenizer whatever the file says
(SmolLM2's tokenizer, saved from its GGUF, converts as Llama and Qwen3 but not as Qwen2). The
tests feed token ids directly (one per prompt byte), never text, so the vocabulary only has to
hold 256 ids and keeps the models small.

Weights: transformers' own initialization (normal, std `initializer_range`) for the matrices;
the RMSNorm weights (1 at initialization) and the biases (0) are drawn at random too, so a view
that maps a norm or a bias to the wrong record, or an engine that drops one, shows.

Usage:
    python hf_fixture.py build ARCH OUT_DIR
ARCH: llama, mistral, qwen2, qwen3, smollm2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch

SEED = 24
VOCAB = 512
ARCHS = ["llama", "mistral", "qwen2", "qwen3", "smollm2"]

# What every architecture shares: small enough for CI, large enough for GQA (2 query heads per
# KV head) and several layers to localize a bug in.
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    initializer_range=0.08,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
)


def config(arch: str):
    """The transformers config of `arch`."""
    import transformers as tf

    if arch == "llama":
        return tf.LlamaConfig(**COMMON)
    if arch == "smollm2":
        # SmolLM2-135M's own shape, scaled down: Llama with tied embeddings, 3 query heads per
        # KV head, rope_theta 100000.
        common = dict(COMMON, tie_word_embeddings=True, num_attention_heads=6, hidden_size=96)
        common["num_key_value_heads"] = 2
        return tf.LlamaConfig(**common, rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    if arch == "mistral":
        # No sliding window: the prompts are short, and llama.cpp's LLAMA graph has none.
        return tf.MistralConfig(**COMMON, sliding_window=None)
    if arch == "qwen2":
        return tf.Qwen2Config(**COMMON, use_sliding_window=False)
    if arch == "qwen3":
        # head_dim is its own setting in Qwen3 (not hidden / heads): 32 here, twice 64 / 4.
        return tf.Qwen3Config(**COMMON, head_dim=32, use_sliding_window=False)
    raise SystemExit(f"unknown architecture {arch!r}: expected one of {', '.join(ARCHS)}")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Draws the norm weights around 1 and the biases around 0 (see the module doc)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def tokenizer(out: Path) -> None:
    """Trains the SentencePiece model (see the module doc) into `out/tokenizer.model`."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=__file__,
        model_prefix=str(out / "tokenizer"),
        vocab_size=VOCAB,
        model_type="bpe",
        byte_fallback=True,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    (out / "tokenizer.vocab").unlink()


def build(arch: str, out: Path) -> None:
    from transformers import AutoModelForCausalLM

    # One seed per architecture: Llama and Mistral have the same shapes, not the same weights.
    seed = SEED + ARCHS.index(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config(arch), dtype=torch.float32)
    randomize(model, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"{arch}: {type(model).__name__}, {params} parameters -> {out}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="a random-weight model of one architecture")
    p_build.add_argument("arch", choices=ARCHS)
    p_build.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    build(args.arch, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
