"""The package's exceptions; the native extension raises these (`crates/trace-py`)."""

from __future__ import annotations

import json

__all__ = ["ConfigError", "TraceError"]


class TraceError(Exception):
    """Something went wrong while capturing a record (I/O, a malformed manifest, ...)."""


class ConfigError(TraceError, ValueError):
    """A setting (environment variable or constructor argument) is invalid."""

    def __init__(self, setting: str, value: str, problem: str) -> None:
        super().__init__(f"invalid {setting}={_debug_str(value)}: {problem}")
        self.setting = setting
        self.value = value
        self.problem = problem


def _debug_str(s: str) -> str:
    # Close to Rust's `{:?}` for strings: double quotes, escaped quotes and control characters.
    return json.dumps(s, ensure_ascii=False)
