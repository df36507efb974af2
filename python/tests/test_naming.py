"""File names: sanitizing, repeats and tags, as trace-core's sink names files."""

from __future__ import annotations

import pytest

from tensor_trace import Tracer, sanitize
from conftest import read_manifest


@pytest.mark.parametrize(
    "name, expected",
    [
        ("blk0/attn_norm", "blk0_attn_norm"),
        ("a\\b", "a_b"),
        ("..", "_.."),
        ("../../etc/passwd", "_.._.._etc_passwd"),
        ("/abs/path", "_abs_path"),
        ("", "_"),
        ("nul\0here\n", "nul_here_"),
        (".hidden", "_.hidden"),
        ("del\x7f c1\x85 nbsp\xa0", "del_ c1_ nbsp\xa0"),
        ("ünïcødé/名前", "ünïcødé_名前"),
    ],
)
def test_sanitize(name, expected):
    assert sanitize(name) == expected


def test_long_names_are_cut_at_a_character_boundary_and_tagged():
    assert sanitize("m" * 180) == "m" * 180
    s = sanitize("m" * 181)
    assert s.startswith("m" * 180 + "~") and len(s) == 189
    assert sanitize("x" * 400) != sanitize("x" * 401)
    multibyte = sanitize("a" + "é" * 120)
    assert len(multibyte.encode()) < 190 and multibyte.startswith("a" + "é" * 89 + "~")


def test_repeats_and_names_that_sanitize_alike(trace_dir):
    t = Tracer(trace_dir, layout="files")
    for name in ["x/y", "x_y", "x/y", "blk0/q", "blk0/q", "blk0/q"]:
        t.record(name, [1.0, 2.0])
    files = [e["file"] for e in read_manifest(trace_dir)]
    assert files[0] == "x_y.trace"
    assert files[1].startswith("x_y.") and len(files[1]) == len("x_y..trace") + 8
    assert files[2] == "x_y.1.trace"
    assert files[3:] == ["blk0_q.trace", "blk0_q.1.trace", "blk0_q.2.trace"]
    assert [e["occurrence"] for e in read_manifest(trace_dir)] == [0, 0, 1, 0, 1, 2]
