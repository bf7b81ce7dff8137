"""The GPU check's child process (benchmarks/gpu_check.py --probe): it compiles the timings'
kernels while the parent checks correctness, and checks the launches whose grid-wide barrier
could hang the GPU (planner.BARRIER: persistent, resident), where it can be killed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from gatedrnn.kernels import planner
from gpu_correctness import correctness   # benchmarks/gpu_correctness.py
from gpu_timing import precompile         # benchmarks/gpu_timing.py

GPU_CHECK = Path(__file__).with_name("gpu_check.py")
BARRIER_START = "BARRIER START"   # the child's line before its runs with a grid barrier
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


def start_probe(args, until: float) -> Probe:
    """A child process that first compiles the timings' kernels (precompile), then checks the
    launches with a grid-wide barrier (one that never opens would hang the GPU, and a child can
    be killed and its failure recorded), and compiles the timings' kernels of those that
    passed, starting none after `until` (time.time()). Its kernels reach this process through
    Triton's cache on disk, while this process checks the other launches."""
    return Probe([sys.executable, str(GPU_CHECK), "--probe", "--probe-until", str(until),
                  "--variants", *args.variants, "--shapes", *args.shapes, "--dtypes",
                  *args.dtypes, "--launches", *args.launches,
                  "--out", str(args.out)] + (["--dry-run"] if args.dry_run else [])
                 + (["--choices", str(args.choices)] if args.choices else [])
                 + (["--refuse", *args.refuse] if args.refuse else []))


def probe_result(probe: Probe, timeout: float, quiet: float = 60) -> tuple[list[dict], str]:
    """The child's rows and a word on them. It is killed as hung after `timeout` seconds from
    now, or once its barrier runs have begun (BARRIER_START) and it has printed nothing
    for `quiet` seconds: each run prints its line, and compiling a run's kernels takes seconds,
    so a hung barrier costs `quiet` seconds of the GPU's time, not the whole timeout."""
    deadline = time.monotonic() + timeout
    while probe.process.poll() is None:
        now = time.monotonic()
        lines = list(probe.lines)
        started = any(line == BARRIER_START for _, line in lines)
        silent = now - lines[-1][0] if lines else 0.0
        if now > deadline or (started and silent > quiet):
            probe.process.kill()
            probe.process.wait()
            print("\n".join(probe.output()[-5:]), flush=True)
            return _rows(probe.output()), (
                f"hung: killed after {silent:.0f} s without output" if now <= deadline
                else f"hung: killed after {timeout:.0f} s")
        time.sleep(0.2)
    probe.reader.join()
    output = probe.output()
    print("\n".join(line for line in output if not line.startswith(PROBE_MARK)), flush=True)
    if probe.process.returncode != 0 or not any(x.startswith(PROBE_MARK) for x in output):
        return _rows(output), f"failed (exit {probe.process.returncode})"
    rows = _rows(output)
    return rows, ("ok" if all(r["ok"] for r in rows) else "wrong results")


def _rows(output: list[str]) -> list[dict]:
    """The rows of the child's last PROBE_MARK line (it prints one after each launch checked,
    so that a launch that hangs does not take the others' rows with it)."""
    marked = [line for line in output if line.startswith(PROBE_MARK)]
    return json.loads(marked[-1][len(PROBE_MARK):]) if marked else []


def child(args) -> None:
    """The child's whole run (gpu_check.py --probe): compile, check the barrier launches, and
    compile for each only once it passed; the last line its rows (PROBE_MARK)."""
    modes = ["auto", *dict.fromkeys(planner.launch(m)["mode"] for m in args.launches
                                    if m not in planner.BARRIER)]
    seconds = precompile(args.shapes, args.dtypes, args.variants, modes)
    print(f"  kernels for the timings compiled in {seconds:.0f} s", flush=True)
    rows, passed = [], []
    barrier = [m for m in planner.BARRIER if m in args.launches]
    if barrier:
        print(BARRIER_START, flush=True)
    for launch in barrier:
        checked = correctness(args.variants, [launch], int(time.time()), args.dry_run)
        rows += checked
        print(PROBE_MARK + json.dumps(rows), flush=True)
        if checked and all(r["ok"] for r in checked):   # only now is it safe to run for speed
            planner.refused.discard(launch)
            passed.append(launch)
    for launch in passed:
        seconds = precompile(args.shapes, args.dtypes, args.variants, [launch],
                             until=args.probe_until, announce=True)
        print(f"  {launch} kernels for the timings compiled in {seconds:.0f} s", flush=True)
    print(PROBE_MARK + json.dumps(rows), flush=True)


def statuses(rows: list[dict], status: str, launches) -> dict:
    """Each barrier launch's word: whether every case of it passed, where its cases came back;
    else the child's own (hung, failed), or "not checked"."""
    words = {}
    for launch in launches:
        mine = [r for r in rows if r["mode"] == launch]
        words[launch] = ("ok" if mine and all(r["ok"] for r in mine) else
                         "wrong results" if mine else
                         status if status.startswith(("hung", "failed")) else "not checked")
    return words
