"""Without its compiled kernel the "cpu" backend falls back to "loop", warning once; a build
killed halfway does not make later ones wait for ever."""

import os
import re
import subprocess
import sys
import threading
import time
import warnings

import pytest

SCRIPT = """
import warnings, torch, gatedrnn
from gatedrnn import kernels
from gatedrnn.kernels import cpu
if {broken}:
    def broken_build():
        raise RuntimeError("no C++ compiler found")
    cpu._build = broken_build
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gru = gatedrnn.GRU(3, 4, backend="cpu")
    x = torch.randn(5, 2, 3)
    gru(x)[0].sum().backward()
    gru(x)
print(kernels.resolve("cpu", x.device), kernels.resolve(None, x.device))
print([str(w.message) for w in caught if "compiled CPU backend" in str(w.message)])
"""


def _run(broken: bool, **env):
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(broken=broken)],
                            capture_output=True, text=True, check=True,
                            env=dict(os.environ, **env))
    backends, warnings = result.stdout.splitlines()[:2]
    return backends, eval(warnings)


def test_a_failed_build_falls_back_to_the_loop_backend_with_one_warning():
    backends, warnings = _run(broken=True)
    assert backends == "loop loop"
    assert len(warnings) == 1
    assert "using the slower 'loop' backend" in warnings[0]
    assert "no C++ compiler found" in warnings[0]


def test_the_kernel_can_be_turned_off():
    backends, warnings = _run(broken=False, GATEDRNN_CPU_KERNEL="0")
    assert backends == "loop loop"
    assert warnings == []


def test_the_kernel_builds_where_there_is_a_compiler():
    """Where a C++ compiler exists the compiled path must really run, or the cpu-backend tests
    would silently test the loop fallback."""
    import shutil

    from gatedrnn.kernels import cpu

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    if os.environ.get("GATEDRNN_CPU_KERNEL") == "0":
        pytest.skip("GATEDRNN_CPU_KERNEL=0")
    assert cpu.available(), cpu._state.get("why")


def test_the_kernel_threads_its_row_blocks_where_aten_uses_openmp():
    """at::parallel_for is a header template over an OpenMP pragma: built without -fopenmp the
    kernel still gives the right numbers, on one thread. That went unseen until 2026-11-27, so
    the built module must call into OpenMP (GOMP_parallel, libgomp's entry for a parallel
    region) wherever ATen's own parallel backend is OpenMP, on Linux."""
    import torch

    from gatedrnn.kernels import cpu

    if not sys.platform.startswith("linux"):
        pytest.skip("the OpenMP flag is used on Linux only")
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("ATen's parallel backend is not OpenMP here")
    if not cpu.available():
        pytest.skip(f"no compiled kernel: {cpu._state.get('why')}")
    with open(cpu.extension().__file__, "rb") as library:
        assert b"GOMP_parallel" in library.read()


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """_build with torch's build directory in tmp_path and its load a stub; torch's lock there
    is a file (FileBaton, torch ≤ 2.14) unless the test deletes FileBaton."""
    from torch.utils import cpp_extension

    from gatedrnn.kernels import cpu

    if cpu.fcntl is None:
        pytest.skip("no fcntl here: torch's own build lock is all there is")
    monkeypatch.setattr(cpp_extension, "_get_build_directory", lambda name, verbose: tmp_path)
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: "loaded")
    monkeypatch.setattr(cpp_extension, "FileBaton", object, raising=False)
    (tmp_path / "gatedrnn_cpu.so").touch()
    return cpu._build


def test_a_lock_left_by_a_killed_build_is_removed_with_a_warning(fake_build, tmp_path):
    """torch (≤ 2.14) waits for ever on a build lock file whose holder died; holding gatedrnn's
    own OS lock proves no live build holds it, so it goes at once, with a warning."""
    lock = tmp_path / "lock"
    lock.touch()
    said = f"removed {re.escape(str(lock))}, left by a build .* never finished"
    with pytest.warns(UserWarning, match=said):
        assert fake_build() == "loaded"
    assert not lock.exists()


def test_a_live_build_is_waited_for_and_its_lock_kept(fake_build, tmp_path, capfd):
    """Another process building holds gatedrnn's OS lock (a second open file description
    stands for it here: flock locks conflict between them) and torch's lock file; the build
    waits for it, says so, and does not touch its lock."""
    import fcntl

    lock = tmp_path / "lock"
    lock.touch()
    other = open(tmp_path / "gatedrnn-build.lock", "w")
    fcntl.flock(other, fcntl.LOCK_EX)

    def finish():   # as torch's FileBaton.release, then the process's exit
        lock.unlink()
        other.close()

    start = time.perf_counter()   # before the timer: the lock goes 0.3 s after it starts
    threading.Timer(0.3, finish).start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fake_build() == "loaded"
    assert time.perf_counter() - start >= 0.3
    assert "waiting for another process's build" in capfd.readouterr().err


def test_where_torch_takes_an_os_lock_its_file_is_left_alone(fake_build, tmp_path,
                                                             monkeypatch):
    """torch 2.15 holds an OS lock on its file and leaves the file in place: there the file is
    no sign of a dead build."""
    from torch.utils import cpp_extension

    monkeypatch.delattr(cpp_extension, "FileBaton")
    lock = tmp_path / "lock"
    lock.touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fake_build() == "loaded"
    assert lock.exists()


def test_each_environment_keeps_a_build_of_its_own(monkeypatch):
    """Two virtualenvs (or flags, or torch versions) used to rebuild one shared folder over each
    other: the build's name is a key of everything it depends on."""
    from gatedrnn.kernels import cpu

    flags = cpu._flags()
    here = cpu._name(flags)
    assert here == cpu._name(list(flags)) and here.startswith("gatedrnn_cpu_")
    assert cpu._name(flags + ["-DOTHER"]) != here
    monkeypatch.setattr(sys, "prefix", "/another/venv")
    assert cpu._name(flags) != here


def test_a_build_of_this_key_is_loaded_without_asking_the_build_tools(monkeypatch):
    from torch.utils import cpp_extension

    from gatedrnn.kernels import cpu

    if not cpu.available():
        pytest.skip(f"no compiled kernel: {cpu._state.get('why')}")

    def rebuild(**kwargs):
        raise AssertionError("built again")
    monkeypatch.setattr(cpp_extension, "load", rebuild)
    assert hasattr(cpu._build(), "forward")
