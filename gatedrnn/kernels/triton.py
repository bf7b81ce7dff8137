"""The "triton" backend: the time loop on the GPU, in Triton kernels (gatedrnn/kernels/gpu/).

Every step is one kernel launch (two for the lecture's GRU, whose relevance gate must be known
for every unit before the candidate's recurrent product): each program owns a tile of the
(B, H) state, multiplies its rows of the previous state by its column strip of R on the tensor
cores, and applies the gates in the same pass, so the gate pre-activations never leave the chip.
For small problems, where a launch costs more than a step's work, one launch runs the whole
sequence instead ("sequence" mode): a program per block of rows walks through time, and since
rows never read each other's state no program waits for another. The "persistent" mode also
runs the whole sequence in one launch, but spreads every step over the chip: at most one
program per multiprocessor, all meeting at a grid-wide barrier after each step
(gatedrnn/kernels/gpu/common.py, grid_barrier). The "resident" mode is "persistent" with a
program per tile that loads its strips of R once, before the time loop, and keeps them on-chip
for every step (Persistent RNNs, Diamos et al. 2016), where they fit. The "gemm" mode leaves
each step's recurrent product to cuBLAS and launches a kernel only for the gates
(gatedrnn/kernels/gemm.py), as cuDNN does for large problems. The launches of a sequence in
"step" or "gemm" mode can be recorded into a CUDA graph and replayed when a call comes again
with the same buffers (gatedrnn/kernels/graphs.py). Which launch and which tiles,
gatedrnn/kernels/planner.py says: the plan takes all but "step" and "sequence" only where the
GPU check measured them fastest; `settings` there choose by hand.

What is carried from step to step (the state, the LSTM's cell, the gradients carried back) and
the saved gates are float32 (float64 for float64 inputs) whatever the inputs' dtype: bfloat16
weights and projections are multiplied on the tensor cores with float32 accumulation. What only
feeds a product, which the tensor cores round anyway, is kept in the inputs' dtype (see
gatedrnn/kernels/gpu/forward.py). float32 products use IEEE float32 unless the user allows TF32
(torch.backends.cuda.matmul.allow_tf32), as torch.matmul does.

The input projection before the loop and the weight gradients after it are large GEMMs in
PyTorch (cuBLAS), as for every backend. Under TRITON_INTERPRET=1 the kernels run on CPU
tensors, exactly but slowly: that is how CI tests them.
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings

import torch

from ..cells import Variant
from . import kernel_id, planner
from .gemm import BackwardProducts, ForwardProducts
from .graphs import StepGraphs, graph_key
from .planner import Plan, Refused, launch_name, plan, replanned
from .states import forward_like as forward_like_default
from .states import initial_index, new_states, weight_grads


def _buffer(t: torch.Tensor) -> torch.Tensor:
    return t.fill_(float("nan")) if planner.settings.poison else t


def _states(s0: torch.Tensor, T: int, reverse: bool) -> torch.Tensor:
    S = new_states(s0, T, reverse)
    if planner.settings.poison:
        S.fill_(float("nan"))
        S[initial_index(T, reverse)] = s0
    return S


# The oldest Triton the kernels run on: 3.3 brought cooperative launches (the grid-wide
# barrier's), 3.5 float64 operands of tl.dot (on 3.3 and 3.4 every float64 case fails). CI
# runs the backend's tests on this one too (make test-triton-floor).
MIN_TRITON = (3, 5)


def _dotted(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


_FLOOR = _dotted(MIN_TRITON)
# Triton's interpreter (TRITON_INTERPRET=1: the kernels on CPU tensors, as the tests run them)
# takes int() of one-element arrays before Triton 3.7, which NumPy refuses from 2.4 (a TypeError
# at the first load). A GPU does not use the interpreter.
INTERPRETER_NUMPY = ((3, 7), (2, 4))   # (Triton from which, NumPy below which, it runs)


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "3.6.0" or "3.5.0+git1234abcd"."""
    found = re.match(r"(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2])) if found else (0, 0)


@functools.cache
def unavailable() -> str | None:
    """Why the kernels cannot run with the installed Triton, or None where they can."""
    try:
        import triton
    except ImportError:
        return f"the triton package is not installed (pip install 'triton>={_FLOOR}')"
    version = _version(triton.__version__)
    if version < MIN_TRITON:
        return (f"triton {triton.__version__} is older than the {_FLOOR} its kernels need "
                f"(pip install 'triton>={_FLOOR}'; torch 2.9 and later bring it)")
    if planner.interpreting():
        import numpy

        fixed, numpy_limit = INTERPRETER_NUMPY
        if version < fixed and _version(numpy.__version__) >= numpy_limit:
            return (f"triton {triton.__version__}'s interpreter (TRITON_INTERPRET=1) cannot run "
                    f"with NumPy {numpy.__version__}, which refuses the int() it takes of "
                    f"one-element arrays (pip install 'numpy<{_dotted(numpy_limit)}', or "
                    f"'triton>={_dotted(fixed)}')")
    return None


def available() -> bool:
    return unavailable() is None


def supported(device: torch.device) -> bool:
    """Is the GPU one the kernels are built for? bfloat16 tensor-core products (tl.dot) need
    compute capability 8.0 (A100) or later; older GPUs run the "loop" backend by default."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


@functools.cache
def _kernels():
    from .gpu import backward, forward
    return forward, backward


def _launch_whole(kernel, grid, pl: Plan, *args, **kwargs) -> None:
    """Launch a one-launch kernel. A cooperative launch can fail where it was not measured:
    the driver refuses it if every program cannot be resident at once, and the resident
    strips may not fit a GPU's shared memory. Where the plan took it from measurements, that
    failure is Refused."""
    try:
        kernel[grid](*args, **kwargs)
    except Exception as error:
        if pl.measured and pl.mode in planner.BARRIER:
            raise Refused(pl.mode, error) from error
        raise


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _precision(dtype: torch.dtype) -> str:
    """tl.dot's input_precision: IEEE float32 unless TF32 is allowed; 16-bit operands ignore it
    (Triton's default, "tf32", is passed for them)."""
    if dtype == torch.float32:
        return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    return "ieee" if dtype == torch.float64 else "tf32"


def _mask(mask, xp):
    """(T, B, 1) bool → (T, B) int8 rows the kernels read; xp stands in when there is none."""
    if mask is None:
        return xp, 0
    return mask.reshape(mask.shape[0], mask.shape[1]).to(torch.int8), 1


def _common(variant: Variant, dtype: torch.dtype, p: Plan):
    return dict(VARIANT=kernel_id(variant), G=variant.num_gates, S=variant.saved_blocks,
                BLOCK_B=p.block_b, BLOCK_H=p.block_h, BLOCK_K=p.block_k,
                PRECISION=_precision(dtype), UPCAST=planner.interpreting(), num_warps=p.num_warps)


class _Launcher:
    """One kernel launched step after step with new scalar arguments. The first launch goes
    through Triton's JIT, which binds and specialises every argument, finds (or compiles) the
    kernel and launches it; the later ones (with planner.settings.fast_launch) call the compiled
    kernel's launcher directly, with the arguments in the kernel's order, as the JIT itself
    does: that per-call work is several µs, as much as a step's arithmetic at small batch.
    Triton's launch hooks (profilers) see only the first launch. The interpreter compiles
    nothing: there every launch takes the JIT's path."""

    def __init__(self, kernel, grid, constants: dict):
        self.kernel, self.grid, self.constants = kernel, grid, constants
        self.compiled = None
        self.stream = None   # the raw CUDA stream of the direct launches; the current one if None

    def _keep(self, compiled, n_args: int) -> None:
        if not planner.settings.fast_launch or not hasattr(compiled, "packed_metadata"):
            return
        self.compiled = compiled
        # The launcher takes every parameter in order, the constexprs' values too.
        self.tail = [self.constants[name] for name in self.kernel.arg_names[n_args:]]
        self.grid3 = tuple(self.grid) + (1,) * (3 - len(self.grid))
        if self.stream is None:
            self.stream = torch.cuda.current_stream().cuda_stream

    def prepare(self, *args) -> None:
        """Compile (or find) and load the kernel for these arguments without launching it:
        a CUDA graph's recording (settings.graphs) can hold launches, not compiling."""
        compiled = self.kernel.warmup(*args, grid=self.grid, **self.constants)
        if hasattr(compiled, "result"):   # a compilation Triton ran in the background
            compiled = compiled.result()
        compiled.run   # noqa: B018 -- the attribute loads the module onto the device
        self._keep(compiled, len(args))

    def __call__(self, *args):
        c = self.compiled
        if c is None or not planner.settings.fast_launch:
            self._keep(self.kernel[self.grid](*args, **self.constants), len(args))
            return
        try:
            c.run(*self.grid3, self.stream, c.function, c.packed_metadata, None, None, None,
                  *args, *self.tail)
        except TypeError as error:   # another Triton's launcher: its arguments are checked
            planner.settings.fast_launch = False   # before any launch, so the JIT can redo it
            warnings.warn(f"gatedrnn: Triton's launcher refused the direct call ({error}); "
                          "launching through the JIT from now on", stacklevel=2)
            self.kernel[self.grid](*args, **self.constants)


graphs = StepGraphs()


def _launch_steps(pl: Plan, device, steps, first_args, launch_all, key_parts) -> None:
    """Issue a sequence's per-step launches (launch_all, with the gemm mode's products):
    directly, or with pl.graphs through the CUDA graph recorded for the same buffers, sizes and
    constants (key_parts), recorded now if they come a second time (gatedrnn/kernels/graphs.py).
    first_args: each launcher's arguments at any step, to compile and load its kernel before
    recording (the same dtypes and alignments as its launches: they choose the compiled kernel).
    The interpreter has no CUDA graphs: there every launch is direct."""
    if not pl.graphs or not can_record():
        launch_all()
        return

    def prepare() -> None:
        for step, args in zip(steps, first_args):
            step.prepare(*args)

    def record(stream: int) -> None:
        for step in steps:
            step.stream = stream
        launch_all()

    try:
        graphs.run(graph_key(key_parts), device, record, prepare, launch_all)
    except Exception as error:   # a recording this machine refuses ran nothing
        if pl.measured:
            raise Refused(launch_name(pl), error) from error
        raise


def can_record() -> bool:
    """CUDA graphs need CUDA (the interpreter runs kernels on the CPU), and a recording of
    their own cannot begin while the caller records one (torch.cuda.graph around a training
    step): then the launches go straight into the caller's graph, to the same effect."""
    return not planner.interpreting() and not torch.cuda.is_current_stream_capturing()


def _low_copy(variant: Variant, dtype: torch.dtype) -> bool:
    """Does the forward write a copy of the state in `dtype` for the products to read? For
    16-bit inputs of the variants whose a<t> is their float32 state (the GRUs, the RNN)."""
    return not variant.has_cell and _state_dtype(dtype) != dtype


def _phases(variant: Variant) -> int:
    """Grid-wide passes per step: the lecture's GRU needs Γ_r ⊙ c<t-1> of every unit before
    its candidate (and, backwards, the candidate's gradient of every unit before Γ_r's)."""
    return 2 if variant.reset_before else 1


def _one_launch(pl: Plan, nb: int, nh: int, H: int, device: torch.device):
    """(grid, barrier counter, the kernel's launch constants) of a whole sequence in one
    launch: a program per block of rows ("sequence"); for "persistent" at most one per
    multiprocessor, since every program must be resident at once for the grid-wide barrier;
    for "resident" one per tile, each holding its tile's strips of the weights for the whole
    sequence (planner.resident_fits says where they fit). The barrier's launch is cooperative
    (cuLaunchCooperativeKernel): the driver refuses it, rather than let it hang, if the
    programs cannot all be resident. The interpreter runs programs one after the other: there a
    barrier can only ever be passed by a single program (the tests run its programs a thread
    each, tests/interpreter_threads.py)."""
    counter = torch.zeros(1, dtype=torch.int32, device=device)   # arrivals so far
    options = dict(GRID_SYNC=pl.mode in planner.BARRIER, RESIDENT=pl.mode == "resident",
                   K_PAD=planner.k_pad(H) if pl.mode == "resident" else 16)
    options["launch_cooperative_grid"] = options["GRID_SYNC"]
    if pl.mode == "sequence":
        return (nb,), counter, options
    programs = planner.device_limits()[0]
    if pl.mode == "resident":
        if nb * nh > programs:
            where = " (the interpreter runs one)" if planner.interpreting() else ""
            raise ValueError(f"settings.mode: 'resident' runs a program per tile, at most "
                             f"{programs} here{where}; got {nb} × {nh} tiles of {pl.block_b} "
                             f"rows × {pl.block_h} units")
        return (nb * nh,), counter, options
    programs = min(nb * nh, programs)
    return (programs,), counter, options


def _on(device: torch.device):
    """Triton launches on the current CUDA device: make it the tensors' one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _contiguous(t):
    return None if t is None else t.contiguous()


def _layout(variant: Variant, dtype: torch.dtype):
    """The dtypes of the forward's SA, SC and saved for inputs of `dtype`."""
    state = _state_dtype(dtype)
    # The LSTM carries its memory in c; a<t> = Γ_o ⊙ tanh(c<t>) only feeds products (rounded
    # to bfloat16 for the tensor cores anyway) and the output: it is stored in xp's dtype,
    # which halves the forward's heaviest read. The GRUs carry a<t> itself: float32.
    return (dtype if variant.has_cell else state), state, state


def forward_like(variant: Variant, xp, a0, c0, keep_saved=True):
    """forward's outputs, uninitialised (see _layout)."""
    return forward_like_default(variant, xp, a0, c0, keep_saved, _layout(variant, xp.dtype))


def forward(variant: Variant, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved=True):
    if b_hh is None and variant.recurrent_bias:   # the kernels read b_cc; a bias-free layer's is 0
        b_hh = xp.new_zeros(R.shape[1])
    with _on(xp.device):
        return replanned(_forward, variant, xp, R, _contiguous(b_hh), _contiguous(p), a0, c0,
                          mask, reverse, keep_saved)


def backward(variant: Variant, d_A, d_a_n, d_c_n, R, b_hh, p, SA, SC, saved, mask, reverse):
    with _on(d_A.device):
        return replanned(_backward, variant, d_A, d_a_n, d_c_n, R, _contiguous(p), SA, SC,
                          saved, mask, reverse)


def _forward(variant: Variant, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved):
    kernels, _ = _kernels()
    T, B, _ = xp.shape
    H = R.shape[1]
    state_a, state, _ = _layout(variant, xp.dtype)
    xp = xp.contiguous()
    SA = _states(a0.to(state_a), T, reverse)
    low_copy = _low_copy(variant, xp.dtype)
    SAL = _states(a0.to(xp.dtype), T, reverse) if low_copy else SA
    SC = _states(c0.to(state), T, reverse) if variant.has_cell else None
    saved = _buffer(xp.new_empty(T if keep_saved else 1, B, variant.saved_blocks * H,
                                 dtype=state))
    # Γ_r ⊙ c<t-1> of the lecture's GRU only feeds the candidate's product: xp's dtype too.
    RA = _buffer(xp.new_empty(B, H)) if variant.reset_before else SA
    RT = R.t().contiguous()
    m, has_mask = _mask(mask, xp)
    pl = plan(B, H, R.dtype, variant.name)
    args = (xp, RT, b_hh if b_hh is not None else xp, p if p is not None else xp, SA, SAL,
            SC if SC is not None else SA, saved if saved.numel() else SA, RA, m)
    common = dict(_common(variant, R.dtype, pl), LOW_COPY=low_copy)
    nb, nh = -(-B // pl.block_b), -(-H // pl.block_h)
    if pl.mode in planner.ONE_LAUNCH:
        grid, counter, options = _one_launch(pl, nb, nh, H, xp.device)
        _launch_whole(kernels.forward_sequence, grid, pl, *args, counter, T, B, H, has_mask,
                      int(reverse), int(keep_saved), nh, nb * nh, PHASES=_phases(variant),
                      **options, **common)
    else:
        gemm = pl.mode == "gemm"
        steps = [_Launcher(kernels.forward_step, (nb, nh), dict(common, PHASE=phase, GIVEN=gemm))
                 for phase in range(_phases(variant))]
        order = range(T - 1, -1, -1) if reverse else range(T)
        products = ForwardProducts(variant, SAL, RA, RT, state) if gemm else None
        no_product = (xp, 0)

        def step_args(t):
            prev, nxt = (t + 1, t) if reverse else (t, t + 1)
            return (*args, t, prev, nxt, t if keep_saved else 0, B, H, has_mask)

        def launch_all():
            for t in order:
                at_t = step_args(t)
                for phase, step in enumerate(steps):
                    step(*at_t, *(products(phase, t + reverse) if gemm else no_product))

        first = [step_args(order[0]) + (products.given(phase) if gemm else no_product)
                 for phase in range(len(steps))]
        _launch_steps(pl, xp.device, steps, first, launch_all,
                      ("forward", xp.device, T, reverse, keep_saved, common, step_args(0),
                       products.buffers if gemm else ()))
    return SA, SC, (saved if keep_saved else None)


def _backward(variant: Variant, d_A, d_a_n, d_c_n, R, p, SA, SC, saved, mask, reverse):
    _, kernels = _kernels()
    T, B, H = d_A.shape
    state = _state_dtype(R.dtype)
    d_A = d_A.to(state).contiguous()
    R = R.contiguous()
    # d_xp in the weights' dtype: in bfloat16 the kernels round it for the tensor cores anyway
    # (it is a product's operand, never carried element-wise), so storing it so halves the
    # backward's heaviest read and the weight-gradient GEMMs take it as it is.
    d_xp = _buffer(d_A.new_empty(T, B, variant.num_gates * H, dtype=R.dtype))
    CA = d_a_n.to(state, copy=True).contiguous()
    CC = d_c_n.to(state, copy=True).contiguous() if variant.has_cell else CA
    m, has_mask = _mask(mask, d_A)
    pl = plan(B, H, R.dtype, variant.name)
    args = (d_A, R, p if p is not None else d_A, SA, SC if SC is not None else SA,
            saved if saved.numel() else SA, d_xp, CA, CC, m)
    common = _common(variant, R.dtype, pl)
    nb, nh = -(-B // pl.block_b), -(-H // pl.block_h)
    if pl.mode in planner.ONE_LAUNCH:
        grid, counter, options = _one_launch(pl, nb, nh, H, d_A.device)
        _launch_whole(kernels.backward_sequence, grid, pl, *args, counter, T, B, H, has_mask,
                      int(reverse), nh, nb * nh, PHASES=_phases(variant), **options, **common)
    else:
        gemm = pl.mode == "gemm"
        steps = [_Launcher(kernels.backward_step, (nb, nh), dict(common, PHASE=phase, GIVEN=gemm))
                 for phase in range(_phases(variant))]
        order = list(range(T)) if reverse else list(range(T - 1, -1, -1))
        products = BackwardProducts(variant, d_xp, R, saved, state) if gemm else None

        def step_args(i):
            t = order[i]
            prev, nxt = (t + 1, t) if reverse else (t, t + 1)
            return (*args, t, prev, nxt, order[i - 1] if i else t, int(i > 0), B, H, has_mask, 0)

        def given(i, phase):
            """PRB of step i's launch of `phase` ("gemm" mode; the first step sends nothing)."""
            if not gemm:
                return d_A
            if phase == 1:
                return products.reset(order[i])
            return products.through_r(order[i - 1]) if i else products.out

        def launch_all():
            for i in range(T):
                at_i = step_args(i)
                for phase, step in enumerate(steps):
                    step(*at_i, given(i, phase))
            last = order[-1]   # then d a<0> (and d c<0>)
            steps[0](*args, last, last, last, last, 1, B, H, has_mask, 1,
                     products.through_r(last) if gemm else d_A)

        first = [step_args(0) + (products.out if gemm else d_A,)] * len(steps)
        _launch_steps(pl, d_A.device, steps, first, launch_all,
                      ("backward", d_A.device, T, reverse, common, step_args(0),
                       products.buffers if gemm else ()))
    # The weight gradients: large GEMMs in the weights' dtype (bfloat16 on the tensor cores);
    # of the float32 cell and gates, Variant.param_grads casts only what it reads.
    d_R, d_b_hh, d_p = weight_grads(variant, d_xp, SA.to(R.dtype), SC, saved, reverse)
    return (d_xp, d_R, d_b_hh, d_p, CA.to(d_a_n.dtype),
            CC.to(d_c_n.dtype) if variant.has_cell else None)
