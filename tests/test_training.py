"""Training on Lightning: a tiny run, bit-identical resume after SIGKILL, time budget, finished runs,
WandB offline without secrets, and DDP on CPU (2 processes, gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _make_processed import make_processed_split

from reprolib.training import find_resume_checkpoint, load_trained, train

HERE = Path(__file__).resolve().parent
SCRIPT = """
import sys, json, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {tests!r})
from reprolib.training import train
train(json.loads(sys.argv[1]), sys.argv[2])
"""


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("splits")
    return make_processed_split(root / "train", 8), make_processed_split(root / "val", 4, seed=1)


def _cfg(splits: tuple[Path, Path], **kw) -> dict:
    cfg = dict(train_split=str(splits[0]), val_split=str(splits[1]), size=[64, 128], batch_size=2, max_steps=8,
               val_every_n_steps=4, checkpoint_every=1, model={"width": 0.0625, "pretrained": False},
               wandb_mode="disabled", seed=0)
    cfg.update(kw)
    return cfg


def _run_subprocess(cfg: dict, run_dir: Path, env: dict | None = None) -> subprocess.Popen:
    # a script file, not `python -c`: Lightning's DDP re-launches the script for the other ranks
    script = run_dir.parent / f"_train_{run_dir.name}.py"
    script.write_text(SCRIPT.format(tests=str(HERE)))
    return subprocess.Popen([sys.executable, str(script), json.dumps(cfg), str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_tiny_run_writes_checkpoints_metrics_and_is_not_retrained(splits, tmp_path: Path) -> None:
    run = train(_cfg(splits), tmp_path / "run")
    done = json.loads((run / "done.json").read_text())
    assert done["global_step"] == 8 and 0 <= done["metrics"]["val/ap"] <= 1
    assert (run / "checkpoints" / "best.ckpt").is_file()
    metrics_csv = (run / "csv" / "session-0" / "metrics.csv").read_text()
    assert "train/loss" in metrics_csv and "val/fpr95" in metrics_csv
    net, ensemble = load_trained(run)
    assert ensemble is None and sum(p.numel() for p in net.parameters()) > 0
    before = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    train(_cfg(splits), run)  # finished: returns without touching anything
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before


def test_learned_ensemble_variant_trains(splits, tmp_path: Path) -> None:
    run = train(_cfg(splits, max_steps=2, ensemble="learned-probability"), tmp_path / "e2e")
    _, ensemble = load_trained(run)
    assert ensemble is not None and ensemble.mode == "probability"


def test_kill_and_resume_is_bit_identical(splits, tmp_path: Path) -> None:
    cfg = _cfg(splits, max_steps=12, val_every_n_steps=5)
    train(cfg, tmp_path / "straight")
    killed = tmp_path / "killed"
    proc = _run_subprocess(cfg, killed)
    ckpt, step, deadline = killed / "checkpoints" / "last.ckpt", -1, time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if ckpt.is_file():
            try:
                step = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
            except Exception:  # noqa: BLE001 - the file is replaced atomically, but be patient anyway
                step = -1
            if step >= 4:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed mid-way"
    assert 4 <= step < 12 and not (killed / "done.json").exists()
    assert find_resume_checkpoint(killed) == ckpt
    train(cfg, killed)  # resumes from last.ckpt
    a, b = _weights(tmp_path / "straight"), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the plateau scheduler stepped once per validation (steps 5 and 10) in both runs, its state restored on resume
    sa, sb = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["plateau"]
              for d in (tmp_path / "straight", killed))
    assert sa == sb and sa["last_epoch"] == 2 and sa["best"] < float("inf")


def test_resume_from_kaggle_input(splits, tmp_path: Path) -> None:
    cfg = _cfg(splits, max_steps=6)
    first = tmp_path / "session1" / "run-x"
    train(_cfg(splits, max_steps=3), first)
    (first / "done.json").unlink()  # as if the session had stopped at step 3
    mounted = tmp_path / "kaggle_input" / "reprolib-table4" / "data" / "runs"
    mounted.mkdir(parents=True)
    os.rename(first, mounted / "run-x")
    found = find_resume_checkpoint(tmp_path / "session2" / "run-x", str(tmp_path / "kaggle_input"))
    assert found == mounted / "run-x" / "checkpoints" / "last.ckpt"
    run = train({**cfg, "kaggle_input": str(tmp_path / "kaggle_input")}, tmp_path / "session2" / "run-x")
    assert json.loads((run / "done.json").read_text())["global_step"] == 6


def test_time_budget_stops_cleanly_with_checkpoint(splits, tmp_path: Path) -> None:
    run = train(_cfg(splits, max_steps=100000, max_time=1), tmp_path / "budget")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert 0 < ckpt["global_step"] < 100000 and not (run / "done.json").exists()


def test_wandb_offline_writes_locally_and_never_the_key(splits, tmp_path: Path) -> None:
    secret = "wandb-secret-key-0123456789abcdef0123"
    env = {**os.environ, "WANDB_API_KEY": secret, "WANDB_MODE": "offline"}
    proc = _run_subprocess(_cfg(splits, max_steps=2, val_every_n_steps=2, wandb_mode="offline"), tmp_path / "wb", env=env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    files = [p for p in (tmp_path / "wb").rglob("*") if p.is_file()]
    assert any("offline-run" in str(p) for p in files), "no offline WandB run directory"
    assert any(p.suffix == ".png" and "media" in str(p) for p in files), "no sample prediction logged"
    for p in files:
        assert secret.encode() not in p.read_bytes(), p


def test_ddp_on_cpu_two_processes(splits, tmp_path: Path) -> None:
    cfg = _cfg(splits, max_steps=2, devices=2, batch_size=2, val_every_n_steps=2)
    proc = _run_subprocess(cfg, tmp_path / "ddp", env={**os.environ, "PL_DISABLE_FORK": "1"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    done = json.loads((tmp_path / "ddp" / "done.json").read_text())
    assert done["global_step"] == 2 and "val/loss" in done["metrics"]
