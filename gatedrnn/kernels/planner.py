"""How the "triton" backend launches a sequence: gatedrnn/kernels/triton.py runs what this plans.

- `settings`: launches chosen by hand, for users, benchmarks and tests; "auto" leaves it to the
  plan.
- `plan(B, H, dtype, variant)`: the launch and the tiles of one problem. The launch is the one
  the GPU check measured fastest at the nearest measured problem (gatedrnn/kernels/choices.py),
  a heuristic where none was measured.
- `replanned`: a launch taken from the measurements that fails on the machine at hand before it
  runs (a cooperative launch the driver refuses, a CUDA graph that cannot be recorded) is not
  taken again in this process, and the call runs again without it.

The launches, by name (LAUNCHES): "step", a launch per step (two for the lecture's GRU);
"gemm", a launch per step after cuBLAS computed its recurrent product; either with "+graphs",
the per-step launches recorded into a CUDA graph and replayed; "sequence", the whole sequence
in one launch, a program per block of rows; "persistent", the whole sequence in one launch over
the whole chip, with a grid-wide barrier per step; "resident", as "persistent" with a program
per tile that keeps its strips of R on-chip for the whole sequence (where `resident_fits`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings

import torch

from ..cells import get_variant
from . import choices


@dataclasses.dataclass
class Settings:
    """Launch choices by hand; "auto" and None leave them to `plan`."""

    # "step": a launch per step; "gemm": a launch per step, after cuBLAS computed its
    # recurrent product (gatedrnn/kernels/gemm.py); "sequence": one launch, a program per block
    # of rows; "persistent": one launch over the whole chip with a grid-wide barrier per step;
    # "resident": "persistent" with a program per tile holding its strips of R on-chip; "auto"
    mode: str = "auto"
    # The step and gemm modes' launches recorded into a CUDA graph and replayed when a call
    # comes with the same buffers again (gatedrnn/kernels/graphs.py)
    graphs: bool = False
    block_b: int | None = None    # batch rows per program (a power of two ≥ 16)
    block_h: int | None = None    # hidden units per program (a power of two ≥ 16)
    block_k: int | None = None    # reduction chunk of the recurrent product (power of two ≥ 16)
    num_warps: int | None = None
    poison: bool = False          # fill working buffers with NaN first: unwritten elements show
    fast_launch: bool = True      # later per-step launches skip Triton's JIT (triton._Launcher)


settings = Settings()


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _pow2(n: int, low: int, high: int) -> int:
    return max(low, min(high, 1 << max(0, n - 1).bit_length()))


@dataclasses.dataclass(frozen=True)
class Plan:
    mode: str
    block_b: int
    block_h: int
    block_k: int
    num_warps: int
    graphs: bool = False     # step and gemm modes only
    measured: bool = False   # mode and graphs are the GPU check's choice (choices.py)
    tuned: bool = False      # ... and some of the tiles its --tune's


MODES = ("auto", "step", "gemm", "sequence", "persistent", "resident")
# Every way to launch a sequence, by name: a mode, "+graphs" with CUDA graphs of its launches.
LAUNCHES = ("step", "step+graphs", "gemm", "gemm+graphs", "sequence", "persistent", "resident")
ONE_LAUNCH = ("sequence", "persistent", "resident")   # the whole sequence in one launch
BARRIER = ("persistent", "resident")   # one launch whose programs meet at a grid-wide barrier
RESIDENT_TILE = 16    # rows and units of a resident program's tile: its strips grow with it
RESIDENT_WARPS = 8    # its rows of the state are a whole k_pad(H) wide
# (multiprocessors, shared memory a program may opt into) of an H100 SXM, the device the
# plan's rules were sized for; its shared memory is also the default where torch does not say.
H100 = (132, 227 << 10)
# Shared memory a resident program takes per byte of its strips of R (the strips themselves and
# the operands of its products), for 4-byte and 2-byte weights: the larger of the forward's and
# the backward's kernel, measured with benchmarks/compile_check.py for sm_90 (Triton 3.6,
# 16 × 16 tiles, 8 warps, H from 256 to 1024, specialised as the JIT specialises G1-G4's
# launches: without that the bfloat16 factors came out 1.3-2.8, and the H100 refused a launch
# planned by them; benchmarks/results/gpu-notes.md, v6).
SHARED_PER_STRIP_BYTE = {"rnn": (3.0, 3.2), "gru_simple": (3.0, 3.1), "gru": (2.0, 2.1),
                         "gru_reset_after": (4.0, 4.4), "lstm": (3.0, 3.1),
                         "lstm_peephole": (3.0, 3.1), "rnn_relu": (3.0, 3.2)}


def launch(name: str) -> dict:
    """The Settings fields of a launch named as in LAUNCHES (for benchmarks and tests)."""
    if name not in LAUNCHES:
        raise ValueError(f"launch: expected one of {list(LAUNCHES)}, got {name!r}")
    mode, _, graphs = name.partition("+")
    return dict(mode=mode, graphs=bool(graphs))


def sequence_fits(B: int, H: int) -> bool:
    """Is (B, H) small enough for the "sequence" mode, which gives a block of rows (16 to 64,
    as the plan tiles them) and all H units to one program? That program's per-step product,
    block rows × H × G·H, must be no more than at B = 1, H = 256 (G4), about a µs on one
    multiprocessor's tensor cores; beyond that a launch per step spreads the same work over
    the chip faster than one program does it alone."""
    return _pow2(B, 16, 64) * H * H <= 16 * 256 * 256


def k_pad(H: int) -> int:
    """The resident launch's reduction length: H rounded up to a power of two (≥ 16)."""
    return _pow2(H, 16, 1 << 30)


def device_limits() -> tuple[int, int]:
    """(multiprocessors, shared memory a program may have) of the current CUDA device; under
    the interpreter or without CUDA, one program and no limit."""
    if interpreting() or not torch.cuda.is_available():
        return 1, 1 << 62
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return props.multi_processor_count, getattr(props, "shared_memory_per_block_optin", H100[1])


def resident_fits(B: int, H: int, dtype: torch.dtype, variant: str,
                  device: tuple[int, int]) -> bool:
    """Can the "resident" launch run (B, H) on a device of (multiprocessors, shared memory per
    program)? A program per tile of 16 rows × 16 units, all resident at once, so no more tiles
    than multiprocessors; and each program's strips of R (gates × k_pad(H) × 16 weights) with
    what its products need beside them (SHARED_PER_STRIP_BYTE) within its shared memory."""
    programs, shared = device
    tiles = -(-B // RESIDENT_TILE) * -(-H // RESIDENT_TILE)
    size = dtype.itemsize
    strips = get_variant(variant).num_gates * k_pad(H) * RESIDENT_TILE * size
    return tiles <= programs and strips * SHARED_PER_STRIP_BYTE[variant][size == 2] <= shared


def plan(B: int, H: int, dtype: torch.dtype = torch.float32, variant: str | None = None) -> Plan:
    """How to launch a (B, H) problem of `variant` with weights of `dtype`.
    - mode and graphs: settings.mode if not "auto"; else the launch the GPU check timed fastest
      at the nearest measured problem (gatedrnn/kernels/choices.py), where there is one near
      enough; else the whole sequence in one launch for tiny problems (B ≤ 16, H ≤ 128), where
      a launch per step would cost more than the step's work, and a launch per step for the
      rest, passing over a launch this machine refused (`refused`: then "step", then "gemm").
      settings.graphs adds graphs to a per-step mode.
    - rows per program: B rounded up to a power of two, 16 to 64 (tl.dot needs 16 or more); 16
      for "resident", whose larger row blocks spill registers (benchmarks/compile_check.py);
    - units per program: 32, or 16 where 32 would give fewer than 64 tiles, so that a step
      still spreads over half of an H100's 132 multiprocessors; 16 for "resident", whose
      strips of R grow with them;
    - reduction chunk: 64 for 16-bit weights (tensor-core operands), 32 for float32;
    - 8 warps for tiles of 2048 elements or more: with 4, the four gates' accumulators of a
      64 × 32 tile spill registers (benchmarks/compile_check.py); 8 for "resident", whose rows
      of the state are a whole k_pad(H) wide.
    These tiles are first guesses: where the GPU check's --tune found faster ones near (B, H)
    that passed its correctness check, the plan takes those (choices.py); settings' own tiles
    go before both.
    """
    s = settings
    if s.mode not in MODES:
        raise ValueError(f"settings.mode: expected one of {list(MODES)}, got {s.mode!r}")
    mode, graphs = s.mode, s.graphs
    measured = _measured_launch(B, H, dtype, variant) if mode == "auto" else None
    tuned = {}
    if measured is not None:
        mode, graphs = measured["mode"], measured["graphs"] or graphs
        tuned = measured["tiles"]
    elif mode == "auto":
        mode = _heuristic_mode(B, H)
    resident = mode == "resident"
    block_b = s.block_b or tuned.get("block_b") or (RESIDENT_TILE if resident else
                                                    _pow2(B, 16, 64))
    tiles_of_32 = -(-B // block_b) * -(-H // 32)
    block_h = s.block_h or tuned.get("block_h") or (
        RESIDENT_TILE if resident else 32 if tiles_of_32 >= 64 or mode == "sequence" else 16)
    block_k = s.block_k or tuned.get("block_k") or (
        32 if dtype in (torch.float32, torch.float64) else 64)
    num_warps = s.num_warps or tuned.get("num_warps") or (
        RESIDENT_WARPS if resident else 8 if block_b * block_h >= 2048 else 4)
    return Plan(mode, block_b, block_h, block_k, num_warps, graphs and mode in ("step", "gemm"),
                measured is not None, bool(tuned))


def _heuristic_mode(B: int, H: int) -> str:
    ways = ("sequence", "step", "gemm") if B <= 16 and H <= 128 else ("step", "gemm")
    return next((mode for mode in ways if mode not in refused), ways[0])


def _measured_launch(B: int, H: int, dtype: torch.dtype, variant: str | None) -> dict | None:
    """The Settings fields of the launch measured fastest near (B, H), if one was, and under
    "tiles" those tuned for it near enough (choices.nearest); never under the interpreter,
    whose tests choose their launches, nor a "sequence" or "resident" launch that (B, H) does
    not fit, nor a launch this machine has refused (`refused`). A resident launch keeps its
    own tiles, on which resident_fits counts."""
    if variant is None or not _use_measurements():
        return None
    chosen = _choices().nearest(variant, B, H, dtype)
    if chosen is None:
        return None
    name = chosen.launch
    if name in refused or (name == "sequence" and not sequence_fits(B, H)):
        return None
    if name == "resident" and not resident_fits(B, H, dtype, variant, device_limits()):
        return None
    return dict(launch(name), tiles={} if name == "resident" else chosen.tiles())


def _use_measurements() -> bool:
    return not interpreting()


# Launches this machine refused: measured fastest and then failed here (see replanned), or
# named by the GPU check's --refuse (a launch that lost the device). Not taken again.
refused: set[str] = set()


class Refused(Exception):
    """A launch the plan took from the GPU check's choices failed here before it ran."""

    def __init__(self, launch: str, error: Exception):
        super().__init__(launch, error)
        self.launch, self.error = launch, error


def replanned(run, *args):
    """run(*args); if it ends in Refused, warn, stop taking that launch from measurements,
    and run again with what the plan takes without it. The refused launch never ran (a
    cooperative launch refused, a recording that failed), so nothing was written: the second
    run starts from the same inputs. A launch asked for by hand (settings) raises instead."""
    try:
        return run(*args)
    except Refused as failure:
        refused.add(failure.launch)
        warnings.warn(f"gatedrnn: the {failure.launch} launch, measured fastest for this "
                      f"problem, failed here ({failure.error}); planning without it from now "
                      "on", stacklevel=3)
        return run(*args)


def choices_from(path) -> None:
    """Plan from the choices in `path` from now on (the benchmarks: another run's file)."""
    choices.PATH = path
    _choices.cache_clear()


@functools.cache
def _choices() -> choices.Measured:
    found = choices.load()
    unknown = sorted({c.launch for c in found} - set(LAUNCHES))
    if unknown:
        raise ValueError(f"{choices.PATH}: launch: expected one of {list(LAUNCHES)}, "
                         f"got {unknown}")
    return choices.Measured(found)


def launch_name(p: Plan | Settings) -> str:
    """The name in LAUNCHES of how `p` launches (a Plan, or Settings with a launch set)."""
    return p.mode + ("+graphs" if p.graphs else "")
