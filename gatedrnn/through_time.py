"""The recurrence over time as autograd sees it: a backend's forward and its backward through
time, behind one of two doors that run the same code.

- Eager: an autograd Function, the cheapest per call (and, where no backward can follow, not
  even that: run() calls the backend). The operator's dispatch costs a small step about three
  times its time (benchmarks/dispatch_cost.py): a cost every step of a streamed sequence
  would pay.
  torch.func's transforms take it too (in the form they need, below; vmap: vmap_rules.py).
- Traced (torch.compile, torch.export): two custom operators, gatedrnn::through_time and
  gatedrnn::through_time_backward. A tracer takes each as one node, from shapes alone (their
  fake implementations), so a compiled model has no graph break in it (fullgraph=True works),
  an exported one runs the backend's kernels, and the time steps stay a dynamic dimension.

An operator's outputs may not alias its inputs or each other: the eager door returns `out` as a
view of the states where it can; the operator returns a copy.

Differentiable once, through either door: a second derivative (a gradient penalty, a Hessian)
is refused by name, as the backward through time has no backward of its own.
"""

import contextlib
from typing import Optional

import torch
from torch import Tensor

from . import kernels, vmap_rules
from ._checks import autocasting, functorch_active
from .cells import Variant, get_variant
from .kernels import states


def autocast_off(device_type: str):
    """Inside torch.autocast, leave it for the backends' own products: they run in the dtypes
    they are given (functional._autocast_dtype chose them), and the compiled CPU kernel's calls
    into ATen would otherwise be autocast as well."""
    if autocasting(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def outputs(v: Variant, SA, SC, mask, reverse: bool):
    """(out, a_n) or (out, a_n, c_n) from the state sequences: out is zero past each
    sequence's end; masked steps carry the state, so the last step holds each final state."""
    last = 0 if reverse else -1
    A = states.after(SA, reverse)
    out = A if mask is None else A * mask
    if v.has_cell:
        return out, A[last], states.after(SC, reverse)[last]
    return out, A[last]


def _forward(v: Variant, backend: str, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved):
    """(out, a_n, c_n or None) in xp's dtype, then what the backward takes (SA, SC, saved)."""
    with autocast_off(xp.device.type):
        SA, SC, saved = kernels.load(backend).forward(v, xp, R, b_hh, p, a0, c0, mask, reverse,
                                                      keep_saved)
        out, *finals = outputs(v, SA, SC, mask, reverse)
        # A backend may keep a wider state than xp's dtype (float32 for bfloat16 inputs).
        a_n, c_n = (*(f.to(xp.dtype, copy=True) for f in finals), None)[:2]
    return out.to(xp.dtype), a_n, c_n, SA, SC, saved


def _backward(v: Variant, backend: str, reverse: bool, d_out, d_a_n, d_c_n, R, b_hh, p, SA, SC,
              saved, mask):
    """(d_xp, d_R, d_b_hh, d_p, d_a0, d_c0), from a gradient for every output (_given)."""
    d_A = d_out if mask is None else d_out * mask
    with autocast_off(R.device.type):   # a backward called inside torch.autocast
        return kernels.load(backend).backward(v, d_A, d_a_n, d_c_n, R, b_hh, p, SA, SC, saved,
                                              mask, reverse)


def _save(ctx, inputs, output):
    """What both doors' backwards read, from the inputs (xp, R, b_hh, p, a0, c0, mask, variant,
    backend, reverse, keep_saved) and the outputs (out, a_n, c_n, SA, SC, saved)."""
    xp, R, b_hh, p, a0, c0, mask, variant, backend, reverse, _ = inputs
    SA, SC, saved = output[3:]
    ctx.mark_non_differentiable(*(t for t in (SA, SC, saved) if t is not None))
    ctx.set_materialize_grads(False)   # no zeros for them (nor for an unused output)
    ctx.save_for_backward(R, b_hh, p, a0, c0, SA, SC, saved, mask)
    ctx.zeros = dict(dtype=xp.dtype, device=xp.device)   # what an unused output's gradient is
    ctx.variant, ctx.backend, ctx.reverse = get_variant(variant), backend, reverse


def _given(ctx, d_out, d_a_n, d_c_n):
    """The output gradients a backward got, zeros (in xp's dtype) where it got none: an output
    no gradient reaches (set_materialize_grads(False) leaves it None). d_c_n None without a
    cell."""
    SA = ctx.saved_tensors[5]
    T, B, H = SA.shape[0] - 1, SA.shape[1], SA.shape[2]
    zeros = lambda *shape: torch.zeros(*shape, **ctx.zeros)  # noqa: E731
    d_c_n = (zeros(B, H) if d_c_n is None else d_c_n) if ctx.variant.has_cell else None
    return (zeros(T, B, H) if d_out is None else d_out,
            zeros(B, H) if d_a_n is None else d_a_n, d_c_n)


# The eager door is an autograd Function in two forms. The classic one (forward(ctx, ...)) is
# the cheap one: the form torch.func's transforms need (forward without ctx, setup_context)
# makes Function.apply bind its arguments to forward's signature with inspect, every call
# (benchmarks/dispatch_cost.py times it). So the second form
# runs only where a transform is active (torch.func.grad, vjp), asked as Function.apply asks.

def _recurrence(*inputs):
    xp, R, b_hh, p, a0, c0, mask, variant, backend, reverse, keep_saved = inputs
    *outs, saved = _forward(variant, backend, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved)
    # The reference backend saves xp itself; an input returned to be saved must be a view.
    return *outs, (xp.view_as(xp) if saved is xp else saved)


def _recurrence_backward(ctx, d_out, d_a_n, d_c_n, *_):
    R, b_hh, p, _, _, SA, SC, saved, mask = ctx.saved_tensors
    inputs = (ctx.variant, ctx.backend, ctx.reverse, *_given(ctx, d_out, d_a_n, d_c_n), R, b_hh,
              p, SA, SC, saved, mask)
    # A backward that records no graph (no create_graph, no transform) needs no Function.
    recorded = torch.is_grad_enabled() or functorch_active()
    d_xp, d_R, d_b_hh, d_p, d_a0, d_c0 = (_door(_BackwardThroughTime).apply(*inputs)
                                          if recorded else _backward(*inputs))
    # A backend returns the reset-after GRU's d_b_hh whether or not there was a b_hh.
    return (d_xp, d_R, None if b_hh is None else d_b_hh, None if p is None else d_p, d_a0,
            d_c0, None, None, None, None, None)


def _refuse_second_derivative(ctx, *_):
    raise RuntimeError("gatedrnn's recurrence is differentiable once: its backward through time "
                       "has no backward of its own (a second derivative, e.g. a Hessian or a "
                       "gradient penalty, is not available)")


class _Recurrence(torch.autograd.Function):
    """The forward and the backend's own backward through time; nothing saved per op."""

    @staticmethod
    def forward(ctx, *inputs):
        output = _recurrence(*inputs)
        _save(ctx, inputs, output)
        return output

    backward = staticmethod(_recurrence_backward)


class _BackwardThroughTime(torch.autograd.Function):
    """The backward as a Function of its own: a second derivative then meets its refusal,
    where a plain backward would leave out every path through the recurrence, silently (a
    gradient penalty's d/dW_hh came back None). Under torch.func it also gets its tensors
    unwrapped, which a compiled kernel needs."""

    @staticmethod
    def forward(ctx, *inputs):
        return _backward(*inputs)

    backward = staticmethod(_refuse_second_derivative)


class _RecurrenceUnderTransforms(torch.autograd.Function):
    forward = staticmethod(_recurrence)
    setup_context = staticmethod(_save)
    backward = staticmethod(_recurrence_backward)

    @staticmethod
    def vmap(info, in_dims, *inputs):
        return vmap_rules.recurrence(info, in_dims, inputs,
                                     _RecurrenceUnderTransforms.apply)


class _BackwardThroughTimeUnderTransforms(torch.autograd.Function):
    forward = staticmethod(_backward)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    backward = staticmethod(_refuse_second_derivative)

    @staticmethod
    def vmap(info, in_dims, *inputs):
        return vmap_rules.backward_through_time(info, in_dims, inputs, _backward)


_UNDER_TRANSFORMS = {_Recurrence: _RecurrenceUnderTransforms,
                     _BackwardThroughTime: _BackwardThroughTimeUnderTransforms}


def _door(function):
    return _UNDER_TRANSFORMS[function] if functorch_active() else function


def run(v: Variant, backend: str, xp, R, b_hh, p, a0, c0, mask, reverse: bool,
        keep_saved: bool):
    """(out, a_n) or (out, a_n, c_n): through the operator while torch.compile or
    torch.export traces, else through the autograd Function, or straight to the backend where
    no backward can follow (keep_saved False: inference, a streamed step) and no transform
    needs the Function's rules."""
    if not torch.compiler.is_compiling():
        inputs = (xp, R, b_hh, p, a0, c0, mask, v, backend, reverse, keep_saved)
        direct = not keep_saved and not functorch_active()
        outs = _forward(v, backend, *inputs[:7], reverse, False) if direct else \
            _door(_Recurrence).apply(*inputs)
        return outs[:3] if v.has_cell else outs[:2]
    out, a_n, c_n, *_ = torch.ops.gatedrnn.through_time(xp, R, b_hh, p, a0, c0, mask, v.name,
                                                        backend, reverse, keep_saved)
    return (out, a_n, c_n) if v.has_cell else (out, a_n)


# The operators (this module leaves annotations unpostponed: torch 2.4's schema inference
# does not read them as strings). Tensors a variant or a backend does not have are returned as
# empty ones, as a schema's outputs cannot be optional.

def _unaliased(tensors, inputs, like: Tensor):
    """`tensors` (None as an empty tensor on `like`'s device), each copied where it shares
    memory with an input or an earlier one (`out`, a view of the states; the reference
    backend's saved xp)."""
    taken = {t.untyped_storage().data_ptr() for t in inputs if t is not None and t.numel()}
    fresh = []
    for t in tensors:
        if t is None:
            t = like.new_empty(0)
        elif t.numel():
            t = t.clone() if t.untyped_storage().data_ptr() in taken else t
            taken.add(t.untyped_storage().data_ptr())
        fresh.append(t)
    return tuple(fresh)


@torch.library.custom_op("gatedrnn::through_time", mutates_args=())
def _through_time(xp: Tensor, R: Tensor, b_hh: Optional[Tensor], p: Optional[Tensor],
                  a0: Tensor, c0: Optional[Tensor], mask: Optional[Tensor], variant: str,
                  backend: str, reverse: bool, keep_saved: bool
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(out, a_n, c_n, SA, SC, saved): the recurrence's outputs, then what its backward takes."""
    outputs = _forward(get_variant(variant), backend, xp, R, b_hh, p, a0, c0, mask, reverse,
                       keep_saved)
    return _unaliased(outputs, (xp, R, b_hh, p, a0, c0, mask), xp)


@_through_time.register_fake
def _(xp, R, b_hh, p, a0, c0, mask, variant, backend, reverse, keep_saved):
    v = get_variant(variant)
    T, B, _ = xp.shape
    H = R.shape[1]
    SA, SC, saved = kernels.forward_like(backend, v, xp, a0, c0, keep_saved)
    c_n = xp.new_empty(B, H) if v.has_cell else None
    return tuple(xp.new_empty(0) if t is None else t
                 for t in (xp.new_empty(T, B, H), xp.new_empty(B, H), c_n, SA, SC, saved))


@torch.library.custom_op("gatedrnn::through_time_backward", mutates_args=())
def _through_time_backward(d_out: Tensor, d_a_n: Tensor, d_c_n: Optional[Tensor], R: Tensor,
                           b_hh: Optional[Tensor], p: Optional[Tensor], a0: Tensor,
                           c0: Optional[Tensor], SA: Tensor, SC: Optional[Tensor],
                           saved: Optional[Tensor], mask: Optional[Tensor], variant: str,
                           backend: str, reverse: bool
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(d_xp, d_R, d_b_hh, d_p, d_a0, d_c0). a0 and c0 are read for their dtype alone (the
    states hold them, maybe in a wider one)."""
    v = get_variant(variant)
    d_xp, d_R, d_b_hh, d_p, d_a0, d_c0 = _backward(v, backend, reverse, d_out, d_a_n, d_c_n, R,
                                                   b_hh, p, SA, SC, saved, mask)
    grads = (d_xp.to(d_out.dtype), d_R, d_b_hh, d_p, d_a0.to(a0.dtype),
             None if d_c0 is None else d_c0.to(c0.dtype))
    inputs = (d_out, d_a_n, d_c_n, R, b_hh, p, a0, c0, SA, SC, saved, mask)
    return _unaliased(grads, inputs, d_out)


@_through_time_backward.register_fake
def _(d_out, d_a_n, d_c_n, R, b_hh, p, a0, c0, SA, SC, saved, mask, variant, backend, reverse):
    T, B, _ = d_out.shape
    like = lambda t: d_out.new_empty(0) if t is None else torch.empty_like(t)  # noqa: E731
    return (d_out.new_empty(T, B, R.shape[0]), like(R), like(b_hh), like(p), like(a0),
            like(c0 if get_variant(variant).has_cell else None))


def _backward_formula(ctx, d_out, d_a_n, d_c_n, *_):
    """The operator's backward: its own operator, given a gradient for every output it reads
    (the fake implementation takes d_xp's dtype from d_out's)."""
    R, b_hh, p, a0, c0, SA, SC, saved, mask = ctx.saved_tensors
    v = ctx.variant
    d_xp, d_R, d_b_hh, d_p, d_a0, d_c0 = torch.ops.gatedrnn.through_time_backward(
        *_given(ctx, d_out, d_a_n, d_c_n), R, b_hh, p, a0, c0, SA, SC if v.has_cell else None,
        saved, mask, v.name, ctx.backend, ctx.reverse)
    return (d_xp, d_R, None if b_hh is None else d_b_hh, None if p is None else d_p, d_a0,
            d_c0 if v.has_cell else None, None, None, None, None, None)


_through_time.register_autograd(_backward_formula, setup_context=_save)
_through_time_backward.register_autograd(_refuse_second_derivative)
