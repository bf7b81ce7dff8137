"""The command line: the demo's code path, exact resume, failures that keep what was saved."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from gatedrnn.cli import main

TEXT = "def f(x):\n    return x + 1\n\nclass A:\n    pass\n" * 80
SMALL = ["--hidden-size", "16", "--num-layers", "2", "--embedding-size", "8", "--seq-len", "16",
         "--batch-size", "4", "--log-every", "1"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "code.txt"
    path.write_text(TEXT)
    return path


def _train(text_file, out, *extra):
    return main(["train", "--data", str(text_file), "--out", str(out), *SMALL, *extra])


def test_demo_trains_samples_and_says_where_things_are(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "validation loss" in printed and "unigram baseline" in printed
    assert printed.count("---- sample at temperature") == 3
    for name in ("checkpoint/model.safetensors", "metrics.jsonl", "loss.png", "config.json"):
        assert (out / name).is_file(), name
        assert str(out / name.split("/")[0]) in printed or name == "config.json"


def test_a_stopped_and_resumed_run_equals_one_that_never_stopped(tmp_path, text_file):
    common = ["--dropout", "0.2", "--checkpoint-every", "3", "--eval-every", "3"]
    assert _train(text_file, tmp_path / "straight", "--steps", "6", *common) == 0
    assert _train(text_file, tmp_path / "stopped", "--steps", "3", *common) == 0
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--steps", "6"]) == 0
    straight = load_file(str(tmp_path / "straight/checkpoint/model.safetensors"))
    resumed = load_file(str(tmp_path / "stopped/checkpoint/model.safetensors"))
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    state = json.loads((tmp_path / "stopped/checkpoint/state.json").read_text())
    assert state["step"] == 6


def test_a_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, text_file, capsys):
    out = tmp_path / "blowup"
    code = _train(text_file, out, "--optimizer", "sgd", "--lr", "1e38", "--clip", "0",
                  "--steps", "50", "--checkpoint-every", "1")
    assert code == 1
    error = capsys.readouterr().err
    assert "the loss became" in error and "last good checkpoint (step" in error
    state = json.loads((out / "checkpoint/state.json").read_text())
    assert 1 <= state["step"] < 50
    assert not (out / "checkpoint.partial").exists()


def test_sample_continues_the_prime_deterministically(tmp_path, text_file, capsys):
    assert _train(text_file, tmp_path / "run", "--steps", "2") == 0
    capsys.readouterr()
    args = ["sample", str(tmp_path / "run"), "--prime", "def ", "--length", "40", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("def ")
    assert main(args + ["--temperature", "0", "--top-k", "2"]) == 0


def test_plot_draws_a_png(tmp_path, text_file):
    assert _train(text_file, tmp_path / "run", "--steps", "4", "--eval-every", "2") == 0
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("setup,args,message", [
    (None, ["train", "--data", "/nonexistent/file.txt"], "does not exist"),
    ("empty", ["train", "--data", "{empty}"], "is empty"),
    (None, ["train", "--hidden-size", "0"], "--hidden-size: expected a positive integer, got 0"),
    (None, ["train", "--lr", "-1"], "--lr: expected a positive learning rate"),
    (None, ["train", "--device", "tpu"], "--device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("run", ["train", "--data", "{text}", "--out", "{run}"], "already holds a run; continue it"),
    ("run", ["train", "--resume", "{run}", "--variant", "lstm"],
     "--variant: the run in .* has 'gru'; a resumed run keeps its settings"),
    ("damaged", ["train", "--resume", "{run}", "--steps", "9"], "is damaged"),
    ("damaged", ["sample", "{run}"], "damaged or not a safetensors file"),
    (None, ["sample", "{tmp}"], "no run here"),
    (None, ["train", "--resume", "{tmp}/none"], "no run here"),
])
def test_bad_input_gets_one_clear_line(tmp_path, text_file, capsys, setup, args, message):
    run_dir = tmp_path / "run"
    if setup in ("run", "damaged"):
        assert _train(text_file, run_dir, "--steps", "2") == 0
    if setup == "damaged":
        (run_dir / "checkpoint/model.safetensors").write_bytes(b"not safetensors")
        (run_dir / "checkpoint/optimizer.safetensors").write_bytes(b"nope")
    (tmp_path / "empty.txt").write_text("")
    capsys.readouterr()
    args = [a.format(empty=tmp_path / "empty.txt", text=text_file, run=run_dir, tmp=tmp_path)
            for a in args]
    if args[0] == "train" and "--out" not in args and "--resume" not in args:
        args += ["--out", str(tmp_path / "new")]
    assert main(args) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    import re
    assert re.search(message, error), error


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_one_clear_line(tmp_path, text_file, capsys):
    assert _train(text_file, tmp_path / "run", "--device", "cuda") == 1
    assert capsys.readouterr().err.strip() == (
        "gatedrnn train: error: --device: cuda asked for, but this torch sees no CUDA device")
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_may_move_to_another_device(tmp_path, text_file):
    assert _train(text_file, tmp_path / "run", "--steps", "2", "--device", "cpu") == 0
    assert main(["train", "--resume", str(tmp_path / "run"), "--steps", "3",
                 "--device", "auto"]) == 0
    saved = json.loads((tmp_path / "run/config.json").read_text())["config"]
    assert saved["device"] == "cpu"   # what the run began with; a resume says where it goes on


def test_bfloat16_training_learns_as_float32_does(tmp_path, text_file):
    common = ["--steps", "30", "--eval-every", "30", "--lr", "1e-2"]
    assert _train(text_file, tmp_path / "f32", *common) == 0
    assert _train(text_file, tmp_path / "bf16", *common, "--precision", "bfloat16") == 0
    last = {name: json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])
            for name in ("f32", "bf16")}
    assert last["bf16"]["valid_loss"] < 0.9 * last["bf16"]["unigram_loss"]
    # Close to float32, and not the same: the products did round to bfloat16.
    assert 0 < abs(last["bf16"]["valid_loss"] - last["f32"]["valid_loss"]) < 0.1


@pytest.mark.gpu
def test_training_on_a_gpu_resumes_and_samples(tmp_path, text_file, capsys, monkeypatch):
    """The command line on CUDA (the triton backend): train, resume, evaluate, sample."""
    # `sample` runs on the CPU: the loop backend there, so that the GPU machine's short lease
    # is not spent building the compiled CPU kernel.
    from gatedrnn.kernels import cpu
    monkeypatch.setenv("GATEDRNN_CPU_KERNEL", "0")
    monkeypatch.setattr(cpu, "_state", {})   # asked anew, and as it was after this test
    run = tmp_path / "gpu"
    assert _train(text_file, run, "--steps", "4", "--eval-every", "2", "--device", "cuda") == 0
    assert main(["train", "--resume", str(run), "--steps", "6", "--precision", "bfloat16"]) == 0
    assert main(["sample", str(run), "--length", "20"]) == 0
    assert len(capsys.readouterr().out) > 0
    adding = ["train", "--task", "adding", "--seq-len", "20", "--hidden-size", "16",
              "--steps", "2", "--eval-every", "2", "--device", "cuda", "--out"]
    assert main(adding + [str(tmp_path / "adding")]) == 0
    evaluation = [json.loads(line) for line in (tmp_path / "adding/metrics.jsonl").read_text()
                  .splitlines() if "test_mse" in line]
    assert evaluation and evaluation[-1]["test_mse"] >= 0


def test_python_dash_m_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "gatedrnn", "train", "--help"],
                            capture_output=True, text=True, check=True)
    for flag in ("--variant", "--resume", "--seq-len", "--checkpoint-every", "--data"):
        assert flag in result.stdout


def test_an_existing_run_is_not_touched_by_a_refused_command(tmp_path, text_file):
    run_dir = tmp_path / "run"
    assert _train(text_file, run_dir, "--steps", "2") == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert _train(text_file, run_dir, "--steps", "5") == 1
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert before == after
    shutil.rmtree(run_dir)


def test_exported_charlm_samples_with_onnxruntime_alone(tmp_path, text_file):
    pytest.importorskip("onnxruntime")
    from pathlib import Path

    from gatedrnn.cli import load_charlm
    from gatedrnn.streaming import sample_text

    for variant in ("lstm", "gru"):
        run_dir = tmp_path / variant
        assert _train(text_file, run_dir, "--steps", "3", "--variant", variant) == 0
        onnx_path = tmp_path / f"{variant}.onnx"
        assert main(["export", str(run_dir), "--onnx", str(onnx_path)]) == 0
        example = Path(__file__).resolve().parents[1] / "examples" / "onnx_sample.py"
        # -I: isolated, so gatedrnn's source tree is not importable from the example
        result = subprocess.run([sys.executable, "-I", str(example), str(onnx_path), "def ",
                                 "60", "0"], capture_output=True, text=True, check=True)
        model, vocab = load_charlm(run_dir)
        assert result.stdout == sample_text(model, vocab, "def ", 60, 0.0) + "\n"


def test_gate_heatmaps_are_labelled_pictures(tmp_path, text_file, capsys):
    import numpy as np
    from PIL import Image

    assert _train(text_file, tmp_path / "run", "--steps", "2", "--variant", "lstm") == 0
    capsys.readouterr()
    out = tmp_path / "gates"
    assert main(["gates", str(tmp_path / "run"), "--text", "def f(x):\\n  return x",
                 "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    names = {f"layer{layer}_{gate}.png" for layer in (0, 1)
             for gate in ("gamma_u", "gamma_f", "gamma_o", "c_tilde", "c", "a")}
    assert {p.split("/")[-1] for p in written} == names | {"gates.html"}
    for name in names:
        pixels = np.asarray(Image.open(out / name).convert("L"), dtype=float)
        assert pixels.shape[0] > 150 and pixels.shape[1] > 300
        assert pixels.std() > 20, f"{name} looks blank"
    assert main(["gates", str(tmp_path / "run"), "--text", "€uro", "--out", str(out)]) == 1


def test_an_internal_value_error_keeps_its_traceback(monkeypatch, tmp_path):
    """One line is for what the user can mend; a ValueError raised inside a library gatedrnn
    calls is a bug, and its traceback is what a report needs."""
    import numpy as np

    import gatedrnn.cli as cli

    monkeypatch.setattr(cli, "cmd_plot", lambda args: np.zeros(-1))   # the parser takes it
    with pytest.raises(ValueError, match="negative dimensions"):
        main(["plot", str(tmp_path)])
