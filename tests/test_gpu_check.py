"""`benchmarks/gpu_check.py`, the script for the day a GPU is lent, kept working on CPU: its logic (deterministic
training per precision, a learned ensemble on top, the embedded backends twice) with `--device cpu`, and its
clean skip where torch sees no CUDA device. A broken GPU-day script is found here, not on the lent machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _run(*args: str, tmp_path: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env_extra}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_gpu_check_logic_on_cpu(tmp_path: Path) -> None:
    out = _run("--device", "cpu", "--width", "0.0625", "--size", "32", "64", "--steps", "2",
               "--precisions", "32-true", "bf16-mixed", "--ensemble", "learned-probability",
               "--backends", "--backends-steps", "2", "--work", str(tmp_path / "work"), tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "ensemble learned-probability" in lines[0] and lines[-1] == "gpu_check: OK"
    assert lines[0].endswith("fp32 IEEE (no TF32)")  # as reprolib trains; --tf32 times PyTorch's default
    for name in ("32-true:", "bf16-mixed:", "backends strong:", "backends  light:"):
        line = next((ln for ln in lines if ln.strip().startswith(name)), "")
        assert "finite True" in line and "identical runs True" in line, (name, out.stdout[-3000:])
    # both strengths' backends were written by each of the two runs
    assert len(list((tmp_path / "work").glob("backends-*/*/segmentation.pt"))) == 4


def test_gpu_check_skips_cleanly_without_cuda(tmp_path: Path) -> None:
    hidden = {"CUDA_VISIBLE_DEVICES": ""}  # no CUDA device for torch, also on a machine that has one
    out = _run(tmp_path=tmp_path, **hidden)
    assert out.returncode == 0 and out.stdout.startswith("gpu_check: SKIPPED - no CUDA device"), out.stdout + out.stderr
    refused = _run("--device", "cuda", tmp_path=tmp_path, **hidden)
    assert refused.returncode == 1 and "torch sees no CUDA device" in refused.stderr
