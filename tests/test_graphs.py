"""The triton backend's CUDA graphs of the per-step launches (settings.graphs, with the "step"
and "gemm" modes).

Recording needs a GPU. On the CPU these tests check what decides a replay (the key, the cache
of recordings, the order of the launches handed to a recording, the compiling before it) with
a stand-in for the CUDA graph that replays by issuing the recorded launches again; the GPU
tests check real recordings against the step mode.
"""

import subprocess
import sys

import pytest
import torch

from conftest import VARIANTS, rel_err, require_triton

require_triton()   # skips this module where the "triton" backend cannot run

import gatedrnn  # noqa: E402
from gatedrnn.kernels import graphs as graphs_module  # noqa: E402
from gatedrnn.kernels import planner  # noqa: E402
from gatedrnn.kernels import triton as triton_backend  # noqa: E402


class _Replayable:
    """Stands in for a recorded CUDA graph: replaying issues the recorded launches again."""

    def __init__(self, launch_all, stream):
        self.launch_all, self.stream = launch_all, stream

    def replay(self):
        self.launch_all(self.stream)


class _SeenAll(dict):
    """Every key called once before: each call records (or replays)."""

    def pop(self, key, default=None):
        return True


class _FakeGraphs(graphs_module.StepGraphs):
    def __init__(self, capacity=32, seen=False):
        super().__init__(capacity)
        self.devices = []
        if seen:
            self._seen = _SeenAll()

    def _record(self, device, launch_all):
        self.devices.append(device)
        return _Replayable(launch_all, stream=11)


def _run(cache, key, device, log, name):
    cache.run(key, device, lambda stream: log.append((name, stream)),
              lambda: log.append(f"prepare {name}"), lambda: log.append((name, "direct")))


def test_a_key_launches_directly_then_records_then_replays():
    cache = _FakeGraphs()
    log = []
    for name in ("first", "second", "third"):
        _run(cache, ("a",), "cuda:0", log, name)
    # Directly (nothing prepared); then prepared, recorded and replayed; then replayed.
    assert log == [("first", "direct"), "prepare second", ("second", 11), ("second", 11)]
    assert (cache.direct, cache.recorded, cache.replayed) == (1, 1, 1)
    _run(cache, ("b",), "cuda:1", log, "b")
    _run(cache, ("b",), "cuda:1", log, "b")
    assert log[-3:] == [("b", "direct"), "prepare b", ("b", 11)]
    assert cache.devices == ["cuda:0", "cuda:1"]
    assert (cache.direct, cache.recorded, cache.replayed) == (2, 2, 1)


def test_the_least_recently_used_recording_goes_first():
    cache = _FakeGraphs(capacity=2)
    for key in ("a", "b", "a", "b", "a", "c", "c"):   # "a" used after "b": "b" goes for "c"
        cache.run(key, "cuda:0", lambda stream: None, lambda: None, lambda: None)
    assert (cache.direct, cache.recorded, cache.replayed) == (3, 3, 1)
    cache.run("a", "cuda:0", lambda stream: None, lambda: None, lambda: None)
    cache.run("b", "cuda:0", lambda stream: None, lambda: None, lambda: None)
    assert (cache.direct, cache.recorded, cache.replayed) == (4, 3, 2)


def test_the_key_follows_addresses_dtypes_shapes_and_values():
    x = torch.zeros(4, 6)
    key = graphs_module.graph_key
    same = key(("forward", 3, {"B": 4, "H": 6}, (x, 1)))
    assert same == key(("forward", 3, {"H": 6, "B": 4}, (x, 1)))
    assert same != key(("forward", 3, {"B": 4, "H": 6}, (x.view(6, 4), 1)))   # same address
    assert same != key(("forward", 3, {"B": 4, "H": 6}, (x.clone(), 1)))
    assert same != key(("forward", 3, {"B": 4, "H": 6}, (x, 2)))
    assert same != key(("forward", 3, {"B": 4, "H": 6}, (x.view(torch.int32), 1)))
    hash(same)


class _FakeStep:
    def __init__(self, name, log):
        self.name, self.log, self.stream = name, log, None

    def prepare(self, *args):
        self.log.append(("prepare", self.name, args))

    def __call__(self, *args):
        self.log.append((self.name, self.stream, args))


def test_graphs_compile_first_then_record_every_launch_on_the_recording_stream(
        monkeypatch):
    cache = _FakeGraphs()
    monkeypatch.setattr(triton_backend, "graphs", cache)
    monkeypatch.setattr(triton_backend, "can_record", lambda: True)
    log = []
    steps = [_FakeStep("phase0", log), _FakeStep("phase1", log)]

    def launch_all():
        for t in range(2):
            for step in steps:
                step(t)

    plan = planner.Plan("step", 16, 16, 16, 4, graphs=True)
    for _ in range(3):
        triton_backend._launch_steps(plan, "cuda:0", steps, [(0,), (0,)], launch_all, ("k", 1))
    direct = [("phase0", None, (0,)), ("phase1", None, (0,)), ("phase0", None, (1,)),
              ("phase1", None, (1,))]
    recorded = [("prepare", "phase0", (0,)), ("prepare", "phase1", (0,)),
                ("phase0", 11, (0,)), ("phase1", 11, (0,)), ("phase0", 11, (1,)),
                ("phase1", 11, (1,))]
    # The first call launches on the current stream; the second compiles, records and
    # replays; the third prepares nothing and replays the second one's recording.
    assert log == direct + recorded + recorded[2:]
    assert (cache.direct, cache.recorded, cache.replayed) == (1, 1, 1)


def test_without_graphs_and_in_the_interpreter_launches_are_direct(monkeypatch):
    cache = _FakeGraphs()
    monkeypatch.setattr(triton_backend, "graphs", cache)
    log = []
    step = _FakeStep("step", log)
    for graphs in (False, True):   # the interpreter (conftest, no GPU) has no CUDA graphs
        monkeypatch.setattr(triton_backend, "can_record", lambda: not graphs)
        triton_backend._launch_steps(planner.Plan("step", 16, 16, 16, 4, graphs),
                                     "cuda:0", [step], [(0,)], lambda: step(5), ("k",))
    assert log == [("step", None, (5,)), ("step", None, (5,))]
    assert cache.recorded == 0


def test_no_recording_of_its_own_inside_the_callers(monkeypatch):
    monkeypatch.setattr(planner, "interpreting", lambda: False)
    for capturing in (False, True):
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: capturing)
        assert triton_backend.can_record() == (not capturing)


def test_graphs_are_planned_only_for_the_launches_per_step(monkeypatch):
    for mode in ("step", "gemm", "sequence", "persistent"):
        monkeypatch.setattr(planner, "settings",
                            planner.Settings(mode=mode, graphs=True))
        assert planner.plan(40, 64).graphs == (mode in ("step", "gemm"))
    assert planner.launch("gemm+graphs") == {"mode": "gemm", "graphs": True}
    with pytest.raises(ValueError, match=r"launch: expected one of \['step', 'step\+graphs', "
                                         r".*got 'sequence\+graphs'"):
        planner.launch("sequence+graphs")


def _signature(args) -> list:
    """What picks a compiled kernel: each tensor's dtype and alignment, each number's kind."""
    return [(a.dtype, a.data_ptr() % 16 == 0) if isinstance(a, torch.Tensor) else
            ("one" if a == 1 else "multiple of 16" if a % 16 == 0 else "int")
            if isinstance(a, int) else a for a in args]


@pytest.mark.parametrize("mode", ["step", "gemm"])
@pytest.mark.parametrize("variant", ["gru", "gru_reset_after", "lstm"])
def test_graphs_prepare_the_kernels_they_then_launch(variant, mode, monkeypatch):
    """The kernels compiled before recording are those the recorded launches use: the same
    arguments' dtypes, in bfloat16 too (where the gemm mode's float32 products differ from the
    inputs' dtype), phase by phase; and what they compute agrees with the loop backend. Run
    in the interpreter with a stand-in recording, which replays by launching again."""
    monkeypatch.setattr(planner, "settings", planner.Settings(mode=mode,
                                                                            graphs=True))
    monkeypatch.setattr(triton_backend, "graphs", _FakeGraphs(seen=True))
    monkeypatch.setattr(triton_backend, "can_record", lambda: True)
    prepared, launched = {}, {}

    def prepare(self, *args):
        prepared.setdefault(id(self), _signature(args))

    def call(self, *args):
        launched.setdefault(id(self), _signature(args))
        self.kernel[self.grid](*args, **self.constants)

    monkeypatch.setattr(triton_backend._Launcher, "prepare", prepare)
    monkeypatch.setattr(triton_backend._Launcher, "__call__", call)
    layer = gatedrnn.for_variant(variant, 8, 32).bfloat16()
    x = torch.randn(3, 2, 8, dtype=torch.bfloat16, requires_grad=True)
    got = {}
    for backend in ("triton", "loop"):
        layer.backend = backend
        out, _ = layer(x)
        got[backend] = [out, *torch.autograd.grad(out.float().square().sum(), x)]
    assert len(launched) == 2 * (2 if variant == "gru" else 1)   # forward and backward
    assert prepared == launched
    for g, w in zip(got["triton"], got["loop"]):   # and the recorded launches compute
        assert rel_err(g.float(), w.float()) <= 3e-2


class _WarmableKernel:
    arg_names = ["X", "t", "A"]

    def __init__(self):
        self.calls = []

    def warmup(self, *args, grid, **constants):
        self.calls.append(("warmup", grid, args, constants))
        calls = self.calls

        class Compiled:
            function, packed_metadata = "function", "metadata"

            @property
            def run(self):   # reading it loads the module, as Triton's CompiledKernel does
                calls.append("loaded")
                return lambda *a: calls.append(("direct", a))
        return Compiled()


def test_prepare_compiles_and_loads_without_launching(monkeypatch):
    monkeypatch.setattr(planner, "settings", planner.Settings())
    kernel = _WarmableKernel()
    step = triton_backend._Launcher(kernel, (2,), {"A": 3, "num_warps": 4})
    step.stream = 9   # a recording's stream, set before any launch
    step.prepare("x", 0)
    assert kernel.calls == [("warmup", (2,), ("x", 0), {"A": 3, "num_warps": 4}), "loaded"]
    step("x", 1)
    assert kernel.calls[-1] == ("direct", (2, 1, 1, 9, "function", "metadata", None, None, None,
                                           "x", 1, 3))


def _training_steps(module, xs, lengths) -> list:
    """One training step per input, each freeing what it allocated and keeping its results
    on the CPU, as a training loop does: outputs and every gradient."""
    results = []
    for x in xs:
        module.zero_grad()
        inputs = x if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
            x, lengths, enforce_sorted=False)
        out, _ = module(inputs)
        out = out if lengths is None else out.data
        out.square().sum().backward()
        results.append([out.cpu()] + [p.grad.cpu() for p in module.parameters()])
        del inputs, out, _
    return results


@pytest.mark.gpu
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("mode", ["step", "gemm"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_graphs_replay_with_new_values_what_direct_launches_compute(variant, mode, packed,
                                                                   monkeypatch):
    """Training steps with graphs against the same steps without: later steps (new input
    values) replay the recordings earlier ones made, and must compute what new launches would.
    A plain layer's steps (as the GPU check's) allocate their buffers at the same addresses
    from the third step on, and replay. Two bidirectional layers over a packed batch, on the
    H100, mostly did not: of 40 calls 32 launched directly, 8 recorded and none replayed, in
    some variants and modes and not others from run to run (benchmarks/results/gpu-notes.md, v6):
    there only the numbers are checked."""
    torch.manual_seed(0)
    layers = dict(num_layers=2, bidirectional=True) if packed else {}
    module = gatedrnn.for_variant(variant, 32, 48, **layers).cuda()
    xs = [torch.randn(20, 5, 32, device="cuda") for _ in range(6)]
    lengths = torch.tensor([20, 7, 13, 1, 20]) if packed else None
    results = {}
    monkeypatch.setattr(planner.settings, "mode", mode)
    for graphs in (False, True):
        monkeypatch.setattr(planner.settings, "graphs", graphs)
        monkeypatch.setattr(triton_backend, "graphs", graphs_module.StepGraphs())
        results[graphs] = _training_steps(module, xs, lengths)
    cache = triton_backend.graphs
    assert packed or cache.replayed > 0, (f"no call found its recording: {cache.direct} "
                                          f"direct, {cache.recorded} recorded")
    for got, want in zip(results[True], results[False]):
        for g, w in zip(got, want):
            assert rel_err(g, w) <= 1e-6


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["step", "gemm"])
def test_inside_the_callers_recording_the_launches_join_it(mode, monkeypatch):
    """A forward recorded by the caller (torch.cuda.graph) with settings.graphs on: no
    recording of gatedrnn's own begins inside it, and replaying the caller's graph on new
    values computes what a direct forward does."""
    torch.manual_seed(0)
    module = gatedrnn.for_variant("gru", 32, 48).cuda()
    monkeypatch.setattr(planner.settings, "mode", mode)
    monkeypatch.setattr(planner.settings, "graphs", True)
    monkeypatch.setattr(triton_backend, "graphs", graphs_module.StepGraphs())
    x = torch.randn(20, 5, 32, device="cuda")
    with torch.no_grad():
        module(x)   # compiles the kernels outside the recording
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out, _ = module(x)
        x.copy_(torch.randn_like(x))
        graph.replay()
        monkeypatch.setattr(planner.settings, "graphs", False)
        want, _ = module(x)
    assert triton_backend.graphs.direct == 1   # the warm-up call's; nothing while capturing
    assert triton_backend.graphs.recorded == 0
    assert rel_err(out, want) <= 1e-6


FIRST_CALLS = """
import warnings, torch, gatedrnn
from gatedrnn.kernels import planner, triton as backend
warnings.simplefilter("error")   # a refused recording warns: fail on it
torch.manual_seed(0)
module = gatedrnn.for_variant("lstm", 768, 768).cuda()
assert planner.launch_name(planner.plan(16, 768, torch.float32, "lstm")) == "gemm+graphs"
x = torch.randn(64, 16, 768, device="cuda")
grads = []
for _ in range(4):
    module.zero_grad()
    out, _ = module(x)
    out.square().sum().backward()
    grads.append(module.weight_hh_l0.grad.cpu())
    del out
torch.randn(3, device="cuda")   # the random generator still works
g = backend.graphs
print(g.direct, g.recorded, g.replayed)
assert g.replayed > 0
planner.settings.mode = "step"
module.zero_grad()
out, _ = module(x)
out.square().sum().backward()
want = module.weight_hh_l0.grad.cpu()
assert all(((got - want).abs().max() / want.abs().max()).item() < 1e-5 for got in grads)
"""


@pytest.mark.gpu
def test_a_measured_graphs_launch_as_a_process_first_call():
    """The plan takes "gemm+graphs" from the GPU check's choices (G1, float32 LSTM) for the
    process's first calls of all, forward and backward (autograd's thread, whose cuBLAS
    handle does not exist yet): no recording fails, the random generator still works after,
    recordings replay, and the gradients are the step mode's."""
    run = subprocess.run([sys.executable, "-c", FIRST_CALLS], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
