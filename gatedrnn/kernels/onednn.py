"""Products through oneDNN on the CPU, where it is faster than MKL's.

torch multiplies float32 CPU matrices with MKL, which is known to choose its kernels by CPU
vendor; oneDNN (also inside libtorch_cpu, torch.nn's LSTM runs on it) chooses by instruction
set. On an AMD CPU oneDNN is the faster of the two, but each call costs ~10-15 µs more, so it
pays only for large weights: the input projection (and in training its input gradient) and
the compiled kernel's recurrent products take it from MIN_VALUES values of the weight, the
kernel in calls of 32 steps or more (its packing of R must be paid back), on x86-64 only. The
measurements behind these thresholds are in benchmarks/results (onednn-ab-*.txt,
cpu-kernel-ab-onednn-*.txt; benchmarks/onednn_ab.py and cpu_kernel_ab.py make them).
GATEDRNN_CPU_ONEDNN=0 leaves every product to MKL (to compare the two on another machine).
"""

from __future__ import annotations

import os
import platform

import torch
import torch.nn.functional as F

from .._checks import autocasting, needs_grad, values_unreadable

MIN_VALUES = 192 * 1024


# Measured on x86-64 only: elsewhere (aarch64's oneDNN runs on other kernels) BLAS keeps every
# product until someone measures there.
_MEASURED_HERE = platform.machine().lower() in ("x86_64", "amd64")


# Below this many rows (a streamed step, sampling) oneDNN's linear cost 2-4x MKL's at the
# char-LM's sizes here (benchmarks/onednn_rows.py; benchmarks/results/onednn-few-rows-*).
FEW_ROWS = 16


def min_values(weight: torch.Tensor | None = None) -> int:
    """The threshold the compiled kernel takes: a negative one leaves its products to BLAS.
    Given the weight, a small one skips the environment lookup (~0.8 µs, a streamed step's
    cost otherwise): none of its products could reach the threshold."""
    if weight is not None and weight.numel() < MIN_VALUES:
        return MIN_VALUES
    off = not _MEASURED_HERE or os.environ.get("GATEDRNN_CPU_ONEDNN", "1") == "0"
    return -1 if off else MIN_VALUES


def _available() -> bool:
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _takes(x, weight, bias) -> bool:
    """Does oneDNN's linear do this projection? Float32 on the CPU, a weight of MIN_VALUES or
    more, and only where nothing else looks: the operator has no rule for torch.func's
    transforms, no fake one for tracers and none in torch.jit's traces (ONNX export)."""
    if weight.numel() < MIN_VALUES or x.device.type != "cpu":   # first: the cheapest tests
        return False
    if x.numel() < FEW_ROWS * x.shape[-1]:   # a step's projection: MKL's is faster there
        return False
    if torch.jit.is_tracing() or values_unreadable() or min_values() < 0:
        return False
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (all(t.dtype == torch.float32 for t in tensors)
            and not autocasting("cpu") and not torch.overrides.has_torch_function(tensors)
            and _available())


def _product(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """a · weight^T + bias by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(a, weight, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    """F.linear with oneDNN's forward and input gradient. The weight's gradient stays MKL's
    (its transposed operands would need copies); under create_graph every gradient is a
    differentiable torch product, since oneDNN's operator has no gradient formula."""

    @staticmethod
    def forward(ctx, rows, weight, bias):
        ctx.save_for_backward(rows, weight)
        ctx.has_bias = bias is not None
        return _product(rows, weight, bias)

    @staticmethod
    def backward(ctx, d_out):
        rows, weight = ctx.saved_tensors
        d_rows = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            d_rows = (d_out @ weight if torch.is_grad_enabled()
                      else _product(d_out.contiguous(), weight.t().contiguous()))
        if ctx.needs_input_grad[1]:
            d_weight = d_out.t() @ rows
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_bias = d_out.sum(0)
        return d_rows, d_weight, d_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, weight, bias), through oneDNN where that is faster (see _takes)."""
    if not _takes(x, weight, bias):
        return F.linear(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    if needs_grad(x, weight, bias):
        out = _Linear.apply(rows, weight, bias)
    else:
        out = _product(rows, weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])
