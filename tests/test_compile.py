"""torch.compile around gatedrnn's layers. While it traces, the recurrence is one custom
operator per layer and direction (gatedrnn/through_time.py), so a model compiles as one graph
(fullgraph=True) and gives the eager model's outputs and gradients on every backend. Traced
into instead, the triton backend failed (under the interpreter: Dynamo ran its NumPy code on
fake tensors), the compiled CPU kernel warned, and the loop backend was unrolled."""

import subprocess
import sys
import warnings

import pytest
import torch

import gatedrnn
from gatedrnn import kernels
from gatedrnn.functional import recurrence
from conftest import (LayersInAModel, needs_triton, outputs_and_grads, random_like_outputs,
                      rel_err)

BACKENDS = ["cpu", "loop", pytest.param("triton", marks=needs_triton)]
LENGTHS = torch.tensor([4, 2, 3])


def _eager_and_compiled(model, x, lengths, **options):
    """[outputs and every parameter's gradient] of the model and of it compiled with
    fullgraph=True (by default with aot_eager: Dynamo and AOTAutograd, no code generation),
    and the warnings the compiled run gave."""
    inputs = (x, lengths)
    weights = [w.to(x.device) for w in
               random_like_outputs(model, inputs, torch.Generator().manual_seed(1))]
    outs, grads = outputs_and_grads(model, inputs, weights)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, **({"backend": "aot_eager"} | options))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, got_grads = outputs_and_grads(compiled, inputs, weights)
    assert len(got_grads) == len(grads) == len(list(model.parameters()))
    return outs + list(grads.values()), got + list(got_grads.values()), caught


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_a_compiled_model_gives_the_eager_ones_numbers(variant, backend):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 3, dtype=torch.float64)
    eager, got, caught = _eager_and_compiled(LayersInAModel(variant, backend), x, LENGTHS)
    # e.g. Dynamo's "does not know how to trace the builtin gatedrnn_cpu....forward"
    assert not [w for w in caught if "trace" in str(w.message)], [str(w.message) for w in caught]
    for a, b in zip(got, eager):
        assert rel_err(a, b) <= 1e-12


@pytest.mark.slow
def test_inductor_compiles_a_model_that_gives_the_eager_ones_numbers():
    """The default compiler, code generated for the projections and the head (~10 s here)."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 3, dtype=torch.float64)
    eager, got, _ = _eager_and_compiled(LayersInAModel("lstm", "cpu"), x, LENGTHS,
                                        backend="inductor")
    for a, b in zip(got, eager):
        assert rel_err(a, b) <= 1e-12


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["gru", "lstm"])
def test_a_compiled_model_on_the_gpu_gives_the_eager_ones_numbers(variant):
    """CUDA tensors, the triton backend (its real launches), float32: the same kernels run
    either way, and the projections are the same ATen calls."""
    torch.manual_seed(0)
    model = LayersInAModel(variant, "triton", torch.float32).cuda()
    x = torch.randn(4, 3, 3, device="cuda")
    eager, got, _ = _eager_and_compiled(model, x, LENGTHS)
    for a, b in zip(got, eager):
        assert rel_err(a, b) <= 1e-6


def test_a_model_compiles_to_one_graph_with_an_operator_per_layer_and_direction():
    """Dynamo's own account: no graph break, and the recurrence is our operator (its steps
    unrolled would be T nodes of each cell op instead)."""
    model = LayersInAModel("gru", "loop")
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(torch.randn(5, 2, 3, dtype=torch.float64),
                                             torch.tensor([5, 3]))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), \
        explained.break_reasons
    targets = [node.target for node in explained.graphs[0].graph.nodes]
    operator = torch.ops.gatedrnn.through_time
    assert sum(t in (operator, operator.default) for t in targets) == 4   # 2 layers × 2
    assert torch.sigmoid not in targets and torch.ops.aten.sigmoid.default not in targets


def test_an_eager_call_takes_the_autograd_function_not_the_operator():
    """The operator's dispatch costs ~20-80 µs a call more (benchmarks/dispatch_cost.py):
    eager calls, a streamed sequence's steps among them, do not pay it."""
    gru = gatedrnn.GRU(3, 4, backend="loop")
    out, _ = recurrence(torch.randn(2, 1, 3), gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0,
                        gru.bias_hh_l0, torch.zeros(1, 4), variant="gru", backend="loop")
    assert type(out.grad_fn).__name__ == "_RecurrenceBackward"


def test_the_backend_is_resolved_as_a_trace_constant_the_way_torch_marks_one():
    """kernels.resolve carries, set by hand, the mark torch.compiler.assume_constant_result
    sets: should torch rename it, this fails (and so would the one-graph test)."""
    marked = torch.compiler.assume_constant_result(lambda: None)
    assert {k for k in vars(marked)} == {"_dynamo_marked_constant"}
    assert getattr(kernels.resolve, "_dynamo_marked_constant", False) is True


def test_importing_gatedrnn_leaves_dynamo_unloaded():
    """torch._dynamo takes seconds to import: only a compile should pay it (the operators'
    registration does not import it, nor does the mark on kernels.resolve)."""
    code = "import sys, gatedrnn; print('torch._dynamo' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
