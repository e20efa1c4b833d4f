"""Training and evaluation of the dissimilarity network on PyTorch Lightning.

Exports load lazily (PEP 562): ``reprolib.training.config`` — what a command line needs to check its
arguments — imports without Lightning, so a bad argument is reported in a second, not after Lightning loads.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RUNTIME_KEYS": "config", "ConfigError": "config", "TrainConfig": "config", "load_config": "config",
    "DissimilarityDataModule": "data", "StepBatches": "data", "enet_class_weights": "data",
    "DissimilarityModule": "module",
    "find_resume_checkpoint": "run", "load_trained": "run", "train": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reprolib.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"reprolib.training.{_EXPORTS[name]}"), name)
