"""Accuracy of the value sketch's error estimate against the exact relative L2 error.

Run: `target/python-venv/bin/python python/tests/bench_sketch_accuracy.py` (prints the table
of docs/FORMAT.md). The sketch is the one trace-core records (through the Python package), the
estimate the diff's: ||S(a) - S(b)|| / ||b||, with the documented range at 2 standard deviations
of the squared norm, est / sqrt(1 ± 2 sqrt(2/k)).
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from tensor_trace import Tracer

K = 256
TRIALS = 40


def sketch(values: np.ndarray, k: int) -> np.ndarray:
    """The k buckets trace-core records for `values`."""
    with tempfile.TemporaryDirectory() as tmp:
        Tracer(tmp, layout="files", sketch=k).record("x", values)
        record = json.loads((Path(tmp) / "x.trace").read_text())
    return np.frombuffer(base64.b64decode(record["sketch"]["f64le"]), "<f8")


def gelu_erf(x):
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def cases(rng: np.random.Generator, trial: int):
    t, d = 128, 384
    b = rng.standard_normal((t, d)).astype(np.float32)
    noise = rng.standard_normal((t, d)).astype(np.float32)
    yield "i.i.d. noise 1e-4", b, b + np.float32(1e-4) * noise
    col = np.zeros((t, d), np.float32)
    col[:, (7 + trial) % d] = noise[:, 0]
    yield "one feature column", b, b + np.float32(1e-2) * col
    row = np.zeros((t, d), np.float32)
    row[trial % t, :] = noise[0, :]
    yield "one token row", b, b + np.float32(1e-2) * row
    x = (rng.standard_normal((t, 4 * d)) * 1.5).astype(np.float32)
    yield "gelu vs gelu-tanh", gelu_erf(x).astype(np.float32), gelu_tanh(x).astype(np.float32)
    yield "f32 rounding (f16 copy)", b, b.astype(np.float16).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(25)
    sigma = 2.0 * math.sqrt(2.0 / K)
    low, high = 1.0 / math.sqrt(1.0 + sigma), 1.0 / math.sqrt(1.0 - sigma)
    ratios: dict = {}
    inside: dict = {}
    exacts: dict = {}
    for trial in range(TRIALS):
        for name, b, a in cases(rng, trial):
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            exact = np.linalg.norm(a64 - b64) / np.linalg.norm(b64)
            est = np.linalg.norm(sketch(a, K) - sketch(b, K)) / np.linalg.norm(b64)
            ratios.setdefault(name, []).append(est / exact)
            inside.setdefault(name, []).append(est * low <= exact <= est * high)
            exacts.setdefault(name, []).append(exact)
    print(f"k = {K}, {TRIALS} trials per case; documented range: exact in est x [{low:.3f}, {high:.3f}]")
    print("| case | exact rel. L2 (median) | est/exact median | 5th..95th pct | max abs dev | exact within range |")
    print("|---|---|---|---|---|---|")
    for name, r in ratios.items():
        r = np.array(r)
        print(
            f"| {name} | {np.median(exacts[name]):.2e} | {np.median(r):.3f} | "
            f"{np.percentile(r, 5):.3f}..{np.percentile(r, 95):.3f} | {np.max(np.abs(r - 1)):.3f} | "
            f"{100 * np.mean(inside[name]):.0f}% |"
        )


if __name__ == "__main__":
    main()
