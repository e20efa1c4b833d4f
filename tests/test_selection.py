"""Selecting a checkpoint on other validation splits from a finished run's trajectory (reprolib.training.selection):
the same best.ckpt weights, losses and done.json as training the run, and only when that is guaranteed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _make_processed import make_processed_split

from reprolib.io import read_png, write_png
from reprolib.training import train
from reprolib.training.config import plateau_cannot_act, validation_steps
from reprolib.training.selection import fork_path, shared_steps, snapshot_path, start_from_trajectory


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("selection")
    # anomaly and background swapped: the loss there rises as the net learns, so best.ckpt is not simply the last
    # step, and a plateau scheduler on it lowers the learning rate
    laf = _swap_labels(make_processed_split(root / "laf", 3, seed=5))
    return {"train": make_processed_split(root / "train", 8), "val": make_processed_split(root / "val", 4, seed=1),
            "laf": laf, "static": make_processed_split(root / "static", 3, seed=7),
            "static_swapped": _swap_labels(make_processed_split(root / "static_swapped", 3, seed=7))}


def _swap_labels(split: Path) -> Path:
    for path in (split / "labels").iterdir():
        label = read_png(path, mode="L")
        write_png(path, np.where(label == 255, 255, 1 - label).astype(np.uint8))
    return split


def _cfg(splits: dict[str, Path], **kw) -> dict:
    cfg = dict(train_split=str(splits["train"]), val_split=str(splits["val"]), size=[64, 128], batch_size=2,
               max_steps=6, val_every_n_steps=2, checkpoint_every=1, model={"width": 0.0625, "pretrained": False},
               wandb_mode="disabled", seed=0)
    return {**cfg, **kw}


def _report(splits: dict[str, Path], **kw) -> dict:
    """The report's selection: best.ckpt on one split, the scheduler on another (spec §4.2)."""
    return _cfg(splits, val_split=str(splits["laf"]), val_label_dir="labels", plateau_split=str(splits["static"]),
                plateau_label_dir="labels", val_loss="per_image", **kw)


def _best(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)


def _logged(run: Path, key: str) -> list[float]:
    import csv

    with open(next((run / "csv").glob("session-*/metrics.csv"))) as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


@pytest.fixture(scope="module")
def corrected(splits, tmp_path_factory) -> Path:
    return train(_cfg(splits), tmp_path_factory.mktemp("runs") / "corrected")


def test_selecting_from_the_trajectory_gives_the_trained_run(splits, corrected: Path, tmp_path: Path) -> None:
    assert [p.name for p in sorted((corrected / "checkpoints" / "validation").iterdir())] == [
        "step-0000002.ckpt", "step-0000004.ckpt", "step-0000006.ckpt"]
    trained = train(_report(splits), tmp_path / "trained")
    selected = tmp_path / "selected"
    assert shared_steps(_report(splits), selected, corrected) == [2, 4, 6]
    assert start_from_trajectory(_report(splits), selected, corrected) == "finished"
    a, b = _best(trained), _best(selected)
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # the losses each validation logged, on FS L&F's stand-in and on the plateau split, exactly as in training
    for key in ("val/loss", "val/ap", "plateau_val/loss"):
        assert _logged(trained, key) == _logged(selected, key), key
    done_t, done_s = (json.loads((r / "done.json").read_text()) for r in (trained, selected))
    assert done_s["metrics"] == done_t["metrics"]
    assert done_s["selected_from"] == "corrected" and done_s["global_step"] == done_t["global_step"] == 6
    val = _logged(trained, "val/loss")
    assert done_s["best_step"] == 2 * (1 + val.index(min(val))) == a["global_step"] < 6
    # a second call finds the run finished
    assert start_from_trajectory(_report(splits), selected, corrected) == "finished"


@pytest.mark.parametrize("setting", [
    {"ensemble": "learned-probability"},  # Table 5's end-to-end ensembles: trained weights beyond the network's
    {"ensemble": "learned-repro"},
    {"model": {"width": 0.0625, "pretrained": False, "activation": "relu"}},  # the figures' variants
    {"model": {"width": 0.0625, "pretrained": False, "uncertainty_maps": ("entropy", "distance")}},  # Table 7's
], ids=["learned-probability", "learned-repro", "relu", "no-perceptual"])
def test_every_table_variant_selected_from_its_trajectory_is_the_trained_run(splits, tmp_path: Path, setting) -> None:
    """Every table has report-selection rows now: their networks (learned ensembles, other maps, ReLU) start from
    their twin's trajectory too, with the weights and losses of training them."""
    twin = train(_cfg(splits, **setting), tmp_path / "twin")
    trained = train(_report(splits, **setting), tmp_path / "trained")
    selected = tmp_path / "selected"
    assert start_from_trajectory(_report(splits, **setting), selected, twin) == "finished"
    a, b = _best(trained), _best(selected)
    assert a["global_step"] == b["global_step"] and a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    if "ensemble" in setting:  # the ensemble's own weights are part of what is selected
        assert any("ensemble" in k for k in a["state_dict"]), sorted(a["state_dict"])[:5]
    for key in ("val/loss", "val/ap", "plateau_val/loss"):
        assert _logged(trained, key) == _logged(selected, key), key
    done_t, done_s = (json.loads((r / "done.json").read_text()) for r in (trained, selected))
    assert done_s["metrics"] == done_t["metrics"]


def test_no_selection_when_the_runs_would_differ(splits, corrected: Path, tmp_path: Path) -> None:
    # another determining setting than the selection splits: another trajectory
    assert shared_steps(_report(splits, lr=2e-4), tmp_path / "a", corrected) is None
    assert start_from_trajectory(_report(splits, lr=2e-4), tmp_path / "a", corrected) is None
    assert not (tmp_path / "a").exists()
    # the scheduler may act within this run (two validations before the end, patience 1): by default no snapshots
    # are kept (they would be followed by steps), and no run starts from it
    run = train(_cfg(splits, patience=1), tmp_path / "patience1")
    assert not (run / "checkpoints" / "validation").exists()
    assert shared_steps(_report(splits, patience=1), tmp_path / "b", run) is None
    # a missing snapshot
    copy = tmp_path / "copy"
    for f in corrected.rglob("*"):
        if f.is_file() and f != snapshot_path(corrected, 4):
            (copy / f.relative_to(corrected)).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.relative_to(corrected)).write_bytes(f.read_bytes())
    assert shared_steps(_report(splits), tmp_path / "c", copy) is None
    # a run that has started training resumes instead
    started = tmp_path / "started" / "checkpoints"
    started.mkdir(parents=True)
    (started / "last.ckpt").write_bytes(b"")
    assert shared_steps(_report(splits), started.parent, corrected) is None


@pytest.mark.parametrize("patience", [0, 1, 2, 4])
def test_plateau_cannot_act_matches_torch_scheduler(patience: int) -> None:
    # the worst case for the claim: no validation ever improves (NaN is never better, not even than the start)
    for max_steps, every in [(6, 2), (7, 2), (10, 2), (9, 3), (240, 80), (5, 5)]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=patience, factor=0.5)
        changed = False
        for step in validation_steps(max_steps, every):
            sched.step(math.nan)
            changed |= step < max_steps and opt.param_groups[0]["lr"] != 1.0
        assert plateau_cannot_act(max_steps, every, patience) == (not changed), (max_steps, every, patience)


def _state(run: Path, which: str) -> dict:
    return torch.load(run / "checkpoints" / f"{which}.ckpt", map_location="cpu", weights_only=True)


def test_a_run_forked_from_the_trajectory_ends_as_the_trained_run(splits, tmp_path: Path) -> None:
    # patience 1, validations at steps 2, 4, 6, 8: both runs hold the same weights up to step 4 (the 2nd validation,
    # the first at which a scheduler may act); after it the report's scheduler, on a split whose loss rises,
    # halves the learning rate (at step 6) and ours does not, so the runs part
    kw = dict(patience=1, max_steps=8)
    report = _cfg(splits, val_split=str(splits["laf"]), val_label_dir="labels",
                  plateau_split=str(splits["static_swapped"]), **kw)
    source = train(_cfg(splits, trajectory_snapshots=True, **kw), tmp_path / "corrected")
    assert sorted(p.name for p in (source / "checkpoints" / "validation").iterdir()) == [
        "fork-step-0000004.ckpt", "step-0000002.ckpt", "step-0000004.ckpt"]
    trained = train(report, tmp_path / "trained")
    forked = tmp_path / "forked"
    assert start_from_trajectory(report, forked, source) == "forked"
    assert _state(forked, "last")["global_step"] == 4 and not (forked / "done.json").exists()
    train(report, forked)  # resumes from the fork
    for which in ("last", "best"):
        a, b = _state(trained, which), _state(forked, which)
        assert a["global_step"] == b["global_step"], which
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), which
    a, b = _state(trained, "last"), _state(forked, "last")
    assert a["plateau"] == b["plateau"] and a["plateau"]["_last_lr"] != [1e-4]  # the report's scheduler acted
    assert [g["lr"] for g in a["optimizer_states"][0]["param_groups"]] == [
        g["lr"] for g in b["optimizer_states"][0]["param_groups"]]
    assert _state(source, "last")["plateau"]["_last_lr"] == [1e-4]  # and ours did not: the runs did part
    done_t, done_f = (json.loads((r / "done.json").read_text()) for r in (trained, forked))
    assert done_f["metrics"] == done_t["metrics"]
    logged = sorted(_logged_all(forked, "plateau_val/loss"))
    assert logged == sorted(_logged_all(trained, "plateau_val/loss")) and len(logged) == 4
    assert fork_path(source, 4).is_file()


def _logged_all(run: Path, key: str) -> list[float]:
    import csv

    out = []
    for path in sorted((run / "csv").glob("session-*/metrics.csv")):
        with open(path) as f:
            out += [float(r[key]) for r in csv.DictReader(f) if r.get(key)]
    return out


def test_a_fork_records_a_nan_best_loss_as_inf_as_lightning_does(tmp_path: Path) -> None:
    """A validation loss of NaN (an image with every pixel ignored: the per-image loss of the report's selection) is
    stored by Lightning's ModelCheckpoint as inf; a fork that stored NaN would never replace best.ckpt after it
    (nothing compares below NaN)."""
    from reprolib.training.config import TrainConfig
    from reprolib.training.module import DissimilarityModule
    from reprolib.training.selection import _fork_state

    module = DissimilarityModule({"width": 0.0625, "pretrained": False})
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    source = tmp_path / "fork.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "optimizer_states": [opt.state_dict()],
                "callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": {}}}, source)
    cfg = TrainConfig.from_dict({"train_split": "t", "val_split": "v", "size": [64, 128]})
    records = [{"val/loss": torch.tensor(math.nan)}, {"val/loss": torch.tensor(math.nan)}]
    state = _fork_state(cfg, source, tmp_path / "ckpts", records, best=0, plateau_values=[math.nan, math.nan], batches=1)
    saved = state["callbacks"]["ModelCheckpoint{'monitor': 'val/loss'}"]
    assert float(saved["best_model_score"]) == math.inf and float(saved["kth_value"]) == math.inf
    assert float(saved["current_score"]) == math.inf
    assert all(float(v) == math.inf for v in saved["best_k_models"].values())
