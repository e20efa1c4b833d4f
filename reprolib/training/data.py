"""Training data as a pure function of (seed, global step): what makes a killed run resume bit-identically.

Lightning restores the model, optimiser, scheduler and ``global_step`` from ``last.ckpt``; the batches
after the restored step are then exactly the ones an uninterrupted run would have seen, because batch
``s`` is drawn from a permutation seeded by (seed, epoch(s)) and its flips from (seed, s). No dataloader
iterator state needs saving, and it works the same on every rank under DDP (each rank takes its slice of
the global batch).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from reprolib.data.processed import ProcessedSplit
from reprolib.io import read_png
from reprolib.labels import IGNORE_INDEX


def enet_class_weights(label_files: list, ignore_index: int = IGNORE_INDEX) -> list[float]:
    """ENet weights w_c = 1 / ln(1.02 + p_c) over *all* label files (the original sampled files with
    replacement, spec §4.1 — counting every file makes the weights deterministic)."""
    counts = np.zeros(2, np.int64)
    for path in label_files:
        lab = read_png(path, mode="L")
        counts += np.bincount(lab[lab != ignore_index].ravel(), minlength=2)[:2]
    p = counts / max(1, counts.sum())
    return [float(1.0 / np.log(1.02 + pc)) for pc in p]


class StepBatches(torch.utils.data.IterableDataset):
    """Infinite stream of samples for steps ``start_step, start_step + 1, …`` (one micro-batch per step per rank)."""

    def __init__(self, split: ProcessedSplit, batch_size: int, seed: int, flip: bool = True,
                 rank: int = 0, world_size: int = 1):
        self.split, self.batch_size, self.seed, self.flip = split, batch_size, seed, flip
        self.rank, self.world_size = rank, world_size
        self.start_step = 0
        global_batch = batch_size * world_size
        if len(split) < global_batch:
            raise ValueError(f"{len(split)} training images cannot fill a global batch of {global_batch}")
        self.steps_per_epoch = len(split) // global_batch

    def indices(self, step: int) -> list[int]:
        """Dataset indices of this rank's part of the global batch at ``step``."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
        gb = self.batch_size * self.world_size
        chunk = perm[pos * gb:(pos + 1) * gb]
        return chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()

    def __iter__(self):
        step = self.start_step
        while True:
            for j, index in enumerate(self.indices(step)):
                item = self.split[index]
                if self.flip and np.random.default_rng([self.seed, step, self.rank, j, 7]).random() < 0.5:
                    item = {k: (v.flip(-1) if isinstance(v, torch.Tensor) else v) for k, v in item.items()}
                yield item
            step += 1


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return torch.utils.data.default_collate(items)


class DissimilarityDataModule(L.LightningDataModule):
    """Train split (step-indexed stream), validation split, and an optional plateau split (a second
    validation loader, whose loss steps the plateau scheduler)."""

    def __init__(self, train_split: str, val_split: str | None, *, label_dir: str = "labels",
                 val_label_dir: str | None = None, plateau_split: str | None = None,
                 plateau_label_dir: str | None = None, size: tuple[int, int] = (256, 512), batch_size: int = 4,
                 seed: int = 0, flip: bool = True, uncertainty: bool = True, num_workers: int = 0):
        super().__init__()
        self.train_split, self.val_split = train_split, val_split
        self.label_dir, self.val_label_dir = label_dir, val_label_dir or label_dir
        self.plateau_split, self.plateau_label_dir = plateau_split, plateau_label_dir or self.val_label_dir
        self.size, self.batch_size, self.seed, self.flip = tuple(size), batch_size, seed, flip
        self.uncertainty, self.num_workers = uncertainty, num_workers
        self.start_step = 0

    def setup(self, stage: str | None = None) -> None:
        self.train_ds = ProcessedSplit(self.train_split, self.label_dir, self.size, uncertainty=self.uncertainty,
                                       normalize=True)
        self.val_ds = (ProcessedSplit(self.val_split, self.val_label_dir, self.size, uncertainty=self.uncertainty,
                                      normalize=True) if self.val_split else None)
        self.plateau_ds = (ProcessedSplit(self.plateau_split, self.plateau_label_dir, self.size, uncertainty=self.uncertainty,
                                          normalize=True) if self.plateau_split else None)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        rank = self.trainer.global_rank if self.trainer else 0
        world = self.trainer.world_size if self.trainer else 1
        stream = StepBatches(self.train_ds, self.batch_size, self.seed, self.flip, rank, world)
        stream.start_step = self.trainer.global_step if self.trainer else self.start_step
        # num_workers=0 keeps the stream's position exact; PNG decoding is cheap next to the network.
        return torch.utils.data.DataLoader(stream, batch_size=self.batch_size, collate_fn=_collate, num_workers=0)

    def val_dataloader(self) -> torch.utils.data.DataLoader | list:
        if self.val_ds is None:
            return []
        val = torch.utils.data.DataLoader(self.val_ds, batch_size=self.batch_size, shuffle=False,
                                          num_workers=self.num_workers)
        if self.plateau_ds is None:
            # one loader, not a list of one: no plateau split must mean exactly the run it was before (Lightning
            # then passes no dataloader_idx and each loader's iterator draws from the global RNG)
            return val
        # loader 0 selects best.ckpt (val/...), loader 1 steps the plateau scheduler (plateau_val/...)
        return [val, torch.utils.data.DataLoader(self.plateau_ds, batch_size=self.batch_size, shuffle=False,
                                                 num_workers=self.num_workers)]
