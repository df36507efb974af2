"""Conversion, hash and statistics (trace-core's, through the extension) against the obvious
computation, and the ways Python objects reach it (strides, byte order, torch, bfloat16)."""

from __future__ import annotations

import math

import blake3
import numpy as np
import pytest

from tensor_trace import BF16, fingerprint_array

EMPTY_HASH = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def naive(values: np.ndarray):
    v = values.astype(np.float64).reshape(-1)
    fin = v[np.isfinite(v)]
    rms = float(np.sqrt(np.sum(v * v) / v.size)) if v.size and np.isfinite(v).all() else None
    mean = float(fin.mean()) if fin.size else None
    std = float(np.sqrt(np.mean((fin - fin.mean()) ** 2))) if fin.size else None
    return rms, mean, std


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 4095, 4096, 4097, 3 * 4096 + 5, 70_000])
def test_stats_match_the_naive_computation(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3 + 100).astype(np.float32)
    # Finite values: the RMS is defined and must match the naive one by value.
    fp = fingerprint_array(x)
    rms, _, _ = naive(x)
    if n == 0:
        assert fp.rms is None and rms is None
    else:
        assert abs(fp.rms - rms) <= 1e-9 * rms, (fp.rms, rms)
    if n > 10:
        x[5] = np.nan
        x[-1] = np.inf
    fp = fingerprint_array(x)
    assert fp.blake3 == blake3.blake3(x.astype("<f4").tobytes()).hexdigest()
    assert fp.num_elements == n
    rms, mean, std = naive(x)
    # A NaN or an infinity leaves the RMS undefined, as in trace-core.
    assert (fp.rms is None) == (rms is None) == (n > 10 or n == 0)
    if fp.stats.mean is not None:
        assert abs(fp.stats.mean - mean) <= 1e-9 * abs(mean)
        assert abs(fp.stats.std - std) <= 1e-7 * max(std, 1.0)
        assert fp.stats.min == float(np.nanmin(np.where(np.isinf(x), np.nan, x)))
    assert fp.stats.nan_count == (1 if n > 10 else 0)
    assert fp.stats.inf_count == (1 if n > 10 else 0)


def test_empty_and_scalar():
    fp = fingerprint_array(np.zeros((0, 3), np.float32))
    assert (fp.blake3, fp.num_elements, fp.rms) == (EMPTY_HASH, 0, None)
    assert fp.stats.min is None and fp.stats.std is None
    fp = fingerprint_array(np.float32(-2.0))
    assert (fp.num_elements, fp.rms, fp.stats.mean, fp.stats.std) == (1, 2.0, -2.0, 0.0)


def _hash_of_f32(values) -> str:
    return blake3.blake3(np.asarray(values, "<f4").tobytes()).hexdigest()


def test_integers_round_once_to_nearest():
    big = 2**60 + 2**36 + 1  # through f64 it would round down, directly it rounds up
    fp = fingerprint_array(np.array([big, 2**24 + 1], np.int64))
    assert fp.blake3 == _hash_of_f32([2**60 + 2**37, 2**24])


def test_half_nans_are_quieted_like_the_half_crate():
    f16 = np.array([0x7C01, 0xFD55, 0x7C00], np.uint16).view(np.float16)
    quiet = np.array([0x7FC02000, 0xFFEAA000, 0x7F800000], np.uint32).view(np.float32)
    assert fingerprint_array(f16).blake3 == _hash_of_f32(quiet)
    bf = BF16(np.array([0x7F81, 0x3F80], np.uint16))
    quiet = np.array([0x7FC10000, 0x3F800000], np.uint32).view(np.float32)
    assert fingerprint_array(bf).blake3 == _hash_of_f32(quiet)


def test_layout_and_byte_order_do_not_change_the_hash():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    ref = fingerprint_array(x)
    assert fingerprint_array(np.asfortranarray(x)) == ref
    assert fingerprint_array(x.astype(">f4")) == ref
    assert fingerprint_array(x.T.copy().T) == ref
    assert fingerprint_array(x[:, ::2]).num_elements == 12


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64, np.uint8])
def test_strided_views_are_read_in_place_like_their_copies(dtype):
    # Views the extension walks by their strides (no copy): each must hash like its dense copy.
    base = (np.arange(5 * 300 * 7) % 251).astype(dtype).reshape(5, 300, 7)
    views = {
        "transposed": base.transpose(2, 0, 1),
        "every other row": base[:, ::2, :],
        "reversed": base[::-1, :, ::-1],
        "broadcast": np.broadcast_to(base[:1, :1, :], (4, 3, 7)),
        "column": base[:, :, 3],
        "0-d": base[2, 5, 1],
        "empty": base[:, :0, :],
    }
    for what, view in views.items():
        assert fingerprint_array(view) == fingerprint_array(np.ascontiguousarray(view)), what


def test_non_element_strides_and_unaligned_data_are_read_correctly():
    # A field of a packed record array: strides of 5 bytes, not whole float32 elements.
    rec = np.zeros(300, dtype=[("tag", "u1"), ("v", "<f4")])
    rec["v"] = np.linspace(-3, 3, 300, dtype=np.float32)
    assert fingerprint_array(rec["v"]) == fingerprint_array(rec["v"].copy())
    # Unaligned but contiguous float64 (one byte into a byte buffer).
    raw = np.zeros(8 * 1000 + 1, np.uint8)
    unaligned = raw[1:].view(np.float64)
    unaligned[:] = np.arange(1000) * 0.5
    assert fingerprint_array(unaligned) == fingerprint_array(np.arange(1000) * 0.5)


class FakeTensor:
    """Anything with `__array__` (torch tensors on the CPU look like this to NumPy)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


def test_objects_exposing_array_and_bf16_bits():
    x = np.linspace(-1, 1, 10, dtype=np.float32)
    assert fingerprint_array(FakeTensor(x)) == fingerprint_array(x)
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # the top halves of x: bf16 bit patterns
    widened = (bits.astype(np.uint32) << 16).view(np.float32)
    assert fingerprint_array(BF16(bits)) == fingerprint_array(widened)


@pytest.mark.parametrize("dtype", [bool, np.int8, np.int16, np.uint16, np.uint64, np.complex64])
def test_unsupported_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match="cannot record dtype"):
        fingerprint_array(np.zeros(3, dtype))


class _FakeTorchDType:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"torch.{self.name}"


class FakeTorchTensor:
    """Just enough of torch.Tensor for the emitter's torch path, without torch installed."""

    __module__ = "torch"

    def __init__(self, storage, dtype, device="cpu"):
        self.storage, self.dtype, self.device = storage, _FakeTorchDType(dtype), device
        self.calls = []

    def detach(self):
        return self

    def cpu(self):
        self.calls.append("cpu")
        return FakeTorchTensor(self.storage, self.dtype.name)

    def contiguous(self):
        return self

    def view(self, dtype):
        assert str(dtype) == "torch.int16"
        return FakeTorchTensor(self.storage.view(np.int16), "int16")

    def numpy(self):
        assert str(self.dtype) != "torch.bfloat16", "numpy() cannot hold bfloat16"
        return self.storage


def test_torch_bfloat16_tensors_are_read_as_raw_bits(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("torch")
    fake.int16 = _FakeTorchDType("int16")
    monkeypatch.setitem(sys.modules, "torch", fake)
    bits = np.array([[0x3F80, 0xC000], [0x7F81, 0x0001]], np.uint16)
    t = FakeTorchTensor(bits, "bfloat16", device="cuda:0")
    assert fingerprint_array(t) == fingerprint_array(BF16(bits))
    f32 = FakeTorchTensor(np.ones((2, 2), np.float32), "float32")
    assert fingerprint_array(f32) == fingerprint_array(np.ones((2, 2), np.float32))


_M64 = (1 << 64) - 1


def _splitmix(q: int) -> int:
    """Output number `q` of splitmix64 seeded with 1 (docs/FORMAT.md, the value sketch)."""
    z = (1 + (q + 1) * 0x9E37_79B9_7F4A_7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & _M64
    return z ^ (z >> 31)


def _naive_sketch(values, k):
    """The sketch by its definition in docs/FORMAT.md, one element at a time."""
    flat = np.asarray(values, dtype="<f4").reshape(-1)
    words = 1 + k // 64
    per = 4096 // k
    total = np.zeros(k)
    for start in range(0, flat.size, 4096):
        partial = np.zeros(k)
        for t, sub_start in enumerate(range(start, min(start + 4096, flat.size), k)):
            base = (start // 4096 * per + t) * words
            rot = _splitmix(base) & (k - 1)
            for j, x in enumerate(flat[sub_start : sub_start + k]):
                word = _splitmix(base + 1 + j // 64)
                v = float(x) if math.isfinite(x) else 0.0
                partial[(j + rot) % k] += -v if (word >> (j % 64)) & 1 else v
        total += partial
    return total


def _recorded_sketch(tmp_path, name, values, **settings):
    """The `sketch` object of the record trace-core writes for `values` through Python."""
    import json

    from tensor_trace import Tracer

    Tracer(tmp_path / name, layout="files", **settings).record("a", values)
    return json.loads((tmp_path / name / "a.trace").read_text()).get("sketch")


@pytest.mark.parametrize("k", [64, 256, 1024])
def test_recorded_sketch_matches_its_definition(tmp_path, k):
    import base64

    rng = np.random.default_rng(k)
    x = rng.standard_normal(4096 + 2 * k + 5).astype(np.float32)
    x[3] = np.nan
    x[4096 + 1] = np.inf
    sketch = _recorded_sketch(tmp_path, "s", x, sketch=k)
    assert (sketch["k"], sketch["seed"]) == (k, 1)
    assert base64.b64decode(sketch["f64le"]) == _naive_sketch(x, k).astype("<f8").tobytes()


def test_sketch_setting_and_small_tensors(tmp_path):
    from tensor_trace import ConfigError, Tracer

    for bad in (32, 100, 2048):
        with pytest.raises(ConfigError, match="sketch"):
            Tracer(tmp_path / "bad", sketch=bad)
    assert _recorded_sketch(tmp_path, "off", np.ones(8, np.float32), sketch=0) is None
    # Small tensors get the smallest power of two holding them (at least 64, at most k).
    for n, k in [(1, 64), (64, 64), (65, 128), (100, 128), (10**5, 256)]:
        got = _recorded_sketch(tmp_path, f"n{n}", np.ones(n, np.float32))
        assert got["k"] == k, n
