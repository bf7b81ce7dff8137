"""Reordering and sign-flipping gate blocks between stacked layouts (exact in floating point)."""

from __future__ import annotations

import torch


def reorder(w: torch.Tensor, block, sign, inverse: bool = False) -> torch.Tensor:
    """ours[k] = sign[k] * theirs[block[k]] along dim 0 (inverse=True: theirs from ours)."""
    parts = w.detach().chunk(len(block), dim=0)
    if inverse:
        order = sorted(range(len(block)), key=lambda k: block[k])
        return torch.cat([sign[k] * parts[k] for k in order], 0)
    return torch.cat([s * parts[b] for b, s in zip(block, sign)], 0)
