"""Original SynBoost checkpoint layout (spec §1.9) ↔ our :class:`DissimilarityNet` parameter names.

The mapping is an explicit prefix table (:func:`original_prefix_map`), applied both ways:
:func:`from_original_state_dict` loads a published ``best_net_*.pth`` (bare ``state_dict``, strict) and
:func:`to_original_state_dict` writes ours back in their names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from reprolib.io import ReprolibDataError, load_torch, state_dict_mismatch

from .dissimilarity import UNCERTAINTY_MAPS, DissimilarityConfig, DissimilarityNet

VARIANTS = ("main", "baseline")

# Decoder blocks coarse → fine: (conv A, conv B, transposed conv) names in the original (spec §1.6).
_DECODER_NAMES = (("conv1", "conv2", "tconv1"), ("conv12", "conv13", "tconv3"), ("conv3", "conv4", "tconv2"),
                  ("conv5", "conv6", None))
# 1×1 fusion convs, finest level first (spec §1.5).
_FUSE_NAMES = ("conv10", "conv9", "conv8", "conv7")


def variant_config(variant: str) -> DissimilarityConfig:
    """Config of a published checkpoint: ``"main"`` (DissimNetPrior, SPADE decoder) or ``"baseline"``."""
    if variant == "main":
        return DissimilarityConfig.main(pretrained=False)
    if variant == "baseline":
        return DissimilarityConfig.baseline(pretrained=False)
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def original_prefix_map(config: DissimilarityConfig) -> list[tuple[str, str]]:
    """``(original prefix, our prefix)`` pairs covering every parameter of a VGG16 model with ``config``."""
    if config.encoder != "vgg16":
        raise ValueError("the original checkpoint layout exists only for the VGG16 encoder")
    if config.uncertainty and config.uncertainty_maps != UNCERTAINTY_MAPS:
        raise ValueError("the original layout has all three uncertainty maps")
    pairs: list[tuple[str, str]] = []
    for k in range(4):
        pairs.append((f"vgg_encoder.layer{k + 1}.", f"encoder.stages.{k}."))
    encoders = [("semantic_encoder", "semantic_encoder")] if config.semantic else []
    if config.uncertainty:
        encoders.append(("prior_encoder", "uncertainty_encoder"))
    for theirs, ours in encoders:
        for i in range(4):
            pairs.append((f"{theirs}.hidden_layers.{i}.0.", f"{ours}.stages.{i}.conv."))
    for i, name in enumerate(_FUSE_NAMES):
        pairs.append((f"{name}.", f"fuse.{i}."))
    for j, (conv_a, conv_b, tconv) in enumerate(_DECODER_NAMES):
        pairs.append((f"{conv_a}.0.", f"decoder.{j}.conv_a."))
        if config.spade_decoder:
            for n in ("norm1", "norm2"):
                pairs.append((f"{conv_b}.{n}.shared.0.", f"decoder.{j}.conv_b.{n}.embed.0."))
                pairs.append((f"{conv_b}.{n}.gamma.", f"decoder.{j}.conv_b.{n}.gamma."))
                pairs.append((f"{conv_b}.{n}.beta.", f"decoder.{j}.conv_b.{n}.beta."))
            pairs.append((f"{conv_b}.conv.", f"decoder.{j}.conv_b.conv."))
        else:
            pairs.append((f"{conv_b}.0.", f"decoder.{j}.conv_b."))
        if tconv is not None:
            pairs.append((f"{tconv}.", f"decoder.{j}.up."))
    pairs.append(("conv11.", "head."))
    return pairs


def _translate(key: str, pairs: list[tuple[str, str]], reverse: bool) -> str | None:
    # Prefixes end with "." so "conv1." never matches "conv12.…"; the longest match wins for nested ones.
    best: tuple[str, str] | None = None
    for theirs, ours in pairs:
        src, dst = (ours, theirs) if reverse else (theirs, ours)
        if key.startswith(src) and (best is None or len(src) > len(best[0])):
            best = (src, dst)
    return None if best is None else best[1] + key[len(best[0]):]


def to_original_state_dict(model: DissimilarityNet) -> dict[str, torch.Tensor]:
    """Our model's ``state_dict`` under the original key names (loads into ``DissimNet[Prior]``)."""
    pairs = original_prefix_map(model.config)
    out = {}
    for key, value in model.state_dict().items():
        theirs = _translate(key, pairs, reverse=True)
        if theirs is None:
            raise ValueError(f"no original name for parameter {key!r}")
        out[theirs] = value
    return out


def _original_keys(variant: str) -> list[str]:
    with torch.device("meta"):
        model = DissimilarityNet(variant_config(variant))
    return list(to_original_state_dict(model))


def from_original_state_dict(
    state_dict: Mapping[str, torch.Tensor] | str | os.PathLike, variant: str = "main"
) -> DissimilarityNet:
    """Build a :class:`DissimilarityNet` (width 1.0, no ImageNet init) from an original checkpoint.

    ``state_dict``: the bare ``state_dict`` of ``DissimNetPrior`` (``variant="main"``) or ``DissimNet``
    (``"baseline"``), or a path to such a ``.pth`` (loaded with ``weights_only=True``). A ``module.`` prefix
    (DataParallel) is stripped. Loading is strict: a missing, unexpected or mis-shaped key raises
    ``ValueError`` (``ReprolibDataError`` for a file) naming the original keys.
    """
    source: str | os.PathLike | None = None
    if isinstance(state_dict, (str, os.PathLike)):
        source = state_dict
        state_dict = load_torch(state_dict)
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
            state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise ReprolibDataError(source, f"expected a state dict, got {type(state_dict).__name__}")
    if state_dict and all(isinstance(k, str) and k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}

    with torch.device("meta"):
        model = DissimilarityNet(variant_config(variant))
    pairs = original_prefix_map(model.config)
    expected = {_translate(k, pairs, reverse=True): (k, v.shape) for k, v in model.state_dict().items()}
    # non-string keys and non-tensor values are reported as unexpected / mis-shaped, not an AttributeError
    problem = state_dict_mismatch(state_dict, {k: tuple(shape) for k, (_, shape) in expected.items()})
    if problem is not None:
        msg = f"not an original {variant!r} dissimilarity checkpoint: {problem}"
        for other in VARIANTS:
            if other != variant and set(state_dict) == set(_original_keys(other)):
                msg += f" — the keys are those of the {other!r} variant; pass variant={other!r}"
        if source is not None:
            raise ReprolibDataError(source, msg)
        raise ValueError(msg)
    ours = {expected[k][0]: state_dict[k].detach().to(torch.float32) for k in expected}
    model = model.to_empty(device="cpu")
    model.load_state_dict(ours, strict=True, assign=False)
    return model

