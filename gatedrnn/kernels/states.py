"""State sequences as the backends store them, and the weight gradients computed from them.

A backend keeps the initial state and the state after every step in one (T+1, B, H) tensor S,
in time order: forwards S[0] is the initial state and S[t+1] the state after step t; backwards
(reverse=True) S[T] is the initial state and S[t] the state after step t. Then the states after
the steps and the states they started from are both views of S, and the weight gradients need
no copy of either.
"""

from __future__ import annotations

import torch

from ..cells import Variant


def initial_index(T: int, reverse: bool) -> int:
    return T if reverse else 0


def after(S, reverse: bool):
    """(T, B, H) view: the state after each step t."""
    return S[:-1] if reverse else S[1:]


def before(S, reverse: bool):
    """(T, B, H) view: the state each step t started from."""
    return S[1:] if reverse else S[:-1]


def new_states(s0: torch.Tensor, T: int, reverse: bool) -> torch.Tensor:
    """An uninitialised (T+1, B, H) state sequence holding s0 at its initial index."""
    S = s0.new_empty(T + 1, *s0.shape)
    S[initial_index(T, reverse)] = s0
    return S


def forward_like(variant: Variant, xp, a0, c0, keep_saved: bool, dtypes=None):
    """Uninitialised (SA, SC, saved) with the shapes and dtypes a backend's forward returns:
    what torch.compile and torch.export are told it returns (gatedrnn/through_time.py). By
    default the loop and cpu backends' layout: SA and SC in a0's and c0's dtype, saved
    (T, B, S*H) in xp's; a backend that stores in other dtypes passes its (SA, SC, saved) ones."""
    T, B, _ = xp.shape
    H = a0.shape[-1]
    sa, sc, sv = dtypes or (a0.dtype, c0.dtype if c0 is not None else None, xp.dtype)
    SA = a0.new_empty(T + 1, B, H, dtype=sa)
    SC = a0.new_empty(T + 1, B, H, dtype=sc) if variant.has_cell else None
    saved = xp.new_empty(T, B, variant.saved_blocks * H, dtype=sv) if keep_saved else None
    return SA, SC, saved


def weight_grads(variant: Variant, d_xp, SA, SC, saved, reverse: bool):
    """(d_R, d_b_hh, d_p) from d_xp (T, B, G*H) and the saved forward (see Variant.param_grads)."""
    T, B, _ = d_xp.shape
    flat = lambda z: None if z is None else z.reshape(T * B, -1)  # noqa: E731
    C_prev = before(SC, reverse) if SC is not None else None
    C = after(SC, reverse) if SC is not None else None
    return variant.param_grads(flat(d_xp), flat(before(SA, reverse)), flat(C_prev), flat(C),
                               flat(saved))
