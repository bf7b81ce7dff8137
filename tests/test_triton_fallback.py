"""Where the "triton" backend cannot run (Triton missing or older than its kernels need, a GPU
before compute capability 8.0), CUDA tensors run "loop", saying why once, and asking for
"triton" by name is an error that says why. These run with or without Triton installed."""

import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gatedrnn import kernels
from gatedrnn.kernels import triton as triton_backend

CUDA = torch.device("cuda")
ROOT = Path(__file__).resolve().parent.parent
UNAVAILABLE = triton_backend.unavailable   # cached: cleared around each test that fakes triton


@pytest.fixture
def fresh(monkeypatch):
    """No reason warned yet, and the installed Triton looked at anew (and again after)."""
    monkeypatch.setattr(kernels, "_warned", set())
    UNAVAILABLE.cache_clear()
    yield monkeypatch
    UNAVAILABLE.cache_clear()


def _triton(monkeypatch, version):
    """The triton package as `version`, or not installed where version is None."""
    fake = None if version is None else types.SimpleNamespace(__version__=version)
    monkeypatch.setitem(sys.modules, "triton", fake)


@pytest.mark.parametrize("version, runs", [("3.4.0", False), ("3.5.0", True),
                                           ("3.6.0+git6a3f1c2", True), ("3.10.1", True),
                                           ("2.3.1", False)])
def test_the_installed_tritons_version_decides(fresh, version, runs):
    _triton(fresh, version)
    fresh.setattr(np, "__version__", "2.3.5")   # one the interpreter of any of them runs with
    why = triton_backend.unavailable()
    assert (why is None) == runs
    if not runs:
        assert why == (f"triton {version} is older than the 3.5 its kernels need "
                       "(pip install 'triton>=3.5'; torch 2.9 and later bring it)")


@pytest.mark.parametrize("version, numpy, interpreting, runs", [
    ("3.6.0", "2.4.0", True, False), ("3.5.0", "2.5.5", True, False),
    ("3.6.0", "2.3.5", True, True), ("3.7.0", "2.5.5", True, True),
    ("3.6.0", "2.5.5", False, True)])
def test_an_old_tritons_interpreter_needs_an_old_numpy(fresh, version, numpy, interpreting,
                                                       runs):
    """Triton's interpreter before 3.7 takes int() of one-element arrays, which NumPy 2.4
    refuses: every kernel then fails at its first load (measured: 48 of 48 of the backend's
    cases with NumPy 2.5.5 on 3.5.0 and 3.6.0). A GPU does not interpret."""
    _triton(fresh, version)
    fresh.setattr(np, "__version__", numpy)
    fresh.setenv("TRITON_INTERPRET", "1" if interpreting else "0")
    why = triton_backend.unavailable()
    assert (why is None) == runs
    if not runs:
        assert why == (f"triton {version}'s interpreter (TRITON_INTERPRET=1) cannot run with "
                       f"NumPy {numpy}, which refuses the int() it takes of one-element arrays "
                       "(pip install 'numpy<2.4', or 'triton>=3.7')")


def test_without_triton_installed_the_reason_says_how_to_install_it(fresh):
    _triton(fresh, None)   # import triton raises ImportError
    assert triton_backend.unavailable() == ("the triton package is not installed "
                                            "(pip install 'triton>=3.5')")


@pytest.mark.parametrize("version", [None, "3.4.0"], ids=["missing", "too old"])
def test_cuda_tensors_fall_back_to_the_loop_warning_once(fresh, version):
    _triton(fresh, version)
    with pytest.warns(UserWarning) as caught:
        assert kernels.resolve(None, CUDA) == "loop"
    assert len(caught) == 1
    assert str(caught[0].message) == ("gatedrnn: CUDA tensors run the slower 'loop' backend, "
                                      f"not 'triton': {triton_backend.unavailable()}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # said once is enough
        assert kernels.resolve("auto", CUDA, torch.bfloat16) == "loop"


def test_a_gpu_before_compute_capability_8_runs_the_loop_naming_its_capability(fresh):
    fresh.setattr(triton_backend, "unavailable", lambda: None)
    fresh.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    with pytest.warns(UserWarning, match=r"compute capability 8.0 or later, cuda has 7.5$"):
        assert kernels.resolve(None, CUDA) == "loop"


@pytest.mark.parametrize("version", [None, "3.4.0"], ids=["missing", "too old"])
def test_triton_asked_for_by_name_where_it_cannot_run_is_an_error(fresh, version):
    _triton(fresh, version)
    with pytest.raises(ValueError) as raised:
        kernels.resolve("triton", CUDA)
    assert str(raised.value) == f"backend: 'triton' cannot run here: {triton_backend.unavailable()}"


def test_other_devices_run_the_loop_without_a_word(fresh):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernels.resolve(None, torch.device("meta")) == "loop"


def test_without_triton_the_other_tests_still_run():
    """With no Triton at all (as on macOS), only the triton backend's own tests may skip: the
    interpreter's memory checks (conftest) once skipped every test there."""
    arguments = ["-q", "-p", "no:cacheprovider", "-rs", "-k", "f32 and (loop or triton)",
                 "tests/test_backends.py"]
    hide_triton = ("import sys; sys.modules['triton'] = None; import pytest; "
                   f"raise SystemExit(pytest.main({arguments!r}))")
    # (as a machine without Triton runs it: the Makefile asks for Triton on Linux only)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST_") and k != "GATEDRNN_REQUIRE_TRITON"}
    result = subprocess.run([sys.executable, "-c", hide_triton], capture_output=True,
                            text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\b[1-9]\d* passed", result.stdout), result.stdout[-3000:]
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("the triton package is not installed" in line for line in skips), skips
