"""The reference against finite differences (float64), and against the lecture's equations."""

import numpy as np
import pytest

from gatedrnn import reference
from gatedrnn.reference import sigmoid

from conftest import VARIANTS

T, B, I, H = 4, 2, 3, 3


def _problem(variant, seed=0, proj_size=0):
    rng = np.random.default_rng(seed)
    params = reference.init_params(variant, I, H, rng, proj_size=proj_size)
    A = proj_size or H   # the width of a<t>
    x = rng.standard_normal((T, B, I))
    a0 = 0.5 * rng.standard_normal((B, A))
    c0 = 0.5 * rng.standard_normal((B, H))
    w_out, w_a_n, w_c_n = (rng.standard_normal(s) for s in ((T, B, A), (B, A), (B, H)))
    return params, x, a0, c0, w_out, w_a_n, w_c_n


def _loss(variant, params, x, a0, c0, w_out, w_a_n, w_c_n):
    a, c, _ = reference.forward(variant, x, params, a0, c0)
    loss = (w_out * a).sum() + (w_a_n * a[-1]).sum()
    return loss + ((w_c_n * c[-1]).sum() if c is not None else 0.0)


CASES = [(v, 0) for v in VARIANTS] + [("lstm", 2), ("lstm_peephole", 2)]


@pytest.mark.parametrize("variant,proj_size", CASES,
                         ids=[v + (f"-proj{p}" if p else "") for v, p in CASES])
def test_gradients_match_finite_differences(variant, proj_size):
    params, x, a0, c0, w_out, w_a_n, w_c_n = _problem(variant, proj_size=proj_size)
    _, _, cache = reference.forward(variant, x, params, a0, c0)
    grads = reference.backward(cache, w_out, w_a_n, w_c_n)

    leaves = dict(params, x=x, a0=a0)
    if "c0" in grads:
        leaves["c0"] = c0
    assert set(grads) == set(leaves)
    eps = 1e-6
    for name, value in leaves.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            saved = value[idx]
            value[idx] = saved + eps
            up = _loss(variant, params, x, a0, c0, w_out, w_a_n, w_c_n)
            value[idx] = saved - eps
            down = _loss(variant, params, x, a0, c0, w_out, w_a_n, w_c_n)
            value[idx] = saved
            numeric[idx] = (up - down) / (2 * eps)
        err = np.abs(grads[name] - numeric).max() / np.abs(numeric).max()
        assert err < 1e-6, f"{variant}: d{name} relative error {err:.2e}"


def test_lstm_step_is_the_lecture_equations():
    """One LSTM step written out by hand, unit by unit, from the lecture's slide."""
    params, x, a0, c0, *_ = _problem("lstm_peephole", seed=1)
    a, c, _ = reference.forward("lstm_peephole", x[:1], params, a0, c0)
    P = params
    for b in range(B):
        for k in range(H):
            z = np.concatenate([a0[b], x[0, b]])
            gu = sigmoid(P["W_u"][k] @ z + P["b_u"][k] + P["p_u"][k] * c0[b, k])
            gf = sigmoid(P["W_f"][k] @ z + P["b_f"][k] + P["p_f"][k] * c0[b, k])
            ct = np.tanh(P["W_c"][k] @ z + P["b_c"][k])
            ck = gu * ct + gf * c0[b, k]
            go = sigmoid(P["W_o"][k] @ z + P["b_o"][k] + P["p_o"][k] * ck)
            assert c[0, b, k] == pytest.approx(ck, rel=1e-14)
            assert a[0, b, k] == pytest.approx(go * np.tanh(ck), rel=1e-14)


def test_gru_reset_gate_acts_before_the_product():
    """With Γ_r forced to 0 the candidate ignores c<t-1>; the reset-after GRU keeps b_cc."""
    params, x, a0, *_ = _problem("gru", seed=2)
    params["W_r"][:] = 0
    params["b_r"][:] = -1e3                       # Γ_r = 0
    c, _, _ = reference.forward("gru", x[:1], params, a0)
    gamma_u = sigmoid(np.concatenate([a0, x[0]], 1) @ params["W_u"].T + params["b_u"])
    c_tilde = np.tanh(x[0] @ params["W_c"][:, H:].T + params["b_c"])
    np.testing.assert_allclose(c[0], gamma_u * c_tilde + (1 - gamma_u) * a0, rtol=1e-13)


def test_unknown_parameter_names_are_refused():
    params, x, a0, *_ = _problem("gru")
    del params["W_r"]
    with pytest.raises(ValueError, match="params: expected the keys"):
        reference.forward("gru", x, params, a0)
