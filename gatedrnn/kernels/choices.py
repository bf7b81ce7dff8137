"""The launches the GPU check timed fastest: the triton backend's plan where one was measured.

benchmarks/gpu_check.py times a training step of every variant in every launch (step,
step+graphs, gemm, gemm+graphs, sequence, persistent, resident) at four problems, G1–G4, on a
GPU.
`python benchmarks/gpu_table.py RESULT.json --choose` writes, for each problem, dtype and
variant, the fastest launch that also passed the run's correctness check into gpu/choices.json,
with the GPU, versions and run it came from. `planner.plan` takes the launch measured at the
problem nearest to the one it plans (the variant's own, or what most variants took there),
counting distance in octaves of B and of H, as long as that is at most MAX_DISTANCE; further
away, or where nothing was measured, its heuristic.

Why the nearest measured problem and not a model of the GPU: which launch wins turns on launch
gaps, L2 traffic and cuBLAS's tiles, which are measured more reliably than modelled, and the
four problems span the batch sizes and widths the issue asks about. The file ships empty until
a GPU run fills it.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from pathlib import Path

import torch

PATH = Path(__file__).parent / "gpu" / "choices.json"
MAX_DISTANCE = 2.0   # octaves of B plus octaves of H
DTYPE_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "bf16"}


@dataclasses.dataclass(frozen=True)
class Choice:
    """The launch (a name of planner.LAUNCHES) timed fastest for `variant` at (B, H) with
    weights of `dtype` ("f32" or "bf16")."""

    variant: str
    dtype: str
    B: int
    H: int
    launch: str


def load(path: Path | None = None) -> tuple[Choice, ...]:
    """The choices in `path` (PATH); none if there is no such file."""
    path = path or PATH
    if not path.exists():
        return ()
    data = json.loads(path.read_text())
    fields = [f.name for f in dataclasses.fields(Choice)]
    try:
        return tuple(Choice(**{k: entry[k] for k in fields}) for entry in data["choices"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: expected {{'choices': [{{{', '.join(fields)}}}, ...]}}, "
                         f"got an entry without {error}") from error


def _distance(c: Choice, B: int, H: int) -> float:
    return abs(math.log2(B / c.B)) + abs(math.log2(H / c.H))


def nearest(choices, variant: str, B: int, H: int, dtype: torch.dtype) -> str | None:
    """The launch measured fastest at the measured problem nearest to (B, H): `variant`'s own
    if it was measured there, else the launch most variants measured there took; None if no
    problem of this dtype was measured within MAX_DISTANCE (float64 never is)."""
    name = DTYPE_NAMES.get(dtype)
    scored = [(_distance(c, B, H), c) for c in choices if c.dtype == name]
    best = min((d for d, _ in scored), default=math.inf)
    if best > MAX_DISTANCE:
        return None
    there = [c for d, c in scored if d == best]
    own = [c.launch for c in there if c.variant == variant]
    return own[0] if own else collections.Counter(c.launch for c in there).most_common(1)[0][0]


class Measured:
    """A file's choices with `nearest` remembered per problem: the plan asks on every call
    (forward and backward), and the answer for a problem never changes."""

    def __init__(self, choices):
        self.choices = tuple(choices)
        self._answers: dict = {}

    def nearest(self, variant: str, B: int, H: int, dtype: torch.dtype) -> str | None:
        key = (variant, B, H, dtype)
        if key not in self._answers:
            self._answers[key] = nearest(self.choices, variant, B, H, dtype)
        return self._answers[key]
