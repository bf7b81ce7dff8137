"""torch.func.vmap over the recurrence (gatedrnn/through_time.py): how a batch of calls runs.

Batch rows never read each other's state, so where the weights are shared (vmap over inputs,
and per-sample gradients: vmap(grad(loss), in_dims=(None, 0))) the vmapped dimension N folds
into the batch: one call of N*B rows, its outputs unfolded. The backward then gives each
sample's d_xp, d_a0 and d_c0 at once; each sample's weight gradients are the large-GEMM formula
(states.weight_grads) over its own rows. Where the weights themselves are vmapped (an ensemble),
or the backend's backward computes its weight gradients otherwise (the reference backend), the
calls run one after another.

Shapes: xp, d_out, SA, SC, saved, mask have their batch in dimension 1; a0, c0, d_a_n, d_c_n
in dimension 0.
"""

import torch

from .kernels.states import weight_grads

_BATCH_IN_1 = 1   # (T, B, ...) and (T+1, B, ...)
_BATCH_IN_0 = 0   # (B, H)


def _fold(t, dim, N: int, batch: int):
    """t with its vmapped dimension `dim` (None: t is shared, and is repeated) merged into its
    batch dimension `batch`, sample-major."""
    if t is None:
        return None
    if dim is None:
        t = t.unsqueeze(batch).expand(*t.shape[:batch], N, *t.shape[batch:])
    else:
        t = t.movedim(dim, batch)
    return t.flatten(batch, batch + 1)


def _unfold(t, N: int, batch: int):
    """The inverse of _fold: (..., N*B, ...) → (..., N, B, ...), vmapped at `batch`."""
    if t is None:
        return None, None
    return t.unflatten(batch, (N, t.shape[batch] // N)), batch


def _one_by_one(info, in_dims, inputs, call):
    """call(*inputs of sample n) for each n, stacked: outputs vmapped at 0 (None stays None)."""
    results = []
    for n in range(info.batch_size):
        results.append(call(*(t if d is None else t.select(d, n)
                              for t, d in zip(inputs, in_dims))))
    outputs = tuple(None if parts[0] is None else torch.stack(parts)
                    for parts in zip(*results))
    return outputs, tuple(None if o is None else 0 for o in outputs)


def recurrence(info, in_dims, inputs, apply):
    """The forward's rule. inputs (xp, R, b_hh, p, a0, c0, mask, variant, backend, reverse,
    keep_saved), apply the Function's; outputs (out, a_n, c_n, SA, SC, saved)."""
    if any(d is not None for d in in_dims[1:4]):   # R, b_hh, p vmapped
        return _one_by_one(info, in_dims, inputs, apply)
    N = info.batch_size
    # Where each tensor input keeps its batch (None: a shared weight, passed as it is).
    batch = (_BATCH_IN_1, None, None, None, _BATCH_IN_0, _BATCH_IN_0, _BATCH_IN_1)
    folded = (t if b is None else _fold(t, d, N, b) for t, d, b in zip(inputs, in_dims, batch))
    out, a_n, c_n, SA, SC, saved = apply(*folded, *inputs[7:])
    unfolded = [_unfold(out, N, _BATCH_IN_1), _unfold(a_n, N, _BATCH_IN_0),
                _unfold(c_n, N, _BATCH_IN_0), _unfold(SA, N, _BATCH_IN_1),
                _unfold(SC, N, _BATCH_IN_1), _unfold(saved, N, _BATCH_IN_1)]
    return tuple(t for t, _ in unfolded), tuple(d for _, d in unfolded)


def backward_through_time(info, in_dims, inputs, backward):
    """The backward's rule. inputs (variant, backend, reverse, d_out, d_a_n, d_c_n, R, b_hh, p,
    SA, SC, saved, mask), backward the backend's (through_time._backward); outputs (d_xp, d_R,
    d_b_hh, d_p, d_a0, d_c0), each sample's."""
    variant, backend, reverse = inputs[:3]
    if any(d is not None for d in in_dims[6:9]) or backend == "reference":
        return _one_by_one(info, in_dims, inputs, backward)
    N = info.batch_size
    # Where each tensor input keeps its batch (None: a shared weight, passed as it is).
    batch = (_BATCH_IN_1, _BATCH_IN_0, _BATCH_IN_0, None, None, None, _BATCH_IN_1, _BATCH_IN_1,
             _BATCH_IN_1, _BATCH_IN_1)
    d_out, d_a_n, d_c_n, R, b_hh, p, SA, SC, saved, mask = (
        t if b is None else _fold(t, d, N, b) for t, d, b in zip(inputs[3:], in_dims[3:], batch))
    d_xp, _, _, _, d_a0, d_c0 = backward(variant, backend, reverse, d_out, d_a_n, d_c_n, R,
                                         b_hh, p, SA, SC, saved, mask)
    # The backend summed the weight gradients over all N*B rows; each sample's are its rows'.
    B = d_xp.shape[1] // N
    rows = lambda t, n: None if t is None else t[:, n * B:(n + 1) * B]  # noqa: E731
    per_sample = [weight_grads(variant, rows(d_xp, n), rows(SA, n).to(R.dtype), rows(SC, n),
                               rows(saved, n), reverse) for n in range(N)]
    d_R, d_b_hh, d_p = (None if parts[0] is None else torch.stack(parts)
                        for parts in zip(*per_sample))
    outputs = (_unfold(d_xp, N, _BATCH_IN_1)[0], d_R, d_b_hh, d_p,
               _unfold(d_a0, N, _BATCH_IN_0)[0], _unfold(d_c0, N, _BATCH_IN_0)[0])
    return outputs, (_BATCH_IN_1, 0, None if d_b_hh is None else 0,
                     None if d_p is None else 0, 0, None if d_c0 is None else 0)
