"""Test-wide settings: offline logging, no downloads, quiet progress bars."""

from __future__ import annotations

import os

# Never touch the network from a test: WandB offline, no hub downloads, and an empty torch cache so
# pretrained-weight loading takes its documented "not found → warning + random init" path.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402


@pytest.fixture
def tf32_at_convolutions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether TF32 was allowed (``reprolib.precision.tf32_allowed``) at each 2-D convolution of the test, which
    starts from PyTorch's default (cuDNN may use TF32) and gets the process's settings back afterwards."""
    import torch

    from reprolib.precision import tf32_allowed

    seen: list[bool] = []
    real = F.conv2d

    def recording(*args, **kwargs) -> torch.Tensor:  # noqa: ANN002, ANN003
        seen.append(tf32_allowed())
        return real(*args, **kwargs)

    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = True
    monkeypatch.setattr(F, "conv2d", recording)
    yield seen
    torch.backends.cudnn.allow_tf32 = cudnn
    torch.set_float32_matmul_precision(matmul)
