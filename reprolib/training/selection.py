"""A run that differs from a finished one only in its selection splits starts from that run's trajectory.

The weights a run passes through do not depend on its validation splits: its batches and flips come from its own
seeded generators (:mod:`reprolib.training.data`) and a validation changes no weight. The splits reach the weights
only through the plateau scheduler, and ``ReduceLROnPlateau`` cannot change the learning rate before its
``patience`` + 1-th validation, whatever the losses. So two runs that differ only in their selection settings (ours:
``best.ckpt`` and the scheduler on generated Cityscapes-val; the report's: ``best.ckpt`` on FS L&F, the scheduler on
FS Static, spec §4.2) hold the same weights at their first ``patience`` + 1 validations and at every step up to the
last of them. A run keeps a weights-only snapshot at each of those validations (``checkpoints/validation/``), and a
full checkpoint at the last of them when steps follow it (:func:`fork_step`). :func:`start_from_trajectory` then
validates the snapshots on the other run's splits with the training's own validation step, keeps ``best.ckpt`` as
the training's ModelCheckpoint would (the first lowest ``val/loss``) and, when steps remain, writes that run's
``last.ckpt`` at the fork: the shared weights and optimiser, its own plateau scheduler (stepped on its own losses,
the learning rate it set included) and its own record of the best validation; ``train`` resumes from there.

In the demo (120 steps validated every 40, patience 10) no step follows the shared validations: the report-selection
run is finished from the snapshots in seconds, with the weights of training it (tests/test_selection.py trains
both ways). In the ``full`` profile (50 validations, one an epoch) it is forked after its 11th epoch, whose validation
is the last shared one, and trains epochs 12–50 only, instead of all 50.
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

from reprolib.io import PathLike, ReprolibDataError, read_json, save_torch, write_bytes, write_json, write_text
from reprolib.precision import ieee_fp32
from reprolib.training._determinism import skip_uninitialized_fill
from reprolib.training._lightning_noise import quiet_lightning
from reprolib.training.config import (  # the schedule's rules live with the config (the cost estimate reads them)
    TrainConfig,
    fork_step,
    plateau_cannot_act,
    shared_validations,
)
from reprolib.training.data import DissimilarityDataModule
from reprolib.training.module import DissimilarityModule

#: The settings that choose a checkpoint and step the scheduler, and nothing else (see the module docstring).
SELECTION_KEYS = ("val_split", "val_label_dir", "plateau_split", "plateau_label_dir", "val_loss")
SNAPSHOT_DIR = "validation"  # under a run's checkpoints/


def snapshot_path(run_dir: PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / SNAPSHOT_DIR / f"step-{step:07d}.ckpt"


def fork_path(run_dir: PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / SNAPSHOT_DIR / f"fork-step-{step:07d}.ckpt"


class ValidationSnapshots(L.Callback):
    """After each shared validation (:func:`shared_validations`) a weights-only checkpoint, and a full one at
    the fork (:func:`fork_step`). Stateless, so the run's own checkpoints are the same with or without it. Every
    DDP rank calls ``save_checkpoint`` (collective); rank 0 writes, atomically through the run's checkpoint IO.
    """

    def __init__(self, run_dir: PathLike, max_steps: int, val_every: int, patience: int):
        self.run_dir = Path(run_dir)
        self.steps = set(shared_validations(max_steps, val_every, patience))
        self.fork = fork_step(max_steps, val_every, patience)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or step not in self.steps:
            return
        trainer.save_checkpoint(snapshot_path(self.run_dir, step), weights_only=True)
        if step == self.fork:
            trainer.save_checkpoint(fork_path(self.run_dir, step), weights_only=False)


def keeps_snapshots(cfg: TrainConfig, max_steps: int, val_every: int) -> bool:
    """Whether a run keeps :class:`ValidationSnapshots`: ``cfg.trajectory_snapshots``, or by default only when no
    step follows them (then they are at most ``patience`` + 1 weights-only files)."""
    if not cfg.val_split:
        return False
    if cfg.trajectory_snapshots is not None:
        return cfg.trajectory_snapshots
    return plateau_cannot_act(max_steps, val_every, cfg.patience)


def shares_trajectory(cfg: TrainConfig, source: TrainConfig) -> bool:
    """True when the two runs differ in their selection settings only (both validate)."""
    if not cfg.val_split or not source.val_split:
        return False
    return not [k for k in cfg.differing_keys(source) if k.split(".")[0] not in SELECTION_KEYS]


def shared_steps(config: TrainConfig | dict[str, Any], run_dir: PathLike, source_dir: PathLike) -> list[int] | None:
    """The shared validation steps from which the run ``config`` (in ``run_dir``) can start on the finished run in
    ``source_dir``, or None when it cannot: the runs must differ in their selection settings only and the source
    must have kept its snapshots (and the fork checkpoint, when steps follow). A run that has started (a
    ``last.ckpt``) is left to ``train`` to resume."""
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
            or done.get("global_step") != max_steps):
        return None
    steps = shared_validations(max_steps, val_every, cfg.patience)
    fork = fork_step(max_steps, val_every, cfg.patience)
    needed = [snapshot_path(source_dir, s) for s in steps] + ([fork_path(source_dir, fork)] if fork else [])
    return steps if steps and all(p.is_file() for p in needed) else None


def start_from_trajectory(config: TrainConfig | dict[str, Any], run_dir: PathLike, source_dir: PathLike) -> str | None:
    """Start the run ``config`` in ``run_dir`` from the finished run in ``source_dir`` (:func:`shared_steps`):
    ``"finished"`` when no step follows the shared validations, ``"forked"`` when ``train`` is to resume it from
    its new ``last.ckpt``, None when it cannot start there (train it from the beginning).

    Writes ``config.json``, ``checkpoints/best.ckpt`` (the snapshot with the first lowest ``val/loss`` on
    ``config``'s split), ``csv/session-0/metrics.csv`` (the shared validations) and, last, ``done.json``
    (``selected_from`` names the source run, ``best_step`` the step kept) or ``checkpoints/last.ckpt``.
    """
    from reprolib.training.run import _public_config, check_run_dir  # run imports this module

    cfg = TrainConfig.from_dict(config)
    run_dir, source_dir = Path(run_dir), Path(source_dir)
    check_run_dir(cfg, run_dir)
    if (run_dir / "done.json").is_file():
        return "finished"
    steps = shared_steps(cfg, run_dir, source_dir)
    if steps is None:
        return None
    done = read_json(source_dir / "done.json")
    max_steps, val_every = done["max_steps"], done["val_every"]
    fork = fork_step(max_steps, val_every, cfg.patience)

    records, plateau_values, batches = _validate_snapshots(cfg, [snapshot_path(source_dir, s) for s in steps])
    best = 0
    for i, rec in enumerate(records):  # ModelCheckpoint(mode="min", save_top_k=1): strictly lower replaces; NaN never
        if i and torch.lt(_nan_to_inf(rec["val/loss"]), _nan_to_inf(records[best]["val/loss"])):
            best = i
    ckpt_dir = run_dir / "checkpoints"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", _public_config(cfg.to_dict()))
    write_bytes(ckpt_dir / "best.ckpt", snapshot_path(source_dir, steps[best]).read_bytes())
    write_text(run_dir / "csv" / "session-0" / "metrics.csv", _metrics_csv(steps, records))
    if fork is not None:
        state = _fork_state(cfg, fork_path(source_dir, fork), ckpt_dir, records, best, plateau_values, batches)
        save_torch(state, ckpt_dir / "last.ckpt")
        return "forked"
    # what a trained run's done.json holds: the last logged values (training's are the source's, the same steps)
    trained = {k: v for k, v in done.get("metrics", {}).items() if not k.startswith(("val/", "plateau_val/"))}
    write_json(run_dir / "done.json", {
        "global_step": max_steps, "max_steps": max_steps, "val_every": val_every,
        "metrics": {**trained, **{k: float(v) for k, v in records[-1].items()}}, "profile": cfg.profile,
        "selected_from": source_dir.name, "best_step": steps[best]})
    return "finished"


def _fork_state(cfg: TrainConfig, source_fork: Path, ckpt_dir: Path, records: list[dict[str, torch.Tensor]],
                best: int, plateau_values: list[Any], batches: int) -> dict[str, Any]:
    """The source's full checkpoint at the fork, made this run's: its plateau scheduler, stepped on its own losses
    (the learning rate it sets at the fork in the optimiser too), its own record of the best validation, and its
    validation loop's batch counts (``batches`` per validation)."""
    state = torch.load(source_fork, map_location="cpu", weights_only=True)
    module = DissimilarityModule.from_hparams(state["hyper_parameters"])  # the ensemble's weights train too
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    opt.load_state_dict(state["optimizer_states"][0])
    for group in opt.param_groups:  # before the fork's validation no scheduler could act: the configured rate
        group["lr"] = cfg.lr
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=cfg.patience, factor=cfg.factor)
    for value in plateau_values:
        plateau.step(value)
    state["optimizer_states"] = [opt.state_dict()]
    state["plateau"] = plateau.state_dict()
    # the values logged up to the fork (done.json's metrics start from them): training's are the source's (the
    # same steps), the validation's this run's own
    trained = {k: v for k, v in (state.get("metrics") or {}).items() if not k.startswith(("val/", "plateau_val/"))}
    state["metrics"] = {**trained, **{k: float(v) for k, v in records[-1].items()}}
    key = next(k for k in state["callbacks"] if k.startswith("ModelCheckpoint"))
    # NaN (a validation whose images are all ignored) as inf, as Lightning's ModelCheckpoint stores it: else no
    # later loss would ever compare below it and best.ckpt would stay at the fork's pick
    best_path, score = str(ckpt_dir / "best.ckpt"), _nan_to_inf(records[best]["val/loss"])
    state["callbacks"][key] = {**state["callbacks"][key], "dirpath": str(ckpt_dir), "best_model_path": best_path,
                               "best_model_score": score, "current_score": _nan_to_inf(records[-1]["val/loss"]),
                               "best_k_models": {best_path: score}, "kth_best_model_path": best_path,
                               "kth_value": score}
    progress = state.get("loops", {}).get("fit_loop", {}).get("epoch_loop.val_loop.batch_progress")
    if progress is not None:  # Lightning's counts of validation batches so far: this run's loaders, not the source's
        for part, n in (("total", batches * len(records)), ("current", batches)):
            progress[part] = {k: n for k in progress[part]}
    return state


def _nan_to_inf(value: torch.Tensor) -> torch.Tensor:
    return torch.full_like(value, math.inf) if torch.isnan(value) else value


class _PlateauRecorder:
    """Stands in for the module's plateau scheduler in a validation-only pass: keeps the value it would step on."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def step(self, value: Any) -> None:
        self.values.append(value)


def _validate_snapshots(cfg: TrainConfig, snapshots: list[Path]) -> tuple[list[dict[str, torch.Tensor]], list[Any], int]:
    """Each snapshot's logged validation metrics on ``cfg``'s splits (Lightning's validation loop, as in fit), the
    values its plateau scheduler would have stepped on, and the number of batches of one validation."""
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
    records, recorder = [], _PlateauRecorder()
    for path in snapshots:
        module = _snapshot_module(path, plateau_loader=1 if cfg.plateau_split else 0, val_loss=cfg.val_loss)
        module.plateau = recorder  # validate() never calls configure_optimizers: nothing else sets it
        with ieee_fp32():
            trainer.validate(module, dataloaders=loaders, verbose=False)
        records.append({k: v.detach().cpu().clone() for k, v in trainer.callback_metrics.items()
                        if k.startswith(("val/", "plateau_val/"))})
    if len(recorder.values) != len(snapshots):
        raise RuntimeError(f"{len(snapshots)} validations stepped the plateau scheduler {len(recorder.values)} times")
    batches = sum(len(loader) for loader in (loaders if isinstance(loaders, list) else [loaders]))
    return records, recorder.values, batches


def _snapshot_module(path: Path, plateau_loader: int, val_loss: str = "pooled") -> DissimilarityModule:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        module = DissimilarityModule.from_hparams(ckpt["hyper_parameters"], plateau_loader=plateau_loader,
                                                  val_loss=val_loss)
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
