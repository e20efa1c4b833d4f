"""Image encoders as feature pyramids: VGG16 (the paper's), VGG19 slices (perceptual difference),
ResNet18 / ResNet101 (the report's encoder ablation, spec §1.10).

All take a ``width`` multiplier (every conv's channels × width) and ``pretrained`` (True = torchvision's
ImageNet file from the local torch cache, a path, or False). Parameter names follow torchvision's layer
indices so ImageNet weights load by an explicit index map; pretrained weights need ``width == 1``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from reprolib.io import ReprolibDataError

from .blocks import scaled
from .pretrained import imagenet_state_and_path, load_into

#: torchvision ``features`` configurations ("M" = 2×2 max-pool).
_VGG_CFG = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
#: ``features`` index ranges of each pyramid level: relu1_2, relu2_2, relu3_3, relu4_3 (spec §1.3) and
#: relu1_1 … relu5_1 (spec §2.3).
VGG16_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23))
VGG19_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))

PretrainedArg = bool | str | os.PathLike


def _vgg_features(arch: str, width: float, end: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    prev = 3
    for v in _VGG_CFG[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            c = scaled(int(v), width)
            layers += [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU(inplace=True)]
            prev = c
    return layers[:end]


def _warn_width(arch: str) -> None:
    warnings.warn(
        f"ImageNet weights for {arch} need width=1.0; using random initialisation.", UserWarning, stacklevel=4
    )


def _imagenet_state(encoder: VGGPyramid | ResNetPyramid, pretrained: PretrainedArg) -> tuple[dict, str] | None:
    """(the torchvision ImageNet state dict for ``encoder``, its file as messages name it), or None where none
    applies (not asked, meta tensors, a width other than 1.0, no file)."""
    if not pretrained or any(p.is_meta for p in encoder.parameters()):
        return None
    if encoder.width != 1.0:
        _warn_width(encoder.arch)
        return None
    found = imagenet_state_and_path(encoder.arch, pretrained)
    return None if found is None else (found[0], f"{found[1]} ({encoder.arch} ImageNet weights)")


class VGGPyramid(nn.Module):
    """VGG ``features`` cut into slices; ``forward(x)`` returns each slice's output (finest first).

    ``stages[s][j]`` is torchvision's ``features[start_s + j]``. No layer is frozen here (the dissimilarity
    network fine-tunes its VGG16, spec §1.3); the perceptual module freezes its own copy.
    """

    def __init__(
        self,
        arch: str = "vgg16",
        slices: Sequence[tuple[int, int]] | None = None,
        width: float = 1.0,
        pretrained: PretrainedArg = False,
    ):
        super().__init__()
        if arch not in _VGG_CFG:
            raise ValueError(f"arch must be one of {sorted(_VGG_CFG)}, got {arch!r}")
        slices = tuple(slices or (VGG16_SLICES if arch == "vgg16" else VGG19_SLICES))
        layers = _vgg_features(arch, width, slices[-1][1])
        self.arch = arch
        self.slices = slices
        self.stages = nn.ModuleList(nn.Sequential(*layers[a:b]) for a, b in slices)
        channels, scales, scale, c = [], [], 1, 0
        for a, b in slices:
            for m in layers[a:b]:
                if isinstance(m, nn.MaxPool2d):
                    scale *= 2
                elif isinstance(m, nn.Conv2d):
                    c = m.out_channels
            channels.append(c)
            scales.append(scale)
        self.channels = tuple(channels)
        self.scales = tuple(scales)
        self.has_batch_norm = False
        self.width = width
        self._pretrained = pretrained

    def init_weights(self, generator: torch.Generator) -> None:
        """torchvision's VGG init (kaiming-normal fan_out, zero bias) from ``generator``, then ImageNet weights
        if requested and available."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)
        self.load_pretrained(self._pretrained)

    def torchvision_key_map(self) -> dict[str, str]:
        """Our parameter name → torchvision's (``features.<i>.weight``)."""
        out = {}
        for s, (a, _) in enumerate(self.slices):
            for j, m in enumerate(self.stages[s]):
                if isinstance(m, nn.Conv2d):
                    for p in ("weight", "bias"):
                        out[f"stages.{s}.{j}.{p}"] = f"features.{a + j}.{p}"
        return out

    def load_pretrained(self, pretrained: PretrainedArg) -> bool:
        """Load torchvision ImageNet weights; returns whether any were loaded."""
        found = _imagenet_state(self, pretrained)
        if found is None:
            return False
        state, source = found
        absent = [theirs for theirs in self.torchvision_key_map().values() if theirs not in state]
        if absent:  # named as torchvision names them: the user's file is a torchvision one, or meant to be
            raise ReprolibDataError(source, f"not torchvision's {self.arch}: {len(absent)} of its keys missing "
                                            f"(first: {', '.join(absent[:4])})")
        load_into(self, {ours: state[theirs] for ours, theirs in self.torchvision_key_map().items()}, source=source)
        return True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


_RESNET = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet101": (Bottleneck, (3, 4, 23, 3))}


class ResNetPyramid(nn.Module):
    """torchvision-layout ResNet (``conv1``, ``bn1``, ``layer1..4``) returning layer1…layer4 outputs
    (scales ¼ … 1/32). Built from torchvision's ``BasicBlock`` / ``Bottleneck`` with widths × ``width``."""

    def __init__(self, arch: str = "resnet18", width: float = 1.0, pretrained: PretrainedArg = False):
        super().__init__()
        if arch not in _RESNET:
            raise ValueError(f"arch must be one of {sorted(_RESNET)}, got {arch!r}")
        block, counts = _RESNET[arch]
        self.arch = arch
        self.width = width
        self._pretrained = pretrained
        self.inplanes = scaled(64, width)
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, scaled(64, width), counts[0], 1)
        self.layer2 = self._make_layer(block, scaled(128, width), counts[1], 2)
        self.layer3 = self._make_layer(block, scaled(256, width), counts[2], 2)
        self.layer4 = self._make_layer(block, scaled(512, width), counts[3], 2)
        self.channels = tuple(scaled(c, width) * block.expansion for c in (64, 128, 256, 512))
        self.scales = (4, 8, 16, 32)
        self.has_batch_norm = True

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def init_weights(self, generator: torch.Generator) -> None:
        """torchvision's ResNet init from ``generator``, then ImageNet weights if requested and available."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm2d) and not m.weight.is_meta:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.load_pretrained(self._pretrained)

    def load_pretrained(self, pretrained: PretrainedArg) -> bool:
        """Load torchvision ImageNet weights (``fc.*`` dropped); returns whether any were loaded."""
        found = _imagenet_state(self, pretrained)
        if found is None:
            return False
        state, source = found
        # Older torchvision files lack the BN counters; they do not affect the forward pass.
        counters = {k: v for k, v in self.state_dict().items() if k.endswith("num_batches_tracked")}
        state = {**counters, **{k: v for k, v in state.items() if not k.startswith("fc.")}}
        load_into(self, state, source)  # ResNetPyramid's keys are torchvision's (the fc layer aside)
        return True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def build_encoder(name: str, width: float = 1.0, pretrained: PretrainedArg = False) -> VGGPyramid | ResNetPyramid:
    """``"vgg16"`` → 4-level VGG16 pyramid (scales 1…⅛); ``"resnet18"`` / ``"resnet101"`` → ResNet pyramid."""
    if name == "vgg16":
        return VGGPyramid("vgg16", VGG16_SLICES, width, pretrained)
    if name in _RESNET:
        return ResNetPyramid(name, width, pretrained)
    raise ValueError(f"encoder must be one of ('vgg16', 'resnet18', 'resnet101'), got {name!r}")
