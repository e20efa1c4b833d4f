"""Checkpoint selection on other validation splits from a finished run's trajectory, without training again.

The weights a run passes through do not depend on its validation splits: its batches and flips come from its own
seeded generators (:mod:`reprolib.training.data`) and a validation changes no weight. The splits reach the weights
only through the plateau scheduler, and ``ReduceLROnPlateau`` cannot lower the learning rate before ``patience`` + 1
validations, whatever the losses. So when a run validates at most ``patience`` times before its last step (the
demo's 240 steps validated every 80, patience 10), a run that differs from it only in its selection splits (the
report's protocol: ``best.ckpt`` on FS L&F, the scheduler on FS Static; spec §4.2) passes through exactly the same
weights. Such runs keep a weights-only snapshot at every validation (``checkpoints/validation/``), and
:func:`select_from_trajectory` validates those snapshots on the other splits, with the training's own validation
step, and keeps ``best.ckpt`` as the training's ModelCheckpoint would: the first lowest ``val/loss``.
In the demo's Table 4 this replaces three of its twelve trainings (about 70 s each on 2 cores) by a few seconds of
validation; with the same ``best.ckpt`` weights bit for bit (tests/test_selection.py trains both ways).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from reprolib.io import PathLike, ReprolibDataError, read_json, write_bytes, write_json, write_text
from reprolib.training._determinism import skip_uninitialized_fill
from reprolib.training._lightning_noise import quiet_lightning
from reprolib.training.config import TrainConfig
from reprolib.training.data import DissimilarityDataModule
from reprolib.training.module import DissimilarityModule

#: The settings that choose a checkpoint and step the scheduler, and nothing else (see the module docstring).
SELECTION_KEYS = ("val_split", "val_label_dir", "plateau_split", "plateau_label_dir")
SNAPSHOT_DIR = "validation"  # under a run's checkpoints/


def validation_steps(max_steps: int, val_every: int) -> list[int]:
    """The global steps after which a run of ``max_steps`` validating every ``val_every`` steps validates."""
    return list(range(val_every, max_steps + 1, val_every))


def plateau_cannot_act(max_steps: int, val_every: int, patience: int) -> bool:
    """True when the plateau scheduler cannot change the learning rate of any training step, whatever the losses.

    Each validation adds at most one to the scheduler's count of bad validations and it acts once the count
    passes ``patience``; a change at the last step's validation reaches no step.
    """
    return len([s for s in validation_steps(max_steps, val_every) if s < max_steps]) <= patience


def snapshot_path(run_dir: PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / SNAPSHOT_DIR / f"step-{step:07d}.ckpt"


class ValidationSnapshots(L.Callback):
    """A weights-only checkpoint after every validation (``checkpoints/validation/step-NNNNNNN.ckpt``).

    Stateless, so the run's own checkpoints are the same with or without it. Every DDP rank calls
    ``save_checkpoint`` (collective); rank 0 writes, atomically through the run's checkpoint IO.
    """

    def __init__(self, run_dir: PathLike):
        self.run_dir = Path(run_dir)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(snapshot_path(self.run_dir, trainer.global_step), weights_only=True)


def shares_trajectory(cfg: TrainConfig, source: TrainConfig) -> bool:
    """True when the two runs differ in their selection settings only (both validate)."""
    if not cfg.val_split or not source.val_split:
        return False
    return not [k for k in cfg.differing_keys(source) if k.split(".")[0] not in SELECTION_KEYS]


def shared_steps(config: TrainConfig | dict[str, Any], run_dir: PathLike, source_dir: PathLike) -> list[int] | None:
    """The validation steps at which the run ``config`` (in ``run_dir``) can be selected from the finished run in
    ``source_dir``, or None when it cannot: the runs must differ in their selection settings only, the plateau
    scheduler must be unable to act (:func:`plateau_cannot_act`) and the source must have kept a snapshot at every
    validation. A run that has started training (a ``last.ckpt``) is left to ``train`` to resume."""
    cfg = TrainConfig.from_dict(config)
    run_dir, source_dir = Path(run_dir), Path(source_dir)
    if list((run_dir / "checkpoints").glob("last*.ckpt")) or not (source_dir / "done.json").is_file():
        return None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        source = TrainConfig.from_dict({k: v for k, v in read_json(source_dir / "config.json").items() if k in known})
        done = read_json(source_dir / "done.json")
    except (ReprolibDataError, ValueError):
        return None  # not a run this version can read: train instead
    max_steps, val_every = done.get("max_steps"), done.get("val_every")
    if (not shares_trajectory(cfg, source) or not isinstance(max_steps, int) or not isinstance(val_every, int)
            or done.get("global_step") != max_steps or not plateau_cannot_act(max_steps, val_every, cfg.patience)):
        return None
    steps = validation_steps(max_steps, val_every)
    return steps if steps and all(snapshot_path(source_dir, s).is_file() for s in steps) else None


def select_from_trajectory(config: TrainConfig | dict[str, Any], run_dir: PathLike, source_dir: PathLike) -> bool:
    """Finish the run ``config`` in ``run_dir`` from the finished run in ``source_dir``; False when it cannot
    (:func:`shared_steps`).

    Writes ``config.json``, ``checkpoints/best.ckpt`` (the snapshot with the first lowest ``val/loss`` on
    ``config``'s split), ``csv/session-0/metrics.csv`` (every validation) and, last, ``done.json``
    (``selected_from`` names the source run, ``best_step`` the step kept).
    """
    from reprolib.training.run import _public_config, check_run_dir  # run imports this module

    cfg = TrainConfig.from_dict(config)
    run_dir, source_dir = Path(run_dir), Path(source_dir)
    check_run_dir(cfg, run_dir)
    if (run_dir / "done.json").is_file():
        return True
    steps = shared_steps(cfg, run_dir, source_dir)
    if steps is None:
        return False
    done = read_json(source_dir / "done.json")
    max_steps, val_every = done["max_steps"], done["val_every"]

    records = _validate_snapshots(cfg, [snapshot_path(source_dir, s) for s in steps])
    best = 0
    for i, rec in enumerate(records):  # ModelCheckpoint(mode="min", save_top_k=1): strictly lower replaces; NaN never
        if i and torch.lt(_nan_to_inf(rec["val/loss"]), _nan_to_inf(records[best]["val/loss"])):
            best = i
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", _public_config(cfg.to_dict()))
    write_bytes(run_dir / "checkpoints" / "best.ckpt", snapshot_path(source_dir, steps[best]).read_bytes())
    write_text(run_dir / "csv" / "session-0" / "metrics.csv", _metrics_csv(steps, records))
    # what a trained run's done.json holds: the last logged values (training's are the source's, the same steps)
    trained = {k: v for k, v in done.get("metrics", {}).items() if not k.startswith(("val/", "plateau_val/"))}
    write_json(run_dir / "done.json", {
        "global_step": max_steps, "max_steps": max_steps, "val_every": val_every,
        "metrics": {**trained, **{k: float(v) for k, v in records[-1].items()}}, "profile": cfg.profile,
        "selected_from": source_dir.name, "best_step": steps[best]})
    return True


def _nan_to_inf(value: torch.Tensor) -> torch.Tensor:
    return torch.full_like(value, math.inf) if torch.isnan(value) else value


def _validate_snapshots(cfg: TrainConfig, snapshots: list[Path]) -> list[dict[str, torch.Tensor]]:
    """The logged validation metrics of each snapshot on ``cfg``'s splits (Lightning's validation loop, as in fit)."""
    dm = DissimilarityDataModule(cfg.train_split, cfg.val_split, label_dir=cfg.label_dir,
                                 val_label_dir=cfg.val_label_dir, plateau_split=cfg.plateau_split,
                                 plateau_label_dir=cfg.plateau_label_dir, size=cfg.size, batch_size=cfg.batch_size,
                                 seed=cfg.seed, flip=cfg.flip, num_workers=cfg.num_workers)
    dm.setup("validate")
    loaders = dm.val_dataloader()
    quiet_lightning()
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, precision=cfg.precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        deterministic=True, num_sanity_val_steps=0)
    skip_uninitialized_fill()
    records = []
    for path in snapshots:
        module = _snapshot_module(path, plateau_loader=1 if cfg.plateau_split else 0)
        trainer.validate(module, dataloaders=loaders, verbose=False)
        records.append({k: v.detach().cpu().clone() for k, v in trainer.callback_metrics.items()
                        if k.startswith(("val/", "plateau_val/"))})
    return records


def _snapshot_module(path: Path, plateau_loader: int) -> DissimilarityModule:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        hp = ckpt["hyper_parameters"]
        module = DissimilarityModule(hp["model"], class_weights=hp.get("class_weights"),
                                     ensemble_mode=hp.get("ensemble_mode"), plateau_loader=plateau_loader)
        module.load_state_dict(ckpt["state_dict"])
    except Exception as exc:  # name the file: a truncated snapshot must not surface as unpickling noise
        raise ReprolibDataError(path, f"not a readable validation snapshot ({type(exc).__name__}: {exc})") from exc
    return module


def _metrics_csv(steps: list[int], records: list[dict[str, torch.Tensor]]) -> str:
    keys = sorted({k for rec in records for k in rec})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", *keys])
    for step, rec in zip(steps, records, strict=True):
        writer.writerow([step, *(float(rec[k]) if k in rec else "" for k in keys)])
    return buf.getvalue()
