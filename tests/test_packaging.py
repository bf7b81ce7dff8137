"""A built wheel holds every file of the package that git tracks, not only its Python: the
compiled CPU backend's C++ source, the GPU plan's measured choices."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tracked(folder: str) -> set[str]:
    try:
        out = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return set(out.split())


def test_the_wheel_holds_every_tracked_file_of_the_package(tmp_path):
    pytest.importorskip("setuptools")
    package = _tracked("gatedrnn")
    # Built from a copy of the tracked files: setuptools leaves build/ where it builds, and a
    # build/ left from before would hide what this one leaves out.
    source = tmp_path / "source"
    for name in package | {"pyproject.toml", "README.md"}:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp_path), str(source)], check=True,
                   capture_output=True)
    (wheel,) = tmp_path.glob("gatedrnn-*.whl")
    with zipfile.ZipFile(wheel) as z:
        held = set(z.namelist())
    missing = package - held
    assert not missing, f"the wheel leaves out {sorted(missing)}"
