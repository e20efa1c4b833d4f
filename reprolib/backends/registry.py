"""Backends by name, and the named segmentation + resynthesis combos of the report (Tables 6 and 8).

Real backends need the user's checkpoints; they are looked up, in order, from the ``checkpoints`` mapping
passed to the getter, then from environment variables (``REPROLIB_CKPT_DEEPWV3PLUS``, ``…_ICNET``,
``…_CCFPSE_GENERATOR``, ``…_CCFPSE_ENCODER``, ``…_SPADE_GENERATOR``). Embedded backends come from a run
directory of :func:`reprolib.training.embedded_backends.train_embedded_backends` (``embedded_dir=`` or
``REPROLIB_EMBEDDED_DIR``). The registry only loads; training (on first use) is the pipeline's job.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reprolib.backends.base import ResynthesisBackend, SegmentationBackend
from reprolib.backends.embedded import (
    build_generator,
    build_segmentation,
    checkpoint_path,
    load_embedded_resynthesis,
    load_embedded_segmentation,
)
from reprolib.io import PathLike, ReprolibDataError
from reprolib.weights import CHECKPOINT_ENV, check_checkpoint_names  # noqa: F401 (CHECKPOINT_ENV re-exported)

SEGMENTATION_NAMES = ("deepwv3plus", "icnet", "embedded-strong", "embedded-light")
RESYNTHESIS_NAMES = ("ccfpse", "spade", "embedded-strong", "embedded-light")

#: combo name → (segmentation backend, resynthesis backend)
COMBOS: dict[str, tuple[str, str]] = {
    "original": ("deepwv3plus", "ccfpse"),
    "light": ("icnet", "spade"),
    "moderate1": ("deepwv3plus", "spade"),
    "moderate2": ("icnet", "ccfpse"),
    "embedded": ("embedded-strong", "embedded-strong"),
    "embedded-light": ("embedded-light", "embedded-light"),
    "embedded-moderate1": ("embedded-strong", "embedded-light"),
    "embedded-moderate2": ("embedded-light", "embedded-strong"),
}

EMBEDDED_DIR_ENV = "REPROLIB_EMBEDDED_DIR"

#: original state-dict name → (module under reprolib.backends, whether its converter takes the name)
_ORIGINAL_CONVERTERS: dict[str, tuple[str, bool]] = {
    "deepwv3plus": ("deepwv3plus", False),
    "icnet": ("icnet", False),
    "ccfpse-generator": ("ccfpse", True),
    "ccfpse-encoder": ("ccfpse", True),
    "spade-generator": ("spade", True),
}
ORIGINAL_STATE_DICT_NAMES = tuple(_ORIGINAL_CONVERTERS)


def _checkpoint(key: str, checkpoints: Mapping[str, PathLike] | None, required: bool = True) -> Path | None:
    """Resolve a real-backend checkpoint path from the mapping or the environment (a misspelt name in the mapping
    is an error: looked up by its right name, the weight would be missing, or silently left out when optional)."""
    check_checkpoint_names(checkpoints or {})
    value = (checkpoints or {}).get(key) or os.environ.get(CHECKPOINT_ENV[key])
    if not value:
        if not required:
            return None
        raise ValueError(
            f"missing checkpoint {key!r}: pass checkpoints={{'{key}': PATH}} or set ${CHECKPOINT_ENV[key]} "
            "(real backends need the published weights; use an 'embedded*' backend to run without them)"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        raise ReprolibDataError(path, f"checkpoint {key!r} not found")
    return path


def _embedded_file(strength: str, kind: str, checkpoint: PathLike | None, embedded_dir: PathLike | None) -> Path:
    if checkpoint is not None:
        return Path(checkpoint)
    run_dir = embedded_dir or os.environ.get(EMBEDDED_DIR_ENV)
    if not run_dir:
        raise ValueError(
            f"embedded backend needs its trained weights: pass embedded_dir=RUN_DIR (from "
            f"train_embedded_backends; --embedded-dir in python -m reprolib evaluate), checkpoint=FILE, or set "
            f"${EMBEDDED_DIR_ENV}; or untrained=True"
        )
    path = checkpoint_path(run_dir, strength, kind)
    if not path.is_file():
        raise ReprolibDataError(path, f"embedded {strength} {kind} checkpoint not found (train it first: "
                                      "reprolib.training.embedded_backends.train_embedded_backends)")
    return path


def _finish(model: torch.nn.Module, device: str | torch.device | None) -> Any:
    model.eval()
    return model.to(device) if device is not None else model


def get_segmentation(
    name: str,
    *,
    checkpoints: Mapping[str, PathLike] | None = None,
    checkpoint: PathLike | None = None,
    embedded_dir: PathLike | None = None,
    untrained: bool = False,
    device: str | torch.device | None = None,
) -> SegmentationBackend:
    """Segmentation backend by name (``SEGMENTATION_NAMES``), in eval mode.

    ``checkpoint`` overrides the file for this one backend; ``untrained=True`` builds an embedded net with
    random weights (tests, smoke runs).
    """
    if name in ("deepwv3plus", "icnet"):
        path = Path(checkpoint) if checkpoint is not None else _checkpoint(name, checkpoints)
        module = importlib.import_module(f"reprolib.backends.{name}")
        return _finish(module.load_segmentation(path), device)
    if name in ("embedded-strong", "embedded-light"):
        strength = name.split("-", 1)[1]
        if untrained:
            return _finish(build_segmentation(strength), device)
        path = _embedded_file(strength, "segmentation", checkpoint, embedded_dir)
        return _finish(load_embedded_segmentation(path), device)
    raise ValueError(f"unknown segmentation backend {name!r}; valid names: {', '.join(SEGMENTATION_NAMES)}")


def get_resynthesis(
    name: str,
    *,
    checkpoints: Mapping[str, PathLike] | None = None,
    checkpoint: PathLike | None = None,
    embedded_dir: PathLike | None = None,
    untrained: bool = False,
    device: str | torch.device | None = None,
) -> ResynthesisBackend:
    """Resynthesis backend by name (``RESYNTHESIS_NAMES``), in eval mode.

    CC-FPSE takes ``ccfpse-generator`` (required) and ``ccfpse-encoder`` (optional: without it the generator
    runs without the VAE style code); SPADE takes ``spade-generator``.
    """
    if name == "ccfpse":
        gen = Path(checkpoint) if checkpoint is not None else _checkpoint("ccfpse-generator", checkpoints)
        enc = _checkpoint("ccfpse-encoder", checkpoints, required=False)
        module = importlib.import_module("reprolib.backends.ccfpse")
        return _finish(module.load_resynthesis(gen, enc), device)
    if name == "spade":
        gen = Path(checkpoint) if checkpoint is not None else _checkpoint("spade-generator", checkpoints)
        module = importlib.import_module("reprolib.backends.spade")
        return _finish(module.load_resynthesis(gen), device)
    if name in ("embedded-strong", "embedded-light"):
        strength = name.split("-", 1)[1]
        if untrained:
            return _finish(build_generator(strength), device)
        path = _embedded_file(strength, "resynthesis", checkpoint, embedded_dir)
        return _finish(load_embedded_resynthesis(path), device)
    raise ValueError(f"unknown resynthesis backend {name!r}; valid names: {', '.join(RESYNTHESIS_NAMES)}")


#: the published weights each real backend loads (``checkpoints=`` names; CC-FPSE's encoder is optional)
_WEIGHTS_OF = {"deepwv3plus": ("deepwv3plus",), "icnet": ("icnet",), "ccfpse": ("ccfpse-generator",),
               "spade": ("spade-generator",)}


def check_combo_weights(name: str, checkpoints: Mapping[str, PathLike] | None = None) -> list[Path]:
    """The weight files combo ``name`` loads, each found (``checkpoints=`` or its ``REPROLIB_CKPT_*`` variable)
    and a file, without loading them: what a table checks before any work. Embedded combos need none."""
    if name not in COMBOS:
        raise ValueError(f"unknown combo {name!r}; valid names: {', '.join(COMBOS)}")
    return [_checkpoint(key, checkpoints) for backend in COMBOS[name] for key in _WEIGHTS_OF.get(backend, ())]


def get_combo(name: str, **kw: Any) -> tuple[SegmentationBackend, ResynthesisBackend]:
    """(segmentation, resynthesis) of a named combo in :data:`COMBOS`; ``kw`` goes to both getters
    (``checkpoint=`` is refused here because it would apply to both)."""
    if name not in COMBOS:
        raise ValueError(f"unknown combo {name!r}; valid names: {', '.join(COMBOS)}")
    if "checkpoint" in kw:
        raise ValueError("get_combo: use checkpoints={...} (one path per backend), not checkpoint=")
    seg_name, resyn_name = COMBOS[name]
    return get_segmentation(seg_name, **kw), get_resynthesis(resyn_name, **kw)


def from_original_state_dict(state_dict: Mapping[str, torch.Tensor], name: str) -> torch.nn.Module:
    """Build a real backend from an original (published) state dict.

    ``name`` ∈ ``ORIGINAL_STATE_DICT_NAMES``; dispatches to ``reprolib.backends.<module>.from_original_state_dict``.
    """
    if name not in _ORIGINAL_CONVERTERS:
        raise ValueError(f"unknown original state-dict name {name!r}; valid names: "
                         f"{', '.join(ORIGINAL_STATE_DICT_NAMES)}")
    module_name, takes_name = _ORIGINAL_CONVERTERS[name]
    module = importlib.import_module(f"reprolib.backends.{module_name}")
    if takes_name:
        return module.from_original_state_dict(state_dict, name)
    return module.from_original_state_dict(state_dict)
