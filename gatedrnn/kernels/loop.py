"""The "loop" backend: a plain PyTorch time loop over the cell definitions; any device, any dtype.

Every backend implements this module's two functions with the same signature and the same
saved-for-backward contract (see gatedrnn/kernels/__init__.py for the contract in words).

Dimension letters: T time steps, B batch, H hidden units, G gate blocks, S saved blocks.
"""

from __future__ import annotations

import torch

from ..cells import Variant
from .states import after, before, new_states, weight_grads


def _time_order(T: int, reverse: bool):
    return range(T - 1, -1, -1) if reverse else range(T)


def forward(variant: Variant, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved=True):
    T, B, _ = xp.shape
    H = R.shape[1]
    SA = new_states(a0, T, reverse)
    SC = new_states(c0, T, reverse) if variant.has_cell else None
    A, C = after(SA, reverse), (after(SC, reverse) if SC is not None else None)
    saved = xp.new_empty(T, B, variant.saved_blocks * H) if keep_saved else None
    a, c = a0, c0
    for t in _time_order(T, reverse):
        a_new, c_new, saved_t = variant.step(xp[t], R, a, c, b_hh, p)
        if keep_saved:
            saved[t] = saved_t
        if mask is not None:   # past a sequence's end its state is carried unchanged
            a_new = torch.where(mask[t], a_new, a)
            c_new = torch.where(mask[t], c_new, c) if c is not None else None
        a, c = a_new, c_new
        A[t] = a
        if C is not None:
            C[t] = c
    return SA, SC, saved


def backward(variant: Variant, d_A, d_a_n, d_c_n, R, b_hh, p, SA, SC, saved, mask, reverse):
    T, B, H = d_A.shape
    d_xp = d_A.new_empty(T, B, variant.num_gates * H)
    d_a, d_c = d_a_n, d_c_n
    A, A_prev = after(SA, reverse), before(SA, reverse)
    C, C_prev = (after(SC, reverse), before(SC, reverse)) if SC is not None else (None, None)
    for t in reversed(_time_order(T, reverse)):
        d_a = d_a + d_A[t]
        if mask is not None:   # only real steps take gradient; masked ones pass it through
            m = mask[t].to(d_a.dtype)
            d_a_step, d_c_step = d_a * m, (d_c * m if d_c is not None else None)
        else:
            d_a_step, d_c_step = d_a, d_c
        c_t = C[t] if C is not None else None
        c_prev = C_prev[t] if C_prev is not None else None
        d_xp[t], d_a_prev, d_c_prev = variant.step_backward(
            d_a_step, d_c_step, R, A_prev[t], c_prev, A[t], c_t, saved[t], b_hh, p)
        if mask is not None:
            d_a_prev = d_a_prev + d_a * (1 - m)
            d_c_prev = d_c_prev + d_c * (1 - m) if d_c is not None else None
        d_a, d_c = d_a_prev, d_c_prev
    d_R, d_b_hh, d_p = weight_grads(variant, d_xp, SA, SC, saved, reverse)
    return d_xp, d_R, d_b_hh, d_p, d_a, d_c
