"""ImageNet weights for the encoders, from the local torch cache or a user path — never a download.

torchvision stores its ImageNet checkpoints as ``$TORCH_HOME/hub/checkpoints/<file>`` (``torch.hub.get_dir()``).
We look there for the file names torchvision uses (or any ``<arch>-*.pth`` beside them), or take an explicit
path (a ``pretrained=<path>`` argument, or ``$REPROLIB_<ARCH>_WEIGHTS``, e.g. ``$REPROLIB_VGG16_WEIGHTS``).
If nothing is found we warn (once per load attempt) and the caller keeps its random init — except where a
profile needs the real weights (``full``): :func:`require_imagenet_weights` refuses before any work.
:func:`describe_imagenet_weights` says, for result rows, which weights a run used.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from reprolib.io import ReprolibDataError, file_sha256, load_torch

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


def weights_env(arch: str) -> str:
    """The environment variable that may name ``arch``'s ImageNet file, e.g. ``REPROLIB_VGG16_WEIGHTS``."""
    return f"REPROLIB_{arch.upper()}_WEIGHTS"


def find_imagenet_checkpoint(arch: str) -> Path | None:
    """Path of ``arch``'s ImageNet checkpoint: ``$REPROLIB_<ARCH>_WEIGHTS`` if set (it must exist), else
    torchvision's file in the torch cache, else None."""
    if arch not in TORCHVISION_FILES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(TORCHVISION_FILES)}")
    given = os.environ.get(weights_env(arch))
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ReprolibDataError(path, f"${weights_env(arch)} names this file for the {arch} ImageNet weights, "
                                          "but it does not exist")
        return path
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
    found = imagenet_state_and_path(arch, pretrained)
    return None if found is None else found[0]


def imagenet_state_and_path(arch: str, pretrained: bool | str | os.PathLike = True,
                            ) -> tuple[dict[str, torch.Tensor], Path] | None:
    """:func:`load_imagenet_state_dict` and the file it read (for messages that name it)."""
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True:
        path = find_imagenet_checkpoint(arch)
        if path is None:
            warnings.warn(
                f"ImageNet weights for {arch} not found in {checkpoint_dir()} (expected "
                f"{TORCHVISION_FILES[arch][0]}); using random initialisation. Put the torchvision file "
                f"there, set ${weights_env(arch)}, or pass pretrained=<path>.",
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
    return state, path


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


#: what each ImageNet network is for (named in the refusal message)
ROLES = {"vgg16": "the dissimilarity network's encoder", "vgg19": "the perceptual difference map V",
         "resnet18": "the dissimilarity network's ResNet18 encoder (Figure 4)",
         "resnet101": "the dissimilarity network's ResNet101 encoder (Figure 4)"}


def expected_imagenet_path(arch: str) -> Path:
    """Where torchvision would cache ``arch``'s ImageNet file (the path named when it is missing)."""
    return checkpoint_dir() / TORCHVISION_FILES[arch][0]


def require_imagenet_weights(archs: tuple[str, ...] = ("vgg16", "vgg19"), profile: str = "full") -> dict[str, Path]:
    """The ImageNet file of each of ``archs``; raises :class:`ReprolibDataError` naming the exact file looked for,
    and how to provide it, when one is missing (``full`` must not silently train on random weights)."""
    found: dict[str, Path] = {}
    for arch in archs:
        path = find_imagenet_checkpoint(arch)
        if path is None:
            expected = expected_imagenet_path(arch)
            raise ReprolibDataError(
                expected,
                f"ImageNet weights for {arch} ({ROLES.get(arch, arch)}) not found; the {profile!r} profile will "
                f"not run on random weights. Put torchvision's {expected.name} in {expected.parent} "
                f"(i.e. under $TORCH_HOME/hub/checkpoints/), or set ${weights_env(arch)}=/path/to/{expected.name}",
            )
        found[arch] = path
    return found


def torchvision_sha_prefixes(arch: str) -> tuple[str, ...]:
    """The sha256 prefixes torchvision writes into its file names for ``arch`` (``vgg16-397923af.pth``)."""
    return tuple(name.rsplit("-", 1)[1].split(".")[0] for name in TORCHVISION_FILES[arch])


def imagenet_identity(arch: str, pretrained: bool | str | os.PathLike | None, width: float = 1.0) -> str | None:
    """What a training run's identity records of the ImageNet weights its ``arch`` encoder starts from: None where
    it starts from none (not asked, a width other than 1.0) or from torchvision's own file (its content matches the
    sha256 prefix in torchvision's file name: the weights every run so far was named with); ``"random"`` where they
    are asked for but no file is found (the loaders keep the seeded init); else ``"sha256:<16 hex>"`` of the file.
    So another file under ``$REPROLIB_<ARCH>_WEIGHTS`` (or the torch cache) trains another run instead of reusing
    one trained from other weights, and runs keep their names across machines (content, not path)."""
    if pretrained is False or pretrained is None or float(width) != 1.0:
        return None
    path = find_imagenet_checkpoint(arch) if pretrained is True else Path(pretrained)
    if path is None:
        return "random"
    if not path.is_file():
        return None  # a path given that is not there: building the encoder refuses it, naming the file
    digest = file_sha256(path)
    return None if digest.startswith(torchvision_sha_prefixes(arch)) else f"sha256:{digest[:16]}"


def describe_imagenet_weights(arch: str, pretrained: bool | str | os.PathLike | None, seed: int) -> str:
    """Which weights ``arch`` was built with, for result rows: ``"vgg16-397923af.pth sha256:397923af8e79"`` or
    ``"random (seed 0)"`` (not pretrained, or nothing found — the loaders then keep the seeded init)."""
    path: Path | None
    if pretrained is False or pretrained is None:
        path = None
    elif pretrained is True:
        path = find_imagenet_checkpoint(arch)
    else:
        path = Path(pretrained)
    if path is None or not path.is_file():
        return f"random (seed {int(seed)})"
    return f"{path.name} sha256:{file_sha256(path)[:12]}"
