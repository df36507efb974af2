"""Canonical F32 conversion, blake3, RMS and statistics, as trace-core computes them.

trace-core (`crates/trace-core/src/fingerprint.rs`) is the definition; this module reproduces it
operation for operation, so the results are bit-identical, not merely close:

- Conversion: F32 as is (NaN payloads included); F16 and BF16 widened exactly, with the quiet
  bit set on NaNs (as the `half` crate and x86 F16C do); F64 and integers rounded to nearest,
  once (`as f32`; NumPy's `astype(float32)` casts directly, with no detour through f64).
- Hash: blake3 of the converted values as little-endian F32 bytes, row-major.
- Statistics: the values are cut into blocks of 4096 elements counted from the start; within a
  block element `i` goes to lane `i % 16`, each lane sums in f64 sequentially (Σd and Σd² with
  d = x - shift, shift = the block's first finite value, and Σx²), lanes are added in order,
  and blocks are merged in order with Chan et al.'s formula. Non-finite values are counted and
  skipped. RMS is sqrt(Σx² / n) over all n elements, or None when n = 0 or a value is NaN/Inf.
- Sketch (`crates/trace-core/src/sketch.rs`, docs/FORMAT.md): sketch blocks of k elements;
  block b's rotation and signs are splitmix64 outputs b·W .. b·W+W-1 (W = 1 + k/64); element j
  adds ±x (as f64, non-finite as 0) to bucket (j + rotation) mod k. Each statistics block's
  partial sums from +0.0 over its sketch blocks in order; partials are added in block order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import blake3
import numpy as np

__all__ = [
    "STATS_BLOCK",
    "DEFAULT_SKETCH_K",
    "SKETCH_SEED",
    "Fingerprint",
    "Stats",
    "canonical_f32",
    "fingerprint",
    "buckets_for",
    "sketch",
    "sketch_json",
]

#: Elements per statistics block (trace-core's `STATS_BLOCK`).
STATS_BLOCK = 4096
#: Independent f64 accumulators per block (trace-core's `LANES`).
LANES = 16
_ROWS = STATS_BLOCK // LANES
#: Blocks processed per NumPy pass, to bound temporary memory (16 MiB of f64 per array).
_BLOCKS_PER_PASS = 512
_QUIET_BIT = np.uint32(0x0040_0000)
#: Buckets of the default sketch (trace-core's `DEFAULT_SKETCH_K`).
DEFAULT_SKETCH_K = 256
#: Seed of the sketch's splitmix64 stream (trace-core's `SKETCH_SEED`).
SKETCH_SEED = 1
_GAMMA = np.uint64(0x9E37_79B9_7F4A_7C15)


@dataclass(frozen=True)
class Stats:
    """Statistics over the finite values (None when there are none)."""

    min: Optional[float]
    max: Optional[float]
    mean: Optional[float]
    std: Optional[float]
    nan_count: int
    inf_count: int

    def to_json(self) -> dict:
        return {
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
        }


@dataclass(frozen=True)
class Fingerprint:
    """What a record says about a tensor's values."""

    blake3: str
    num_elements: int
    rms: Optional[float]
    stats: Stats


def canonical_f32(dtype: str, values: np.ndarray) -> np.ndarray:
    """Converts `values` (C-contiguous, native or little-endian storage of `dtype`) to the
    canonical little-endian F32 array, same shape. BF16 arrives as its uint16 bit patterns."""
    if dtype == "F32":
        return np.asarray(values, dtype="<f4", order="C")
    if dtype == "F16":
        out = values.astype("<f4", order="C")
        _quiet_nans(out)
        return out
    if dtype == "BF16":
        bits = np.asarray(values, dtype="<u2", order="C").astype("<u4") << np.uint32(16)
        out = bits.view("<f4")
        _quiet_nans(out)
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype("<f4", order="C")


def _quiet_nans(out: np.ndarray) -> None:
    nan = np.isnan(out)
    if nan.any():
        bits = out.view("<u4")
        bits[nan] |= _QUIET_BIT


@dataclass
class _Partial:
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    sumsq: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    nan: int = 0
    inf: int = 0

    def merge(self, other: "_Partial") -> None:
        self.nan += other.nan
        self.inf += other.inf
        self.sumsq += other.sumsq
        if other.count == 0:
            return
        # `f32::min`/`max` keep the accumulator on a tie, so the first zero seen decides the
        # sign of a zero extreme (trace-core on x86-64; the sign of a zero is the one place
        # where the platform may show).
        if other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        na, nb = float(self.count), float(other.count)
        n = na + nb
        delta = other.mean - self.mean
        self.mean += delta * nb / n
        self.m2 += other.m2 + delta * delta * na * nb / n
        self.count += other.count


def fingerprint(values: np.ndarray) -> Fingerprint:
    """The fingerprint of canonical F32 values (any shape, C order)."""
    flat = np.asarray(values, dtype="<f4", order="C").reshape(-1)
    n = flat.size
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if n >= (1 << 20) else 1)
    hasher.update(flat.view(np.uint8))
    acc = _Partial()
    step = STATS_BLOCK * _BLOCKS_PER_PASS
    for start in range(0, n, step):
        with np.errstate(all="ignore"):  # NaN and Inf are masked out below
            partials = _block_partials(flat[start : start + step])
        for p in partials:
            acc.merge(p)
    all_finite = acc.nan == 0 and acc.inf == 0
    rms = math.sqrt(acc.sumsq / float(n)) if n > 0 and all_finite else None
    finite = acc.count > 0
    stats = Stats(
        min=float(acc.min) if finite else None,
        max=float(acc.max) if finite else None,
        mean=acc.mean if finite else None,
        std=math.sqrt(max(acc.m2, 0.0) / float(acc.count)) if finite else None,
        nan_count=acc.nan,
        inf_count=acc.inf,
    )
    return Fingerprint(hasher.hexdigest(), n, rms, stats)


def _block_partials(x: np.ndarray) -> list:
    """Partials of consecutive blocks of `x` (every block full except possibly the last).

    Full blocks of finite values (the usual activation) take a shorter path without masks; it
    performs the same operations on the same values, so the results are the same bits (a test
    compares the two paths).
    """
    full = (x.size // STATS_BLOCK) * STATS_BLOCK
    if full == 0 or not np.isfinite(x[:full]).all():
        return _masked_block_partials(x)
    out = _finite_block_partials(x[:full])
    if full < x.size:
        out += _masked_block_partials(x[full:])
    return out


def _finite_block_partials(x: np.ndarray) -> list:
    """`_masked_block_partials` for full blocks whose values are all finite."""
    nblocks = x.size // STATS_BLOCK
    blocks = x.reshape(nblocks, STATS_BLOCK)
    x64 = blocks.astype(np.float64)
    shift = x64[:, 0].copy()  # each block's first value
    d = (x64 - shift[:, None]).reshape(nblocks, _ROWS, LANES)
    dd = d * d
    sq = np.multiply(x64, x64, out=x64).reshape(nblocks, _ROWS, LANES)
    s1 = np.zeros((nblocks, LANES))
    s2 = np.zeros((nblocks, LANES))
    sqs = np.zeros((nblocks, LANES))
    for r in range(_ROWS):  # sequential per lane, exactly like the Rust loop
        s1 += d[:, r, :]
        s2 += dd[:, r, :]
        sqs += sq[:, r, :]
    t1 = np.zeros(nblocks)
    t2 = np.zeros(nblocks)
    tq = np.zeros(nblocks)
    for lane in range(LANES):  # lanes added in order
        t1 += s1[:, lane]
        t2 += s2[:, lane]
        tq += sqs[:, lane]
    mins = blocks.min(axis=1)
    maxs = blocks.max(axis=1)
    out = []
    c = float(STATS_BLOCK)
    for b in range(nblocks):
        k, s1b = float(shift[b]), float(t1[b])
        p = _Partial(count=STATS_BLOCK, sumsq=float(tq[b]))
        p.mean = k + s1b / c
        p.m2 = float(t2[b]) - s1b * s1b / c
        p.min = _zero_extreme(blocks[b], None, float(mins[b]), np.less)
        p.max = _zero_extreme(blocks[b], None, float(maxs[b]), np.greater)
        out.append(p)
    return out


def _masked_block_partials(x: np.ndarray) -> list:
    """Partials of any values: non-finite ones are counted and skipped, the tail is padded."""
    n = x.size
    nblocks = -(-n // STATS_BLOCK)
    rows = min(_ROWS, -(-n // LANES))
    padded = np.zeros(nblocks * STATS_BLOCK, dtype="<f4")
    padded[:n] = x
    blocks = padded.reshape(nblocks, STATS_BLOCK)
    valid = np.zeros(nblocks * STATS_BLOCK, dtype=bool)
    valid[:n] = True
    valid = valid.reshape(nblocks, STATS_BLOCK)
    nan = np.isnan(blocks) & valid
    inf = np.isinf(blocks) & valid
    finite = valid & ~nan & ~inf
    counts = finite.sum(axis=1)
    # The shift: each block's first finite value (0 when it has none).
    first = np.argmax(finite, axis=1)
    shift = np.where(counts > 0, blocks[np.arange(nblocks), first], 0.0).astype(np.float64)
    x64 = blocks.astype(np.float64)
    # Skipped (non-finite or padding) elements add +0.0 to their lane: an exact no-op, since a
    # lane sum starting at +0.0 is never -0.0.
    d = np.where(finite, x64 - shift[:, None], 0.0).reshape(nblocks, _ROWS, LANES)
    sq = np.where(finite, x64 * x64, 0.0).reshape(nblocks, _ROWS, LANES)
    s1 = np.zeros((nblocks, LANES))
    s2 = np.zeros((nblocks, LANES))
    sqs = np.zeros((nblocks, LANES))
    for r in range(rows):  # sequential per lane, exactly like the Rust loop
        dr = d[:, r, :]
        s1 += dr
        s2 += dr * dr
        sqs += sq[:, r, :]
    t1 = np.zeros(nblocks)
    t2 = np.zeros(nblocks)
    tq = np.zeros(nblocks)
    for lane in range(LANES):  # lanes added in order
        t1 += s1[:, lane]
        t2 += s2[:, lane]
        tq += sqs[:, lane]
    masked_min = np.where(finite, blocks, np.float32(np.inf))
    masked_max = np.where(finite, blocks, np.float32(-np.inf))
    mins = masked_min.min(axis=1)
    maxs = masked_max.max(axis=1)
    nans = nan.sum(axis=1)
    infs = inf.sum(axis=1)
    out = []
    for b in range(nblocks):
        count = int(counts[b])
        p = _Partial(sumsq=float(tq[b]), nan=int(nans[b]), inf=int(infs[b]))
        if count:
            k, c = float(shift[b]), float(count)
            s1b = float(t1[b])
            p.count = count
            p.mean = k + s1b / c
            p.m2 = float(t2[b]) - s1b * s1b / c
            p.min = _zero_extreme(blocks[b], finite[b], float(mins[b]), np.less)
            p.max = _zero_extreme(blocks[b], finite[b], float(maxs[b]), np.greater)
        out.append(p)
    return out


def _zero_extreme(
    block: np.ndarray, finite: Optional[np.ndarray], extreme: float, better
) -> float:
    """The extreme of a block, with the sign of zero trace-core reports: lanes keep the first
    value that is strictly better, and lanes are folded in order keeping ties. `finite` None
    means every value is finite."""
    if extreme != 0.0:
        return extreme
    for lane in range(LANES):
        vals = block[lane::LANES]
        if finite is not None:
            vals = vals[finite[lane::LANES]]
        if vals.size == 0:
            continue
        zeros = np.flatnonzero(vals == 0.0)
        best = vals.min() if better is np.less else vals.max()
        if best == 0.0:
            return float(vals[zeros[0]])
    return extreme


def _splitmix(q: np.ndarray) -> np.ndarray:
    """Outputs number `q` (uint64 array) of splitmix64 seeded with SKETCH_SEED (wrapping)."""
    z = np.uint64(SKETCH_SEED) + (q + np.uint64(1)) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58_476D_1CE4_E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D0_49BB_1331_11EB)
    return z ^ (z >> np.uint64(31))


def buckets_for(k: int, n: int) -> int:
    """Buckets a record of `n` elements gets under the setting `k` (trace-core's
    `buckets_for`): `k`, or the smallest power of two holding `n`, at least 64."""
    if k == 0:
        return 0
    fit = 1 << max(n - 1, 0).bit_length()
    return min(max(fit, 64), k)


def sketch(values: np.ndarray, k: int) -> np.ndarray:
    """The value sketch (k float64 buckets) of canonical F32 values, bit-identical to
    trace-core's. `k` is a power of two from 64 to 1024."""
    if k & (k - 1) or not 64 <= k <= 1024:
        raise ValueError(f"sketch k must be a power of two from 64 to 1024, got {k}")
    flat = np.asarray(values, dtype="<f4", order="C").reshape(-1)
    per = STATS_BLOCK // k
    words = 1 + k // 64
    total = np.zeros(k)
    step = STATS_BLOCK * _BLOCKS_PER_PASS
    buckets = np.arange(k, dtype=np.int64)
    for start in range(0, flat.size, step):
        chunk = flat[start : start + step]
        nblocks = -(-chunk.size // STATS_BLOCK)
        # Padding and non-finite values add ±0.0: a no-op on sums that start at +0.0.
        x = np.zeros(nblocks * STATS_BLOCK)
        x[: chunk.size] = np.where(np.isfinite(chunk), chunk, np.float32(0.0))
        nsub = nblocks * per
        base = (np.uint64(start // k) + np.arange(nsub, dtype=np.uint64)) * np.uint64(words)
        rot = (_splitmix(base) & np.uint64(k - 1)).astype(np.int64)
        sign_words = _splitmix(base[:, None] + np.uint64(1) + np.arange(k // 64, dtype=np.uint64))
        # Bit j of word w is the sign of element 64·w + j (little-endian bytes, bits LSB first).
        negative = np.unpackbits(sign_words.astype("<u8").view(np.uint8), axis=1, bitorder="little")
        contrib = (1.0 - 2.0 * negative) * x.reshape(nsub, k)
        # Bucket m of sketch block b holds element (m - rot_b) mod k.
        source = (buckets[None, :] - rot[:, None]) & (k - 1)
        by_bucket = np.take_along_axis(contrib, source, axis=1).reshape(nblocks, per, k)
        partial = np.zeros((nblocks, k))
        for t in range(per):  # sequential over the sketch blocks of each statistics block
            partial += by_bucket[:, t, :]
        for p in partial:  # statistics blocks in order
            total += p
    return total


def sketch_json(buckets: np.ndarray) -> dict:
    """The record's `sketch` object: base64 of the buckets as little-endian f64."""
    import base64

    data = np.asarray(buckets, dtype="<f8").tobytes()
    return {
        "k": int(buckets.size),
        "seed": SKETCH_SEED,
        "f64le": base64.b64encode(data).decode("ascii"),
    }
