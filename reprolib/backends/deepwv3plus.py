"""DeepLabV3+ on a WideResNet38-A2 trunk (``DeepWV3Plus``): SynBoost's main-pipeline segmentation.

Written from the description in ``reference/backends/README.md`` §1 of NVIDIA's
``network/deepv3.py:DeepWV3Plus`` + ``network/wider_resnet.py:WiderResNetA2``; module names equal the
published checkpoint's keys (``cityscapes_best.pth``, 268 entries), so loading needs no renaming.

Input: ImageNet-normalised RGB (B,3,H,W); output: logits (B,19,H,W) at the input size. Any H, W work
(strided pools/convs round up). The Dropout2d layers of the trunk's bottlenecks (mod6 p=0.3, mod7 p=0.5)
are kept for train-mode fidelity; they hold no weights and are identity in eval.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reprolib.backends.base import FrozenWrapper, SegmentationBackend, check_image_batch
from reprolib.backends.keyed import load_checkpoint_state_dict, load_strict, unwrap_state_dict
from reprolib.io import PathLike

NAME = "deepwv3plus"
NUM_CLASSES = 19
#: (blocks per stage mod2..mod7) of WiderResNet38-A2
STRUCTURE = (3, 3, 6, 3, 1, 1)
#: per stage mod2..mod7: block channels (2 = basic block, 3 = bottleneck)
CHANNELS = ((128, 128), (256, 256), (512, 512), (512, 1024), (512, 1024, 2048), (1024, 2048, 4096))
#: per stage mod2..mod7: (stride of block 1, dilation) of the dilated (output stride 8) trunk
STRIDE_DILATION = ((1, 1), (1, 1), (2, 1), (1, 2), (1, 4), (1, 4))
#: per stage mod2..mod7: Dropout2d probability inside the bottleneck blocks (identity in eval, no weights)
DROPOUT = (0.0, 0.0, 0.0, 0.0, 0.3, 0.5)
ASPP_RATES = (12, 24, 36)


def _bn_relu(channels: int) -> nn.Sequential:
    # Sequential so the keys read "<name>.0.weight" as in the checkpoint
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class IdentityResidualBlock(nn.Module):
    """Pre-activation residual block of WiderResNet-A2 (basic with 2 channels, bottleneck with 3).

    The projection shortcut (present when the stride or channel count changes) reads the BN-ReLU'd input;
    the identity shortcut reads the raw input.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], stride: int = 1, dilation: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        if len(channels) not in (2, 3):
            raise ValueError(f"channels must have 2 (basic) or 3 (bottleneck) entries, got {channels}")
        self.bn1 = _bn_relu(in_channels)
        d = dilation
        if len(channels) == 2:
            layers = [
                ("conv1", nn.Conv2d(in_channels, channels[0], 3, stride=stride, padding=d, dilation=d, bias=False)),
                ("bn2", _bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=d, dilation=d, bias=False)),
            ]
        else:
            layers = [
                ("conv1", nn.Conv2d(in_channels, channels[0], 1, stride=stride, bias=False)),
                ("bn2", _bn_relu(channels[0])),
                ("conv2", nn.Conv2d(channels[0], channels[1], 3, padding=d, dilation=d, bias=False)),
                ("bn3", _bn_relu(channels[1])),
                ("dropout", nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()),
                ("conv3", nn.Conv2d(channels[1], channels[2], 1, bias=False)),
            ]
        self.convs = nn.Sequential(OrderedDict(layers))
        self.proj_conv: nn.Conv2d | None = None
        if stride != 1 or in_channels != channels[-1]:
            self.proj_conv = nn.Conv2d(in_channels, channels[-1], 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(act)
        return self.convs(act) + shortcut


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepWV3Plus: [image pool, 1×1, r12, r24, r36] → 5·256 channels."""

    def __init__(self, in_channels: int = 4096, channels: int = 256, rates: Sequence[int] = ASPP_RATES):
        super().__init__()
        branches = [nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True))]
        for r in rates:
            branches.append(nn.Sequential(
                nn.Conv2d(in_channels, channels, 3, padding=r, dilation=r, bias=False), nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True)))
        self.features = nn.ModuleList(branches)
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = nn.Sequential(nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                      nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _upsample(self.img_conv(self.img_pooling(x)), x.shape[2:])
        return torch.cat([pooled] + [f(x) for f in self.features], dim=1)


class DeepWV3Plus(nn.Module):
    """DeepLabV3+ with the WideResNet38-A2 trunk (dilated, output stride 8), as SynBoost runs it.

    ``forward(x)``: ImageNet-normalised RGB (B,3,H,W) → logits (B,num_classes,H,W). The trunk keeps only
    ``mod1..mod7`` (no ``bn_out``: ASPP sees the raw residual sum); the decoder fuses ASPP with the stride-2
    ``mod2`` output, so it runs at half the input resolution.
    """

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.mod1 = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(3, 64, 3, padding=1, bias=False))]))
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        stages = zip(STRUCTURE, CHANNELS, STRIDE_DILATION, DROPOUT, strict=True)
        for i, (n_blocks, channels, (stride, dilation), p_drop) in enumerate(stages):
            blocks = []
            for b in range(n_blocks):
                block = IdentityResidualBlock(in_ch, channels, stride if b == 0 else 1, dilation, p_drop)
                blocks.append((f"block{b + 1}", block))
                in_ch = channels[-1]
            self.add_module(f"mod{i + 2}", nn.Sequential(OrderedDict(blocks)))
        self.aspp = ASPP(in_ch, 256, ASPP_RATES)
        self.bot_fine = nn.Conv2d(128, 48, 1, bias=False)
        self.bot_aspp = nn.Conv2d(256 * (len(ASPP_RATES) + 2), 256, 1, bias=False)
        self.final = nn.Sequential(
            nn.Conv2d(48 + 256, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1, bias=False),
        )
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        m2 = self.mod2(self.pool2(self.mod1(x)))
        t = self.mod3(self.pool3(m2))
        t = self.mod7(self.mod6(self.mod5(self.mod4(t))))
        aspp = _upsample(self.bot_aspp(self.aspp(t)), m2.shape[2:])
        logits = self.final(torch.cat([self.bot_fine(m2), aspp], dim=1))
        return _upsample(logits, size)


def build_meta() -> DeepWV3Plus:
    """A DeepWV3Plus on the ``meta`` device (no memory, no init): for layouts and fast strict loading."""
    with torch.device("meta"):
        return DeepWV3Plus(NUM_CLASSES)


def from_original_state_dict(state_dict: Mapping[str, torch.Tensor]) -> DeepWV3Plus:
    """DeepWV3Plus (eval mode, CPU) from the published state dict.

    Accepts the bare dict or the checkpoint wrapper ``{"state_dict": ...}``, with or without the
    DataParallel ``module.`` prefix. Loads strictly: a missing, unexpected or mis-shaped key raises
    ``ValueError`` naming them (the original's ``forgiving_state_restore`` silently skipped them).
    """
    sd = unwrap_state_dict(state_dict)
    return load_strict(build_meta(), sd, NAME).eval()


class DeepWV3PlusSegmentation(FrozenWrapper, SegmentationBackend):
    """:class:`SegmentationBackend` adapter: ImageNet-normalised RGB → 19 logits at the input size.

    The network takes exactly this input, so the adapter only freezes it in eval mode (BatchNorm must use
    the checkpoint's running statistics, also when a caller puts the pipeline in train mode).
    """

    name = NAME

    def __init__(self, net: DeepWV3Plus):
        super().__init__()
        self.net = net.eval()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        check_image_batch(image)
        return self.net(image)


def load_segmentation(path: PathLike) -> DeepWV3PlusSegmentation:
    """Adapter around the published checkpoint at ``path`` (``weights_only=True``; strict; eval mode)."""
    sd = load_checkpoint_state_dict(path)
    net = load_strict(build_meta(), sd, NAME, source=path).eval()
    return DeepWV3PlusSegmentation(net)
