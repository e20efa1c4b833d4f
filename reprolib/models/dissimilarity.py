"""The spatial-aware dissimilarity network (spec §1) and every variant the report's tables use.

Data flow per pyramid level ℓ (finest first):

    fused_ℓ = conv1×1([enc(original)_ℓ, enc(synthesis)_ℓ, sem_ℓ])          (§1.5 steps 1–2)
    fused_ℓ = fused_ℓ · unc_ℓ           if uncertainty maps are used       (§1.5 step 3, "gating")
    level_ℓ = [corr_ℓ, fused_ℓ]         if correlation                     (§1.5 step 4)

then four decoder blocks, coarse to fine, each on ``[upsampled, level_ℓ]`` (§1.6), and a 1×1 head (§1.7).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn

from reprolib.data.formats import UNCERTAINTY_MAPS

from .blocks import ACTIVATIONS, ConvEncoder, DecoderBlock, default_init_, feature_correlation, scaled
from .encoders import build_encoder
from .layout import conv_layout, match_weight_layout, to_layout

ENCODERS = ("vgg16", "resnet18", "resnet101")

_FUSED = (64, 128, 256, 512)  # 1×1-conv outputs per level (= VGG16 channels at width 1)
_SEMANTIC = (32, 64, 128, 256)  # semantic-encoder channels (§1.4)
_DECODER = (256, 256, 128, 64)  # decoder-block channels, coarse to fine (§1.6)


@dataclass(frozen=True)
class DissimilarityConfig:
    """Which dissimilarity network to build. Defaults = the paper's main model ("ours").

    * ``encoder``: ``"vgg16"`` | ``"resnet18"`` | ``"resnet101"`` (shared by original and synthesis).
    * ``activation``: decoder activation, ``"selu"`` | ``"relu"``.
    * ``semantic``: feed the semantic-map encoder into the fusion. ``correlation``: prepend the correlation
      channel. ``spade_decoder``: SPADE blocks as the decoder's second conv (conditioned on the semantic map).
    * ``uncertainty``: gate the fused features with the uncertainty-map encoder (the "prior").
      ``uncertainty_maps`` selects which maps it sees (Table 7 ablation). Omitted maps are **dropped**: the
      encoder's first conv takes only the kept maps (in the order entropy, perceptual, distance); the forward
      still accepts the omitted ones and ignores them. Dropping is equivalent to retraining with that input
      zeroed, without dead weights.
    * ``width``: multiplier on every layer's channels, encoder included (1.0 = the paper).
    * ``pretrained``: ImageNet weights for the encoder (True = local torch cache, a path, or False).
    * ``seed``: all random initialisation is drawn from ``torch.Generator().manual_seed(seed)``.

    Unlike the original (spec bug #10), ``uncertainty=True`` works with ``semantic=False``.
    """

    encoder: str = "vgg16"
    activation: str = "selu"
    semantic: bool = True
    correlation: bool = True
    uncertainty: bool = True
    uncertainty_maps: tuple[str, ...] = UNCERTAINTY_MAPS
    spade_decoder: bool = True
    width: float = 1.0
    num_classes: int = 19
    pretrained: bool | str | os.PathLike = True
    seed: int = 0
    spade_hidden: int = field(default=128, repr=False)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        maps = tuple(self.uncertainty_maps)
        unknown = [m for m in maps if m not in UNCERTAINTY_MAPS]
        if unknown or len(set(maps)) != len(maps):
            raise ValueError(f"uncertainty_maps must be distinct names from {UNCERTAINTY_MAPS}, got {maps}")
        if self.uncertainty and not maps:
            raise ValueError("uncertainty=True needs at least one map in uncertainty_maps (or set uncertainty=False)")
        # keep the original channel order whatever order the user lists the maps in
        object.__setattr__(self, "uncertainty_maps", tuple(m for m in UNCERTAINTY_MAPS if m in maps))
        if not (self.width > 0):
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    @classmethod
    def main(cls, **overrides: object) -> DissimilarityConfig:
        """The published main variant: uncertainty gating + SPADE decoder (``DissimNetPrior``)."""
        return replace(cls(), **overrides)

    @classmethod
    def baseline(cls, **overrides: object) -> DissimilarityConfig:
        """The baseline: no uncertainty maps, plain decoder (``DissimNet``)."""
        return replace(cls(uncertainty=False, spade_decoder=False), **overrides)

    def to_dict(self) -> dict:
        """Plain dict (for logging / YAML)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["uncertainty_maps"] = list(self.uncertainty_maps)
        out["pretrained"] = out["pretrained"] if isinstance(out["pretrained"], bool) else str(out["pretrained"])
        return out


class DissimilarityNet(nn.Module):
    """Spatial-aware dissimilarity network. ``forward`` returns logits (B,2,H,W); channel 1 = anomaly.

    Inputs: ``original``, ``synthesis`` (B,3,H,W) ImageNet-normalised; ``semantic`` (B,num_classes,H,W) one-hot
    (void all-zero); ``entropy``, ``perceptual``, ``distance`` (B,1,H,W) in [0,1] — required when
    ``config.uncertainty`` and listed in ``config.uncertainty_maps``. H, W must be divisible by 8 (VGG) or 32
    (ResNet).
    """

    def __init__(self, config: DissimilarityConfig | None = None):
        super().__init__()
        cfg = config or DissimilarityConfig()
        self.config = cfg
        w = cfg.width
        resnet = cfg.encoder != "vgg16"
        self.encoder = build_encoder(cfg.encoder, w, cfg.pretrained)
        enc_ch = self.encoder.channels
        fused = tuple(scaled(c, w) for c in _FUSED)
        sem = tuple(scaled(c, w) for c in _SEMANTIC)
        dec = tuple(scaled(c, w) for c in _DECODER)
        stem = 4 if resnet else 1
        self.semantic_encoder = (
            ConvEncoder(cfg.num_classes, sem, batch_norm=resnet, stem_stride=stem) if cfg.semantic else None
        )
        self.uncertainty_encoder = (
            ConvEncoder(len(cfg.uncertainty_maps), fused, batch_norm=resnet, stem_stride=stem)
            if cfg.uncertainty
            else None
        )
        self.fuse = nn.ModuleList(
            nn.Conv2d(2 * enc_ch[i] + (sem[i] if cfg.semantic else 0), fused[i], 1) for i in range(4)
        )
        corr = 1 if cfg.correlation else 0
        spade_nc = cfg.num_classes if cfg.spade_decoder else None
        hidden = scaled(cfg.spade_hidden, w)
        blocks = []
        prev = 0
        for j in range(4):  # coarse (level 4) to fine (level 1)
            blocks.append(
                DecoderBlock(
                    prev + fused[3 - j] + corr,
                    dec[j],
                    activation=cfg.activation,
                    spade_label_nc=spade_nc,
                    spade_hidden=hidden,
                    upsample=j < 3,
                    fp32_input=cfg.correlation,
                )
            )
            prev = dec[j]
        self.decoder = nn.ModuleList(blocks)
        if resnet:
            # ResNet pyramids stop at ¼ resolution: two more ×2 transposed convs, as ResNetDissimNet (§1.10).
            self.upsample = nn.Sequential(
                nn.ConvTranspose2d(dec[3], dec[3], 2, stride=2),
                nn.ConvTranspose2d(dec[3], max(1, dec[3] // 2), 2, stride=2),
            )
            head_in = max(1, dec[3] // 2)
        else:
            self.upsample = None
            head_in = dec[3]
        self.head = nn.Conv2d(head_in, 2, 1)
        self.divisor = 32 if resnet else 8
        #: encode original and synthesis in one batched pass when exact (see :meth:`encode_images`)
        self.joint_encoding = True
        #: run the convolutions on NHWC activations: ``None`` = on CPU only (see :meth:`memory_format`)
        self.channels_last: bool | None = None
        self.reset_parameters(cfg.seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """Re-initialise every layer from ``seed`` (encoder: ImageNet weights when configured and found)."""
        g = torch.Generator().manual_seed(int(seed))
        default_init_(self, g)
        for enc in (self.semantic_encoder, self.uncertainty_encoder):
            if enc is not None:
                enc.init_weights(g)
        self.encoder.init_weights(g)

    def _check_inputs(
        self,
        original: torch.Tensor,
        synthesis: torch.Tensor,
        semantic: torch.Tensor | None,
        maps: dict[str, torch.Tensor | None],
    ) -> None:
        cfg = self.config
        if original.ndim != 4 or original.shape[1] != 3:
            raise ValueError(f"original must be (B,3,H,W), got {tuple(original.shape)}")
        if synthesis.shape != original.shape:
            raise ValueError(f"synthesis shape {tuple(synthesis.shape)} != original shape {tuple(original.shape)}")
        b, _, h, w = original.shape
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"H and W must be divisible by {self.divisor} for encoder {cfg.encoder}, got {h}x{w}")
        if cfg.semantic or cfg.spade_decoder:
            if semantic is None or tuple(semantic.shape) != (b, cfg.num_classes, h, w):
                got = None if semantic is None else tuple(semantic.shape)
                want = (b, cfg.num_classes, h, w)
                raise ValueError(f"semantic must be a one-hot (B,num_classes,H,W) = {want} tensor, got {got}")
        if cfg.uncertainty:
            for name in cfg.uncertainty_maps:
                m = maps[name]
                if m is None:
                    raise ValueError(f"this model uses the uncertainty map {name!r}; pass {name}=(B,1,H,W) tensor")
                if tuple(m.shape) != (b, 1, h, w):
                    raise ValueError(f"{name} must be (B,1,H,W)=({b},1,{h},{w}), got {tuple(m.shape)}")

    def memory_format(self, device: torch.device) -> torch.memory_format:
        """Activation layout for a forward on ``device``: :func:`reprolib.models.layout.conv_layout` unless
        ``channels_last`` is set (True / False)."""
        if self.channels_last is None:
            return conv_layout(device)
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def encode_images(self, original: torch.Tensor, synthesis: torch.Tensor) -> tuple[list, list]:
        """Encoder features of both images. One batched pass when batch statistics cannot mix them
        (no BatchNorm, or eval mode): same numbers, one kernel launch sequence instead of two."""
        if self.joint_encoding and (not self.encoder.has_batch_norm or not self.training):
            feats = self.encoder(torch.cat((original, synthesis), dim=0))
            # split, not two slices: its backward writes both halves' gradients in one cat, where each slice's
            # zero-fills a full-size tensor and the two are then added (same gradients, bit for bit; 2.5 % of a
            # width-1 training step, 5.6 % of a demo one)
            halves = [f.split(original.shape[0]) for f in feats]
            return [h[0] for h in halves], [h[1] for h in halves]
        return self.encoder(original), self.encoder(synthesis)

    def forward(
        self,
        original: torch.Tensor,
        synthesis: torch.Tensor,
        semantic: torch.Tensor | None,
        entropy: torch.Tensor | None = None,
        perceptual: torch.Tensor | None = None,
        distance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B,2,H,W), channel 1 = anomaly (no softmax)."""
        cfg = self.config
        maps = {"entropy": entropy, "perceptual": perceptual, "distance": distance}
        self._check_inputs(original, synthesis, semantic, maps)
        fmt = self.memory_format(original.device)
        match_weight_layout(self, fmt)
        original, synthesis, semantic = to_layout(fmt, original, synthesis, semantic)
        feats_o, feats_s = self.encode_images(original, synthesis)
        feats_sem = self.semantic_encoder(semantic.to(original.dtype)) if self.semantic_encoder is not None else None
        feats_unc = None
        if self.uncertainty_encoder is not None:
            stacked = torch.cat([maps[n].to(original.dtype) for n in cfg.uncertainty_maps], dim=1)
            stacked = stacked.contiguous(memory_format=fmt)  # (B,1,H,W) parts are NCHW to torch.cat
            feats_unc = self.uncertainty_encoder(stacked)

        # Each level as its parts [corr, fused]; the decoder concatenates [upsampled, corr, fused] in one copy.
        levels: list[list[torch.Tensor]] = []
        for i in range(4):
            parts = [feats_o[i], feats_s[i]] + ([feats_sem[i]] if feats_sem is not None else [])
            fused = self.fuse[i](torch.cat(parts, dim=1))
            if feats_unc is not None:
                fused = fused * feats_unc[i]
            corr = []
            if cfg.correlation:
                c = feature_correlation(feats_o[i], feats_s[i])  # fp32, also under autocast
                if torch.is_autocast_enabled(c.device.type):  # fp32 level: the decoder block takes it in fp32
                    fused = fused.float()
                else:
                    c = c.to(fused.dtype)
                # a one-channel map has ambiguous strides; give it NHWC ones or torch.cat falls back to NCHW
                corr = [c.to(memory_format=fmt)]
            levels.append(corr + [fused])
        del feats_o, feats_s, feats_sem, feats_unc

        segmap = semantic if cfg.spade_decoder else None
        x = self.decoder[0](_cat(levels[3]), segmap)
        for j in range(1, 4):
            x = self.decoder[j](_cat([x] + levels[3 - j]), segmap)
        if self.upsample is not None:
            x = self.upsample(x)
        return self.head(x).contiguous()


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Channel concatenation in the parts' memory format (no copy for a single part)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in module.parameters())
