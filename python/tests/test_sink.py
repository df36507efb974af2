"""The directory: never overwrite, refuse to mix runs, append, manifest, raw values."""

from __future__ import annotations

import json
import os

import blake3
import numpy as np
import pytest

import tensor_trace
from tensor_trace import ConfigError, Tracer, dump_trace
from conftest import read_manifest, read_records


def test_never_overwrites_a_file_that_is_already_there(trace_dir):
    trace_dir.mkdir()
    (trace_dir / "logits.npy").write_bytes(b"someone else's")
    t = Tracer(trace_dir, values="logits")
    t.record("logits", np.ones(4, np.float32))
    assert (trace_dir / "logits.npy").read_bytes() == b"someone else's"
    [entry] = read_manifest(trace_dir)
    stem = entry["file"][: -len(".trace")]
    assert stem.startswith("logits.") and entry["values"] == stem + ".npy"
    assert not (trace_dir / "logits.trace").exists()  # the npy collision moved both files
    assert not [p for p in os.listdir(trace_dir) if p.endswith(".part")]


def test_refuses_a_directory_that_holds_a_run_unless_appending(trace_dir):
    Tracer(trace_dir).record("a", [1.0])
    with pytest.raises(ConfigError, match="already holds a trace run .*TENSOR_TRACE_APPEND=1"):
        Tracer(trace_dir).record("a", [2.0])
    t = Tracer(trace_dir, append=True)
    t.record("a", [2.0])
    t.record("b", [3.0])
    entries = read_manifest(trace_dir)
    assert [(e["index"], e["name"], e["occurrence"], e["file"]) for e in entries] == [
        (0, "a", 0, "a.trace"),
        (1, "a", 1, "a.1.trace"),
        (2, "b", 0, "b.trace"),
    ]


def test_append_tolerates_a_manifest_line_cut_short_by_a_crash(trace_dir):
    Tracer(trace_dir).record("a", [1.0])
    with open(trace_dir / "manifest.jsonl", "a") as f:
        f.write('{"index":1,"name":"a","occ')
    Tracer(trace_dir, append=True).record("b", [1.0])
    lines = (trace_dir / "manifest.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["index"] == 1 and lines[1].endswith('"occ')


def test_a_damaged_manifest_is_an_error(trace_dir):
    trace_dir.mkdir()
    (trace_dir / "manifest.jsonl").write_text("not json\n")
    with pytest.raises(Exception, match="line 1"):
        Tracer(trace_dir, append=True).record("a", [1.0])


def test_values_hash_like_the_record_and_keep_the_shape(trace_dir):
    t = Tracer(trace_dir, values="blk*,!blk1/*")
    x = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    for name in ["blk0/q", "blk1/q", "logits"]:
        t.record(name, x, step=0, layer=-1, stage="s")
    records = read_records(trace_dir)
    rec = records["blk0_q.trace"]
    assert rec["values"] == "blk0_q.npy" and "values" not in records["blk1_q.trace"]
    v = np.load(trace_dir / "blk0_q.npy")
    assert v.dtype == np.dtype("<f4") and v.shape == (2, 3)
    assert blake3.blake3(v.tobytes()).hexdigest() == rec["blake3"]
    assert (rec["seq"], rec["layer"], rec["stage"], rec["dtype"]) == (0, -1, "s", "F64")
    assert list(rec)[-3:] == ["stats", "values", "sketch"]


def test_filter_and_rank(trace_dir):
    t = Tracer(trace_dir, filter="*norm*,logits,!blk1/*", rank=3)
    assert [t.record(n, [1.0]) for n in ["blk0/attn_norm", "blk1/attn_norm", "logits", "q"]] == [
        True,
        False,
        True,
        False,
    ]
    recs = read_records(trace_dir)
    assert sorted(recs) == ["blk0_attn_norm.trace", "logits.trace"]
    assert list(recs["logits.trace"])[-4:] == ["occurrence", "rank", "stats", "sketch"]
    assert recs["logits.trace"]["rank"] == 3


def test_context_is_checked():
    t = Tracer("unused-dir-never-created")
    with pytest.raises(TypeError, match="step"):
        t.record("a", [1.0], step=-1)
    with pytest.raises(TypeError, match="layer"):
        t.record("a", [1.0], layer=1.5)
    with pytest.raises(TypeError, match="stage"):
        t.record("a", [1.0], stage=3)
    with pytest.raises(TypeError, match="name"):
        t.record(b"a", [1.0])
    assert not os.path.exists("unused-dir-never-created")


def read_log(d) -> list:
    text = (d / "records.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


def test_packed_layout_appends_one_line_per_record(trace_dir):
    t = Tracer(trace_dir, layout="packed", values_at="b@1")
    t.record("a", [1.0], step=0)
    t.record("b", [2.0], step=0)
    t.record("b", [3.0, 4.0], step=1)
    assert sorted(os.listdir(trace_dir)) == ["b.1.npy", "records.jsonl"]
    lines = read_log(trace_dir)
    assert [(r["index"], r["name"], r["occurrence"]) for r in lines] == [
        (0, "a", 0),
        (1, "b", 0),
        (2, "b", 1),
    ]
    assert lines[2]["values"] == "b.1.npy" and "values" not in lines[1]
    assert np.load(trace_dir / "b.1.npy").tolist() == [3.0, 4.0]
    assert lines[2]["blake3"] == blake3.blake3(np.float32([3.0, 4.0]).tobytes()).hexdigest()


def test_packed_append_after_a_line_cut_short_by_a_crash(trace_dir):
    Tracer(trace_dir, layout="packed").record("a", [1.0])
    with open(trace_dir / "records.jsonl", "ab") as f:
        f.write(b'{"name":"a","sha')  # a crash mid-line
    with pytest.raises(ConfigError, match="already holds a trace run"):
        Tracer(trace_dir, layout="packed").record("a", [2.0])
    with pytest.raises(ConfigError, match="other layout .*TENSOR_TRACE_LAYOUT=packed"):
        Tracer(trace_dir, append=True).record("a", [2.0])
    Tracer(trace_dir, layout="packed", append=True).record("a", [2.0])
    text = (trace_dir / "records.jsonl").read_text("utf-8")
    lines = text.split("\n")
    assert lines[1] == '{"name":"a","sha' and text.endswith("\n")
    second = json.loads(lines[2])
    assert (second["index"], second["occurrence"]) == (1, 1)


def test_layout_is_checked(clean_env, trace_dir):
    with pytest.raises(ConfigError, match="layout.*expected `files` or `packed`"):
        Tracer(trace_dir, layout="tar")

    clean_env.setenv("TENSOR_TRACE_DIR", str(trace_dir))
    clean_env.setenv("TENSOR_TRACE_LAYOUT", "Packed")
    dump_trace("a", [1.0])
    assert (trace_dir / "records.jsonl").exists()
    tensor_trace._reset()
    clean_env.setenv("TENSOR_TRACE_LAYOUT", "zip")
    with pytest.raises(ConfigError, match="TENSOR_TRACE_LAYOUT"):
        dump_trace("a", [1.0])
