"""What deterministic training needs on CUDA besides ``torch.use_deterministic_algorithms(True)``."""

from __future__ import annotations

import os
import warnings

import torch

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = ":4096:8"


def prepare_cuda_determinism() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless the user set it (cuBLAS reads it when CUDA starts).

    Without it, every cuBLAS matmul raises under ``use_deterministic_algorithms(True)`` on CUDA ≥ 10.2.
    """
    if os.environ.get(CUBLAS_ENV):
        return
    os.environ[CUBLAS_ENV] = CUBLAS_DETERMINISTIC
    if torch.cuda.is_initialized():  # too late for handles already made: say so instead of failing later
        warnings.warn(f"CUDA was initialised before {CUBLAS_ENV} was set; set {CUBLAS_ENV}={CUBLAS_DETERMINISTIC} "
                      "before starting Python if cuBLAS raises under deterministic training", stacklevel=2)
