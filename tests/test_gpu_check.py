"""benchmarks/gpu_check.py stays runnable: its dry run (tiny shapes, Triton's interpreter on the
CPU) goes through correctness (the persistent mode's in a child process), timings and the
table for one variant and one shape; and so does its --tune, whose choices then set tiles."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import require_triton

require_triton()   # skips this module where the "triton" backend cannot run

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run_prints_the_table(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
                          "--variants", "lstm_peephole", "--shapes", "G2", "--dtypes", "f32",
                          # one launch of each kind (a shorter run than all seven)
                          "--launches", "step", "gemm+graphs", "sequence", "persistent",
                          "resident",
                          "--out", str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("correctness: all within tolerance; barrier launches: persistent ok, resident ok; "
            "graphs: nothing "
            "recorded (the interpreter launches directly); gemm's 16-bit products: widened "
            "(CPU tensors)") in run.stdout
    assert "| G2 | f32 | lstm_peephole |" in run.stdout.splitlines()[-1]
    result = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    assert {r["mode"] for r in result["correctness"]} == {"step", "gemm+graphs", "sequence",
                                                            "persistent", "resident"}
    assert result["complete"]   # (written as the run goes too, complete only at the end)
    row = result["timings"][0]
    assert row["cudnn"] == "LSTM"
    assert set(row["train"]) == {"step", "gemm+graphs", "sequence", "persistent", "resident"}

    # The plan's choices from that run, and its table as the plan then launches (as on a GPU:
    # the interpreter's plan ignores what was measured).
    env.pop("TRITON_INTERPRET")
    choices = tmp_path / "choices.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_table.py"),
                          str(next(tmp_path.glob("gpu-check-*.json"))), "--choose",
                          "--choices", str(choices)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (chosen,) = json.loads(choices.read_text())["choices"]
    assert chosen["launch"] == min(row["train"], key=row["train"].get)
    assert f"| G2 | f32 | lstm_peephole | {chosen['launch']} |" in run.stdout.splitlines()[-1]


def test_dry_run_tune_checks_each_candidate_and_sets_the_plans_tiles(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
                          "--no-correctness", "--tune", "rnn", "--shapes", "G4", "--dtypes",
                          "f32", "--launches", "step", "--out", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    tune = next(tmp_path.glob("gpu-tune-*.json"))
    rows = json.loads(tune.read_text())["tuning"]
    # the plan's sequence launch, its four tile neighbours, and the step launch
    assert [r["mode"] for r in rows] == ["sequence"] * 5 + ["step"]
    assert all(r["ok"] and r["max_rel_err"] <= 1e-4 and r["train"] > 0 for r in rows)
    assert "| G4 | f32 | sequence (plan) | 16 | 32 | 32 | 4 | direct |" in run.stdout

    # A check whose correctness passed and which timed nothing: the choices are the tune's.
    check = tmp_path / "gpu-check.json"
    check.write_text(json.dumps(dict(correctness=[dict(variant="rnn", dtype="f32", mode="step",
                                                       ok=True, max_rel_err=0.0)],
                                     timings=[])))
    env.pop("TRITON_INTERPRET")
    choices = tmp_path / "choices.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_table.py"), str(check),
                          "--tuned", str(tune), "--choose", "--choices", str(choices)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (chosen,) = json.loads(choices.read_text())["choices"]
    fastest = min(rows, key=lambda r: r["train"])
    assert chosen == dict(variant="rnn", dtype="f32", B=fastest["B"], H=fastest["H"],
                          launch=fastest["mode"], block_b=fastest["block_b"],
                          block_h=fastest["block_h"], block_k=fastest["block_k"],
                          num_warps=fastest["num_warps"], tuned_ms=fastest["train"],
                          tuned_in=tune.name)
    assert f"Tuning in {tune.name} (" in run.stdout


def test_tune_candidates_give_each_launch_the_plans_own_tiles(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_tune
    from gatedrnn.kernels import planner
    monkeypatch.setattr(planner, "device_limits", lambda: planner.H100)
    step = planner.Plan("step", 16, 16, 64, 4)
    found = gpu_tune._candidates(step, 16, 768, "bf16", "gru", ["step", "sequence", "resident"])
    tiles = [(c["mode"], c["block_b"], c["block_h"], c["block_k"], c["num_warps"],
              c["fast_launch"]) for c in found]
    assert tiles == [("step", 16, 16, 64, 4, True), ("step", 16, 32, 64, 4, True),
                     ("step", 16, 64, 64, 4, True), ("step", 16, 16, 32, 4, True),
                     ("step", 16, 16, 64, 8, True),
                     ("resident", 16, 16, 64, 8, True),   # its own tiles; sequence does not fit
                     ("step", 16, 16, 64, 4, False)]      # through Triton's JIT
    resident = planner.Plan("resident", 16, 16, 64, 8)   # no tile neighbours
    found = gpu_tune._candidates(resident, 16, 768, "bf16", "lstm", ["step", "resident"])
    assert [(c["mode"], c["block_h"]) for c in found] == [("resident", 16), ("step", 16)]


@pytest.fixture
def gpu_probe(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_probe
    return gpu_probe


def _probe(gpu_probe, code: str):
    return gpu_probe.Probe([sys.executable, "-c", code])


def test_a_probe_silent_in_its_barrier_runs_is_killed_as_hung(gpu_probe):
    probe = _probe(gpu_probe, f"print({gpu_probe.BARRIER_START!r}, flush=True)\n"
                              "import time; time.sleep(60)")
    start = time.monotonic()
    rows, status = gpu_probe.probe_result(probe, timeout=50, quiet=1)
    assert time.monotonic() - start < 20
    assert (rows, status[:len("hung: killed after")]) == ([], "hung: killed after")
    assert "without output" in status


def test_a_probe_may_be_silent_while_it_compiles(gpu_probe):
    probe = _probe(gpu_probe, "import time; time.sleep(2)\n"
                              f"print({gpu_probe.PROBE_MARK!r} + '[{{\"ok\": true}}]')")
    assert gpu_probe.probe_result(probe, timeout=50, quiet=0.5) == ([{"ok": True}], "ok")


def test_a_probe_that_fails_says_so(gpu_probe):
    probe = _probe(gpu_probe, "import sys; sys.exit(3)")
    assert gpu_probe.probe_result(probe, timeout=50) == ([], "failed (exit 3)")


def test_a_launch_that_hangs_keeps_the_rows_of_those_checked_before(gpu_probe):
    persistent = {"ok": True, "mode": "persistent"}
    probe = _probe(gpu_probe, f"print({gpu_probe.BARRIER_START!r}, flush=True)\n"
                              f"print({gpu_probe.PROBE_MARK!r} + {json.dumps([persistent])!r}, "
                              "flush=True)\nimport time; time.sleep(60)")
    rows, status = gpu_probe.probe_result(probe, timeout=50, quiet=1)
    assert rows == [persistent]
    words = gpu_probe.statuses(rows, status, ["persistent", "resident"])
    assert words["persistent"] == "ok" and words["resident"].startswith("hung: killed after")
    assert gpu_probe.statuses([dict(persistent, ok=False)], "wrong results",
                              ["persistent", "resident"]) == {"persistent": "wrong results",
                                                              "resident": "not checked"}


def test_the_probe_takes_a_barrier_launch_from_past_choices_only_once_it_passed(
        gpu_probe, monkeypatch, capsys):
    """The child compiles, then checks persistent and resident, then compiles for them: until
    a launch's check has passed, the plan must not take it from a past run's choices (it could
    hang)."""
    from gatedrnn.kernels import planner
    monkeypatch.setattr(planner, "refused", set())
    refused = []

    def precompile(shapes, dtypes, variants, modes, **kwargs):
        refused.append((modes[-1], sorted(planner.refused)))
        return 0.0

    def correctness(variants, launches, seed, dry_run):
        refused.append((launches[0], sorted(planner.refused)))
        return [{"ok": True, "mode": launches[0]}]

    monkeypatch.setattr(gpu_probe, "precompile", precompile)
    monkeypatch.setattr(gpu_probe, "correctness", correctness)
    # what main sets for a dry run, put back afterwards
    import gpu_check
    import gpu_common
    for name, value in gpu_common.SHAPES.items():
        monkeypatch.setitem(gpu_common.SHAPES, name, value)
    monkeypatch.setattr(gpu_common, "DEVICE", gpu_common.DEVICE)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--probe", "--dry-run"])
    gpu_check.main()
    both = ["persistent", "resident"]
    assert refused == [("sequence", both), ("persistent", both), ("resident", ["resident"]),
                       ("persistent", []), ("resident", [])]
    assert capsys.readouterr().out.splitlines()[-1] == gpu_probe.PROBE_MARK + json.dumps(
        [{"ok": True, "mode": "persistent"}, {"ok": True, "mode": "resident"}])


def test_a_launch_that_loses_the_device_is_refused_by_a_new_run(gpu_probe, tmp_path,
                                                                 monkeypatch, capsys):
    """A launch that leaves the CUDA context unusable (an illegal address, say) would fail
    every row after it: the run keeps its JSON (renamed) and starts again in a new process with
    that launch refused and the budget left. There the launch runs nowhere, not even as the
    plan's (here the heuristic's "sequence" for a tiny problem). With no rerun left, it exits
    with status 3, naming the launch to refuse."""
    import gpu_check
    import gpu_common
    import gpu_correctness
    from gatedrnn.kernels import planner
    monkeypatch.setattr(planner, "refused", set())
    for name, value in gpu_common.SHAPES.items():   # what a dry run sets, put back afterwards
        monkeypatch.setitem(gpu_common.SHAPES, name, value)
    monkeypatch.setattr(gpu_common, "DEVICE", gpu_common.DEVICE)
    monkeypatch.setattr(gpu_check, "start_probe", lambda args, until: None)
    monkeypatch.setattr(gpu_check, "probe_result", lambda probe, timeout: ([], "not run"))
    lost = []
    outputs_and_grads = gpu_correctness._outputs_and_grads

    def planted(variant, leaves, mask, reverse, backend, weights):
        if backend == "triton" and planner.settings.mode == "sequence":
            lost.append(variant)
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return outputs_and_grads(variant, leaves, mask, reverse, backend, weights)

    monkeypatch.setattr(gpu_correctness, "_outputs_and_grads", planted)
    monkeypatch.setattr(gpu_common, "device_works", lambda: not lost)
    execs = []

    def execv(path, argv):
        execs.append(argv)
        raise SystemExit("exec")

    monkeypatch.setattr(gpu_check.os, "execv", execv)
    argv = ["gpu_check.py", "--dry-run", "--variants", "rnn", "--shapes", "G4", "--dtypes",
            "f32", "--launches", "step", "gemm", "sequence", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="exec"):
        gpu_check.main()
    (again,) = execs
    assert again[:len(argv) + 2] == [sys.executable, *argv, "--budget"]
    assert 150 < float(again[len(argv) + 2]) <= 210   # the default budget less what it took
    assert again[len(argv) + 3:] == ["--refuse", "sequence", "--reruns", "1"]
    (kept,) = tmp_path.glob("lost-sequence-gpu-check-*.json")
    result = json.loads(kept.read_text())
    assert not result["complete"] and result["lost_device"]["launch"] == "sequence"
    assert "RuntimeError: CUDA error: an illegal memory access" in result["lost_device"]["error"]

    lost.clear()
    monkeypatch.setattr(sys, "argv", again[1:])
    gpu_check.main()
    result = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    assert result["complete"] and result["refused"] == ["sequence"] and not lost
    assert {r["mode"] for r in result["correctness"]} == {"step", "gemm"}
    (row,) = result["timings"]
    assert row["mode"] == "step" and set(row["train"]) == {"step"}   # gemm: not at B = 1
    assert "refused (a run before lost the device in them): sequence" in capsys.readouterr().out

    monkeypatch.setattr(sys, "argv", argv + ["--reruns", "0"])
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main()
    assert stopped.value.code == gpu_check.LOST_DEVICE_EXIT == 3 and len(execs) == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith("run again with --refuse sequence")
