"""The custom operators that torch.compile and torch.export trace in place of the recurrence
(gatedrnn/through_time.py): what their fake implementations say each backend returns is what
it returns, and torch's own operator checks pass (schema, autograd registration, fake tensors,
AOTAutograd with dynamic shapes)."""

import pytest
import torch

from gatedrnn import kernels, through_time
from gatedrnn.cells import get_variant
from gatedrnn.functional import lengths_to_mask
from conftest import VARIANTS, needs_triton

T, B, H = 3, 2, 4
TRITON = pytest.param("triton", marks=needs_triton)


def _backend_inputs(variant: str, dtype, requires_grad=False, mask=None):
    """The backend's (xp, R, b_hh, p, a0, c0, mask), random, in `dtype`."""
    v = get_variant(variant)
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        t = 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
        return t.to(dtype).requires_grad_(requires_grad)

    return (rand(T, B, v.num_gates * H), rand(v.num_gates * H, H),
            rand(H) if v.recurrent_bias else None, rand(3, H) if v.peepholes else None,
            rand(B, H), rand(B, H) if v.has_cell else None, mask)


def _layout(t):
    return None if t is None else (tuple(t.shape), t.dtype, t.device, t.is_contiguous())


@pytest.mark.parametrize("keep_saved", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["reference", "loop", "cpu", TRITON])
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_backend_returns_what_its_fake_says(variant, backend, dtype, keep_saved):
    if dtype == torch.bfloat16 and backend in ("reference", "cpu"):
        pytest.skip(f"the {backend} backend runs float32 and float64")
    v = get_variant(variant)
    xp, R, b_hh, p, a0, c0, _ = _backend_inputs(variant, dtype)
    real = kernels.load(backend).forward(v, xp, R, b_hh, p, a0, c0, None, False, keep_saved)
    fake = kernels.forward_like(backend, v, xp, a0, c0, keep_saved)
    assert [_layout(t) for t in fake] == [_layout(t) for t in real]


def _forward_operator_args(variant, backend, requires_grad=True):
    mask = lengths_to_mask(torch.tensor([T, 2]), T)
    return (*_backend_inputs(variant, torch.float64, requires_grad, mask), variant, backend,
            True, True)


@pytest.mark.parametrize("backend", ["reference", "loop", "cpu", TRITON])
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_the_operators_pass_torchs_checks(variant, backend):
    forward = torch.ops.gatedrnn.through_time.default
    args = _forward_operator_args(variant, backend)
    torch.library.opcheck(forward, args)
    out, a_n, c_n, SA, SC, saved = forward(*args)
    R, b_hh, p, a0, c0, mask = args[1:7]
    g = torch.Generator().manual_seed(1)
    d = lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype)  # noqa: E731
    has_cell = get_variant(variant).has_cell
    backward_args = (d(out), d(a_n), d(c_n) if has_cell else None, R, b_hh, p, a0, c0, SA,
                     SC if has_cell else None, saved, mask, variant, backend, True)
    torch.library.opcheck(torch.ops.gatedrnn.through_time_backward.default,
                          tuple(t.detach() if isinstance(t, torch.Tensor) else t
                                for t in backward_args))


@pytest.mark.parametrize("variant", ["rnn", "gru", "lstm"])
def test_the_operators_gradients_are_the_autograd_functions(variant):
    """The two doors run the same code: the operator's autograd formula gives the eager
    Function's gradients, every one, with lengths and backwards in time."""
    args = _forward_operator_args(variant, "loop")
    leaves = [t for t in args if isinstance(t, torch.Tensor) and t.requires_grad]
    n_out = 3 if get_variant(variant).has_cell else 2
    g = torch.Generator().manual_seed(2)
    grads = []
    for outputs in (torch.ops.gatedrnn.through_time(*args)[:n_out],
                    through_time.run(get_variant(variant), "loop", *args[:7], True, True)):
        loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum()
                   for o in outputs)
        g.manual_seed(2)
        grads.append(torch.autograd.grad(loss, leaves))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_a_second_derivative_through_the_operator_is_refused_by_name():
    args = _forward_operator_args("gru", "loop")
    xp, R = args[:2]
    out = torch.ops.gatedrnn.through_time(*args)[0]
    (d_xp,) = torch.autograd.grad(out.sin().sum(), xp, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(d_xp.pow(2).sum(), R)
