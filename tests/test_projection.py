"""LSTM projections (proj_size, LSTMP): every backend against the NumPy reference, which
computes a<t> = W_hr (Γ_o ⊙ tanh(c<t>)) step by step, outputs and every gradient."""

import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn import reference
from gatedrnn.layout import to_lecture

from conftest import TOLERANCE, needs_triton, rel_err

T, B, I, H, P = 5, 3, 4, 6, 3
BACKENDS = ["loop", "reference", "cpu", pytest.param("triton", marks=needs_triton)]


def _layer(variant, backend=None, **kwargs):
    g = torch.Generator().manual_seed(0)
    lstm = gatedrnn.LSTM(I, H, proj_size=P, peephole=variant == "lstm_peephole",
                         backend=backend, dtype=torch.float64, **kwargs)
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return lstm


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("variant", ["lstm", "lstm_peephole"])
def test_every_backend_matches_the_reference(variant, reverse, backend):
    lstm = _layer(variant, backend, reverse=reverse)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64, requires_grad=True)
    a0 = torch.randn(1, B, P, generator=g, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, B, H, generator=g, dtype=torch.float64, requires_grad=True)
    out, (a_n, c_n) = lstm(x, (a0, c0))
    w_out, w_a, w_c = (torch.randn(t.shape, generator=g, dtype=torch.float64)
                       for t in (out, a_n, c_n))
    ((w_out * out).sum() + (w_a * a_n).sum() + (w_c * c_n).sum()).backward()

    params = to_lecture(variant, *(w.detach().numpy() for w in lstm._weights(0, 0)
                                   if w is not None))
    params["W_hr"] = lstm.weight_hr_l0.detach().numpy()
    flip = (lambda v: v[::-1]) if reverse else (lambda v: v)
    a, c, cache = reference.forward(variant, flip(x.detach().numpy()), params,
                                    a0[0].detach().numpy(), c0[0].detach().numpy())
    grads = reference.backward(cache, flip(w_out.numpy()), w_a[0].numpy(), w_c[0].numpy())
    tol = TOLERANCE[torch.float64]
    assert rel_err(out, flip(a).copy()) <= tol
    assert rel_err(a_n[0], a[-1]) <= tol and rel_err(c_n[0], c[-1]) <= tol
    assert rel_err(x.grad, flip(grads["x"]).copy()) <= tol
    assert rel_err(a0.grad[0], grads["a0"]) <= tol and rel_err(c0.grad[0], grads["c0"]) <= tol
    assert rel_err(lstm.weight_hr_l0.grad, grads["W_hr"]) <= tol
    w_ih, w_hh, b_ih, _, peephole = lstm._weights(0, 0)   # b_hh's gradient is b_ih's
    d_params = to_lecture(variant, w_ih.grad, w_hh.grad, b_ih.grad, None,
                          None if peephole is None else peephole.grad)
    peepholes = ["p_u", "p_f", "p_o"] if variant == "lstm_peephole" else []
    for name in ["W_u", "W_f", "W_o", "W_c", "b_u", "b_f", "b_o", "b_c"] + peepholes:
        assert rel_err(d_params[name], grads[name]) <= tol, name


def test_a_zero_initial_state_still_gets_its_gradient():
    lstm = _layer("lstm", "cpu")
    x = torch.randn(T, B, I, dtype=torch.float64)
    a0 = torch.zeros(1, B, P, dtype=torch.float64, requires_grad=True)
    lstm(x, (a0, torch.zeros(1, B, H, dtype=torch.float64)))[0].sum().backward()
    assert a0.grad.abs().sum() > 0


def test_shapes_saving_and_refusals(tmp_path):
    lstm = gatedrnn.LSTM(I, H, num_layers=2, proj_size=P, bidirectional=True)
    out, (a_n, c_n) = lstm(torch.randn(T, B, I))
    assert out.shape == (T, B, 2 * P) and a_n.shape == (4, B, P) and c_n.shape == (4, B, H)
    assert lstm.weight_ih_l1.shape == (4 * H, 2 * P) and lstm.weight_hh_l0.shape == (4 * H, P)
    assert "W_hr" in lstm.gates(1, 1)
    _, _, gates = lstm.capture(torch.randn(T, B, I))
    assert gates[0][0]["c"].shape == (T, B, H)
    loaded = gatedrnn.load(gatedrnn.save(lstm, tmp_path / "m"))
    assert loaded.proj_size == P
    for p, q in zip(lstm.parameters(), loaded.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="proj_size: expected 0 .* to hidden_size - 1 = 5, got 6"):
        gatedrnn.LSTM(I, H, proj_size=H)
    with pytest.raises(TypeError, match="proj_size: expected an int, got float"):
        gatedrnn.LSTM(I, H, proj_size=2.0)
    with pytest.raises(ValueError, match="proj_size: only the LSTM projects"):
        gatedrnn.for_variant("gru", I, H, proj_size=2)
    with pytest.raises(ValueError, match="ONNX's LSTM operator has no projection"):
        gatedrnn.export_onnx(lstm)
