"""Trace any PyTorch module without editing it: forward hooks that record every output.

    from tensor_trace.torch import trace_module
    with trace_module(model):
        model(input_ids)

`trace_module` hooks the model's submodules and records each hooked module's output, in the
order the modules finish, through the same `Tracer` (and so the same sink, file names, record
fields and bytes) as `dump_trace`. Importing `tensor_trace` never imports torch; this module
does, so install it with `pip install tensor-trace[torch]`.

Record names (`P` is the module path from `model.named_modules()`, `""` for `model` itself):

- a tensor output: `P`;
- a tuple or list at name `N`: its first tensor element is `N`, every other tensor element `i`
  is `N/i` (a nested tuple at index 2 names its first tensor `N/2`, its others `N/2/j`);
- a dict or `ModelOutput` at name `N`: the value under key `k` (a string or integer) is `N/k`;
- with `inputs=True`, the positional arguments as a tuple at `P/input` (the first tensor
  argument is `P/input`, the argument at position `i` otherwise `P/input/i`) and keyword
  argument `k` at `P/input/k`, recorded when the module is called, before its children;
- the root module (path `""`) names a tensor or tuple output `output` (`output/1`, ...), a
  dict or `ModelOutput` value by its key alone (`logits`, `last_hidden_state`), its inputs
  `input`, `input/1`, `input/input_ids`.

The `/` before a part follows the project's record names (`blk0/attn_out`): it never reads as
a child module's path (those join with `.`), `*` in `TENSOR_TRACE_FILTER` crosses it, and the
sink writes it as `_` in file names.

Anything that is not a tensor (None, caches, ints, strings) is skipped, as are tensors whose
dtype trace-core does not convert (bool, int8, int16, uint16, uint64, complex, float8: see
`SKIPPED_DTYPES`) and tensors without data (meta, sparse, nested): never an error.

Context fields: `layer` is the integer path component directly under a `ModuleList`
(`model.layers.3.self_attn.o_proj` -> 3; the outermost one when lists nest), else -1; `stage`
is the last `.`-separated component of the record name (`o_proj`, `self_attn/1`, `logits`);
`step` (the record's `seq`) is the number of earlier forward calls of `model` itself since the
handle was made or `reset()`: 0 for the first call, so `generate()` gives 0 for the prefill
and 1, 2, ... for the decode steps.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from . import global_tracer
from ._errors import ConfigError
from ._native import NameFilter
from ._tracer import Tracer

__all__ = ["INPUT", "ROOT_OUTPUT", "SEP", "SKIPPED_DTYPES", "TraceHandle", "trace_module"]

#: The name of the root module's output (its path is the empty string).
ROOT_OUTPUT = "output"
#: The name part for a module's inputs.
INPUT = "input"
#: Separator before an output part (tuple index, dict key, input): module paths join with `.`,
#: so a `/` part never reads as a child module's path.
SEP = "/"

# The tensor dtypes trace-core takes, by the record's dtype name (bfloat16 and float16 as bits).
_DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
}
if hasattr(torch, "uint32"):
    _DTYPE_NAMES[torch.uint32] = "U32"

#: Tensor dtypes the hooks skip silently (trace-core defines no conversion for them; record
#: them with `dump_trace` after an explicit, knowing conversion).
SKIPPED_DTYPES = (
    "bool, int8, int16, uint16, uint64, complex and float8 types (anything but float32, "
    "float64, float16, bfloat16, int64, int32, uint32, uint8)"
)

# Nesting depth followed into tuples, lists and dicts of an output (a guard, not a feature).
_MAX_DEPTH = 8

Globs = Union[str, Iterable[str], None]


def _as_filter(globs: Union[str, List[str]], setting: str, negation: bool) -> NameFilter:
    """A string is a comma-separated list as in TENSOR_TRACE_FILTER; a list holds one glob per
    item (so `{a,b}` alternatives work there)."""
    items = globs.split(",") if isinstance(globs, str) else list(globs)
    for g in items:
        if not isinstance(g, str):
            raise TypeError(f"{setting} globs must be strings, got {type(g).__name__} {g!r}")
    shown = globs if isinstance(globs, str) else ",".join(items)
    items = [g.strip() for g in items if g.strip()]
    if not items:
        raise ConfigError(setting, shown, "expected at least one glob over module paths")
    negated = [g for g in items if g.startswith("!")]
    if negated and not negation:
        raise ConfigError(
            setting, shown, f"expected plain globs, got {negated[0]!r} (`!glob` belongs in include)"
        )
    return NameFilter.from_globs(items, setting, shown)


def _path_filter(include: Globs, exclude: Globs) -> "_PathFilter":
    # In a list, "" (the root's path as `named_modules()` spells it) selects the root module;
    # in a comma-separated string empty parts are skipped, as in TENSOR_TRACE_FILTER.
    root = isinstance(include, list) and "" in include
    if root:
        include = [g for g in include if g != ""]
    if root and not include:
        inc_filter = NameFilter.none()
    elif include is not None:
        inc_filter = _as_filter(include, "include", negation=True)
    else:
        inc_filter = NameFilter.all()
    exc_filter = _as_filter(exclude, "exclude", negation=False) if exclude is not None else None
    return _PathFilter(inc_filter, exc_filter, root)


class _PathFilter:
    def __init__(self, include: NameFilter, exclude: Optional[NameFilter], root: bool) -> None:
        self.include = include
        self.exclude = exclude
        self.root = root

    def matches(self, path: str) -> bool:
        if not (self.include.matches(path) or (self.root and path == "")):
            return False
        return self.exclude is None or not self.exclude.matches(path)


def _layer_of(path: str, lists: set) -> int:
    """The integer component directly under a ModuleList (the outermost), else -1."""
    parts = path.split(".") if path else []
    for i, part in enumerate(parts):
        if part.isascii() and part.isdigit() and ".".join(parts[:i]) in lists:
            return int(part)
    return -1


def _child(name: str, part: str, is_index: bool) -> str:
    """The name of a part (`/k` or `/i`) of the value named `name`."""
    if name:
        return f"{name}{SEP}{part}"
    # The root's value: dict keys stand alone, sequence elements hang off `output`.
    return f"{ROOT_OUTPUT}{SEP}{part}" if is_index else part


def _leaf(name: str) -> str:
    return name if name else ROOT_OUTPUT


def _walk(value: Any, name: str, out: List[Tuple[str, torch.Tensor]], depth: int = 0) -> None:
    """Appends (record name, tensor) for every tensor in `value`, by the naming rule (tensors
    whose dtype or kind is skipped included: `_described` drops them)."""
    if isinstance(value, torch.Tensor):
        out.append((_leaf(name), value))
        return
    if depth >= _MAX_DEPTH:
        return
    if isinstance(value, Mapping):  # dicts and transformers' ModelOutput (an OrderedDict)
        for k, v in value.items():
            # String and integer keys name their value; other keys (tuples, objects) are skipped.
            if isinstance(k, (str, int)) and not isinstance(k, bool):
                _walk(v, _child(name, str(k), False), out, depth + 1)
        return
    if isinstance(value, (tuple, list)):
        first = True
        for i, v in enumerate(value):
            if first and isinstance(v, torch.Tensor):
                first = False
                _walk(v, name, out, depth + 1)
            else:
                _walk(v, _child(name, str(i), True), out, depth + 1)


def _described(t: torch.Tensor) -> Optional[Tuple[str, torch.Tensor]]:
    """(record dtype name, a plain CPU tensor with `t`'s values) to hand trace-core by address,
    shape and strides in elements; None for a tensor the hooks skip. Only a tensor on another
    device is copied (to the host, once); bfloat16 and float16 are read as raw bits."""
    dtype = _DTYPE_NAMES.get(t.dtype)
    if dtype is None or t.layout != torch.strided or t.is_nested:
        return None
    if type(t) is not torch.Tensor:
        t = _plain(t)
    if not t.is_cpu:
        if t.is_meta:
            return None
        t = t.detach().cpu()
    if t.is_neg():  # a lazily negated view: its memory holds the values' negation
        t = t.resolve_neg()
    return dtype, t


def _stage(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A detached plain tensor, so the emitter's conversion (CPU copy, bf16 bits) applies."""
    t = t.detach()
    if type(t) is not torch.Tensor:
        t = t.as_subclass(torch.Tensor)
    return t


class TraceHandle:
    """The hooks `trace_module` installed: a context manager, and `.remove()`.

    Hooks are removed when the `with` block exits, normally or by an exception, or by
    `remove()` (idempotent). `step` is the `seq` the next records get, `calls` the forward
    calls of the top module seen since creation or `reset()`.
    """

    def __init__(
        self,
        model: nn.Module,
        tracer: Optional[Tracer],
        paths: Tuple[str, ...],
        inputs: bool,
    ) -> None:
        self.model = model
        #: The tracer records go to; None when tracing is off (the handle then does nothing).
        self.tracer = tracer
        #: Paths of the modules whose outputs are recorded, in `named_modules()` order.
        self.paths = paths
        self.inputs = inputs
        self._calls = 0
        self._step = 0
        self._handles: list = []
        #: Records written through this handle (those the tracer's own filter kept).
        self.records = 0

    @property
    def step(self) -> int:
        """The `seq` of the current (or last) forward call of the top module."""
        return self._step

    @property
    def calls(self) -> int:
        """Forward calls of the top module since the handle was made or last reset."""
        return self._calls

    @property
    def active(self) -> bool:
        """Whether hooks are installed."""
        return bool(self._handles)

    def reset(self) -> None:
        """Starts counting again: the next forward call of the top module is step 0."""
        self._calls = 0
        self._step = 0

    def remove(self) -> None:
        """Removes every hook (safe to call more than once)."""
        handles, self._handles = self._handles, []
        for h in handles:
            h.remove()

    def __enter__(self) -> "TraceHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<TraceHandle {state}: {len(self.paths)} modules, step {self._step}>"

    # Hooks. Each is excluded from torch.compile's tracing (see docs/PYTHON.md): it runs
    # eagerly on real tensors, as a graph break. `torch.compiler.disable` costs tens of
    # microseconds per wrapper, so each kind of hook is wrapped once per handle and bound to its
    # module's `_Site` with `functools.partial`.

    def _install(self, modules: List[Tuple[str, nn.Module, int]]) -> None:
        try:
            self._handles.append(
                self.model.register_forward_pre_hook(_disable(self._top_pre_hook))
            )
            on_input = _disable(self._on_input) if self.inputs else None
            on_output = _disable(self._on_output)
            for path, module, layer in modules:
                site = _Site(path, layer)
                if on_input is not None:
                    self._handles.append(
                        module.register_forward_pre_hook(
                            partial(on_input, site), with_kwargs=True
                        )
                    )
                self._handles.append(module.register_forward_hook(partial(on_output, site)))
        except BaseException:
            self.remove()
            raise

    def _top_pre_hook(self, module: nn.Module, args: Any) -> None:
        self._step = self._calls
        self._calls += 1

    def _on_input(self, site: "_Site", module: nn.Module, args: Any, kwargs: Any) -> None:
        base = site.input_name
        found: List[Tuple[str, torch.Tensor]] = []
        _walk(tuple(args), base, found)
        for k, v in (kwargs or {}).items():
            _walk(v, f"{base}{SEP}{k}", found)
        for name, t in found:
            self._record(site, name, t)

    def _on_output(self, site: "_Site", module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):  # most modules: no walk, no list
            self._record(site, site.output_name, output)
            return
        found: List[Tuple[str, torch.Tensor]] = []
        _walk(output, site.path, found)
        for name, t in found:
            self._record(site, name, t)

    def _record(self, site: "_Site", name: str, t: torch.Tensor) -> None:
        stage = site.stages.get(name, _UNSEEN)
        if stage is _UNSEEN:
            # The tracer's filter and the stage of a name never change: decided once per name.
            stage = _stage(name) if self.tracer.wants(name) else None
            if len(site.stages) < _MAX_NAMES_CACHED:
                site.stages[name] = stage
        if stage is None:
            return
        described = _described(t)
        if described is None:
            return
        dtype, t = described
        # `t` stays referenced until the call returns, so its address stays valid.
        if self.tracer._native.record(
            name, dtype, t.data_ptr(), t.shape, t.stride(), self._step, site.layer, stage
        ):
            self.records += 1


# A name not decided yet (None means "filtered out").
_UNSEEN = object()
# Names whose decision one hooked module keeps (outputs with more parts are decided per call).
_MAX_NAMES_CACHED = 256


class _Site:
    """What a hooked module's hooks know: its path, layer and the decisions taken per name."""

    __slots__ = ("path", "layer", "output_name", "input_name", "stages")

    def __init__(self, path: str, layer: int) -> None:
        self.path = path
        self.layer = layer
        self.output_name = _leaf(path)
        self.input_name = f"{path}{SEP}{INPUT}" if path else INPUT
        #: Record name -> its stage, or None when the tracer's filter skips it.
        self.stages: dict = {}


def _disable(fn):
    """`fn` excluded from torch.compile's tracing (a graph break around it), where available."""
    compiler = getattr(torch, "compiler", None)
    disable = getattr(compiler, "disable", None)
    return disable(fn) if disable is not None else fn


def _uncompiled(model: nn.Module) -> nn.Module:
    """The module `torch.compile` wrapped, so paths read as in the eager model (no `_orig_mod.`).

    Calling the compiled wrapper runs the wrapped module's hooks, so hooking it is enough.
    """
    inner = getattr(model, "_orig_mod", None)
    if type(model).__name__ == "OptimizedModule" and isinstance(inner, nn.Module):
        return inner
    return model


def trace_module(
    model: nn.Module,
    include: Globs = None,
    exclude: Globs = None,
    inputs: bool = False,
    tracer: Optional[Tracer] = None,
) -> TraceHandle:
    """Hooks `model` and its submodules so each forward call records their outputs.

    `include`/`exclude`: globs over module paths (`model.layers.*.self_attn`), the syntax of
    `TENSOR_TRACE_FILTER` (a comma-separated string or a list; `*` crosses `.`; `!glob` in
    `include` excludes). A module is hooked when an include glob matches its path (every module
    when `include` is None, the root's path being `""`) and no exclude glob does. `inputs=True`
    also records each hooked module's tensor arguments. `tracer`: where records go; by default
    the one `TENSOR_TRACE_DIR` configures, and when tracing is off there, no hook is installed
    and the handle does nothing. The tracer's own filter still applies to the record names.

    Returns a `TraceHandle`: use it as a context manager or call `.remove()`. Raises
    `ConfigError` for a bad glob (naming `include`/`exclude`, the value and the problem) and
    `TypeError` when `model` is not an `nn.Module` or `tracer` not a `Tracer`. A module
    returned by `torch.compile` is traced through the module it wraps, with the same paths.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace_module wants a torch.nn.Module, got {type(model).__name__}")
    if tracer is not None and not isinstance(tracer, Tracer):
        raise TypeError(
            f"tracer must be a tensor_trace.Tracer, got {type(tracer).__name__} "
            "(for a directory, pass tensor_trace.Tracer(dir))"
        )
    if not isinstance(inputs, bool):
        raise TypeError(f"inputs must be True or False, got {inputs!r}")
    include = include if include is None or isinstance(include, str) else list(include)
    exclude = exclude if exclude is None or isinstance(exclude, str) else list(exclude)
    paths_filter = _path_filter(include, exclude)
    model = _uncompiled(model)
    if tracer is None:
        tracer = global_tracer()
    named = list(model.named_modules())
    lists = {p for p, m in named if isinstance(m, nn.ModuleList)}
    chosen = [(p, m, _layer_of(p, lists)) for p, m in named if paths_filter.matches(p)]
    if not chosen:
        examples = ", ".join(repr(p) for p, _ in named[:4])
        setting, value = ("include", include) if include is not None else ("exclude", exclude)
        raise ConfigError(
            setting,
            value if isinstance(value, str) else ",".join(value),
            f"no module path of {type(model).__name__} is left to hook (paths look like "
            f"{examples}; `*` crosses `.`)",
        )
    handle = TraceHandle(model, tracer, tuple(p for p, _, _ in chosen), inputs)
    if tracer is not None:
        handle._install(chosen)
    return handle

