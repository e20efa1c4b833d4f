"""Training on Lightning: a tiny run, bit-identical resume after SIGKILL, time budget, finished runs,
WandB offline without secrets, and DDP on CPU (2 processes, gloo)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from _make_processed import make_processed_split

from reprolib.training import find_resume_checkpoint, load_trained, train
from reprolib.training.callbacks import stop_after_this_step
from reprolib.training.run import RunConflictError

HERE = Path(__file__).resolve().parent
SCRIPT = """
import sys, json, os, signal, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {tests!r})
import lightning as L
from reprolib.training import train

class KillAt(L.Callback):  # argv[3:5]: SIGKILL itself in this hook at this global step (deterministic kills)
    def __init__(self, hook, step):
        setattr(self, hook, lambda trainer, *a: trainer.global_step == step and os.kill(os.getpid(), signal.SIGKILL))

train(json.loads(sys.argv[1]), sys.argv[2], callbacks=[KillAt(sys.argv[3], int(sys.argv[4]))] if len(sys.argv) > 3 else [])
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


def _run_subprocess(cfg: dict, run_dir: Path, env: dict | None = None, kill_at: tuple[str, int] | None = None,
                    ) -> subprocess.Popen:
    # a script file, not `python -c`: Lightning's DDP re-launches the script for the other ranks
    script = run_dir.parent / f"_train_{run_dir.name}.py"
    script.write_text(SCRIPT.format(tests=str(HERE)))
    kill = [kill_at[0], str(kill_at[1])] if kill_at else []
    return subprocess.Popen([sys.executable, str(script), json.dumps(cfg), str(run_dir), *kill],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _ckpt(run_dir: Path, which: str = "last") -> dict:
    return torch.load(run_dir / "checkpoints" / f"{which}.ckpt", map_location="cpu", weights_only=True)


def _same_run(a: Path, b: Path) -> None:
    """Same final weights, plateau scheduler state and best checkpoint (step and weights)."""
    for which in ("last", "best"):
        ca, cb = _ckpt(a, which), _ckpt(b, which)
        assert ca["global_step"] == cb["global_step"], which
        assert ca["state_dict"].keys() == cb["state_dict"].keys(), which
        assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k]) for k in ca["state_dict"]), which
    assert _ckpt(a)["plateau"] == _ckpt(b)["plateau"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_tiny_run_writes_checkpoints_metrics_and_is_not_retrained(splits, tmp_path: Path) -> None:
    # Messages that say nothing about the run do not reach the user: Lightning's "`weights_only` was not set"
    # for a save that does not say what it writes (it reads like an unsafe load), its advert for a cloud logger,
    # and torch 2.14's warning about Lightning's use of LeafSpec. Its other messages still do.
    watched = [logging.getLogger(f"lightning.pytorch.{name}") for name in
               ("trainer.connectors.checkpoint_connector", "utilities.rank_zero")]
    records, levels = _Records(), [lg.level for lg in watched]
    for lg in watched:
        lg.addHandler(records)
        lg.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = train(_cfg(splits), tmp_path / "run")
    finally:
        for lg, level in zip(watched, levels, strict=True):
            lg.removeHandler(records)
            lg.setLevel(level)
    assert any("GPU available" in m for m in records.messages), records.messages
    assert not [m for m in records.messages if "weights_only" in m or "litlogger" in m], records.messages
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
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


def test_a_rerun_removes_the_partial_checkpoints_a_killed_session_left(splits, tmp_path: Path) -> None:
    """A session killed while writing a checkpoint leaves its temp file (in `full` 225 MB, a snapshot 75 MB); the
    run's next train() removes those nobody has touched for a while, and keeps a recent one (a writer at work)."""
    run = tmp_path / "run"
    stale = [run / "checkpoints" / ".last.ckpt.0badc0de.tmp", run / "checkpoints" / "validation" / ".v.ckpt.0badc0df.tmp"]
    live = run / "checkpoints" / ".best.ckpt.1badc0de.tmp"
    for path in (*stale, live):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    for path in stale:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    train(_cfg(splits), run)
    assert not any(p.exists() for p in stale) and live.exists()
    assert (run / "done.json").is_file()


def test_learned_ensemble_variant_trains(splits, tmp_path: Path) -> None:
    run = train(_cfg(splits, max_steps=2, ensemble="learned-probability"), tmp_path / "e2e")
    _, ensemble = load_trained(run)
    assert ensemble is not None and ensemble.mode == "probability"
    # trained: the optimiser moved the ensemble's weights away from their initial (1, 1, 1, 1)
    from reprolib.ensemble.learned import LearnedEnsemble

    init = LearnedEnsemble("probability").weights.detach()
    moved = (ensemble.weights.detach() - init).abs()
    assert bool((moved > 0).all()), (ensemble.weights, init)


def test_kill_and_resume_is_bit_identical(splits, tmp_path: Path) -> None:
    cfg = _cfg(splits, max_steps=24, val_every_n_steps=5)  # a wide window for the kill
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
    assert 4 <= step < 24 and not (killed / "done.json").exists()
    assert find_resume_checkpoint(killed) == ckpt
    train(cfg, killed)  # resumes from last.ckpt
    # weights, best.ckpt and the plateau scheduler (stepped once per validation: steps 5, 10, 15, 20) all agree
    _same_run(tmp_path / "straight", killed)
    assert _ckpt(killed)["plateau"]["last_epoch"] == 4 and _ckpt(killed)["plateau"]["best"] < float("inf")


class _StopAt(L.Callback):
    """What a time budget or a session deadline does, at a chosen step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            stop_after_this_step(trainer)


@pytest.mark.parametrize("stop", [("kill", "on_validation_start", 5), ("kill", "on_train_batch_start", 5),
                                  ("stop", 7), ("stop", 5)],
                         ids=["killed-before-validation", "killed-after-validation", "stopped-between-validations",
                              "stopped-at-validation"])
def test_resume_after_any_stop_ends_as_the_uninterrupted_run(splits, tmp_path: Path, stop: tuple) -> None:
    # Lightning 2.6 alone fails the first three: its step-5 checkpoint precedes the validation at step 5 and
    # a resume skips that validation; a stop between validations adds one (see reprolib.training.callbacks)
    cfg = _cfg(splits, max_steps=12, val_every_n_steps=5)
    straight = train(cfg, tmp_path / "straight")
    assert _ckpt(straight)["plateau"]["last_epoch"] == 2  # validations at steps 5 and 10
    run = tmp_path / "interrupted"
    if stop[0] == "kill":
        proc = _run_subprocess(cfg, run, kill_at=stop[1:])
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    else:
        train(cfg, run, callbacks=[_StopAt(stop[1])])
        assert _ckpt(run)["global_step"] == stop[1] and _ckpt(run)["plateau"]["last_epoch"] == stop[1] // 5
    assert not (run / "done.json").exists()
    train(cfg, run)
    _same_run(straight, run)


@pytest.mark.parametrize("kill", ["after-the-final-checkpoint", "after-the-last-validation"])
def test_a_resumed_run_s_done_json_holds_the_uninterrupted_run_s_metrics(splits, tmp_path: Path, kill: str) -> None:
    # done.json's metrics were this session's callback_metrics only: a run killed after its final last.ckpt but
    # before done.json, resumed, wrote "metrics": {}; one killed after its last validation lost every val/* value
    cfg = _cfg(splits, max_steps=12, val_every_n_steps=5)  # last validation at step 10
    straight = train(cfg, tmp_path / "straight")
    run = tmp_path / "interrupted"
    if kill == "after-the-final-checkpoint":  # the exact state such a kill leaves: a finished last.ckpt, no done.json
        train(cfg, run)
        (run / "done.json").unlink()
    else:  # killed before step 12, its step-11 last.ckpt written: the resumed session validates no more
        proc = _run_subprocess(cfg, run, kill_at=("on_train_batch_start", 11))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        assert _ckpt(run)["global_step"] == 11 and not (run / "done.json").exists()
    train(cfg, run)
    expected = json.loads((straight / "done.json").read_text())
    assert "val/loss" in expected["metrics"] and "train/loss" in expected["metrics"]
    assert json.loads((run / "done.json").read_text()) == expected
    _same_run(straight, run)


class _BestOnStart(L.Callback):
    """The best validation loss the run remembers when training (re)starts."""

    score = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.score = next(c for c in trainer.checkpoint_callbacks if c.monitor == "val/loss").best_model_score


@pytest.mark.parametrize("how", ["folder-moved", "kaggle-mount"])
def test_a_run_resumed_from_another_folder_keeps_its_best(splits, tmp_path: Path, how: str) -> None:
    # Lightning forgets the best score when the checkpoint folder differs, and the next validation replaced
    # best.ckpt whatever its loss (a run started on one machine, resumed on another)
    cfg = _cfg(splits, max_steps=8, val_every_n_steps=2)
    straight = train(cfg, tmp_path / "straight")
    first = train(cfg, tmp_path / "a" / "run", callbacks=[_StopAt(7)])  # validated at 2, 4, 6
    remembered = _ckpt(first)["callbacks"][next(k for k in _ckpt(first)["callbacks"] if "val/loss" in k)]
    assert remembered["best_model_score"] is not None and (first / "checkpoints" / "best.ckpt").is_file()
    if how == "folder-moved":
        os.rename(tmp_path / "a", tmp_path / "b")
        run, extra = tmp_path / "b" / "run", {}
    else:
        mounted = tmp_path / "kaggle_input" / "reprolib-table4" / "data" / "runs"
        mounted.mkdir(parents=True)
        os.rename(first, mounted / "run")
        run, extra = tmp_path / "session2" / "run", {"kaggle_input": str(tmp_path / "kaggle_input")}
    probe = _BestOnStart()
    train({**cfg, **extra}, run, callbacks=[probe])
    assert probe.score is not None and float(probe.score) == float(remembered["best_model_score"])
    _same_run(straight, run)


def test_resume_from_kaggle_input(splits, tmp_path: Path) -> None:
    cfg = _cfg(splits, max_steps=6)
    first = tmp_path / "session1" / "run-x"
    train(cfg, first, callbacks=[_StopAt(3)])  # the first session stops at step 3
    mounted = tmp_path / "kaggle_input" / "reprolib-table4" / "data" / "runs"
    mounted.mkdir(parents=True)
    os.rename(first, mounted / "run-x")
    found = find_resume_checkpoint(tmp_path / "session2" / "run-x", str(tmp_path / "kaggle_input"))
    assert found == mounted / "run-x" / "checkpoints" / "last.ckpt"
    kaggle = {"kaggle_input": str(tmp_path / "kaggle_input")}
    # a run of the same folder name but other settings is not continued (its weights are not this run's)
    with pytest.raises(RunConflictError, match=r"run-x: holds an unfinished run with other settings: lr"):
        train({**cfg, **kaggle, "lr": 1e-3}, tmp_path / "session2" / "run-x")
    assert not (tmp_path / "session2").exists()
    run = train({**cfg, **kaggle}, tmp_path / "session2" / "run-x")
    assert json.loads((run / "done.json").read_text())["global_step"] == 6


def test_time_budget_stops_cleanly_with_checkpoint(splits, tmp_path: Path) -> None:
    cfg = _cfg(splits, max_steps=100000, max_time=1)
    run = train(cfg, tmp_path / "budget")
    first = _ckpt(run)["global_step"]
    assert 0 < first < 100000 and not (run / "done.json").exists()
    # the next session gets its own budget (Lightning's max_time restores the time spent, and trains no step)
    train(cfg, run)
    assert first < _ckpt(run)["global_step"] < 100000 and not (run / "done.json").exists()


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
    # offline, what only the dashboard's system and files tabs show is left out (~1 s a run): no console copy, no
    # package list; the history (metrics) is there
    names = {p.name for p in files}
    assert not names & {"output.log", "requirements.txt"}, names
    assert any(p.suffix == ".wandb" for p in files)


TWO_RUNS = """
import sys, json, warnings
warnings.filterwarnings("ignore")
import lightning as L
from reprolib.training import train

class Fail(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2:
            raise RuntimeError("planned failure")

fail_first = sys.argv[2] == "fail-first"
for i, run_dir in enumerate(sys.argv[3:]):
    try:
        train(json.loads(sys.argv[1]), run_dir, callbacks=[Fail()] if fail_first and i == 0 else [])
    except RuntimeError as exc:
        assert "planned failure" in str(exc) and i == 0
"""


@pytest.mark.parametrize("how", ["clean", "fail-first"])
def test_each_run_of_a_process_is_its_own_wandb_run(splits, tmp_path: Path, how: str) -> None:
    # a table trains its runs one after another in one kernel: each must get a WandB run of its own, in its own
    # folder, not log into the previous one (which a WandbLogger does when a run is still open), also when the
    # previous one failed
    script = tmp_path / "two_runs.py"
    script.write_text(TWO_RUNS)
    cfg = _cfg(splits, max_steps=3, val_every_n_steps=1, wandb_mode="offline")
    runs = [tmp_path / "first", tmp_path / "second"]
    proc = subprocess.run([sys.executable, str(script), json.dumps(cfg), how, *map(str, runs)], capture_output=True,
                          env={**os.environ, "WANDB_MODE": "offline"}, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"anonymous setting" not in proc.stderr  # wandb's warning about an argument only Lightning passes
    ids = [[p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")] for run in runs]
    assert all(len(i) == 1 for i in ids) and ids[0] != ids[1], ids
    for run in runs:  # each with a history file of its own
        assert list((run / "wandb").glob("offline-run-*/run-*.wandb")), run
    assert (runs[0] / "done.json").is_file() == (how == "clean") and (runs[1] / "done.json").is_file()


def test_online_wandb_run_id_is_kept_with_the_run(tmp_path: Path, monkeypatch) -> None:
    # online, a run's later sessions (Kaggle: the next push) resume the W&B run of its first session
    from reprolib.training.run import WANDB_ID_FILE, _loggers

    def wandb_id(run_dir: Path, mode: str = "online", resume: Path | None = None) -> str | None:
        return _loggers(run_dir, {"wandb_mode": mode}, resume)[-1].version  # the id, before any W&B call

    run = tmp_path / "run"
    first = wandb_id(run)
    assert first and wandb_id(run) == first and json.loads((run / WANDB_ID_FILE).read_text()) == {"id": first}
    # resumed from another folder's last.ckpt (a mounted previous output): that run's id, kept here from now on
    moved = tmp_path / "moved"
    assert wandb_id(moved, resume=run / "checkpoints" / "last.ckpt") == first == wandb_id(moved)
    # another (or a deleted and retrained) run is another W&B run; offline runs carry no id
    assert wandb_id(tmp_path / "other") not in (None, first)
    (run / WANDB_ID_FILE).unlink()
    assert wandb_id(run) != first
    assert wandb_id(tmp_path / "off", "offline") is None and not (tmp_path / "off" / WANDB_ID_FILE).exists()
    # a DDP rank > 0 never starts the W&B run, and writes nothing
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert wandb_id(tmp_path / "rank1") and not (tmp_path / "rank1" / WANDB_ID_FILE).exists()


def test_train_resumes_the_online_wandb_run_of_the_first_session(splits, tmp_path: Path, monkeypatch) -> None:
    # train() itself: no network here, so the WandbLogger is replaced by a CSVLogger that records the id it got
    import reprolib.training.run as run_module

    ids: list = []

    class RecordingLogger(L.pytorch.loggers.CSVLogger):
        def __init__(self, *, id: str | None = None, save_dir: str, name: str, **kwargs) -> None:  # noqa: A002
            ids.append(id)
            super().__init__(save_dir, name="recorded")

    monkeypatch.setattr(run_module, "WandbLogger", RecordingLogger)
    cfg = _cfg(splits, max_steps=4, val_every_n_steps=2, wandb_mode="online")
    train(cfg, tmp_path / "run", callbacks=[_StopAt(2)])  # the first session stops at step 2
    assert not (tmp_path / "run" / "done.json").exists()
    train(cfg, tmp_path / "run")  # the next session finishes the run, in the same W&B run
    assert (tmp_path / "run" / "done.json").is_file()
    assert len(ids) == 2 and ids[0] and ids[0] == ids[1], ids


def test_ddp_on_cpu_two_processes(splits, tmp_path: Path) -> None:
    cfg = _cfg(splits, max_steps=2, devices=2, batch_size=2, val_every_n_steps=2)
    proc = _run_subprocess(cfg, tmp_path / "ddp", env={**os.environ, "PL_DISABLE_FORK": "1"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    done = json.loads((tmp_path / "ddp" / "done.json").read_text())
    assert done["global_step"] == 2 and "val/loss" in done["metrics"]


def _logged(run_dir: Path, key: str) -> list[float]:
    """The values of one metric in a run's CSV log, in order."""
    import csv

    with open(run_dir / "csv" / "session-0" / "metrics.csv") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


def test_plateau_split_steps_the_scheduler_and_val_split_keeps_best(splits, tmp_path: Path) -> None:
    # the report's selection (spec §4.2): best.ckpt on one split (FS L&F), the scheduler on another (FS Static)
    plateau = make_processed_split(tmp_path / "plateau", 3, seed=7, label_dirs=("labels", "labels_with_ROI"))
    run = train(_cfg(splits, plateau_split=str(plateau), plateau_label_dir="labels_with_ROI"), tmp_path / "run")
    val, plat = _logged(run, "val/loss"), _logged(run, "plateau_val/loss")
    assert len(val) == len(plat) == 2 and set(val).isdisjoint(plat)  # steps 4 and 8, two different splits
    state = _ckpt(run)
    assert state["plateau"]["last_epoch"] == 2
    assert state["plateau"]["best"] == pytest.approx(plat[0] if plat[1] >= plat[0] * (1 - 1e-4) else plat[1], rel=1e-6)
    best = next(v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert float(best["best_model_score"]) == pytest.approx(min(val), rel=1e-6)
    assert _ckpt(run, "best")["global_step"] == 4 * (1 + val.index(min(val)))
    # the selection settings are part of the run's identity: another plateau split is another run
    with pytest.raises(RunConflictError, match="plateau_split"):
        train(_cfg(splits), run)


def test_default_selection_settings_leave_run_identity_unchanged() -> None:
    from reprolib.experiments.results import run_hash
    from reprolib.training.config import TrainConfig

    cfg = {"train_split": "/data/processed/embedded-train-abc123", "val_split": "/x/processed/embedded-val-def456",
           "label_dir": "labels_with_void_no_ego", "lr": 1e-4, "batch_size": 2, "max_steps": 4,
           "val_every_n_steps": 2, "model": {"width": 0.0625, "seed": 0}, "ensemble": "none", "seed": 0,
           "size": [64, 128], "profile": "tiny", "device": "cpu", "wandb_mode": "disabled"}
    full = TrainConfig.from_dict(cfg)
    # values computed with the code before the selection settings existed (commit 38006a3)
    assert run_hash(cfg) == "95fbeba7c247" and run_hash(full.to_dict()) == "8abbd7f697d4"
    assert not {"val_label_dir", "plateau_split", "plateau_label_dir", "val_loss"} & set(full.identity())
    assert full.val_loss == "pooled"
    per_image = full.replace(val_loss="per_image")
    assert per_image.identity()["val_loss"] == "per_image" and run_hash(per_image.to_dict()) != run_hash(full.to_dict())
    with pytest.raises(ValueError, match="val_loss"):
        full.replace(val_loss="mean")
    report = full.replace(plateau_split="/y/processed/fs_static-123", val_label_dir="labels")
    assert report.identity()["plateau_split"] == "fs_static-123"  # by folder name, as the other splits
    assert run_hash(report.to_dict()) != run_hash(full.to_dict())
    assert full.differing_keys(report) == ["val_label_dir", "plateau_split"]


def test_a_run_with_a_plateau_split_resumes_as_the_uninterrupted_run(splits, tmp_path: Path) -> None:
    # the plateau state comes back from last.ckpt as without a plateau split; best.ckpt's record too
    plateau = make_processed_split(tmp_path / "plateau", 2, seed=7)
    cfg = _cfg(splits, max_steps=6, val_every_n_steps=2, plateau_split=str(plateau))
    straight = train(cfg, tmp_path / "straight")
    run = tmp_path / "interrupted"
    train(cfg, run, callbacks=[_StopAt(3)])
    assert _ckpt(run)["global_step"] == 3 and _ckpt(run)["plateau"]["last_epoch"] == 1
    train(cfg, run)
    _same_run(straight, run)
    assert _ckpt(run)["plateau"]["last_epoch"] == 3


def test_lightning_s_tensor_core_advice_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    # On an H200 every process printed Lightning's advice to trade fp32 matmul precision for speed: the runs are fp32
    # by choice and the network's arithmetic is convolutions. Its check, called as Lightning calls it on such a GPU
    from lightning.fabric.accelerators import cuda as lightning_cuda

    from reprolib.training._lightning_noise import quiet_lightning

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(lightning_cuda, "_is_ampere_or_later", lambda device=None: True)
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    records, level = _Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        filters = list(logger.filters)
        for f in filters:
            logger.removeFilter(f)
        lightning_cuda._check_cuda_matmul_precision.__wrapped__(torch.device("cuda", 0))
        assert any("Tensor Cores" in m for m in records.messages)  # what reaches users otherwise
        records.messages.clear()
        quiet_lightning()
        lightning_cuda._check_cuda_matmul_precision.__wrapped__(torch.device("cuda", 0))
        assert records.messages == []
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
        for f in list(logger.filters):
            logger.removeFilter(f)
        for f in filters:
            logger.addFilter(f)
