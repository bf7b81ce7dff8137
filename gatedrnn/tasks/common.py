"""Pieces the sequence tasks share: a recurrent encoder with a linear read-out."""

from __future__ import annotations

import torch
from torch import nn

from ..cells import get_variant
from ..modules.layers import for_variant


def on_device(batch: tuple, device: torch.device) -> tuple:
    """A batch (a tuple of tensors, made on the CPU) on `device`, where the model is."""
    return tuple(t.to(device) for t in batch)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def recurrent_layers(variant: str, input_size: int, hidden_size: int, num_layers: int,
                     dropout: float = 0.0, bidirectional: bool = False,
                     forget_bias: float = 1.0, **kwargs):
    """A task's layer stack: dropout only between layers, forget_bias for the LSTM variants."""
    if get_variant(variant).has_cell:
        kwargs["forget_bias"] = forget_bias
    return for_variant(variant, input_size, hidden_size, num_layers=num_layers,
                       dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional,
                       **kwargs)


class Readout(nn.Module):
    """Recurrent layers, then a linear layer on every output (per_step) or on the final state."""

    def __init__(self, rnn, outputs: int, per_step: bool):
        super().__init__()
        self.rnn, self.per_step = rnn, per_step
        self.head = nn.Linear(rnn.hidden_size * rnn.directions, outputs)

    def forward(self, x, lengths=None):
        out, state = self.rnn(x, lengths=lengths)
        if self.per_step:
            return self.head(out)
        a_n = state[0] if isinstance(state, tuple) else state
        last_layer = a_n[-self.rnn.directions:]                   # (D, B, H)
        return self.head(last_layer.permute(1, 0, 2).reshape(a_n.shape[1], -1))
