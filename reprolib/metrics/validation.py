"""The validation metrics of a training run: mean loss and AP / FPR95 / AUROC over the whole validation set.

Under DDP each rank keeps its images' p(anomaly) and labels, and :meth:`ValidationMetrics.compute` gathers them
to every rank before computing, so the metrics are those of the whole set (not a mean of per-rank values) and
identical on every rank.

The loss (which picks ``best.ckpt`` and steps the plateau scheduler) is, with ``per_image``, the mean over the images
of each image's class-weighted cross-entropy (``Σ w·nll / Σ w`` over its pixels), as the original's validation and test
loaders (one image a batch) give it; on any number of devices, each image counted once. Otherwise it is, on one device,
the mean of the batch losses weighted by their numbers of images, each batch loss being the class-weighted
cross-entropy of all its pixels (``Σ w·nll / Σ w`` over the batch). Under DDP a rank's batches are not one device's (Lightning's
DistributedSampler deals the images out round-robin and repeats the first ones so that every rank has as many),
so each rank keeps its images' ``Σ w·nll`` and ``Σ w`` with their names and sampler positions, and
:meth:`~ValidationMetrics.compute` counts each image once and regroups them into one device's batches: the
one-device loss up to fp32 rounding in the sums.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch

from reprolib.metrics.pixel import AnomalyMetrics


class ValidationMetrics:
    """Accumulate one validation pass batch by batch; :meth:`compute` gives ``{"loss", "ap", "fpr95", "auroc"}``.

    Under DDP (``world_size`` > 1): ``rank`` is this process's global rank and ``batch_size`` the validation
    loader's, both needed to regroup the gathered images into the batches one device would have made.
    """

    def __init__(self, world_size: int = 1, rank: int = 0, batch_size: int | None = None, per_image: bool = False) -> None:
        self.world_size, self.rank, self.batch_size, self.per_image = world_size, rank, batch_size, per_image
        self.loss, self.n = 0.0, 0
        self.metrics = AnomalyMetrics(exact=False)
        self.preds: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # DDP only: name -> (sampler position, Σ w·nll, Σ w); `seen` counts this rank's images so far
        self.images: dict[str, tuple[int, float, float]] = {}
        self.seen = 0

    def update(self, loss: torch.Tensor, prob: torch.Tensor, label: torch.Tensor, names: Sequence[str],
               sums: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """One batch: its mean ``loss``, p(anomaly) ``prob`` (B,H,W), ``label`` (B,H,W), the images' ``names``;
        with ``per_image`` or under DDP also ``sums``, per image ``Σ w·nll`` and ``Σ w`` (B,) each
        (:func:`reprolib.training.loss.weighted_nll_sums`), which replace ``loss`` there."""
        n = label.shape[0]
        if self.per_image and self.world_size == 1:
            if sums is None:
                raise ValueError("the per-image validation loss needs the per-image sums")
            num, den = (s.detach().double().cpu().tolist() for s in sums)
            self.loss += sum(_ratio(a, b) for a, b in zip(num, den, strict=True))
            self.n += n
            for i in range(n):
                self.metrics.update(prob[i].detach(), label[i])
            return
        if self.world_size == 1:
            # kept exactly as it was: this value picked best.ckpt for every committed one-device run
            self.loss += float(loss) * n
            self.n += n
            for i in range(n):
                self.metrics.update(prob[i].detach(), label[i])
            return
        if sums is None or self.batch_size is None:
            raise ValueError("under DDP the validation loss needs the per-image sums and the loader's batch size")
        num, den = (s.detach().double().cpu().tolist() for s in sums)
        for i in range(n):
            # DistributedSampler(shuffle=False) gives rank r the positions r, r+W, r+2W, … of the dataset order
            # (past its end: the first images again), so this is the image's place in one device's order
            position = self.seen * self.world_size + self.rank
            self.seen += 1
            self.images.setdefault(names[i], (position, num[i], den[i]))
            # kept for the gather: metrics over the whole set, not per rank
            self.preds[names[i]] = (prob[i].detach().float().cpu(), label[i].byte().cpu())

    def compute(self) -> dict[str, float]:
        """The loss (the batch losses' mean weighted by their images, see the module's docstring) and the pixel
        metrics; {} before any batch; only ``loss`` for a set without anomalies (no AP / FPR95 then)."""
        loss, n = self.loss, self.n
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, (self.images, self.preds))
            images: dict[str, tuple[int, float, float]] = {}
            for rank_images, _ in gathered:
                for name, image in rank_images.items():
                    if name not in images or image[0] < images[name][0]:  # a padded duplicate counts once,
                        images[name] = image  # at its first position (its own; the padding comes after the set)
            n = len(images)
            if self.per_image:
                loss = sum(_ratio(im[1], im[2]) for im in images.values())
            else:
                loss = _one_device_loss(sorted(images.values()), self.batch_size)
            preds = {name: p for g in gathered for name, p in g[1].items()}
            for name in sorted(preds):
                self.metrics.update(preds[name][0].float(), preds[name][1].long())
        if not n:
            return {}
        out = {"loss": loss / n}
        try:
            out.update(self.metrics.compute())
        except ValueError:  # a validation split without anomalies has no AP / FPR95
            pass
        return out


def _ratio(num: float, den: float) -> float:
    """One image's weighted cross-entropy from its sums: NaN where no pixel counts, as PyTorch's 0/0."""
    return num / den if den else math.nan


def _one_device_loss(images: list[tuple[int, float, float]], batch_size: int) -> float:
    """``Σ`` over one device's batches of (batch loss × its images), as the one-device :meth:`~ValidationMetrics.update`
    adds it up, from (position, ``Σ w·nll``, ``Σ w``) per image sorted by position; one device's batch ``k`` holds
    the positions ``k·batch_size`` … ``(k+1)·batch_size − 1``."""
    total = 0.0
    for _, group in itertools.groupby(images, key=lambda im: im[0] // batch_size):
        batch = list(group)
        num, den = sum(im[1] for im in batch), sum(im[2] for im in batch)
        total += _ratio(num, den) * len(batch)
    return total
