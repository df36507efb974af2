"""A real distributed engine: torch.distributed (gloo, 2 processes on loopback) running a
tensor-parallel Llama-style block (python/tp_reference.py), traced per rank with tensor_trace,
against the same block in one process with the same weights, compared by trace-diff with the
block's `[[shard]]` rules.

A clean run agrees; each planted bug is found at the record where it happens, with the rank(s)
named. Skipped when torch is not installed; trace-diff comes from `$TRACE_DIFF` or
`cargo run -p trace-diff --features cli` (the repository's own build).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install tensor-trace[torch])")
import torch.distributed as dist  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tp_reference  # noqa: E402
from conftest import read_run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def trace_diff(*args: str) -> subprocess.CompletedProcess:
    exe = os.environ.get("TRACE_DIFF")
    if exe:
        cmd = [exe]
    else:
        cargo = shutil.which("cargo")
        if cargo is None:
            pytest.skip("neither $TRACE_DIFF nor cargo is available to run trace-diff")
        cmd = [cargo, "run", "--quiet", "-p", "trace-diff", "--features", "cli", "--"]
    return subprocess.run(
        cmd + list(args), cwd=REPO, capture_output=True, text=True, timeout=600
    )


def diff_json(paths: dict) -> dict:
    out = trace_diff(
        paths["tp"], paths["ref"], "--rules", paths["rules"], "--format", "json"
    )
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    assert (out.returncode == 0) == (report["outcome"] == "agree"), out.stdout[:500]
    return report


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Each variant run once (two processes each), shared by the tests below."""
    base = tmp_path_factory.mktemp("tp")
    return {bug: tp_reference.run(str(base / bug), 2, bug, timeout=180) for bug in tp_reference.BUGS}


def test_each_rank_writes_its_own_run_from_the_launcher_variables(runs):
    tp = Path(runs["none"]["tp"])
    assert sorted(p.name for p in tp.iterdir()) == ["rank-0", "rank-1"]
    for r in (0, 1):
        d = tp / f"rank-{r}"
        assert json.loads((d / "rank.json").read_text()) == {"rank": r, "world_size": 2}
        q = next(rec for rec in read_run(d) if rec["name"] == "q")
        assert q["rank"] == r and q["shape"] == [1, tp_reference.TOKENS, tp_reference.D // 2]
    ref = Path(runs["none"]["ref"])
    # The default layout: packed.
    assert (ref / "records.jsonl").exists() and not (ref / "rank-0").exists()


def test_clean_tensor_parallel_block_agrees_with_the_single_process_block(runs):
    report = diff_json(runs["none"])
    assert report["outcome"] == "agree"
    ranks = report["ranks"]
    assert ranks["mode"] == "reassembled"
    assert (ranks["world_size_a"], ranks["world_size_b"]) == (2, None)
    # q k v attn gate up act lm_head concatenated, o.proj down.proj summed, the rest replicated.
    assert (ranks["reassembled_values"], ranks["summed"], ranks["replicated"]) == (8, 2, 6)
    assert report["counts"]["compared"] == 16 and report["counts"]["diverged"] == 0


@pytest.mark.parametrize(
    "bug, record, ranks",
    [
        ("wrong-slice", "q", [1]),  # only rank 1's shard of q is wrong
        ("skip-allreduce", "o", [0, 1]),  # every rank holds a partial sum, not the sum
        ("gather-order", "logits", [0, 1]),  # every rank gathered the same wrong order
    ],
)
def test_planted_bug_is_localized_with_its_rank(runs, bug, record, ranks):
    report = diff_json(runs[bug])
    assert report["outcome"] == "diverged"
    first = report["first_divergence"]
    assert first["name"] == record
    assert report["ranks"]["first_divergence_ranks"] == ranks
    # What precedes the bug still agrees: the localization is exact, not a cascade.
    before = [p for p in report["pairs"] if p["position"] < first["pair"]]
    assert before and all(p["verdict"] in ("identical", "within_tolerance") for p in before)


def test_text_report_names_the_ranks(runs):
    paths = runs["wrong-slice"]
    out = trace_diff(paths["tp"], paths["ref"], "--rules", paths["rules"], "--color", "never")
    assert out.returncode == 1, out.stderr
    assert "ranks: reassembled (A: 2 ranks, B: single process)" in out.stdout
    assert "first divergence: #1 q" in out.stdout
    assert "rank(s): 1 (concatenated along axis -1" in out.stdout


def test_equal_world_sizes_compare_rank_by_rank(runs):
    out = trace_diff(
        runs["wrong-slice"]["tp"], runs["none"]["tp"], "--format", "json"
    )
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["ranks"]["mode"] == "rank-by-rank"
    assert report["ranks"]["first_divergence_ranks"] == [1]
    # Rank 1's own q diverges first; rank 0 parts only at o, after the all-reduce mixed in
    # rank 1's wrong attention.
    per_rank = report["ranks"]["per_rank"]
    assert [r["first_divergence"][0] for r in per_rank] == ["o", "q"]
    assert report["first_divergence"]["name"] == "q"


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--bug: expected one of"):
        tp_reference.run(str(tmp_path), 2, "typo")
    with pytest.raises(ValueError, match="--world-size"):
        tp_reference.run(str(tmp_path), 3)
