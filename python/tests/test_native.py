"""The native extension's boundary: threads, the disabled path, bad input, panics."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import tensor_trace
from tensor_trace import ConfigError, TraceError, Tracer, dump_trace, fingerprint_array
from conftest import env_dir, read_manifest, read_records, read_run


def test_the_package_runs_on_the_installed_extension():
    # Not a source tree on PYTHONPATH without the extension: the built module is importable.
    assert tensor_trace._native.__name__ == "tensor_trace._native"
    assert tensor_trace.FORMAT_VERSION == 1 and tensor_trace.ENV_DIR == "TENSOR_TRACE_DIR"


class _Untouchable:
    def __getattr__(self, name):
        raise AssertionError(f"the disabled path reached the extension ({name})")


def test_the_disabled_path_never_calls_the_extension(clean_env, monkeypatch):
    assert not tensor_trace.enabled()  # reads the environment once, through the extension
    monkeypatch.setattr(tensor_trace, "_native", _Untouchable())
    monkeypatch.setattr(tensor_trace._tracer, "_native", _Untouchable())
    for _ in range(3):
        dump_trace("x", object())  # not even the array is looked at
    assert not tensor_trace.enabled() and tensor_trace.global_tracer() is None


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("layout", ["files", "packed"])
def test_threads_recording_at_once_lose_nothing(trace_dir, layout, background):
    t = Tracer(trace_dir, layout=layout, background=background)
    threads, per_thread = 4, 50
    # Large enough that the threads overlap inside the extension, which releases the GIL.
    x = np.linspace(-1, 1, 1 << 16, dtype=np.float32)
    errors = []

    def work(k: int) -> None:
        try:
            for i in range(per_thread):
                t.record(f"t{k}/x", x + np.float32(i), step=i)
                t.record("shared", x[: 100 + k], step=i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    t.flush()  # a background writer may still hold records
    assert errors == []
    if layout == "files":
        entries = read_manifest(trace_dir)
        assert len(read_records(trace_dir)) == 2 * threads * per_thread
    else:
        text = (trace_dir / "records.jsonl").read_text("utf-8")
        entries = [__import__("json").loads(line) for line in text.splitlines()]
    assert sorted(e["index"] for e in entries) == list(range(2 * threads * per_thread))
    shared = sorted(e["occurrence"] for e in entries if e["name"] == "shared")
    assert shared == list(range(threads * per_thread))
    for k in range(threads):
        occ = sorted(e["occurrence"] for e in entries if e["name"] == f"t{k}/x")
        assert occ == list(range(per_thread))


@pytest.mark.parametrize("layout", ["files", "packed"])
def test_a_background_writer_writes_what_the_caller_would(tmp_path, layout):
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (3, 4096, 70_000, 300_000)]
    runs = {}
    for background in (False, True):
        t = Tracer(tmp_path / str(background), layout=layout, background=background)
        for i, a in enumerate(arrays):
            t.record(f"blk{i}/x", a, step=0, layer=i)
            t.record(f"blk{i}/x", a[::-2], step=1, layer=i)
        t.close()
        runs[background] = sorted(
            (r["index"], r["name"], r["blake3"], r["rms"], json.dumps(r.get("stats")))
            for r in read_run(tmp_path / str(background))
        )
    assert len(runs[True]) == 2 * len(arrays)
    assert runs[True] == runs[False]


def test_background_records_reach_the_disk_at_exit_without_a_flush(tmp_path):
    code = (
        "import sys, numpy as np, tensor_trace\n"
        "t = tensor_trace.Tracer(sys.argv[1], layout='files', background=True)\n"
        "for i in range(200):\n"
        "    t.record(f'r{i}', np.full(1000, i, np.float32))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], check=True)
    assert len(read_records(tmp_path / "run")) == 200


def test_background_must_be_a_bool(trace_dir):
    with pytest.raises(TypeError, match="background must be True or False, got 1"):
        Tracer(trace_dir, background=1)


def test_a_panic_inside_the_extension_is_a_trace_error():
    with pytest.raises(TraceError, match="internal panic: boom"):
        tensor_trace._native._panic("boom")


@pytest.mark.parametrize(
    "array, error, message",
    [
        (np.array(["a", "b"]), TypeError, "cannot record dtype <U1"),
        (np.zeros(2, bool), TypeError, "cannot record dtype bool"),
        (object(), TypeError, "cannot record dtype object"),
        ([[1.0], [2.0, 3.0]], ValueError, "inhomogeneous"),
    ],
)
def test_bad_arrays_are_clear_errors(trace_dir, array, error, message):
    with pytest.raises(error, match=message):
        Tracer(trace_dir).record("x", array)
    with pytest.raises(error, match=message):
        fingerprint_array(array)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"step": -1}, TypeError, "step must be a non-negative integer"),
        ({"step": 1.5}, TypeError, "step must be a non-negative integer"),
        ({"layer": "0"}, TypeError, "layer must be an integer"),
        ({"stage": 3}, TypeError, "stage must be a string"),
        ({"stage": "\ud800"}, ValueError, "stage .* is not valid Unicode text"),
    ],
)
def test_bad_context_is_a_clear_error(trace_dir, kwargs, error, message):
    with pytest.raises(error, match=message):
        Tracer(trace_dir).record("x", [1.0], **kwargs)
    with pytest.raises(ValueError, match="name .* is not valid Unicode text"):
        Tracer(trace_dir).record("\udcff", [1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filter": "blk["}, 'invalid filter="blk\\[": bad glob'),
        ({"values_at": "logits"}, "invalid values_at"),
        ({"layout": "tar"}, "invalid layout"),
        ({"rank": -1}, 'invalid rank="-1"'),
        ({"rank": 2, "world_size": 2}, 'invalid rank="2"'),
    ],
)
def test_bad_constructor_arguments_are_config_errors(trace_dir, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Tracer(trace_dir, **kwargs)


def test_an_invalid_environment_raises_on_every_call(clean_env, trace_dir):
    env_dir(clean_env, trace_dir)
    clean_env.setenv("TENSOR_TRACE_FILTER", "blk[")
    for _ in range(2):
        with pytest.raises(ConfigError) as e:
            dump_trace("x", [1.0])
        assert e.value.setting == "TENSOR_TRACE_FILTER" and e.value.value == "blk["
