"""The dissimilarity network as a thin LightningModule: forward, loss, optimiser, plateau scheduler.

Defaults follow the report's Table 1 and the original training (spec §4): Adam lr 1e-4, betas (0.5, 0.999),
no weight decay, class-weighted cross-entropy ignoring 255 (:mod:`reprolib.training.loss`), ReduceLROnPlateau
(patience 10, factor 0.5) stepped on the **validation** loss (the original stepped on the last *test* loader's
loss, spec §4.2; a plateau split, the second validation loader, reproduces that). Elsewhere: class weights
(:func:`~.data.enet_class_weights`), validation metrics (:class:`reprolib.metrics.validation.ValidationMetrics`),
image logging (:class:`~.callbacks.ValidationImageLogger`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from reprolib.data.formats import UNCERTAINTY_MAPS as MAPS
from reprolib.ensemble.learned import LearnedEnsemble
from reprolib.metrics.validation import ValidationMetrics
from reprolib.models import DissimilarityConfig, DissimilarityNet
from reprolib.training.config import ENSEMBLES, VAL_LOSSES
from reprolib.training.loss import weighted_nll, weighted_nll_sums


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number tensors of Lightning's ``callback_metrics``, as floats (what ``done.json`` records)."""
    return {k: float(v) for k, v in metrics.items() if torch.is_tensor(v) and v.numel() == 1}


class DissimilarityModule(L.LightningModule):
    """Train / validate the dissimilarity network, optionally with a learned end-to-end ensemble.

    ``ensemble_mode``: None, or a :class:`LearnedEnsemble` mode. ``plateau_every``: steps between
    validations (the plateau scheduler steps then, on ``val/loss``); None = no validation, no plateau steps.
    ``plateau_loader``: 1 = the scheduler steps on the second validation loader's loss (``plateau_val/loss``,
    the report's protocol: FS Static, spec §4.2) while ``best.ckpt`` follows loader 0's ``val/loss``.
    """

    def __init__(self, model: dict[str, Any] | None = None, *, lr: float = 1e-4, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 0.0, class_weights: list[float] | None = None, ensemble_mode: str | None = None,
                 patience: int = 10, factor: float = 0.5, plateau_every: int | None = None, plateau_loader: int = 0,
                 val_loss: str = "pooled"):
        super().__init__()
        # plateau_loader and val_loss stay out of the saved hyperparameters: checkpoints of runs without them keep
        # the exact contents they had (and a loaded model does not need them: they only steer training)
        self.save_hyperparameters(ignore=["plateau_loader", "val_loss"])
        self.plateau_loader = plateau_loader
        if val_loss not in VAL_LOSSES:
            raise ValueError(f"val_loss must be one of {VAL_LOSSES}, got {val_loss!r}")
        self.val_loss = val_loss
        self.net = DissimilarityNet(DissimilarityConfig(**(model or {})))
        self.uses_maps = self.net.config.uncertainty
        self.ensemble = LearnedEnsemble(mode=ensemble_mode) if ensemble_mode else None
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weight", weight, persistent=True)
        self._val: ValidationMetrics | None = None
        self._plateau_val: ValidationMetrics | None = None  # loader 1, when there is a plateau split
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None  # made in configure_optimizers
        self._plateau_state: dict[str, Any] | None = None
        #: the logged values a resumed run's checkpoint held (the last of each metric before it): done.json's
        #: metrics start from them, as this session's own callback_metrics lack what earlier sessions logged
        self.restored_metrics: dict[str, float] = {}

    @classmethod
    def from_hparams(cls, hp: dict[str, Any], plateau_loader: int = 0, val_loss: str = "pooled") -> DissimilarityModule:
        """The network (and learned ensemble) a checkpoint's ``hyper_parameters`` describe, weights not loaded."""
        # checkpoints before the TrainConfig stored the ensemble as its config string ("learned-probability")
        mode = hp["ensemble_mode"] if "ensemble_mode" in hp else ENSEMBLES.get(hp.get("ensemble", "none"))
        return cls(hp.get("model"), class_weights=hp.get("class_weights"), ensemble_mode=mode,
                   plateau_loader=plateau_loader, val_loss=val_loss)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        maps = {k: batch[k] for k in MAPS if self.uses_maps and k in batch}
        return self.net(batch["original"], batch["synthesis"], batch["semantic"], **maps)

    def log_prob_and_prob(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities (B,2,H,W), p(anomaly) (B,H,W)); both in fp32, also under autocast."""
        logits = self(batch)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            if self.ensemble is not None:
                logp = self.ensemble(logits.float(), batch["entropy"], batch["perceptual"], batch["distance"])
                return logp, logp.exp()[:, 1]
            # the ops of weighted_cross_entropy (log_softmax, then weighted_nll): the same loss bit for bit
            return F.log_softmax(logits.float(), dim=1), torch.softmax(logits.float(), dim=1)[:, 1]

    def loss_and_prob(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(weighted cross-entropy, p(anomaly) (B,H,W)); both in fp32, also under autocast."""
        logp, prob = self.log_prob_and_prob(batch)
        return weighted_nll(logp, batch["label"], self.class_weight), prob

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self.loss_and_prob(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["label"].shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=1)
        return loss

    def on_validation_epoch_start(self) -> None:
        # one ValidationMetrics per loader: each de-duplicates its own images by name (two splits may share names)
        self._val = self._validation_metrics(0)
        self._plateau_val = self._validation_metrics(1) if self.plateau_loader else None

    def _validation_metrics(self, loader_idx: int) -> ValidationMetrics:
        world, per_image = self.trainer.world_size, self.val_loss == "per_image"
        if world == 1:
            return ValidationMetrics(per_image=per_image)
        # Under DDP the loss is regrouped into one device's batches, so it needs their size: the loader's
        # (Lightning's DistributedSampler keeps it), not a rank's first batch, smaller when a rank's share is.
        loaders = self.trainer.val_dataloaders
        loader = loaders[loader_idx] if isinstance(loaders, (list, tuple)) else loaders
        return ValidationMetrics(world, rank=self.trainer.global_rank, batch_size=getattr(loader, "batch_size", None),
                                 per_image=per_image)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        logp, prob = self.log_prob_and_prob(batch)
        loss = weighted_nll(logp, batch["label"], self.class_weight)
        metrics = self._plateau_val if dataloader_idx == 1 and self._plateau_val is not None else self._val
        # per-image sums for the per-image loss, and under DDP, where the padded duplicates must count once
        # (see ValidationMetrics)
        need = metrics.world_size > 1 or metrics.per_image
        sums = weighted_nll_sums(logp, batch["label"], self.class_weight) if need else None
        metrics.update(loss, prob, batch["label"], batch["name"], sums)
        return prob

    def on_validation_epoch_end(self) -> None:
        scores = self._val.compute() if self._val is not None else {}
        self.log_dict({f"val/{k}": v for k, v in scores.items()})  # identical on every rank: no further sync
        plateau_scores = scores
        if self._plateau_val is not None:
            plateau_scores = self._plateau_val.compute()
            self.log_dict({f"plateau_val/{k}": v for k, v in plateau_scores.items()})
        if plateau_scores and self.plateau is not None and not self.trainer.sanity_checking:
            self.plateau.step(plateau_scores["loss"])

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        # Stepped here, once per validation, rather than through Lightning's lr_scheduler_config(monitor=...):
        # Lightning steps plateau schedulers on the epoch-local batch_idx, which it does not restore on resume
        # (its own TODO in training_epoch_loop), while validation counts total batches; on our endless
        # step-indexed stream the two drift apart after a resume and the scheduler asks for val/loss at a step
        # without validation (seen in the Kaggle session-chain test).
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=hp.patience, factor=hp.factor)
                        if hp.plateau_every else None)
        if self.plateau is not None and self._plateau_state is not None:
            self.plateau.load_state_dict(self._plateau_state)
        return opt

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.plateau is not None:
            checkpoint["plateau"] = self.plateau.state_dict()
        if self._trainer is not None:  # every value logged so far (its last), restored with the run
            checkpoint["metrics"] = {**self.restored_metrics, **scalar_metrics(self.trainer.callback_metrics)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.restored_metrics = dict(checkpoint.get("metrics") or {})
        self._plateau_state = checkpoint.get("plateau")
        if self._plateau_state is not None and self.plateau is not None:
            self.plateau.load_state_dict(self._plateau_state)
