"""One `.trace` file per record in a directory, plus `manifest.jsonl` (trace-core's `DirSink`).

- Every file appears whole: it is written under a hidden temporary name (`.tmp-{pid}-{n}.part`)
  and published with `os.link`, which fails instead of replacing an existing file (trace-core
  uses `renameat2(RENAME_NOREPLACE)` on Linux and the same hard link elsewhere). On a file
  system without hard links, a check-then-rename fallback is used, as in trace-core.
- The first record of a name is `{stem}.trace`, the k-th repetition `{stem}.{k}.trace`; when
  that file is taken, an 8-hex-digit tag of blake3(raw name) is inserted, then numbered
  fallbacks (64 candidates in all).
- A directory that already holds a run is refused unless appending; appending continues the
  indexes and occurrences found in the manifest.
- The packed layout (`layout="packed"`) writes no `.trace` files and no manifest: each record is
  one compact JSON line of `records.jsonl`, appended with one unbuffered write, in index order;
  values stay per-record `.npy` files published before their line.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
from typing import Callable, Iterator, Optional

import blake3
import numpy as np

from ._config import ConfigError, TraceError
from ._jsonfmt import compact, pretty

__all__ = ["sanitize", "MANIFEST_FILE", "PACKED_LOG", "DirSink"]

MANIFEST_FILE = "manifest.jsonl"
#: The record log of a packed directory: one compact record per line.
PACKED_LOG = "records.jsonl"
#: Longest sanitized stem kept verbatim, in bytes.
MAX_STEM = 180
_TMP_SEQ = itertools.count()


def _is_control(c: str) -> bool:
    # Rust's `char::is_control`: general category Cc.
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F


def _name_tag(name: str) -> str:
    return blake3.blake3(name.encode("utf-8")).hexdigest()[:8]


def sanitize(name: str) -> str:
    """The file stem of a tensor name, exactly as trace-core's `sanitize`.

    `/`, `\\` and control characters become `_`; an empty name or one starting with `.` gets a
    `_` prefix; a stem over 180 bytes (UTF-8) is cut at a character boundary and tagged
    `~{8 hex of blake3(name)}`.
    """
    s = "".join("_" if c in "/\\" or _is_control(c) else c for c in name)
    if not s or s.startswith("."):
        s = "_" + s
    encoded = s.encode("utf-8")
    if len(encoded) > MAX_STEM:
        cut = MAX_STEM
        while cut > 0 and (encoded[cut] & 0xC0) == 0x80:  # a continuation byte
            cut -= 1
        s = encoded[:cut].decode("utf-8") + "~" + _name_tag(name)
    return s


def candidate_stems(name: str, occurrence: int) -> Iterator[str]:
    base = sanitize(name)
    suffix = "" if occurrence == 0 else f".{occurrence}"
    yield f"{base}{suffix}"
    # Hashed only when the plain name is taken (a collision or an earlier run).
    tag = _name_tag(name)
    tagged = f"{base}.{tag}{suffix}"
    yield tagged
    for i in range(1, 64):
        yield f"{tagged}.{i}"


def npy_bytes(values: np.ndarray) -> bytes:
    """NPY 1.0 (NumPy's own writer), `<f4`, C order, the record's shape."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(values, dtype="<f4", order="C"), allow_pickle=False)
    return buf.getvalue()


class DirSink:
    """Writes records into `dir`; thread-safe.

    `keeps_values(name, occurrence)` decides whether values handed to `write` are saved (the
    occurrence is only known here); by default every value given is saved.
    """

    def __init__(
        self,
        dir: str,
        append: bool,
        keeps_values: Optional[Callable[[str, int], bool]] = None,
        on_open: Optional[Callable[[str], None]] = None,
        layout: str = "files",
    ) -> None:
        if layout not in ("files", "packed"):
            raise ConfigError("layout", layout, "expected `files` or `packed`")
        self.dir = os.fspath(dir)
        # Called with the directory once it exists and may be written (rank.json, see _ranks).
        self._on_open = on_open
        self.layout = layout
        self.append = append
        self._keeps_values = keeps_values
        self._lock = threading.Lock()
        self._manifest: Optional[io.RawIOBase] = None
        self._next_index = 0
        self._occurrences: dict = {}

    def write(self, record: dict, values: Optional[np.ndarray]) -> dict:
        """Stamps index and occurrence into `record` (a dict in trace-core's field order, with
        `index` and `occurrence` present as placeholders), publishes it and returns its
        manifest entry."""
        with self._lock:
            if self._manifest is None:
                self._open()
            name = record["name"]
            index = self._next_index
            occurrence = self._occurrences.get(name, 0)
            record["index"] = index
            record["occurrence"] = occurrence
            if values is not None and self._keeps_values is not None:
                if not self._keeps_values(name, occurrence):
                    values = None
            npy = npy_bytes(values) if values is not None else None
            if self.layout == "packed":
                return self._write_packed(record, npy, index, occurrence)
            published = None
            for stem in candidate_stems(name, occurrence):
                if npy is not None:
                    record["values"] = f"{stem}.npy"
                _sketch_last(record)
                if self._publish(stem, record, npy):
                    published = stem
                    break
            if published is None:
                raise TraceError(
                    f"find a free file name for {os.path.join(self.dir, sanitize(name))}: "
                    "64 candidate names are taken"
                )
            entry = {
                "index": index,
                "name": name,
                "occurrence": occurrence,
                "file": f"{published}.trace",
            }
            if npy is not None:
                entry["values"] = record["values"]
            line = (compact(entry) + "\n").encode("utf-8")
            try:
                self._manifest.write(line)
            except OSError as e:
                raise TraceError(f"append to {self._manifest_path()}: {e}") from e
            self._next_index += 1
            self._occurrences[name] = occurrence + 1
            return entry

    def _write_packed(self, record: dict, npy: Optional[bytes], index: int, occurrence: int) -> dict:
        name = record["name"]
        record.pop("values", None)
        if npy is not None:
            for stem in candidate_stems(name, occurrence):
                if self._place(npy, os.path.join(self.dir, f"{stem}.npy")):
                    record["values"] = f"{stem}.npy"
                    break
            else:
                raise TraceError(
                    f"find a free file name for {os.path.join(self.dir, sanitize(name))}: "
                    "64 candidate names are taken"
                )
        _sketch_last(record)
        line = (compact(record) + "\n").encode("utf-8")
        try:
            # One unbuffered write: the line lands whole, or cut short only by a crash.
            self._manifest.write(line)
        except OSError as e:
            raise TraceError(f"append to {self._manifest_path()}: {e}") from e
        self._next_index += 1
        self._occurrences[name] = occurrence + 1
        entry = {"index": index, "name": name, "occurrence": occurrence, "file": PACKED_LOG}
        if "values" in record:
            entry["values"] = record["values"]
        return entry

    def close(self) -> None:
        with self._lock:
            if self._manifest is not None:
                self._manifest.close()
                self._manifest = None

    def _manifest_path(self) -> str:
        return os.path.join(self.dir, PACKED_LOG if self.layout == "packed" else MANIFEST_FILE)

    def _open(self) -> None:
        try:
            os.makedirs(self.dir, exist_ok=True)
        except OSError as e:
            raise TraceError(f"create directory {self.dir}: {e}") from e
        other = MANIFEST_FILE if self.layout == "packed" else PACKED_LOG
        if self.append and os.path.exists(os.path.join(self.dir, other)):
            raise ConfigError(
                "trace directory",
                self.dir,
                f"it holds a run of the other layout ({other}); append with "
                f"TENSOR_TRACE_LAYOUT={'files' if self.layout == 'packed' else 'packed'}",
            )
        if self.append:
            self._resume()
        else:
            existing = self._existing_run()
            if existing is not None:
                raise ConfigError(
                    "trace directory",
                    self.dir,
                    f"it already holds a trace run ({existing}); use an empty directory, "
                    "remove the old run, or set TENSOR_TRACE_APPEND=1 to add to it",
                )
        if self._on_open is not None:
            self._on_open(self.dir)
        try:
            # Unbuffered: every manifest line reaches the OS as soon as it is written.
            self._manifest = open(self._manifest_path(), "ab", buffering=0)
        except OSError as e:
            raise TraceError(f"open {self._manifest_path()}: {e}") from e

    def _existing_run(self) -> Optional[str]:
        try:
            names = os.listdir(self.dir)
        except OSError as e:
            raise TraceError(f"list {self.dir}: {e}") from e
        for n in names:
            if n in (MANIFEST_FILE, PACKED_LOG) or n.endswith(".trace"):
                return n
        return None

    def _resume(self) -> None:
        path = self._manifest_path()
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            raise TraceError(f"read {path}: {e}") from e
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        for i, line in enumerate(lines):
            line = line[:-1] if line.endswith("\r") else line
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                index, name, occ = entry["index"], entry["name"], entry["occurrence"]
                if not (isinstance(index, int) and isinstance(occ, int) and isinstance(name, str)):
                    raise ValueError("index, name or occurrence has the wrong type")
            except (ValueError, KeyError, TypeError) as e:
                if i + 1 == len(lines) and not text.endswith("\n"):
                    continue  # a crash can cut the last line short
                raise TraceError(f"{path}: not a valid trace record: line {i + 1}: {e}") from e
            self._next_index = max(self._next_index, index + 1)
            self._occurrences[name] = max(self._occurrences.get(name, 0), occ + 1)
        if text and not text.endswith("\n"):
            with open(path, "ab") as f:  # start our lines after the truncated one
                f.write(b"\n")

    def _publish(self, stem: str, record: dict, npy: Optional[bytes]) -> bool:
        npy_path = os.path.join(self.dir, f"{stem}.npy")
        if npy is not None and not self._place(npy, npy_path):
            return False
        trace_path = os.path.join(self.dir, f"{stem}.trace")
        if not self._place((pretty(record) + "\n").encode("utf-8"), trace_path):
            if npy is not None:
                # Undo our own values file; nobody else can have linked to it yet.
                try:
                    os.remove(npy_path)
                except OSError:
                    pass
            return False
        return True

    def _place(self, data: bytes, path: str) -> bool:
        """Writes `data` to a temporary file and publishes it at `path` without replacing."""
        tmp = os.path.join(self.dir, f".tmp-{os.getpid()}-{next(_TMP_SEQ)}.part")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
        except OSError as e:
            _remove_quietly(tmp)
            raise TraceError(f"write {tmp}: {e}") from e
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:
            # No hard links here: check, then rename (a race with another process is possible).
            if os.path.lexists(path):
                return False
            try:
                os.rename(tmp, path)
                return True
            except OSError as e:
                raise TraceError(f"rename into place {path}: {e}") from e
        finally:
            _remove_quietly(tmp)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _sketch_last(record: dict) -> None:
    """Moves `sketch` after `values` (trace-core's field order; `values` is added late)."""
    if "sketch" in record:
        record["sketch"] = record.pop("sketch")
