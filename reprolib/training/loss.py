"""The training losses, written so that no op on PyTorch's "throws on CUDA under determinism" list runs.

``F.cross_entropy`` / ``F.nll_loss`` on (B,C,H,W) dispatch to ``nll_loss2d``, which raises on CUDA under
``torch.use_deterministic_algorithms(True)`` (``torch.nn.NLLLoss`` is on that list), so GPU training with
``deterministic=True`` stopped at the first loss. :func:`weighted_cross_entropy` computes the same value from
``log_softmax`` + ``gather`` + a weighted sum, normalised like PyTorch's weighted mean
(``Σ w[y]·(−log p_y) / Σ w[y]`` over the non-ignored pixels); all of these are deterministic on CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reprolib.labels import IGNORE_INDEX


def weighted_nll(log_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                 ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``F.nll_loss(log_probs, target, weight, ignore_index)`` (mean reduction) without ``nll_loss(2d)``.

    ``log_probs`` (B,C,…) and ``target`` (B,…) long. Computed in fp32 even under autocast. Like PyTorch,
    the result is NaN when every pixel is ignored (0/0).
    """
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        picked, w = _picked_and_weight(log_probs, target, weight, ignore_index)
        return -(picked * w).sum() / w.sum()


def weighted_nll_sums(log_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                      ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, :func:`weighted_nll`'s numerator ``Σ w[y]·(−log p_y)`` and denominator ``Σ w[y]``, each (B,).

    A batch's loss is ``num.sum() / den.sum()`` up to fp32 rounding (one sum over the batch, there, vs per-image
    sums here): what lets the batch losses of one device be recomputed from images gathered across ranks.
    """
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        picked, w = _picked_and_weight(log_probs, target, weight, ignore_index)
        return -(picked * w).flatten(1).sum(1), w.flatten(1).sum(1)


def _picked_and_weight(log_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                       ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each pixel's target class, its weight: 0 where ignored), both fp32 (B,…)."""
    log_probs = log_probs.float()
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    picked = log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    w = valid.to(log_probs.dtype)
    if weight is not None:
        w = w * weight.to(device=log_probs.device, dtype=log_probs.dtype)[safe]
    return picked, w


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                           ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``F.cross_entropy(logits, target, weight, ignore_index)`` (mean), deterministic on CUDA, fp32 always."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return weighted_nll(F.log_softmax(logits.float(), dim=1), target, weight, ignore_index)
