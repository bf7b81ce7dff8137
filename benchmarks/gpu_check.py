"""The GPU check: correctness first, then speed against cuDNN, in one run.

1. Correctness: every variant, float32 and bfloat16, forwards and backwards in time with
   lengths, in every launch of the triton backend ("step": a launch per step; "gemm": a cuBLAS
   product, then a launch for the gates, per step; "+graphs": those launches recorded into a
   CUDA graph, checked on a replay with new values; "sequence": one launch, a program per
   block of rows; "persistent": one launch over the chip with a grid-wide barrier per step;
   "resident": as persistent, a program per tile holding its strips of R on-chip), on fresh
   random inputs, against the NumPy reference in float64 (the "reference" backend, on the same
   rounded inputs). The backend's working buffers are filled with NaN first, so an element no
   kernel writes shows. The launches with a grid barrier (persistent, resident) are checked
   in a child process that is killed if a barrier hangs; each is timed only if it passed.
   That child first compiles the timings' kernels, many threads at once (they reach this
   process through Triton's cache on disk), and once a barrier launch has passed, its kernels
   too, until half the time budget is spent. Also gatedrnn against cuDNN itself on the
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
GPU machine's lease: what it leaves out is listed as not measured. A launch that leaves the
device unusable (an illegal address loses the CUDA context, and every later call in the process
fails) stops the run: it keeps that run's JSON as lost-LAUNCH-*.json and starts again in a new
process with the launch refused (--refuse: not run at all, not even as the plan's, whose
heuristic takes the next way) for the budget left, at most twice (--reruns).

The parts live beside this file: gpu_common.py (the problems, the device), gpu_correctness.py
(1), gpu_probe.py (the child process), gpu_timing.py (2), gpu_tune.py (--tune), gpu_table.py
(the table, the plan's choices).

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out $OUT          # on the GPU machine
    PYTHONPATH=. python3 benchmarks/gpu_check.py --quick             # T / 8, fewer repeats
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --dry-run      # no GPU: the script itself,
                                                                      # tiny shapes, on the CPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

import gpu_common as common   # benchmarks/gpu_common.py: shapes, variants, the device
from gatedrnn.kernels import gemm
from gatedrnn.kernels import planner
from gpu_common import LAUNCHES, SHAPES, VARIANTS
from gpu_correctness import against_cudnn, correctness   # benchmarks/gpu_correctness.py
from gpu_probe import child, probe_result, start_probe, statuses   # benchmarks/gpu_probe.py
from gpu_table import DTYPES, summary, table, tuning_table   # benchmarks/gpu_table.py
from gpu_timing import timings   # benchmarks/gpu_timing.py
from gpu_tune import tune        # benchmarks/gpu_tune.py


# ---------------------------------------------------------------------------------------------
# What the run says

LOST_DEVICE_EXIT = 3     # the exit status of a run a launch lost the device in, not rerun
MIN_RERUN_SECONDS = 60   # a rerun compiles and checks again: pointless with less budget


def gemm_products() -> str:
    """How the gemm mode multiplied 16-bit operands: the best way this torch took."""
    if common.DEVICE == "cpu":
        return "widened (CPU tensors)"
    return gemm._WAYS[0].__name__.strip("_")


def _write(result: dict, folder: Path, start: float, final: bool = True) -> Path:
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
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T / 8 and fewer repeats")
    parser.add_argument("--budget", type=float, default=210.0,
                        help="seconds for the whole run; timings past it are left out")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES))
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES))
    parser.add_argument("--variants", nargs="*", default=VARIANTS)
    parser.add_argument("--no-correctness", action="store_true",
                        help="skip the correctness checks, but for the barrier launches', which "
                             "guard their timings against a hang")
    parser.add_argument("--launches", nargs="*", default=LAUNCHES, choices=LAUNCHES,
                        help="the launches to check and time (the plan's own always runs)")
    parser.add_argument("--refuse", nargs="*", default=[], choices=LAUNCHES,
                        help="launches not to run at all, not even as the plan's (a run that "
                             "a launch lost the device in runs again with it refused)")
    parser.add_argument("--reruns", type=int, default=2,
                        help="how many times a run that a launch lost the device in starts "
                             "again without it, in a new process, with the budget left")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: tiny shapes on the CPU under TRITON_INTERPRET=1, to test "
                             "the script (its times mean nothing)")
    parser.add_argument("--tune", metavar="VARIANT", nargs="?", const="lstm",
                        help="instead of the timings table, time VARIANT (default lstm) under the "
                             "plan's launch and its neighbours, each checked first (its JSON "
                             "sets tiles: gpu_table.py --tuned)")
    parser.add_argument("--choices", type=Path, default=None,
                        help="plan from this choices file instead of the package's "
                             "(gatedrnn/kernels/choices.py)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-until", type=float, default=float("inf"),
                        help=argparse.SUPPRESS)   # time.time() past which the child compiles
                                                  # no more persistent kernels
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="folder for the JSON file")
    args = parser.parse_args()
    if args.tune:   # its probe then compiles and checks that variant alone
        args.variants = [args.tune]
    args.launches = [m for m in args.launches if m not in args.refuse]
    if args.choices:
        planner.choices_from(args.choices)
    if args.dry_run:
        if not planner.interpreting():
            sys.exit("gpu_check: --dry-run needs TRITON_INTERPRET=1")
        common.run_on_the_cpu()
    elif not torch.cuda.is_available():
        sys.exit("gpu_check: needs a CUDA device (or --dry-run under TRITON_INTERPRET=1)")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # Until this run's probe has passed a launch with a grid barrier, the plan must not take it
    # from a past run's choices (gatedrnn/kernels/choices.py): a barrier that hangs would hang
    # the run.
    planner.refused.update(planner.BARRIER)
    planner.refused.update(args.refuse)   # for good: the plan takes the next way instead
    start = time.monotonic()
    try:
        if args.probe:   # the child of start_probe
            child(args)
        else:
            check(args, start)
    except common.LostDevice as lost:
        print(f"gpu_check: {lost}", flush=True)
        if args.probe:   # the parent finds its barrier launches not checked
            sys.exit(LOST_DEVICE_EXIT)
        rerun(args, lost, args.budget - (time.monotonic() - start))


def rerun(args, lost: common.LostDevice, left: float) -> None:
    """Start again in a new process (a new CUDA context) with `lost.launch` refused too, for
    the `left` seconds of the budget; the lost run's JSON is kept beside, renamed. Exit with
    LOST_DEVICE_EXIT instead where no rerun is left or the budget is nearly spent."""
    refuse = [*args.refuse, lost.launch]
    if args.reruns < 1 or left < MIN_RERUN_SECONDS:
        print(f"gpu_check: no time or rerun left; run again with --refuse {' '.join(refuse)}",
              flush=True)
        sys.exit(LOST_DEVICE_EXIT)
    if lost.path:   # the rerun writes its own under the same name
        lost.path.rename(lost.path.with_name(f"lost-{lost.launch}-{lost.path.name}"))
    print(f"gpu_check: running again without it, for the {left:.0f} s left of the budget",
          flush=True)
    os.execv(sys.executable, [sys.executable, *sys.argv, "--budget", f"{left:.0f}",
                              "--refuse", *refuse, "--reruns", str(args.reruns - 1)])


def check(args, start: float) -> None:
    """The run in this process (not the probe's child)."""
    if args.quick:
        for k, (T, B, H) in SHAPES.items():
            SHAPES[k] = (max(T // 8, 8), B, H)
    device = ("CPU (dry run, interpreter)" if common.DEVICE == "cpu"
              else torch.cuda.get_device_name())
    import triton
    env = dict(device=device, torch=torch.__version__, triton=triton.__version__,
               cudnn=torch.backends.cudnn.version(), cuda=torch.version.cuda,
               limits=planner.device_limits())   # what the plan fits one-launch modes to
    print(f"gpu_check: {env}", flush=True)

    result = dict(env=env, date=datetime.date.today().isoformat(), quick=args.quick,
                  refused=args.refuse)
    try:
        _check(args, result, start)
    except common.LostDevice as lost:   # what it measured until then, and the launch to blame
        result["lost_device"] = dict(launch=lost.launch, error=str(lost))
        lost.path = _write(result, args.out, start, final=False)
        raise


def _check(args, result: dict, start: float) -> None:
    deadline = start + args.budget
    launches = [m for m in args.launches if m not in planner.BARRIER]
    device = result["env"]["device"]
    # It compiles, checks the barrier launches, then compiles their timings' kernels until half
    # the budget is spent, beside what follows.
    probe = start_probe(args, until=time.time() + args.budget / 2)
    if not args.no_correctness:
        print("correctness against the float64 reference:", flush=True)
        result["correctness"] = correctness(args.variants, launches, int(time.time()),
                                            args.dry_run)
        result["against_cudnn"] = against_cudnn(int(time.time()) + 1, args.dry_run)
    probe_rows, status = probe_result(probe, timeout=max(180.0, args.budget / 2 + 60))
    barrier = [m for m in planner.BARRIER if m in args.launches]
    if barrier:
        result["barrier"] = statuses(probe_rows, status, barrier)
        result["correctness" if "correctness" in result else "barrier_check"] = (
            result.get("correctness", []) + probe_rows)
        for launch, word in result["barrier"].items():
            print(f"{launch} launch: {word}", flush=True)
            if word == "ok":
                launches.append(launch)
                planner.refused.discard(launch)
    print(f"  ({time.monotonic() - start:.0f} s so far)", flush=True)
    repeats = 3 if args.quick or args.dry_run else 10
    if args.tune:
        print("tuning:", flush=True)
        result["tuning"] = []
        tune(result["tuning"], args.shapes, args.dtypes, args.tune, launches, min(repeats, 5),
             deadline, int(time.time()) + 2,
             saved=lambda: _write(result, args.out, start, final=False))
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
