"""The reference: forward and backpropagation through time of every cell, in NumPy float64.

Written as the lecture writes it: one matrix per gate acting on the concatenation [a<t-1>, x<t>]
(for the GRU family [c<t-1>, x<t>], where a<t> = c<t>), one bias per gate, peephole vectors p_•.
It is the textbook and the oracle: every other backend is tested against it, and it is tested
against finite differences. Speed is no concern here; clarity is.

Dimension letters: T time steps, B batch, I input features, H hidden units.

Parameters are a dict in the lecture's names (gatedrnn.layout converts from the stacked layout):
    W_c, W_u, W_r, W_f, W_o, W_a  (H, H+I)     b_c, b_u, b_r, b_f, b_o, b_a  (H,)
    p_u, p_f, p_o  (H,) for lstm_peephole      b_cc (H,) for gru_reset_after
    W_hr (P, H) for an LSTM with projections (LSTMP, Sak et al. 2014): the output and the
    recurrent input are a<t> = W_hr (Γ_o ⊙ tanh(c<t>)), P wide, and the gates' W_• are (H, P+I)

Example:
    >>> import numpy as np
    >>> from gatedrnn import reference
    >>> rng = np.random.default_rng(0)
    >>> T, B, I, H = 5, 2, 3, 4
    >>> params = reference.init_params("gru", I, H, rng)
    >>> x = rng.standard_normal((T, B, I))
    >>> a, c, cache = reference.forward("gru", x, params, a0=np.zeros((B, H)))
    >>> grads = reference.backward(cache, d_a=np.ones_like(a))
    >>> sorted(grads)
    ['W_c', 'W_r', 'W_u', 'a0', 'b_c', 'b_r', 'b_u', 'x']
"""

from __future__ import annotations

import numpy as np

from .cells import get_variant


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))   # = 1 / (1 + e^-z), without overflow for large -z


def init_params(variant: str, input_size: int, hidden_size: int, rng: np.random.Generator,
                scale: float = 0.5, proj_size: int = 0) -> dict:
    """Random lecture-layout parameters (for tests and examples); proj_size > 0 adds an LSTM's
    projection W_hr."""
    v = get_variant(variant)
    H, I = hidden_size, input_size
    params = {}
    if proj_size:
        params["W_hr"] = scale * rng.standard_normal((proj_size, H))
    for g in v.gates:
        params[f"W_{g}"] = scale * rng.standard_normal((H, (proj_size or H) + I))
        params[f"b_{g}"] = scale * rng.standard_normal(H)
    for g in v.peepholes:
        params[f"p_{g}"] = scale * rng.standard_normal(H)
    if v.recurrent_bias:
        params["b_cc"] = scale * rng.standard_normal(H)
    return params


# ---- one step forward, per variant: returns the new a<t>, c<t> and what the backward needs ----

def _rnn_step(P, x_t, a_prev, c_prev):
    concat = np.concatenate([a_prev, x_t], axis=1)              # [a<t-1>, x<t>]
    a = np.tanh(concat @ P["W_a"].T + P["b_a"])
    return a, None, dict(concat=concat, a=a)


def _rnn_relu_step(P, x_t, a_prev, c_prev):
    concat = np.concatenate([a_prev, x_t], axis=1)
    a = np.maximum(concat @ P["W_a"].T + P["b_a"], 0)
    return a, None, dict(concat=concat, a=a)


def _gru_simple_step(P, x_t, a_prev, c_prev):
    c_prev = a_prev                                              # a<t> = c<t>
    concat = np.concatenate([c_prev, x_t], axis=1)
    c_tilde = np.tanh(concat @ P["W_c"].T + P["b_c"])
    gamma_u = sigmoid(concat @ P["W_u"].T + P["b_u"])
    c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
    return c, None, dict(concat=concat, c_prev=c_prev, c_tilde=c_tilde, gamma_u=gamma_u)


def _gru_step(P, x_t, a_prev, c_prev):
    c_prev = a_prev
    concat = np.concatenate([c_prev, x_t], axis=1)
    gamma_u = sigmoid(concat @ P["W_u"].T + P["b_u"])
    gamma_r = sigmoid(concat @ P["W_r"].T + P["b_r"])
    concat_r = np.concatenate([gamma_r * c_prev, x_t], axis=1)  # [Γ_r ⊙ c<t-1>, x<t>]
    c_tilde = np.tanh(concat_r @ P["W_c"].T + P["b_c"])
    c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
    return c, None, dict(concat=concat, concat_r=concat_r, c_prev=c_prev, c_tilde=c_tilde,
                         gamma_u=gamma_u, gamma_r=gamma_r)


def _gru_reset_after_step(P, x_t, a_prev, c_prev):
    c_prev = a_prev
    H = c_prev.shape[1]
    concat = np.concatenate([c_prev, x_t], axis=1)
    gamma_u = sigmoid(concat @ P["W_u"].T + P["b_u"])
    gamma_r = sigmoid(concat @ P["W_r"].T + P["b_r"])
    W_cc, W_cx = P["W_c"][:, :H], P["W_c"][:, H:]
    recurrent_c = c_prev @ W_cc.T + P["b_cc"]                   # W_cc c<t-1> + b_cc
    c_tilde = np.tanh(x_t @ W_cx.T + P["b_c"] + gamma_r * recurrent_c)
    c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
    return c, None, dict(concat=concat, x_t=x_t, c_prev=c_prev, c_tilde=c_tilde, gamma_u=gamma_u,
                         gamma_r=gamma_r, recurrent_c=recurrent_c)


def _lstm_step(P, x_t, a_prev, c_prev):
    peephole = "p_u" in P
    concat = np.concatenate([a_prev, x_t], axis=1)
    c_tilde = np.tanh(concat @ P["W_c"].T + P["b_c"])
    gamma_u = sigmoid(concat @ P["W_u"].T + P["b_u"] + (P["p_u"] * c_prev if peephole else 0))
    gamma_f = sigmoid(concat @ P["W_f"].T + P["b_f"] + (P["p_f"] * c_prev if peephole else 0))
    c = gamma_u * c_tilde + gamma_f * c_prev
    gamma_o = sigmoid(concat @ P["W_o"].T + P["b_o"] + (P["p_o"] * c if peephole else 0))
    a = gamma_o * np.tanh(c)
    cache = dict(concat=concat, c_prev=c_prev, c=c, c_tilde=c_tilde, gamma_u=gamma_u,
                 gamma_f=gamma_f, gamma_o=gamma_o, a_prev_width=a_prev.shape[1])
    if "W_hr" in P:                                              # the projection
        cache["unprojected"] = a
        a = a @ P["W_hr"].T
    return a, c, cache


# ---- one step backward, per variant: adds parameter gradients into `grads`, returns the rest ----
# d_a, d_c: gradients of the loss w.r.t. this step's a<t>, c<t>. Returns (d_x_t, d_a_prev, d_c_prev).

def _split(d_concat, H):
    return d_concat[:, H:], d_concat[:, :H]                      # d_x<t>, d_a<t-1>


def _rnn_backward(P, grads, s, d_a, d_c):
    d_pre = d_a * (1 - s["a"] ** 2)
    grads["W_a"] += d_pre.T @ s["concat"]
    grads["b_a"] += d_pre.sum(0)
    d_x, d_a_prev = _split(d_pre @ P["W_a"], d_a.shape[1])
    return d_x, d_a_prev, None


def _rnn_relu_backward(P, grads, s, d_a, d_c):
    d_pre = d_a * (s["a"] > 0)
    grads["W_a"] += d_pre.T @ s["concat"]
    grads["b_a"] += d_pre.sum(0)
    d_x, d_a_prev = _split(d_pre @ P["W_a"], d_a.shape[1])
    return d_x, d_a_prev, None


def _gru_simple_backward(P, grads, s, d_a, d_c):
    d_c = d_a
    d_c_tilde = d_c * s["gamma_u"]
    d_gamma_u = d_c * (s["c_tilde"] - s["c_prev"])
    d_pre_c = d_c_tilde * (1 - s["c_tilde"] ** 2)
    d_pre_u = d_gamma_u * s["gamma_u"] * (1 - s["gamma_u"])
    for g, d_pre in (("c", d_pre_c), ("u", d_pre_u)):
        grads[f"W_{g}"] += d_pre.T @ s["concat"]
        grads[f"b_{g}"] += d_pre.sum(0)
    d_x, d_c_prev = _split(d_pre_c @ P["W_c"] + d_pre_u @ P["W_u"], d_c.shape[1])
    return d_x, d_c_prev + d_c * (1 - s["gamma_u"]), None


def _gru_backward(P, grads, s, d_a, d_c):
    d_c = d_a
    H = d_c.shape[1]
    d_pre_c = d_c * s["gamma_u"] * (1 - s["c_tilde"] ** 2)
    d_pre_u = d_c * (s["c_tilde"] - s["c_prev"]) * s["gamma_u"] * (1 - s["gamma_u"])
    grads["W_c"] += d_pre_c.T @ s["concat_r"]
    grads["b_c"] += d_pre_c.sum(0)
    d_x, d_reset_c = _split(d_pre_c @ P["W_c"], H)               # d_x<t> (part), d(Γ_r ⊙ c<t-1>)
    d_pre_r = d_reset_c * s["c_prev"] * s["gamma_r"] * (1 - s["gamma_r"])
    for g, d_pre in (("u", d_pre_u), ("r", d_pre_r)):
        grads[f"W_{g}"] += d_pre.T @ s["concat"]
        grads[f"b_{g}"] += d_pre.sum(0)
    d_x2, d_c_prev = _split(d_pre_u @ P["W_u"] + d_pre_r @ P["W_r"], H)
    d_c_prev += d_reset_c * s["gamma_r"] + d_c * (1 - s["gamma_u"])
    return d_x + d_x2, d_c_prev, None


def _gru_reset_after_backward(P, grads, s, d_a, d_c):
    d_c = d_a
    H = d_c.shape[1]
    W_cc, W_cx = P["W_c"][:, :H], P["W_c"][:, H:]
    d_pre_c = d_c * s["gamma_u"] * (1 - s["c_tilde"] ** 2)
    d_pre_u = d_c * (s["c_tilde"] - s["c_prev"]) * s["gamma_u"] * (1 - s["gamma_u"])
    d_pre_r = d_pre_c * s["recurrent_c"] * s["gamma_r"] * (1 - s["gamma_r"])
    d_recurrent_c = d_pre_c * s["gamma_r"]
    grads["W_c"][:, :H] += d_recurrent_c.T @ s["c_prev"]
    grads["W_c"][:, H:] += d_pre_c.T @ s["x_t"]
    grads["b_c"] += d_pre_c.sum(0)
    grads["b_cc"] += d_recurrent_c.sum(0)
    for g, d_pre in (("u", d_pre_u), ("r", d_pre_r)):
        grads[f"W_{g}"] += d_pre.T @ s["concat"]
        grads[f"b_{g}"] += d_pre.sum(0)
    d_x, d_c_prev = _split(d_pre_u @ P["W_u"] + d_pre_r @ P["W_r"], H)
    d_x += d_pre_c @ W_cx
    d_c_prev += d_recurrent_c @ W_cc + d_c * (1 - s["gamma_u"])
    return d_x, d_c_prev, None


def _lstm_backward(P, grads, s, d_a, d_c):
    peephole = "p_u" in P
    if "W_hr" in P:                                              # through a<t> = W_hr (...)
        grads["W_hr"] += d_a.T @ s["unprojected"]
        d_a = d_a @ P["W_hr"]
    tanh_c = np.tanh(s["c"])
    d_pre_o = d_a * tanh_c * s["gamma_o"] * (1 - s["gamma_o"])
    d_c = d_c + d_a * s["gamma_o"] * (1 - tanh_c ** 2)           # through a<t> = Γ_o ⊙ tanh(c<t>)
    if peephole:
        d_c = d_c + d_pre_o * P["p_o"]                           # through Γ_o's peephole on c<t>
    d_pre_c = d_c * s["gamma_u"] * (1 - s["c_tilde"] ** 2)
    d_pre_u = d_c * s["c_tilde"] * s["gamma_u"] * (1 - s["gamma_u"])
    d_pre_f = d_c * s["c_prev"] * s["gamma_f"] * (1 - s["gamma_f"])
    d_c_prev = d_c * s["gamma_f"]
    d_concat = 0
    for g, d_pre in (("c", d_pre_c), ("u", d_pre_u), ("f", d_pre_f), ("o", d_pre_o)):
        grads[f"W_{g}"] += d_pre.T @ s["concat"]
        grads[f"b_{g}"] += d_pre.sum(0)
        d_concat = d_concat + d_pre @ P[f"W_{g}"]
    if peephole:
        grads["p_u"] += (d_pre_u * s["c_prev"]).sum(0)
        grads["p_f"] += (d_pre_f * s["c_prev"]).sum(0)
        grads["p_o"] += (d_pre_o * s["c"]).sum(0)
        d_c_prev = d_c_prev + d_pre_u * P["p_u"] + d_pre_f * P["p_f"]
    d_x, d_a_prev = _split(d_concat, s["a_prev_width"])
    return d_x, d_a_prev, d_c_prev


_STEPS = {
    "rnn": (_rnn_step, _rnn_backward),
    "rnn_relu": (_rnn_relu_step, _rnn_relu_backward),
    "gru_simple": (_gru_simple_step, _gru_simple_backward),
    "gru": (_gru_step, _gru_backward),
    "gru_reset_after": (_gru_reset_after_step, _gru_reset_after_backward),
    "lstm": (_lstm_step, _lstm_backward),
    "lstm_peephole": (_lstm_step, _lstm_backward),
}


def _check_params(variant, params):
    v = get_variant(variant)
    needed = ({f"W_{g}" for g in v.gates} | {f"b_{g}" for g in v.gates}
              | {f"p_{g}" for g in v.peepholes} | ({"b_cc"} if v.recurrent_bias else set()))
    if v.has_cell and "W_hr" in params:
        needed.add("W_hr")
    if set(params) != needed:
        raise ValueError(f"params: expected the keys {sorted(needed)} for variant "
                         f"{v.name!r}, got {sorted(params)}")
    return v


def forward(variant: str, x, params: dict, a0, c0=None):
    """Run one layer over a whole sequence.

    x (T, B, I); a0 (B, H) the initial state (c<0> for the GRU family, a<0> for the LSTM);
    c0 (B, H) the LSTM's initial memory cell. Returns (a, c, cache): a (T, B, H) every step's
    output a<t>, c (T, B, H) every c<t> for the LSTM (None otherwise), cache for `backward`.
    """
    v = _check_params(variant, params)
    step, _ = _STEPS[v.name]
    P = {k: np.asarray(w, dtype=np.float64) for k, w in params.items()}
    x = np.asarray(x, dtype=np.float64)
    a_prev = np.asarray(a0, dtype=np.float64)
    c_prev = np.asarray(c0, dtype=np.float64) if v.has_cell else None
    a_seq, c_seq, steps = [], [], []
    for t in range(x.shape[0]):
        a_prev, c_prev, s = step(P, x[t], a_prev, c_prev)
        a_seq.append(a_prev)
        c_seq.append(c_prev)
        steps.append(s)
    a = np.stack(a_seq)
    c = np.stack(c_seq) if v.has_cell else None
    return a, c, dict(variant=v.name, params=P, steps=steps, input_size=x.shape[2])


def backward(cache: dict, d_a, d_a_n=None, d_c_n=None) -> dict:
    """Backpropagation through time.

    d_a (T, B, H): gradient of the loss w.r.t. every output a<t>; d_a_n, d_c_n (B, H): extra
    gradients w.r.t. the final a<T> and the LSTM's final c<T>. Returns a dict with "x", "a0",
    "c0" (LSTM) and one entry per parameter, in the lecture's names.
    """
    v = get_variant(cache["variant"])
    _, step_backward = _STEPS[v.name]
    P, steps = cache["params"], cache["steps"]
    d_a = np.asarray(d_a, dtype=np.float64)
    T, B, H = d_a.shape
    H_c = P[f"b_{v.gates[0]}"].shape[0]   # c<t>'s width: H, or wider than a projected a<t>
    grads = {k: np.zeros_like(w) for k, w in P.items()}
    d_x = np.zeros((T, B, cache["input_size"]))
    d_a_next = np.zeros((B, H)) if d_a_n is None else np.array(d_a_n, dtype=np.float64)
    d_c_next = np.zeros((B, H_c)) if d_c_n is None else np.array(d_c_n, dtype=np.float64)
    for t in reversed(range(T)):
        d_x[t], d_a_next, d_c_next = step_backward(P, grads, steps[t], d_a[t] + d_a_next, d_c_next)
    grads["x"], grads["a0"] = d_x, d_a_next
    if v.has_cell:
        grads["c0"] = d_c_next
    return grads
