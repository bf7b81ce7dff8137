"""The GPU check's --tune (benchmarks/gpu_check.py): one variant's training time under the plan's
launch and its neighbours (tiles, reduction chunk, warps, the other launches), each first
checked against the float64 reference at the same problem over CHECK_STEPS steps.

Its JSON sets the plan's tiles: `python benchmarks/gpu_table.py CHECK.json --tuned TUNE.json
--choose` makes the fastest candidate that passed its check the plan's choice at that problem
(gatedrnn/kernels/choices.py).
"""

from __future__ import annotations

import dataclasses
import time

import torch

import gpu_common as common   # benchmarks/gpu_common.py
from gatedrnn.kernels import planner
from gpu_common import SHAPES, worth_timing
from gpu_correctness import check, new_case, reference   # benchmarks/gpu_correctness.py
from gpu_table import DTYPES, candidate_launch   # benchmarks/gpu_table.py
from gpu_timing import module_for, time_ms   # benchmarks/gpu_timing.py
from speed import train_step                 # benchmarks/speed.py

# Steps of each candidate's correctness check: a tile's rows, units and reduction chunks are the
# same at every step, and the dry run's problems are that long anyway.
CHECK_STEPS = 8


def _planned(B: int, H: int, dtype: torch.dtype, variant: str, launch: str) -> planner.Plan:
    """The plan's own tiles for `launch` at this problem (its heuristic's)."""
    planner.settings = planner.Settings(**planner.launch(launch))
    try:
        return planner.plan(B, H, dtype, variant)
    finally:
        planner.settings = planner.Settings()


def _candidates(base, B: int, H: int, dname: str, variant: str, launches) -> list[dict]:
    """Settings for the plan's launch and its neighbours: each block size halved or doubled,
    the other reduction chunk and warp count (not for "resident", whose fit counts on its own
    tiles), the other launches with the tiles the plan gives them, and the step mode's
    launches through Triton's JIT instead of the direct call."""
    plans = [base]
    for field, values in (("block_h", (16, 32, 64)), ("block_b", (16, 32, 64)),
                          ("block_k", (32, 64)), ("num_warps", (4, 8))):
        for value in values:
            if (base.mode != "resident" and value != getattr(base, field)
                    and (field != "block_b" or value <= max(16, B))):
                plans.append(dataclasses.replace(base, **{field: value}))
    for launch in launches:
        if launch != planner.launch_name(base) and worth_timing(launch, B, H, dname, variant):
            plans.append(_planned(B, H, DTYPES[dname], variant, launch))
    out = [dict(_settings_of(p), fast_launch=True) for p in plans]
    if base.mode == "step":
        out.append(dict(_settings_of(base), fast_launch=False))
    return out


def _settings_of(p) -> dict:
    """The Settings fields that launch as the Plan `p` does."""
    fields = dataclasses.asdict(p)
    del fields["measured"], fields["tuned"]
    return fields


def tune(rows, shapes, dtypes, variant, launches, repeats, deadline, seed: int,
         saved=lambda: None) -> None:
    """Appends to `rows` the training time of `variant` under the plan's launch and its
    neighbours, per shape and dtype, each candidate timed only if it passed its correctness
    check (buffers poisoned, as in the check's): the numbers to set the plan by
    (gatedrnn/kernels/choices.py). saved() after each candidate writes what is measured so
    far."""
    g = torch.Generator().manual_seed(seed)
    for sname in shapes:
        T, B, H = SHAPES[sname]
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = torch.randn(T, B, H, device=common.DEVICE, dtype=dtype)
            checked = new_case(variant, dname, False, min(T, CHECK_STEPS), B, H, H, g)
            checked.want = reference(checked)
            candidates = _candidates(planner.plan(B, H, dtype, variant), B, H, dname, variant,
                                     launches)
            for k, cand in enumerate(candidates):
                row = dict(shape=sname, B=B, H=H, dtype=dname, variant=variant, chosen=k == 0,
                           **cand)
                rows.append(row)
                if time.monotonic() > deadline:
                    row["skipped"] = "time budget"
                    continue
                try:
                    planner.settings = planner.Settings(**cand, poison=True)
                    found = check(candidate_launch(cand), cand["graphs"], checked)
                    row.update(ok=found["ok"], max_rel_err=found["max_rel_err"])
                    if found["ok"]:
                        planner.settings = planner.Settings(**cand)
                        row["train"] = time_ms(train_step(module_for(variant, H, dtype), x),
                                               repeats)
                except Exception as error:   # a launch the compiler refuses is a result too
                    common.stop_if_lost(candidate_launch(cand), error)
                    row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                finally:
                    planner.settings = planner.Settings()
                    saved()
                print(f"  tune {sname} {dname} {cand}: "
                      f"{row.get('train', row.get('error', 'failed its check'))}", flush=True)
