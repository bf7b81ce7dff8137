"""benchmarks/gpu_table.py: the plan's choices from a GPU check's JSON, and its table as the
plan launches (on made-up results; the dry run in test_gpu_check.py makes real ones)."""

import json
from pathlib import Path

import pytest

from gatedrnn.kernels import choices, planner
from gatedrnn.kernels.choices import Choice, Measured

ROW = dict(shape="G1", T=1024, B=16, H=768, dtype="bf16", variant="lstm", mode="step",
           infer={"step": 4.0, "step+graphs": 3.0},
           train={"step": 12.0, "step+graphs": 9.0, "persistent": 8.0, "gemm": float("nan")},
           replayed={"step+graphs": "22/24"}, errors={"gemm": "RuntimeError: no"},
           cudnn="LSTM", cudnn_infer=3.5, cudnn_train=10.0, loop_train=180.0)


def _result(failed_launch="persistent"):
    correctness = [dict(variant="lstm", dtype="bf16", mode=m, ok=m != failed_launch,
                        max_rel_err=0.5 if m == failed_launch else 1e-3)
                   for m in ("step", "step+graphs", "gemm", "persistent")]
    return dict(env=dict(device="NVIDIA H100"), date="2026-11-26", correctness=correctness,
                timings=[ROW])


@pytest.fixture
def _choices_restored():
    """gpu_table.main points the plan at its --choices file: the package's again afterwards
    (set up before monkeypatch, so undone after it)."""
    path = choices.PATH
    yield
    planner.choices_from(path)


@pytest.fixture
def gpu_table(_choices_restored, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import gpu_table
    return gpu_table


def test_the_fastest_launch_that_passed_is_chosen(gpu_table):
    (chosen,) = gpu_table.choose(_result(failed_launch="persistent"), "run.json")["choices"]
    assert (chosen["launch"], chosen["B"], chosen["H"]) == ("step+graphs", 16, 768)
    assert set(chosen["train_ms"]) == {"step", "step+graphs"}   # no NaN, no failed launch
    (chosen,) = gpu_table.choose(_result(failed_launch=None), "run.json")["choices"]
    assert chosen["launch"] == "persistent"


def test_a_row_cut_short_by_the_budget_chooses_nothing(gpu_table):
    result = _result(failed_launch=None)
    result["timings"] = [dict(ROW, errors={"gemm+graphs": "time budget"})]
    assert gpu_table.choose(result, "run.json")["choices"] == []


def test_a_run_without_correctness_cannot_choose(gpu_table):
    with pytest.raises(ValueError, match="expected a GPU check with its correctness cases"):
        gpu_table.choose(dict(_result(), correctness=[]), "run.json")


def test_the_table_shows_the_times_of_the_launch_taken(gpu_table):
    line = gpu_table.table([ROW], "H100", ["step", "step+graphs"],
                           lambda row: "step+graphs").splitlines()[-1]
    assert line.startswith("| G1 | bf16 | lstm | step+graphs | 3.00 | 0.86 | 9.00 | 0.90 (10.00) "
                           "| met | 20.0 | 12.00 | 9.00 (22/24 replayed) |")
    line = gpu_table.table([ROW], "H100", ["step"]).splitlines()[-1]   # the run's own plan
    assert "| step | 4.00 | 1.14 | 12.00 | 1.20 (10.00) | met | 15.0 | 12.00 |" in line


def test_a_row_run_with_tuned_tiles_says_so(gpu_table):
    row = dict(ROW, tiles=dict(block_b=16, block_h=32, block_k=64, num_warps=4))
    assert "| step (tuned tiles) | 4.00 |" in gpu_table.table([row], "H100", ["step"])
    assert "| step+graphs | 3.00 |" in gpu_table.table([row], "H100", ["step"],
                                                       lambda row: "step+graphs")


def test_a_launch_not_timed_shows_why(gpu_table):
    for launch, why in (("gemm", "RuntimeError: no"), ("sequence", "sequence not timed")):
        line = gpu_table.table([ROW], "H100", ["step"], lambda row: launch).splitlines()[-1]
        assert f"not measured ({why})" in line


def test_planned_is_the_plan_on_a_gpu(gpu_table, monkeypatch):
    monkeypatch.setattr(planner, "interpreting", lambda: False)
    measured = Measured([Choice("lstm", "bf16", 16, 768, "step+graphs")])
    monkeypatch.setattr(planner, "_choices", lambda: measured)
    assert gpu_table.planned(ROW) == "step+graphs"
    assert gpu_table.planned(dict(ROW, dtype="f32")) == "step"   # nothing measured in f32


def test_a_run_that_did_not_finish_is_said_so(gpu_table, tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(dict(_result(), complete=False)))
    gpu_table.main([str(path)])
    out = capsys.readouterr().out
    assert out.startswith("run.json: the run did not finish")
    assert ("correctness: 1 FAILED: lstm bf16 persistent 5.0e-01; barrier launches: not "
            "checked; gemm's 16-bit products: not used") in out
    assert "| G1 | bf16 | lstm |" in out


def _candidate(mode, train, ok=True, fast_launch=True, **tiles):
    return dict(shape="G1", B=16, H=768, dtype="bf16", variant="lstm", chosen=False, mode=mode,
                graphs=False, fast_launch=fast_launch, ok=ok, max_rel_err=1e-3 if ok else 0.5,
                train=train, **{"block_b": 16, "block_h": 16, "block_k": 64, "num_warps": 4,
                                **tiles})


def test_the_fastest_tuned_candidate_that_passed_replaces_the_choice_there(gpu_table):
    found = gpu_table.choose(_result(failed_launch=None), "run.json")["choices"]
    elsewhere = dict(found[0], H=256, launch="step")
    rows = [_candidate("persistent", 8.5), _candidate("step", 7.0, block_h=32),
            _candidate("step", 5.0, ok=False, block_h=64),            # wrong: not chosen
            _candidate("step", 6.0, fast_launch=False, block_h=32),   # Triton's JIT: not chosen
            dict(_candidate("step", 1.0), train=float("nan"))]        # failed to run
    (other, chosen) = gpu_table.tuned(found + [elsewhere], rows, "tune.json")
    assert other == elsewhere
    assert chosen == dict(variant="lstm", dtype="bf16", B=16, H=768, launch="step", block_b=16,
                          block_h=32, block_k=64, num_warps=4, tuned_ms=7.0,
                          tuned_in="tune.json")


def test_choose_keeps_the_tiles_the_plan_ran_with_if_its_launch_stays_fastest(gpu_table):
    tiles = dict(block_b=16, block_h=32, block_k=64, num_warps=4)
    result = _result(failed_launch=None)
    result["timings"] = [dict(ROW, mode="persistent", tiles=tiles)]
    (chosen,) = gpu_table.choose(result, "run.json")["choices"]
    assert chosen["launch"] == "persistent" and chosen["block_h"] == 32
    result["timings"] = [dict(ROW, tiles=tiles)]   # the plan ran step; persistent won
    (chosen,) = gpu_table.choose(result, "run.json")["choices"]
    assert chosen["launch"] == "persistent" and "block_h" not in chosen


def test_worst_is_the_row_furthest_over_its_target(gpu_table):
    gru = dict(ROW, variant="gru", cudnn_train=6.0)             # 12 / 6 / 1.25 = 1.6
    peephole = dict(ROW, variant="lstm_peephole", cudnn_train=7.0)   # 12 / 7 / 1.4 = 1.22
    rnn = dict(ROW, variant="rnn", cudnn_train=1.0)             # no target
    assert gpu_table.worst([ROW, peephole, gru, rnn]) is gru
    assert gpu_table.worst([ROW, rnn, dict(ROW, skipped="time budget", train={})]) is None
    # as the plan launches now: lstm in persistent (8 ms) meets its target, gru misses it
    assert gpu_table.worst([ROW, gru], lambda row: "persistent") is gru
    assert gpu_table.worst([dict(ROW, cudnn_train=7.0)], lambda row: "persistent") is None


def test_worst_prints_variant_shape_and_dtype_as_the_plan_launches_now(gpu_table, tmp_path,
                                                                       capsys, monkeypatch):
    monkeypatch.setattr(planner, "interpreting", lambda: False)
    path, chosen = tmp_path / "run.json", tmp_path / "choices.json"
    path.write_text(json.dumps(dict(_result(failed_launch=None),
                                    timings=[dict(ROW, cudnn_train=7.0)])))
    chosen.write_text(json.dumps({"choices": []}))   # the plan's heuristic: step
    gpu_table.main([str(path), "--worst", "--choices", str(chosen)])
    assert capsys.readouterr().out == "lstm G1 bf16\n"   # step: 12 ms against 7
    gpu_table.main([str(path), "--choose", "--choices", str(chosen)])   # persistent, 8 ms
    capsys.readouterr()
    gpu_table.main([str(path), "--worst", "--choices", str(chosen)])
    assert capsys.readouterr().out == ""


def test_tuned_without_choose_is_refused(gpu_table, tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_result()))
    with pytest.raises(SystemExit):
        gpu_table.main([str(path), "--tuned", str(path)])
    assert "--tuned: expected with --choose" in capsys.readouterr().err


def test_a_rerun_of_some_rows_replaces_them(gpu_table):
    first = _result(failed_launch=None)
    first["timings"] = [ROW, dict(ROW, shape="G2", B=64, H=256)]
    again = dict(env=first["env"], timings=[dict(ROW, train={"step": 11.0}),
                                            dict(ROW, shape="G4", B=1, H=256)])
    result = gpu_table.merged([first, again], ["run.json", "rerun.json"])
    assert [(r["shape"], r.get("run", 1), r["train"]["step"]) for r in result["timings"]] == [
        ("G1", 2, 11.0), ("G2", 1, 12.0), ("G4", 2, 12.0)]
    assert result["correctness"] == first["correctness"]   # the rerun checked nothing
    assert first["timings"][0] is ROW                      # the first run's rows untouched
    table = gpu_table.table(result["timings"], "H100", ["step"])
    assert "| run | shape |" in table and "| 2 | G1 | bf16 | lstm |" in table
    with pytest.raises(ValueError, match="rerun.json: expected a run on NVIDIA H100, got one "
                                         "on NVIDIA A100"):
        gpu_table.merged([first, dict(again, env=dict(device="NVIDIA A100"))],
                         ["run.json", "rerun.json"])


def test_the_table_plans_for_the_runs_gpu_not_this_machine(gpu_table, tmp_path, capsys,
                                                            monkeypatch):
    """A resident launch measured fastest shows as the plan's where it fits the run's GPU,
    also on a machine without one (whose limits would refuse it); and only during main."""
    monkeypatch.setattr(planner, "interpreting", lambda: False)
    row = dict(ROW, shape="G2", B=64, H=256, dtype="f32", variant="gru",
               train={"step": 12.0, "resident": 5.0}, infer={"step": 4.0, "resident": 2.0},
               errors={}, replayed={})
    result = dict(_result(failed_launch=None), timings=[row])
    result["correctness"] += [dict(c, mode="resident") for c in result["correctness"][:1]]
    path, chosen = tmp_path / "run.json", tmp_path / "choices.json"
    own = planner.device_limits
    for limits, launch in ((None, "resident"), ([132, 227 << 10], "resident"),
                           ([16, 227 << 10], "step")):   # 64 tiles > 16 multiprocessors
        result["env"]["limits"] = limits
        path.write_text(json.dumps(result))
        gpu_table.main([str(path), "--choose", "--choices", str(chosen)])
        assert f"| G2 | f32 | gru | {launch} |" in capsys.readouterr().out
        assert planner.device_limits is own
