"""The Triton kernels compile for the H100 (sm_90) on a machine without a GPU: Triton's compiler
and the ptxas in its wheel need no device. The interpreter (test_triton.py) checks the numbers;
this checks that the compiler accepts what the interpreter ran, for every launch mode.
benchmarks/compile_check.py compiles every kernel × variant × dtype (about a minute)."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_triton

require_triton()   # skips this module where the "triton" backend cannot run

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(platform.machine() != "x86_64" or sys.platform != "linux",
                    reason="Triton's ptxas ships for Linux x86-64")
def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compile_check.py"),
                          "--variants", "gru", "lstm_peephole", "--dtypes", "f32", "bf16"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "_" in line]
    # 10 kernels × (gru: 2 phases for the 4 step kernels, else 1; lstm_peephole 1) × 2 dtypes
    assert len(rows) == ((4 * 2 + 6) + 10) * 2, run.stdout
    assert not any("FAILED" in row for row in rows)
    # The products: bfloat16 on tensor cores, float32 in IEEE (no TF32: the backend's contract
    # unless the user allows it), none in the "gemm" mode's kernels (cuBLAS does them there).
    for row in rows:
        kernel, dtype, products = (row.split("|")[i].strip() for i in (1, 4, 8))
        if kernel.endswith("_gemm"):
            assert products == "none", row
        else:
            way = products.split(": ")[-1]
            assert way in (("mma", "wgmma") if dtype == "bf16" else ("fma",)), row
