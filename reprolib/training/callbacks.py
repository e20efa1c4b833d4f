"""Lightning callbacks of the dissimilarity training (kept out of the LightningModule)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from reprolib.labels import IGNORE_INDEX


class ValidationImageLogger(L.Callback):
    """The first validation prediction | ground truth side by side to WandB (offline or online), on rank 0."""

    def __init__(self) -> None:
        self.sample: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and torch.is_tensor(outputs):
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
