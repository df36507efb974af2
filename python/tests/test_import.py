"""Importing tensor_trace must never import torch (torch is an optional extra)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_tensor_trace_does_not_import_torch():
    code = (
        "import sys, tensor_trace\n"
        "tensor_trace.dump_trace('x', [1.0])\n"
        "tensor_trace.fingerprint_array([1.0, 2.0])\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
