"""The two backend interfaces SynBoost wraps: any segmentation network, any conditional generator."""

from __future__ import annotations

import torch
from torch import nn

# Normalisation belongs to the data side (the loaders apply it); re-exported here for the backends' callers.
from reprolib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, imagenet_denormalize, imagenet_normalize

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FrozenWrapper", "ResynthesisBackend", "SegmentationBackend",
           "check_image_batch", "imagenet_denormalize", "imagenet_normalize"]


class SegmentationBackend(nn.Module):
    """Image → logits over the 19 Cityscapes train classes.

    ``forward(image)``: ``image`` is (B,3,H,W) float, ImageNet-normalised RGB; returns logits (B,19,H,W) at the
    input resolution (backends that predict at a lower stride upsample inside ``forward``).
    """

    num_classes: int = 19
    name: str = "segmentation"

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class ResynthesisBackend(nn.Module):
    """Semantic map → photo-realistic RGB image.

    ``forward(label_ids, image=None)``: ``label_ids`` is (B,H,W) long Cityscapes *labelIds* (0..33; the
    backend derives one-hot planes and instance/label edges itself); ``image`` is the real image (B,3,H,W)
    in [0,1] for generators that take a style code from it (CC-FPSE's VAE), else ignored. Returns RGB
    (B,3,H,W) in [0,1] at the size of ``label_ids``.
    """

    name: str = "resynthesis"
    #: the size (h, w) at which a generator with a style code wants ``image``, resized from the image's own
    #: resolution (bicubic, as the original's loader does); None: the image at the processing size will do
    style_size: tuple[int, int] | None = None

    def forward(self, label_ids: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class FrozenWrapper(nn.Module):
    """Mixin for adapters around published networks: every wrapped child stays in eval mode whatever
    ``train()`` the caller uses, so BatchNorm keeps the checkpoint's running statistics."""

    def train(self, mode: bool = True) -> FrozenWrapper:
        super().train(mode)
        for child in self.children():
            child.eval()
        return self


def check_image_batch(image: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``image`` is a (B,3,H,W) batch."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an image batch (B,3,H,W), got shape {tuple(image.shape)}")

