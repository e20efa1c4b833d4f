"""Training and evaluation of the dissimilarity network on PyTorch Lightning."""

from reprolib.training.config import RUNTIME_KEYS, ConfigError, TrainConfig, load_config
from reprolib.training.data import DissimilarityDataModule, StepBatches, enet_class_weights
from reprolib.training.module import DissimilarityModule
from reprolib.training.run import find_resume_checkpoint, load_trained, train

__all__ = ["RUNTIME_KEYS", "ConfigError", "DissimilarityDataModule", "DissimilarityModule", "StepBatches", "TrainConfig",
           "enet_class_weights", "find_resume_checkpoint", "load_config", "load_trained", "train"]
