"""CC-FPSE (``netG=condconv``) generator and its VAE style encoder: the main pipeline's resynthesis.

As SynBoost builds it (``options/config_class.py``): 36-channel semantic input, ``ngf=64``, spectral norm +
BatchNorm on the label path, ``num_upsampling_layers='more'``, a 256-d style code from the encoder.

* **Label path** — seven strided SN-conv+BN encoders (256×512 … 4×8) and an FPN top-down decoder give one
  64-channel semantic feature map per generator scale.
* **Image path** — ``z`` → linear → 1024×4×8, then seven :class:`DepthsepCCBlock` s, each conditioned on
  ``cat(nearest(seg), segout_k)`` (100 channels): weights of a *spatially varying* depthwise 3×3 conv and
  squeeze-excitation gates are predicted per pixel from that map (conditional convolution).
* **Encoder** — :class:`ConvEncoder` squashes any image to 256×256, six SN conv + InstanceNorm layers,
  ``mu`` and ``logvar`` of the style code. ``z = mu + ε·exp(logvar/2)``.

Checkpoints ``image-synthesis/latest_net_G.pth`` (519 keys, 128,055,555 parameters) and ``latest_net_E.pth``
(22 keys, 10,463,424 parameters), bare keys. **The generator only works at 256×512** (its latent is 4×8);
:class:`CCFPSEResynthesis` resizes labelIds in and the image out.

Three BatchNorms per block (``norm_0``, ``conv_0.norm_layer``, ``conv_2.norm_layer``) exist only in the
state dict — the original never calls them — and are kept so that checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from reprolib.backends.base import FrozenWrapper, ResynthesisBackend
from reprolib.backends.keyed import load_checkpoint_state_dict, load_strict, unwrap_state_dict
from reprolib.backends.synthesis_blocks import (
    SEMANTIC_CHANNELS,
    SPADE,
    SYNTHESIS_SIZE,
    SpectralNormConv2d,
    leaky_relu,
    resize_nearest,
    semantic_input,
    synthesis_labels,
    to_output,
)
from reprolib.io import PathLike

GENERATOR = "ccfpse-generator"
ENCODER = "ccfpse-encoder"
Z_DIM = 256
LABEL_FEATURES = 64
#: conditioning channels of every block: the resized semantic map ⊕ the label path's features
COND_CHANNELS = SEMANTIC_CHANNELS + LABEL_FEATURES
ENCODER_SIZE = (256, 256)


def depthwise_conditional_conv(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Spatially varying depthwise 3×3 conv, padding 1: ``out[n,c,y,x] = Σ_k w[n, 9c+k, y, x]·x_pad[n,c,y+ky,x+kx]``.

    Accumulating the nine shifted products keeps the memory at one extra map, instead of the 9× of an
    ``unfold`` (at 256×512 with 128 channels that is 0.6 GB per image).
    """
    n, c, h, w = x.shape
    if weights.shape != (n, 9 * c, h, w):
        raise ValueError(f"conditional weights must be {(n, 9 * c, h, w)}, got {tuple(weights.shape)}")
    x_pad = F.pad(x, (1, 1, 1, 1))
    weights = weights.view(n, c, 9, h, w)
    out = x_pad[:, :, 0:h, 0:w] * weights[:, :, 0]
    for k in range(1, 9):
        ky, kx = divmod(k, 3)
        out = out + x_pad[:, :, ky:ky + h, kx:kx + w] * weights[:, :, k]
    return out


class DepthConv(nn.Module):
    """:func:`depthwise_conditional_conv` as a module; ``norm_layer`` is the original's unused BatchNorm."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm_layer = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return depthwise_conditional_conv(x, weights)


def _predictor(out_channels: int, hidden: int = 128, gate: bool = False) -> nn.Sequential:
    """conv 3×3 (100→hidden) → ReLU → conv 3×3 (hidden→out) [→ Sigmoid]: per-pixel weights or gates."""
    layers: list[nn.Module] = [nn.Conv2d(COND_CHANNELS, hidden, 3, padding=1), nn.ReLU(),
                               nn.Conv2d(hidden, out_channels, 3, padding=1)]
    if gate:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class DepthsepCCBlock(nn.Module):
    """Conditional-convolution residual block (CC-FPSE ``DepthsepCCBlock``).

    ``dx = BN → condconv(w1) → 1×1 → ·se1 → LReLU → BN → condconv(w2) → 1×1 → ·se2 → LReLU``;
    shortcut = SN 1×1 conv of SPADE(x) when fin ≠ fout, else x.
    """

    def __init__(self, fin: int, fout: int):
        super().__init__()
        fmiddle = min(fin, fout)
        self.gen_weights1 = _predictor(fin * 9)
        self.gen_weights2 = _predictor(fout * 9)
        self.gen_se_weights1 = _predictor(fmiddle, gate=True)
        self.gen_se_weights2 = _predictor(fout, gate=True)
        self.conv_0 = DepthConv(fin)
        self.norm_0 = nn.BatchNorm2d(fmiddle)  # unused by the original; kept for the checkpoint layout
        self.conv_1 = nn.Conv2d(fin, fmiddle, 1)
        self.norm_1 = nn.BatchNorm2d(fin)
        self.conv_2 = DepthConv(fmiddle)
        self.norm_2 = nn.BatchNorm2d(fmiddle)
        self.conv_3 = nn.Conv2d(fmiddle, fout, 1)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, COND_CHANNELS)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, cond)) if self.learned_shortcut else x
        dx = self.conv_1(self.conv_0(self.norm_1(x), self.gen_weights1(cond)))
        dx = leaky_relu(dx * self.gen_se_weights1(cond))
        dx = self.conv_3(self.conv_2(self.norm_2(dx), self.gen_weights2(cond)))
        dx = leaky_relu(dx * self.gen_se_weights2(cond))
        return x_s + dx


def _sn_conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """SN conv (no bias) + BatchNorm + LeakyReLU(0.2): keys ``.0.0.weight_orig/_u/_v``, ``.0.1.*``."""
    conv = SpectralNormConv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)
    return nn.Sequential(nn.Sequential(conv, nn.BatchNorm2d(out_channels)), nn.LeakyReLU(0.2))


class CondConvGenerator(nn.Module):
    """Semantic map (B,36,256,512) and style code z (B,256) → RGB (B,3,256,512) in (−1, 1)."""

    LEVELS = 7

    def __init__(self, ngf: int = 64, z_dim: int = Z_DIM):
        super().__init__()
        self.latent = (16 * ngf, SYNTHESIS_SIZE[0] // 64, SYNTHESIS_SIZE[1] // 64)  # 1024×4×8
        self.fc = nn.Linear(z_dim, self.latent[0] * self.latent[1] * self.latent[2])
        # label encoder: 256×512 → 4×8; lateral 1×1 and top-down 3×3 convs of the FPN decoder
        for k in range(1, self.LEVELS + 1):
            setattr(self, f"labelenc{k}", _sn_conv_bn(SEMANTIC_CHANNELS if k == 1 else LABEL_FEATURES,
                                                      LABEL_FEATURES, 3, stride=1 if k == 1 else 2))
        for k in range(1, self.LEVELS):
            setattr(self, f"labellat{k}", _sn_conv_bn(LABEL_FEATURES, LABEL_FEATURES, 1))
        for k in range(1, self.LEVELS):
            setattr(self, f"labeldec{k}", _sn_conv_bn(LABEL_FEATURES, LABEL_FEATURES, 3))
        self.head_0 = DepthsepCCBlock(16 * ngf, 16 * ngf)
        self.G_middle_0 = DepthsepCCBlock(16 * ngf, 16 * ngf)
        self.G_middle_1 = DepthsepCCBlock(16 * ngf, 16 * ngf)
        self.up_0 = DepthsepCCBlock(16 * ngf, 8 * ngf)
        self.up_1 = DepthsepCCBlock(8 * ngf, 4 * ngf)
        self.up_2 = DepthsepCCBlock(4 * ngf, 2 * ngf)
        self.up_3 = DepthsepCCBlock(2 * ngf, ngf)
        self.conv_img = nn.Conv2d(ngf, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)  # nearest

    def label_features(self, seg: torch.Tensor) -> list[torch.Tensor]:
        """FPN features of the semantic map, coarse to fine: 4×8, 8×16, …, 256×512 (64 channels each)."""
        enc = [seg]
        for k in range(1, self.LEVELS + 1):
            enc.append(getattr(self, f"labelenc{k}")(enc[-1]))
        # enc[k] is labelenc k's output; the top-down pass adds laterals from finer encoder levels
        outs = [enc[self.LEVELS]]
        for k in range(1, self.LEVELS):
            lateral = getattr(self, f"labellat{k}")(enc[self.LEVELS - k])
            outs.append(getattr(self, f"labeldec{k}")(self.up(outs[-1]) + lateral))
        return outs

    def forward(self, seg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if tuple(seg.shape[-2:]) != SYNTHESIS_SIZE:
            raise ValueError(f"the CC-FPSE generator works at exactly {SYNTHESIS_SIZE[0]}×{SYNTHESIS_SIZE[1]}; "
                             f"got a semantic map of {tuple(seg.shape[-2:])}")
        segouts = self.label_features(seg)
        x = self.fc(z).view(z.shape[0], *self.latent)
        blocks = (self.head_0, self.G_middle_0, self.G_middle_1, self.up_0, self.up_1, self.up_2, self.up_3)
        for k, (block, segout) in enumerate(zip(blocks, segouts, strict=True)):
            if k > 0:
                x = self.up(x)
            x = block(x, torch.cat([resize_nearest(seg, x.shape[-2:]), segout], dim=1))
        return torch.tanh(self.conv_img(leaky_relu(x)))


class ConvEncoder(nn.Module):
    """Image (B,3,H,W) in [−1,1] → (mu, logvar) of the 256-d style code; squashes the input to 256×256."""

    def __init__(self, ndf: int = 64, z_dim: int = Z_DIM):
        super().__init__()
        chans = [3, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 8 * ndf, 8 * ndf]
        for k in range(1, 7):
            conv = SpectralNormConv2d(chans[k - 1], chans[k], 3, stride=2, padding=1, bias=False)
            setattr(self, f"layer{k}", nn.Sequential(conv, nn.InstanceNorm2d(chans[k], affine=False)))
        flat = 8 * ndf * (ENCODER_SIZE[0] // 64) * (ENCODER_SIZE[1] // 64)
        self.fc_mu = nn.Linear(flat, z_dim)
        self.fc_var = nn.Linear(flat, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image
        if tuple(x.shape[-2:]) != ENCODER_SIZE:
            x = F.interpolate(x, size=ENCODER_SIZE, mode="bilinear", align_corners=False)
        for k in range(1, 7):
            x = leaky_relu(getattr(self, f"layer{k}")(x))
        x = x.reshape(x.shape[0], -1)
        return self.fc_mu(x), self.fc_var(x)


def build_meta(name: str = GENERATOR) -> nn.Module:
    """``ccfpse-generator`` or ``ccfpse-encoder`` on the ``meta`` device (no memory, no init)."""
    with torch.device("meta"):
        if name == GENERATOR:
            return CondConvGenerator()
        if name == ENCODER:
            return ConvEncoder()
    raise ValueError(f"unknown CC-FPSE network {name!r}; valid names: {GENERATOR}, {ENCODER}")


def from_original_state_dict(state_dict: Mapping[str, torch.Tensor], name: str = GENERATOR) -> nn.Module:
    """CC-FPSE generator or encoder (eval mode) from the published state dict; strict (missing, extra or
    mis-shaped keys raise ``ValueError`` naming them). Accepts a ``{"state_dict": ...}`` wrapper and a
    ``module.`` prefix."""
    return load_strict(build_meta(name), unwrap_state_dict(state_dict), name).eval()


class CCFPSEResynthesis(FrozenWrapper, ResynthesisBackend):
    """:class:`ResynthesisBackend` adapter around the generator (and, optionally, the style encoder).

    labelIds (any size) are nearest-resized to 256×512; the real image (``[0,1]``) is resized bicubically to
    256×512 and mapped to [−1, 1] for the encoder. ``z = mu + ε·exp(logvar/2)``; without an encoder (or
    without an image) ``z = ε``. ε comes from a generator seeded with ``seed`` at every call — the original
    draws it from the global RNG (seeded once), which makes an image's resynthesis depend on its position in
    the run; here every image gets the same ε of the seed. The [0,1] output is resized back to the labels' size.
    """

    name = "ccfpse"
    style_size = SYNTHESIS_SIZE  # the original's loader gives the encoder a bicubic 256×512 image (spec §5.3)
    output_settings = ("seed",)  # hashed into precompute's cache key with the weights

    def __init__(self, generator: CondConvGenerator, encoder: ConvEncoder | None = None, seed: int = 0):
        super().__init__()
        self.generator = generator.eval()
        self.encoder = encoder.eval() if encoder is not None else None
        self.seed = seed

    def style_code(self, batch: int, image: torch.Tensor | None) -> torch.Tensor:
        """z for a batch: the encoder's reparameterised code of ``image`` (or standard normal noise)."""
        device = self.generator.fc.weight.device
        # one ε for every image: an image's resynthesis does not depend on its batch or position
        eps = torch.randn(1, Z_DIM, generator=torch.Generator().manual_seed(self.seed)).expand(batch, -1).to(device)
        if self.encoder is None or image is None:
            return eps
        rgb = image.to(device=device, dtype=torch.float32)
        if tuple(rgb.shape[-2:]) != SYNTHESIS_SIZE:
            rgb = F.interpolate(rgb, size=SYNTHESIS_SIZE, mode="bicubic", align_corners=False, antialias=True)
        mu, logvar = self.encoder(rgb.clamp(0, 1) * 2 - 1)
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(self, label_ids: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        if image is not None and image.shape[0] != label_ids.shape[0]:
            raise ValueError(f"{image.shape[0]} images for {label_ids.shape[0]} label maps")
        seg = semantic_input(synthesis_labels(label_ids)).to(self.generator.fc.weight.device)
        z = self.style_code(label_ids.shape[0], image)
        return to_output(self.generator(seg, z.to(seg.dtype)), label_ids.shape[-2:])


def load_resynthesis(generator_path: PathLike, encoder_path: PathLike | None = None, seed: int = 0
                     ) -> CCFPSEResynthesis:
    """Adapter around ``latest_net_G.pth`` (and ``latest_net_E.pth`` if given); ``weights_only`` loads,
    strict, eval mode."""
    gen = load_strict(build_meta(GENERATOR), load_checkpoint_state_dict(generator_path), GENERATOR,
                      source=generator_path).eval()
    enc = None
    if encoder_path is not None:
        enc = load_strict(build_meta(ENCODER), load_checkpoint_state_dict(encoder_path), ENCODER,
                          source=encoder_path).eval()
    return CCFPSEResynthesis(gen, enc, seed=seed)
