"""Conversion, hash and statistics against the obvious computation."""

from __future__ import annotations

import blake3
import numpy as np
import pytest

from tensor_trace import BF16, fingerprint_array
from tensor_trace._fingerprint import canonical_f32, fingerprint
from tensor_trace._jsonfmt import format_float

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
    fp = fingerprint(x)
    rms, _, _ = naive(x)
    if n == 0:
        assert fp.rms is None and rms is None
    else:
        assert abs(fp.rms - rms) <= 1e-9 * rms, (fp.rms, rms)
    if n > 10:
        x[5] = np.nan
        x[-1] = np.inf
    fp = fingerprint(x)
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


def test_integers_round_once_to_nearest():
    big = 2**60 + 2**36 + 1  # through f64 it would round down, directly it rounds up
    out = canonical_f32("I64", np.array([big, 2**24 + 1], np.int64))
    assert out[0] == np.float32(2**60 + 2**37) and out[1] == np.float32(2**24)


def test_half_nans_are_quieted_like_the_half_crate():
    f16 = canonical_f32("F16", np.array([0x7C01, 0xFD55, 0x7C00], np.uint16).view(np.float16))
    assert [hex(b) for b in f16.view(np.uint32)] == ["0x7fc02000", "0xffeaa000", "0x7f800000"]
    bf = canonical_f32("BF16", np.array([0x7F81, 0x3F80], np.uint16))
    assert [hex(b) for b in bf.view(np.uint32)] == ["0x7fc10000", "0x3f800000"]


def test_layout_and_byte_order_do_not_change_the_hash():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    ref = fingerprint_array(x)
    assert fingerprint_array(np.asfortranarray(x)) == ref
    assert fingerprint_array(x.astype(">f4")) == ref
    assert fingerprint_array(x.T.copy().T) == ref
    assert fingerprint_array(x[:, ::2]).num_elements == 12


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


@pytest.mark.parametrize(
    "value, text",
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1e-5, "0.00001"),
        (1.234e-5, "0.00001234"),
        (1.234e-6, "1.234e-6"),
        (1e-7, "1e-7"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e+16"),
        (0.5831828090472154, "0.5831828090472154"),
        (-3.4028234663852886e38, "-3.4028234663852886e+38"),
        (5e-324, "5e-324"),
    ],
)
def test_floats_are_spelled_like_serde_json(value, text):
    assert format_float(value) == text


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


def _bits(partials: list) -> list:
    # repr keeps the sign of zero, which == would not.
    return [repr(vars(p)) for p in partials]


@pytest.mark.parametrize(
    "case", ["normal", "offset", "zeros", "negative_zeros", "mixed_zeros", "tiny", "huge"]
)
@pytest.mark.parametrize("n", [4096, 3 * 4096, 5 * 4096 + 77])
def test_finite_fast_path_matches_the_masked_path_bit_for_bit(case, n):
    from tensor_trace._fingerprint import _block_partials, _masked_block_partials

    rng = np.random.default_rng(n)
    x = {
        "normal": lambda: rng.standard_normal(n),
        "offset": lambda: rng.standard_normal(n) * 1e-3 + 1e4,
        "zeros": lambda: np.zeros(n),
        "negative_zeros": lambda: -np.zeros(n),
        "mixed_zeros": lambda: np.where(rng.random(n) < 0.5, -0.0, 0.0),
        "tiny": lambda: rng.standard_normal(n) * 1e-40,  # subnormal F32
        "huge": lambda: rng.standard_normal(n).clip(-3, 3) * 1e38,  # near F32 max, finite
    }[case]().astype(np.float32)
    if case == "mixed_zeros" and n > 4096:
        x[4096 + 3] = 1.0  # one block with a nonzero maximum among signed zeros
    assert np.isfinite(x).all()
    fast = _block_partials(x)
    masked = _masked_block_partials(x)
    assert len(fast) == -(-n // 4096)
    assert _bits(fast) == _bits(masked)
