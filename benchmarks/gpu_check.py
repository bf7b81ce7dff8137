"""The GPU check (issue 4): correctness first, then speed against cuDNN, in one run.

1. Correctness: every variant, float32 and bfloat16, forwards and backwards in time with
   lengths, in every launch of the triton backend ("step": a launch per step; "gemm": a cuBLAS
   product, then a launch for the gates, per step; "+graphs": those launches recorded into a
   CUDA graph, checked on a replay with new values; "sequence": one launch, a program per
   block of rows; "persistent": one launch over the chip with a grid-wide barrier per step),
   on fresh random inputs, against the NumPy reference in float64 (the "reference"
   backend, on the same rounded inputs). The backend's working buffers
   are filled with NaN first, so an element no kernel writes shows. The persistent mode is
   checked in a child process that is killed if its barrier hangs; it is timed only if it
   passed. That child first compiles the timings' kernels, many threads at once (they reach
   this process through Triton's cache on disk), and once the persistent mode has passed, its
   kernels too, until half the time budget is spent. Also gatedrnn against cuDNN itself on the
   same weights (lstm, gru_reset_after, rnn).
2. Timings with CUDA events (median after warm-up) of gatedrnn's triton backend, and in the
   same run torch.nn.LSTM / GRU / RNN (cuDNN) and the "loop" backend, forward (inference, no
   gradients) and forward+backward (a training step on the sum of the outputs, parameter
   gradients included), at
   G1 T=1024 B=16 H=768, G2 T=256 B=64 H=256, G3 T=128 B=256 H=1024, G4 T=1024 B=1 H=256
   (I = H), float32 (TF32 off for both gatedrnn and cuDNN) and bfloat16. Then every variant
   is timed in every other launch too, so that `python benchmarks/gpu_table.py RESULT.json
   --choose` can set the plan's choices (gatedrnn/kernels/choices.py) from this one run and
   print its table as the plan then launches.

One table printed last; raw numbers in a JSON file. A time budget keeps the whole run inside the
GPU machine's lease: what it leaves out is listed as not measured.

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out $OUT          # on the GPU machine
    PYTHONPATH=. python3 benchmarks/gpu_check.py --quick             # T / 8, fewer repeats
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --dry-run      # no GPU: the script itself,
                                                                      # tiny shapes, on the CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

import gatedrnn
from gatedrnn.functional import argument_shapes, lengths_to_mask, recurrence
from gatedrnn.interop.torch_nn import from_torch
from gatedrnn.kernels import gemm
from gatedrnn.kernels import planner
from gatedrnn.kernels import triton as triton_backend
from gpu_table import DTYPES, TARGET, summary, table, tuning_table   # benchmarks/gpu_table.py
from speed import inference, train_step   # benchmarks/speed.py: a training step, inference

SHAPES = {"G1": (1024, 16, 768), "G2": (256, 64, 256), "G3": (128, 256, 1024),
          "G4": (1024, 1, 256)}   # T, B, H (I = H)
VARIANTS = ["gru", "lstm", "lstm_peephole", "gru_reset_after", "gru_simple", "rnn"]
PEER = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "lstm_peephole": torch.nn.LSTM}
LOOP_SHAPES = ("G1", "G2")                                    # where ≥ 10× the loop is asked
TOLERANCE = {"f32": 1e-4, "bf16": 3e-2}
DEVICE = "cuda"
LAUNCHES = list(planner.LAUNCHES)   # "step", "step+graphs", "gemm", ...


def worth_timing(launch: str, B: int, H: int) -> bool:
    """"sequence" gives a block of rows' whole recurrence to one program: only where the plan
    would take it (planner.sequence_fits). "gemm" adds a cuBLAS call per step: it can only lose
    where a step is a vector (B = 1)."""
    mode = planner.launch(launch)["mode"]
    if mode == "sequence":
        return planner.sequence_fits(B, H)
    return mode != "gemm" or B > 1


def peer_class(variant: str):
    return PEER.get(variant, torch.nn.GRU)


# ---------------------------------------------------------------------------------------------
# 1. Correctness

def _random_leaves(variant, T, B, I, H, dtype, g):
    shapes = argument_shapes(variant, T, B, I, H)
    scale = {"weight_ih": I ** -0.5, "weight_hh": H ** -0.5}
    return {k: (scale.get(k, 0.5) * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype)
            for k, s in shapes.items()}


def _outputs_and_grads(variant, leaves, mask, reverse, backend, weights):
    leaves = {k: v.detach().requires_grad_() for k, v in leaves.items()}
    args = [leaves[k] for k in ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "a0", "c0")]
    outs = recurrence(*args, variant=variant, peephole=leaves["peephole"], mask=mask,
                      reverse=reverse, backend=backend)
    loss = sum((o.double() * w.to(o.device)).sum() for o, w in zip(outs, weights))
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    named = {f"d_{k}": g for k, g in zip(leaves, grads) if g is not None}
    return {**dict(zip(("out", "a_n", "c_n"), outs)), **named}


def _graph_counts() -> tuple[int, int]:
    return triton_backend.graphs.replayed, triton_backend.graphs.recorded


def _replays_since(counts: tuple[int, int]) -> str:
    """How many calls with graphs since `counts` replayed a recording, of how many."""
    replayed, recorded = (now - then for now, then in zip(_graph_counts(), counts))
    return f"{replayed}/{replayed + recorded}"


def _rel(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("nan")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@dataclasses.dataclass
class Case:
    """One correctness case: inputs rounded to `dtype`, and what the reference makes of them."""

    variant: str
    dname: str
    reverse: bool
    low: dict           # the leaves, rounded to the dtype
    mask: torch.Tensor
    weights: list       # of the outputs in the loss
    want: dict | None = None


def correctness(variants, launches, seed: int, dry_run: bool) -> list[dict]:
    """Max relative error over outputs, final states and every gradient, per variant, dtype,
    direction and launch, against the reference on the same (rounded) inputs. The cases of a
    launch run in threads, so that their kernels compile side by side (compiling is most of
    this check's time); those with graphs one after the other (a recording is on its own)."""
    T, B, I, H = (5, 17, 8, 40) if dry_run else (24, 21, 48, 160)   # several tiles each way
    g = torch.Generator().manual_seed(seed)
    cases = []
    for variant in variants:
        for dname, dtype in DTYPES.items():
            for reverse in (False, True):
                lengths = torch.randint(1, T + 1, (B,), generator=g)
                lengths[0] = T
                weights = [torch.randn(s, generator=g, dtype=torch.float64)
                           for s in ((T, B, H), (B, H), (B, H))]
                # The reference sees the rounded values in float64: the error measured is the
                # kernels', not the rounding of the inputs.
                low = {k: v.to(dtype) for k, v in
                       _random_leaves(variant, T, B, I, H, torch.float64, g).items()}
                cases.append(Case(variant, dname, reverse, low, lengths_to_mask(lengths, T),
                                  weights))
    with ThreadPoolExecutor(_threads()) as pool:
        for case, want in zip(cases, pool.map(_reference, cases)):
            case.want = want
        rows = []
        # 16 × 16 tiles, as the plan gives G1 and G4: the timings then find these kernels
        # compiled (each block shape compiles anew).
        planner.settings = planner.Settings(poison=True, block_b=16, block_h=16)
        try:
            for launch in launches:
                graphs = _use(launch)
                check = functools.partial(_check, launch, graphs)
                rows += list(map(check, cases) if graphs else pool.map(check, cases))
        finally:
            planner.settings = planner.Settings()
    return rows


def _threads() -> int:
    """Threads for work that compiles kernels: Triton's compiler leaves the GIL (2.5× on two
    cores, measured). The interpreter is not thread-safe: one thread there."""
    return 1 if planner.interpreting() else min(16, os.cpu_count() or 1)


def _reference(case: Case) -> dict:
    return _outputs_and_grads(case.variant, {k: v.double() for k, v in case.low.items()},
                              case.mask, case.reverse, "reference", case.weights)


def _check(launch: str, graphs: bool, case: Case) -> dict:
    """The row of one case in one launch (which the caller has set)."""
    row = dict(variant=case.variant, dtype=case.dname, mode=launch, reverse=case.reverse)
    mask = case.mask.to(DEVICE)
    try:
        if graphs:   # recorded on other values: the run checked should replay that recording
            _outputs_and_grads(case.variant, {k: (-v).to(DEVICE) for k, v in case.low.items()},
                               mask, case.reverse, "triton", case.weights)
        counts = _graph_counts()
        got = _outputs_and_grads(case.variant, {k: v.to(DEVICE) for k, v in case.low.items()},
                                 mask, case.reverse, "triton", case.weights)
        if graphs:
            row["replayed"] = _replays_since(counts)
    except Exception as error:   # recorded: the run goes on to the table
        row.update(max_rel_err=float("nan"), ok=False,
                   worst=f"{type(error).__name__}: {error}"[:300])
        print(f"  {case.variant} {case.dname} {launch}: {row['worst']}", flush=True)
        return row
    errs = {k: _rel(got[k], case.want[k]) for k in case.want}
    worst = max(errs, key=lambda k: (errs[k] != errs[k], errs[k]))
    row.update(max_rel_err=errs[worst], worst=worst, ok=errs[worst] <= TOLERANCE[case.dname])
    print(f"  {case.variant:16s} {case.dname:5s} {launch:12s} "
          f"{'backward' if case.reverse else 'forward ':8s} "
          f"max rel err {errs[worst]:.1e} ({worst})"
          + (f", replayed {row['replayed']}" if graphs else ""), flush=True)
    return row


PERSISTENT_START = "PERSISTENT START"   # the child's line before its persistent runs
PROBE_MARK = "PROBE "                   # the child's last line: its rows, in JSON


class Probe:
    """A child process whose output lines are collected, with the time each came, as they
    come: so that it can be judged hung by its silence, not only by a total timeout."""

    def __init__(self, cmd: list[str]):
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, bufsize=1)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def output(self) -> list[str]:
        return [line for _, line in self.lines]


def probe_persistent(args, until: float) -> Probe:
    """A child process that first compiles the timings' kernels (precompile), then checks the
    persistent mode (a grid-wide barrier that never opens would hang the GPU, and a child can be
    killed and its failure recorded), and if that passed compiles the persistent timings'
    kernels, starting none after `until` (time.time()). Its kernels reach this process through
    Triton's cache on disk, while this process checks the other launches."""
    return Probe([sys.executable, __file__, "--probe", "--probe-until", str(until),
                  "--variants", *args.variants, "--shapes", *args.shapes, "--dtypes",
                  *args.dtypes, "--launches", *args.launches,
                  "--out", str(args.out)] + (["--dry-run"] if args.dry_run else []))


def probe_result(probe: Probe, timeout: float, quiet: float = 60) -> tuple[list[dict], str]:
    """The child's rows and a word on them. It is killed as hung after `timeout` seconds from
    now, or once its persistent runs have begun (PERSISTENT_START) and it has printed nothing
    for `quiet` seconds: each run prints its line, and compiling a run's kernels takes seconds,
    so a hung barrier costs `quiet` seconds of the GPU's time, not the whole timeout."""
    deadline = time.monotonic() + timeout
    while probe.process.poll() is None:
        now = time.monotonic()
        lines = list(probe.lines)
        started = any(line == PERSISTENT_START for _, line in lines)
        silent = now - lines[-1][0] if lines else 0.0
        if now > deadline or (started and silent > quiet):
            probe.process.kill()
            probe.process.wait()
            print("\n".join(probe.output()[-5:]), flush=True)
            return [], (f"hung: killed after {silent:.0f} s without output" if now <= deadline
                        else f"hung: killed after {timeout:.0f} s")
        time.sleep(0.2)
    probe.reader.join()
    output = probe.output()
    print("\n".join(line for line in output if not line.startswith(PROBE_MARK)), flush=True)
    rows = [line for line in output if line.startswith(PROBE_MARK)]
    if probe.process.returncode != 0 or not rows:
        return [], f"failed (exit {probe.process.returncode})"
    rows = json.loads(rows[-1][len(PROBE_MARK):])
    return rows, ("ok" if all(r["ok"] for r in rows) else "wrong results")


def against_cudnn(seed: int, dry_run: bool) -> list[dict]:
    """gatedrnn (triton) on cuDNN's own weights: outputs and input gradients, float32."""
    torch.manual_seed(seed)
    T, B, H = (4, 3, 16) if dry_run else (64, 32, 256)
    rows = []
    for variant, cls in (("lstm", torch.nn.LSTM), ("gru_reset_after", torch.nn.GRU),
                         ("rnn", torch.nn.RNN)):
        peer = cls(H, H)
        ours = from_torch(peer).to(DEVICE)
        ours.backend = "triton"
        peer = peer.to(DEVICE)
        x = torch.randn(T, B, H, device=DEVICE, requires_grad=True)
        try:
            with torch.backends.cudnn.flags(allow_tf32=False):
                want, _ = peer(x)
                (d_want,) = torch.autograd.grad(want.sum(), x)
            got, _ = ours(x)
            (d_got,) = torch.autograd.grad(got.sum(), x)
            err = max(_rel(got, want), _rel(d_got, d_want))
        except Exception as error:   # recorded: the run goes on to the table
            print(f"  {variant}: {type(error).__name__}: {error}", flush=True)
            err = float("nan")
        rows.append(dict(variant=variant, max_rel_err=err, ok=err <= 1e-4))
        print(f"  {variant:16s} (triton, {x.device}) vs cuDNN on its weights: "
              f"max rel err {err:.1e}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# 2. Timings

def time_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median of `repeats` CUDA-event timings after warm-up runs (the clock on a dry run)."""
    for _ in range(warmup):
        fn()
    if DEVICE != "cuda":
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


def _module(variant, H, dtype, backend=None):
    backend = backend or ("triton" if DEVICE == "cpu" else None)   # a dry run says it
    return gatedrnn.for_variant(variant, H, H, backend=backend).to(DEVICE, dtype)


def _use(launch: str) -> bool:
    """Launch the triton backend's sequences as `launch` from now on; with graphs?"""
    fields = planner.launch(launch)
    for name, value in fields.items():
        setattr(planner.settings, name, value)
    return fields["graphs"]


def _time_as(launch, variant, H, x, repeats) -> tuple[float, float]:
    """Inference and training times of `variant` launched as `launch`."""
    _use(launch)
    try:
        module = _module(variant, H, x.dtype)
        return time_ms(inference(module, x), repeats), time_ms(train_step(module, x), repeats)
    finally:
        planner.settings.mode, planner.settings.graphs = "auto", False


def precompile(shapes, dtypes, variants, modes, until=float("inf"), announce=False) -> float:
    """Compile, many at once, the kernels the timings launch in `modes` ("auto": the plan's
    launch; "+graphs" launches use their mode's kernels), by running every shape, dtype and
    variant for two steps in each mode (each block shape and mode is a kernel of its own), in
    threads (_threads): one after the other this would be much of the script's device time.
    The variants with targets first; no run starts after `until` (time.time()), and with
    `announce` each prints a line as it ends (which the probe's watchdog hears). Done in the
    child of probe_persistent, so that a failure here costs nothing but time, and the timings
    compile whatever is missing themselves. Returns the seconds it took."""
    start = time.monotonic()
    ordered = sorted(variants, key=lambda v: v not in TARGET)
    try:
        for mode in modes:   # the settings are global: one mode at a time
            jobs = [(s, d, v) for v in ordered for s in shapes for d in dtypes
                    if mode == "auto" or worth_timing(mode, *SHAPES[s][1:])]
            planner.settings = planner.Settings(mode=mode)
            run = functools.partial(_two_steps, mode=mode, until=until, announce=announce)
            with ThreadPoolExecutor(_threads()) as pool:
                list(pool.map(lambda job: run(*job), jobs))
    except Exception as error:
        print(f"  precompile stopped: {type(error).__name__}: {error}", flush=True)
    planner.settings = planner.Settings()
    return time.monotonic() - start


def _two_steps(sname: str, dname: str, variant: str, mode: str, until: float,
               announce: bool) -> None:
    if time.time() > until:
        return
    _, B, H = SHAPES[sname]
    x = torch.randn(2, B, H, device=DEVICE, dtype=DTYPES[dname])
    module = _module(variant, H, x.dtype)
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
            yield sname, dname, torch.randn(T, B, H, device=DEVICE, dtype=DTYPES[dname])
            _release_memory()


def _release_memory() -> None:
    """Give the caching allocator's blocks back between shapes: the next may need larger."""
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def _time_row(sname, dname, variant, x, peers, repeats, deadline, loop_repeats) -> dict:
    """The row of the plan's launch, with cuDNN's and the loop's times (by launch: "infer",
    "train", "replayed" and "errors" map launch names to what was measured in each)."""
    T, B, H = x.shape
    launch = planner.launch_name(planner.plan(B, H, x.dtype, variant))
    row = dict(shape=sname, T=T, B=B, H=H, dtype=dname, variant=variant, mode=launch,
               infer={}, train={}, replayed={}, errors={})
    if time.monotonic() > deadline:
        return {**row, "skipped": "time budget"}
    try:
        _measure_row(row, variant, x, peers, repeats, loop_repeats)
    except Exception as error:   # one failing row must not cost the whole run its table
        planner.settings = planner.Settings()
        row.update(infer={}, train={}, skipped=f"{type(error).__name__}: {str(error)[:120]}")
        print(f"  {sname} {dname:4s} {variant:16s} failed: {row['skipped']}", flush=True)
    return row


def _measure_row(row, variant, x, peers, repeats, loop_repeats) -> None:
    H, launch = row["H"], row["mode"]
    cls = peer_class(variant)
    if cls not in peers:
        peer = cls(H, H).to(DEVICE, x.dtype)
        peers[cls] = dict(infer=time_ms(inference(peer, x), repeats),
                          train=time_ms(train_step(peer, x), repeats))
    ours = _module(variant, H, x.dtype)   # launched as the plan says
    counts = _graph_counts()
    row["infer"][launch] = time_ms(inference(ours, x), repeats)
    row["train"][launch] = time_ms(train_step(ours, x), repeats)
    if planner.launch(launch)["graphs"]:
        row["replayed"][launch] = _replays_since(counts)
    row.update(cudnn=cls.__name__, cudnn_infer=peers[cls]["infer"],
               cudnn_train=peers[cls]["train"])
    if row["shape"] in LOOP_SHAPES and loop_repeats:
        row["loop_train"] = time_ms(train_step(_module(variant, H, x.dtype, "loop"), x),
                                    loop_repeats, warmup=1)
    print(f"  {row['shape']} {row['dtype']:4s} {variant:16s} {launch:12s} train "
          f"{row['train'][launch]:8.2f} ms  cuDNN {row['cudnn_train']:8.2f} ms", flush=True)


def _time_launches(row, x, launches, repeats, deadline) -> None:
    """Inference and training times in the launches the plan did not choose, where they are
    worth timing: the numbers that set the plan (each launch's kernels compile anew)."""
    if "skipped" in row:   # the row itself was not measured
        return
    for launch in launches:
        if launch in row["train"] or not worth_timing(launch, row["B"], row["H"]):
            continue
        if time.monotonic() > deadline:
            row["errors"][launch] = "time budget"
            continue
        try:
            counts = _graph_counts()
            row["infer"][launch], row["train"][launch] = _time_as(launch, row["variant"],
                                                                  row["H"], x, repeats)
            if planner.launch(launch)["graphs"]:   # warm-up included: the first call
                row["replayed"][launch] = _replays_since(counts)   # records
        except Exception as error:   # the row keeps its other numbers
            row["train"][launch] = float("nan")
            row["errors"][launch] = f"{type(error).__name__}: {str(error)[:200]}"
        print(f"  {row['shape']} {row['dtype']:4s} {row['variant']:16s} {launch:12s} train "
              f"{row['train'][launch]:8.2f} ms", flush=True)


def _candidates(base, B: int, H: int, launches) -> list[dict]:
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
        if launch != base.mode and worth_timing(launch, B, H):
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
            x = torch.randn(T, B, H, device=DEVICE, dtype=dtype)
            candidates = _candidates(planner.plan(B, H, dtype, variant), B, H,
                                     launches)
            for k, cand in enumerate(candidates):
                row = dict(shape=sname, dtype=dname, variant=variant, chosen=k == 0, **cand)
                if time.monotonic() > deadline:
                    rows.append({**row, "skipped": "time budget"})
                    continue
                planner.settings = planner.Settings(**cand)
                try:
                    row["train"] = time_ms(train_step(_module(variant, H, dtype), x), repeats)
                except Exception as error:   # a launch the compiler refuses is a result too
                    row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                finally:
                    planner.settings = planner.Settings()
                rows.append(row)
                print(f"  tune {sname} {dname} {cand}: {row.get('train', row.get('error'))}",
                      flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# What the run says

def gemm_products() -> str:
    """How the gemm mode multiplied 16-bit operands: the best way this torch took."""
    return "widened (CPU tensors)" if DEVICE == "cpu" else gemm._WAYS[0].__name__.strip("_")


def _write(result: dict, folder: Path, start: float, final: bool = True) -> None:
    """The JSON file; written as the run goes too (final=False, silently), so that a run
    killed by the GPU machine's time limit still leaves what it measured."""
    result["seconds"] = time.monotonic() - start
    result["complete"] = final
    folder.mkdir(parents=True, exist_ok=True)
    kind = "tune" if "tuning" in result else "check"
    path = folder / f"gpu-{kind}-{result['date']}.json"
    path.write_text(json.dumps(result, indent=1))
    if final:
        print(f"\nraw numbers: {path}; {result['seconds']:.0f} s in all\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T / 8 and fewer repeats")
    parser.add_argument("--budget", type=float, default=210.0,
                        help="seconds for the whole run; timings past it are left out")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES))
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES))
    parser.add_argument("--variants", nargs="*", default=VARIANTS)
    parser.add_argument("--no-correctness", action="store_true",
                        help="skip the correctness checks, but for the persistent mode's, which "
                             "guards its timings against a hang")
    parser.add_argument("--launches", nargs="*", default=LAUNCHES, choices=LAUNCHES,
                        help="the launches to check and time (the plan's own always runs)")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: tiny shapes on the CPU under TRITON_INTERPRET=1, to test "
                             "the script (its times mean nothing)")
    parser.add_argument("--tune", metavar="VARIANT", nargs="?", const="lstm",
                        help="instead of the timings table, time VARIANT (default lstm) under the "
                             "plan's launch and its neighbours")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-until", type=float, default=float("inf"),
                        help=argparse.SUPPRESS)   # time.time() past which the child compiles
                                                  # no more persistent kernels
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="folder for the JSON file")
    args = parser.parse_args()
    global DEVICE
    if args.dry_run:
        if not planner.interpreting():
            sys.exit("gpu_check: --dry-run needs TRITON_INTERPRET=1")
        DEVICE = "cpu"
        for k in SHAPES:
            SHAPES[k] = (4, min(SHAPES[k][1], 3), 32)
    elif not torch.cuda.is_available():
        sys.exit("gpu_check: needs a CUDA device (or --dry-run under TRITON_INTERPRET=1)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # Until this run's probe has passed the persistent mode, the plan must not take it from a
    # past run's choices (gatedrnn/kernels/choices.py): a barrier that hangs would hang the run.
    planner.refused.add("persistent")
    if args.probe:   # the child of probe_persistent
        modes = ["auto", *dict.fromkeys(planner.launch(m)["mode"] for m in args.launches
                                        if m != "persistent")]
        seconds = precompile(args.shapes, args.dtypes, args.variants, modes)
        print(f"  kernels for the timings compiled in {seconds:.0f} s", flush=True)
        rows = []
        if "persistent" in args.launches:
            print(PERSISTENT_START, flush=True)
            rows = correctness(args.variants, ["persistent"], int(time.time()), args.dry_run)
            if rows and all(r["ok"] for r in rows):   # only now is it safe to run for speed
                planner.refused.discard("persistent")
                seconds = precompile(args.shapes, args.dtypes, args.variants, ["persistent"],
                                     until=args.probe_until, announce=True)
                print(f"  persistent kernels for the timings compiled in {seconds:.0f} s",
                      flush=True)
        print(PROBE_MARK + json.dumps(rows), flush=True)
        return
    start = time.monotonic()
    deadline = start + args.budget
    if args.quick:
        for k, (T, B, H) in SHAPES.items():
            SHAPES[k] = (max(T // 8, 8), B, H)
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (dry run, interpreter)"
    import triton
    env = dict(device=device, torch=torch.__version__, triton=triton.__version__,
               cudnn=torch.backends.cudnn.version(), cuda=torch.version.cuda)
    print(f"gpu_check: {env}", flush=True)

    result = dict(env=env, date=datetime.date.today().isoformat(), quick=args.quick)
    launches = [m for m in args.launches if m != "persistent"]
    # It compiles, checks persistent, then compiles the persistent timings' kernels until half
    # the budget is spent, beside what follows.
    child = probe_persistent(args, until=time.time() + args.budget / 2)
    if not args.no_correctness:
        print("correctness against the float64 reference:", flush=True)
        result["correctness"] = correctness(args.variants, launches, int(time.time()),
                                            args.dry_run)
        result["against_cudnn"] = against_cudnn(int(time.time()) + 1, args.dry_run)
    probe_rows, status = probe_result(child, timeout=max(180.0, args.budget / 2 + 60))
    if "persistent" in args.launches:
        result["persistent"] = status
        result["correctness" if "correctness" in result else "persistent_check"] = (
            result.get("correctness", []) + probe_rows)
        print(f"persistent mode: {status}", flush=True)
        if status == "ok":
            launches.append("persistent")
            planner.refused.discard("persistent")
    print(f"  ({time.monotonic() - start:.0f} s so far)", flush=True)
    repeats = 3 if args.quick or args.dry_run else 10
    if args.tune:
        print("tuning:", flush=True)
        result["tuning"] = tune(args.shapes, args.dtypes, args.tune, launches, min(repeats, 5),
                                deadline)
        _write(result, args.out, start)
        print(tuning_table(result["tuning"]))
        return
    print("timings:", flush=True)
    _write(result, args.out, start, final=False)
    result["timings"] = rows = []
    timings(rows, args.shapes, args.dtypes, args.variants, launches, repeats, deadline,
            loop_repeats=1 if args.quick or args.dry_run else 2,
            saved=lambda: _write(result, args.out, start, final=False))
    result["gemm_products"] = gemm_products()
    _write(result, args.out, start)
    print(summary(result))
    print()
    print(table(rows, device, launches))


if __name__ == "__main__":
    main()
