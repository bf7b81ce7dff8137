"""torch.func over gatedrnn layers: grad, vjp, jacrev, and vmap (gatedrnn/vmap_rules.py: over
inputs, per-sample gradients among them, as one call with the samples in the batch; over
weights, one call per member); and a second derivative refused by name: before, a gradient
penalty's derivative left out every path through the recurrence silently (d/dW_hh came back
None where torch.nn.GRU's is not zero)."""

import pytest
import torch
from torch.func import functional_call, grad, vmap

import gatedrnn
from conftest import flat_outputs, needs_triton, rel_err

BACKENDS = ["cpu", "loop", "reference", pytest.param("triton", marks=needs_triton)]


def _model_and_input(variant="lstm_peephole", backend="cpu"):
    torch.manual_seed(0)
    model = gatedrnn.for_variant(variant, 3, 4, num_layers=2, bidirectional=True,
                                 backend=backend).double()
    return model, torch.randn(5, 2, 3, dtype=torch.float64)


def _loss(model, params, x):
    out, *finals = flat_outputs(functional_call(model, params, (x,),
                                                {"lengths": torch.tensor([5, 3])}))
    return out.sin().sum() + sum(f.sum() for f in finals)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_torch_func_grad_gives_autograds_gradients(variant, backend):
    _assert_func_grad_is_autograds(*_model_and_input(variant, backend), 1e-12)


def _assert_func_grad_is_autograds(model, x, tolerance):
    params = {k: v.detach() for k, v in model.named_parameters()}
    got = torch.func.grad(lambda p: _loss(model, p, x))(params)
    expected = torch.autograd.grad(_loss(model, dict(model.named_parameters()), x),
                                   list(model.parameters()))
    for name, e in zip(params, expected):
        assert rel_err(got[name], e) <= tolerance, name


def test_torch_func_vjp_gives_autograds_input_gradient():
    model, x = _model_and_input()
    params = dict(model.named_parameters())
    out, vjp = torch.func.vjp(lambda x: functional_call(model, params, (x,))[0], x)
    weights = torch.randn(out.shape, dtype=out.dtype)
    x.requires_grad_(True)
    expected = torch.autograd.grad((model(x)[0] * weights).sum(), x)[0]
    assert rel_err(vjp(weights)[0], expected) <= 1e-12


def _samples(N=3, T=5, B=2):
    """N samples of (T, B, 3) inputs, and their lengths (N, B): each sample's own."""
    g = torch.Generator().manual_seed(3)
    lengths = torch.stack([torch.randperm(T, generator=g)[:B] + 1 for _ in range(N)])
    return torch.randn(N, T, B, 3, generator=g, dtype=torch.float64), lengths


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_over_inputs_gives_each_sample_alone(backend):
    model, _ = _model_and_input("lstm_peephole", backend)
    params = dict(model.named_parameters())
    xs, lengths = _samples()
    run = lambda x, n: functional_call(model, params, (x,), {"lengths": n})  # noqa: E731
    out, (h, c) = vmap(run)(xs, lengths)
    for k in range(len(xs)):
        out_k, (h_k, c_k) = model(xs[k], lengths=lengths[k])
        for a, b in ((out[k], out_k), (h[k], h_k), (c[k], c_k)):
            assert rel_err(a, b) <= 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["rnn", "gru", "gru_reset_after", "lstm_peephole"])
def test_per_sample_gradients_are_each_samples_own(variant, backend):
    """vmap(grad(loss)): every parameter's gradient of each sample alone (b_cc and the
    peepholes included; the rnn, which saves no gates, too)."""
    _assert_per_sample_gradients(_model_and_input(variant, backend)[0], *_samples(), 1e-12)


def _assert_per_sample_gradients(model, xs, lengths, tolerance):
    def loss(params, x, lengths):
        out, _ = functional_call(model, params, (x,), {"lengths": lengths})
        return out.sin().sum()

    params = {k: v.detach() for k, v in model.named_parameters()}
    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))(params, xs, lengths)
    for k in range(len(xs)):
        expected = torch.autograd.grad(loss(dict(model.named_parameters()), xs[k], lengths[k]),
                                       list(model.parameters()))
        for name, e in zip(params, expected):
            assert rel_err(per_sample[name][k], e) <= tolerance, (k, name)


def test_vmap_over_weights_runs_each_member():
    """An ensemble: each member's weights vmapped, one call per member."""
    model, x = _model_and_input("gru", "cpu")
    members = {k: torch.stack([v.detach(), 0.5 * v.detach()])
               for k, v in model.named_parameters()}
    outs = vmap(lambda p: functional_call(model, p, (x,))[0])(members)
    for k in range(2):
        expected = functional_call(model, {n: v[k] for n, v in members.items()}, (x,))[0]
        assert rel_err(outs[k], expected) <= 1e-12


def test_jacrev_gives_autograds_jacobian():
    model, x = _model_and_input("lstm", "cpu")
    params = dict(model.named_parameters())
    got = torch.func.jacrev(lambda x: functional_call(model, params, (x,))[0])(x)
    expected = torch.autograd.functional.jacobian(lambda x: model(x)[0], x)
    assert rel_err(got, expected) <= 1e-12


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
    _assert_func_grad_is_autograds(model.float().cuda(), x.float().cuda(), 1e-6)


@pytest.mark.gpu
def test_per_sample_gradients_on_the_gpu_are_each_samples_own():
    """CUDA tensors, the triton backend's kernels, float32: the samples folded into one call."""
    model, _ = _model_and_input("gru", "triton")
    xs, lengths = _samples()
    _assert_per_sample_gradients(model.float().cuda(), xs.float().cuda(), lengths.cuda(), 1e-5)
