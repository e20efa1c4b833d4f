"""ICNet (Fast_Seg) with the deep-stem dilated ResNet-50 / PSP branch: SynBoost's light-pipeline segmentation.

Written from the description in ``reference/backends/README.md`` §2 of Fast_Seg's ``libs/models/ICNet.py``
and ``libs/models/PSPNet.py``; module names equal the checkpoint's bare keys (``icnet_final.pth``, 417
entries). Three branches: full resolution (``conv_sub1``, three stride-2 convs), half resolution
(ResNet stem → ``layer2``) and quarter resolution (``layer3``, ``layer4``, PSP on a downsampled
``layer2`` output), fused coarse → fine by two cascade feature fusion units.

The raw :class:`ICNet` takes Caffe-style input (BGR, 0..255, mean-subtracted, not scaled) and returns the
original's list ``[full-res, 1/4, 1/8 aux, 1/16 aux]``; :class:`ICNetSegmentation` converts ImageNet-
normalised RGB to that and returns the full-resolution logits at the input size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprolib.backends.base import IMAGENET_MEAN, IMAGENET_STD, FrozenWrapper, SegmentationBackend, check_image_batch
from reprolib.backends.keyed import load_checkpoint_state_dict, load_strict, unwrap_state_dict
from reprolib.io import PathLike

NAME = "icnet"
NUM_CLASSES = 19
#: BGR mean SynBoost's inference script subtracts (``prediction_test_different_size.py``)
BGR_MEAN = (103.939, 116.779, 123.68)
#: BGR mean Fast_Seg trained with (``train_distribute.py``); ≤ 1 grey level from :data:`BGR_MEAN`
BGR_MEAN_TRAINING = (104.00698793, 116.66876762, 122.67891434)
PSP_SIZES = (1, 2, 3, 6)


def _resize(x: torch.Tensor, size: Sequence[int] | None = None, scale: float | None = None) -> torch.Tensor:
    # every resize in ICNet is bilinear with align_corners=True; with align_corners the sampling grid
    # depends only on the sizes, so scale_factor (as the original calls it) and size agree
    return F.interpolate(x, size=None if size is None else tuple(size), scale_factor=scale, mode="bilinear",
                         align_corners=True)


class ConvBnRelu(nn.Module):
    """Conv (no bias) + BatchNorm + optional ReLU, keys ``conv.weight`` / ``bn.*`` (Fast_Seg ``ConvBnRelu``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """ResNet bottleneck (stride on the 3×3 conv, padding = dilation), expansion 4."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _make_layer(in_channels: int, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != planes * Bottleneck.expansion:
        downsample = nn.Sequential(nn.Conv2d(in_channels, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
    layers = [Bottleneck(in_channels, planes, stride, dilation, downsample)]
    layers += [Bottleneck(planes * 4, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class PSPModule(nn.Module):
    """Pyramid pooling: per size s, AdaptiveAvgPool(s) → 1×1 conv → BN (no ReLU) → upsample; concat with the
    input ([s1, s2, s3, s6, feats]) → 3×3 conv + BN + ReLU (+ Dropout2d(0.1), identity in eval)."""

    def __init__(self, in_channels: int = 2048, out_channels: int = 512, sizes: Sequence[int] = PSP_SIZES):
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(in_channels, out_channels, 1, bias=False),
                          nn.BatchNorm2d(out_channels))
            for s in sizes
        ])
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + len(sizes) * out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.Dropout2d(0.1),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        size = feats.shape[2:]
        priors = [_resize(stage(feats), size=size) for stage in self.stages] + [feats]
        return self.bottleneck(torch.cat(priors, dim=1))


class PSPBackbone(nn.Module):
    """Deep-stem dilated ResNet-50 (output stride 8) + PSP head; ICNet calls its parts, not ``forward``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = _make_layer(128, 64, 3)
        self.layer2 = _make_layer(256, 128, 4, stride=2)
        self.layer3 = _make_layer(512, 256, 6, dilation=2)
        self.layer4 = _make_layer(1024, 512, 3, dilation=4)
        self.head = PSPModule(2048, 512, PSP_SIZES)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1..3 (+BN, ReLU) and the ceil-mode max-pool: stride 4."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.maxpool(x)


class CascadeFeatureFusion(nn.Module):
    """CFF unit: upsample ``x_low`` to ``x_high``'s size, 3×3 dil-2 conv + BN; 1×1 conv + BN on ``x_high``;
    returns (ReLU(low + high), aux logits of the low branch *before* the sum)."""

    def __init__(self, low_channels: int, high_channels: int, out_channels: int, num_classes: int):
        super().__init__()
        self.conv_low = nn.Sequential(nn.Conv2d(low_channels, out_channels, 3, padding=2, dilation=2, bias=False),
                                      nn.BatchNorm2d(out_channels))
        self.conv_high = nn.Sequential(nn.Conv2d(high_channels, out_channels, 1, bias=False),
                                       nn.BatchNorm2d(out_channels))
        self.conv_low_cls = nn.Conv2d(out_channels, num_classes, 1, bias=False)

    def forward(self, x_low: torch.Tensor, x_high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.conv_low(_resize(x_low, size=x_high.shape[2:]))
        high = self.conv_high(x_high)
        return F.relu(low + high), self.conv_low_cls(low)


class ICHead(nn.Module):
    """Fusion head: cff_24 (1/16 + 1/8), cff_12 (→ + 1/8 full-res branch), 1×1 classifier at 1/4."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.cff_12 = CascadeFeatureFusion(128, 64, 128, num_classes)
        self.cff_24 = CascadeFeatureFusion(256, 256, 128, num_classes)
        self.conv_cls = nn.Conv2d(128, num_classes, 1, bias=False)

    def forward(self, x_sub1: torch.Tensor, x_sub2: torch.Tensor, x_sub4: torch.Tensor) -> list[torch.Tensor]:
        x_cff_24, x_24_cls = self.cff_24(x_sub4, x_sub2)
        x_cff_12, x_12_cls = self.cff_12(x_cff_24, x_sub1)
        up_x2 = self.conv_cls(_resize(x_cff_12, scale=2))
        up_x8 = _resize(up_x2, scale=4)
        return [up_x8, up_x2, x_12_cls, x_24_cls]


class ICNet(nn.Module):
    """ICNet as Fast_Seg builds it with ``icnet(num_classes=19)``.

    ``forward(x)``: Caffe-style BGR (B,3,H,W), 0..255 minus :data:`BGR_MEAN`, returns
    ``[out0 (full res, from 1/4 ×4), out1 (1/4), out2 (cff_12 aux, 1/8), out3 (cff_24 aux, 1/16)]``;
    SynBoost uses ``out0``. Sizes follow the original's rounding (stride-2 convs round up, the ceil-mode
    pool can give odd sizes, ×0.5 resizes round down), so ``out0`` equals H×W only for H, W divisible by 8.
    """

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv_sub1 = nn.Sequential(
            ConvBnRelu(3, 32, 3, stride=2, padding=1), ConvBnRelu(32, 32, 3, stride=2, padding=1),
            ConvBnRelu(32, 64, 3, stride=2, padding=1),
        )
        self.backbone = PSPBackbone()
        self.head = ICHead(num_classes)
        self.conv_sub4 = ConvBnRelu(512, 256, 1)
        self.conv_sub2 = ConvBnRelu(512, 256, 1)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x_sub1 = self.conv_sub1(x)
        bb = self.backbone
        x_sub2_out = bb.layer2(bb.layer1(bb.stem(_resize(x, scale=0.5))))
        x_sub4 = bb.head(bb.layer4(bb.layer3(_resize(x_sub2_out, scale=0.5))))
        return self.head(x_sub1, self.conv_sub2(x_sub2_out), self.conv_sub4(x_sub4))


def build_meta() -> ICNet:
    """An ICNet on the ``meta`` device (no memory, no init): for layouts and fast strict loading."""
    with torch.device("meta"):
        return ICNet(NUM_CLASSES)


def from_original_state_dict(state_dict: Mapping[str, torch.Tensor]) -> ICNet:
    """ICNet (eval mode, CPU) from the published bare state dict.

    Also accepts ``{"state_dict": ...}`` and a DataParallel ``module.`` prefix. Loads strictly: a missing,
    unexpected or mis-shaped key raises ``ValueError`` naming them.
    """
    sd = unwrap_state_dict(state_dict)
    return load_strict(build_meta(), sd, NAME).eval()


def imagenet_to_caffe_bgr(image: torch.Tensor, bgr_mean: Sequence[float] = BGR_MEAN) -> torch.Tensor:
    """ImageNet-normalised RGB (B,3,H,W) → BGR on the 0..255 scale minus ``bgr_mean`` (ICNet's input)."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    bgr_mean_t = torch.tensor(tuple(bgr_mean), device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    rgb255 = (image * std + mean) * 255
    return rgb255.flip(1) - bgr_mean_t


class ICNetSegmentation(FrozenWrapper, SegmentationBackend):
    """:class:`SegmentationBackend` adapter: ImageNet-normalised RGB → ICNet's full-resolution logits,
    bilinearly resized (align_corners=True, as SynBoost) to the input size when they differ.

    ``bgr_mean``: the mean subtracted after the RGB→BGR 0..255 conversion; :data:`BGR_MEAN` is what
    SynBoost's script uses, :data:`BGR_MEAN_TRAINING` what Fast_Seg trained with. The net stays in eval mode.
    """

    name = NAME
    output_settings = ("bgr_mean",)  # hashed into precompute's cache key with the weights

    def __init__(self, net: ICNet, bgr_mean: Sequence[float] = BGR_MEAN):
        super().__init__()
        if len(tuple(bgr_mean)) != 3:
            raise ValueError(f"bgr_mean needs 3 values (B, G, R), got {bgr_mean!r}")
        self.net = net.eval()
        self.bgr_mean = tuple(float(v) for v in bgr_mean)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image_batch(image)
        logits = self.net(imagenet_to_caffe_bgr(image, self.bgr_mean))[0]
        if logits.shape[2:] != image.shape[2:]:
            logits = _resize(logits, size=image.shape[2:])
        return logits


def load_segmentation(path: PathLike, bgr_mean: Sequence[float] = BGR_MEAN) -> ICNetSegmentation:
    """Adapter around the checkpoint at ``path`` (``weights_only=True``; strict; eval mode)."""
    sd = load_checkpoint_state_dict(path)
    net = load_strict(build_meta(), sd, NAME, source=path).eval()
    return ICNetSegmentation(net, bgr_mean)
