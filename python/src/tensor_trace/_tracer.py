"""The tracer: accepts arrays, filters names, fingerprints and hands records to the sink."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Tuple

import numpy as np

from ._config import (
    Config,
    ConfigError,
    NameFilter,
    TraceError,
    ValuesAt,
    parse_layout,
)
from ._fingerprint import canonical_f32, fingerprint
from ._ranks import from_settings, parse_rank, parse_world_size
from ._sink import DirSink

__all__ = ["BF16", "Tracer", "as_trace_input"]

FORMAT_VERSION = 1

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


def as_trace_input(array: Any) -> Tuple[str, Tuple[int, ...], np.ndarray]:
    """(dtype name, shape, C-contiguous NumPy storage) of anything array-like.

    Accepts NumPy arrays and scalars, objects exposing `__array__` (torch tensors are detached
    and moved to the CPU first, without importing torch), `BF16` bit patterns, torch bfloat16
    tensors and NumPy `bfloat16` from ml_dtypes (read as raw bits). Other dtypes, including
    bool, int8, int16, uint16, uint64 and complex, are refused: trace-core defines no
    conversion for them, so convert explicitly (and knowingly) first.
    """
    if isinstance(array, BF16):
        bits = np.asarray(array.bits, order="C").view(np.uint16)
        return "BF16", tuple(bits.shape), bits
    if type(array).__module__.split(".")[0] == "torch" and hasattr(array, "detach"):
        t = array.detach()
        if getattr(t, "device", None) is not None and str(t.device) != "cpu":
            t = t.cpu()
        if str(t.dtype) == "torch.bfloat16":
            torch = sys.modules["torch"]
            bits = t.contiguous().view(torch.int16).numpy().view(np.uint16)
            return "BF16", tuple(bits.shape), np.asarray(bits, order="C")
        array = t.numpy()
    arr = np.asarray(array)
    dt = arr.dtype
    if dt.name == "bfloat16" and dt.itemsize == 2:  # ml_dtypes (JAX, TensorFlow)
        bits = np.asarray(arr, order="C").view(np.uint16)
        return "BF16", tuple(bits.shape), bits
    name = _DTYPES.get((dt.kind, dt.itemsize))
    if name is None:
        raise TypeError(
            f"tensor-trace cannot record dtype {dt} (supported: {_SUPPORTED}); "
            "convert it explicitly first"
        )
    if not dt.isnative:
        arr = arr.astype(dt.newbyteorder("="))
    return name, tuple(int(d) for d in arr.shape), np.asarray(arr, order="C")


def _check_context(step: Any, layer: Any, stage: Any) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if step is not None and not (is_int(step) and 0 <= int(step) < 2**64):
        raise TypeError(f"step must be a non-negative integer (the record's seq), got {step!r}")
    if layer is not None and not (is_int(layer) and -(2**63) <= int(layer) < 2**63):
        raise TypeError(f"layer must be an integer (-1 for embeddings/logits), got {layer!r}")
    if stage is not None and not isinstance(stage, str):
        raise TypeError(f"stage must be a string, got {type(stage).__name__}")


class Tracer:
    """Captures named tensors into a directory, as trace-core's `Tracer` does.

    >>> t = Tracer("/tmp/trace", values="logits")       # doctest: +SKIP
    >>> t.record("blk0/attn_norm", h, step=0, layer=0)  # doctest: +SKIP

    `rank` is stamped into every record; with `world_size` above 1 (rank then required, below
    it) the records go into `dir/rank-{rank}` with a `rank.json`, one directory per process of a
    multi-process run (trace-core's `ranks`). A ConfigError names the bad argument.
    """

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
    ) -> None:
        config = Config(dir=os.fspath(dir), append=append, layout=parse_layout("layout", layout))
        if filter is not None:
            config.filter = NameFilter.parse(filter, "filter")
        if values is not None:
            config.values = NameFilter.parse(values, "values")
        if values_at is not None:
            config.values_at = ValuesAt.parse(values_at, "values_at")
        if rank is not None:
            config.rank = parse_rank("rank", str(rank))
        if world_size is not None:
            config.world_size = parse_world_size("world_size", str(world_size))
        self._init(config)

    @classmethod
    def from_config(cls, config: Config) -> "Tracer":
        if config.dir is None:
            raise ConfigError("dir", "", "the Python emitter writes into a directory")
        self = cls.__new__(cls)
        self._init(config)
        return self

    def _init(self, config: Config) -> None:
        self.config = config
        # World size above 1: this process writes into DIR/rank-{rank} (see _ranks).
        info = from_settings(config.rank, config.world_size, "rank", "world_size")
        self._sink = DirSink(
            info.dir(config.dir) if info is not None else config.dir,
            config.append,
            keeps_values=self._keeps_values,
            on_open=info.write if info is not None else None,
            layout=config.layout,
        )

    @property
    def dir(self) -> str:
        return self._sink.dir

    def _keeps_values(self, name: str, occurrence: int) -> bool:
        # The sink asks once it has numbered the occurrence (trace-core's `ValuesChoice::keeps`).
        return self.config.values.matches(name) or self.config.values_at.selects(name, occurrence)

    def wants(self, name: str) -> bool:
        """Whether `name` passes the filter (callers may skip preparing a tensor otherwise)."""
        return self.config.filter.matches(name)

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
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"name {name!r} is not valid Unicode text: {e}") from None
        _check_context(step, layer, stage)
        if stage is not None:
            try:
                stage.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"stage {stage!r} is not valid Unicode text: {e}") from None
        if not self.wants(name):
            return False
        dtype, shape, storage = as_trace_input(array)
        converted = canonical_f32(dtype, storage)
        fp = fingerprint(converted)
        record: dict = {
            "name": name,
            "shape": list(shape),
            "dtype": dtype,
            "blake3": fp.blake3,
            "rms": fp.rms,
            "num_elements": fp.num_elements,
        }
        if step is not None:
            record["seq"] = int(step)
        if layer is not None:
            record["layer"] = int(layer)
        if stage is not None:
            record["stage"] = stage
        record["format_version"] = FORMAT_VERSION
        # Placeholders in trace-core's field order; the sink assigns them.
        record["index"] = None
        record["occurrence"] = None
        if self.config.rank is not None:
            record["rank"] = self.config.rank
        record["stats"] = fp.stats.to_json()
        # Values may be saved when the name passes the values filter or some of its occurrences
        # are selected (values_at); the sink decides, knowing the occurrence.
        may_keep = self.config.values.matches(name) or self.config.values_at.mentions(name)
        values = converted.reshape(shape) if may_keep else None
        self._sink.write(record, values)
        return True

    def flush(self) -> None:
        """Records are on disk when `record` returns; kept for parity with trace-core."""

    def close(self) -> None:
        self._sink.close()
