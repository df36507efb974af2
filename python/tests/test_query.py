"""The packed record log read by DuckDB's `read_json`, as `docs/FORMAT.md` shows.

Skipped only when duckdb cannot be imported (`cargo xtask ci` installs the pinned version).
"""

from __future__ import annotations

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


def write_run(d) -> None:
    t = Tracer(d, layout="packed")
    for step in range(3):
        for layer in range(4):
            h = np.full(8, 1.0 + layer + step, np.float32)
            # NaN reaches layer 2 at step 1 and layer 3 from step 1 on; layer 3 also at step 2.
            if (layer, step) in {(2, 1), (3, 1), (3, 2)}:
                h[3] = np.nan
            t.record(f"blk{layer}/out", h, step=step, layer=layer, stage="out")
    t.close()
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
