"""The "reference" backend: gatedrnn.reference (NumPy float64) behind the common backend contract.

Slow on purpose; it lets whole modules (layers, directions, lengths) run on the oracle. The
reference takes x<t> and per-gate matrices over [a<t-1>, x<t>], the backends take the input
projection xp and R; the bridge feeds xp as the "input" with a block selector as W_x:
W_g = [R_g | E_g], where E_g picks gate g's block of xp, so W_g[a, xp] = R_g a + xp_g exactly.

Each sequence runs alone over its valid steps, so lengths need no masking here; `saved` is xp
itself and the backward replays the forward.

Dimension letters: T time steps, B batch, H hidden units, G gate blocks.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import reference
from . import states
from .states import after, initial_index, new_states


def _params(variant, R, b_hh, p):
    H = R.shape[1]
    G = variant.num_gates
    R = R.detach().cpu().double().numpy()
    params = {}
    for k, g in enumerate(variant.gates):
        E = np.zeros((H, G * H))
        E[:, k * H:(k + 1) * H] = np.eye(H)
        params[f"W_{g}"] = np.concatenate([R[k * H:(k + 1) * H], E], axis=1)
        params[f"b_{g}"] = np.zeros(H)
    if variant.recurrent_bias:
        params["b_cc"] = (b_hh.detach().cpu().double().numpy() if b_hh is not None
                          else np.zeros(H))
    for k, g in enumerate(variant.peepholes):
        params[f"p_{g}"] = p[k].detach().cpu().double().numpy()
    return params


def _np(t):
    return None if t is None else t.detach().cpu().double().numpy()


def _steps(mask, T, b, reverse):
    """Time indices sequence b runs over, in the order it runs."""
    n = T if mask is None else int(mask[:, b, 0].sum())
    return np.arange(n)[::-1] if reverse else np.arange(n)


def _run(variant, xp, R, b_hh, p, a0, c0, mask, reverse):
    """Per sequence: (steps, a, c, cache) of the reference forward over its valid steps."""
    params = _params(variant, R, b_hh, p)
    xp_np, a0_np, c0_np = _np(xp), _np(a0), _np(c0)
    runs = []
    for b in range(xp.shape[1]):
        idx = _steps(mask, xp.shape[0], b, reverse)
        a, c, cache = reference.forward(variant.name, xp_np[idx, b:b + 1], params,
                                        a0_np[b:b + 1], c0_np[b:b + 1] if c0_np is not None else None)
        runs.append((idx, a, c, cache))
    return runs


def _carry(seq, s0, idx, T, reverse):
    """(T, H): the state after every step, the last valid one carried through the padding."""
    full = np.repeat(s0, T, axis=0)
    full[idx] = seq[:, 0]
    if len(idx):
        pad = slice(0, idx[-1]) if reverse else slice(idx[-1] + 1, T)
        full[pad] = seq[-1, 0]
    return full


def forward_like(variant, xp, a0, c0, keep_saved=True):
    """forward's outputs, uninitialised: `saved` is xp itself."""
    SA, SC, _ = states.forward_like(variant, xp, a0, c0, keep_saved=False)
    return SA, SC, torch.empty_like(xp)


def forward(variant, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved=True):
    T, B, _ = xp.shape
    H = R.shape[1]
    A = np.empty((T, B, H))
    C = np.empty((T, B, H)) if variant.has_cell else None
    for b, (idx, a, c, _) in enumerate(_run(variant, xp, R, b_hh, p, a0, c0, mask, reverse)):
        A[:, b] = _carry(a, _np(a0)[b:b + 1], idx, T, reverse)
        if C is not None:
            C[:, b] = _carry(c, _np(c0)[b:b + 1], idx, T, reverse)
    SA = new_states(a0, T, reverse)
    after(SA, reverse).copy_(torch.from_numpy(A))
    SC = None
    if C is not None:
        SC = new_states(c0, T, reverse)
        after(SC, reverse).copy_(torch.from_numpy(C))
    # The backward replays the forward, from xp and the initial states.
    return SA, SC, xp


def backward(variant, d_A, d_a_n, d_c_n, R, b_hh, p, SA, SC, saved, mask, reverse):
    xp = saved
    first = initial_index(xp.shape[0], reverse)
    a0, c0 = SA[first], (SC[first] if SC is not None else None)
    T, B, GH = xp.shape
    H = R.shape[1]
    d_xp = np.zeros((T, B, GH))
    d_R = np.zeros((GH, H))
    d_b_hh = np.zeros(H) if variant.recurrent_bias else None
    d_p = np.zeros((3, H)) if variant.peepholes else None
    d_a0, d_c0 = np.empty((B, H)), np.empty((B, H))
    d_A_np, d_a_n_np, d_c_n_np = _np(d_A), _np(d_a_n), _np(d_c_n)
    for b, (idx, _, _, cache) in enumerate(_run(variant, xp, R, b_hh, p, a0, c0, mask, reverse)):
        # Padded steps carry a state unchanged: after the end forwards (the final state),
        # before the start backwards (the initial state); their gradient goes there.
        d_pad = d_A_np[np.setdiff1d(np.arange(T), idx), b].sum(0)
        d_last = d_a_n_np[b:b + 1] + (0 if reverse else d_pad)
        g = reference.backward(cache, d_A_np[idx, b:b + 1], d_last,
                               d_c_n_np[b:b + 1] if d_c_n_np is not None else None)
        d_xp[idx, b] = g["x"][:, 0]
        d_a0[b] = g["a0"][0] + (d_pad if reverse else 0)
        if variant.has_cell:
            d_c0[b] = g["c0"][0]
        for k, gate in enumerate(variant.gates):
            d_R[k * H:(k + 1) * H] += g[f"W_{gate}"][:, :H]
        if d_b_hh is not None:
            d_b_hh += g["b_cc"]
        for k, gate in enumerate(variant.peepholes):
            d_p[k] += g[f"p_{gate}"]
    like = lambda z: None if z is None else torch.from_numpy(z).to(xp)  # noqa: E731
    return (like(d_xp), like(d_R), like(d_b_hh), like(d_p), like(d_a0),
            like(d_c0) if variant.has_cell else None)
