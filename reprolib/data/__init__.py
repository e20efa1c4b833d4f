"""Datasets in their official formats, the processed-split layout, and the training-data generator.

``generate_training_data`` is imported lazily so that ``python -m reprolib.data.generator`` does not find
its own module already imported (runpy's RuntimeWarning).
"""

from typing import Any

from reprolib.data.cityscapes import CityscapesDataset
from reprolib.data.fishyscapes import LostAndFoundDataset, StaticDataset
from reprolib.data.processed import ProcessedSplit

__all__ = ["CityscapesDataset", "LostAndFoundDataset", "ProcessedSplit", "StaticDataset", "generate_training_data"]


def __getattr__(name: str) -> Any:
    if name == "generate_training_data":
        # lazy on purpose (module docstring): an eager import would make `python -m reprolib.data.generator`
        # find its own module already imported (runpy's RuntimeWarning)
        from reprolib.data.generator import generate_training_data

        return generate_training_data
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
