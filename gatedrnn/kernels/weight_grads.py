"""Weight gradients after the time loop, shared by the backends: a few large GEMMs over all steps."""

from __future__ import annotations

import torch

from ..cells import Variant


def previous_states(S, s0, reverse: bool):
    """The state each step starts from, in step order: S<t-1> forwards, S<t+1> backwards."""
    if reverse:
        return torch.cat([S[1:], s0.unsqueeze(0)], 0)
    return torch.cat([s0.unsqueeze(0), S[:-1]], 0)


def weight_grads(variant: Variant, d_xp, A, C, a0, c0, saved, reverse: bool):
    """(d_R, d_b_hh, d_p) from d_xp (T, B, G*H) and the saved forward (see Variant.param_grads)."""
    T, B, H = A.shape
    flat = lambda z: None if z is None else z.reshape(T * B, -1)  # noqa: E731
    C_prev = previous_states(C, c0, reverse) if C is not None else None
    return variant.param_grads(flat(d_xp), flat(previous_states(A, a0, reverse)), flat(C_prev),
                               flat(C), flat(saved))
