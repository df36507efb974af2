"""tensor-trace for Python references: record named tensors through trace-core itself.

    from tensor_trace import dump_trace
    dump_trace("blk0/attn_norm", h, layer=0, stage="attn_norm", step=0)

With `TENSOR_TRACE_DIR` (or the seed's `BITNET_TRACE_DIR`) set, every call writes one record
into that directory. The records are written by trace-core, the Rust library every emitter of
the project uses, through the native extension `tensor_trace._native`: the same file names,
record fields, hashes, statistics, manifest lines and optional `.npy` values as a Rust or C++
engine, so `trace-diff` compares a Python reference run with an engine run directly. Unset,
`dump_trace` returns at once: the environment is read once, at the first call, and the answer
cached in a module-level flag (a disabled call never reaches the extension).

A PyTorch model needs no edits: `tensor_trace.torch.trace_module(model)` records every
submodule's output through forward hooks (`pip install tensor-trace[torch]`). Importing
`tensor_trace` itself never imports torch.

See `docs/PYTHON.md` in the repository for the details and the three-line recipe.
"""

from __future__ import annotations

import atexit
from typing import Any, Optional

from . import _native
from ._errors import ConfigError, TraceError
from ._native import (
    ENV_APPEND,
    ENV_ASYNC,
    ENV_DIR,
    ENV_DIR_COMPAT,
    ENV_FILTER,
    ENV_LAYOUT,
    ENV_RANK,
    ENV_VALUES,
    ENV_VALUES_AT,
    ENV_WORLD_SIZE,
    FORMAT_VERSION,
    RANK_FILE,
    NameFilter,
    rank_dir_name,
    sanitize,
)
from ._tracer import BF16, Fingerprint, Stats, Tracer, fingerprint_array, _flush_background

__all__ = [
    "BF16",
    "ConfigError",
    "ENV_APPEND",
    "ENV_ASYNC",
    "ENV_DIR",
    "ENV_DIR_COMPAT",
    "ENV_FILTER",
    "ENV_LAYOUT",
    "ENV_RANK",
    "ENV_VALUES",
    "ENV_VALUES_AT",
    "ENV_WORLD_SIZE",
    "RANK_FILE",
    "rank_dir_name",
    "FORMAT_VERSION",
    "Fingerprint",
    "NameFilter",
    "Stats",
    "TraceError",
    "Tracer",
    "dump_trace",
    "enabled",
    "fingerprint_array",
    "global_tracer",
    "sanitize",
]

__version__ = "0.1.0"

# The disabled fast path: once the environment said "off", `dump_trace` is one global load.
_disabled = False
# None until the first call; then a Tracer, or the ConfigError every call raises.
_global: Optional[object] = None


def dump_trace(
    name: str,
    array: Any,
    *,
    layer: Optional[int] = None,
    stage: Optional[str] = None,
    step: Optional[int] = None,
) -> None:
    """Records `array` under `name` when tracing is enabled (the seed's `dump_trace`).

    `step` is the record's `seq` (0 = prefill, 1+ = decode step), `layer` -1 for
    embeddings/logits and 0+ for transformer layers, `stage` the point within the layer.
    Raises `ConfigError` on every call when the environment holds an invalid setting.
    """
    if _disabled:
        return
    tracer = global_tracer()
    if tracer is not None:
        tracer.record(name, array, step=step, layer=layer, stage=stage)


def enabled() -> bool:
    """Whether tracing is on (reads the environment on the first call only)."""
    if _disabled:
        return False
    return _init() is not None


def global_tracer() -> Optional[Tracer]:
    """The tracer configured from the environment, None when tracing is off."""
    if _disabled:
        return None
    state = _init()
    if isinstance(state, ConfigError):
        raise ConfigError(state.setting, state.value, state.problem)
    return state


def _init() -> Optional[object]:
    global _disabled, _global
    if _global is None:
        try:
            native = _native.Tracer.from_env()
        except ConfigError as e:
            _global = e
            return _global
        if native is None:
            _disabled = True
            return None
        _global = Tracer._wrap(native)
    return _global


@atexit.register
def _flush_at_exit() -> None:
    # With a background writer (TENSOR_TRACE_ASYNC=1, `Tracer(..., background=True)`) records
    # may still be queued: they reach the disk before exit.
    if isinstance(_global, Tracer):
        _global.flush()
    _flush_background()


def _reset() -> None:
    """Forgets the environment read (for tests): the next call reads it again."""
    global _disabled, _global
    if isinstance(_global, Tracer):
        _global.close()
    _disabled = False
    _global = None
