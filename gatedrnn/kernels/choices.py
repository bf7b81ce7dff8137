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

A choice may also carry tiles (block_b, block_h, block_k, num_warps): those of the fastest
candidate of the check's --tune that passed its own correctness check there (`gpu_table.py
RESULT.json --tuned TUNE.json --choose`). The plan takes a variant's own tuned tiles within
TILE_DISTANCE of where they were tuned, and its heuristic's tiles elsewhere: tiles trade the
number of programs against each one's work, which moves with B·H faster than the best launch
does.

Why the nearest measured problem and not a model of the GPU: which launch wins turns on launch
gaps, L2 traffic and cuBLAS's tiles, which are measured more reliably than modelled, and the
four problems span the batch sizes and widths of the GPU check. The file holds what an H100
measured (docs/gpu.md); another GPU's run replaces it.
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
TILE_DISTANCE = 1.0  # ... within which a variant's tuned tiles are taken
TILES = ("block_b", "block_h", "block_k", "num_warps")
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
    # Tuned tiles (planner.Settings' fields of these names); None: the plan's heuristic.
    block_b: int | None = None
    block_h: int | None = None
    block_k: int | None = None
    num_warps: int | None = None

    def tiles(self) -> dict:
        """The tuned tiles this choice carries, by Settings field."""
        return {k: getattr(self, k) for k in TILES if getattr(self, k) is not None}


def load(path: Path | None = None) -> tuple[Choice, ...]:
    """The choices in `path` (PATH); none if there is no such file."""
    path = path or PATH
    if not path.exists():
        return ()
    data = json.loads(path.read_text())
    fields = [f.name for f in dataclasses.fields(Choice) if f.name not in TILES]
    try:
        found = tuple(Choice(**{k: entry[k] for k in fields},
                             **{k: entry.get(k) for k in TILES}) for entry in data["choices"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: expected {{'choices': [{{{', '.join(fields)}}}, ...]}}, "
                         f"got an entry without {error}") from error
    for c in found:
        for k, value in c.tiles().items():
            low = 1 if k == "num_warps" else 16   # tl.dot's operands are 16 or more a side
            if not (isinstance(value, int) and value >= low and value & (value - 1) == 0):
                raise ValueError(f"{path}: {k}: expected a power of two ≥ {low}, got "
                                 f"{value!r} ({c.variant} {c.dtype} B={c.B} H={c.H})")
    return found


def _distance(c: Choice, B: int, H: int) -> float:
    return abs(math.log2(B / c.B)) + abs(math.log2(H / c.H))


def nearest(choices, variant: str, B: int, H: int, dtype: torch.dtype) -> Choice | None:
    """The choice at the measured problem nearest to (B, H): `variant`'s own if it was measured
    there, with its tuned tiles if that is within TILE_DISTANCE; else one of the launch most
    variants measured there took, without tiles (tuned tiles are a variant's own); None if no
    problem of this dtype was measured within MAX_DISTANCE (float64 never is)."""
    dname = DTYPE_NAMES.get(dtype)
    scored = [(_distance(c, B, H), c) for c in choices if c.dtype == dname]
    best = min((d for d, _ in scored), default=math.inf)
    if best > MAX_DISTANCE:
        return None
    there = [c for d, c in scored if d == best]
    own = [c for c in there if c.variant == variant]
    if own:
        return own[0] if best <= TILE_DISTANCE else dataclasses.replace(
            own[0], **dict.fromkeys(TILES))
    launch = collections.Counter(c.launch for c in there).most_common(1)[0][0]
    return Choice(variant, dname, there[0].B, there[0].H, launch)


class Measured:
    """A file's choices with `nearest` remembered per problem: the plan asks on every call
    (forward and backward), and the answer for a problem never changes."""

    def __init__(self, choices):
        self.choices = tuple(choices)
        self._answers: dict = {}

    def nearest(self, variant: str, B: int, H: int, dtype: torch.dtype) -> Choice | None:
        key = (variant, B, H, dtype)
        if key not in self._answers:
            self._answers[key] = nearest(self.choices, variant, B, H, dtype)
        return self._answers[key]
