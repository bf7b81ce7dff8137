"""The GPU check's table, from its JSON, as the plan launches now; and the plan's choices from it.

benchmarks/gpu_check.py times a training step of every variant in every launch at G1–G4 and
prints its table with the launch the plan chose while it ran. After such a run:

    python benchmarks/gpu_table.py RESULT.json --choose   # write the fastest launches that
                                                          # passed the run's correctness check
                                                          # to gatedrnn/kernels/gpu/choices.json,
                                                          # then print the table as the plan
                                                          # now launches
    python benchmarks/gpu_table.py RESULT.json            # only print

Every number in the table was measured in that one run: choosing picks, row by row, the launch
whose time the table then shows, so one run of the GPU check both sets the plan and measures
it. A launch the run did not time shows as not measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from gatedrnn.kernels import choices
from gatedrnn.kernels import planner
from tasks.report import table as markdown   # benchmarks/tasks/report.py

TARGET = {"gru": 1.25, "lstm": 1.25, "lstm_peephole": 1.4}   # train time ÷ cuDNN, at most
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def _ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "—"


def planned(row: dict) -> str:
    """The launch the plan takes now for the row's problem (as on a GPU)."""
    return planner.launch_name(
        planner.plan(row["B"], row["H"], DTYPES[row["dtype"]], row["variant"]))


def table(rows, device: str, launches, launch_of=lambda row: row["mode"]) -> str:
    """One line per row, with the times of the launch `launch_of(row)`: by default the one the
    plan chose while the check ran."""
    per_launch = [f"train {m}" for m in launches]
    cells = []
    for r in rows:
        launch = launch_of(r)
        cell = dict(r, mode=launch)
        train, infer = r.get("train", {}).get(launch), r.get("infer", {}).get(launch)
        if "skipped" in r or train is None or train != train:
            why = r.get("skipped") or r.get("errors", {}).get(launch) or f"{launch} not timed"
            cell["infer ms"] = f"not measured ({why})"
            cells.append(cell)
            continue
        ratio = train / r["cudnn_train"]
        target = TARGET.get(r["variant"])
        loop = r.get("loop_train")
        cell.update({
            "infer ms": "—" if infer is None else f"{infer:.2f}",
            "÷ cuDNN": _ratio(infer, r["cudnn_infer"]),
            "train ms": f"{train:.2f}",
            "÷ cuDNN (cuDNN ms)": f"{ratio:.2f} ({r['cudnn_train']:.2f})",
            "target": "—" if target is None else
                      ("met" if ratio <= target else f"missed (≤ {target})"),
            "loop ÷": "—" if loop is None else
                      f"{loop / train:.1f}" + ("" if loop / train >= 10 else " (< 10)")})
        for m, column in zip(launches, per_launch):
            value = r["train"].get(m)
            cell[column] = "—" if value is None else f"{value:.2f}"
            if m in r.get("replayed", {}):
                cell[column] += f" ({r['replayed'][m]} replayed)"
        cells.append(cell)
    return (f"GPU check on {device}. Times in ms (CUDA events, medians); ÷ cuDNN = gatedrnn / "
            "cuDNN (below 1: gatedrnn faster); loop ÷ = loop / gatedrnn (the speed-up over the "
            "PyTorch loop); float32 without TF32 on both sides; mode: the launch the plan takes "
            "(the train columns time the other launches too; +graphs: how many recurrence "
            "calls replayed a recorded CUDA graph, of all calls, warm-up included).\n\n" +
            markdown(cells, ["shape", "dtype", "variant", "mode", "infer ms", "÷ cuDNN",
                             "train ms", "÷ cuDNN (cuDNN ms)", "target", "loop ÷", *per_launch]))


def summary(result: dict) -> str:
    """The run's line on correctness: failures, the launches with a grid barrier, graph
    replays, and how the gemm mode's 16-bit products were taken."""
    failed = [r for r in result.get("correctness", []) + result.get("against_cudnn", [])
              + result.get("barrier_check", []) if not r["ok"]]
    barrier = ", ".join(f"{m} {word}" for m, word in result.get("barrier", {}).items())
    checked = "correctness" in result
    return ("correctness: " + ("not checked" if not checked else
                               "all within tolerance" if not failed else
                               f"{len(failed)} FAILED: " + ", ".join(
                                   f"{r['variant']} {r.get('dtype', '')} {r.get('mode', '')} "
                                   f"{r['max_rel_err']:.1e}" for r in failed))
            + f"; barrier launches: {barrier or 'not checked'}"
            + _graph_summary(result.get("correctness", []))
            + f"; gemm's 16-bit products: {result.get('gemm_products', 'not used')}")


def _graph_summary(rows) -> str:
    counts = [tuple(map(int, r["replayed"].split("/"))) for r in rows if "replayed" in r]
    if not counts:
        return ""
    if not sum(c[1] for c in counts):
        return "; graphs: nothing recorded (the interpreter launches directly)"
    return (f"; graphs: {sum(c[0] for c in counts)} of the {sum(c[1] for c in counts)} "
            "checked calls replayed a recording")


def tuning_table(rows) -> str:
    chosen = {(r["shape"], r["dtype"]): r.get("train") for r in rows if r["chosen"]}
    cells = [{**r, "mode": r["mode"] + ("+graphs" if r["graphs"] else "")
              + (" (plan)" if r["chosen"] else ""),
              "warps": r["num_warps"], "launch": "direct" if r["fast_launch"] else "JIT",
              "train ms": (f"{r['train']:.2f}" if "train" in r else
                           r.get("error", r.get("skipped", ""))),
              "÷ plan's": _ratio(r.get("train"), chosen.get((r["shape"], r["dtype"])))}
             for r in rows]
    return markdown(cells, ["shape", "dtype", "mode", "block_b", "block_h", "block_k", "warps",
                            "launch", "train ms", "÷ plan's"])


def passed(result: dict) -> set[str]:
    """The launches every correctness case of the run passed in."""
    rows = result.get("correctness")
    if not rows:
        raise ValueError("RESULT: expected a GPU check with its correctness cases, got one "
                         "without (--no-correctness): choose from a run that checked")
    launches = {r["mode"] for r in rows}
    return {m for m in launches if all(r["ok"] for r in rows if r["mode"] == m)}


def choose(result: dict, source: str) -> dict:
    """The choices file's contents: per timed row, the fastest launch that passed. A row the
    time budget cut short of some launches chooses nothing: there the plan takes what most
    other variants chose (choices.nearest), not the best of a few."""
    ok = passed(result)
    found = []
    for r in result.get("timings", []):
        times = {m: ms for m, ms in r.get("train", {}).items() if m in ok and ms == ms}
        if times and "time budget" not in r.get("errors", {}).values():
            found.append(dict(variant=r["variant"], dtype=r["dtype"], B=r["B"], H=r["H"],
                              launch=min(times, key=times.get), train_ms=times))
    return {"about": "The launch gpu_check timed fastest per problem, dtype and variant, of "
                     "those that passed its correctness check (gatedrnn/kernels/choices.py); "
                     "written by benchmarks/gpu_table.py --choose.",
            "source": source, **result.get("env", {}), "date": result.get("date"),
            "choices": found}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, help="a gpu-check-*.json of benchmarks/gpu_check.py")
    parser.add_argument("--choose", action="store_true",
                        help="first write the run's fastest launches as the plan's choices")
    parser.add_argument("--choices", type=Path, default=choices.PATH,
                        help="the choices file to write (default: the package's)")
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text())
    if not result.get("complete", True):
        print(f"{args.result.name}: the run did not finish; this is what it measured until then")
    if args.choose:
        try:
            data = choose(result, args.result.name)
        except ValueError as error:
            sys.exit(f"gpu_table: {error}")
        args.choices.write_text(json.dumps(data, indent=1) + "\n")
        print(f"{len(data['choices'])} choices written to {args.choices}")
        choices.PATH = args.choices
        planner._choices.cache_clear()
    launches = sorted({m for r in result.get("timings", []) for m in r.get("train", {})},
                      key=planner.LAUNCHES.index)
    print(summary(result))
    print()
    print(table(result.get("timings", []), result.get("env", {}).get("device", "?"), launches,
                planned))


if __name__ == "__main__":
    main()
