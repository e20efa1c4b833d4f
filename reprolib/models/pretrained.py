"""ImageNet weights for the encoders, from the local torch cache or a user path — never a download.

torchvision stores its ImageNet checkpoints as ``$TORCH_HOME/hub/checkpoints/<file>`` (``torch.hub.get_dir()``).
We look there for the file names torchvision uses (or any ``<arch>-*.pth`` beside them) or take an explicit
path. If nothing is found we warn (once per load attempt) and the caller keeps its random init.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from reprolib.io import ReprolibDataError, load_torch

#: torchvision's file names for the ImageNet weights we use (current and older releases).
TORCHVISION_FILES: dict[str, tuple[str, ...]] = {
    "vgg16": ("vgg16-397923af.pth",),
    "vgg19": ("vgg19-dcbb9e9d.pth",),
    "resnet18": ("resnet18-f37072fd.pth", "resnet18-5c106cde.pth"),
    "resnet101": ("resnet101-cd907fc2.pth", "resnet101-63fe2227.pth", "resnet101-5d3b4d8f.pth"),
}

def checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's own rule for where downloads are cached)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_imagenet_checkpoint(arch: str) -> Path | None:
    """Path of a cached torchvision ImageNet checkpoint for ``arch``, or None."""
    if arch not in TORCHVISION_FILES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(TORCHVISION_FILES)}")
    folder = checkpoint_dir()
    for name in TORCHVISION_FILES[arch]:
        if (folder / name).is_file():
            return folder / name
    matches = sorted(folder.glob(f"{arch}-*.pth")) if folder.is_dir() else []
    return matches[0] if matches else None


def load_imagenet_state_dict(arch: str, pretrained: bool | str | os.PathLike = True) -> dict[str, torch.Tensor] | None:
    """The torchvision ImageNet state dict of ``arch`` (keys as in ``torchvision.models.<arch>()``).

    ``pretrained``: False → None; True → look in the torch cache; a path → that file (must exist).
    Returns None, after one ``UserWarning``, when the cache has no such file.
    """
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True:
        path = find_imagenet_checkpoint(arch)
        if path is None:
            warnings.warn(
                f"ImageNet weights for {arch} not found in {checkpoint_dir()} (expected "
                f"{TORCHVISION_FILES[arch][0]}); using random initialisation. Put the torchvision file "
                "there or pass pretrained=<path>.",
                UserWarning,
                stacklevel=3,
            )
            return None
    else:
        path = Path(pretrained)
    state = load_torch(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ReprolibDataError(path, "not a state dict of tensors")
    return state


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with a message naming ``source`` and the mismatching keys/shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' …' if len(missing) > 8 else ''}")
        if extra:
            parts.append(f"unexpected keys {extra[:8]}{' …' if len(extra) > 8 else ''}")
        if bad:
            parts.append(
                "shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:8])
            )
        raise ReprolibDataError(source, "; ".join(parts))
    module.load_state_dict(state, strict=True)
