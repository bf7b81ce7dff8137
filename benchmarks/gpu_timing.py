"""The GPU check's timings (benchmarks/gpu_check.py, step 2): CUDA-event medians of gatedrnn's
triton backend in each launch, of cuDNN (torch.nn) and of the loop backend, inference and
training, per shape, dtype and variant; and the compiling ahead of them."""

from __future__ import annotations

import functools
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

import gatedrnn
import gpu_common as common   # benchmarks/gpu_common.py
from gatedrnn.kernels import choices, planner
from gpu_common import (LOOP_SHAPES, SHAPES, graph_counts, peer_class, replays_since, threads,
                        use, worth_timing)
from gpu_table import DTYPES, TARGET      # benchmarks/gpu_table.py
from speed import inference, train_step   # benchmarks/speed.py: a training step, inference


def time_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median of `repeats` CUDA-event timings after warm-up runs (the clock on a dry run)."""
    for _ in range(warmup):
        fn()
    if common.DEVICE != "cuda":
        return statistics.median(_clock_ms(fn) for _ in range(repeats))
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _clock_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def module_for(variant, H, dtype, backend=None):
    backend = backend or ("triton" if common.DEVICE == "cpu" else None)   # a dry run says it
    return gatedrnn.for_variant(variant, H, H, backend=backend).to(common.DEVICE, dtype)


def _time_as(launch, variant, H, x, repeats) -> tuple[float, float]:
    """Inference and training times of `variant` launched as `launch`."""
    use(launch)
    try:
        module = module_for(variant, H, x.dtype)
        return time_ms(inference(module, x), repeats), time_ms(train_step(module, x), repeats)
    finally:
        planner.settings.mode, planner.settings.graphs = "auto", False


def precompile(shapes, dtypes, variants, modes, until=float("inf"), announce=False) -> float:
    """Compile, many at once, the kernels the timings launch in `modes` ("auto": the plan's
    launch; "+graphs" launches use their mode's kernels), by running every shape, dtype and
    variant for two steps in each mode (each block shape and mode is a kernel of its own), in
    threads (gpu_common.threads): one after the other this would be much of the script's device
    time. The variants with targets first; no run starts after `until` (time.time()), and with
    `announce` each prints a line as it ends (which the probe's watchdog hears). Done in the
    probe's child (gpu_probe.child), so that a failure here costs nothing but time, and the
    timings compile whatever is missing themselves. Returns the seconds it took."""
    start = time.monotonic()
    ordered = sorted(variants, key=lambda v: v not in TARGET)
    try:
        for mode in modes:   # the settings are global: one mode at a time
            jobs = [(s, d, v) for v in ordered for s in shapes for d in dtypes
                    if mode == "auto" or worth_timing(mode, *SHAPES[s][1:], d, v)]
            planner.settings = planner.Settings(mode=mode)
            run = functools.partial(_two_steps, mode=mode, until=until, announce=announce)
            with ThreadPoolExecutor(threads()) as pool:
                list(pool.map(lambda job: run(*job), jobs))
    except Exception as error:
        common.stop_if_lost(mode, error)
        print(f"  precompile stopped: {type(error).__name__}: {error}", flush=True)
    planner.settings = planner.Settings()
    return time.monotonic() - start


def _two_steps(sname: str, dname: str, variant: str, mode: str, until: float,
               announce: bool) -> None:
    if time.time() > until:
        return
    _, B, H = SHAPES[sname]
    x = torch.randn(2, B, H, device=common.DEVICE, dtype=DTYPES[dname])
    module = module_for(variant, H, x.dtype)
    train_step(module, x)()
    inference(module, x)()
    if announce:
        print(f"  compiled {mode} {sname} {dname} {variant}", flush=True)


def timings(rows, shapes, dtypes, variants, launches, repeats, deadline, loop_repeats,
            saved) -> None:
    """Appends to `rows` a row per shape, dtype and variant: first the plan's launch against
    cuDNN and the loop for every row (the variants with targets first), then the other
    launches, again the variants with targets first: a run cut short by its budget still has
    the whole table it is judged by, and the plan's choices (benchmarks/gpu_table.py) what it
    could time. saved() after each shape and dtype writes what is measured so far."""
    first = [v for v in variants if v in TARGET]
    groups = (first, [v for v in variants if v not in TARGET])
    for group in groups:
        for sname, dname, x in _inputs(shapes, dtypes):
            peers = {}
            for variant in group:
                rows.append(_time_row(sname, dname, variant, x, peers, repeats, deadline,
                                      loop_repeats))
            saved()
    for group in groups:
        for sname, dname, x in _inputs(shapes, dtypes):
            for row in rows:
                if (row["shape"], row["dtype"]) == (sname, dname) and row["variant"] in group:
                    _time_launches(row, x, launches, repeats, deadline)
            saved()


def _inputs(shapes, dtypes):
    """(shape, dtype, x) for each shape and dtype, one x at a time."""
    for sname in shapes:
        T, B, H = SHAPES[sname]
        for dname in dtypes:
            yield sname, dname, torch.randn(T, B, H, device=common.DEVICE, dtype=DTYPES[dname])
            _release_memory()


def _release_memory() -> None:
    """Give the caching allocator's blocks back between shapes: the next may need larger."""
    if common.DEVICE == "cuda":
        torch.cuda.empty_cache()


def _time_row(sname, dname, variant, x, peers, repeats, deadline, loop_repeats) -> dict:
    """The row of the plan's launch, with cuDNN's and the loop's times (by launch: "infer",
    "train", "replayed" and "errors" map launch names to what was measured in each)."""
    T, B, H = x.shape
    plan = planner.plan(B, H, x.dtype, variant)
    launch = planner.launch_name(plan)
    row = dict(shape=sname, T=T, B=B, H=H, dtype=dname, variant=variant, mode=launch,
               infer={}, train={}, replayed={}, errors={})
    if plan.tuned:   # the plan's launch runs with tiles a --tune chose (choices.py)
        row["tiles"] = {k: getattr(plan, k) for k in choices.TILES}
    if time.monotonic() > deadline:
        return {**row, "skipped": "time budget"}
    try:
        _measure_row(row, variant, x, peers, repeats, loop_repeats)
    except Exception as error:   # one failing row must not cost the whole run its table
        common.stop_if_lost(launch, error)
        planner.settings = planner.Settings()
        row.update(infer={}, train={}, skipped=f"{type(error).__name__}: {str(error)[:120]}")
        print(f"  {sname} {dname:4s} {variant:16s} failed: {row['skipped']}", flush=True)
    return row


def _measure_row(row, variant, x, peers, repeats, loop_repeats) -> None:
    H, launch = row["H"], row["mode"]
    cls = peer_class(variant)
    if cls not in peers:
        peer = cls(H, H).to(common.DEVICE, x.dtype)
        peers[cls] = dict(infer=time_ms(inference(peer, x), repeats),
                          train=time_ms(train_step(peer, x), repeats))
    ours = module_for(variant, H, x.dtype)   # launched as the plan says
    counts = graph_counts()
    row["infer"][launch] = time_ms(inference(ours, x), repeats)
    row["train"][launch] = time_ms(train_step(ours, x), repeats)
    if planner.launch(launch)["graphs"]:
        row["replayed"][launch] = replays_since(counts)
    row.update(cudnn=cls.__name__, cudnn_infer=peers[cls]["infer"],
               cudnn_train=peers[cls]["train"])
    if row["shape"] in LOOP_SHAPES and loop_repeats:
        row["loop_train"] = time_ms(train_step(module_for(variant, H, x.dtype, "loop"), x),
                                    loop_repeats, warmup=1)
    print(f"  {row['shape']} {row['dtype']:4s} {variant:16s} {launch:12s} train "
          f"{row['train'][launch]:8.2f} ms  cuDNN {row['cudnn_train']:8.2f} ms", flush=True)


def _time_launches(row, x, launches, repeats, deadline) -> None:
    """Inference and training times in the launches the plan did not choose, where they are
    worth timing: the numbers that set the plan (each launch's kernels compile anew)."""
    if "skipped" in row:   # the row itself was not measured
        return
    for launch in launches:
        if launch in row["train"] or not worth_timing(launch, row["B"], row["H"], row["dtype"],
                                                      row["variant"]):
            continue
        if time.monotonic() > deadline:
            row["errors"][launch] = "time budget"
            continue
        try:
            counts = graph_counts()
            row["infer"][launch], row["train"][launch] = _time_as(launch, row["variant"],
                                                                  row["H"], x, repeats)
            if planner.launch(launch)["graphs"]:   # warm-up included: the first call
                row["replayed"][launch] = replays_since(counts)   # records
        except Exception as error:   # the row keeps its other numbers
            common.stop_if_lost(launch, error)
            row["train"][launch] = float("nan")
            row["errors"][launch] = f"{type(error).__name__}: {str(error)[:200]}"
        print(f"  {row['shape']} {row['dtype']:4s} {row['variant']:16s} {launch:12s} train "
              f"{row['train'][launch]:8.2f} ms", flush=True)

