"""The packed record log read by DuckDB's `read_json` and by Polars, as `docs/FORMAT.md` shows.

Skipped only when duckdb or polars cannot be imported (`cargo xtask ci` installs the pinned
versions).
"""

from __future__ import annotations

import io

import numpy as np
import pytest

duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install duckdb)")

from tensor_trace import Tracer  # noqa: E402

# The first query of docs/FORMAT.md ("where NaN first appears, per layer"), verbatim but for
# the path.
FIRST_NAN_PER_LAYER = """
SELECT layer,
       min(index)            AS first_index,
       arg_min(name, index)  AS first_record,
       arg_min(seq, index)   AS step
FROM read_json('{log}', format = 'newline_delimited', ignore_errors = true)
WHERE stats.nan_count > 0
GROUP BY layer
ORDER BY first_index
"""

LARGEST_RMS_PER_LAYER = """
SELECT layer, max(rms) AS max_rms, arg_max(name, rms) AS record, arg_max(seq, rms) AS step
FROM read_json('{log}', format = 'newline_delimited', ignore_errors = true)
WHERE index IS NOT NULL
GROUP BY layer
ORDER BY layer
"""


def write_run(d, torn: bool = True) -> None:
    t = Tracer(d, layout="packed")
    for step in range(3):
        for layer in range(4):
            h = np.full(8, 1.0 + layer + step, np.float32)
            # NaN reaches layer 2 at step 1 and layer 3 from step 1 on; layer 3 also at step 2.
            if (layer, step) in {(2, 1), (3, 1), (3, 2)}:
                h[3] = np.nan
            t.record(f"blk{layer}/out", h, step=step, layer=layer, stage="out")
    t.close()
    if torn:
        # A crash's cut-short last line must not stop the query.
        with open(d / "records.jsonl", "ab") as f:
            f.write(b'{"name":"blk0/out","sh')


def test_first_nan_per_layer(trace_dir):
    write_run(trace_dir)
    log = trace_dir / "records.jsonl"
    rows = duckdb.sql(FIRST_NAN_PER_LAYER.format(log=log)).fetchall()
    # Step 1 runs layers 0..3 at indexes 4..7: layer 2 is index 6, layer 3 index 7.
    assert rows == [(2, 6, "blk2/out", 1), (3, 7, "blk3/out", 1)]


def test_largest_rms_per_layer(trace_dir):
    write_run(trace_dir)
    log = trace_dir / "records.jsonl"
    rows = duckdb.sql(LARGEST_RMS_PER_LAYER.format(log=log)).fetchall()
    # rms is null where a NaN is present, so layer 3's largest finite rms is step 0's.
    assert [(r[0], r[1], r[3]) for r in rows] == [(0, 3.0, 2), (1, 4.0, 2), (2, 5.0, 2), (3, 4.0, 0)]


def polars_first_nan_per_layer(pl, frame):
    """The first DuckDB query in Polars, as docs/FORMAT.md spells it."""
    return (
        frame.filter(pl.col("stats").struct.field("nan_count") > 0)
        .group_by("layer")
        .agg(
            pl.col("index").min().alias("first_index"),
            pl.col("name").sort_by("index").first().alias("first_record"),
            pl.col("seq").sort_by("index").first().alias("step"),
        )
        .sort("first_index")
    )


def test_polars_scans_a_log(trace_dir):
    pl = pytest.importorskip("polars", reason="polars is not installed (pip install polars)")
    write_run(trace_dir, torn=False)
    lazy = pl.scan_ndjson(trace_dir / "records.jsonl")
    rows = polars_first_nan_per_layer(pl, lazy).collect().rows()
    assert rows == [(2, 6, "blk2/out", 1), (3, 7, "blk3/out", 1)]


def test_polars_reads_a_crashed_runs_log_by_its_complete_lines(trace_dir):
    pl = pytest.importorskip("polars", reason="polars is not installed (pip install polars)")
    write_run(trace_dir, torn=True)
    log = trace_dir / "records.jsonl"
    # Unlike DuckDB, Polars rejects a cut-short last line even with ignore_errors (2.1.0), so
    # the docs say to read the complete lines only (or to `tensor-trace export` the run).
    with pytest.raises(pl.exceptions.ComputeError):
        pl.read_ndjson(log, ignore_errors=True)
    data = log.read_bytes()
    frame = pl.read_ndjson(io.BytesIO(data[: data.rfind(b"\n") + 1]))
    assert frame.height == 12
    rows = polars_first_nan_per_layer(pl, frame).rows()
    assert rows == [(2, 6, "blk2/out", 1), (3, 7, "blk3/out", 1)]
