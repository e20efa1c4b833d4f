"""Datasets in their official formats, the processed-split layout, and the training-data generator."""

from reprolib.data.cityscapes import CityscapesDataset
from reprolib.data.fishyscapes import LostAndFoundDataset, StaticDataset
from reprolib.data.generator import generate_training_data
from reprolib.data.processed import ProcessedSplit

__all__ = ["CityscapesDataset", "LostAndFoundDataset", "ProcessedSplit", "StaticDataset", "generate_training_data"]
