"""The global `dump_trace`: configured from the environment once, near-free when off."""

from __future__ import annotations

import pytest

import tensor_trace
from tensor_trace import ConfigError, dump_trace
from conftest import env_dir, read_manifest, read_records


def test_disabled_returns_at_once_and_never_rereads_the_environment(clean_env, trace_dir):
    assert dump_trace("a", [1.0]) is None
    assert tensor_trace._disabled is True and not tensor_trace.enabled()
    env_dir(clean_env, trace_dir)  # too late: the environment was read at the first call
    dump_trace("a", [1.0])
    assert not trace_dir.exists()


def test_disabled_does_not_even_look_at_the_array():
    dump_trace("a", object())  # would be a TypeError when enabled
    dump_trace("a", None, layer="not checked either")


def test_seed_variable_enables_and_ours_wins(clean_env, tmp_path):
    # The seed's variable keeps the seed's layout, so `jq .blake3 DIR/*.trace` works.
    clean_env.setenv("BITNET_TRACE_DIR", str(tmp_path / "seed"))
    dump_trace("x", [1.0])
    assert (tmp_path / "seed" / "x.trace").exists()
    tensor_trace._reset()
    clean_env.setenv("TENSOR_TRACE_DIR", str(tmp_path / "ours"))
    dump_trace("x", [1.0])
    # Ours wins, in its default layout: packed, no `.trace` file.
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["records.jsonl"]


def test_filter_values_rank_and_append_from_the_environment(clean_env, trace_dir):
    env_dir(clean_env, trace_dir, layout="files")
    clean_env.setenv("TENSOR_TRACE_FILTER", "blk*, logits, !*/k")
    clean_env.setenv("TENSOR_TRACE_VALUES", "logits")
    clean_env.setenv("TENSOR_TRACE_RANK", "2")
    for name in ["blk0/q", "blk0/k", "logits", "embed"]:
        dump_trace(name, [1.0, 2.0], step=0)
    recs = read_records(trace_dir)
    assert sorted(recs) == ["blk0_q.trace", "logits.trace"]
    assert recs["logits.trace"]["values"] == "logits.npy" and recs["logits.trace"]["rank"] == 2
    tensor_trace._reset()
    with pytest.raises(ConfigError, match="already holds a trace run"):
        dump_trace("logits", [3.0])
    tensor_trace._reset()
    clean_env.setenv("TENSOR_TRACE_APPEND", "1")
    dump_trace("logits", [3.0], step=1)
    assert [e["file"] for e in read_manifest(trace_dir)][-1] == "logits.1.trace"


def test_values_accepts_booleans(clean_env, trace_dir):
    env_dir(clean_env, trace_dir)
    clean_env.setenv("TENSOR_TRACE_VALUES", "all")
    dump_trace("any/name", [1.0])
    assert (trace_dir / "any_name.npy").exists()


@pytest.mark.parametrize(
    "var, value, message",
    [
        ("TENSOR_TRACE_FILTER", "blk[", r'invalid TENSOR_TRACE_FILTER="blk\[": bad glob "blk\[": unclosed'),
        ("TENSOR_TRACE_FILTER", " , ", "expected a comma-separated list"),
        # The list is split at commas first (as trace-core does), so `{a,b}` cannot be written.
        ("TENSOR_TRACE_FILTER", "{a,b}", "unclosed alternate group"),
        ("TENSOR_TRACE_VALUES", "x\\", "dangling"),
        ("TENSOR_TRACE_APPEND", "maybe", "TENSOR_TRACE_APPEND.*expected 1/true"),
        ("TENSOR_TRACE_ASYNC", "2", "TENSOR_TRACE_ASYNC"),
        ("TENSOR_TRACE_RANK", "-1", "TENSOR_TRACE_RANK.*non-negative integer"),
        ("TENSOR_TRACE_VALUES_AT", "logits", 'invalid TENSOR_TRACE_VALUES_AT="logits": item "logits" has no `@`'),
        ("TENSOR_TRACE_VALUES_AT", "a@5-2", "range 5-2 is empty"),
    ],
)
def test_invalid_settings_raise_on_every_call_naming_the_variable(clean_env, trace_dir, var, value, message):
    env_dir(clean_env, trace_dir)
    clean_env.setenv(var, value)
    for _ in range(2):
        with pytest.raises(ConfigError, match=message):
            dump_trace("a", [1.0])
    assert not trace_dir.exists()


@pytest.mark.parametrize(
    "spec, name, expected",
    [
        ("*norm*", "blk0/attn_norm", True),
        ("blk?/q", "blk1/q", True),
        ("blk[0-2]/q", "blk3/q", False),
        ("blk[!0]/q", "blk1/q", True),
        ("{logits}", "logits", True),
        ("**/q", "q", True),
        ("**/q", "a/b/q", True),
        ("blk0/**", "blk0/x/y", True),
        ("attn\\[0\\]", "attn[0]", True),
        ("a,b", "b", True),
        ("!a", "b", True),
        ("!a", "a", False),
    ],
)
def test_globs_follow_globset(spec, name, expected):
    f = tensor_trace.NameFilter.parse(spec, "TENSOR_TRACE_FILTER")
    assert f.matches(name) is expected


def test_values_at_saves_single_occurrences_from_the_environment(clean_env, trace_dir):
    env_dir(clean_env, trace_dir, layout="files")
    clean_env.setenv("TENSOR_TRACE_VALUES_AT", "h@1, h@3-9,logits@0")
    for step in range(5):
        dump_trace("h", [float(step)], step=step)
    dump_trace("logits", [1.0])
    with_values = [e["file"] for e in read_manifest(trace_dir) if "values" in e]
    assert with_values == ["h.1.trace", "h.3.trace", "h.4.trace", "logits.trace"]
    assert sorted(p.name for p in trace_dir.glob("*.npy")) == ["h.1.npy", "h.3.npy", "h.4.npy", "logits.npy"]


# The same cases as trace-core's `values_at_selects_records_by_name_and_occurrence`.
