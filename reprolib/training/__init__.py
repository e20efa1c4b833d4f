"""Training and evaluation of the dissimilarity network on PyTorch Lightning."""

from reprolib.training.data import DissimilarityDataModule, StepBatches
from reprolib.training.module import DissimilarityModule
from reprolib.training.run import find_resume_checkpoint, load_trained, train

__all__ = ["DissimilarityDataModule", "DissimilarityModule", "StepBatches", "find_resume_checkpoint",
           "load_trained", "train"]
