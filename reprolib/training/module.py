"""The dissimilarity network as a LightningModule: every table variant, the paper's optimisation.

Defaults follow the report's Table 1 and the original training (spec §4): Adam lr 1e-4, betas (0.5, 0.999),
no weight decay, class-weighted cross-entropy ignoring 255, ReduceLROnPlateau(patience 10, factor 0.5) —
stepped on the **validation** loss (the original stepped on the last *test* loader's loss, spec §4.2).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from reprolib.data.formats import UNCERTAINTY_MAPS as MAPS
from reprolib.models import DissimilarityConfig, DissimilarityNet


def enet_class_weights(label_files: list, ignore_index: int = 255) -> list[float]:
    """ENet weights w_c = 1 / ln(1.02 + p_c) over *all* label files (the original sampled files with
    replacement, spec §4.1 — counting every file makes the weights deterministic)."""
    from reprolib.io import read_png

    counts = np.zeros(2, np.int64)
    for path in label_files:
        lab = read_png(path, mode="L")
        counts += np.bincount(lab[lab != ignore_index].ravel(), minlength=2)[:2]
    p = counts / max(1, counts.sum())
    return [float(1.0 / np.log(1.02 + pc)) for pc in p]


class DissimilarityModule(L.LightningModule):
    """Train / validate the dissimilarity network (optionally with a learned end-to-end ensemble)."""

    def __init__(self, model: dict[str, Any] | None = None, *, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 0.0, class_weights: list[float] | None = None, ensemble: str = "none",
                 patience: int = 10, factor: float = 0.5):
        super().__init__()
        self.save_hyperparameters()
        self.net = DissimilarityNet(DissimilarityConfig(**(model or {})))
        self.uses_maps = self.net.config.uncertainty
        self.ensemble = None
        if ensemble.startswith("learned-"):
            from reprolib.ensemble.learned import LearnedEnsemble

            self.ensemble = LearnedEnsemble(mode=ensemble.split("-", 1)[1])
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weight", weight, persistent=True)
        self._plateau_state: dict | None = None
        self._val: dict[str, Any] = {}

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = {k: batch[k] for k in MAPS if self.uses_maps and k in batch}
        return self.net(batch["original"], batch["synthesis"], batch["semantic"], **maps)

    def _loss_and_prob(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        w = self.class_weight
        if self.ensemble is not None:
            logp = self.ensemble(logits, batch["entropy"], batch["perceptual"], batch["distance"])
            loss = F.nll_loss(logp, batch["label"], weight=w, ignore_index=255)
            prob = logp.exp()[:, 1]
        else:
            loss = F.cross_entropy(logits.float(), batch["label"], weight=w, ignore_index=255)
            prob = torch.softmax(logits.float(), dim=1)[:, 1]
        return loss, prob

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss_and_prob(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["label"].shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=1)
        return loss

    def on_validation_epoch_start(self) -> None:
        from reprolib.metrics import AnomalyMetrics

        self._val = {"metrics": AnomalyMetrics(exact=False), "loss": 0.0, "n": 0}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, prob = self._loss_and_prob(batch)
        n = batch["label"].shape[0]
        self._val["loss"] += float(loss) * n
        self._val["n"] += n
        for i in range(n):
            self._val["metrics"].update(prob[i].detach(), batch["label"][i])
        if batch_idx == 0:  # one sample prediction per validation, for the loggers that show images
            self._val["sample"] = (prob[0].detach().float().cpu(), batch["label"][0].cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val.get("n"):
            return
        val_loss = self._val["loss"] / self._val["n"]
        self.log("val/loss", val_loss, sync_dist=True)
        try:
            for k, v in self._val["metrics"].compute().items():
                self.log(f"val/{k}", v, sync_dist=True)
        except ValueError:  # a validation split without anomalies has no AP / FPR95
            pass
        if not self.trainer.sanity_checking:
            self.plateau.step(val_loss)
        self._log_sample()

    def _log_sample(self) -> None:
        """Prediction | ground truth side by side to WandB (offline or online), when it is one of the loggers."""
        if "sample" not in self._val or self.trainer.global_rank != 0:
            return
        prob, label = self._val["sample"]
        gt = torch.where(label == 255, torch.full_like(prob, 0.5), label.float())
        panel = (torch.cat([prob, torch.ones_like(prob[:, :2]), gt], dim=1).clamp(0, 1) * 255).to(torch.uint8)
        from lightning.pytorch.loggers import WandbLogger

        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/prediction", images=[panel.numpy()], caption=["p(anomaly) | ground truth"],
                                 step=self.global_step)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=hp.patience,
                                                                  factor=hp.factor)
        if self._plateau_state is not None:
            self.plateau.load_state_dict(self._plateau_state)
        return opt

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # stepped by hand on the validation loss, so Lightning does not save it for us
        checkpoint["plateau"] = self.plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._plateau_state = checkpoint.get("plateau")
        if self._plateau_state is not None and hasattr(self, "plateau"):
            self.plateau.load_state_dict(self._plateau_state)
