"""`tensor_trace.torch.trace_module` with real torch (and transformers models built from configs).

Skipped as a whole only when torch cannot be imported; the HF tests also need transformers.
Models are built from small configs with random weights: nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip(
    "torch", reason="torch is not installed (pip install tensor-trace[torch])"
)

from torch import nn  # noqa: E402

import tensor_trace  # noqa: E402
from tensor_trace import ConfigError, Tracer, fingerprint_array  # noqa: E402
from tensor_trace.torch import trace_module  # noqa: E402
from conftest import env_dir, read_manifest, read_run  # noqa: E402


def records(d: Path) -> list:
    """Every record of a run, in capture order."""
    return read_run(d)


def names(d: Path) -> list:
    return [e["name"] for e in read_run(d)]


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()
    )


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(x + self.proj(x))


class Multi(nn.Module):
    """Returns a tuple mixing tensors and non-tensors, and a dict."""

    def forward(self, x):
        mask = x > 0  # bool: no conversion defined, skipped
        return (None, x * 2, 7, x.sum(), mask, (x + 1, "s", x - 1))


class Keyed(nn.Module):
    def forward(self, x):
        return {"a": x.mean(-1), "skip": None, "b": [x.max(), x.min()], "n": 3, 4: x, (1,): x}


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.multi = Multi()
        self.keyed = Keyed()

    def forward(self, x):
        h = self.embed(x)
        for b in self.blocks:
            h = b(h)
        h = self.head(h)
        _, doubled, *_ = self.multi(h)
        return self.keyed(doubled)["a"]


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return Toy().eval()


TOY_ORDER = [
    "embed",
    "blocks.0.proj",
    "blocks.0.norm",
    "blocks.0",
    "blocks.1.proj",
    "blocks.1.norm",
    "blocks.1",
    "head.0",
    "head.1",
    "head",
    "multi",  # the first tensor of the tuple (index 1, after None)
    "multi/3",
    "multi/5",  # the nested tuple's first tensor
    "multi/5/2",
    "keyed/a",
    "keyed/b",
    "keyed/b/1",
    "keyed/4",  # an integer key; the tuple key is skipped
    "output",  # the root module's tensor output
]


def test_small_module_names_order_and_context(toy, trace_dir):
    x = torch.randn(2, 3)
    with trace_module(toy, tracer=Tracer(trace_dir)) as h:
        toy(x)
    assert names(trace_dir) == TOY_ORDER
    assert h.records == len(TOY_ORDER)
    recs = {r["name"]: r for r in records(trace_dir)}
    assert {n: recs[n]["layer"] for n in ["blocks.0.proj", "blocks.1", "head.0", "multi"]} == {
        "blocks.0.proj": 0,
        "blocks.1": 1,
        "head.0": -1,  # Sequential children are not layers: only ModuleList indexes count
        "multi": -1,
    }
    assert recs["blocks.0.proj"]["stage"] == "proj"
    assert recs["multi/5/2"]["stage"] == "multi/5/2"
    assert recs["keyed/b/1"]["stage"] == "keyed/b/1"
    assert recs["output"]["stage"] == "output"
    assert all(r["seq"] == 0 for r in recs.values())
    assert recs["multi/3"]["shape"] == [] and recs["keyed/a"]["shape"] == [2]


def test_records_are_byte_identical_to_dump_trace(toy, tmp_path):
    """The same tensor, name and context through `Tracer.record` gives the same file bytes."""
    hooked, direct = tmp_path / "hooked", tmp_path / "direct"
    x = torch.randn(2, 3)
    captured = {}

    def keep(module, args, out):
        captured["blocks.1.proj"] = out.detach().clone()

    toy.blocks[1].proj.register_forward_hook(keep)
    with trace_module(toy, include="blocks.1.proj", tracer=Tracer(hooked, layout="files")):
        toy(x)
    t = Tracer(direct, layout="files")
    t.record("blocks.1.proj", captured["blocks.1.proj"], step=0, layer=1, stage="proj")
    [entry] = read_manifest(hooked)
    assert entry["file"] == "blocks.1.proj.trace"
    assert (hooked / entry["file"]).read_bytes() == (direct / entry["file"]).read_bytes()
    assert (hooked / "manifest.jsonl").read_bytes() == (direct / "manifest.jsonl").read_bytes()


def test_global_tracer_from_the_environment(toy, trace_dir, clean_env):
    env_dir(clean_env, trace_dir)
    clean_env.setenv(tensor_trace.ENV_FILTER, "blocks.*,!*.norm")
    with trace_module(toy):
        toy(torch.randn(2, 3))
    # The tracer's own filter applies to record names on top of include/exclude.
    assert names(trace_dir) == ["blocks.0.proj", "blocks.0", "blocks.1.proj", "blocks.1"]


def test_tracing_off_installs_nothing(toy):
    before = hook_count(toy)
    with trace_module(toy) as h:
        toy(torch.randn(2, 3))
        assert h.tracer is None and not h.active
        assert hook_count(toy) == before
    assert h.records == 0


def test_hooks_are_removed_on_exit_on_error_and_by_remove(toy, trace_dir):
    toy.blocks[0].register_forward_hook(lambda m, i, o: None)  # the user's own hook stays
    before = hook_count(toy)
    t = Tracer(trace_dir)
    with trace_module(toy, tracer=t) as h:
        assert h.active and hook_count(toy) > before
    assert not h.active and hook_count(toy) == before

    with pytest.raises(RuntimeError, match="boom"):
        with trace_module(toy, tracer=t):
            toy(torch.randn(2, 3))
            raise RuntimeError("boom")
    assert hook_count(toy) == before
    n = len(read_run(trace_dir))
    assert n == len(TOY_ORDER)

    # An exception raised inside the model's forward, with hooks live.
    with pytest.raises(RuntimeError):
        with trace_module(toy, tracer=t):
            toy(torch.randn(2, 5))  # wrong width for embed
    assert hook_count(toy) == before

    h = trace_module(toy, tracer=t)
    h.remove()
    h.remove()  # idempotent
    assert hook_count(toy) == before
    toy(torch.randn(2, 3))
    assert len(read_run(trace_dir)) == n  # nothing recorded once removed


def test_include_and_exclude(toy, trace_dir):
    t = Tracer(trace_dir)
    with trace_module(toy, include="blocks.*", exclude=["*.norm", "blocks.1.proj"], tracer=t) as h:
        toy(torch.randn(2, 3))
    assert h.paths == ("blocks.0", "blocks.0.proj", "blocks.1")
    assert names(trace_dir) == ["blocks.0.proj", "blocks.0", "blocks.1"]


def test_include_with_negation_and_alternatives(toy, tmp_path):
    d = tmp_path / "t"
    with trace_module(toy, include=["{embed,head}*", "!head.1"], tracer=Tracer(d)) as h:
        toy(torch.randn(2, 3))
    assert h.paths == ("embed", "head", "head.0")
    assert names(d) == ["embed", "head.0", "head"]


@pytest.mark.parametrize(
    "kwargs, setting, problem",
    [
        ({"include": "blocks.[0"}, "include", "unclosed character class"),
        ({"exclude": "!blocks.*"}, "exclude", "`!glob` belongs in include"),
        ({"include": ","}, "include", "expected at least one glob over module paths"),
        ({"include": ["{embed"]}, "include", "unclosed alternate group"),
        ({"exclude": ["head", "!embed"]}, "exclude", "`!glob` belongs in include"),
        ({"include": "layers.*"}, "include", "no module path of Toy is left to hook"),
        ({"exclude": "*"}, "exclude", "no module path of Toy is left to hook"),
    ],
)
def test_bad_globs_are_errors_naming_the_setting(toy, trace_dir, kwargs, setting, problem):
    before = hook_count(toy)
    with pytest.raises(ConfigError, match=problem) as e:
        trace_module(toy, tracer=Tracer(trace_dir), **kwargs)
    assert e.value.setting == setting
    assert hook_count(toy) == before


def test_bad_arguments(toy, trace_dir):
    with pytest.raises(TypeError, match="wants a torch.nn.Module, got function"):
        trace_module(lambda x: x)
    with pytest.raises(TypeError, match="pass tensor_trace.Tracer"):
        trace_module(toy, tracer=str(trace_dir))
    with pytest.raises(TypeError, match="inputs must be True or False"):
        trace_module(toy, inputs="yes", tracer=Tracer(trace_dir))


def test_inputs(toy, trace_dir):
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Identity()

        def forward(self, a, b, *, scale=None, flag=None):
            return self.inner(a * scale + b)

    m = Two()
    a, b = torch.ones(2), torch.zeros(2)
    with trace_module(m, inputs=True, tracer=Tracer(trace_dir)):
        m(a, b, scale=torch.tensor(2.0), flag=torch.tensor([True]))
    assert names(trace_dir) == [
        "input",  # the root's first positional tensor
        "input/1",
        "input/scale",  # flag (bool) is skipped
        "inner/input",
        "inner",
        "output",
    ]


def test_step_counting_and_reset(toy, trace_dir):
    with trace_module(toy, include="blocks.0", tracer=Tracer(trace_dir)) as h:
        for _ in range(3):
            toy(torch.randn(2, 3))
        assert (h.calls, h.step) == (3, 2)
        toy.blocks[0](torch.randn(2, 4))  # a submodule called alone: the last step's seq
        h.reset()
        assert (h.calls, h.step) == (0, 0)
        toy(torch.randn(2, 3))
    assert [(r["name"], r["seq"]) for r in records(trace_dir)] == [
        ("blocks.0", 0),
        ("blocks.0", 1),
        ("blocks.0", 2),
        ("blocks.0", 2),
        ("blocks.0", 0),
    ]
    assert [e["occurrence"] for e in read_run(trace_dir)] == [0, 1, 2, 3, 4]


def grad_mode_records(toy, d: Path, mode: str) -> list:
    torch.manual_seed(1)
    x = torch.randn(2, 3)
    with trace_module(toy, tracer=Tracer(d)):
        if mode == "no_grad":
            with torch.no_grad():
                toy(x)
        elif mode == "inference_mode":
            with torch.inference_mode():
                toy(x)
        else:
            toy(x).sum().backward()  # outputs require grad here
    return [(r["name"], r["blake3"]) for r in records(d)]


def test_no_grad_and_inference_mode_record_the_same(toy, tmp_path):
    modes = ["grad", "no_grad", "inference_mode"]
    runs = {m: grad_mode_records(toy, tmp_path / m, m) for m in modes}
    assert [n for n, _ in runs["grad"]] == TOY_ORDER
    assert runs["grad"] == runs["no_grad"] == runs["inference_mode"]


def test_bf16_records_as_the_emitter_does(toy, trace_dir):
    m = toy.to(torch.bfloat16)
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    out = m.embed(x)
    with trace_module(m, include="embed", tracer=Tracer(trace_dir)):
        m(x)
    [r] = records(trace_dir)
    assert r["dtype"] == "BF16" and r["shape"] == [2, 4]
    assert r["blake3"] == fingerprint_array(out).blake3


def test_views_are_read_in_place_as_their_values(trace_dir):
    """Transposed, sliced, broadcast, lazily negated, 0-d and empty outputs: each record holds
    the values the tensor shows (the hash of a contiguous copy), read by address and strides."""

    class Views(nn.Module):
        def forward(self, x):
            return (
                x.t(),
                x[:, 1::2],
                x[0].expand(3, 4),
                torch._neg_view(x),
                x[1, 2],
                x[:0],
            )

    x = torch.arange(12, dtype=torch.float32).reshape(3, 4) - 5
    m = Views()
    with trace_module(m, tracer=Tracer(trace_dir)):
        out = m(x)
    recs = records(trace_dir)
    assert [r["name"] for r in recs] == ["output"] + [f"output/{i}" for i in range(1, 6)]
    for r, t in zip(recs, out):
        want = fingerprint_array(t.resolve_neg().contiguous().numpy())
        assert r["shape"] == list(t.shape) and r["blake3"] == want.blake3, r["name"]


def test_float16_and_integer_outputs(trace_dir):
    class Mixed(nn.Module):
        def forward(self, x):
            return x.half(), x.long(), x.to(torch.int16), x.to(torch.uint8)

    x = torch.tensor([1.5, 2.0, 3.0])
    m = Mixed()
    with trace_module(m, tracer=Tracer(trace_dir)):
        Mixed()(x)  # another instance: not hooked, records nothing
        m(x)
    assert [(r["name"], r["dtype"]) for r in records(trace_dir)] == [
        ("output", "F16"),
        ("output/1", "I64"),
        ("output/3", "U8"),  # int16 (output/2) has no conversion: skipped
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_tensors_are_copied_to_the_cpu(toy, tmp_path):
    x = torch.randn(2, 3)
    with trace_module(toy, tracer=Tracer(tmp_path / "cpu")):
        toy(x)
    gpu = toy.to("cuda")
    with trace_module(gpu, tracer=Tracer(tmp_path / "gpu")):
        gpu(x.to("cuda"))
    cpu_recs = records(tmp_path / "cpu")
    gpu_recs = records(tmp_path / "gpu")
    assert [r["name"] for r in gpu_recs] == TOY_ORDER
    for a, b in zip(cpu_recs, gpu_recs):
        assert a["shape"] == b["shape"] and a["dtype"] == b["dtype"]
        assert b["rms"] == pytest.approx(a["rms"], rel=1e-4, abs=1e-6)


def test_torch_compile_runs_the_hooks(toy, tmp_path):
    """Hooks run as graph breaks under torch.compile (the eager backend: no C compiler)."""
    x = torch.randn(2, 3)
    with trace_module(toy, tracer=Tracer(tmp_path / "eager")):
        toy(x)
    compiled = torch.compile(toy, backend="eager")
    with trace_module(toy, tracer=Tracer(tmp_path / "hook_first")) as h:
        compiled(x)
        compiled(x)
    assert h.calls == 2
    eager = [(r["name"], r["blake3"]) for r in records(tmp_path / "eager")]
    twice = [(r["name"], r["blake3"], r["seq"]) for r in records(tmp_path / "hook_first")]
    assert twice == [(n, b, 0) for n, b in eager] + [(n, b, 1) for n, b in eager]
    # Handing trace_module the compiled wrapper traces the module it wraps, same paths.
    with trace_module(compiled, tracer=Tracer(tmp_path / "wrapper")):
        compiled(x)
    assert [(r["name"], r["blake3"]) for r in records(tmp_path / "wrapper")] == eager
    # Hooks installed after the compiled model already ran (dynamo recompiles on new hooks).
    late = torch.compile(toy, backend="eager")
    late(x)
    with trace_module(toy, tracer=Tracer(tmp_path / "late")):
        late(x)
    assert [(r["name"], r["blake3"]) for r in records(tmp_path / "late")] == eager
    late(x)  # and removed again: nothing more is written
    assert len(read_run(tmp_path / "late")) == len(eager)


def test_torch_compile_fullgraph(toy, tmp_path):
    x = torch.randn(2, 3)
    with trace_module(toy, tracer=Tracer(tmp_path / "eager")):
        toy(x)
    with trace_module(toy, tracer=Tracer(tmp_path / "full")):
        torch.compile(toy, backend="eager", fullgraph=True)(x)
    full = [(r["name"], r["blake3"]) for r in records(tmp_path / "full")]
    assert full == [(r["name"], r["blake3"]) for r in records(tmp_path / "eager")]


# ---- transformers models built from configs (random weights, no downloads) ----


def tiny_llama():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_llama_generate_counts_steps(trace_dir):
    model = tiny_llama()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    new = 3
    with trace_module(model, tracer=Tracer(trace_dir)) as h, torch.no_grad():
        out = model.generate(ids, max_new_tokens=new, do_sample=False, use_cache=True)
    assert out.shape == (1, ids.shape[1] + new)
    assert h.calls == new  # prefill, then one call per further token
    recs = records(trace_dir)
    per_step = {}
    for r in recs:
        per_step.setdefault(r["seq"], []).append(r)
    assert sorted(per_step) == [0, 1, 2]
    # Steps are contiguous in capture order, and every step records the same names.
    assert [r["seq"] for r in recs] == sorted(r["seq"] for r in recs)
    step_names = [[r["name"] for r in per_step[s]] for s in range(3)]
    assert step_names[0] == step_names[1] == step_names[2]
    expected_prefix = [
        "model.embed_tokens",
        "model.rotary_emb",
        "model.rotary_emb/1",
        "model.layers.0.input_layernorm",
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.k_proj",
        "model.layers.0.self_attn.v_proj",
        "model.layers.0.self_attn.o_proj",
        "model.layers.0.self_attn",
        "model.layers.0.self_attn/1",  # eager attention's weights
    ]
    assert step_names[0][: len(expected_prefix)] == expected_prefix
    assert step_names[0][-4:] == ["model.norm", "model/last_hidden_state", "lm_head", "logits"]
    o_proj = {r["seq"]: r for r in recs if r["name"] == "model.layers.1.self_attn.o_proj"}
    assert o_proj[0]["shape"] == [1, 5, 32] and o_proj[2]["shape"] == [1, 1, 32]  # KV cache
    assert (o_proj[1]["layer"], o_proj[1]["stage"]) == (1, "o_proj")
    assert {r["layer"] for r in recs if r["name"].startswith("model.layers.0.")} == {0}
    assert {r["layer"] for r in recs if not r["name"].startswith("model.layers.")} == {-1}


def test_llama_records_hold_the_model_values(trace_dir):
    model = tiny_llama()
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        logits = model(ids).logits
    with trace_module(model, include="lm_head", tracer=Tracer(trace_dir)), torch.no_grad():
        model(ids)
    [r] = records(trace_dir)
    assert r["name"] == "lm_head" and r["shape"] == [1, 5, 64]
    assert r["blake3"] == fingerprint_array(logits).blake3


def test_bert_names_layers_and_model_output_keys(trace_dir):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    cfg = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    ids = torch.tensor([[2, 7, 9, 4, 3]])
    mask = torch.ones_like(ids)
    with trace_module(
        model,
        include=["", "embeddings", "encoder.layer.*[0-9].output", "pooler"],
        inputs=False,
        tracer=Tracer(trace_dir),
    ), torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask)
    got = [(r["name"], r["layer"], r["stage"]) for r in records(trace_dir)]
    assert got == [
        ("embeddings", -1, "embeddings"),
        ("encoder.layer.0.output", 0, "output"),
        ("encoder.layer.1.output", 1, "output"),
        ("encoder.layer.2.output", 2, "output"),
        ("pooler", -1, "pooler"),
        ("last_hidden_state", -1, "last_hidden_state"),
        ("pooler_output", -1, "pooler_output"),
    ]
    recs = {r["name"]: r for r in records(trace_dir)}
    assert recs["last_hidden_state"]["blake3"] == fingerprint_array(out.last_hidden_state).blake3
    assert recs["encoder.layer.2.output"]["blake3"] == recs["last_hidden_state"]["blake3"]


def test_model_output_holding_a_tuple(trace_dir):
    """`output_hidden_states=True`: a tuple inside the root's ModelOutput."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    cfg = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    ids = torch.tensor([[2, 7, 9]])
    with trace_module(model, include=[""], tracer=Tracer(trace_dir)), torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    recs = records(trace_dir)
    assert [r["name"] for r in recs] == [
        "last_hidden_state",
        "pooler_output",
        "hidden_states",  # the embeddings: the tuple's first tensor
        "hidden_states/1",
        "hidden_states/2",
    ]
    assert recs[4]["blake3"] == fingerprint_array(out.hidden_states[2]).blake3
    assert recs[4]["blake3"] == recs[0]["blake3"]
