"""Exact weight conversion to and from torch.nn.LSTM, GRU and RNN, and their cells.

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
    "lstm": ((0, 1, 3, 2), (1, 1, 1, 1)),
    "gru_reset_after": ((1, 0, 2), (-1, 1, 1)),
    "rnn": ((0,), (1,)),
    "rnn_relu": ((0,), (1,)),
}

# Parameters that are no stack of gate blocks, the same in both layouts: the LSTM's projection.
UNSTACKED = ("weight_hr",)


def convert(variant: str, name: str, tensor, inverse: bool = False):
    """The parameter `name` of a `variant` module in gatedrnn's layout from torch.nn's
    (inverse: torch.nn's from gatedrnn's)."""
    if name.startswith(UNSTACKED):
        return tensor.detach()
    block, sign = _CONVERSIONS[variant]
    return reorder(tensor, block, sign, inverse=inverse)


def _kinds():
    from .. import modules as M

    return {nn.LSTM: M.LSTM, nn.GRU: M.GRU, nn.RNN: M.RNN,
            nn.LSTMCell: M.LSTMCell, nn.GRUCell: M.GRUCell, nn.RNNCell: M.RNNCell}


def _settings(module: nn.Module, layers: bool) -> dict:
    """The constructor arguments shared by a torch.nn module and its gatedrnn twin."""
    w = module.weight_ih_l0 if layers else module.weight_ih
    # Whether it has biases, read off the biases themselves: torch.nn's cells keep `bias` as
    # given, unchecked (bias="relu" makes a cell with biases).
    bias = getattr(module, "bias_ih_l0" if layers else "bias_ih", None) is not None
    kwargs = dict(bias=bias, device=w.device, dtype=w.dtype)
    if layers:
        kwargs.update(num_layers=module.num_layers, batch_first=module.batch_first,
                      dropout=module.dropout, bidirectional=module.bidirectional)
        if getattr(module, "proj_size", 0):
            kwargs["proj_size"] = module.proj_size
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        kwargs["variant"] = "gru_reset_after"
    if getattr(module, "nonlinearity", None) is not None:
        kwargs["nonlinearity"] = module.nonlinearity
    return kwargs


def from_torch(module: nn.Module):
    """A gatedrnn module computing exactly what `module` computes: a torch.nn.LSTM, GRU or RNN
    (or LSTMCell, GRUCell, RNNCell) becomes gatedrnn's, its weights converted exactly."""
    kinds = _kinds()
    if type(module) not in kinds:
        raise TypeError(f"module: expected a torch.nn LSTM, GRU or RNN layer or cell, "
                        f"got {type(module).__name__}")
    layers = hasattr(module, "num_layers")
    ours = kinds[type(module)](module.input_size, module.hidden_size,
                               **_settings(module, layers))
    # Without gatedrnn's layout mark the state dict is taken for torch.nn's and converted.
    ours.load_state_dict(module.state_dict())
    return ours


def to_torch(module) -> nn.Module:
    """The torch.nn module (LSTM, GRU, RNN or their cells) computing exactly what the gatedrnn
    `module` computes."""
    if module.variant not in _CONVERSIONS:
        raise ValueError(f"variant: torch.nn has only {sorted(_CONVERSIONS)}; "
                         f"a {module.variant!r} module cannot be converted")
    theirs_class = {ours: theirs for theirs, ours in _kinds().items()}[type(module)]
    layers = hasattr(module, "num_layers")
    kwargs = _settings(module, layers)
    kwargs.pop("variant", None)
    theirs = theirs_class(module.input_size, module.hidden_size, **kwargs)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(convert(module.variant, name, getattr(module, name), inverse=True))
    return theirs
