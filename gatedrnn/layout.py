"""Conversion between the stacked weight layout the kernels use and the lecture's layout.

Stacked (torch.nn-like, one matrix for all gates, blocks in `Variant.gates` order):
    weight_ih (G*H, I), weight_hh (G*H, H), bias_ih (G*H), bias_hh (G*H), peephole (3, H)
Lecture (one matrix per gate acting on the concatenation [a<t-1>, x<t>]):
    W_g (H, H+I) = [W_hh block | W_ih block],  b_g (H,),  p_u, p_f, p_o (H,),
    and for the reset-after GRU the recurrent candidate bias b_cc (H,). (An LSTM with
    projections has weight_hh (G*H, P) and W_g (H, P+I); its W_hr (P, H) is the same in both.)

b_g is b_ih + b_hh for every gate except the reset-after candidate, whose b_hh block stays apart
as b_cc (it sits inside Γ_r ⊙ (W_cc c<t-1> + b_cc)). Works on torch tensors and NumPy arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from .cells import Variant, get_variant


def _concat(parts, axis):
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


def _zeros_like(v):
    return torch.zeros_like(v) if isinstance(v, torch.Tensor) else np.zeros_like(v)


def to_lecture(variant: str | Variant, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
               peephole=None) -> dict:
    """Stacked weights → {"W_u": ..., "b_u": ..., ..., "p_u": ..., "b_cc": ...}."""
    v = get_variant(variant)
    H = weight_hh.shape[0] // v.num_gates   # weight_hh is (G*H, P) with LSTM projections
    params = {}
    for k, g in enumerate(v.gates):
        rows = slice(k * H, (k + 1) * H)
        params[f"W_{g}"] = _concat([weight_hh[rows], weight_ih[rows]], axis=1)
        b_ih = bias_ih[rows] if bias_ih is not None else _zeros_like(weight_hh[rows, 0])
        b_hh = bias_hh[rows] if bias_hh is not None else _zeros_like(b_ih)
        if v.recurrent_bias and g == "c":
            params["b_c"], params["b_cc"] = b_ih, b_hh
        else:
            params[f"b_{g}"] = b_ih + b_hh
    for k, g in enumerate(v.peepholes):
        params[f"p_{g}"] = peephole[k]
    return params


def from_lecture(variant: str | Variant, params: dict):
    """{"W_u": ..., ...} → (weight_ih, weight_hh, bias_ih, bias_hh, peephole or None).

    The whole bias goes to bias_ih; bias_hh is zero except the reset-after candidate's b_cc.
    With a projection W_hr (P, H) in params, the gates act on [a<t-1>, x<t>] of P + I.
    """
    v = get_variant(variant)
    H = params["W_hr"].shape[0] if "W_hr" in params else params[f"W_{v.gates[0]}"].shape[0]
    weight_hh = _concat([params[f"W_{g}"][:, :H] for g in v.gates], axis=0)
    weight_ih = _concat([params[f"W_{g}"][:, H:] for g in v.gates], axis=0)
    bias_ih = _concat([params[f"b_{g}"] for g in v.gates], axis=0)
    bias_hh = _concat([params["b_cc"] if (v.recurrent_bias and g == "c")
                       else _zeros_like(params[f"b_{g}"]) for g in v.gates], axis=0)
    peephole = None
    if v.peepholes:
        stack = torch.stack if isinstance(bias_ih, torch.Tensor) else np.stack
        peephole = stack([params[f"p_{g}"] for g in v.peepholes])
    return weight_ih, weight_hh, bias_ih, bias_hh, peephole
