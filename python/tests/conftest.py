"""Shared fixtures: a clean environment and a fresh global tracer for every test."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

import tensor_trace

GOLDEN = Path(__file__).resolve().parents[2] / "testdata" / "golden"

_ENV = [
    "TENSOR_TRACE_WORLD_SIZE",
    "RANK",
    "WORLD_SIZE",
    tensor_trace.ENV_DIR,
    tensor_trace.ENV_DIR_COMPAT,
    tensor_trace.ENV_FILTER,
    tensor_trace.ENV_VALUES,
    tensor_trace.ENV_VALUES_AT,
    tensor_trace.ENV_APPEND,
    tensor_trace.ENV_ASYNC,
    tensor_trace.ENV_RANK,
    tensor_trace.ENV_LAYOUT,
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in _ENV:
        monkeypatch.delenv(k, raising=False)
    tensor_trace._reset()
    yield monkeypatch
    tensor_trace._reset()


def read_records(d: Path) -> dict:
    return {p.name: json.loads(p.read_text("utf-8")) for p in d.glob("*.trace")}


def read_packed(d: Path) -> list:
    """The records of a packed directory's `records.jsonl`, in capture order."""
    text = (d / "records.jsonl").read_text("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n") if line]


def read_run(d: Path) -> list:
    """Every record of a run of either layout, in capture order."""
    if (d / "records.jsonl").exists():
        return read_packed(d)
    return [json.loads((d / e["file"]).read_text("utf-8")) for e in read_manifest(d)]


def read_manifest(d: Path) -> list:
    # split("\n"), not splitlines(): names may hold U+0085 or U+2028 raw, as serde_json writes them.
    text = (d / "manifest.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


_STORAGE = {
    "F32": "<f4",
    "F64": "<f8",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "U32": "<u4",
    "U8": "u1",
}


def golden_inputs() -> list:
    """(entry, array-like) for every golden tensor, in capture order."""
    doc = json.loads((GOLDEN / "inputs.json").read_text("utf-8"))
    assert doc["format"] == 1
    out = []
    for t in doc["tensors"]:
        raw = np.frombuffer(bytes.fromhex(t["data"]), dtype=_STORAGE[t["dtype"]])
        arr = raw.reshape(t["shape"])
        out.append((t, tensor_trace.BF16(arr) if t["dtype"] == "BF16" else arr))
    return out


def _golden_doc() -> dict:
    return json.loads((GOLDEN / "inputs.json").read_text("utf-8"))


def golden_values_filter() -> str:
    """`TENSOR_TRACE_VALUES` of the golden run (values by name)."""
    return _golden_doc()["values"]


def golden_values_at() -> str:
    """`TENSOR_TRACE_VALUES_AT` of the golden run (values by occurrence)."""
    return _golden_doc()["values_at"]


@pytest.fixture
def trace_dir(tmp_path) -> Path:
    return tmp_path / "trace"


def env_dir(monkeypatch, d: os.PathLike, layout: Optional[str] = None) -> None:
    """Enables tracing into `d`; `layout` sets `TENSOR_TRACE_LAYOUT` (unset: the default, packed)."""
    monkeypatch.setenv(tensor_trace.ENV_DIR, os.fspath(d))
    if layout is not None:
        monkeypatch.setenv(tensor_trace.ENV_LAYOUT, layout)
