"""Multi-layer, optionally bidirectional recurrent layers with torch.nn.GRU / LSTM semantics.

Dimension letters: T time steps, B batch, I input features, H hidden units, L layers,
D directions (2 if bidirectional else 1).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .. import _checks, kernels
from ..cells import VARIANTS, get_variant
from ..functional import capture, lengths_to_mask, recurrence
from . import params as P
from .state import Marked



class RecurrentLayers(Marked):
    """The shared machinery; use gatedrnn.GRU, gatedrnn.LSTM or gatedrnn.RNN.

    Their arguments are torch.nn's, plus `backend` (gatedrnn.kernels.BACKENDS, None: the
    fastest for the device) and `reverse`: every layer runs from the last step (of each
    sequence) to the first, as an ONNX node of direction "reverse" does.
    """

    forget_bias = P.FORGET_BIAS   # the LSTM's initial b_f (see gatedrnn.modules.params)

    def __init__(self, variant: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, backend: str | None = None,
                 device=None, dtype=None, reverse: bool = False, proj_size: int = 0):
        super().__init__()
        self.variant = get_variant(variant).name
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = _checks.boolean("bias", bias)
        self.batch_first = _checks.boolean("batch_first", batch_first)
        self.dropout = _checks.probability("dropout", dropout)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional, ints=True)
        self.reverse = _checks.boolean("reverse", reverse)
        if self.reverse and self.bidirectional:
            raise ValueError("reverse: a bidirectional layer runs both ways already; expected "
                             "reverse=False with bidirectional=True, got reverse=True")
        self.proj_size = _checks.projection(proj_size, self.hidden_size,
                                            get_variant(self.variant).has_cell)
        self.backend = kernels.check(backend)
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout acts between layers, so with num_layers=1 it does nothing "
                          f"(got dropout={dropout})", stacklevel=2)
        v = get_variant(self.variant)
        factory = {"device": device, "dtype": dtype}
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.output_size * self.directions
            for direction in range(self.directions):
                sfx = self._suffix(layer, direction)
                made = P.make(v, layer_input, self.hidden_size, self.bias, factory,
                              self.proj_size)
                for name, p in made.items():
                    self.register_parameter(name + sfx, p)
        self.reset_parameters()

    def __prepare_scriptable__(self):
        raise RuntimeError(f"{type(self).__name__}: torch.jit.script cannot compile gatedrnn's "
                           "layers; use torch.export.export or torch.compile, or "
                           "gatedrnn.export_onnx for ONNX")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """The width of a<t>: proj_size for an LSTM with projections, else hidden_size."""
        return self.proj_size or self.hidden_size

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction == 1 else "")

    def _weights(self, layer: int, direction: int):
        sfx = self._suffix(layer, direction)
        return tuple(getattr(self, name + sfx)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "peephole"))

    def _projection(self, layer: int, direction: int):
        """W_hr (P, H) of an LSTM with projections, else None."""
        return getattr(self, "weight_hr" + self._suffix(layer, direction), None)

    def reset_parameters(self) -> None:
        """Initialise every parameter as documented in gatedrnn.modules.params."""
        v = get_variant(self.variant)
        for layer in range(self.num_layers):
            for direction in range(self.directions):
                P.reset(v, *self._weights(layer, direction), forget_bias=self.forget_bias,
                        weight_hr=self._projection(layer, direction))

    def gates(self, layer: int = 0, direction: int = 0) -> dict:
        """Each gate's (W, b) in the lecture's layout: W is (H, H+I) acting on [a<t-1>, x<t>].

        Also "p_u", "p_f", "p_o" (peephole vectors) for lstm_peephole and "b_cc" (recurrent
        candidate bias) for gru_reset_after. Detached tensors that share the parameters' values.
        """
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer: expected 0 <= layer < {self.num_layers}, got {layer}")
        if not 0 <= direction < self.directions:
            raise ValueError(f"direction: expected 0 <= direction < {self.directions}, "
                             f"got {direction}")
        gates = P.lecture_gates(get_variant(self.variant), *self._weights(layer, direction))
        if self.proj_size:
            gates["W_hr"] = self._projection(layer, direction).detach()
        return gates

    def _state_shape(self, batch: int | None, width: int | None = None) -> tuple[int, ...]:
        lead = (self.num_layers * self.directions,)
        return lead + ((batch,) if batch is not None else ()) + (width or self.output_size,)

    def _initial_states(self, hx, x: Tensor, batched: bool):
        """hx → (a0, c0) stacked (L*D, B, H); zeros where not given; c0 None without a cell."""
        B = x.shape[1]
        has_cell = get_variant(self.variant).has_cell
        shape = self._state_shape(B if batched else None)
        cell_shape = self._state_shape(B if batched else None, self.hidden_size)
        if hx is None:
            return (x.new_zeros(self._state_shape(B)),
                    x.new_zeros(self._state_shape(B, self.hidden_size)) if has_cell else None)
        if has_cell:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a tuple (a0, c0) for the LSTM, got "
                                f"{type(hx).__name__}")
            a0 = _checks.state("hx[0] (a0)", hx[0], shape, x)
            c0 = _checks.state("hx[1] (c0)", hx[1], cell_shape, x)
        else:
            a0, c0 = _checks.state("hx", hx, shape, x), None
        if not batched:
            a0, c0 = a0.unsqueeze(1), (c0.unsqueeze(1) if c0 is not None else None)
        return a0, c0

    def forward(self, input, hx=None, lengths=None):
        """Run all layers over the input; returns (output, h_n) or, for the LSTM, (output, (a_n, c_n)).

        input: (T, B, I), (B, T, I) if batch_first, (T, I) unbatched, or a PackedSequence.
        hx: initial state(s) (L*D, B, H), zeros if None. lengths: per-sequence lengths (any
        order, 1..T): outputs past a sequence's end are zero and its final state is the one at
        its last step. output is (T, B, D*H) (or packed like the input); h_n, c_n (L*D, B, H).
        """
        return self._run(input, hx, lengths, recurrence)

    def capture(self, input, hx=None, lengths=None):
        """forward() without gradients, also returning what every gate did at every step.

        Returns (output, state, gates): gates[layer][direction] is a dict of (T, B, H) tensors
        named as in the lecture: gamma_u, gamma_r (GRU) or gamma_f, gamma_o (LSTM), c_tilde,
        c (LSTM cell), a (output); time and batch as in the input (batch_first respected).
        The default forward pays nothing for this.

        Example:
            >>> import torch, gatedrnn
            >>> lstm = gatedrnn.LSTM(3, 4, num_layers=2)
            >>> out, (a_n, c_n), gates = lstm.capture(torch.randn(6, 2, 3))
            >>> sorted(gates[1][0])
            ['a', 'c', 'c_tilde', 'gamma_f', 'gamma_o', 'gamma_u']
        """
        recorded = []

        def run_and_record(*args, **kwargs):
            outputs, gates = capture(*args, **kwargs)
            recorded.append(gates)
            return outputs

        with torch.no_grad():
            out, state = self._run(input, hx, lengths, run_and_record)
        gates = [recorded[layer * self.directions: (layer + 1) * self.directions]
                 for layer in range(self.num_layers)]
        if self.batch_first:
            gates = [[{k: g.transpose(0, 1) for k, g in d.items()} for d in layer]
                     for layer in gates]
        return out, state, gates

    def _run(self, input, hx, lengths, run_layer):
        W0 = self.weight_ih_l0
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths: a PackedSequence carries its own lengths; pass one or "
                                 "the other, got both")
            x, lengths = pad_packed_sequence(input)
            _checks.sequence_input(x, self.input_size, W0)
            batched = True
        else:
            x = _checks.sequence_input(input, self.input_size, W0)
            batched = x.dim() == 3
            x = x.transpose(0, 1) if (batched and self.batch_first) else x
            x = x if batched else x.unsqueeze(1)
        T, B = x.shape[:2]
        _checks.nonempty(T, B)
        mask = None
        if lengths is not None:
            if not batched:
                raise ValueError("lengths: expected a batched (3-dimensional) input, got an "
                                 "unbatched one")
            lengths = _checks.lengths(lengths, B, T, x.device)
            # Lengths all of T need no mask; where they cannot be read, mask always.
            if _checks.values_unreadable() or int(lengths.min()) < T:
                mask = lengths_to_mask(lengths, T)
        a0, c0 = self._initial_states(hx, x, batched)

        a_n, c_n = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                i = layer * self.directions + direction
                w_ih, w_hh, b_ih, b_hh, peephole = self._weights(layer, direction)
                reverse = (direction == 1) != self.reverse
                run = run_layer
                if self.proj_size:
                    run = _projected(run_layer, self._projection(layer, direction), lengths,
                                     reverse)
                result = run(layer_input, w_ih, w_hh, b_ih, b_hh, a0[i],
                             None if c0 is None else c0[i], variant=self.variant,
                             peephole=peephole, mask=mask, reverse=reverse,
                             backend=self.backend)
                outputs.append(result[0])
                a_n.append(result[1])
                if c0 is not None:
                    c_n.append(result[2])
            layer_input = torch.cat(outputs, -1) if len(outputs) > 1 else outputs[0]
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)

        out, h = layer_input, torch.stack(a_n)
        if not torch.compiler.is_compiling() and torch.is_grad_enabled() and out._is_view():
            # The last layer's states themselves, which its backward reads: a copy, so that the
            # caller may change it in place (out += residual), as torch.nn's output allows.
            # (Traced, the operator returns a copy already.)
            out = out.clone()
        c = torch.stack(c_n) if c0 is not None else None
        if packed:
            out = _repack(out, lengths, input)
        elif not batched:
            out, h = out.squeeze(1), h.squeeze(1)
            c = c.squeeze(1) if c is not None else None
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, ((h, c) if c is not None else h)

    @classmethod
    def from_torch(cls, module: nn.Module):
        """The equivalent gatedrnn module of a torch.nn.LSTM / GRU / RNN, weights converted exactly.

        torch.nn.GRU gives variant="gru_reset_after" (torch's GRU applies the reset gate after
        the recurrent product), with Γ_u = 1 − z.
        """
        return _converted(cls, module)

    def to_torch(self) -> nn.Module:
        """The torch.nn module computing exactly this one (lstm, gru_reset_after, rnn and
        rnn_relu only)."""
        from ..interop.torch_nn import to_torch

        return to_torch(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, variant={self.variant!r}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False), ("reverse", False),
                              ("proj_size", 0), ("backend", None)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s


def _converted(cls, module: nn.Module):
    from ..interop.torch_nn import from_torch

    ours = from_torch(module)
    if not isinstance(ours, cls):
        raise TypeError(f"module: {cls.__name__}.from_torch expected a "
                        f"torch.nn.{cls.__name__}, got {type(module).__name__}")
    return ours


def _projected(run_layer, W_hr: Tensor, lengths, reverse: bool):
    """`run_layer` for an LSTM with projections (LSTMP): a<t> = W_hr (Γ_o ⊙ tanh(c<t>)) feeds
    the next step through R (G*H, P).

    Since R a<t-1> = (R W_hr) ã<t-1>, with ã the unprojected Γ_o ⊙ tanh(c), the layer runs as a
    plain LSTM with recurrent weights R W_hr (G*H, H) on every backend, its outputs projected
    after; the given a<0> enters through the first step's input projection (an input column
    block R, fed a<0> at each sequence's first step and 0 elsewhere), since no ã<0> need
    exist. Exact up to rounding, and every gradient is autograd's; each step multiplies by a
    (G*H, H) matrix where (G*H, P) would do.
    """
    def run(x, w_ih, w_hh, b_ih, b_hh, a0, c0, **kwargs):
        T, B = x.shape[:2]
        # a<0> enters through the input columns; a zero one that takes no gradient need not.
        if a0.requires_grad or _checks.values_unreadable() or bool(a0.any()):
            first = torch.zeros(T, B, a0.shape[-1], dtype=x.dtype, device=x.device)
            rows = torch.arange(B, device=x.device)
            if not reverse:
                steps = torch.zeros_like(rows)
            elif lengths is None:
                steps = torch.full_like(rows, T - 1)
            else:
                steps = lengths.to(x.device) - 1
            first = first.index_put((steps, rows), a0)
            x, w_ih = torch.cat([x, first], -1), torch.cat([w_ih, w_hh], 1)
        out, a_n, c_n = run_layer(x, w_ih, w_hh @ W_hr, b_ih, b_hh, a0.new_zeros(B, W_hr.shape[1]),
                                  c0, **kwargs)
        return out @ W_hr.t(), a_n @ W_hr.t(), c_n
    return run


def _repack(out: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack `out` (T, B, *) with exactly the batch order and sizes of the input `like`."""
    order = like.sorted_indices
    if order is not None:
        out, lengths = out.index_select(1, order), lengths.index_select(0, order.to(lengths.device))
    data = pack_padded_sequence(out, lengths.cpu(), enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class GRU(RecurrentLayers):
    """Gated recurrent unit layers: the lecture's full GRU by default.

    variant="gru":  c~<t> = tanh(W_c[Γ_r ⊙ c<t-1>, x<t>] + b_c)   (reset before the product)
                    Γ_u = σ(W_u[c<t-1>, x<t>] + b_u),  Γ_r = σ(W_r[c<t-1>, x<t>] + b_r)
                    c<t> = Γ_u ⊙ c~<t> + (1 − Γ_u) ⊙ c<t-1>,  a<t> = c<t>
    variant="gru_simple": no Γ_r (the lecture's first, simplified GRU).
    variant="gru_reset_after": c~<t> = tanh(W_cx x<t> + b_c + Γ_r ⊙ (W_cc c<t-1> + b_cc)),
                    the GRU of cuDNN and torch.nn.GRU (GRU.from_torch gives this one).

    Example:
        >>> import torch, gatedrnn
        >>> gru = gatedrnn.GRU(input_size=8, hidden_size=16, num_layers=2)
        >>> out, c_n = gru(torch.randn(5, 3, 8))          # (T, B, I)
        >>> tuple(out.shape), tuple(c_n.shape)
        ((5, 3, 16), (2, 3, 16))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 variant: str = "gru", peephole: bool = False, backend: str | None = None,
                 device=None, dtype=None, reverse: bool = False):
        _check_gru_variant(variant, peephole)
        super().__init__(variant, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, backend, device, dtype, reverse)


class LSTM(RecurrentLayers):
    """Long short-term memory layers, as in the lecture; peephole=True adds Gers' peepholes.

    c~<t> = tanh(W_c[a<t-1>, x<t>] + b_c)
    Γ_u = σ(W_u[a<t-1>, x<t>] + b_u),  Γ_f = σ(W_f[...] + b_f),  Γ_o = σ(W_o[...] + b_o)
    c<t> = Γ_u ⊙ c~<t> + Γ_f ⊙ c<t-1>,  a<t> = Γ_o ⊙ tanh(c<t>)
    peephole=True: Γ_u and Γ_f also add p_u ⊙ c<t-1>, p_f ⊙ c<t-1>; Γ_o adds p_o ⊙ c<t>.
    proj_size=P: a<t> = W_hr (Γ_o ⊙ tanh(c<t>)), P wide (LSTMP, as torch.nn.LSTM's proj_size).
    forget_bias: the initial b_f (1: keep the memory by default; larger for longer memories).

    Example:
        >>> import torch, gatedrnn
        >>> lstm = gatedrnn.LSTM(8, 16, batch_first=True, peephole=True)
        >>> out, (a_n, c_n) = lstm(torch.randn(3, 5, 8))   # (B, T, I)
        >>> tuple(out.shape), tuple(a_n.shape)
        ((3, 5, 16), (1, 3, 16))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 peephole: bool = False, backend: str | None = None, device=None, dtype=None,
                 forget_bias: float = P.FORGET_BIAS, reverse: bool = False, proj_size: int = 0):
        variant = "lstm_peephole" if peephole else "lstm"
        self.forget_bias = float(forget_bias)
        super().__init__(variant, input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, backend, device, dtype, reverse, proj_size)

    @property
    def peephole(self) -> bool:
        return bool(get_variant(self.variant).peepholes)


class RNN(RecurrentLayers):
    """The baseline: a<t> = tanh(W_a[a<t-1>, x<t>] + b_a), or relu for nonlinearity="relu".

    Example:
        >>> import torch, gatedrnn
        >>> rnn = gatedrnn.RNN(4, 8, nonlinearity="relu")
        >>> rnn.variant
        'rnn_relu'
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, backend: str | None = None,
                 device=None, dtype=None, reverse: bool = False):
        super().__init__(rnn_variant(nonlinearity), input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, backend, device, dtype, reverse)

    @property
    def nonlinearity(self) -> str:
        return get_variant(self.variant).activation


def rnn_variant(nonlinearity) -> str:
    """The RNN variant of torch.nn.RNN's `nonlinearity` ("tanh" or "relu")."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return "rnn" if nonlinearity == "tanh" else "rnn_relu"


def for_variant(variant: str, input_size: int, hidden_size: int, **kwargs) -> RecurrentLayers:
    """The layers that run `variant`: gatedrnn.GRU, LSTM or RNN, built with `kwargs`.

        >>> for_variant("lstm_peephole", 3, 4, num_layers=2)
        LSTM(3, 4, variant='lstm_peephole', num_layers=2)
    """
    v = get_variant(variant)
    if v.family == "lstm":
        return LSTM(input_size, hidden_size, peephole=bool(v.peepholes), **kwargs)
    _checks.projection(kwargs.pop("proj_size", 0), hidden_size, has_cell=False)
    if v.family == "rnn":
        return RNN(input_size, hidden_size, nonlinearity=v.activation, **kwargs)
    return GRU(input_size, hidden_size, variant=v.name, **kwargs)


def _check_gru_variant(variant, peephole) -> None:
    if peephole:
        raise ValueError(f"peephole: only the LSTM has peephole connections "
                         f"(gatedrnn.LSTM(..., peephole=True)); a GRU got peephole={peephole!r}")
    if get_variant(variant).family != "gru":   # unknown names get the full list of variants
        grus = sorted((name for name, v in VARIANTS.items() if v.family == "gru"),
                      key=lambda name: name != "gru")   # the lecture's first
        raise ValueError(f"variant: a GRU takes one of {grus}, got {variant!r}")
