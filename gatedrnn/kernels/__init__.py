"""Backends of the recurrence: one layer, one direction, after the input projection.

Every backend is a module with two functions and this contract (gatedrnn/through_time.py, the
autograd Function and the custom operators, is the only caller; functional.capture calls the
forward for the gates it saves):

    forward(variant, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved) -> (SA, SC, saved)
        xp (T, B, G*H) input projections W_x x<t> + b of all steps; R (G*H, H); b_hh (H,) or None;
        p (3, H) or None; a0, c0 (B, H) (c0 None unless the variant has a cell);
        mask (T, B, 1) bool or None, True where step t is inside sequence b;
        reverse: run from t = T-1 down to 0; keep_saved: False when no backward will follow.
        SA (T+1, B, H) the initial state and the state after every step (carried unchanged
        through masked steps), laid out as gatedrnn/kernels/states.py says; SC likewise for the
        LSTM's cell (None otherwise); saved: what the backward needs (for the loop and cpu
        backends (T, B, S*H), exactly what `Variant.step` saves; None if keep_saved is False).
        SA, SC and saved may be wider than xp (the triton backend keeps a float32 state for
        bfloat16 inputs); the caller returns the outputs in xp's dtype.
    backward(variant, d_A, d_a_n, d_c_n, R, b_hh, p, SA, SC, saved, mask, reverse)
        -> (d_xp, d_R, d_b_hh, d_p, d_a0, d_c0)
        d_A (T, B, H) gradient w.r.t. the states after each step, from the outputs; d_a_n, d_c_n
        (B, H) w.r.t. the final states (d_c_n None unless the variant has a cell). Each
        gradient is returned in the dtype of what it is the gradient of.

and, where its forward stores otherwise than the loop backend (states in a0's and c0's dtype,
saved (T, B, S*H) in xp's), a third that says how (see `forward_like` below):

    forward_like(variant, xp, a0, c0, keep_saved) -> (SA, SC, saved), uninitialised

The weight gradients of the input projection (and the inputs') are not the backend's business:
they follow from d_xp through the ordinary autograd of one large matrix product.
"""

from __future__ import annotations

import importlib
import warnings

import torch

from ..cells import VARIANTS
from . import states

BACKENDS = ("reference", "loop", "cpu", "triton")

# How the compiled kernels (C++ and Triton) number the element-wise steps they implement.
KERNEL_IDS = {"rnn": 0, "gru_simple": 1, "gru": 2, "gru_reset_after": 3, "lstm": 4,
              "lstm_peephole": 5, "rnn_relu": 6}
# The compiled kernels run a variant whose structure (cells.Variant.structure) is one of theirs.
_BY_STRUCTURE = {VARIANTS[name].structure: k for name, k in KERNEL_IDS.items()}
COMPILED = ("cpu", "triton")


def kernel_id(variant) -> int | None:
    """The compiled kernels' number for `variant`'s step, or None where they have none."""
    return _BY_STRUCTURE.get(variant.structure)


def for_variant(backend: str, variant) -> str:
    """`backend`, or "loop" (with a one-time warning) where it is compiled and has no kernel for
    `variant`: a new variant runs from its definition in cells.py alone."""
    if backend in COMPILED and kernel_id(variant) is None:
        why = (f"gatedrnn: the {backend!r} backend has no kernel for the variant "
               f"{variant.name!r}; it runs on the 'loop' backend")
        if why not in _warned:
            _warned.add(why)
            warnings.warn(why, stacklevel=4)
        return "loop"
    return backend


def check(backend: str | None) -> str | None:
    """`backend` itself if it names a backend (or is None / "auto": choose per device)."""
    if backend is not None and backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, 'auto' or None, "
                         f"got {backend!r}")
    return backend


# The dtypes the compiled CPU kernel is built for; every other backend runs any floating dtype.
CPU_DTYPES = (torch.float32, torch.float64)


def resolve(backend: str | None, device: torch.device,
            dtype: torch.dtype = torch.float32) -> str:
    """The backend to run: `backend` if given, else the fastest available for `device` and
    `dtype` ("cpu" for float32 and float64 CPU tensors, "triton" for CUDA tensors).

    "cpu" falls back to "loop" (with a one-time warning) where the kernel cannot be built, and
    "triton" (when not asked for by name, also with a one-time warning) to "loop" where Triton
    is not installed or older than its kernels need, or the GPU is older than compute
    capability 8.0. 16-bit CPU tensors run "loop".
    """
    if check(backend) is None or backend == "auto":
        if device.type == "cpu":
            backend = "cpu" if dtype in CPU_DTYPES else "loop"
        else:
            backend = _gpu_backend(device)
    if backend == "cpu" and (device.type != "cpu" or not load("cpu").available()):
        if device.type != "cpu":
            raise ValueError(f"backend: 'cpu' runs CPU tensors, got tensors on {device}")
        return "loop"
    if backend == "cpu" and dtype not in CPU_DTYPES:
        raise ValueError(f"backend: 'cpu' runs float32 and float64 tensors, got {dtype} "
                         "(the 'loop' backend runs any dtype)")
    if backend == "triton":
        triton = load("triton")
        if not triton.available():
            raise ValueError(f"backend: 'triton' cannot run here: {triton.unavailable()}")
        from . import planner
        if device.type != "cuda" and not (device.type == "cpu" and planner.interpreting()):
            raise ValueError("backend: 'triton' runs CUDA tensors (or CPU tensors under "
                             f"TRITON_INTERPRET=1), got tensors on {device}")
    return backend


_warned: set[str] = set()


# torch.compile calls resolve() as it traces and keeps the name returned, which depends on the
# device and dtype alone (both constants to a trace): resolve's body imports backends and may
# build the CPU kernel, which Dynamo cannot follow (under fullgraph=True, an error). This is
# the mark torch.compiler.assume_constant_result sets (torch 2.4 to 2.15), set without it:
# it imports torch._dynamo, seconds that `import gatedrnn` need not pay (tests/test_compile.py
# checks that torch's function still sets this mark).
resolve._dynamo_marked_constant = True


def _gpu_backend(device: torch.device) -> str:
    """"triton" where its kernels run on `device`, else "loop". On a CUDA device, say why once
    per reason: there the loop is 10-25× slower, and nothing else would tell the user."""
    if device.type != "cuda":
        return "loop"
    triton = load("triton")
    why = triton.unavailable()
    if why is None and not triton.supported(device):
        major, minor = torch.cuda.get_device_capability(device)
        why = f"its kernels need compute capability 8.0 or later, {device} has {major}.{minor}"
    if why is None:
        return "triton"
    if why not in _warned:
        _warned.add(why)
        warnings.warn(f"gatedrnn: CUDA tensors run the slower 'loop' backend, not 'triton': "
                      f"{why}", stacklevel=3)
    return "loop"


def load(backend: str):
    return importlib.import_module(f"{__name__}.{backend}")


def forward_like(backend: str, variant, xp, a0, c0, keep_saved: bool):
    """Uninitialised tensors with the shapes and dtypes `backend`'s forward returns, from the
    inputs' shapes alone: what torch.compile and torch.export trace in its place."""
    like = getattr(load(backend), "forward_like", states.forward_like)
    return like(variant, xp, a0, c0, keep_saved)
