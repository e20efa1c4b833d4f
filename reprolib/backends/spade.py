"""SPADE generator (NVlabs SPADE, ``netG=spade``): the light pipeline's resynthesis.

As SynBoost's light pipeline builds it (``--dataset_mode cityscapes``): 36-channel semantic input, no VAE
encoder (deterministic), ``num_upsampling_layers='more'`` — a 4×8 latent from a 3×3 conv on the
nearest-downsampled map, seven SPADE residual blocks with six ×2 upsamplings, output 256×512 in (−1, 1).
Checkpoint: ``image-synthesis_spade/latest_net_G.pth`` (bare keys, 234 entries, 93,048,003 parameters).

:class:`SPADEGenerator` is the raw network (semantic map in, tanh image out); :class:`SPADEResynthesis`
adapts it to :class:`~reprolib.backends.base.ResynthesisBackend` (labelIds in, [0,1] RGB out at the
labels' size).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from reprolib.backends.base import FrozenWrapper, ResynthesisBackend
from reprolib.backends.keyed import load_checkpoint_state_dict, load_strict, unwrap_state_dict
from reprolib.backends.synthesis_blocks import (
    SEMANTIC_CHANNELS,
    SPADE,
    SpectralNormConv2d,
    leaky_relu,
    resize_nearest,
    semantic_input,
    synthesis_labels,
    to_output,
)
from reprolib.io import PathLike

NAME = "spade-generator"
LATENT_SIZE = (4, 8)


class SPADEResnetBlock(nn.Module):
    """Residual block: SPADE → LeakyReLU → SN conv 3×3, twice; learned SN 1×1 shortcut when fin ≠ fout."""

    def __init__(self, fin: int, fout: int, seg_channels: int = SEMANTIC_CHANNELS):
        super().__init__()
        fmiddle = min(fin, fout)
        self.conv_0 = SpectralNormConv2d(fin, fmiddle, 3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmiddle, fout, 3, padding=1)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
        self.norm_0 = SPADE(fin, seg_channels)
        self.norm_1 = SPADE(fmiddle, seg_channels)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, seg_channels)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        # no activation between norm_s and conv_s, as in the original
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(leaky_relu(self.norm_0(x, seg)))
        dx = self.conv_1(leaky_relu(self.norm_1(dx, seg)))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """Semantic map (B,36,H,W) → RGB (B,3,256,512) in (−1, 1)."""

    def __init__(self, ngf: int = 64, seg_channels: int = SEMANTIC_CHANNELS):
        super().__init__()
        self.fc = nn.Conv2d(seg_channels, 16 * ngf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * ngf, 16 * ngf, seg_channels)
        self.G_middle_0 = SPADEResnetBlock(16 * ngf, 16 * ngf, seg_channels)
        self.G_middle_1 = SPADEResnetBlock(16 * ngf, 16 * ngf, seg_channels)
        self.up_0 = SPADEResnetBlock(16 * ngf, 8 * ngf, seg_channels)
        self.up_1 = SPADEResnetBlock(8 * ngf, 4 * ngf, seg_channels)
        self.up_2 = SPADEResnetBlock(4 * ngf, 2 * ngf, seg_channels)
        self.up_3 = SPADEResnetBlock(2 * ngf, ngf, seg_channels)
        self.conv_img = nn.Conv2d(ngf, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)  # nearest

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        x = self.fc(resize_nearest(seg, LATENT_SIZE))
        x = self.head_0(x, seg)
        x = self.G_middle_0(self.up(x), seg)
        x = self.G_middle_1(self.up(x), seg)  # the extra upsampling of num_upsampling_layers='more'
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(self.up(x), seg)
        return torch.tanh(self.conv_img(leaky_relu(x)))


def build_meta() -> SPADEGenerator:
    """A generator on the ``meta`` device (no memory, no init): for layouts and fast strict loading."""
    with torch.device("meta"):
        return SPADEGenerator()


def from_original_state_dict(state_dict: Mapping[str, torch.Tensor], name: str = NAME) -> SPADEGenerator:
    """SPADE generator (eval mode) from the published state dict; strict (missing/extra/mis-shaped keys
    raise ``ValueError`` naming them). Accepts a ``{"state_dict": ...}`` wrapper and a ``module.`` prefix."""
    if name != NAME:
        raise ValueError(f"the SPADE backend has one network, {NAME!r}; got {name!r}")
    return load_strict(build_meta(), unwrap_state_dict(state_dict), NAME).eval()


class SPADEResynthesis(FrozenWrapper, ResynthesisBackend):
    """:class:`ResynthesisBackend` adapter: labelIds (any size) are nearest-resized to 256×512, turned into the
    36-channel input, synthesised, and the [0,1] image is bilinearly resized back. ``image`` is ignored."""

    name = "spade"

    def __init__(self, generator: SPADEGenerator):
        super().__init__()
        self.generator = generator.eval()

    def forward(self, label_ids: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        seg = semantic_input(synthesis_labels(label_ids)).to(self.generator.fc.weight.device)
        return to_output(self.generator(seg), label_ids.shape[-2:])


def load_resynthesis(path: PathLike) -> SPADEResynthesis:
    """Adapter around the checkpoint at ``path`` (``weights_only=True``; strict; eval mode)."""
    sd = load_checkpoint_state_dict(path)
    return SPADEResynthesis(load_strict(build_meta(), sd, NAME, source=path).eval())
