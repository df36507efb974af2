"""The tracer: turns Python arrays into element buffers for trace-core's `Tracer` (native).

Everything about a record (filters, fingerprint, statistics, file names, layouts, ranks, raw
values) is trace-core's, reached through the extension `tensor_trace._native`
(`crates/trace-py`). This module only turns Python objects into what trace-core reads: the
address of the first element, a dtype name, the shape and the strides in elements, without
copying the data.
"""

from __future__ import annotations

import json
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from . import _native
from ._errors import ConfigError

__all__ = ["BF16", "Fingerprint", "Stats", "Tracer", "as_trace_input", "fingerprint_array"]

# NumPy storage (kind, itemsize) -> the record's dtype name.
_DTYPES = {
    ("f", 4): "F32",
    ("f", 8): "F64",
    ("f", 2): "F16",
    ("i", 8): "I64",
    ("i", 4): "I32",
    ("u", 4): "U32",
    ("u", 1): "U8",
}
_SUPPORTED = "float32, float64, float16, bfloat16, int64, int32, uint32, uint8"


class BF16:
    """bfloat16 values given as their raw 16-bit patterns (any integer array of 16-bit items).

    NumPy has no bfloat16; use this for bits read from safetensors or produced by
    `torch_tensor.view(torch.int16)`. Torch bfloat16 tensors are recognized without it.
    """

    __slots__ = ("bits",)

    def __init__(self, bits: Any) -> None:
        arr = np.asarray(bits)
        if arr.dtype.itemsize != 2 or arr.dtype.kind not in "iu":
            raise TypeError(f"BF16 wants 16-bit integer bit patterns, got dtype {arr.dtype}")
        self.bits = arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def as_trace_input(array: Any) -> Tuple[str, np.ndarray]:
    """(dtype name, NumPy array in native byte order) of anything array-like, not copied.

    Accepts NumPy arrays and scalars, objects exposing `__array__` (torch tensors are detached
    and moved to the CPU first, without importing torch), `BF16` bit patterns, torch bfloat16
    tensors and NumPy `bfloat16` from ml_dtypes (read as raw bits). The array keeps its strides
    (a transposed or sliced view is read in place). Other dtypes, including bool, int8, int16,
    uint16, uint64 and complex, are refused: trace-core defines no conversion for them, so
    convert explicitly (and knowingly) first.
    """
    if isinstance(array, BF16):
        return "BF16", array.bits
    if type(array).__module__.split(".")[0] == "torch" and hasattr(array, "detach"):
        t = array.detach()
        if getattr(t, "device", None) is not None and str(t.device) != "cpu":
            t = t.cpu()  # the one copy a device tensor needs
        if str(t.dtype) == "torch.bfloat16":
            return "BF16", t.view(sys.modules["torch"].int16).numpy()
        array = t.numpy()
    arr = np.asarray(array)
    dt = arr.dtype
    # `dt.type.__name__`, not `dt.name`: numpy computes `name` in Python, per call.
    if dt.type.__name__ == "bfloat16" and dt.itemsize == 2:  # ml_dtypes (JAX, TensorFlow)
        return "BF16", arr.view(np.uint16)
    name = _DTYPES.get((dt.kind, dt.itemsize))
    if name is None:
        raise TypeError(
            f"tensor-trace cannot record dtype {dt} (supported: {_SUPPORTED}); "
            "convert it explicitly first"
        )
    if not dt.isnative:
        arr = arr.astype(dt.newbyteorder("="))
    return name, arr


def _buffer(array: Any) -> Tuple[str, np.ndarray, int, Tuple[int, ...], Tuple[int, ...]]:
    """(dtype name, the array to keep alive, data address, shape, strides in elements)."""
    dtype, arr = as_trace_input(array)
    size = arr.itemsize
    if any(s % size for s in arr.strides):
        # A view into a record array, say: strides that are not whole elements. Rare; copied.
        arr = np.ascontiguousarray(arr)
    address = arr.__array_interface__["data"][0]
    return dtype, arr, address, arr.shape, tuple(s // size for s in arr.strides)


@dataclass(frozen=True)
class Stats:
    """Statistics over the finite values (None when there are none), as a record holds them."""

    min: Optional[float]
    max: Optional[float]
    mean: Optional[float]
    std: Optional[float]
    nan_count: int
    inf_count: int


@dataclass(frozen=True)
class Fingerprint:
    """What a record says about a tensor's values."""

    blake3: str
    num_elements: int
    rms: Optional[float]
    stats: Stats


def fingerprint_array(array: Any) -> Fingerprint:
    """The fingerprint a record would carry for `array` (trace-core's), without writing anything."""
    dtype, arr, address, shape, strides = _buffer(array)
    # `arr` stays referenced here until the call returns, so the address stays valid.
    blake3, rms, n, stats = _native.fingerprint(dtype, address, shape, strides)
    fields = json.loads(stats)
    return Fingerprint(blake3, n, rms, Stats(**{k: fields.get(k) for k in Stats.__annotations__}))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_context(step: Any, layer: Any, stage: Any) -> None:
    if step is not None and not (_is_int(step) and 0 <= int(step) < 2**64):
        raise TypeError(f"step must be a non-negative integer (the record's seq), got {step!r}")
    if layer is not None and not (_is_int(layer) and -(2**63) <= int(layer) < 2**63):
        raise TypeError(f"layer must be an integer (-1 for embeddings/logits), got {layer!r}")
    if stage is not None and not isinstance(stage, str):
        raise TypeError(f"stage must be a string, got {type(stage).__name__}")


def _check_text(what: str, s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} {s!r} is not valid Unicode text: {e}") from None


def _setting(name: str, value: Any, wanted: type, expected: str) -> None:
    if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")


# Tracers made with `background=True`, flushed at interpreter exit (`_flush_background`).
_BACKGROUND: "weakref.WeakSet[Tracer]" = weakref.WeakSet()


def _flush_background() -> None:
    """Flushes every live tracer made with `background=True` (the package does at exit); a
    tracer that fails does not keep the others from flushing, and the first error is raised."""
    failed: Optional[BaseException] = None
    for tracer in list(_BACKGROUND):
        try:
            tracer.flush()
        except Exception as e:  # noqa: BLE001 - re-raised below
            failed = failed or e
    if failed is not None:
        raise failed


class Tracer:
    """Captures named tensors into a directory through trace-core's `Tracer`.

    >>> t = Tracer("/tmp/trace", values="logits")       # doctest: +SKIP
    >>> t.record("blk0/attn_norm", h, step=0, layer=0)  # doctest: +SKIP

    `rank` is stamped into every record; with `world_size` above 1 (rank then required, below
    it) the records go into `dir/rank-{rank}` with a `rank.json`, one directory per process of a
    multi-process run (trace-core's `ranks`). `sketch` sets the value sketch's buckets (0 = none; default `TENSOR_TRACE_SKETCH`'s 256, see
    docs/FORMAT.md). A ConfigError names the bad argument.
    `background=True` writes the records on a background thread (trace-core's writer, as
    `TENSOR_TRACE_ASYNC=1` does for the environment's tracer): `record` returns once the tensor
    is hashed and reduced, and the file is written beside the caller's next computation. The
    price: a record still queued when the process dies is lost. `flush()` or `close()` waits
    for the queue, and the package flushes every such tracer at interpreter exit.
    Thread-safe: several threads may record on one tracer at once.
    """

    __slots__ = ("_native", "__weakref__")

    def __init__(
        self,
        dir: "str | os.PathLike[str]",
        *,
        filter: Optional[str] = None,
        values: Optional[str] = None,
        values_at: Optional[str] = None,
        append: bool = False,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        layout: str = "packed",
        sketch: Optional[int] = None,
        background: bool = False,
    ) -> None:
        for name, value in [("filter", filter), ("values", values), ("values_at", values_at)]:
            _setting(name, value, str, "a string of comma-separated items")
        _setting("layout", layout, str, "'files' or 'packed'")
        if not isinstance(background, bool):
            raise TypeError(f"background must be True or False, got {background!r}")
        for name, value in [("rank", rank), ("world_size", world_size), ("sketch", sketch)]:
            _setting(name, value, (int, np.integer), "a non-negative integer")
            if value is not None and not 0 <= int(value) < 2**32:
                raise ConfigError(name, str(value), "expected a non-negative integer below 2**32")
        self._native = _native.Tracer(
            os.fspath(dir),
            filter=filter,
            values=values,
            values_at=values_at,
            append=bool(append),
            rank=None if rank is None else int(rank),
            world_size=None if world_size is None else int(world_size),
            layout=layout,
            sketch=None if sketch is None else int(sketch),
            background=background,
        )
        if background:
            _BACKGROUND.add(self)

    @classmethod
    def _wrap(cls, native: Any) -> "Tracer":
        self = cls.__new__(cls)
        self._native = native
        return self

    @property
    def dir(self) -> str:
        """The directory records go into (`dir/rank-{rank}` in a multi-process run)."""
        return os.fspath(self._native.dir)

    def wants(self, name: str) -> bool:
        """Whether `name` passes the filter (callers may skip preparing a tensor otherwise)."""
        return self._native.wants(name)

    def record(
        self,
        name: str,
        array: Any,
        *,
        step: Optional[int] = None,
        layer: Optional[int] = None,
        stage: Optional[str] = None,
    ) -> bool:
        """Captures `array` under `name`; returns False when the filter skipped it.

        `step` is the record's `seq` (0 = prefill, 1+ = decode step), `layer` -1 for
        embeddings/logits and 0+ for transformer layers, `stage` the point within the layer.
        The record is on disk when this returns (with a background writer, `background=True`
        or `TENSOR_TRACE_ASYNC=1`: at `flush`, `close` or exit).
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        _check_text("name", name)
        _check_context(step, layer, stage)
        if stage is not None:
            _check_text("stage", stage)
        native = self._native
        if not native.wants(name):
            return False
        dtype, arr, address, shape, strides = _buffer(array)
        # `arr` stays referenced here until the call returns, so the address stays valid.
        return native.record(
            name,
            dtype,
            address,
            shape,
            strides,
            None if step is None else int(step),
            None if layer is None else int(layer),
            stage,
        )

    def flush(self) -> None:
        """Waits until every record is on disk (only a background writer ever waits)."""
        self._native.flush()

    def close(self) -> None:
        """Flushes; kept for parity with the earlier Python emitter (files are closed per write)."""
        self._native.flush()

