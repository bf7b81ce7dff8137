"""Exact weight conversion to and from torch.nn.LSTM, torch.nn.GRU and torch.nn.RNN.

Gate blocks are reordered (torch LSTM i, f, g, o → u, f, o, c; torch GRU r, z, n → u, r, c) and
the GRU's update gate is negated: torch writes h = (1 − z) ⊙ n + z ⊙ h<t-1>, the lecture
c<t> = Γ_u ⊙ c~<t> + (1 − Γ_u) ⊙ c<t-1>, so Γ_u = 1 − z = σ(−(z's pre-activation)). Both are
exact in floating point, and both biases are kept as they are, so a round trip gives back
identical tensors. torch.nn.GRU is the reset-after GRU: from_torch gives variant="gru_reset_after".
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import reorder

# ours[k] = sign[k] * torch[block[k]]
_CONVERSIONS = {
    "lstm": (nn.LSTM, (0, 1, 3, 2), (1, 1, 1, 1)),
    "gru_reset_after": (nn.GRU, (1, 0, 2), (-1, 1, 1)),
    "rnn": (nn.RNN, (0,), (1,)),
}

def from_torch(module: nn.Module):
    """A gatedrnn module computing exactly what `module` (torch.nn.LSTM / GRU / RNN) computes."""
    from ..modules.layers import GRU, LSTM, RNN

    kinds = {nn.LSTM: (LSTM, "lstm"), nn.GRU: (GRU, "gru_reset_after"), nn.RNN: (RNN, "rnn")}
    if type(module) not in kinds:
        raise TypeError(f"module: expected a torch.nn.LSTM, torch.nn.GRU or torch.nn.RNN, "
                        f"got {type(module).__name__}")
    cls, variant = kinds[type(module)]
    if getattr(module, "proj_size", 0):
        raise ValueError(f"module: LSTM projections have no lecture equivalent; expected "
                         f"proj_size=0, got proj_size={module.proj_size}")
    if getattr(module, "nonlinearity", "tanh") != "tanh":
        raise ValueError(f"module: the lecture's RNN uses tanh; expected nonlinearity='tanh', "
                         f"got {module.nonlinearity!r}")
    kwargs = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                  dropout=module.dropout, bidirectional=module.bidirectional,
                  device=module.weight_ih_l0.device, dtype=module.weight_ih_l0.dtype)
    if cls is GRU:
        kwargs["variant"] = variant
    ours = cls(module.input_size, module.hidden_size, **kwargs)
    _, block, sign = _CONVERSIONS[variant]
    with torch.no_grad():
        for name, theirs in module.named_parameters():
            getattr(ours, name).copy_(reorder(theirs, block, sign, inverse=False))
    return ours


def to_torch(module) -> nn.Module:
    """The torch.nn.LSTM / GRU / RNN computing exactly what the gatedrnn `module` computes."""
    if module.variant not in _CONVERSIONS:
        raise ValueError(f"variant: torch.nn has only {sorted(_CONVERSIONS)}; "
                         f"a {module.variant!r} module cannot be converted")
    cls, block, sign = _CONVERSIONS[module.variant]
    w = module.weight_ih_l0
    theirs = cls(module.input_size, module.hidden_size, num_layers=module.num_layers,
                 bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                 bidirectional=module.bidirectional, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(reorder(getattr(module, name), block, sign, inverse=True))
    return theirs
