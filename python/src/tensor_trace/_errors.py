"""The package's exception types, apart so that every module can raise them without importing
another's settings (no import circles)."""

from __future__ import annotations

import json


class TraceError(Exception):
    """Something went wrong while capturing a record (I/O, a malformed manifest, ...)."""


class ConfigError(TraceError, ValueError):
    """A setting (environment variable or constructor argument) is invalid."""

    def __init__(self, setting: str, value: str, problem: str) -> None:
        super().__init__(f"invalid {setting}={debug_str(value)}: {problem}")
        self.setting = setting
        self.value = value
        self.problem = problem


def debug_str(s: str) -> str:
    """Close to Rust's `{:?}` for strings: double quotes, escaped quotes and control characters."""
    return json.dumps(s, ensure_ascii=False)
