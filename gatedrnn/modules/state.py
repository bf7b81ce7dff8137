"""State dicts that cannot load silently wrong.

gatedrnn keeps torch.nn's parameter names and shapes, but its gate blocks in the lecture's order
(LSTM u, f, o, c; GRU u, r, c with Γ_u = 1 − z): a torch.nn state dict would load "with all
keys matched" and compute something else. So every gatedrnn layer and cell puts a mark in its
state dict, `_extra_state`: a one-element tensor holding the layout's version. A state dict
without the mark is torch.nn's: its weights are converted exactly (as `from_torch` converts)
for the variants torch.nn has, lstm, gru_reset_after and rnn; for the others the load is
refused, naming what to do. And a gatedrnn state dict loaded into torch.nn is refused by torch
itself (an unexpected key).
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUT = 1
KEY = "_extra_state"


class Marked(nn.Module):
    """The mark and the conversion, for RecurrentLayers and the cells."""

    def get_extra_state(self):
        return torch.tensor([LAYOUT])

    def set_extra_state(self, state):
        if not isinstance(state, torch.Tensor) or state.numel() != 1 or int(state) != LAYOUT:
            raise ValueError(f"{KEY}: expected gatedrnn's weight layout {LAYOUT}, got {state!r}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        mine = [prefix + name for name, _ in self.named_parameters(recurse=False)]
        if prefix + KEY not in state_dict and any(k in state_dict for k in mine):
            try:
                state_dict.update(_from_torch_layout(self, state_dict, prefix))
            except ValueError as error:
                error_msgs.append(str(error))
                return
            state_dict[prefix + KEY] = self.get_extra_state()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)


def _from_torch_layout(module, state_dict, prefix) -> dict:
    from ..interop.torch_nn import _CONVERSIONS, convert

    if module.variant not in _CONVERSIONS:
        raise ValueError(
            f"{prefix or 'state_dict'}: no gatedrnn layout mark ({prefix}{KEY}), so it is taken "
            f"for a torch.nn state dict, but torch.nn has no {module.variant!r} "
            f"(only {', '.join(sorted(_CONVERSIONS))}): a torch.nn.GRU's loads into "
            "gatedrnn.GRU(variant='gru_reset_after'), or convert the module itself with "
            "gatedrnn.GRU.from_torch / gatedrnn.LSTM.from_torch")
    return {prefix + name: convert(module.variant, name, state_dict[prefix + name])
            for name, _ in module.named_parameters(recurse=False) if prefix + name in state_dict}


def own(module: nn.Module, tensors: dict) -> dict:
    """`tensors`, a state dict gatedrnn itself wrote before the mark existed, with the marks
    added (its layout is gatedrnn's, whatever the mark's absence would say)."""
    marked = dict(tensors)
    for name, sub in module.named_modules():
        if isinstance(sub, Marked):
            marked.setdefault((name + "." if name else "") + KEY, sub.get_extra_state())
    return marked
