"""Perceptual difference V (spec §2.3): VGG19 feature distance between an image and its resynthesis."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprolib.models.encoders import VGG19_SLICES, VGGPyramid
from reprolib.models.layout import conv_layout, match_weight_layout

#: pix2pixHD-style layer weights of the original code, relu1_1 … relu5_1 (not the report's 1/M_i).
ORIGINAL_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


class PerceptualDifference(nn.Module):
    """V(x, r) = minmax_per_image( Σ_i w_i · up_i( mean_c |F_i(x) − F_i(r)| ) ) → (B,1,H,W) in [0,1].

    ``F_i`` = frozen VGG19 slices relu1_1 … relu5_1, ``up_i`` = bicubic upsampling to the input size
    (align_corners False), ``w_i`` = ``weights`` (default 1/32 … 1). Inputs: (B,3,H,W) ImageNet-normalised.
    ``pretrained``: True = torchvision's ``vgg19`` ImageNet file from the local torch cache (warns and uses a
    random init if absent), a path, or False. A constant map (e.g. identical images) normalises to 0.
    """

    output_settings = ("weights",)  # hashed into precompute's cache key with the VGG's state dict

    def __init__(
        self,
        weights: Sequence[float] | None = None,
        pretrained: bool | str | os.PathLike = True,
        seed: int = 0,
    ):
        super().__init__()
        self.weights = tuple(float(w) for w in (weights if weights is not None else ORIGINAL_WEIGHTS))
        if len(self.weights) != len(VGG19_SLICES):
            raise ValueError(f"weights needs {len(VGG19_SLICES)} entries (relu1_1 … relu5_1), got {len(self.weights)}")
        self.vgg = VGGPyramid("vgg19", VGG19_SLICES, 1.0, pretrained)
        self.vgg.init_weights(torch.Generator().manual_seed(int(seed)))
        self.vgg.requires_grad_(False)
        self.vgg.eval()

    def train(self, mode: bool = True) -> PerceptualDifference:
        """The VGG stays frozen and in eval mode whatever the caller asks."""
        super().train(mode)
        self.vgg.eval()
        return self

    @torch.no_grad()
    def forward(self, original: torch.Tensor, synthesis: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) × 2 → (B,1,H,W) in [0,1]."""
        if original.ndim != 4 or original.shape[1] != 3 or synthesis.shape != original.shape:
            raise ValueError(
                f"original and synthesis must both be (B,3,H,W) of the same shape, got {tuple(original.shape)} "
                f"and {tuple(synthesis.shape)}"
            )
        b, _, h, w = original.shape
        # one VGG pass for both images (no BatchNorm, so batching them changes nothing)
        fmt = conv_layout(original.device)  # NHWC on CPU: 1.5× here (reprolib.models.layout)
        match_weight_layout(self.vgg, fmt)
        feats = self.vgg(torch.cat((original, synthesis), dim=0).contiguous(memory_format=fmt))
        total = original.new_zeros((b, 1, h, w), dtype=torch.float32)
        for weight, f in zip(self.weights, feats, strict=True):
            diff = (f[:b] - f[b:]).abs().mean(dim=1, keepdim=True).float()
            if diff.shape[-2:] != (h, w):
                diff = F.interpolate(diff, size=(h, w), mode="bicubic", align_corners=False)
            total.add_(diff, alpha=weight)
        lo = total.amin(dim=(1, 2, 3), keepdim=True)
        span = total.amax(dim=(1, 2, 3), keepdim=True) - lo
        return torch.where(span > 0, (total - lo) / span.clamp_min(torch.finfo(total.dtype).tiny), 0.0).clamp(0, 1)
