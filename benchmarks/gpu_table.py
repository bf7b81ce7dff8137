"""The GPU check's table, from its JSON, as the plan launches now; and the plan's choices from it.

benchmarks/gpu_check.py times a training step of every variant in every launch at G1–G4 and
prints its table with the launch the plan chose while it ran. After such a run:

    python benchmarks/gpu_table.py RESULT.json --choose   # write the fastest launches that
                                                          # passed the run's correctness check
                                                          # to gatedrnn/kernels/gpu/choices.json,
                                                          # then print the table as the plan
                                                          # now launches
    python benchmarks/gpu_table.py RESULT.json --tuned TUNE.json --choose
                                                          # and where a --tune run found a
                                                          # faster candidate that passed its
                                                          # check, that launch with its tiles
    python benchmarks/gpu_table.py RESULT.json            # only print
    python benchmarks/gpu_table.py RESULT.json MORE.json --choose
                                                          # MORE.json (a --no-correctness
                                                          # rerun of rows the first cut short)
                                                          # replaces RESULT.json's rows of the
                                                          # same shape, dtype and variant
    python benchmarks/gpu_table.py RESULT.json --worst    # the row furthest over its target
                                                          # as the plan now launches it (after
                                                          # --choose, if given): "variant shape
                                                          # dtype", or nothing

Every number in the table was measured in that one run: choosing picks, row by row, the launch
whose time the table then shows, so one run of the GPU check both sets the plan and measures
it. A launch the run did not time shows as not measured. Several runs make one table where
they ran on one GPU model (each row's ratios are of times from one run) and the later ones
only time rows again: a run whose time budget cut rows short is completed by one of those rows
alone, with --no-correctness (the first run's check stands for the same kernels). Rows whose
plan now has tiles from a --tune show that run's time for them in the tuning table printed
after the main one.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch

from gatedrnn.kernels import choices
from gatedrnn.kernels import planner
from tasks.report import table as markdown   # benchmarks/tasks/report.py

TARGET = {"gru": 1.25, "lstm": 1.25, "lstm_peephole": 1.4}   # train time ÷ cuDNN, at most
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def _timed(ms) -> bool:
    """Was it timed? NaN: the launch failed; None: it was not run."""
    return ms is not None and ms == ms


def _ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "—"


def candidate_launch(row: dict) -> str:
    """The launch name of a --tune candidate (its Settings fields "mode" and "graphs")."""
    return planner.launch_name(planner.Settings(mode=row["mode"], graphs=row["graphs"]))


def planned(row: dict) -> str:
    """The launch the plan takes now for the row's problem (as on a GPU)."""
    return planner.launch_name(
        planner.plan(row["B"], row["H"], DTYPES[row["dtype"]], row["variant"]))


def table(rows, device: str, launches, launch_of=lambda row: row["mode"]) -> str:
    """One line per row, with the times of the launch `launch_of(row)`: by default the one the
    plan chose while the check ran."""
    per_launch = [f"train {m}" for m in launches]
    runs = ["run"] if any("run" in r for r in rows) else []   # several runs' rows together
    cells = []
    for r in rows:
        launch = launch_of(r)
        tuned = "tiles" in r and launch == r["mode"]   # it ran with tiles a --tune chose
        cell = dict(r, mode=launch + (" (tuned tiles)" if tuned else ""), run=r.get("run", 1))
        train, infer = r.get("train", {}).get(launch), r.get("infer", {}).get(launch)
        if "skipped" in r or not _timed(train):
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
            markdown(cells, [*runs, "shape", "dtype", "variant", "mode", "infer ms", "÷ cuDNN",
                             "train ms", "÷ cuDNN (cuDNN ms)", "target", "loop ÷", *per_launch]))


def summary(result: dict) -> str:
    """The run's line on correctness: failures, the launches with a grid barrier, graph
    replays, how the gemm mode's 16-bit products were taken, and the launches not run (refused
    after a run before lost the device in them) or that lost it in this run."""
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
            + f"; gemm's 16-bit products: {result.get('gemm_products', 'not used')}"
            + (f"; refused (a run before lost the device in them): "
               f"{', '.join(result['refused'])}" if result.get("refused") else "")
            + (f"; STOPPED: {result['lost_device']['error']}" if "lost_device" in result
               else ""))


def _graph_summary(rows) -> str:
    counts = [tuple(map(int, r["replayed"].split("/"))) for r in rows if "replayed" in r]
    if not counts:
        return ""
    if not sum(c[1] for c in counts):
        return "; graphs: nothing recorded (the interpreter launches directly)"
    return (f"; graphs: {sum(c[0] for c in counts)} of the {sum(c[1] for c in counts)} "
            "checked calls replayed a recording")


def tuning_table(rows) -> str:
    """A --tune run's candidates: the plan's first (as it was when the run was made), each
    with its check against the float64 reference and, if it passed, its training time."""
    chosen = {(r["shape"], r["dtype"]): r.get("train") for r in rows if r["chosen"]}
    cells = [{**r, "mode": candidate_launch(r) + (" (plan)" if r["chosen"] else ""),
              "warps": r["num_warps"], "launch": "direct" if r["fast_launch"] else "JIT",
              "check": ("—" if "max_rel_err" not in r else
                        f"{r['max_rel_err']:.1e}" + ("" if r["ok"] else " FAILED")),
              "train ms": (f"{r['train']:.2f}" if "train" in r else
                           r.get("error", r.get("skipped", "not timed"))),
              "÷ plan's": _ratio(r.get("train"), chosen.get((r["shape"], r["dtype"])))}
             for r in rows]
    return markdown(cells, ["shape", "dtype", "mode", "block_b", "block_h", "block_k", "warps",
                            "launch", "check", "train ms", "÷ plan's"])


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
        times = {m: ms for m, ms in r.get("train", {}).items() if m in ok and _timed(ms)}
        if times and "time budget" not in r.get("errors", {}).values():
            launch = min(times, key=times.get)
            # The plan's own launch ran with the tiles a past --tune chose: keep them.
            tiles = r.get("tiles", {}) if launch == r["mode"] else {}
            found.append(dict(variant=r["variant"], dtype=r["dtype"], B=r["B"], H=r["H"],
                              launch=launch, **tiles, train_ms=times))
    return {"about": "The launch gpu_check timed fastest per problem, dtype and variant, of "
                     "those that passed its correctness check (gatedrnn/kernels/choices.py); "
                     "written by benchmarks/gpu_table.py --choose.",
            "source": source, **result.get("env", {}), "date": result.get("date"),
            "choices": found}


def tuned(found: list[dict], rows, source: str) -> list[dict]:
    """`found` (choose's choices) with, per problem a --tune run timed, the fastest candidate
    that passed its correctness check, launched directly, in place of the choice there (its
    launch and tiles). Candidates through Triton's JIT are there to measure the direct
    launch's gain, not to be chosen."""
    best = {}
    for r in rows:
        ms, key = r.get("train"), (r["variant"], r["dtype"], r["B"], r["H"])
        if (r.get("ok") and r["fast_launch"] and _timed(ms)
                and (key not in best or ms < best[key]["train"])):
            best[key] = r
    out = [c for c in found if (c["variant"], c["dtype"], c["B"], c["H"]) not in best]
    for (variant, dname, B, H), r in best.items():
        out.append(dict(variant=variant, dtype=dname, B=B, H=H,
                        launch=candidate_launch(r),
                        **{k: r[k] for k in choices.TILES}, tuned_ms=r["train"],
                        tuned_in=source))
    return out


def worst(rows, launch_of=lambda row: row["mode"]) -> dict | None:
    """The row whose train time in the launch `launch_of(row)` (by default the one the plan
    chose while the check ran) is furthest over its target against cuDNN, if any is."""
    over = []
    for r in rows:
        ms = r.get("train", {}).get(launch_of(r))
        if r["variant"] in TARGET and _timed(ms):
            over.append((ms / r["cudnn_train"] / TARGET[r["variant"]], r))
    ratio, row = max(over, key=lambda pair: pair[0], default=(0.0, None))
    return row if ratio > 1 else None


def merged(results: list[dict], names: list[str]) -> dict:
    """One result from several runs: the first's, with each later run's timed rows in place
    of its rows of the same shape, dtype and variant (their "run": its place, from 2), its
    correctness cases added and its refused launches joined. Runs on different GPU models do
    not make one table."""
    first = dict(results[0], timings=list(results[0].get("timings", [])))
    device = first.get("env", {}).get("device")
    for run, (result, name) in enumerate(zip(results[1:], names[1:]), start=2):
        if result.get("env", {}).get("device") != device:
            raise ValueError(f"{name}: expected a run on {device}, got one on "
                             f"{result.get('env', {}).get('device')}")
        again = {_row_key(r): dict(r, run=run) for r in result.get("timings", [])}
        first["timings"] = [again.pop(_row_key(r), r) for r in first["timings"]] + list(
            again.values())
        first["correctness"] = first.get("correctness", []) + result.get("correctness", [])
        first["refused"] = sorted(set(first.get("refused", [])) | set(result.get("refused", [])))
        first["complete"] = first.get("complete", True) and result.get("complete", True)
    return first


def _row_key(row: dict) -> tuple:
    return row["shape"], row["dtype"], row["variant"]


def device_limits(result: dict) -> tuple[int, int]:
    """(multiprocessors, shared memory a program may have) of the run's GPU, which decide
    where the plan takes a one-launch mode; runs before they were recorded ran on an H100."""
    return tuple(result.get("env", {}).get("limits") or planner.H100)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", type=Path, nargs="+",
                        help="a gpu-check-*.json of benchmarks/gpu_check.py; more: reruns of "
                             "some of its rows on the same GPU model, which replace them")
    parser.add_argument("--choose", action="store_true",
                        help="first write the run's fastest launches as the plan's choices")
    parser.add_argument("--choices", type=Path, default=choices.PATH,
                        help="the choices file to plan from and write (default: the package's)")
    parser.add_argument("--tuned", type=Path, nargs="+", default=[], metavar="TUNE.json",
                        help="with --choose: gpu-tune-*.json runs of gpu_check.py --tune, whose "
                             "fastest candidates that passed their check go in as choices")
    parser.add_argument("--worst", action="store_true",
                        help="instead of the table, print the row furthest over its target, "
                             "launched as the plan launches it (after --choose, if given), as "
                             "'variant shape dtype' (nothing if every row meets its target)")
    args = parser.parse_args(argv)
    planner.choices_from(args.choices)
    names = [path.name for path in args.result]
    try:
        result = merged([json.loads(path.read_text()) for path in args.result], names)
    except ValueError as error:
        sys.exit(f"gpu_table: {error}")
    if args.tuned and not args.choose:
        parser.error("--tuned: expected with --choose (it sets choices)")
    # The plan as it was in that run, on its GPU, not on this machine (which may have none).
    own_limits, own_refused = planner.device_limits, set(planner.refused)
    planner.device_limits = functools.partial(device_limits, result)
    planner.refused.update(result.get("refused", []))
    try:
        _report(args, result, names)
    finally:
        planner.device_limits = own_limits
        planner.refused.intersection_update(own_refused)


def _report(args, result: dict, names: list[str]) -> None:
    """main's work once the runs are read: choose, then print."""
    # With --worst, standard output is that one line (gpu_session.sh reads it), the rest goes
    # to standard error.
    say = functools.partial(print, file=sys.stderr if args.worst else sys.stdout)
    if not result.get("complete", True):
        runs = f"{names[0]}: the run" if len(names) == 1 else f"{', '.join(names)}: a run"
        say(f"{runs} did not finish; this is what it measured until then")
    tunings = [(path.name, json.loads(path.read_text()).get("tuning", [])) for path in args.tuned]
    if args.choose:
        try:
            data = choose(result, " + ".join(names))
        except ValueError as error:
            sys.exit(f"gpu_table: {error}")
        for name, rows in tunings:
            data["choices"] = tuned(data["choices"], rows, name)
        args.choices.write_text(json.dumps(data, indent=1) + "\n")
        say(f"{len(data['choices'])} choices written to {args.choices}")
        planner.choices_from(args.choices)   # what was just written
    if args.worst:
        row = worst(result.get("timings", []), planned)
        if row:
            print(row["variant"], row["shape"], row["dtype"])
        return
    launches = sorted({m for r in result.get("timings", []) for m in r.get("train", {})},
                      key=planner.LAUNCHES.index)
    print(summary(result))
    print()
    print(table(result.get("timings", []), result.get("env", {}).get("device", "?"), launches,
                planned))
    if len(names) > 1:
        print("\nruns: " + "; ".join(f"{i} {name}" for i, name in enumerate(names, start=1)))
    for name, rows in tunings:
        print(f"\nTuning in {name} (the table above has the check's times, with the tiles it "
              "ran; where the plan now takes this tune's, their times are here):\n")
        print(tuning_table(rows))


if __name__ == "__main__":
    main()
