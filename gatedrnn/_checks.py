"""Input checks: each failure names the argument, what was expected and what came."""

from __future__ import annotations

import torch
from torch import Tensor


class SizeError(ValueError, RuntimeError):
    """A tensor of the wrong size: a ValueError, and the RuntimeError torch.nn raises for the
    same input, so that code written for either catches it."""


class DtypeError(TypeError, ValueError, RuntimeError):
    """A tensor of the wrong dtype: torch.nn raises ValueError (layers) or RuntimeError (cells,
    states) for the same input."""


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return value


def projection(proj_size, hidden_size: int, has_cell: bool) -> int:
    """torch.nn.LSTM's proj_size: 0 (none), or a width below hidden_size; LSTM only."""
    if isinstance(proj_size, bool) or not isinstance(proj_size, int):
        raise TypeError(f"proj_size: expected an int, got {type(proj_size).__name__} "
                        f"{proj_size!r}")
    if proj_size and not has_cell:
        raise ValueError(f"proj_size: only the LSTM projects its output; expected 0, "
                         f"got {proj_size}")
    if not 0 <= proj_size < hidden_size:
        raise ValueError(f"proj_size: expected 0 (no projection) or 1 to hidden_size - 1 = "
                         f"{hidden_size - 1}, got {proj_size}")
    return proj_size


def boolean(name: str, value, ints: bool = False) -> bool:
    """A bool, as torch.nn checks it: bool() would take "False" for True. (torch.nn takes the
    ints 0 and 1 for bidirectional: `ints`.)"""
    if isinstance(value, bool) or (ints and isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")


def probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def sequence_input(x, input_size: int, like: Tensor) -> Tensor:
    """A (T, B, I) or unbatched (T, I) input matching the parameters' dtype and device."""
    tensor("input", x)
    if x.dim() not in (2, 3):
        raise ValueError(f"input: expected 3 dimensions (T, B, I), or 2 (T, I) unbatched, "
                         f"got {x.dim()} with shape {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        raise SizeError(f"input: expected input_size={input_size} features in the last "
                         f"dimension, got {x.shape[-1]} (shape {tuple(x.shape)})")
    same_kind("input", x, like)
    return x


def autocasting(device_type: str) -> bool:
    """Is torch.autocast on for this device type? (False for types it does not know: meta.)"""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def same_kind(name: str, x: Tensor, like: Tensor) -> None:
    # Inside torch.autocast, 16-bit inputs and states of a float32 model are what it makes
    # (it leaves float64 alone).
    autocast = (x.dtype.is_floating_point and torch.float64 not in (x.dtype, like.dtype)
                and autocasting(x.device.type))
    if x.dtype != like.dtype and not autocast:
        raise DtypeError(f"{name}: expected dtype {like.dtype} (the parameters'), got {x.dtype}")
    if x.device != like.device:
        raise ValueError(f"{name}: expected a tensor on {like.device} (the parameters'), "
                         f"got one on {x.device}")


def nonempty(T: int, B: int) -> None:
    if T == 0:
        raise ValueError("input: expected at least one time step, got an empty sequence (T=0)")
    if B == 0:
        raise ValueError("input: expected at least one sequence in the batch, got B=0")


def state(name: str, s, shape: tuple[int, ...], like: Tensor,
          layout: str = "num_layers * num_directions, batch, hidden_size") -> Tensor:
    tensor(name, s)
    if tuple(s.shape) != shape:
        raise SizeError(f"{name}: expected shape {shape} ({layout}), got {tuple(s.shape)}")
    same_kind(name, s, like)
    return s


def needs_grad(*tensors) -> bool:
    """Will a backward follow? Gradients are on and one of `tensors` (None: absent) needs one."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# Function.apply's own question (torch 2.4 to 2.15); without it, no transform is taken as active.
functorch_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def values_unreadable() -> bool:
    """Can a tensor's values not be read here? While torch.compile or torch.export traces (a
    read would stop the trace at every call), and under a torch.func transform (vmap cannot
    read a batched tensor's)."""
    return torch.compiler.is_compiling() or functorch_active()


def lengths(value, batch: int, T: int, device) -> Tensor:
    """Per-sequence lengths as int64 on `device`; any order, each in 1..T."""
    if isinstance(value, (list, tuple)):
        value = torch.as_tensor(value)
    tensor("lengths", value)
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"lengths: expected an integer tensor or list, got dtype {value.dtype}")
    if value.dim() != 1 or value.shape[0] != batch:
        raise ValueError(f"lengths: expected one length per sequence, shape ({batch},), "
                         f"got shape {tuple(value.shape)}")
    if values_unreadable():
        # Unchecked they do no harm: the layers read them through a mask only, in which a
        # length over T counts as T, and one under 1 leaves its sequence at a0.
        return value.to(device=device, dtype=torch.int64)
    low, high = int(value.min()), int(value.max())
    if low < 1:
        raise ValueError(f"lengths: expected every length >= 1 (a sequence needs a step), "
                         f"got a length of {low}")
    if high > T:
        raise ValueError(f"lengths: expected every length <= {T} (the input's time steps), "
                         f"got a length of {high}")
    return value.to(device=device, dtype=torch.int64)


def not_jit_traced(what: str) -> None:
    """torch.jit.trace records the kernels' outputs as constants (the compiled time loop is
    invisible to it, the Python loop is unrolled to one length): its trace would give wrong
    numbers for new inputs, so it is refused."""
    if torch.jit.is_tracing():
        raise RuntimeError(f"{what}: torch.jit.trace cannot record gatedrnn's recurrence (the "
                           "trace would replay this input's results); use torch.export.export "
                           "or torch.compile, or gatedrnn.export_onnx for ONNX")
