"""Memory layout of convolution inputs and weights: channels-last (NHWC) on CPU.

oneDNN, PyTorch's CPU convolution library, computes NHWC tensors natively; NCHW activations are reordered to
its blocked layout and back around every convolution, forward and backward, and NCHW weights are reordered on
every call. Measured on 2 cores (``benchmarks/dissimilarity.py``, ``benchmarks/README.md``): the embedded
generator's training step 1.3–1.46× faster, the dissimilarity network's forward 1.47–1.65× the original's
(1.09× before). Other devices keep
PyTorch's default layout (cuDNN chooses its own algorithms; the original ran NCHW there).

Only strides change: values, ``state_dict`` keys and checkpoints are the same numbers.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_layout(device: torch.device) -> torch.memory_format:
    """The activation layout for convolutions on ``device``: channels-last on CPU, contiguous elsewhere."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def match_weight_layout(module: nn.Module, fmt: torch.memory_format) -> None:
    """Store ``module``'s 4-D parameters (conv weights) in ``fmt``; a no-op once they are.

    In place on ``.data``, so an optimiser's references stay valid and its state (created lazily with
    ``zeros_like``) follows the same layout.
    """
    for p in module.parameters():
        if p.dim() == 4 and not p.is_contiguous(memory_format=fmt):
            p.data = p.data.contiguous(memory_format=fmt)


def to_layout(fmt: torch.memory_format, *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """Each 4-D tensor in ``fmt`` (None and other ranks pass through)."""
    return [t.contiguous(memory_format=fmt) if t is not None and t.dim() == 4 else t for t in tensors]
