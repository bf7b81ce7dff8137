"""Every bad value of every command-line option is one line, exit status 1, no traceback."""

import json

import pytest

from gatedrnn.cli import build_parser, main

TEXT = "def f(x):\n    return x + 1\n" * 200
TINY = ["--hidden-size", "4", "--num-layers", "1", "--embedding-size", "4", "--seq-len", "8",
        "--batch-size", "2", "--steps", "1", "--eval-every", "1"]
BAD = ["nan", "-5", "0", "x", "", "1e999", "-inf"]


def _options(command: str):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    return [a for a in sub._actions if a.option_strings and a.nargs != 0
            and a.option_strings[0] != "--help"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "text.txt").write_text(TEXT)
    assert main(["train", "--data", str(root / "text.txt"), "--out", str(root / "run"), *TINY]) == 0
    return root


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Values such as "nan" become file names: they land here, not in the checkout."""
    monkeypatch.chdir(tmp_path)


def _one_clear_line(capsys, args):
    try:
        code = main(args)
    except SystemExit as exit:   # argparse's own exit
        code = exit.code
    error = capsys.readouterr().err.strip()
    assert code in (0, 1), (args, code, error)
    if code == 1:
        assert len(error.splitlines()) == 1 and "Traceback" not in error, (args, error)
    return code


@pytest.mark.parametrize("option", [a.option_strings[0] for a in _options("train")])
def test_every_train_option_takes_bad_values_in_one_line(option, trained, capsys, tmp_path):
    for n, value in enumerate(BAD):
        args = ["train", "--data", str(trained / "text.txt"), *TINY,
                "--out", str(tmp_path / f"run{n}")]
        _one_clear_line(capsys, args + [option, value])


@pytest.mark.parametrize("command", ["sample", "gates", "export", "plot", "diagram", "demo"])
def test_every_option_of_the_other_commands_takes_bad_values_in_one_line(command, trained,
                                                                        capsys, tmp_path):
    run = str(trained / "run")
    base = {"sample": ["sample", run, "--length", "3"],
            "gates": ["gates", run, "--length", "3", "--out", str(tmp_path / "g")],
            "export": ["export", run, "--onnx", str(tmp_path / "m.onnx")],
            "plot": ["plot", run, "--out", str(tmp_path / "p.png")],
            "diagram": ["diagram", "--variant", "gru", "--out", str(tmp_path / "d.svg")],
            "demo": ["demo", "--steps", "1", "--out", str(tmp_path / "demo")]}[command]
    for action in _options(command):
        for value in BAD + [str(tmp_path), str(trained / "text.txt") + "/x"]:
            _one_clear_line(capsys, base + [action.option_strings[0], value])


@pytest.mark.parametrize("args,message", [
    (["gates", "{run}", "--out", "{file}"], "Not a directory|File exists"),
    (["sample", "{run}", "--temperature", "nan"], "--temperature: invalid number >= 0 value"),
    (["sample", "{run}", "--length", "-5"], "--length: invalid positive integer value"),
    (["train", "--out", "{file}"], "is a file, not a folder"),
    (["train", "--out", "{file}/run"], "cannot make the run folder"),
])
def test_the_reported_cases_are_one_clear_line(args, message, trained, capsys, tmp_path):
    import re

    (tmp_path / "f").write_text("x")
    args = [a.format(run=trained / "run", file=tmp_path / "f") for a in args]
    if args[0] == "train":
        args += ["--data", str(trained / "text.txt"), *TINY]
    assert _one_clear_line(capsys, args) == 1
    capsys.readouterr()
    main_error = None
    try:
        main(args)
    except SystemExit:
        pass
    main_error = capsys.readouterr().err
    assert re.search(message, main_error), main_error


def test_a_state_file_without_its_step_or_a_config_with_an_unknown_key(trained, capsys):
    import shutil

    run = trained / "broken-state"
    shutil.copytree(trained / "run", run, symlinks=True)
    state = run / "checkpoint" / "state.json"
    state.write_text(json.dumps({"evaluation": {}}))
    assert _one_clear_line(capsys, ["train", "--resume", str(run), "--steps", "2"]) == 1
    run = trained / "unknown-key"
    shutil.copytree(trained / "run", run, symlinks=True)
    config = json.loads((run / "config.json").read_text())
    config["config"]["warp_drive"] = True
    (run / "config.json").write_text(json.dumps(config))
    assert _one_clear_line(capsys, ["train", "--resume", str(run), "--steps", "2"]) == 1


def test_a_non_ascii_prime_is_taken_as_typed(trained, capsys, tmp_path):
    from gatedrnn.cli import unescape

    assert unescape("était\\n\\u00e9 ok") == "était\né ok"
    (tmp_path / "fr.txt").write_text("il était une fois, été après été. " * 100)
    tiny = [a for a in TINY]
    assert main(["train", "--data", str(tmp_path / "fr.txt"), "--out", str(tmp_path / "fr"),
                 *tiny]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "fr"), "--prime", "était", "--length", "5"]) == 0
    assert capsys.readouterr().out.startswith("était")
