"""Building blocks of the dissimilarity network (spec §1.4–§1.7): SPADE, the small conv encoder used for
the semantic map and the uncertainty maps, decoder blocks, the correlation channel, deterministic init.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("selu", "relu")


def scaled(channels: int, width: float) -> int:
    """``channels × width`` rounded, at least 1 (the width multiplier applied to every layer)."""
    return max(1, int(round(channels * width)))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class _CpuSELU(torch.autograd.Function):
    """SELU from ``exp`` instead of ``expm1``, in place like the original's ``nn.SELU(inplace=True)``.

    PyTorch's CPU ``elu`` kernel calls a scalar ``expm1`` per element: 6.7 ms for 4×8×128×256 values on 2 cores
    where ``exp`` takes 0.4 ms, which made SELU ~10 % of a demo training step. ``exp(x) − 1`` differs from
    ``expm1(x)`` by at most ~1e-7 in absolute terms (cancellation near 0); the backward is PyTorch's own
    ``elu_backward`` on the result, as ``nn.SELU`` does. In place, as the original: one scratch buffer per call
    instead of three fresh full-resolution ones.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        # scale·max(x, 0) + scale·alpha·(exp(min(x, 0)) − 1): each term is exactly 0 where the other applies,
        # so no torch.where (itself 2.4 ms here)
        negative = x.clamp(max=0).exp_().sub_(1).mul_(_SELU_ALPHA * _SELU_SCALE)
        out = x.clamp_(min=0).mul_(_SELU_SCALE).add_(negative)
        ctx.mark_dirty(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        (out,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, _SELU_ALPHA, _SELU_SCALE, 1.0, True, out)


class SELU(nn.Module):
    """``nn.SELU`` with a faster CPU path (:class:`_CpuSELU`); other devices use PyTorch's kernel in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            # a leaf that requires grad cannot change in place (nn.SELU(inplace=True) raises there)
            return _CpuSELU.apply(x.clone() if x.is_leaf and x.requires_grad else x)
        return F.selu(x, inplace=True)


def make_activation(name: str) -> nn.Module:
    """SELU (the paper's choice) or ReLU (the report's ablation)."""
    if name == "selu":
        return SELU()
    if name == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def feature_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_c a[c]·b[c] → (B,1,H,W): the original's unnormalised correlation channel (spec §1.5).

    Computed in fp32 with autocast off: the values reach ~1e3–1e5, past fp16's 65504. A product and a channel
    sum (the original's own formula), not ``einsum``: on CPU einsum turns this into a batched matmul of H·W tiny
    1×C·C×1 products (thousands of small copies per forward).
    """
    with torch.autocast(device_type=a.device.type, enabled=False):
        return (a.float() * b.float()).sum(dim=1, keepdim=True)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient in the default (NCHW) layout."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return grad.contiguous()


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``F.instance_norm`` without affine, whatever the layout of the gradient that comes back.

    PyTorch 2.14's instance_norm backward is wrong for a batch of one when the incoming gradient is
    channels-last (off by O(1); measured against float64, see ``tests/test_layout.py``), which is what the
    NHWC path hands it. For one sample the gradient is turned NCHW first (one copy); larger batches and NCHW
    gradients are computed right and pass as they are. Not ``F.batch_norm`` with batch statistics, which is
    the same normalisation for one sample and keeps NHWC: its channels-last CPU kernel loses precision on
    features with a large mean (2e-2 against instance_norm's 9e-4 at mean 1e4), which moved the fidelity
    fixtures' logits by 2 %.
    """
    out = F.instance_norm(x, eps=eps)
    return _ContiguousGrad.apply(out) if x.shape[0] == 1 and x.requires_grad else out


class SPADE(nn.Module):
    """Spatially-adaptive normalisation (Park et al. 2019) as in the original ``normalization.SPADE``.

    ``InstanceNorm(x)·(1 + γ(s)) + β(s)`` with γ, β predicted by a 3×3 conv stack from the one-hot segmap
    ``s`` (nearest-resized to x's size).
    """

    def __init__(self, channels: int, label_nc: int, hidden: int = 128):
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = instance_norm(x, eps=1e-5)
        if segmap.shape[-2:] != x.shape[-2:]:
            segmap = F.interpolate(segmap, size=x.shape[-2:], mode="nearest")
        h = self.embed(segmap.to(x.dtype))
        return torch.addcmul(self.beta(h), normalized, 1 + self.gamma(h))


class SPADEConvBlock(nn.Module):
    """SPADE → act → conv 3×3 → SPADE → act (the original ``SPADEDecoderLayer``)."""

    def __init__(self, channels: int, label_nc: int, activation: str = "selu", hidden: int = 128):
        super().__init__()
        self.norm1 = SPADE(channels, label_nc, hidden)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = SPADE(channels, label_nc, hidden)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        if segmap.shape[-2:] != x.shape[-2:]:  # resize once for both SPADEs (the conv keeps the size)
            segmap = F.interpolate(segmap, size=x.shape[-2:], mode="nearest")
        x = self.act(self.norm1(x, segmap))
        x = self.conv(x)
        return self.act(self.norm2(x, segmap))


class DecoderBlock(nn.Module):
    """Conv A (3×3) + act → Conv B (plain 3×3 + act, or a SPADE block) → optional ×2 transposed conv.

    No activation after the transposed conv, as in the original (spec §1.6). ``fp32_input``: Conv A runs in
    fp32 even under autocast (its input holds the unnormalised correlation channel, which fp16 cannot hold).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        activation: str = "selu",
        spade_label_nc: int | None = None,
        spade_hidden: int = 128,
        upsample: bool = True,
        fp32_input: bool = False,
    ):
        super().__init__()
        self.fp32_input = fp32_input
        self.conv_a = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.act = make_activation(activation)
        self.spade = spade_label_nc is not None
        if self.spade:
            self.conv_b: nn.Module = SPADEConvBlock(channels, spade_label_nc, activation, spade_hidden)
        else:
            self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.up = nn.ConvTranspose2d(channels, channels, 2, stride=2) if upsample else None

    def forward(self, x: torch.Tensor, segmap: torch.Tensor | None = None) -> torch.Tensor:
        if self.fp32_input and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                x = self.conv_a(x.float())
        else:
            x = self.conv_a(x)
        x = self.act(x)
        if self.spade:
            if segmap is None:
                raise ValueError("a SPADE decoder block needs the semantic map")
            x = self.conv_b(x, segmap)
        else:
            x = self.act(self.conv_b(x))
        return self.up(x) if self.up is not None else x


class ConvEncoder(nn.Module):
    """The original ``SemanticEncoder`` (spec §1.4): four conv stages, channels doubling, scales ×1, ½, ¼, ⅛.

    Stage 0 is a 7×7 conv (stride 1), stages 1–3 are 3×3 stride-2 convs, each followed by ReLU. With
    ``stem_stride=4`` (ResNet encoders) stage 0 uses stride 2 plus a 3×3 max-pool so the outputs align with a
    ResNet's ¼…1/32 pyramid; ``batch_norm`` puts a BatchNorm between conv and ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        *,
        batch_norm: bool = False,
        stem_stride: int = 1,
    ):
        super().__init__()
        if stem_stride not in (1, 4):
            raise ValueError(f"stem_stride must be 1 or 4, got {stem_stride}")
        stages = []
        prev = in_channels
        for i, c in enumerate(channels):
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            if i == 0:
                layers["conv"] = nn.Conv2d(prev, c, 7, stride=1 if stem_stride == 1 else 2, padding=3)
            else:
                layers["conv"] = nn.Conv2d(prev, c, 3, stride=2, padding=1)
            if batch_norm:
                layers["bn"] = nn.BatchNorm2d(c)
            layers["act"] = nn.ReLU(inplace=True)
            if i == 0 and stem_stride == 4:
                layers["pool"] = nn.MaxPool2d(3, stride=2, padding=1)
            stages.append(nn.Sequential(layers))
            prev = c
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def init_weights(self, generator: torch.Generator) -> None:
        """kaiming-normal (fan_out, relu) convs, zero biases — ``SemanticEncoder._initialize_weights``."""
        for m in self.modules():
            if getattr(m, "weight", None) is not None and m.weight.is_meta:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def default_init_(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default init for conv / transposed conv / linear layers, drawn from ``generator``.

    Re-implemented here only so that a model is a pure function of its seed (no global RNG).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.weight
            if w.is_meta:
                continue
            fan_in = w.shape[1] * math.prod(w.shape[2:])
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            # kaiming_uniform_(a=√5) ≡ U(−1/√fan_in, 1/√fan_in), the torch default
            with torch.no_grad():
                w.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None and not m.weight.is_meta:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
