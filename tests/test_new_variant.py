"""A new cell is declared in two places, cells.py (its step, forward and backward) and
reference.py (its textbook twin), and then runs as a layer on every backend: the compiled
ones, which have no kernel for it, fall back to the loop with one warning.

The example is the minimal gated unit (Zhou et al. 2016), in the lecture's notation:
    Γ_f = σ(W_f[c<t-1>, x<t>] + b_f)
    c̃<t> = tanh(W_c[Γ_f ⊙ c<t-1>, x<t>] + b_c)
    c<t> = Γ_f ⊙ c̃<t> + (1 − Γ_f) ⊙ c<t-1>,   a<t> = c<t>
"""

import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn import cells, reference
from gatedrnn.layout import from_lecture

from conftest import needs_triton

T, B, I, H = 5, 3, 4, 6


class MGU(cells.Variant):
    name = "mgu"
    family = "gru"
    equations = ("Γ_f = σ(W_f[c<t-1>, x<t>] + b_f); c~<t> = tanh(W_c[Γ_f ⊙ c<t-1>, x<t>] + "
                 "b_c); c<t> = Γ_f ⊙ c~<t> + (1 − Γ_f) ⊙ c<t-1>")
    gates = ("f", "c")
    saved_blocks = 2
    saved_names = ("gamma_f", "c_tilde")
    reset_before = True

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        H = a_prev.shape[-1]
        xp_f, xp_c = xp_t.chunk(2, -1)
        gamma_f = torch.sigmoid(xp_f + a_prev @ R[:H].t())
        c_tilde = torch.tanh(xp_c + (gamma_f * a_prev) @ R[H:].t())
        return (gamma_f * c_tilde + (1 - gamma_f) * a_prev, None,
                torch.cat([gamma_f, c_tilde], -1))

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        H = a_prev.shape[-1]
        gamma_f, c_tilde = saved.chunk(2, -1)
        d_pre_c = d_a * gamma_f * (1 - c_tilde * c_tilde)
        d_gated = d_pre_c @ R[H:]                     # of Γ_f ⊙ c<t-1>
        d_pre_f = (d_a * (c_tilde - a_prev) + d_gated * a_prev) * gamma_f * (1 - gamma_f)
        d_a_prev = d_a * (1 - gamma_f) + d_gated * gamma_f + d_pre_f @ R[:H]
        return torch.cat([d_pre_f, d_pre_c], -1), d_a_prev, None

    def param_grads(self, d_xp, A_prev, C_prev, C, saved):
        H = A_prev.shape[-1]
        gamma_f = saved[:, :H].to(A_prev.dtype)
        return torch.cat([d_xp[:, :H].t() @ A_prev, d_xp[:, H:].t() @ (gamma_f * A_prev)]), \
            None, None


def _mgu_step(P, x_t, a_prev, c_prev):
    concat = np.concatenate([a_prev, x_t], axis=1)
    gamma_f = reference.sigmoid(concat @ P["W_f"].T + P["b_f"])
    gated = np.concatenate([gamma_f * a_prev, x_t], axis=1)
    c_tilde = np.tanh(gated @ P["W_c"].T + P["b_c"])
    c = gamma_f * c_tilde + (1 - gamma_f) * a_prev
    return c, None, dict(concat=concat, gated=gated, c_prev=a_prev, gamma_f=gamma_f,
                         c_tilde=c_tilde)


def _mgu_backward(P, grads, s, d_a, d_c):
    H = d_a.shape[1]
    d_pre_c = d_a * s["gamma_f"] * (1 - s["c_tilde"] ** 2)
    d_gated = d_pre_c @ P["W_c"]
    d_pre_f = ((d_a * (s["c_tilde"] - s["c_prev"]) + d_gated[:, :H] * s["c_prev"])
               * s["gamma_f"] * (1 - s["gamma_f"]))
    grads["W_c"] += d_pre_c.T @ s["gated"]
    grads["b_c"] += d_pre_c.sum(0)
    grads["W_f"] += d_pre_f.T @ s["concat"]
    grads["b_f"] += d_pre_f.sum(0)
    d_concat = d_pre_f @ P["W_f"]
    d_x = d_concat[:, H:] + d_gated[:, H:]
    d_c_prev = d_concat[:, :H] + d_gated[:, :H] * s["gamma_f"] + d_a * (1 - s["gamma_f"])
    return d_x, d_c_prev, None


@pytest.fixture
def mgu(monkeypatch):
    monkeypatch.setitem(cells.VARIANTS, "mgu", MGU())
    monkeypatch.setitem(reference._STEPS, "mgu", (_mgu_step, _mgu_backward))
    return "mgu"


def test_the_reference_twin_matches_finite_differences(mgu):
    rng = np.random.default_rng(0)
    params = reference.init_params(mgu, I, H, rng)
    x, a0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    w = rng.standard_normal((T, B, H))
    loss = lambda: (reference.forward(mgu, x, params, a0)[0] * w).sum()  # noqa: E731
    grads = reference.backward(reference.forward(mgu, x, params, a0)[2], w)
    for name in ("W_f", "W_c", "b_f"):
        numeric = np.zeros_like(params[name])
        for index in np.ndindex(params[name].shape):
            saved = params[name][index]
            params[name][index] = saved + 1e-6
            up = loss()
            params[name][index] = saved - 1e-6
            numeric[index] = (up - loss()) / 2e-6
            params[name][index] = saved
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", ["loop", "reference", "cpu",
                                     pytest.param("triton", marks=needs_triton)])
def test_a_new_variant_runs_as_a_layer_on_every_backend(mgu, backend):
    rng = np.random.default_rng(1)
    params = reference.init_params(mgu, I, H, rng)
    x, a0, w = (rng.standard_normal(s) for s in ((T, B, I), (B, H), (T, B, H)))
    expected, _, cache = reference.forward(mgu, x, params, a0)
    d = reference.backward(cache, w)

    layer = gatedrnn.GRU(I, H, variant=mgu, backend=backend, dtype=torch.float64)
    w_ih, w_hh, b_ih, _, _ = from_lecture(cells.VARIANTS[mgu], params)
    with torch.no_grad():
        for p, value in ((layer.weight_ih_l0, w_ih), (layer.weight_hh_l0, w_hh),
                         (layer.bias_ih_l0, b_ih), (layer.bias_hh_l0, 0 * b_ih)):
            p.copy_(torch.as_tensor(value))
    xt = torch.tensor(x, requires_grad=True)
    with pytest.warns(UserWarning, match="no kernel for the variant 'mgu'") \
            if backend in ("cpu", "triton") else _nothing():
        out, _ = layer(xt, torch.tensor(a0)[None])
    (out * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), d["x"], rtol=1e-9, atol=1e-11)
    d_w_ih, d_w_hh, _, _, _ = from_lecture(cells.VARIANTS[mgu], d)
    np.testing.assert_allclose(layer.weight_hh_l0.grad.numpy(), d_w_hh, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(layer.weight_ih_l0.grad.numpy(), d_w_ih, rtol=1e-9, atol=1e-11)


def _nothing():
    import contextlib

    return contextlib.nullcontext()
