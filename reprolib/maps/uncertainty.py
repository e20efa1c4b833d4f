"""Softmax entropy H and softmax distance D (spec §2.1, §2.2; report formulas (1)–(2)).

Both maps are computed from segmentation logits (B,C,H,W) and returned as (B,1,H,W) float32 on the
logits' device. ``norm`` selects the normalisation:

* ``"original"`` (default) — what the original code writes to disk, per image:
  H → (H − min H) / max H;  D → 1 − (d − min d) / max d with d = p₁ − p₂ (top-2 softmax probabilities).
* ``"paper"`` — the report's formulas: H with log₂ divided by log₂(C) (so [0,1] for any image);
  D = 1 − p₁ + p₂.
* ``"none"`` — the raw quantity: H in nats (high = uncertain), d = p₁ − p₂ (low = uncertain).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

Norm = Literal["original", "paper", "none"]
_NORMS = ("original", "paper", "none")


def _check_logits(logits: torch.Tensor, norm: str) -> None:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (B,C,H,W) with C >= 2 classes, got shape {tuple(logits.shape)}")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")


def _per_image(x: torch.Tensor, op: str) -> torch.Tensor:
    return getattr(x, op)(dim=(1, 2, 3), keepdim=True)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # A constant image (e.g. every pixel one-hot) has max == 0; the original divides 0/0 → NaN. We return 0.
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(num.dtype).tiny), torch.zeros_like(num))


def softmax_entropy(logits: torch.Tensor, norm: Norm = "original") -> torch.Tensor:
    """Per-pixel entropy of ``softmax(logits, dim=1)`` → (B,1,H,W); in [0,1] unless ``norm="none"``.

    Uses ``xlogy`` so that p = 0 contributes exactly 0 (no NaN on one-hot softmax).
    """
    _check_logits(logits, norm)
    # Softmax in fp32 even under autocast: fp16 probabilities underflow and distort the log.
    p = torch.softmax(logits.float(), dim=1)
    h = (-torch.special.xlogy(p, p).sum(dim=1, keepdim=True)).clamp_min(0.0)
    if norm == "none":
        return h
    if norm == "paper":
        # log2 H / log2 C == ln H / ln C: the base cancels.
        return (h / math.log(logits.shape[1])).clamp(0.0, 1.0)
    return _safe_div(h - _per_image(h, "amin"), _per_image(h, "amax")).clamp(0.0, 1.0)


def softmax_distance(logits: torch.Tensor, norm: Norm = "original") -> torch.Tensor:
    """Per-pixel top-2 softmax probability gap as an uncertainty map → (B,1,H,W).

    ``"original"``: 1 − (d − min d)/max d per image; ``"paper"``: 1 − d; ``"none"``: d = p₁ − p₂.
    """
    _check_logits(logits, norm)
    p = torch.softmax(logits.float(), dim=1)
    top2 = torch.topk(p, k=2, dim=1).values
    d = (top2[:, :1] - top2[:, 1:2]).clamp_min(0.0)
    if norm == "none":
        return d
    if norm == "paper":
        return (1.0 - d).clamp(0.0, 1.0)
    return (1.0 - _safe_div(d - _per_image(d, "amin"), _per_image(d, "amax"))).clamp(0.0, 1.0)


def quantize_8bit(
    values: torch.Tensor | np.ndarray, mode: Literal["round", "truncate"] = "round"
) -> torch.Tensor | np.ndarray:
    """Quantise a [0,1] map to uint8 as the original PNG writers did (spec §2.1, §2.3).

    ``"round"`` = ``cv2.imwrite`` of float data (round half to even, saturate) — the data-prep scripts;
    ``"truncate"`` = ``astype(np.uint8)`` / ``ToPILImage`` (floor of ×255) — ``estimator.py`` and V's data prep.
    Returns the same kind (tensor / array) as given. Divide by 255 to get what the loaders deliver.
    """
    if mode not in ("round", "truncate"):
        raise ValueError(f"mode must be 'round' or 'truncate', got {mode!r}")
    is_numpy = isinstance(values, np.ndarray)
    t = torch.from_numpy(np.asarray(values)) if is_numpy else values
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"expected a tensor or numpy array, got {type(values).__name__}")
    if not (t.is_floating_point()):
        raise ValueError(f"expected a floating-point map in [0,1], got dtype {t.dtype}")
    scaled = t.double() * 255.0
    scaled = torch.round(scaled) if mode == "round" else torch.floor(scaled)
    out = scaled.clamp(0, 255).to(torch.uint8)
    return out.numpy() if is_numpy else out
