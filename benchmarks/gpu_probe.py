"""The GPU check's child process (benchmarks/gpu_check.py --probe): it compiles the timings'
kernels while the parent checks correctness, and checks the persistent mode, whose grid-wide
barrier could hang the GPU, where it can be killed."""

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
    return Probe([sys.executable, str(GPU_CHECK), "--probe", "--probe-until", str(until),
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



def child(args) -> None:
    """The child's whole run (gpu_check.py --probe): compile, check persistent, and compile for
    it only once it passed; the last line its rows (PROBE_MARK)."""
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
