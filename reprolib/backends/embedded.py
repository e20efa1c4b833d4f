"""Small trainable backends for the embedded world: a segmentation net and a conditional generator.

They stand in for DeepWV3Plus / ICNet (segmentation) and CC-FPSE / SPADE (resynthesis) when no real
checkpoint is given. Each comes in two strengths so the backend-swap tables (report Tables 6 and 8)
compare a better and a worse network, as the original vs. light pipelines do:

* ``strong`` — wider, a dilated context stage and a skip connection (DeepLabV3+-like in miniature);
* ``light``  — narrower, no context stage, no skip (ICNet/SPADE "light" in spirit: coarser outputs).

Both implement the interfaces of :mod:`reprolib.backends.base`. Checkpoints are plain dicts
(``kind``, ``config``, ``state_dict``) that load with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from reprolib.backends.base import ResynthesisBackend, SegmentationBackend, check_image_batch
from reprolib.io import PathLike, ReprolibDataError, load_torch, save_torch
from reprolib.models.layout import conv_layout, match_weight_layout

#: Cityscapes labelIds 0..33 plus the unused slot 34, as CC-FPSE / SPADE's ``label_nc = 35``.
NUM_LABEL_IDS = 35
STRENGTHS = ("strong", "light")


@dataclass(frozen=True)
class SegmentationConfig:
    """Shape of :class:`EmbeddedSegmentation`."""

    width: int = 32
    context: bool = True  # dilated stage at 1/8 (bigger receptive field)
    skip: bool = True  # 1/4-resolution skip into the decoder (sharper boundaries)
    num_classes: int = 19


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of :class:`EmbeddedGenerator`."""

    width: int = 32
    levels: int = 3  # number of stride-2 stages of the U-Net
    skip: bool = True


SEGMENTATION_CONFIGS = {
    "strong": SegmentationConfig(width=32, context=True, skip=True),
    "light": SegmentationConfig(width=8, context=False, skip=False),
}
GENERATOR_CONFIGS = {
    "strong": GeneratorConfig(width=32, levels=3, skip=True),
    "light": GeneratorConfig(width=8, levels=2, skip=False),
}


def _linear_weights(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of PyTorch's ``align_corners=False`` linear resize (interpolating the identity)."""
    eye = torch.eye(n_in, dtype=torch.float32, device=like.device)[None]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T


class _BilinearResize(torch.autograd.Function):
    """Forward: ``F.interpolate(bilinear)`` itself (same numbers). Backward: two matmuls with the resize
    matrices, because ``upsample_bilinear2d_backward`` has no deterministic CUDA kernel and raises under
    ``torch.use_deterministic_algorithms(True)`` (PyTorch's "throws on CUDA" list)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # noqa: ANN001
        ctx.in_size = tuple(x.shape[-2:])
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        (h_in, w_in), (h_out, w_out) = ctx.in_size, tuple(grad.shape[-2:])
        a_h, a_w = _linear_weights(h_in, h_out, grad), _linear_weights(w_in, w_out, grad)
        return (a_h.T @ grad.float() @ a_w).to(grad.dtype), None


def resize_bilinear(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) whose gradient is deterministic on CUDA too."""
    return _BilinearResize.apply(x, tuple(int(v) for v in size))


def _check_strength(strength: str) -> str:
    if strength not in STRENGTHS:
        raise ValueError(f"unknown strength {strength!r}; expected one of {STRENGTHS}")
    return strength


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Module:
    return Conv2dNormActivation(
        cin, cout, kernel_size=3, stride=stride, dilation=dilation, norm_layer=nn.BatchNorm2d
    )


class EmbeddedSegmentation(SegmentationBackend):
    """Tiny encoder–decoder: ImageNet-normalised RGB (B,3,H,W) → 19 logits (B,19,H,W)."""

    def __init__(self, config: SegmentationConfig | None = None, name: str = "embedded-strong"):
        super().__init__()
        self.config = config or SegmentationConfig()
        self.name = name
        w = self.config.width
        self.stem = nn.Sequential(_block(3, w, stride=2), _block(w, w))  # 1/2
        self.down4 = nn.Sequential(_block(w, 2 * w, stride=2), _block(2 * w, 2 * w))  # 1/4
        self.down8 = nn.Sequential(_block(2 * w, 4 * w, stride=2), _block(4 * w, 4 * w))  # 1/8
        self.context = (
            nn.Sequential(_block(4 * w, 4 * w, dilation=2), _block(4 * w, 4 * w, dilation=4))
            if self.config.context
            else nn.Identity()
        )
        dec_in = 4 * w + (w if self.config.skip else 0)
        self.skip_proj = Conv2dNormActivation(2 * w, w, kernel_size=1) if self.config.skip else None
        self.decoder = nn.Sequential(_block(dec_in, 2 * w), nn.Conv2d(2 * w, self.config.num_classes, 1))
        self.num_classes = self.config.num_classes

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits at the input resolution (bilinear upsampling from 1/4)."""
        check_image_batch(image)
        h, w = image.shape[-2:]
        fmt = conv_layout(image.device)  # NHWC on CPU, as the generator (reprolib.models.layout)
        match_weight_layout(self, fmt)
        image = image.contiguous(memory_format=fmt)
        f4 = self.down4(self.stem(image))
        f8 = self.context(self.down8(f4))
        x = resize_bilinear(f8, f4.shape[-2:])
        if self.skip_proj is not None:
            x = torch.cat([x, self.skip_proj(f4)], dim=1)
        logits = self.decoder(x)
        return resize_bilinear(logits, (h, w)).contiguous()


def label_edges(label_ids: torch.Tensor) -> torch.Tensor:
    """(B,H,W) ids → (B,1,H,W) float edge map: 1 where a 4-neighbour has a different id (CC-FPSE style)."""
    if label_ids.ndim != 3:
        raise ValueError(f"expected label ids (B,H,W), got shape {tuple(label_ids.shape)}")
    edge = torch.zeros_like(label_ids, dtype=torch.bool)
    dh = label_ids[:, 1:, :] != label_ids[:, :-1, :]
    dw = label_ids[:, :, 1:] != label_ids[:, :, :-1]
    edge[:, 1:, :] |= dh
    edge[:, :-1, :] |= dh
    edge[:, :, 1:] |= dw
    edge[:, :, :-1] |= dw
    return edge.unsqueeze(1).float()


def label_input(label_ids: torch.Tensor) -> torch.Tensor:
    """(B,H,W) labelIds → (B,36,H,W): one-hot over 35 labelIds + edge channel (the ``semantic_nc 36`` input)."""
    if label_ids.ndim != 3:
        raise ValueError(f"expected label ids (B,H,W), got shape {tuple(label_ids.shape)}")
    if label_ids.dtype.is_floating_point:
        raise ValueError(f"label ids must be an integer tensor, got {label_ids.dtype}")
    ids = label_ids.long()
    # ids outside the Cityscapes table (e.g. 255 or -1) are 'unlabeled' (0) for the generator
    ids = torch.where((ids >= 0) & (ids < NUM_LABEL_IDS), ids, torch.zeros_like(ids))
    onehot = F.one_hot(ids, NUM_LABEL_IDS).permute(0, 3, 1, 2).float()
    return torch.cat([onehot, label_edges(ids)], dim=1)


class EmbeddedGenerator(ResynthesisBackend):
    """Small U-Net generator: labelIds (B,H,W) → RGB (B,3,H,W) in [0,1]. Deterministic; ignores ``image``."""

    def __init__(self, config: GeneratorConfig | None = None, name: str = "embedded-strong"):
        super().__init__()
        self.config = config or GeneratorConfig()
        self.name = name
        w, levels = self.config.width, self.config.levels
        chans = [w * min(2**i, 4) for i in range(levels + 1)]
        self.inc = nn.Sequential(_block(NUM_LABEL_IDS + 1, chans[0]), _block(chans[0], chans[0]))
        self.downs = nn.ModuleList(
            nn.Sequential(_block(chans[i], chans[i + 1], stride=2), _block(chans[i + 1], chans[i + 1]))
            for i in range(levels)
        )
        self.ups = nn.ModuleList(
            _block(chans[i + 1] + (chans[i] if self.config.skip else 0), chans[i])
            for i in reversed(range(levels))
        )
        self.out = nn.Conv2d(chans[0], 3, kernel_size=1)

    def forward(self, label_ids: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """RGB in [0,1] at the size of ``label_ids``; ``image`` is accepted for interface parity only."""
        x = label_input(label_ids.to(self.out.weight.device))
        fmt = conv_layout(x.device)  # NHWC on CPU: 1.3–1.46× on a training step (reprolib.models.layout)
        match_weight_layout(self, fmt)
        x = x.to(self.out.weight.dtype).contiguous(memory_format=fmt)
        feats = [self.inc(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        y = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1]), strict=True):
            y = resize_bilinear(y, skip.shape[-2:])
            if self.config.skip:
                y = torch.cat([y, skip], dim=1)
            y = up(y)
        return torch.sigmoid(self.out(y)).contiguous()


def build_segmentation(strength: str = "strong", seed: int = 0) -> EmbeddedSegmentation:
    """Untrained embedded segmentation net of the given strength, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        # nn initialisers draw from the global RNG; the fork keeps the caller's state untouched
        torch.manual_seed(seed)
        return EmbeddedSegmentation(SEGMENTATION_CONFIGS[_check_strength(strength)], name=f"embedded-{strength}")


def build_generator(strength: str = "strong", seed: int = 0) -> EmbeddedGenerator:
    """Untrained embedded generator of the given strength, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EmbeddedGenerator(GENERATOR_CONFIGS[_check_strength(strength)], name=f"embedded-{strength}")


def save_embedded(model: EmbeddedSegmentation | EmbeddedGenerator, path: PathLike) -> None:
    """Write ``model`` as a ``weights_only``-loadable dict (kind, name, config, state_dict), atomically."""
    kind = "segmentation" if isinstance(model, EmbeddedSegmentation) else "resynthesis"
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_torch({"kind": kind, "name": model.name, "config": asdict(model.config), "state_dict": state}, path)


def _load(path: PathLike, kind: str) -> dict:
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or not {"kind", "config", "state_dict"} <= set(ckpt):
        raise ReprolibDataError(path, "not an embedded-backend checkpoint (needs kind, config, state_dict)")
    if ckpt["kind"] != kind:
        raise ReprolibDataError(path, f"holds a {ckpt['kind']} backend, expected {kind}")
    return ckpt


def _restore(model: nn.Module, ckpt: dict, path: PathLike) -> None:
    if not isinstance(ckpt["state_dict"], Mapping):
        raise ReprolibDataError(path, f"its state_dict is a {type(ckpt['state_dict']).__name__}, not a mapping of "
                                      "parameter names to tensors")
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ReprolibDataError(path, f"weights do not fit the stored config ({exc})") from None
    model.eval()


def load_embedded_segmentation(path: PathLike) -> EmbeddedSegmentation:
    """Load a segmentation checkpoint written by :func:`save_embedded` (eval mode, CPU)."""
    ckpt = _load(path, "segmentation")
    try:
        model = EmbeddedSegmentation(SegmentationConfig(**ckpt["config"]), name=str(ckpt.get("name", "embedded")))
    except TypeError as exc:
        raise ReprolibDataError(path, f"bad config {ckpt['config']!r} ({exc})") from None
    _restore(model, ckpt, path)
    return model


def load_embedded_resynthesis(path: PathLike) -> EmbeddedGenerator:
    """Load a generator checkpoint written by :func:`save_embedded` (eval mode, CPU)."""
    ckpt = _load(path, "resynthesis")
    try:
        model = EmbeddedGenerator(GeneratorConfig(**ckpt["config"]), name=str(ckpt.get("name", "embedded")))
    except TypeError as exc:
        raise ReprolibDataError(path, f"bad config {ckpt['config']!r} ({exc})") from None
    _restore(model, ckpt, path)
    return model


def module_fingerprint(module: nn.Module) -> str:
    """Short content hash of a module's class and state dict (weights and buffers), for cache keys.

    A backend may override the weights' part by setting a ``fingerprint`` string attribute (e.g. a checkpoint
    file hash). Plain attributes that change the output but live outside the state dict are named in its
    ``output_settings`` (e.g. V's layer weights, CC-FPSE's noise seed) and always hashed too.
    """
    settings = "".join(f"{n}={getattr(module, n)!r};" for n in getattr(module, "output_settings", ()))
    given = getattr(module, "fingerprint", None)
    if isinstance(given, str) and given:
        return hashlib.sha256(f"{given};{settings}".encode()).hexdigest()[:16] if settings else given
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    h.update(settings.encode())
    for key, value in module.state_dict().items():
        h.update(key.encode())
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def checkpoint_path(run_dir: PathLike, strength: str, kind: str) -> Path:
    """Where :func:`reprolib.training.embedded_backends.train_embedded_backends` puts a final checkpoint."""
    if kind not in ("segmentation", "resynthesis"):
        raise ValueError(f"kind must be 'segmentation' or 'resynthesis', got {kind!r}")
    return Path(run_dir) / _check_strength(strength) / f"{kind}.pt"
