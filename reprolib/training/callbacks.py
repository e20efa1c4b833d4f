"""Lightning callbacks of the dissimilarity training (kept out of the LightningModule).

Four pieces exist so that a run stopped at any point and resumed ends exactly as an uninterrupted one,
optimiser, plateau scheduler and ``best.ckpt`` included (Lightning 2.6 alone gets four cases wrong):

* :class:`StepCheckpoint` writes ``last.ckpt`` on a step that validates *after* the validation: Lightning's
  step checkpoint is written before it, and a run resumed from that file skips the validation (Lightning
  fast-forwards past it), so the plateau scheduler misses a step and ``best.ckpt`` a candidate;
* :class:`TimeBudget` counts this session's time: Lightning's ``max_time`` restores the time spent in
  earlier sessions from the checkpoint, so a resumed run with the same budget trains no step at all;
* :func:`stop_after_this_step` stops without the validation Lightning adds whenever ``should_stop`` is set
  (meant for early stopping), which an uninterrupted run never has;
* :class:`BestCheckpoint` keeps its record of the best validation so far when the run's folder has moved
  (a run started on one machine and resumed on another): Lightning's ModelCheckpoint drops it, and the next
  validation then replaces ``best.ckpt`` whatever its loss.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from reprolib.labels import IGNORE_INDEX


class ValidationImageLogger(L.Callback):
    """The first validation prediction | ground truth side by side to WandB (offline or online), on rank 0."""

    def __init__(self) -> None:
        self.sample: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and torch.is_tensor(outputs):  # not the plateau split's
            self.sample = (outputs[0].detach().float().cpu(), batch["label"][0].cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.sample is None or trainer.global_rank != 0:
            return
        prob, label = self.sample
        self.sample = None
        gt = torch.where(label == IGNORE_INDEX, torch.full_like(prob, 0.5), label.float())
        panel = (torch.cat([prob, torch.ones_like(prob[:, :2]), gt], dim=1).clamp(0, 1) * 255).to(torch.uint8)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/prediction", images=[panel.numpy()], caption=["p(anomaly) | ground truth"],
                                 step=trainer.global_step)


def validates_now(trainer: L.Trainer) -> bool:
    """True if the schedule validates after the step just taken (``val_check_interval`` counts steps here)."""
    every = trainer.val_check_batch
    return bool(trainer.enable_validation) and isinstance(every, int) and trainer.global_step % every == 0


def stop_after_this_step(trainer: L.Trainer) -> None:
    """Stop training after the current step; validate only if the schedule does at this step anyway."""
    trainer.should_stop = True
    if not validates_now(trainer):
        # Lightning runs a validation whenever should_stop is set; switched off for the rest of this fit (the
        # trainer is not reused), as the `limit_val_batches` its own check reads
        trainer.limit_val_batches = 0


class StepCheckpoint(Checkpoint):
    """``path`` every ``every_n_steps`` training steps; on a step that validates, after that validation.

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning calls it after the other callbacks:
    ``best.ckpt``'s ModelCheckpoint (listed before it) has taken the validation into account when this one
    writes its state. The file is written by ``trainer.save_checkpoint`` (every DDP rank calls it, rank 0
    writes, atomically through the run's checkpoint IO).
    """

    def __init__(self, path: Path, every_n_steps: int):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.path, self.every_n_steps = Path(path), every_n_steps
        self._pending = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        if validates_now(trainer):
            self._pending = True  # written in on_validation_end
        else:
            self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending and not trainer.sanity_checking:
            self._pending = False
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        # A full checkpoint (optimiser, loops, callbacks) to resume from; saying so keeps Lightning from
        # logging "`weights_only` was not set" after every save, which reads like an unsafe *load*.
        trainer.save_checkpoint(self.path, weights_only=False)


class TimeBudget(L.Callback):
    """Stops training after the step during which ``seconds`` ran out, counted from this callback's creation.

    Not saved in the checkpoint: each session (each ``train`` call) has its own budget.
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        over = time.monotonic() - self._start >= self.seconds
        if trainer.strategy.broadcast(over):  # rank 0's clock decides: every DDP rank stops at the same step
            stop_after_this_step(trainer)


class BestCheckpoint(ModelCheckpoint):
    """``dirpath/best.ckpt``: the lowest ``val/loss`` so far (the first validation loader's, never the plateau
    split's), remembered across a move of the run's folder.

    The saved record's paths are re-rooted at the new ``dirpath`` (the files moved with the folder; see
    ``train`` for a resume from another folder's checkpoint).
    """

    def __init__(self, dirpath: Path):
        super().__init__(dirpath=dirpath, filename="best", monitor="val/loss", mode="min", save_top_k=1,
                         enable_version_counter=False)

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's key: the record in checkpoints written before this class existed still loads
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            def moved(path: Any) -> Any:
                inside = isinstance(path, str) and path.startswith(old.rstrip(os.sep) + os.sep)
                return os.path.join(new, os.path.relpath(path, old)) if inside else path

            state_dict = {**state_dict, "dirpath": new,
                          **{k: moved(state_dict.get(k)) for k in ("best_model_path", "kth_best_model_path",
                                                                   "last_model_path") if k in state_dict},
                          "best_k_models": {moved(k): v for k, v in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)
