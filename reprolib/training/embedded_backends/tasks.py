"""The two embedded training tasks as LightningModules (segmentation: cross-entropy on trainIds; generator:
L1 + image-gradient L1 on labelIds → image) and :func:`fit_task`, which runs one with resumable checkpoints
(a killed run resumes to the weights of an uninterrupted one: batches from :class:`ResumableShuffle`, flips seeded
by the step)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Sampler, TensorDataset

from reprolib.backends.base import imagenet_normalize
from reprolib.labels import IGNORE_INDEX
from reprolib.precision import ieee_fp32
from reprolib.training._determinism import prepare_cuda_determinism, skip_uninitialized_fill
from reprolib.training._lightning_noise import quiet_lightning
from reprolib.training.checkpoint import AtomicCheckpointIO
from reprolib.training.loss import weighted_cross_entropy


def _flip(step_seed: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Random horizontal flip per sample, drawn from a generator seeded by the step (resume-safe)."""
    g = torch.Generator().manual_seed(step_seed)
    mask = torch.rand(tensors[0].shape[0], generator=g) < 0.5
    out = []
    for t in tensors:
        t = t.clone()
        t[mask] = t[mask].flip(-1)
        out.append(t)
    return out


class ResumableShuffle(Sampler[int]):
    """A new permutation of the dataset every epoch, drawn as torch's ``DataLoader(shuffle=True, generator=g)``
    draws them (the same order, bit for bit), with a position that a checkpoint saves and restores.

    A run resumed mid-epoch then sees the rest of that epoch's permutation, as an uninterrupted run does; with
    torch's sampler it started a new permutation from the seed, so the weights differed. Each epoch draws,
    from ``generator``: the int64 base seed the DataLoader's iterator draws, then the permutation, then, only if
    the loader reads past the last sample (it does when a partial batch ends the epoch, not otherwise), the
    unused second permutation RandomSampler draws there.
    """

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator
        self._start: torch.Tensor | None = None  # the generator's state where this epoch's draws begin
        self._restore: tuple[torch.Tensor, int] | None = None

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._restore is not None:
            (state, skip), self._restore = self._restore, None
            self.generator.set_state(state)
        self._start = self.generator.get_state()
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        yield from torch.randperm(self.n, generator=self.generator).tolist()[skip:]
        torch.randperm(self.n, generator=self.generator)

    def state_dict(self, consumed: int) -> dict[str, Any] | None:
        """The position after ``consumed`` samples of the current epoch (None before the first epoch)."""
        if self._start is None:
            return None
        return {"start": self._start, "now": self.generator.get_state(), "consumed": consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at that position: the rest of the epoch, or (epoch complete) the next one."""
        if state["consumed"] >= self.n:  # nothing draws between the epoch's end and the next epoch's start
            self._restore = (state["now"], 0)
        else:
            self._restore = (state["start"], int(state["consumed"]))


class _ShufflePosition(L.Callback):
    """Saves the sampler's position in each checkpoint and restores it on resume."""

    def __init__(self, sampler: ResumableShuffle, batch_size: int):
        self.sampler, self.batch_size, self.batches = sampler, batch_size, 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batches = batch_idx + 1  # before ModelCheckpoint's save (Lightning runs checkpoint callbacks last)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        state = self.sampler.state_dict(min(self.batches * self.batch_size, self.sampler.n))
        if state is not None:
            checkpoint["shuffle"] = state

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if "shuffle" in checkpoint:  # checkpoints written before it existed resume as they did then
            self.sampler.load_state_dict(checkpoint["shuffle"])


class EmbeddedTask(L.LightningModule):
    """Shared optimiser / logging for both embedded tasks."""

    def __init__(self, model: torch.nn.Module, lr: float, max_steps: int, seed: int):
        super().__init__()
        self.model = model
        self.lr, self.max_steps_, self.seed = lr, max_steps, seed
        self.losses: list[float] = []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(self.max_steps_, 2),
                                                    pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _record(self, loss: torch.Tensor) -> torch.Tensor:
        self.losses.append(float(loss.detach()))
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["loss_history"] = torch.tensor(self.losses, dtype=torch.float64)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hist = checkpoint.get("loss_history")
        self.losses = [] if hist is None else [float(v) for v in hist]


class SegmentationTask(EmbeddedTask):
    """Cross-entropy on trainIds (ignore 255), in the form that is deterministic on CUDA (training.loss)."""

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        image, _, train_ids = batch
        image, train_ids = _flip(self.seed * 1_000_003 + self.global_step, image, train_ids)
        logits = self.model(imagenet_normalize(image))
        return self._record(weighted_cross_entropy(logits, train_ids, ignore_index=IGNORE_INDEX))


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences: a cheap edge/texture term beside plain L1."""
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


class ResynthesisTask(EmbeddedTask):
    """L1 + gradient L1 between the generator's output for the GT labelIds and the real image."""

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        image, label_ids, _ = batch
        image, label_ids = _flip(self.seed * 1_000_003 + self.global_step, image, label_ids)
        fake = self.model(label_ids)
        return self._record(F.l1_loss(fake, image) + gradient_l1(fake, image))


class TrainingStopped(RuntimeError):
    """A callback stopped a backend's training before its last step (the session's budget); its ``last.ckpt``
    resumes it, and nothing of it may be saved as a finished network."""

    def __init__(self, work_dir: Path, step: int, max_steps: int):
        super().__init__(f"training in {work_dir} stopped at step {step} of {max_steps}; rerun to resume it")
        self.step, self.max_steps = step, max_steps


def fit_task(
    task: EmbeddedTask,
    data: TensorDataset,
    work_dir: Path,
    *,
    max_steps: int,
    batch_size: int,
    seed: int,
    accelerator: str = "cpu",
    progress: bool = True,
    callbacks: list[Any] | None = None,
) -> EmbeddedTask:
    """Run ``task`` for ``max_steps`` with checkpoints in ``work_dir``, resuming from ``last.ckpt``.

    :class:`TrainingStopped` when a callback stopped it earlier (it then holds a partly trained network)."""
    if accelerator in ("cuda", "gpu"):
        prepare_cuda_determinism()
    L.seed_everything(seed, workers=True, verbose=False)
    batch_size = min(batch_size, len(data))
    sampler = ResumableShuffle(len(data), torch.Generator().manual_seed(seed))
    # the loader's own generator only feeds its iterator's base seed (unused without workers); the sampler
    # draws that number itself from its generator, so the order is the one shuffle=True gave
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=False,
                        generator=torch.Generator().manual_seed(seed), num_workers=0)
    ckpt_cb = ModelCheckpoint(dirpath=work_dir, save_last=True, save_top_k=0,
                              every_n_train_steps=max(1, min(50, max_steps // 4)))
    quiet_lightning()
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, max_steps=max_steps, max_epochs=-1, deterministic=True,
        logger=False, enable_progress_bar=progress, enable_model_summary=False,
        callbacks=[ckpt_cb, _ShufflePosition(sampler, batch_size), *(callbacks or [])],
        plugins=[AtomicCheckpointIO()], default_root_dir=work_dir,
        log_every_n_steps=10, num_sanity_val_steps=0,
    )
    skip_uninitialized_fill()
    last = work_dir / "last.ckpt"
    with ieee_fp32():
        trainer.fit(task, loader, ckpt_path=last if last.is_file() else None)
    if trainer.global_step < max_steps:  # Lightning's own criterion for the end: stopped early (last.ckpt resumes)
        raise TrainingStopped(work_dir, trainer.global_step, max_steps)
    return task
