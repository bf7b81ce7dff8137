"""Run folders lose nothing: a folder gatedrnn did not make is refused and left as it was, one
training at a time, a run stopped at any moment (before its first checkpoint, inside a save,
by SIGKILL) resumes to the very parameters of a run that never stopped."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gatedrnn import checkpoint
from gatedrnn.cli import main

SMALL = ["--task", "adding", "--hidden-size", "8", "--num-layers", "1", "--seq-len", "12",
         "--batch-size", "4", "--log-every", "1", "--eval-every", "1000"]


def _train(out, *extra):
    return main(["train", "--out", str(out), *SMALL, *extra])


def _weights(run):
    return load_file(str(checkpoint.latest(run) / "model.safetensors"))


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def test_a_folder_gatedrnn_did_not_make_is_refused_and_left_alone(tmp_path, capsys):
    theirs = tmp_path / "theirs"
    (theirs / "checkpoint").mkdir(parents=True)
    (theirs / "checkpoint" / "thesis.tex").write_text("years of work")
    (theirs / "metrics.jsonl").write_text("their own line\n")
    before = _tree(theirs)
    assert _train(theirs, "--steps", "2") == 1
    error = capsys.readouterr().err.strip()
    assert "gatedrnn did not make" in error and len(error.splitlines()) == 1
    assert _tree(theirs) == before


@pytest.mark.parametrize("where,message", [
    ("file", "is a file, not a folder"),
    ("under-file", "cannot make the run folder"),
])
def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, where, message):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "run"
    assert _train(out, "--steps", "1") == 1
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_an_empty_folder_is_taken_and_marked(tmp_path):
    (tmp_path / "empty").mkdir()
    assert _train(tmp_path / "empty", "--steps", "1") == 0
    assert (tmp_path / "empty" / checkpoint.MARK).is_file()


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_its_start(tmp_path, monkeypatch):
    assert _train(tmp_path / "straight", "--steps", "3") == 0

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save", killed)
        assert _train(tmp_path / "stopped", "--steps", "3") == 130
    assert checkpoint.latest(tmp_path / "stopped") is None
    assert main(["train", "--resume", str(tmp_path / "stopped")]) == 0
    _assert_same(_weights(tmp_path / "straight"), _weights(tmp_path / "stopped"))
    lines = [[{k: v for k, v in json.loads(line).items() if k != "per_second"}
              for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
             for run in ("straight", "stopped")]
    assert lines[0] == lines[1], "the stopped run's lines are written once"


class _Crash(Exception):
    pass


def test_a_crash_at_any_point_of_a_save_leaves_a_whole_checkpoint(tmp_path, monkeypatch):
    """Every file-system step of a save, in turn, is where the process dies."""
    assert _train(tmp_path / "straight", "--steps", "4", "--checkpoint-every", "1") == 0
    expected = _weights(tmp_path / "straight")
    point = 0
    while True:
        run = tmp_path / f"crash{point}"
        assert _train(run, "--steps", "2", "--checkpoint-every", "1") == 0
        calls = {"n": 0}

        def step(original):
            def wrapped(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] > point:
                    raise _Crash
                return original(*args, **kwargs)
            return wrapped
        with monkeypatch.context() as patch:
            for owner, name in ((checkpoint, "_fsync"), (checkpoint, "_write"),
                                (Path, "rename"), (Path, "replace"), (Path, "mkdir"),
                                (Path, "symlink_to"), (shutil, "rmtree")):
                patch.setattr(owner, name, step(getattr(owner, name)))
            try:
                crashed = main(["train", "--resume", str(run), "--steps", "4"]) != 0
            except _Crash:
                crashed = True
        assert checkpoint.latest(run) is not None
        assert main(["train", "--resume", str(run), "--steps", "4"]) == 0
        _assert_same(_weights(run), expected)
        if not crashed:
            break
        point += 1
    assert point > 10, "the save was cut at every one of its steps"


def _cli(*args):
    return [sys.executable, "-m", "gatedrnn", *args]


def test_a_second_training_in_a_folder_in_use_is_refused(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(_cli("train", "--out", str(run), *SMALL, "--steps", "100000"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").is_file() and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None
        for args in (["train", "--resume", str(run), "--steps", "5"],
                     ["train", "--out", str(run), *SMALL, "--steps", "5"]):
            second = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=120)
            assert second.returncode == 1, second.stderr
            assert len(second.stderr.strip().splitlines()) == 1, second.stderr
            assert "in use by a training" in second.stderr or "already holds a run" in second.stderr
    finally:
        first.kill()
        first.wait()
    assert main(["train", "--resume", str(run), "--steps", "5"]) == 0, "a killed run's lock goes"


def test_sigkill_at_random_moments_then_resume_gives_the_unbroken_run(tmp_path, seed=0):
    steps = ["--steps", "400", "--checkpoint-every", "1"]
    assert _train(tmp_path / "straight", *steps) == 0
    run, rng, kills = tmp_path / "killed", random.Random(seed), 0
    for attempt in range(10):
        # A run killed before it wrote config.json is started again, else resumed.
        args = ["train", "--resume", str(run)] if (run / "config.json").is_file() else \
            ["train", "--out", str(run), *SMALL, *steps]
        process = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        # Wait until it holds the folder (import and start take seconds), then a random moment.
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            lock = run / ".lock"
            if lock.is_file() and lock.read_text().strip() == f"process {process.pid}":
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 2.0))
        if process.poll() is not None:
            assert process.returncode == 0, process.stderr.read()
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    else:
        assert main(args[:1] + ["--resume", str(run)] if (run / "config.json").is_file()
                    else args) == 0
    assert kills >= 3, kills
    _assert_same(_weights(run), _weights(tmp_path / "straight"))


def test_a_weight_made_non_finite_by_a_step_is_never_saved(tmp_path, monkeypatch, capsys):
    step = torch.optim.Adam.step
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:   # the loss stays finite; one weight does not
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return result
    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    assert _train(tmp_path / "run", "--steps", "5", "--checkpoint-every", "1") == 1
    assert "became non-finite; the last good checkpoint (step 2)" in capsys.readouterr().err
    assert checkpoint.latest(tmp_path / "run").name == "00000002"
    assert all(torch.isfinite(w).all() for w in _weights(tmp_path / "run").values())


@pytest.mark.parametrize("task", ["charlm", "adding"])
def test_gatedrnn_load_takes_a_run_folder_to_its_trained_model(tmp_path, task):
    import gatedrnn

    if task == "charlm":
        (tmp_path / "t.txt").write_text("def f(x):\n    return x\n" * 50)
        args = ["--task", "charlm", "--data", str(tmp_path / "t.txt"), "--hidden-size", "8",
                "--embedding-size", "4", "--seq-len", "8", "--batch-size", "2"]
    else:
        args = SMALL
    assert main(["train", "--out", str(tmp_path / "run"), *args, "--steps", "2"]) == 0
    model = gatedrnn.load(tmp_path / "run")
    assert not model.training
    for name, value in model.state_dict().items():
        if name.endswith("_extra_state"):
            continue
        assert torch.equal(value, _weights(tmp_path / "run")[name]), name
    if task == "charlm":
        text = gatedrnn.sample_text(model, model.vocabulary, "def ", 10)
        assert text.startswith("def ") and len(text) == 14


def test_a_run_config_claiming_huge_sizes_is_refused_at_once(tmp_path):
    import gatedrnn

    assert _train(tmp_path / "run", "--steps", "1") == 0
    run = json.loads((tmp_path / "run" / "config.json").read_text())
    run["config"]["num_layers"] = 100_000
    (tmp_path / "run" / "config.json").write_text(json.dumps(run))
    started = time.perf_counter()
    with pytest.raises(ValueError, match="num_layers: 100000, but model.safetensors holds 1"):
        gatedrnn.load(tmp_path / "run")
    assert time.perf_counter() - started < 5
