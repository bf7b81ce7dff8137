"""Shared test helpers: tolerances, random losses, gradients of everything."""

from __future__ import annotations

import os

# `make test` runs the suite in a process per core (pytest-xdist), each keeping to one thread.
# On the development machine's two cores, runs in turn: one process 333 s and 328 s, two of one
# thread 186 s and 194 s; two of two threads each contend (293 s, against 237 s for one thread
# each, in turn). Set before torch and NumPy load, which read it then; a test that needs
# threads asks for them (test_backends sets two).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter, on CPU tensors. The switch is
# read when a kernel is defined, so it must be set before gatedrnn's kernels are imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import gatedrnn
from gatedrnn.kernels import triton as triton_backend

VARIANTS = list(gatedrnn.VARIANTS)

# Why the "triton" backend cannot run here (Triton not installed, older than its kernels need,
# or an interpreter that cannot run with this NumPy), or None. Its tests skip with that reason
# rather than fail: the package itself then refuses the backend by name and runs CUDA tensors
# on "loop" (test_triton_fallback.py).
TRITON_UNAVAILABLE = triton_backend.unavailable()
_NO_TRITON = f"the 'triton' backend: {TRITON_UNAVAILABLE}"
needs_triton = pytest.mark.skipif(TRITON_UNAVAILABLE is not None, reason=_NO_TRITON)


def require_triton() -> None:
    """Skip the calling module (call it at the top, before importing triton) where the
    "triton" backend cannot run."""
    if TRITON_UNAVAILABLE is not None:
        pytest.skip(_NO_TRITON, allow_module_level=True)

# Relative tolerances (max |a - b| / max |b|) per dtype.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def pytest_configure(config):
    if TRITON_UNAVAILABLE is not None and os.environ.get("GATEDRNN_REQUIRE_TRITON") == "1":
        raise pytest.UsageError(f"GATEDRNN_REQUIRE_TRITON=1 (the Makefile's, on Linux), but "
                                f"{_NO_TRITON}")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    cuda = torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(autouse=True)
def interpreter_memory_checked():
    """Under Triton's interpreter, every kernel's loads, stores and atomics must stay inside
    its launch's tensors, and no program may load what it stored itself without a barrier
    between (interpreter_memory.py): the interpreter itself runs either way. Its own
    MonkeyPatch, set up before any test's and undone after: a test's fixtures that restore
    state around their monkeypatch keep their order."""
    if os.environ.get("TRITON_INTERPRET") != "1" or TRITON_UNAVAILABLE is not None:
        yield   # no kernel runs in the interpreter (and without Triton, every other test runs)
        return
    import interpreter_memory
    if not interpreter_memory.supported():   # a Triton whose interpreter changed: unchecked
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        interpreter_memory.check_memory(patch)
        yield


def rel_err(actual, expected) -> float:
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    scale = expected.abs().max().item()
    return (actual.double() - expected.double()).abs().max().item() / max(scale, 1e-300)


def layer_module(variant: str, input_size: int, hidden_size: int, **kwargs):
    """The gatedrnn layer class that runs `variant`, built with `kwargs`."""
    return gatedrnn.for_variant(variant, input_size, hidden_size, **kwargs)


def randomize(module: torch.nn.Module, generator: torch.Generator, scale: float = 0.5):
    """Random parameters (peepholes and biases included, which start at 0 or 1)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return module


def flat_outputs(result):
    """(output, h) or (output, (a, c)) → [output, h] or [output, a, c]."""
    out, state = result
    if isinstance(out, torch.nn.utils.rnn.PackedSequence):
        out = out.data
    return [out] + (list(state) if isinstance(state, tuple) else [state])


def outputs_and_grads(module, inputs, weights, *extra_leaves, **kwargs):
    """Run module(*inputs), contract every output with fixed random weights and differentiate.

    Returns (outputs, {name: grad}) for every parameter and every extra leaf tensor ("leaf{i}").
    """
    outs = flat_outputs(module(*inputs, **kwargs))
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    named = dict(module.named_parameters())
    named.update({f"leaf{i}": t for i, t in enumerate(extra_leaves)})
    grads = torch.autograd.grad(loss, list(named.values()))
    return [o.detach() for o in outs], dict(zip(named, grads))


def random_like_outputs(module, inputs, generator, **kwargs):
    with torch.no_grad():
        outs = flat_outputs(module(*inputs, **kwargs))
    return [torch.randn(o.shape, generator=generator, dtype=torch.float64).to(o.dtype)
            for o in outs]


class LayersInAModel(torch.nn.Module):
    """Two bidirectional layers between two other parts, as in a model: a projection in front,
    a head behind (what torch.compile and torch.export take whole)."""

    def __init__(self, variant: str, backend: str | None, dtype=torch.float64):
        super().__init__()
        self.front = torch.nn.Linear(3, 5)
        self.layers = gatedrnn.for_variant(variant, 5, 6, num_layers=2, bidirectional=True,
                                           backend=backend)
        self.head = torch.nn.Linear(12, 2)
        self.to(dtype)

    def forward(self, x, lengths):
        out, state = self.layers(self.front(x), lengths=lengths)
        return self.head(torch.tanh(out)), state
