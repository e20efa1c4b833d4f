"""Building blocks shared by the published conditional generators (CC-FPSE, SPADE).

* :class:`SpectralNormConv2d` — a convolution whose weight is divided by the spectral norm computed from the
  *stored* vectors ``weight_u`` / ``weight_v``, with the checkpoint keys of ``torch.nn.utils.spectral_norm``
  (``weight_orig``, ``weight_u``, ``weight_v``). The original networks run in eval mode, where that API does
  no power iteration; the generators here are frozen, so the stored-vector rule is the whole behaviour.
* :class:`SPADE` — spatially-adaptive normalisation: parameter-free batch norm modulated per pixel by
  ``(1 + γ(seg))`` and ``β(seg)``.
* :func:`semantic_input` — labelIds → the 36-channel generator input (one-hot over 35 labelIds ⊕ label
  edges; SynBoost feeds the label map as the instance map, so instance edges = label boundaries).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprolib.backends.embedded import label_input

#: Input channels of both generators: 35 labelIds + 1 edge channel (``semantic_nc``).
SEMANTIC_CHANNELS = 36
#: The published generators' output size (latent 4×8 and six ×2 upsamplings).
SYNTHESIS_SIZE = (256, 512)


class SpectralNormConv2d(nn.Module):
    """``Conv2d`` with eval-mode spectral normalisation from stored vectors.

    ``W_eff = weight_orig / σ`` with ``σ = weight_u · (weight_orig.reshape(out, -1) @ weight_v)`` — exactly
    what ``torch.nn.utils.spectral_norm`` computes in eval mode (no SVD, no power iteration), so published
    checkpoints give the published outputs. The bias, when kept, is registered first: that is the key order
    of the original checkpoints (``spectral_norm`` re-registers the weight after the bias).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.weight_orig = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.register_buffer("weight_u", torch.empty(out_channels))
        self.register_buffer("weight_v", torch.empty(in_channels * kernel_size * kernel_size))

    def sigma(self) -> torch.Tensor:
        """The stored-vector spectral-norm estimate ``u·(W v)`` (may be any sign for untrained vectors)."""
        w = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        return torch.dot(self.weight_u, torch.mv(w, self.weight_v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_orig / self.sigma()
        return F.conv2d(x, weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                        self.stride, self.padding)


def resize_nearest(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Legacy ``mode='nearest'`` resize (source index ``floor(i·in/out)``), as the originals use; no-op at size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="nearest")


class SPADE(nn.Module):
    """``bn(x)·(1 + γ(seg)) + β(seg)``: parameter-free BatchNorm (running stats in eval), 3×3 conv MLP.

    ``seg`` is nearest-resized to ``x``'s size when it differs.
    """

    def __init__(self, channels: int, seg_channels: int, hidden: int = 128):
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(seg_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        actv = self.mlp_shared(resize_nearest(seg, x.shape[-2:]))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2), the generators' only activation."""
    return F.leaky_relu(x, 0.2)


def semantic_input(label_ids: torch.Tensor) -> torch.Tensor:
    """(B,H,W) Cityscapes labelIds → (B,36,H,W) float: one-hot over labelIds 0..34 ⊕ the label-edge map.

    Raises ``ValueError`` for ids outside 0..34 (a trainId map or 255 'ignore' passed by mistake would
    otherwise be silently turned into 'unlabeled').
    """
    if label_ids.ndim != 3:
        raise ValueError(f"expected label ids (B,H,W), got shape {tuple(label_ids.shape)}")
    if label_ids.dtype.is_floating_point:
        raise ValueError(f"label ids must be an integer tensor, got {label_ids.dtype}")
    if label_ids.numel() and (int(label_ids.min()) < 0 or int(label_ids.max()) >= SEMANTIC_CHANNELS - 1):
        raise ValueError(f"label ids must be Cityscapes labelIds in 0..{SEMANTIC_CHANNELS - 2}, "
                         f"got values in {int(label_ids.min())}..{int(label_ids.max())}")
    return label_input(label_ids)


def synthesis_labels(label_ids: torch.Tensor) -> torch.Tensor:
    """labelIds (B,H,W) nearest-resized to the generators' fixed :data:`SYNTHESIS_SIZE`."""
    if tuple(label_ids.shape[-2:]) == SYNTHESIS_SIZE:
        return label_ids
    return resize_nearest(label_ids[:, None].float(), SYNTHESIS_SIZE)[:, 0].to(label_ids.dtype)


def to_output(rgb_tanh: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Generator output in (−1, 1) → [0, 1] RGB, bilinearly resized to ``size`` when it differs."""
    rgb = (rgb_tanh + 1) / 2
    if tuple(rgb.shape[-2:]) != tuple(size):
        rgb = F.interpolate(rgb, size=tuple(size), mode="bilinear", align_corners=False)
    return rgb.clamp(0, 1)
