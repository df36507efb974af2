"""Measures `dump_trace` of a 16M-element float32 array against trace-core's Rust capture of the
same bytes (not a test: no asserts).

    python python/tests/bench_dump_trace.py [--elements 16777216] [--repeats 7]

Each repeat records the same array twice, interleaved: once from Python (`Tracer.record`, the
call `dump_trace` makes: the array handed to the extension by address and strides, hashed,
reduced and written by trace-core with the GIL released) and once by trace-core's Rust
`Tracer::record` on the same memory with no Python in the loop
(`tensor_trace._native._rust_record_seconds`). Both write one record file into a fresh
directory. Prints the medians and the Python/Rust ratio; the figure quoted in docs/PYTHON.md
comes from this script.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import tensor_trace
from tensor_trace import Tracer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal(args.elements, dtype=np.float32)
    address = x.__array_interface__["data"][0]
    python_s, rust_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            t = Tracer(Path(tmp) / f"py{i}")
            start = time.perf_counter()
            t.record("x", x)
            python_s.append(time.perf_counter() - start)
            rust_dir = str(Path(tmp) / f"rust{i}")
            rust_s.append(tensor_trace._native._rust_record_seconds(rust_dir, address, x.size))
    py, rust = statistics.median(python_s), statistics.median(rust_s)
    print(f"dump_trace float32 x {args.elements:,}, median of {args.repeats}")
    print(f"python  {py * 1e3:8.1f} ms  ({x.nbytes / py / 1e9:5.2f} GB/s)")
    print(f"rust    {rust * 1e3:8.1f} ms  ({x.nbytes / rust / 1e9:5.2f} GB/s)")
    print(f"python / rust = {py / rust:.2f}")


if __name__ == "__main__":
    main()
