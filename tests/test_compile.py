"""torch.compile around gatedrnn's layers. The recurrence is one opaque call to it (a graph
break, functional._opaque_through_time), so a compiled model gives the eager one's outputs and
gradients on every backend; the input projections and whatever surrounds the layers compile.
Traced into instead, the triton backend failed (under the interpreter: Dynamo ran its NumPy
code on fake tensors), the compiled CPU kernel warned, and the loop backend was unrolled."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import gatedrnn
from conftest import needs_triton, outputs_and_grads, random_like_outputs, rel_err

BACKENDS = ["cpu", "loop", pytest.param("triton", marks=needs_triton)]


class _Model(torch.nn.Module):
    """Layers between two compilable parts, as in a model: an embedding-like projection in
    front, a head behind."""

    def __init__(self, variant: str, backend: str, dtype=torch.float64):
        super().__init__()
        self.front = torch.nn.Linear(3, 5)
        self.layers = gatedrnn.for_variant(variant, 5, 6, num_layers=2, bidirectional=True,
                                           backend=backend)
        self.head = torch.nn.Linear(12, 2)
        self.to(dtype)

    def forward(self, x, lengths):
        out, state = self.layers(self.front(x), lengths=lengths)
        return self.head(torch.tanh(out)), state


def _eager_and_compiled(model, x, lengths):
    """[outputs and every parameter's gradient] of the model and of it compiled (aot_eager:
    Dynamo and AOTAutograd, no code generation), and the warnings the compiled run gave."""
    inputs = (x, lengths)
    weights = [w.to(x.device) for w in
               random_like_outputs(model, inputs, torch.Generator().manual_seed(1))]
    outs, grads = outputs_and_grads(model, inputs, weights)
    torch._dynamo.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, got_grads = outputs_and_grads(torch.compile(model, backend="aot_eager"), inputs,
                                           weights)
    assert len(got_grads) == len(grads) == len(list(model.parameters()))
    return outs + list(grads.values()), got + list(got_grads.values()), caught


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_a_compiled_model_gives_the_eager_ones_numbers(variant, backend):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 3, dtype=torch.float64)
    eager, got, caught = _eager_and_compiled(_Model(variant, backend), x, torch.tensor([4, 2, 3]))
    # e.g. Dynamo's "does not know how to trace the builtin gatedrnn_cpu....forward"
    assert not [w for w in caught if "trace" in str(w.message)], [str(w.message) for w in caught]
    for a, b in zip(got, eager):
        assert rel_err(a, b) <= 1e-12


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["gru", "lstm"])
def test_a_compiled_model_on_the_gpu_gives_the_eager_ones_numbers(variant):
    """CUDA tensors, the triton backend (its real launches), float32: the same kernels run
    either way, and the projections are the same ATen calls."""
    torch.manual_seed(0)
    model = _Model(variant, "triton", torch.float32).cuda()
    x = torch.randn(4, 3, 3, device="cuda")
    eager, got, _ = _eager_and_compiled(model, x, torch.tensor([4, 2, 3]))
    for a, b in zip(got, eager):
        assert rel_err(a, b) <= 1e-6


def test_the_graph_breaks_only_where_the_recurrence_is_called():
    """Dynamo's own account: its graphs break at the recurrence's opaque call (and, the first
    time, where that call is made), never inside a backend."""
    gru = gatedrnn.GRU(3, 4, num_layers=2, backend="loop")
    for _ in range(2):   # the first compile makes the opaque call; the second finds it made
        torch._dynamo.reset()
        explained = torch._dynamo.explain(gru)(torch.randn(5, 2, 3))
        assert explained.graph_count >= 2 and explained.graph_break_count >= 1
        for broken in explained.break_reasons:
            frame = broken.user_stack[-1]
            assert (Path(frame.filename).name, frame.name) in {
                ("functional.py", "recurrence"), ("functional.py", "_opaque_through_time")}, \
                broken.reason


def test_importing_gatedrnn_leaves_dynamo_unloaded():
    """torch.compiler.disable imports torch._dynamo (seconds): only a compile should pay it."""
    code = "import sys, gatedrnn; print('torch._dynamo' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
