"""Without its compiled kernel the "cpu" backend falls back to "loop", warning once."""

import os
import subprocess
import sys

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

    import pytest

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
    import pytest
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
