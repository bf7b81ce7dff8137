"""torch.func's grad and vjp over gatedrnn layers (the autograd Function in the form the
transforms take, gatedrnn/through_time.py), and a second derivative refused by name: before,
a gradient penalty's derivative left out every path through the recurrence, silently (d/dW_hh
came back None where torch.nn.GRU's is not zero)."""

import pytest
import torch
from torch.func import functional_call

import gatedrnn
from conftest import needs_triton, rel_err

BACKENDS = ["cpu", "loop", "reference", pytest.param("triton", marks=needs_triton)]


def _model_and_input(variant="lstm_peephole", backend="cpu"):
    torch.manual_seed(0)
    model = gatedrnn.for_variant(variant, 3, 4, num_layers=2, bidirectional=True,
                                 backend=backend).double()
    return model, torch.randn(5, 2, 3, dtype=torch.float64)


def _loss(model, params, x):
    out, state = functional_call(model, params, (x,), {"lengths": torch.tensor([5, 3])})
    return out.sin().sum() + sum(s.sum() for s in torch.utils._pytree.tree_leaves(state))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_torch_func_grad_gives_autograds_gradients(variant, backend):
    model, x = _model_and_input(variant, backend)
    params = {k: v.detach() for k, v in model.named_parameters()}
    got = torch.func.grad(lambda p: _loss(model, p, x))(params)
    expected = torch.autograd.grad(_loss(model, dict(model.named_parameters()), x),
                                   list(model.parameters()))
    for name, e in zip(params, expected):
        assert rel_err(got[name], e) <= 1e-12, name


def test_torch_func_vjp_gives_autograds_input_gradient():
    model, x = _model_and_input()
    params = dict(model.named_parameters())
    out, vjp = torch.func.vjp(lambda x: functional_call(model, params, (x,))[0], x)
    weights = torch.randn(out.shape, dtype=out.dtype)
    x.requires_grad_(True)
    expected = torch.autograd.grad((model(x)[0] * weights).sum(), x)[0]
    assert rel_err(vjp(weights)[0], expected) <= 1e-12


def test_a_second_derivative_is_refused_by_name():
    model, x = _model_and_input("gru")
    x.requires_grad_(True)
    out, _ = model(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)   # first order: fine
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(g.pow(2).sum(), model.weight_hh_l0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.func.grad(lambda p: torch.func.grad(lambda q: _loss(model, q, x))(p)
                        ["weight_hh_l0"].sum())(params)


@pytest.mark.gpu
def test_torch_func_grad_on_the_gpu_gives_autograds_gradients():
    """CUDA tensors, the triton backend's kernels, float32."""
    model, x = _model_and_input("lstm", "triton")
    model, x = model.float().cuda(), x.float().cuda()
    params = {k: v.detach() for k, v in model.named_parameters()}
    got = torch.func.grad(lambda p: _loss(model, p, x))(params)
    expected = torch.autograd.grad(_loss(model, dict(model.named_parameters()), x),
                                   list(model.parameters()))
    for name, e in zip(params, expected):
        assert rel_err(got[name], e) <= 1e-6, name
