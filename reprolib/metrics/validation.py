"""The validation metrics of a training run: mean loss and AP / FPR95 / AUROC over the whole validation set.

Under DDP each rank keeps its images' p(anomaly) and labels, and :meth:`ValidationMetrics.compute` gathers them
to every rank before computing, so the metrics are those of the whole set (not a mean of per-rank values) and
identical on every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from reprolib.metrics.pixel import AnomalyMetrics


class ValidationMetrics:
    """Accumulate one validation pass batch by batch; :meth:`compute` gives ``{"loss", "ap", "fpr95", "auroc"}``."""

    def __init__(self, world_size: int = 1) -> None:
        self.world_size = world_size
        self.loss, self.n = 0.0, 0
        self.metrics = AnomalyMetrics(exact=False)
        self.preds: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, loss: torch.Tensor, prob: torch.Tensor, label: torch.Tensor, names: Sequence[str]) -> None:
        """One batch: its mean ``loss``, p(anomaly) ``prob`` (B,H,W), ``label`` (B,H,W), the images' ``names``."""
        n = label.shape[0]
        self.loss += float(loss) * n
        self.n += n
        for i in range(n):
            if self.world_size > 1:  # kept for the gather: metrics over the whole set, not per rank
                self.preds[names[i]] = (prob[i].detach().float().cpu(), label[i].byte().cpu())
            else:
                self.metrics.update(prob[i].detach(), label[i])

    def compute(self) -> dict[str, float]:
        """Mean loss per image and the pixel metrics; {} before any batch; only ``loss`` for a set without
        anomalies (no AP / FPR95 then)."""
        loss, n = self.loss, self.n
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, (loss, n, self.preds))
            loss, n = sum(g[0] for g in gathered), sum(g[1] for g in gathered)
            preds = {name: p for g in gathered for name, p in g[2].items()}  # a padded duplicate counts once
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
