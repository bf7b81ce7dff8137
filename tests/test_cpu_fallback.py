"""Without its compiled kernel the "cpu" backend falls back to "loop", warning once; a build
killed halfway does not make later ones wait for ever."""

import os
import subprocess
import sys
import threading
import time

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


def _lock(directory, age):
    lock = directory / "lock"
    lock.touch()
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def test_a_lock_left_by_a_killed_build_is_removed_with_a_warning(tmp_path):
    """torch waits for ever on a build lock whose holder died; gatedrnn removes one that is
    older than a build can take, and says so."""
    from gatedrnn.kernels import cpu

    lock = _lock(tmp_path, age=2 * 3600)
    with pytest.warns(UserWarning, match="removed .*lock, left 120 minutes ago"):
        cpu._wait_for_build_lock(tmp_path)
    assert not lock.exists()


def test_a_live_build_lock_is_waited_for(tmp_path, capfd):
    """A lock younger than STALE_LOCK_SECONDS is another process's build: it is waited for,
    not removed, and the wait is announced."""
    from gatedrnn.kernels import cpu

    lock = _lock(tmp_path, age=1)
    released = threading.Timer(0.3, lock.unlink)
    start = time.perf_counter()
    released.start()
    cpu._wait_for_build_lock(tmp_path, poll=0.05)
    assert time.perf_counter() - start >= 0.3
    assert "waiting for another process's build" in capfd.readouterr().err


def test_a_lock_that_outlives_a_build_while_waited_for_is_removed(tmp_path, monkeypatch):
    from gatedrnn.kernels import cpu

    monkeypatch.setattr(cpu, "STALE_LOCK_SECONDS", 0.2)
    lock = _lock(tmp_path, age=0)
    with pytest.warns(UserWarning, match="never finished"):
        cpu._wait_for_build_lock(tmp_path, poll=0.05)
    assert not lock.exists()


def test_no_lock_no_wait(tmp_path):
    from gatedrnn.kernels import cpu

    start = time.perf_counter()
    cpu._wait_for_build_lock(tmp_path, poll=10)
    assert time.perf_counter() - start < 1
