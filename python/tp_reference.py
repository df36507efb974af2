"""A tensor-parallel Llama-style block on torch.distributed (gloo, CPU), traced per rank with
tensor_trace, and the same block in one process with the same weights.

    python tp_reference.py OUT [--world-size 2] [--bug none|wrong-slice|skip-allreduce|gather-order]
                              [--timeout SECONDS]

writes `OUT/tp/rank-{r}` (the sharded run, one directory per rank, world size in each
`rank.json`) and `OUT/ref` (the single-process reference), with raw values, then prints
`OUT/rules.toml`, the `[[shard]]` rules saying how each record of the sharded run is split. Compare
with `trace-diff OUT/tp OUT/ref --rules OUT/rules.toml` (or `cargo xtask crossval --tp 2`).

The block (pre-norm attention and a SwiGLU MLP, then an output projection):
column-parallel q/k/v/gate/up/lm_head (each rank computes a slice of the output features),
row-parallel o/down (each rank multiplies its slice of the input features and the partial sums
are added by an all-reduce), attention on each rank's heads, and the vocabulary slices of the
logits gathered at the end. Processes are started with torch.multiprocessing's spawn and meet
through a file store in OUT (no TCP port to pick); the run is bounded by `--timeout`, after
which every process is killed.

Planted bugs (`--bug`), each a classic tensor-parallel mistake:
- `wrong-slice`: rank 1 loads rank 0's slice of the q weight;
- `skip-allreduce`: the all-reduce after the row-parallel o projection is skipped;
- `gather-order`: the logits' vocabulary slices are concatenated in reverse rank order.

The tracer of each rank comes from the environment as under torchrun: `TENSOR_TRACE_DIR` plus
the launcher's `RANK` and `WORLD_SIZE` (tensor_trace reads them when `TENSOR_TRACE_RANK` /
`TENSOR_TRACE_WORLD_SIZE` are unset).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

D, HEADS, FF, VOCAB, TOKENS = 16, 4, 32, 24, 5
BUGS = ("none", "wrong-slice", "skip-allreduce", "gather-order")

RULES = """\
# How each record of the tensor-parallel block is split across ranks (python/tp_reference.py).
# Column-parallel outputs: each rank holds a slice of the last axis.
[[shard]]
names = "{q,k,v,attn,gate,up,act,lm_head}"
axis = -1
# Row-parallel projections before their all-reduce: partial sums.
[[shard]]
names = "{o,down}.proj"
reduce = "sum"
# Everything else (norms, o and down after the all-reduce, the gathered logits) is replicated:
# every rank holds the whole tensor and each is compared with the reference.
"""


def full_weights(seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)

    def w(*shape):
        return torch.randn(*shape, generator=g) / shape[-1] ** 0.5

    return {
        "attn_norm": 1.0 + 0.1 * torch.randn(D, generator=g),
        "q": w(D, D),
        "k": w(D, D),
        "v": w(D, D),
        "o": w(D, D),
        "mlp_norm": 1.0 + 0.1 * torch.randn(D, generator=g),
        "gate": w(FF, D),
        "up": w(FF, D),
        "down": w(D, FF),
        "lm_head": w(VOCAB, D),
        "x": torch.randn(1, TOKENS, D, generator=g),
    }


def build_block(weights: dict, rank: int, world: int, bug: str):
    """The block as rank `rank` of `world` holds it (world 1: the whole block, no collective)."""
    import torch
    import torch.distributed as dist
    from torch import nn

    def linear(weight):
        m = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        m.weight.data.copy_(weight)
        return m

    def column(name, src_rank=rank):
        w = weights[name]
        n = w.shape[0] // world
        return linear(w[src_rank * n : (src_rank + 1) * n])

    def row(name):
        w = weights[name]
        n = w.shape[1] // world
        return linear(w[:, rank * n : (rank + 1) * n])

    class RMSNorm(nn.Module):
        def __init__(self, weight):
            super().__init__()
            self.weight = nn.Parameter(weight.clone())

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight

    class Attention(nn.Module):
        def __init__(self, heads):
            super().__init__()
            self.heads = heads

        def forward(self, q, k, v):
            b, t, _ = q.shape

            def split(x):
                return x.view(b, t, self.heads, -1).transpose(1, 2)

            y = nn.functional.scaled_dot_product_attention(
                split(q), split(k), split(v), is_causal=True
            )
            return y.transpose(1, 2).reshape(b, t, -1)

    class Act(nn.Module):
        def forward(self, gate, up):
            return nn.functional.silu(gate) * up

    class RowParallel(nn.Module):
        def __init__(self, name, reduce=True):
            super().__init__()
            self.proj = row(name)
            self.reduce = reduce

        def forward(self, x):
            y = self.proj(x)
            if world > 1 and self.reduce:
                y = y.clone()
                dist.all_reduce(y)
            return y

    class Gather(nn.Module):
        def forward(self, x):
            if world == 1:
                return x
            parts = [torch.empty_like(x) for _ in range(world)]
            dist.all_gather(parts, x.contiguous())
            if bug == "gather-order":
                parts.reverse()
            return torch.cat(parts, dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm = RMSNorm(weights["attn_norm"])
            self.q = column("q", src_rank=0 if bug == "wrong-slice" and rank == 1 else rank)
            self.k = column("k")
            self.v = column("v")
            self.attn = Attention(HEADS // world)
            self.o = RowParallel("o", reduce=bug != "skip-allreduce")
            self.mlp_norm = RMSNorm(weights["mlp_norm"])
            self.gate = column("gate")
            self.up = column("up")
            self.act = Act()
            self.down = RowParallel("down")
            self.lm_head = column("lm_head")
            self.logits = Gather()

        def forward(self, x):
            n = self.attn_norm(x)
            h = x + self.o(self.attn(self.q(n), self.k(n), self.v(n)))
            m = self.mlp_norm(h)
            h = h + self.down(self.act(self.gate(m), self.up(m)))
            return self.logits(self.lm_head(h))

    return Block()


def _worker(rank: int, world: int, store: str, trace_dir: str, bug: str) -> None:
    # As torchrun would set them; tensor_trace reads RANK/WORLD_SIZE at its first record.
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        TENSOR_TRACE_DIR=trace_dir,
        TENSOR_TRACE_VALUES="1",
        GLOO_SOCKET_IFNAME="lo",
    )
    for k in ("TENSOR_TRACE_RANK", "TENSOR_TRACE_WORLD_SIZE"):
        os.environ.pop(k, None)
    import torch
    import torch.distributed as dist

    from tensor_trace.torch import trace_module

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        weights = full_weights()
        model = build_block(weights, rank, world, bug)
        with torch.no_grad(), trace_module(model):
            model(weights["x"])
        # No rank tears its connections down while the other may still be reading the last
        # message of a collective (seen once in CI: a rank aborted at teardown with "terminate
        # called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # The traces are closed and on disk. Skip the interpreter's exit (gloo's threads and static
    # destructors), where the same abort can still happen; the parent sees exit code 0.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run(out: str, world: int = 2, bug: str = "none", timeout: float = 120.0) -> dict:
    """Writes OUT/tp (sharded), OUT/ref (single process) and OUT/rules.toml; returns their paths."""
    if bug not in BUGS:
        raise ValueError(f"--bug: expected one of {', '.join(BUGS)}, got {bug!r}")
    if world < 2 or HEADS % world or D % world or FF % world or VOCAB % world:
        raise ValueError(
            f"--world-size: expected at least 2 and a divisor of {HEADS} heads, {D}, {FF} and "
            f"{VOCAB}, got {world}"
        )
    import torch
    import torch.multiprocessing as mp

    from tensor_trace import Tracer
    from tensor_trace.torch import trace_module

    os.makedirs(out, exist_ok=True)
    paths = {
        "tp": os.path.join(out, "tp"),
        "ref": os.path.join(out, "ref"),
        "rules": os.path.join(out, "rules.toml"),
    }
    for p in (paths["tp"], paths["ref"]):
        if os.path.exists(p):
            raise FileExistsError(f"{p} exists: use an empty OUT directory")
    store = os.path.join(out, "gloo-store")
    ctx = mp.start_processes(
        _worker,
        args=(world, store, paths["tp"], bug),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the {world} ranks did not finish within {timeout} s: killed"
                )
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join(5)
        if os.path.exists(store):
            os.remove(store)

    weights = full_weights()
    model = build_block(weights, 0, 1, "none")
    tracer = Tracer(paths["ref"], values="*")
    with torch.no_grad(), trace_module(model, tracer=tracer):
        model(weights["x"])
    tracer.close()
    with open(paths["rules"], "w", encoding="utf-8") as f:
        f.write(RULES)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--bug", choices=BUGS, default="none")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    try:
        paths = run(args.out, args.world_size, args.bug, args.timeout)
    except (ValueError, FileExistsError, TimeoutError) as e:
        print(f"tp_reference.py: {e}", file=sys.stderr)
        return 2
    print(f"sharded run: {paths['tp']}\nreference:   {paths['ref']}\nrules:       {paths['rules']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
