"""The GPU check's --tune (benchmarks/gpu_check.py): one variant's training time under the plan's
launch and its neighbours (tiles, reduction chunk, warps, the other launches)."""

from __future__ import annotations

import dataclasses
import time

import torch

import gpu_common as common   # benchmarks/gpu_common.py
from gatedrnn.kernels import planner
from gpu_common import SHAPES, worth_timing
from gpu_table import DTYPES   # benchmarks/gpu_table.py
from gpu_timing import module_for, time_ms   # benchmarks/gpu_timing.py
from speed import train_step                 # benchmarks/speed.py


def _candidates(base, B: int, H: int, dname: str, variant: str, launches) -> list[dict]:
    """Settings for the plan's launch and its neighbours: each block size halved or doubled,
    the other reduction chunk and warp count, the other launches with the plan's tiles, and the
    step mode's launches through Triton's JIT instead of the direct call."""
    plans = [base]
    for field, values in (("block_h", (16, 32, 64)), ("block_b", (16, 32, 64)),
                          ("block_k", (32, 64)), ("num_warps", (4, 8))):
        for value in values:
            if value != getattr(base, field) and (field != "block_b" or value <= max(16, B)):
                plans.append(dataclasses.replace(base, **{field: value}))
    for launch in launches:
        if launch != base.mode and worth_timing(launch, B, H, dname, variant):
            plans.append(dataclasses.replace(base, **planner.launch(launch)))
    out = [dict(_settings_of(p), fast_launch=True) for p in plans]
    if base.mode == "step":
        out.append(dict(_settings_of(base), fast_launch=False))
    return out


def _settings_of(p) -> dict:
    """The Settings fields that launch as the Plan `p` does."""
    fields = dataclasses.asdict(p)
    del fields["measured"]
    return fields


def tune(shapes, dtypes, variant, launches, repeats, deadline) -> list[dict]:
    """Training time of `variant` under the plan's launch and its neighbours, per shape and
    dtype: the numbers to set the plan by (gatedrnn.kernels.planner.plan)."""
    rows = []
    for sname in shapes:
        T, B, H = SHAPES[sname]
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = torch.randn(T, B, H, device=common.DEVICE, dtype=dtype)
            candidates = _candidates(planner.plan(B, H, dtype, variant), B, H, dname, variant,
                                     launches)
            for k, cand in enumerate(candidates):
                row = dict(shape=sname, dtype=dname, variant=variant, chosen=k == 0, **cand)
                if time.monotonic() > deadline:
                    rows.append({**row, "skipped": "time budget"})
                    continue
                planner.settings = planner.Settings(**cand)
                try:
                    row["train"] = time_ms(train_step(module_for(variant, H, dtype), x), repeats)
                except Exception as error:   # a launch the compiler refuses is a result too
                    row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                finally:
                    planner.settings = planner.Settings()
                rows.append(row)
                print(f"  tune {sname} {dname} {cand}: {row.get('train', row.get('error'))}",
                      flush=True)
    return rows

