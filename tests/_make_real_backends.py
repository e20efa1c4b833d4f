"""Shared helpers for the real-backend tests (DeepWV3Plus, ICNet): fixture files copied from the reference
(``tests/fixtures/backends/``), keyed networks, fixture inputs and strict-loading probes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _make_keyed as keyed
import torch

from reprolib.data.transforms import imagenet_normalize

FIXTURES = Path(__file__).parent / "fixtures" / "backends"


def layout(name: str) -> list[keyed.LayoutEntry]:
    """Published checkpoint layout ``<name>-state-dict.json``."""
    return keyed.read_layout(FIXTURES / f"{name}-state-dict.json")


def outputs(name: str) -> dict[str, Any]:
    """Recorded outputs ``<name>-outputs.json`` of the original network."""
    return json.loads((FIXTURES / f"{name}-outputs.json").read_text())


def zeros_state_dict(entries: list[keyed.LayoutEntry]) -> dict[str, torch.Tensor]:
    """A state dict with the layout's keys, shapes and dtypes (all zeros: cheap to build)."""
    return {e.key: torch.zeros(e.shape, dtype=torch.long if e.dtype == "int64" else torch.float32)
            for e in entries}


def imagenet_fixture_input(height: int, width: int) -> torch.Tensor:
    """The fixtures' quantised RGB image (seed 2001), ImageNet-normalised."""
    return imagenet_normalize(keyed.fixture_rgb(height, width))


def assert_matches(t: torch.Tensor, expected: dict[str, Any], tol: float = 1e-4) -> dict[str, float]:
    """Assert every std-relative difference to a recorded summary is ≤ ``tol``; returns them."""
    diffs = keyed.compare_to_summary(t, expected)
    assert set(diffs) >= {"samples", "mean", "std", "min", "max"}, diffs
    bad = {k: v for k, v in diffs.items() if not v <= tol}
    assert not bad, f"differs from the original beyond {tol}·std: {bad}"
    return diffs
