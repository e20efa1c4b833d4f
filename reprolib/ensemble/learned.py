"""Learned ("end-to-end") ensemble of the dissimilarity output with the uncertainty maps (spec §3.3).

The original repository has no such thing; the MLRC reproduction added four learnable scalars to
``DissimNetPrior``. Three forms are offered so the report can show what each does:

* ``"repro"`` — the reproduction's form: ``z = (w0·logits + w1·H + w2·V + w3·D) / Σw`` with the maps added
  to **both** logit channels. Softmax ignores a constant added to both classes, so the maps cancel:
  ``softmax(z) = softmax((w0/Σw)·logits)``. Only a temperature survives; the ranking of pixels by
  p(anomaly) is unchanged (the reproduction's "ensemble" is a no-op for AP / FPR95 / AUROC).
* ``"probability"`` — the paper's idea: a convex combination of p(anomaly) with the maps,
  ``s = (w0·p + w1·H + w2·V + w3·D) / Σw`` ∈ [0,1] — the learned counterpart of the grid search (§3.2).
* ``"anomaly_logit"`` — the maps enter the anomaly logit only: ``z = w0·logits; z[:,1] += w1·H + w2·V + w3·D``.

Weights are kept non-negative with softplus (``w = softplus(raw)``), initialised to ``init`` (default all 1,
as the reproduction). Weight order = the grid search's: [network, entropy H, perceptual V, distance D].

``forward`` returns **log-probabilities** (B,2,H,W) — train with ``F.nll_loss(out, label, weight=…,
ignore_index=255)`` (equivalent to cross-entropy on logits for ``"repro"`` / ``"anomaly_logit"``).
``score`` gives p(anomaly) (B,H,W) for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprolib.data.formats import UNCERTAINTY_MAPS

MODES = ("probability", "anomaly_logit", "repro")


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    # softplus⁻¹(x) = log(expm1(x)), stable for large x as x + log(1 − e^{−x})
    return x + torch.log(-torch.expm1(-x))


class LearnedEnsemble(nn.Module):
    """Four non-negative learnable weights mixing the network output with H, V, D (see module docstring)."""

    def __init__(self, mode: str = "probability", init: Sequence[float] = (1.0, 1.0, 1.0, 1.0), eps: float = 1e-6):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.eps = eps
        self.raw = nn.Parameter(torch.zeros(4))
        self.set_weights(init)

    @property
    def weights(self) -> torch.Tensor:
        """The current non-negative weights [w_net, w_H, w_V, w_D]."""
        return F.softplus(self.raw)

    @torch.no_grad()
    def set_weights(self, values: Sequence[float]) -> None:
        """Set the weights (each > 0) — e.g. to evaluate the reproduction's learned scalars."""
        v = torch.as_tensor(list(values), dtype=torch.float32)
        if v.shape != (4,) or not bool((v > 0).all()) or not bool(torch.isfinite(v).all()):
            raise ValueError(f"need 4 positive finite weights [net, H, V, D], got {list(values)}")
        self.raw.copy_(_inverse_softplus(v.double()).float())

    @staticmethod
    def _check(logits: torch.Tensor, maps: Sequence[torch.Tensor]) -> None:
        if logits.ndim != 4 or logits.shape[1] != 2:
            raise ValueError(f"logits must be (B,2,H,W), got {tuple(logits.shape)}")
        b, _, h, w = logits.shape
        for name, m in zip(UNCERTAINTY_MAPS, maps, strict=True):
            if m is None or tuple(m.shape) != (b, 1, h, w):
                got = None if m is None else tuple(m.shape)
                raise ValueError(f"{name} must be a (B,1,H,W)=({b},1,{h},{w}) map, got {got}")

    def forward(
        self, logits: torch.Tensor, entropy: torch.Tensor, perceptual: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        """Network logits (B,2,H,W) + maps (B,1,H,W) in [0,1] → log-probabilities (B,2,H,W)."""
        self._check(logits, (entropy, perceptual, distance))
        # fp32 for the mixing: tiny weights and log(1 − s) lose everything in fp16
        logits = logits.float()
        w = self.weights.to(logits.device)
        maps = w[1] * entropy.float() + w[2] * perceptual.float() + w[3] * distance.float()
        if self.mode == "repro":
            return F.log_softmax((w[0] * logits + maps) / w.sum(), dim=1)
        if self.mode == "anomaly_logit":
            z = w[0] * logits
            z = torch.cat((z[:, :1], z[:, 1:] + maps), dim=1)
            return F.log_softmax(z, dim=1)
        p = torch.softmax(logits, dim=1)[:, 1:]
        # squeeze into [eps, 1 − eps] affinely (not clamp): finite logs, gradients everywhere, same ranking
        s = self.eps + (1 - 2 * self.eps) * ((w[0] * p + maps) / w.sum())
        return torch.cat((torch.log1p(-s), torch.log(s)), dim=1)

    def score(
        self, logits: torch.Tensor, entropy: torch.Tensor, perceptual: torch.Tensor, distance: torch.Tensor
    ) -> torch.Tensor:
        """p(anomaly) (B,H,W) — the per-pixel score the metrics rank."""
        return self.forward(logits, entropy, perceptual, distance)[:, 1].exp()

    def extra_repr(self) -> str:
        w = ", ".join(f"{x:.4g}" for x in self.weights.detach().tolist()) if not self.raw.is_meta else "?"
        return f"mode={self.mode!r}, weights=[{w}]"


def repro_temperature(weights: Sequence[float]) -> float:
    """w0 / Σw: the only thing the reproduction's ensemble changes (a softmax temperature)."""
    total = math.fsum(weights)
    return weights[0] / total
