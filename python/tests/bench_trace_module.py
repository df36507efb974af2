"""Measures what `trace_module` costs on a MiniLM-shaped BERT forward (not a test: no asserts).

    python python/tests/bench_trace_module.py [--tokens 128] [--repeats 7] [--threads 1]
        [--layout packed|files] [--dir DIR] [--background] [--breakdown]

Builds `BertModel` from a config with all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12
heads, intermediate 1536, vocab 30522) and random weights, then times one forward under
`torch.inference_mode()`: untraced, traced with every module hooked (mark-all), and traced
with a short include list (the embeddings and each layer's attention and layer outputs). Each
traced forward writes into a fresh directory under a temporary directory, in the given record
layout (`packed`, the default, or `files`: one file per record); `--dir` puts that temporary directory
elsewhere (on tmpfs, say, to take the file system's cost of creating files out); `--background`
has a background thread write the records (`Tracer(..., background=True)`). Prints the median
wall time and process CPU time of each and the traced/untraced ratios (CPU time is the steadier
figure on a loaded machine); the figures quoted in docs/PYTHON.md come from this script.
`--breakdown` adds mark-all cases that stop early: the hooks installed and removed, then an
untraced forward, the hooks run with the capture itself left out (a stand-in extension object
that records nothing), and the capture without the value sketch.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from tensor_trace import Tracer
from tensor_trace.torch import trace_module

INCLUDE = ["embeddings", "encoder.layer.*[0-9].attention.output", "encoder.layer.*[0-9].output"]


class _NoCapture:
    """Stands in for the extension's tracer: wants every name, records nothing."""

    def wants(self, name: str) -> bool:
        return True

    def record(self, *args) -> bool:
        return True

    def flush(self) -> None:
        pass


def tmp_fs(where: "str | None") -> str:
    """The directory the runs go into and its file system type (from /proc/mounts on Linux)."""
    path = Path(where or tempfile.gettempdir()).resolve()
    best, kind = Path("/"), "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            mount, fstype = line.split()[1:3]
            if path.is_relative_to(mount) and len(mount) >= len(str(best)):
                best, kind = Path(mount), fstype
    except OSError:
        pass
    return f"{path} ({kind})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--layout", choices=["packed", "files"], default="packed")
    ap.add_argument("--dir", default=None, help="where the temporary directory goes")
    ap.add_argument("--background", action="store_true", help="write records on a thread")
    ap.add_argument("--breakdown", action="store_true", help="also time mark-all's parts")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(1000, 30000, (1, args.tokens))
    mask = torch.ones_like(ids)

    def forward() -> None:
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)

    forward()  # warm-up
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        runs = iter(range(10**6))

        def traced(sketch=None, tracer=None, **kw):
            def run() -> dict:
                d = Path(tmp) / f"run{next(runs)}"
                t = tracer or Tracer(
                    d, layout=args.layout, sketch=sketch, background=args.background
                )
                with trace_module(model, tracer=t, **kw) as h:
                    forward()
                t.flush()  # a background writer's records count too
                return {"records": h.records, "modules": len(h.paths)}

            return run

        def hooks_only() -> dict:
            h = trace_module(model, tracer=Tracer(Path(tmp) / f"run{next(runs)}"))
            h.remove()
            forward()
            return {"records": 0, "modules": len(h.paths)}

        def untraced() -> dict:
            forward()
            return {"records": 0, "modules": 0}

        cases = {"untraced": untraced, "mark-all": traced(), "include": traced(include=INCLUDE)}
        if args.breakdown:
            cases["setup"] = hooks_only
            cases["no-capture"] = traced(tracer=Tracer._wrap(_NoCapture()))
            cases["no-sketch"] = traced(sketch=0)
        wall = {k: [] for k in cases}
        cpu = {k: [] for k in cases}
        info = {}
        for _ in range(args.repeats):  # interleaved, so drift hits every case alike
            for k, run in cases.items():
                w0, c0 = time.perf_counter(), time.process_time()
                info[k] = run()
                cpu[k].append(time.process_time() - c0)
                wall[k].append(time.perf_counter() - w0)
    w_base = statistics.median(wall["untraced"])
    c_base = statistics.median(cpu["untraced"])
    print(
        f"BertModel 6x384, {args.tokens} tokens, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.layout} layout"
        f"{' (background writer)' if args.background else ''} in {tmp_fs(args.dir)}, "
        f"median of {args.repeats}"
    )
    for k in cases:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        print(
            f"{k:10} wall {w * 1e3:8.1f} ms (x{w / w_base:5.2f})  "
            f"cpu {c * 1e3:8.1f} ms (x{c / c_base:5.2f})  "
            f"modules {info[k]['modules']:3}  records {info[k]['records']:3}"
        )


if __name__ == "__main__":
    main()
