"""Single-step cells: one call advances the state by one time step (for hand-written loops,
sampling and teaching). They run the same `Variant.step` as the "loop" backend, under autograd.

Dimension letters: B batch, I input features, H hidden units.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks, kernels
from ..cells import get_variant
from ..functional import split_bias
from . import params as P
from .state import Marked
from .layers import _check_gru_variant, _converted, rnn_variant


class _Cell(Marked):
    forget_bias = P.FORGET_BIAS   # the LSTM's initial b_f

    def __init__(self, variant: str, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.variant = get_variant(variant).name
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.bias = _checks.boolean("bias", bias)
        made = P.make(get_variant(self.variant), self.input_size, self.hidden_size, self.bias,
                      {"device": device, "dtype": dtype})
        for name, p in made.items():
            self.register_parameter(name, p)
        self.reset_parameters()

    def _weights(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.peephole

    def reset_parameters(self) -> None:
        P.reset(get_variant(self.variant), *self._weights(), forget_bias=self.forget_bias)

    def gates(self) -> dict:
        """Each gate's (W, b) in the lecture's layout; see RecurrentLayers.gates."""
        return P.lecture_gates(get_variant(self.variant), *self._weights())

    def _step(self, x_t, state):
        """x_t (B, I) or (I,); state None or a tuple of (B, H) / (H,) tensors → new state tuple."""
        v = get_variant(self.variant)
        _checks.tensor("input", x_t)
        if x_t.dim() not in (1, 2) or x_t.shape[-1] != self.input_size:
            wrong = ValueError if x_t.dim() not in (1, 2) else _checks.SizeError
            raise wrong(f"input: expected shape (B, {self.input_size}) or "
                        f"({self.input_size},), got {tuple(x_t.shape)}")
        _checks.same_kind("input", x_t, self.weight_ih)
        batched = x_t.dim() == 2
        x_t = x_t if batched else x_t.unsqueeze(0)
        shape = (x_t.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        if state is None:
            state = (x_t.new_zeros(x_t.shape[0], self.hidden_size),) * (2 if v.has_cell else 1)
        else:
            names = ("hx[0] (a_prev)", "hx[1] (c_prev)") if v.has_cell else ("hx",)
            state = tuple(_checks.state(n, s, shape, x_t, "batch, hidden_size")
                          for n, s in zip(names, state))
            state = state if batched else tuple(s.unsqueeze(0) for s in state)
        w_ih, w_hh, b_ih, b_hh, peephole = self._weights()
        bias_x, b_cc = split_bias(v, b_ih, b_hh, self.hidden_size)
        xp = F.linear(x_t, w_ih, bias_x)
        step = v.step
        if _compiled(v, x_t, state, (w_ih, w_hh, b_ih, b_hh, peephole)):
            step = functools.partial(_compiled_step, v)
        a, c, *_ = step(xp, w_hh, state[0], state[1] if v.has_cell else None, b_cc, peephole)
        new = (a, c) if v.has_cell else (a,)
        return new if batched else tuple(s.squeeze(0) for s in new)

    @classmethod
    def from_torch(cls, module: nn.Module):
        """The equivalent gatedrnn cell of a torch.nn.LSTMCell / GRUCell / RNNCell, converted
        exactly (a GRUCell gives variant="gru_reset_after")."""
        return _converted(cls, module)

    def to_torch(self) -> nn.Module:
        """The torch.nn cell computing exactly this one (lstm, gru_reset_after, rnn, rnn_relu)."""
        from ..interop.torch_nn import to_torch

        return to_torch(self)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, variant={self.variant!r}, bias={self.bias}"


def _compiled(v, x_t, state, weights) -> bool:
    """Can this step run in one call of the compiled CPU kernel? Where no gradient is wanted
    (sampling, streaming) and the kernel runs the variant and dtype. (Cheap checks first: at
    batch 1 a step costs tens of µs, and these run at every one.)"""
    if x_t.device.type != "cpu" or x_t.dtype not in kernels.CPU_DTYPES:
        return False
    if _checks.needs_grad(x_t, *state, *weights) or _checks.values_unreadable():
        return False
    # A trace would record the kernel's result as a constant; tensor subclasses want their ops.
    if torch.jit.is_tracing() or torch.overrides.has_torch_function((x_t, *state)):
        return False
    if any(s.dtype != x_t.dtype for s in state) or kernels.kernel_id(v) is None:
        return False
    return _cpu().available()


@functools.cache
def _cpu():
    from ..kernels import cpu

    return cpu


def _compiled_step(v, xp, R, a, c, b_cc, p):
    return _cpu().step(v, xp, R, b_cc, p, a.contiguous(), None if c is None else c.contiguous())


class GRUCell(_Cell):
    """One step of a GRU variant: c<t> = cell(x<t>, c<t-1>) (a<t> = c<t>).

    Example:
        >>> import torch, gatedrnn
        >>> cell = gatedrnn.GRUCell(4, 8)
        >>> c = cell(torch.randn(2, 4))             # c<0> = 0
        >>> c = cell(torch.randn(2, 4), c)
        >>> tuple(c.shape)
        (2, 8)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 variant: str = "gru", peephole: bool = False, device=None, dtype=None):
        _check_gru_variant(variant, peephole)
        super().__init__(variant, input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, None if hx is None else (_checks.tensor("hx", hx),))[0]


class LSTMCell(_Cell):
    """One step of the LSTM: a<t>, c<t> = cell(x<t>, (a<t-1>, c<t-1>)).

    Example:
        >>> import torch, gatedrnn
        >>> cell = gatedrnn.LSTMCell(4, 8, peephole=True)
        >>> a, c = cell(torch.randn(2, 4))
        >>> a, c = cell(torch.randn(2, 4), (a, c))
        >>> tuple(a.shape), tuple(c.shape)
        ((2, 8), (2, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 peephole: bool = False, device=None, dtype=None,
                 forget_bias: float = P.FORGET_BIAS):
        self.forget_bias = float(forget_bias)
        super().__init__("lstm_peephole" if peephole else "lstm", input_size, hidden_size, bias,
                         device, dtype)

    def forward(self, input: Tensor, hx=None) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"hx: expected a tuple (a_prev, c_prev), got {type(hx).__name__}")
        return self._step(input, hx)


class RNNCell(_Cell):
    """One step of the baseline: a<t> = tanh(W_a[a<t-1>, x<t>] + b_a) (relu if asked)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        super().__init__(rnn_variant(nonlinearity), input_size, hidden_size, bias, device, dtype)

    @property
    def nonlinearity(self) -> str:
        return get_variant(self.variant).activation

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._step(input, None if hx is None else (_checks.tensor("hx", hx),))[0]
