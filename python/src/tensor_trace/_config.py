"""Settings from the same environment variables as trace-core, and its name filters.

| variable | meaning |
|---|---|
| `TENSOR_TRACE_DIR` | enables tracing into this directory |
| `BITNET_TRACE_DIR` | the seed's name for the same, used when `TENSOR_TRACE_DIR` is unset |
| `TENSOR_TRACE_FILTER` | comma-separated globs over names; `!glob` excludes; `*` crosses `/` |
| `TENSOR_TRACE_VALUES` | also save raw values as `.npy`: `1`/`all`, or a glob list |
| `TENSOR_TRACE_VALUES_AT` | also save raw values of single records: `name@occurrence` items |
| `TENSOR_TRACE_APPEND` | `1` allows writing into a directory that already holds a run |
| `TENSOR_TRACE_ASYNC` | accepted and checked like trace-core; Python writes synchronously |
| `TENSOR_TRACE_RANK` | process rank recorded in every record (else `RANK`, see `_ranks`) |
| `TENSOR_TRACE_WORLD_SIZE` | number of processes (else `WORLD_SIZE`); above 1, rank r writes into `DIR/rank-{r}` |
| `TENSOR_TRACE_LAYOUT` | `packed` (default, `records.jsonl`) or `files` (one `.trace` per record, the default under `BITNET_TRACE_DIR`) |

Globs follow the `globset` crate's default syntax as trace-core uses it: `*` and `?` match any
character including `/`, `[abc]`, `[a-z]`, `[!x]`/`[^x]` classes, `{a,b}` alternatives, `\\`
escapes the next character, and the whole name must match.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from ._errors import ConfigError, TraceError, debug_str
from ._ranks import rank_and_world_from_env

__all__ = [
    "ENV_DIR",
    "ENV_DIR_COMPAT",
    "ENV_FILTER",
    "ENV_VALUES",
    "ENV_VALUES_AT",
    "ENV_APPEND",
    "ENV_ASYNC",
    "ENV_RANK",
    "ENV_LAYOUT",
    "LAYOUTS",
    "parse_layout",
    "ConfigError",
    "TraceError",
    "NameFilter",
    "ValuesAt",
    "Config",
]

ENV_DIR = "TENSOR_TRACE_DIR"
ENV_DIR_COMPAT = "BITNET_TRACE_DIR"
ENV_FILTER = "TENSOR_TRACE_FILTER"
ENV_VALUES = "TENSOR_TRACE_VALUES"
ENV_VALUES_AT = "TENSOR_TRACE_VALUES_AT"
ENV_APPEND = "TENSOR_TRACE_APPEND"
ENV_ASYNC = "TENSOR_TRACE_ASYNC"
ENV_RANK = "TENSOR_TRACE_RANK"
ENV_LAYOUT = "TENSOR_TRACE_LAYOUT"
#: The directory layouts, as trace-core spells them.
LAYOUTS = ("files", "packed")


class _GlobSyntaxError(Exception):
    pass


def _glob_to_regex(pattern: str) -> str:
    """Translates one glob (globset defaults, `literal_separator` off) to a regex."""
    out: list[str] = []
    # Alternation stack: each open `{` holds its finished branches.
    alternates: list[list[str]] = []
    chars = list(pattern)
    i = 0

    def emit(s: str) -> None:
        out.append(s)

    while i < len(chars):
        c = chars[i]
        i += 1
        if c == "?":
            emit(".")
        elif c == "*":
            # `**` is `*` twice unless it stands for whole path components.
            if i < len(chars) and chars[i] == "*":
                i += 1
                at_start = not out or (alternates and out[-1] == "\x00")
                prev_sep = out and out[-1] == "/"
                nxt = chars[i] if i < len(chars) else None
                if at_start and nxt in (None, "/"):
                    if nxt == "/":
                        i += 1
                        emit("(?:/?|.*/)")
                    else:
                        emit(".*")
                elif prev_sep and nxt is None:
                    out.pop()
                    emit("/.*")
                elif prev_sep and nxt == "/":
                    i += 1
                    out.pop()
                    emit("(?:/|/.*/)")
                else:
                    emit(".*.*")
            else:
                emit(".*")
        elif c == "[":
            negated = False
            if i < len(chars) and chars[i] in "!^":
                negated = True
                i += 1
            ranges: list[tuple[str, str]] = []
            first, in_range, closed = True, False, False
            while i < len(chars):
                ch = chars[i]
                i += 1
                if ch == "]" and not first:
                    closed = True
                    break
                if ch == "-" and not first:
                    if in_range:
                        lo = ranges[-1][0]
                        if "-" < lo:
                            raise _GlobSyntaxError("invalid character range")
                        ranges[-1] = (lo, "-")
                        in_range = False
                    else:
                        in_range = True
                elif in_range:
                    lo = ranges[-1][0]
                    if ch < lo:
                        raise _GlobSyntaxError("invalid character range")
                    ranges[-1] = (lo, ch)
                    in_range = False
                else:
                    ranges.append((ch, ch))
                first = False
            if not closed:
                raise _GlobSyntaxError("unclosed character class; missing ']'")
            if in_range:
                ranges.append(("-", "-"))
            body = "".join(
                re.escape(a) if a == b else f"{re.escape(a)}-{re.escape(b)}" for a, b in ranges
            )
            emit(f"[{'^' if negated else ''}{body}]")
        elif c == "{":
            alternates.append([])
            emit("\x00")  # marks the start of the group in `out`
        elif c == "}":
            if not alternates:
                raise _GlobSyntaxError(
                    "unopened alternate group; missing '{' (maybe escape '}' with '[}]'?)"
                )
            branches = alternates.pop()
            start = len(out) - 1 - out[::-1].index("\x00")
            branches.append("".join(out[start + 1 :]))
            del out[start:]
            parts = [b for b in branches if b]
            if parts:
                emit("(?:" + "|".join(parts) + ")")
        elif c == "," and alternates:
            start = len(out) - 1 - out[::-1].index("\x00")
            alternates[-1].append("".join(out[start + 1 :]))
            del out[start + 1 :]
        elif c == "\\":
            if i >= len(chars):
                raise _GlobSyntaxError("dangling '\\'")
            emit(re.escape(chars[i]))
            i += 1
        else:
            emit(re.escape(c) if c != "/" else "/")
    if alternates:
        raise _GlobSyntaxError(
            "unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)"
        )
    return "".join(out)


class NameFilter:
    """A name passes when it matches an include glob (or there are none) and no exclude glob."""

    def __init__(self, include: Optional[re.Pattern], exclude: Optional[re.Pattern], spec: str):
        self._include = include
        self._exclude = exclude
        self.spec = spec

    @classmethod
    def all(cls) -> "NameFilter":
        return cls(None, None, "*")

    @classmethod
    def none(cls) -> "NameFilter":
        return cls(None, re.compile(r".*", re.DOTALL), "")

    @classmethod
    def parse(cls, spec: str, setting: str) -> "NameFilter":
        """Parses `glob,glob,!glob`; `setting` names the source in errors."""
        parts = [p.strip() for p in spec.split(",")]
        globs = [p for p in parts if p]
        if not globs:
            raise ConfigError(
                setting, spec, "expected a comma-separated list of globs, `!glob` to exclude"
            )
        return cls.from_globs(globs, setting, spec)

    @classmethod
    def from_globs(
        cls, globs: "list[str]", setting: str, spec: Optional[str] = None
    ) -> "NameFilter":
        """One glob per item (commas inside `{a,b}` allowed), `!glob` excludes.

        `spec` is the setting's value as errors quote it (the items joined by `,` if None).
        """
        shown = ",".join(globs) if spec is None else spec
        include: list[str] = []
        exclude: list[str] = []
        for part in globs:
            negated = part.startswith("!")
            pattern = part[1:].strip() if negated else part
            try:
                regex = _glob_to_regex(pattern)
            except _GlobSyntaxError as e:
                raise ConfigError(setting, shown, f"bad glob {debug_str(pattern)}: {e}") from None
            (exclude if negated else include).append(regex)

        def build(regexes: list[str]) -> Optional[re.Pattern]:
            if not regexes:
                return None
            return re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL)

        return cls(build(include), build(exclude), shown)

    def matches(self, name: str) -> bool:
        if self._include is not None and self._include.fullmatch(name) is None:
            return False
        return self._exclude is None or self._exclude.fullmatch(name) is None

    def __repr__(self) -> str:
        return f"NameFilter({self.spec!r})"


# Characters trimmed around a `ValuesAt` item when not escaped (trace-core's `TRIMMED`).
_TRIMMED = " \t\n\r"
_DIGITS = re.compile(r"[0-9]+")


class ValuesAt:
    """Records selected by name and occurrence: trace-core's `ValuesAt`, the same grammar.

    Comma-separated items `NAME@K` or `NAME@K-M` (both ends included). The name is exact and
    ends at the last unescaped `@`; a backslash makes the next character literal (`\\,`,
    `\\\\`, `\\ `); unescaped spaces, tabs and line breaks around an item are trimmed; empty
    items are skipped; occurrences are ASCII decimal integers below 2**64.
    """

    def __init__(self, items: dict, spec: str) -> None:
        self._items = items
        self.spec = spec

    @classmethod
    def none(cls) -> "ValuesAt":
        return cls({}, "")

    @classmethod
    def parse(cls, spec: str, setting: str) -> "ValuesAt":
        def error(problem: str) -> ConfigError:
            return ConfigError(setting, spec, problem)

        raw_items: list = [[]]
        i = 0
        while i < len(spec):
            c = spec[i]
            i += 1
            if c == "\\":
                if i >= len(spec):
                    raise error("a `\\` at the end escapes nothing (write `\\\\` for a backslash)")
                raw_items[-1].append((spec[i], True))
                i += 1
            elif c == ",":
                raw_items.append([])
            else:
                raw_items[-1].append((c, False))
        items: dict = {}
        for item in raw_items:
            while item and not item[0][1] and item[0][0] in _TRIMMED:
                item.pop(0)
            while item and not item[-1][1] and item[-1][0] in _TRIMMED:
                item.pop()
            if not item:
                continue
            text = "".join(c for c, _ in item)
            at = next((k for k in range(len(item) - 1, -1, -1) if item[k] == ("@", False)), None)
            if at is None:
                raise error(
                    f"item {debug_str(text)} has no `@`: expected NAME@OCCURRENCE or "
                    "NAME@FIRST-LAST"
                )
            name = "".join(c for c, _ in item[:at])
            occ = "".join(c for c, _ in item[at + 1 :])

            def number(s: str) -> Optional[int]:
                s = s.strip(_TRIMMED)
                if _DIGITS.fullmatch(s) is None or int(s) >= 2**64:
                    return None
                return int(s)

            if "-" in occ:
                first_s, last_s = occ.split("-", 1)
                first, last = number(first_s), number(last_s)
            else:
                first = last = number(occ)
            if first is None or last is None:
                raise error(
                    f"item {debug_str(text)}: expected an occurrence (a non-negative integer) or "
                    f"a range FIRST-LAST after the last `@`, found {debug_str(occ)}"
                )
            if first > last:
                raise error(
                    f"item {debug_str(text)}: the range {first}-{last} is empty (FIRST must not "
                    "exceed LAST)"
                )
            items.setdefault(name, []).append((first, last))
        if not items:
            raise error("expected comma-separated NAME@OCCURRENCE or NAME@FIRST-LAST items")
        return cls(items, spec)

    @staticmethod
    def item(name: str) -> str:
        """`name` escaped for an item."""
        return "".join("\\" + c if c in "\\," or c in _TRIMMED else c for c in name)

    def mentions(self, name: str) -> bool:
        return name in self._items

    def selects(self, name: str, occurrence: int) -> bool:
        return any(a <= occurrence <= b for a, b in self._items.get(name, ()))

    def __repr__(self) -> str:
        return f"ValuesAt({self.spec!r})"


_TRUE = {"1", "true", "yes", "on", "all"}
_FALSE = {"0", "false", "no", "off", "none"}


def _parse_bool(v: str) -> Optional[bool]:
    s = v.strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    return None


def _bool_setting(setting: str, v: str) -> bool:
    b = _parse_bool(v)
    if b is None:
        raise ConfigError(setting, v, "expected 1/true/yes/on or 0/false/no/off")
    return b


def parse_layout(setting: str, v: str) -> str:
    """`files` or `packed` (case-insensitive; `file` is accepted as in trace-core)."""
    s = v.strip().lower()
    if s == "file":
        s = "files"
    if s not in LAYOUTS:
        raise ConfigError(setting, v, "expected `files` or `packed`")
    return s


@dataclass
class Config:
    """Where and how records are written (trace-core's `Config`)."""

    dir: Optional[str] = None
    filter: NameFilter = field(default_factory=NameFilter.all)
    values: NameFilter = field(default_factory=NameFilter.none)
    values_at: ValuesAt = field(default_factory=ValuesAt.none)
    append: bool = False
    background: bool = False
    rank: Optional[int] = None
    world_size: Optional[int] = None
    layout: str = "packed"

    @classmethod
    def from_lookup(cls, get: Callable[[str], Optional[str]]) -> Optional["Config"]:
        """Reads the settings through `get`; None when tracing is not enabled."""

        def non_empty(k: str) -> Optional[str]:
            v = get(k)
            return v if v is not None and v.strip() else None

        # The seed's variable keeps the seed's layout: one `.trace` file per record.
        d, layout = non_empty(ENV_DIR), "packed"
        if d is None:
            d, layout = non_empty(ENV_DIR_COMPAT), "files"
        if d is None:
            return None
        config = cls(dir=d, layout=layout)
        spec = non_empty(ENV_FILTER)
        if spec is not None:
            config.filter = NameFilter.parse(spec, ENV_FILTER)
        spec = non_empty(ENV_VALUES)
        if spec is not None:
            b = _parse_bool(spec)
            if b is True:
                config.values = NameFilter.all()
            elif b is False:
                config.values = NameFilter.none()
            else:
                config.values = NameFilter.parse(spec, ENV_VALUES)
        spec = non_empty(ENV_VALUES_AT)
        if spec is not None:
            config.values_at = ValuesAt.parse(spec, ENV_VALUES_AT)
        v = non_empty(ENV_APPEND)
        if v is not None:
            config.append = _bool_setting(ENV_APPEND, v)
        v = non_empty(ENV_ASYNC)
        if v is not None:
            config.background = _bool_setting(ENV_ASYNC, v)
        config.rank, config.world_size = rank_and_world_from_env(get, ENV_RANK)
        v = non_empty(ENV_LAYOUT)
        if v is not None:
            config.layout = parse_layout(ENV_LAYOUT, v)
        return config

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Optional["Config"]:
        env = os.environ if environ is None else environ
        return cls.from_lookup(env.get)
