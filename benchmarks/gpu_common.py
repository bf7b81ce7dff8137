"""What the parts of the GPU check (benchmarks/gpu_check.py) share: the problems it measures,
where it runs, how it sets the triton backend's launch, and how it compares two tensors."""

from __future__ import annotations

import os

import torch

from gatedrnn.kernels import planner
from gatedrnn.kernels import triton as triton_backend
from gpu_table import DTYPES   # benchmarks/gpu_table.py

SHAPES = {"G1": (1024, 16, 768), "G2": (256, 64, 256), "G3": (128, 256, 1024),
          "G4": (1024, 1, 256)}   # T, B, H (I = H)
VARIANTS = ["gru", "lstm", "lstm_peephole", "gru_reset_after", "gru_simple", "rnn"]
PEER = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "lstm_peephole": torch.nn.LSTM}
LOOP_SHAPES = ("G1", "G2")                                    # where ≥ 10× the loop is asked
TOLERANCE = {"f32": 1e-4, "bf16": 3e-2}
DEVICE = "cuda"                      # "cpu" on a dry run (run_on_the_cpu)
LAUNCHES = list(planner.LAUNCHES)   # "step", "step+graphs", "gemm", ...


def worth_timing(launch: str, B: int, H: int, dname: str, variant: str) -> bool:
    """"sequence" gives a block of rows' whole recurrence to one program: only where the plan
    would take it (planner.sequence_fits). "gemm" adds a cuBLAS call per step: it can only lose
    where a step is a vector (B = 1). "resident" only where its programs and their strips of R
    fit this device (planner.resident_fits)."""
    mode = planner.launch(launch)["mode"]
    if mode == "sequence":
        return planner.sequence_fits(B, H)
    if mode == "resident":
        return planner.resident_fits(B, H, DTYPES[dname], variant, planner.device_limits())
    return mode != "gemm" or B > 1


class LostDevice(RuntimeError):
    """A launch left the device unusable (an illegal address, say: the CUDA context is lost,
    and every later call in this process fails). The run stops there and starts again in a new
    process with that launch refused (gpu_check.rerun, --refuse)."""

    def __init__(self, launch: str, error: Exception):
        super().__init__(f"the {launch} launch lost the device: {type(error).__name__}: "
                         f"{str(error)[:200]}")
        self.launch = launch
        self.path = None   # the JSON of the run it stopped, once written


def device_works() -> bool:
    """Can this process still run work on its device?"""
    if DEVICE != "cuda":
        return True
    try:
        torch.cuda.synchronize()
        return torch.ones(1, device="cuda").add_(1).item() == 2.0
    except Exception:   # noqa: BLE001 -- any failure here means the context is gone
        return False


def stop_if_lost(launch: str, error: Exception) -> None:
    """After `launch` raised `error`: LostDevice if the device no longer works, since then
    every row after this one would fail for this launch's sake."""
    if not device_works():
        raise LostDevice(launch, error) from error


def peer_class(variant: str):
    return PEER.get(variant, torch.nn.GRU)


def run_on_the_cpu() -> None:
    """A dry run: tiny shapes on CPU tensors, which the triton backend runs under
    TRITON_INTERPRET=1. The other modules read DEVICE when they run, so they follow."""
    global DEVICE
    DEVICE = "cpu"
    for k in SHAPES:   # H = 16: one tile of 16 units, as the resident launch needs there
        SHAPES[k] = (4, min(SHAPES[k][1], 3), 16)


def graph_counts() -> tuple[int, int, int]:
    g = triton_backend.graphs
    return g.replayed, g.recorded, g.direct


def replays_since(counts: tuple[int, int, int]) -> str:
    """How many calls with graphs since `counts` replayed a recording, of how many."""
    replayed, recorded, direct = (now - then for now, then in zip(graph_counts(), counts))
    return f"{replayed}/{replayed + recorded + direct}"


def rel(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("nan")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def threads() -> int:
    """Threads for work that compiles kernels: Triton's compiler leaves the GIL (2.5× on two
    cores, measured). The interpreter is not thread-safe: one thread there."""
    return 1 if planner.interpreting() else min(16, os.cpu_count() or 1)


def use(launch: str) -> bool:
    """Launch the triton backend's sequences as `launch` from now on; with graphs?"""
    fields = planner.launch(launch)
    for name, value in fields.items():
        setattr(planner.settings, name, value)
    return fields["graphs"]

