"""Test helpers for the dissimilarity core: the original fixture inputs and keyed weights (spec §8)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from _make_keyed import keyed_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "dissimilarity"
IMAGENET_MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
VARIANT_NAMES = {"main": "ours_prior_spadedecoder", "baseline": "baseline_no_priors"}


def state_dict_entries(variant_key: str) -> list[tuple[str, list[int]]]:
    """(key, shape) of every entry of an original variant, from the fixture JSON."""
    data = json.loads((FIXTURES / "original-dissimilarity-state-dicts.json").read_text())
    return [(k, shape) for k, shape, *_ in data["variants"][variant_key]]


def keyed_original_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """The keyed weights of ``variant`` ("main" | "baseline") under the original key names."""
    return keyed_state_dict(state_dict_entries(VARIANT_NAMES[variant]))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def original_inputs(h: int = 256, w: int = 512) -> dict[str, torch.Tensor]:
    """The fixture inputs, rebuilt from the recipe in ``original-dissimilarity-inputs.json``."""
    rgb = torch.rand(1, 3, h, w, generator=_gen(1001))
    rgb = (rgb * 255).round() / 255
    noise = torch.rand(1, 3, h, w, generator=_gen(1002))
    rgb_s = ((0.5 * rgb + 0.5 * noise) * 255).round() / 255
    coarse = torch.randint(0, 20, (1, 1, h // 16, w // 16), generator=_gen(1003))
    labels = coarse.repeat_interleave(16, dim=2).repeat_interleave(16, dim=3)[:, 0]
    semantic = torch.nn.functional.one_hot(labels, 20)[..., :19].permute(0, 3, 1, 2).float()
    maps = {
        name: torch.randint(0, 256, (1, 1, h, w), generator=_gen(seed)).float() / 255
        for name, seed in (("entropy", 1004), ("perceptual", 1005), ("distance", 1006))
    }
    return {
        "original": (rgb - IMAGENET_MEAN) / IMAGENET_STD,
        "synthesis": (rgb_s - IMAGENET_MEAN) / IMAGENET_STD,
        "semantic": semantic,
        **maps,
    }


def expected_logits(variant: str) -> torch.Tensor:
    """The original's keyed logits (1,2,256,512)."""
    return torch.load(FIXTURES / f"original-logits-{variant}-keyed.pt", weights_only=True)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max over elements of |out − ref| / (|ref| + std(ref)): per-element relative error with a floor of one
    standard deviation (so near-zero logits do not blow it up). The fixture tests require ≤ 1e-4; fp32 CPU
    reaches ~2e-5 (the same as a float64 run of our model against their fp32 numbers)."""
    return float(((out - ref).abs() / (ref.abs() + ref.std())).max())
