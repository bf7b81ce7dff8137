"""The functional core: one layer, one direction of any cell variant, on any backend.

    xp = W_ih x<t> + b            one large matrix product for all time steps (ordinary autograd)
    A, C = recurrence over time   a backend's forward; its hand-derived backward through time

Dimension letters: T time steps, B batch, I input features, H hidden units, G gate blocks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import kernels, through_time
from ._checks import autocasting, needs_grad, not_jit_traced
from .kernels import onednn, states
from .cells import Variant, get_variant


def split_bias(variant: Variant, bias_ih: Tensor | None, bias_hh: Tensor | None, H: int):
    """(bias of the input projection, b_cc inside the reset-after candidate or None)."""
    if bias_ih is None:
        return None, None
    if not variant.recurrent_bias:
        return bias_ih + bias_hh, None
    return bias_ih + torch.cat([bias_hh[: 2 * H], bias_hh.new_zeros(H)]), bias_hh[2 * H:]


def _project(v: Variant, x, weight_ih, weight_hh, bias_ih, bias_hh):
    """(xp, b_hh): the input projection of all steps at once, and the reset-after b_cc."""
    bias_x, b_hh = split_bias(v, bias_ih, bias_hh, weight_hh.shape[1])
    return onednn.linear(x, weight_ih, bias_x), b_hh


def _unpadded(x: Tensor, mask: Tensor | None) -> Tensor:
    """x with zeros past each sequence's end: the steps there are skipped, but the weight
    gradient multiplies their inputs by a zero gradient, and 0 · NaN is NaN."""
    return x if mask is None else torch.where(mask, x, x.new_zeros(()))


def _autocast_dtype(device_type: str, backend: str, weights: torch.dtype) -> torch.dtype | None:
    """Under torch.autocast, the dtype the recurrence runs in (None outside it, and for float64
    weights, which autocast leaves alone): the autocast dtype, as torch.nn's cuDNN RNNs run
    under autocast, so that bfloat16 takes the triton backend's tensor-core path with its
    float32 state; float32 for the compiled CPU kernel, which has no 16-bit path (the input
    projection before it is autocast all the same)."""
    if weights == torch.float64 or not autocasting(device_type):
        return None
    dtype = torch.get_autocast_dtype(device_type)
    return dtype if backend != "cpu" or dtype in kernels.CPU_DTYPES else torch.float32


def _cast(tensors, dtype: torch.dtype | None):
    return [t if t is None or dtype is None else t.to(dtype) for t in tensors]


def _backend_arguments(v: Variant, xp, weight_hh, b_hh, a0, c0, peephole, backend: str | None):
    """(the backend's name, [xp, R, b_hh, p, a0, c0]): every tensor the backend takes, in the
    dtype it runs in (under autocast: _autocast_dtype's)."""
    # The weights' dtype picks the backend: under torch.autocast x may be 16-bit in a float32
    # model, and the model still runs (the compiled CPU kernel in float32: _autocast_dtype).
    name = kernels.for_variant(kernels.resolve(backend, xp.device, weight_hh.dtype), v)
    args = (xp, weight_hh, b_hh, peephole if v.peepholes else None, a0,
            c0 if v.has_cell else None)
    return name, _cast(args, _autocast_dtype(xp.device.type, name, weight_hh.dtype))


def recurrence(x: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
               bias_hh: Tensor | None, a0: Tensor, c0: Tensor | None = None, *,
               variant: str | Variant, peephole: Tensor | None = None,
               mask: Tensor | None = None, reverse: bool = False, backend: str | None = None):
    """Run one layer in one direction.

    x (T, B, I); weight_ih (G*H, I); weight_hh (G*H, H); bias_ih, bias_hh (G*H) or both None;
    a0 (B, H) the initial state; c0 (B, H) the LSTM's initial cell, else None; peephole (3, H)
    for lstm_peephole; mask (T, B, 1) bool, True inside each sequence (None: all steps valid);
    reverse runs from the last step to the first. Returns (out (T, B, H), a_n) or, for the LSTM,
    (out, a_n, c_n); out is zero past each sequence's end, a_n / c_n its state at its last step.
    Inputs are not checked here (the modules do that).
    """
    not_jit_traced("gatedrnn.recurrence")
    v = get_variant(variant)
    xp, b_hh = _project(v, _unpadded(x, mask), weight_ih, weight_hh, bias_ih, bias_hh)
    name, args = _backend_arguments(v, xp, weight_hh, b_hh, a0, c0, peephole, backend)
    # Inference needs no saved gates: the kernels then keep one step's worth, not T.
    keep_saved = needs_grad(*args)
    return through_time.run(v, name, *args, mask, reverse, keep_saved)


def argument_shapes(variant: str | Variant, T: int, B: int, I: int, H: int) -> dict:
    """The shape of each tensor argument of `recurrence`, by name, for `variant` (c0 and
    peephole included whether the variant reads them or not): what tests and benchmarks fill
    with random values."""
    G = get_variant(variant).num_gates
    return {"x": (T, B, I), "weight_ih": (G * H, I), "weight_hh": (G * H, H),
            "bias_ih": (G * H,), "bias_hh": (G * H,), "a0": (B, H), "c0": (B, H),
            "peephole": (3, H)}


def lengths_to_mask(lengths: Tensor, T: int) -> Tensor:
    """(T, B, 1) bool: True where t < lengths[b]."""
    steps = torch.arange(T, device=lengths.device)
    return (steps[:, None] < lengths[None, :]).unsqueeze(-1)


@torch.no_grad()
def capture(x: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
            bias_hh: Tensor | None, a0: Tensor, c0: Tensor | None = None, *,
            variant: str | Variant, peephole: Tensor | None = None,
            mask: Tensor | None = None, reverse: bool = False, backend: str | None = None):
    """recurrence() without gradients, returning every step's gates as well.

    Returns (outputs, gates): outputs as recurrence() returns them; gates a dict of (T, B, H)
    tensors in the lecture's names: gamma_u, gamma_r / gamma_f, gamma_o, c_tilde (and
    recurrent_c for the reset-after GRU), c for the LSTM's cell and a for the output. Past a
    sequence's end the gates are zero and c, a hold the final state (as the backends carry it).
    """
    v = get_variant(variant)
    H = weight_hh.shape[1]
    xp, b_hh = _project(v, _unpadded(x, mask), weight_ih, weight_hh, bias_ih, bias_hh)
    name, args = _backend_arguments(v, xp, weight_hh, b_hh, a0, c0, peephole, backend)
    # The reference backend saves its inputs, not the gates: the loop backend stands in.
    impl = kernels.load("loop" if name == "reference" else name)
    with through_time.autocast_off(x.device.type):
        SA, SC, saved = impl.forward(v, *args, mask, reverse, True)
    gates = dict(zip(v.saved_names, saved.split(H, dim=-1)))
    if mask is not None:
        gates = {k: torch.where(mask, g, g.new_zeros(())) for k, g in gates.items()}
    if v.has_cell:
        gates["c"] = states.after(SC, reverse)
    gates["a"] = states.after(SA, reverse)
    return through_time.outputs(v, SA, SC, mask, reverse), gates
