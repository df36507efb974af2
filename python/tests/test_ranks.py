"""Multi-process runs: rank and world size from the environment, `DIR/rank-{r}`, `rank.json`."""

from __future__ import annotations

import json

import pytest

import tensor_trace
from tensor_trace import ConfigError, Tracer, dump_trace
from conftest import env_dir, read_packed


def test_world_size_above_one_writes_into_the_rank_directory(clean_env, trace_dir):
    env_dir(clean_env, trace_dir)
    clean_env.setenv("TENSOR_TRACE_RANK", "1")
    clean_env.setenv("TENSOR_TRACE_WORLD_SIZE", "2")
    dump_trace("blk0/q", [1.0, 2.0])
    rank_dir = trace_dir / "rank-1"
    assert sorted(p.name for p in trace_dir.iterdir()) == ["rank-1"]
    # Byte-identical to what trace-core writes (crates/trace-core/src/ranks.rs tests).
    assert (rank_dir / "rank.json").read_bytes() == b'{"rank":1,"world_size":2}\n'
    [record] = read_packed(rank_dir)  # the default layout
    assert (record["name"], record["rank"]) == ("blk0/q", 1)


def test_two_ranks_share_the_run_directory_without_collision(clean_env, trace_dir):
    for rank in (0, 1):
        t = Tracer(trace_dir, rank=rank, world_size=2)
        t.record("x", [float(rank)])
        t.close()
    assert sorted(p.name for p in trace_dir.iterdir()) == ["rank-0", "rank-1"]
    for rank in (0, 1):
        info = json.loads((trace_dir / f"rank-{rank}" / "rank.json").read_text())
        assert info == {"rank": rank, "world_size": 2}


def test_world_size_one_or_unset_is_exactly_a_single_process_run(clean_env, trace_dir):
    env_dir(clean_env, trace_dir)
    clean_env.setenv("TENSOR_TRACE_WORLD_SIZE", "1")
    clean_env.setenv("TENSOR_TRACE_RANK", "0")
    dump_trace("x", [1.0])
    assert sorted(p.name for p in trace_dir.iterdir()) == ["records.jsonl"]


def test_launcher_variables_are_used_and_ours_win(clean_env, tmp_path):
    # torchrun's variables make a rank directory as TENSOR_TRACE_* would.
    clean_env.setenv("TENSOR_TRACE_DIR", str(tmp_path / "run"))
    clean_env.setenv("RANK", "1")
    clean_env.setenv("WORLD_SIZE", "2")
    dump_trace("x", [1.0])
    [record] = read_packed(tmp_path / "run" / "rank-1")
    assert record["rank"] == 1
    # Ours win: a single-process run of rank 0.
    tensor_trace._reset()
    clean_env.setenv("TENSOR_TRACE_DIR", str(tmp_path / "ours"))
    clean_env.setenv("TENSOR_TRACE_RANK", "0")
    clean_env.setenv("TENSOR_TRACE_WORLD_SIZE", "1")
    dump_trace("x", [1.0])
    [record] = read_packed(tmp_path / "ours")
    assert record["rank"] == 0


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TENSOR_TRACE_WORLD_SIZE": "2"}, 'invalid TENSOR_TRACE_WORLD_SIZE="2": a world of 2'),
        ({"TENSOR_TRACE_WORLD_SIZE": "0"}, "expected the number of processes, at least 1"),
        ({"TENSOR_TRACE_WORLD_SIZE": "two"}, "a positive integer"),
        (
            {"TENSOR_TRACE_WORLD_SIZE": "2", "TENSOR_TRACE_RANK": "2"},
            'invalid TENSOR_TRACE_RANK="2": expected a rank below the world size 2 '
            "(TENSOR_TRACE_WORLD_SIZE)",
        ),
        (
            {"WORLD_SIZE": "2", "RANK": "5"},
            'invalid RANK="5": expected a rank below the world size 2 (WORLD_SIZE)',
        ),
        ({"WORLD_SIZE": "2", "RANK": "-1"}, 'invalid RANK="-1": expected a non-negative'),
    ],
)
def test_bad_settings_name_the_variable(clean_env, tmp_path, env, message):
    for k, v in {"TENSOR_TRACE_DIR": str(tmp_path), **env}.items():
        clean_env.setenv(k, v)
    for _ in range(2):  # every call raises, not only the first
        with pytest.raises(ConfigError) as e:
            dump_trace("x", [1.0])
        assert message in str(e.value)


def test_constructor_checks_rank_against_world_size(tmp_path):
    with pytest.raises(ConfigError, match="world_size"):
        Tracer(tmp_path, world_size=2)
    with pytest.raises(ConfigError, match='invalid rank="2"'):
        Tracer(tmp_path, rank=2, world_size=2)


def test_appending_to_a_rank_directory_of_another_world_is_refused(tmp_path):
    t = Tracer(tmp_path, rank=0, world_size=2)
    t.record("x", [1.0])
    t.close()
    t = Tracer(tmp_path, rank=0, world_size=4, append=True)
    with pytest.raises(tensor_trace.TraceError, match="this process is rank 0 of 4"):
        t.record("x", [1.0])
