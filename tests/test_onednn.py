"""The input projection through oneDNN (gatedrnn/kernels/onednn.py): the same numbers as
F.linear where it is taken, and F.linear wherever a gradient, a trace or a transform follows.
(The compiled kernel's oneDNN products: test_backends.py.)"""

import pytest
import torch
import torch.nn.functional as F

import gatedrnn
from gatedrnn.kernels import onednn

from conftest import rel_err

pytestmark = pytest.mark.skipif(not onednn._available(),
                                reason="this torch has no oneDNN operators")


@pytest.fixture
def every_weight(monkeypatch):
    """oneDNN for weights of any size, so that small test shapes take it."""
    monkeypatch.setattr(onednn, "MIN_VALUES", 0)


def _operands(batch_first=False, bias=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, 12, generator=g)
    if batch_first:   # a (T, B, I) view of a (B, T, I) tensor: not contiguous
        x = torch.randn(7, 5, 12, generator=g).transpose(0, 1)
    return x, torch.randn(20, 12, generator=g), (torch.randn(20, generator=g) if bias else None)


@pytest.mark.parametrize("batch_first", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_projection_matches_linear(every_weight, batch_first, bias):
    x, weight, b = _operands(batch_first, bias)
    assert onednn._takes(x, weight, b)
    with torch.no_grad():
        got = onednn.linear(x, weight, b)
    assert got.shape == (5, 7, 20)
    assert rel_err(got, F.linear(x.double(), weight.double(),
                                 None if b is None else b.double())) <= 1e-6


@pytest.mark.parametrize("batch_first", [False, True], ids=["contiguous", "strided"])
def test_projection_gradients_match_linear(every_weight, batch_first):
    """With gradients on, oneDNN's forward and input gradient (onednn._Linear), MKL's weight
    gradient: every gradient as F.linear's in float64; under create_graph the gradients are
    differentiable (a gradient penalty's second derivative matches too)."""
    operands = [t.requires_grad_() for t in _operands(batch_first)]
    wide = [t.detach().double().requires_grad_() for t in operands]
    out = onednn.linear(*operands)
    assert type(out.grad_fn.next_functions[0][0]).__name__ == "_LinearBackward"   # under a view
    expected = F.linear(*wide)
    assert rel_err(out, expected) <= 1e-6
    w_out = torch.randn(out.shape, dtype=torch.float64)
    for create_graph in (False, True):
        grads = torch.autograd.grad((out * w_out.float()).sum(), operands, retain_graph=True,
                                    create_graph=create_graph)
        wanted = torch.autograd.grad((expected * w_out).sum(), wide, retain_graph=True,
                                     create_graph=create_graph)
        for got, want in zip(grads, wanted):
            assert rel_err(got, want) <= 1e-6
    penalty = grads[0].square().sum()   # d/dW of ||d out / d x||^2
    wanted_penalty = wanted[0].square().sum()
    assert rel_err(torch.autograd.grad(penalty, operands[1])[0],
                   torch.autograd.grad(wanted_penalty, wide[1])[0]) <= 1e-5


def test_projection_is_linear_where_anything_else_looks(every_weight, monkeypatch):
    x, weight, b = _operands()
    assert not onednn._takes(x.double(), weight.double(), b.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn._takes(x, weight, b)
    assert not torch.func.vmap(lambda row: torch.tensor(onednn._takes(row, weight, b)))(x).any()
    traced = torch.jit.trace(lambda v: onednn.linear(v, weight, b), (x,))
    assert "mkldnn" not in str(traced.graph)
    monkeypatch.setenv("GATEDRNN_CPU_ONEDNN", "0")
    assert not onednn._takes(x, weight, b) and onednn.min_values() < 0


@pytest.mark.parametrize("variant", ["lstm", "gru", "gru_reset_after"])
def test_layers_through_onednn_match_mkl(every_weight, variant, monkeypatch):
    """The same layers with oneDNN's input projections (onednn.MIN_VALUES at 0) and with
    F.linear's (GATEDRNN_CPU_ONEDNN=0): the same outputs in inference and the same gradients
    in training, through two layers in both directions."""
    torch.manual_seed(0)
    layer = gatedrnn.for_variant(variant, 12, 24, num_layers=2, bidirectional=True)
    x = torch.randn(9, 16, 12, requires_grad=True)
    runs = []
    for switch in ("1", "0"):
        monkeypatch.setenv("GATEDRNN_CPU_ONEDNN", switch)
        with torch.no_grad():
            inferred, _ = layer(x)
        trained, _ = layer(x)
        grads = torch.autograd.grad(trained.sin().sum(), [x, *layer.parameters()])
        runs.append([inferred, trained, *grads])
    for got, expected in zip(*runs):
        assert rel_err(got, expected) <= 1e-5


def test_exported_programs_keep_linear(every_weight):
    """torch.export traces with fake tensors on the CPU: the program must hold aten's linear,
    and run like the module. (Two of _takes's tests keep oneDNN out there: the trace, and the
    fake tensors' subclass; the test fails only if both go.)"""
    torch.manual_seed(0)
    layer = gatedrnn.for_variant("lstm", 12, 24).requires_grad_(False)   # no gradient follows
    x = torch.randn(9, 4, 12)
    with torch.no_grad():
        program = torch.export.export(layer, (x,))
        expected, _ = layer(x)
    assert "mkldnn" not in str(program.graph)
    got, _ = program.module()(x)
    assert rel_err(got, expected) <= 1e-6


def test_only_on_the_machines_it_was_measured_on(monkeypatch):
    monkeypatch.setattr(onednn, "_MEASURED_HERE", False)
    assert onednn.min_values() < 0
    monkeypatch.setattr(onednn, "_MEASURED_HERE", True)
    assert onednn.min_values() == onednn.MIN_VALUES
