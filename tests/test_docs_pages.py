"""README.md and docs/: every code block runs as written, every link leads somewhere, the
command line's reference is the parser's own help, and the README stays a front page."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# docs/index.md is the README, copied there by `make docs`.
PAGES = [ROOT / "README.md",
         *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# The quick start's own two commands: `make test` is what CI runs, and `make demo` is
# `gatedrnn demo`, which the packaging check runs from a wheel.
NOT_RUN = ("make ",)


def _blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(page.read_text()) if lang == language]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh folder to run in, with the examples a page calls as they are in the checkout."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text()) <= 12_000


def test_every_block_is_of_a_known_kind():
    for page in PAGES:
        for language, _ in BLOCK.findall(page.read_text()):
            assert language in ("python", "sh", "text"), f"{page.name}: ```{language}"


def _run_shell(page: Path, code: str, workdir: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT))
    for line in code.splitlines():
        command = line.split("  #")[0].strip()
        if not command or command.startswith(NOT_RUN):
            continue
        done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{page.name}: {command}\n{done.stderr[-2000:]}"


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p, "python") or _blocks(p, "sh")],
                         ids=lambda p: p.name)
def test_every_code_block_runs_as_written(page, workdir):
    """A page's blocks in its order, in one folder: a shell block's run is there for the
    Python after it, and the Python blocks share one namespace."""
    namespace = {"__name__": "__docs__"}
    for language, code in BLOCK.findall(page.read_text()):
        if language == "python":
            exec(compile(code, page.name, "exec"), namespace)
        elif language == "sh":
            _run_shell(page, code, workdir)


def test_every_local_link_leads_to_a_file():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: {target}"


def _generator(name: str):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "docs"))


def test_the_api_page_is_the_docstrings():
    assert (ROOT / "docs" / "api.md").read_text() == _generator("api_reference").reference(), \
        "run python docs/api_reference.py"


def test_the_command_line_reference_is_the_parsers_help():
    cli_reference = _generator("cli_reference")
    page = (ROOT / "docs" / "command-line.md").read_text()
    assert cli_reference.MARKER in page
    assert page.split(cli_reference.MARKER)[1] == cli_reference.reference().split(
        cli_reference.MARKER)[1], "run python docs/cli_reference.py"
