"""Resizing policy and tensor conversions shared by the loaders.

Policy: evaluation sets are read at their native (benchmark) resolution unless a ``size`` is given;
training reads at the configured size. Label-like maps are always resized with NEAREST. RGB images use
``image_resize``: ``"nearest"`` is what the original does for *everything* (spec §4.3, faithful default of
the processed split), ``"bilinear"`` is the better choice for new runs and the default of the raw loaders.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from reprolib.backends.base import IMAGENET_MEAN, IMAGENET_STD

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def resize_image(rgb: np.ndarray, size: tuple[int, int] | None, mode: str = "bilinear") -> np.ndarray:
    """(H,W,3) uint8 → (h,w,3) uint8 at ``size`` = (h, w); ``None`` keeps the native size."""
    if size is None or tuple(rgb.shape[:2]) == tuple(size):
        return rgb
    if mode not in _RESAMPLE:
        raise ValueError(f"image_resize must be one of {sorted(_RESAMPLE)}, got {mode!r}")
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), _RESAMPLE[mode]))


def resize_labels(arr: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of a label / id / 8-bit map (any integer dtype)."""
    if size is None or tuple(arr.shape[:2]) == tuple(size):
        return arr
    h, w = arr.shape[:2]
    rows = (np.arange(size[0]) * h // size[0]).clip(0, h - 1)
    cols = (np.arange(size[1]) * w // size[1]).clip(0, w - 1)
    return arr[rows][:, cols]


def to_tensor_image(rgb: np.ndarray, normalize: bool = False) -> torch.Tensor:
    """(H,W,3) uint8 → (3,H,W) float in [0,1], ImageNet-normalised when ``normalize``."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        x = (x - mean) / std
    return x


def one_hot(train_ids: np.ndarray | torch.Tensor, num_classes: int = 19) -> torch.Tensor:
    """(H,W) trainIds → (C,H,W) float one-hot; ids ≥ C (void 255) give all-zero columns (spec §1.2)."""
    t = torch.as_tensor(np.asarray(train_ids), dtype=torch.long)
    valid = t < num_classes
    out = torch.zeros((num_classes, *t.shape), dtype=torch.float32)
    out.scatter_(0, torch.where(valid, t, 0).unsqueeze(0), valid.unsqueeze(0).float())
    return out
