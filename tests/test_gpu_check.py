"""benchmarks/gpu_check.py stays runnable: its dry run (tiny shapes, Triton's interpreter on the
CPU) goes through correctness (the persistent mode's in a child process), timings and the
table for one variant and one shape."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run_prints_the_table(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
                          "--variants", "lstm_peephole", "--shapes", "G2", "--dtypes", "f32",
                          "--out", str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("correctness: all within tolerance; persistent mode: ok; graph mode: nothing "
            "recorded (the interpreter runs it as step)") in run.stdout
    assert "| G2 | f32 | lstm_peephole |" in run.stdout.splitlines()[-1]
    result = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    assert {r["mode"] for r in result["correctness"]} == {"step", "graph", "sequence",
                                                            "persistent"}
    assert result["timings"][0]["cudnn"] == "LSTM"
