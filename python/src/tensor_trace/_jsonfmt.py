"""JSON text spelled exactly as trace-core's serde_json writes it.

Records are pretty-printed (two-space indent, `"key": value`, one array element per line, `[]`
and `{}` when empty); manifest lines are compact. Strings escape `"`, `\\` and control characters
below U+0020 the way both serde_json and Python's `json` module do (`\\n`, `\\u001b`, ...), and
leave everything else as raw UTF-8. Floats use the shortest round-trip digits (Python's `repr`)
laid out like serde_json's float formatter: plain notation for decimal exponents -5..=15
(`0.00001`, `1000000000000000.0`), scientific otherwise without zero padding (`1e-7`, `1e+16`).
Python's own `json` would write `1e-05` and `1e+16`: the same number, other bytes.
"""

from __future__ import annotations

import json
import math

__all__ = ["format_float", "pretty", "compact"]


def format_float(value: float) -> str:
    """A finite float as serde_json spells it."""
    if not math.isfinite(value):
        raise ValueError(f"JSON has no spelling for {value!r}")
    text = repr(float(value))
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    stripped = all_digits.lstrip("0")
    digits = stripped.rstrip("0")
    if not digits:
        return sign + "0.0"
    leading_zeros = len(all_digits) - len(stripped)
    # Decimal exponent of the first significant digit: value = d.ddd * 10^dec_exp.
    dec_exp = len(int_part) + exp - leading_zeros - 1
    n = len(digits)
    if -5 <= dec_exp <= 15:
        if n - 1 <= dec_exp:
            return sign + digits + "0" * (dec_exp + 1 - n) + ".0"
        if dec_exp >= 0:
            return sign + digits[: dec_exp + 1] + "." + digits[dec_exp + 1 :]
        return sign + "0." + "0" * (-dec_exp - 1) + digits
    head = digits[0] + ("." + digits[1:] if n > 1 else "")
    return sign + head + ("e+" if dec_exp >= 0 else "e-") + str(abs(dec_exp))


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def pretty(value: object, indent: int = 0) -> str:
    """serde_json's `to_string_pretty` (without the trailing newline)."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{pad}{_scalar(str(k))}: {pretty(v, indent + 1)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [pad + pretty(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return _scalar(value)


def compact(value: object) -> str:
    """serde_json's `to_string`: no whitespace at all."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_scalar(str(k))}:{compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(compact(v) for v in value) + "]"
    return _scalar(value)
