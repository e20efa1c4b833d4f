"""fp32 that is IEEE fp32 on every GPU: no TensorFloat-32 in the project's convolutions and matmuls.

PyTorch lets cuDNN run fp32 convolutions in TF32 (a 10-bit mantissa) on Ampere and newer GPUs (A100, H100,
RTX 30xx and later) by default. The original trained on a P100, which has no TF32, and the report's ``32-true``
means fp32; with TF32 the same run would give other numbers on an A100 than on Kaggle's T4/P100. So every stage
that runs a network (training, checkpoint selection, the embedded backends' training, precompute, scoring,
Table 2's timings) runs inside :func:`ieee_fp32`. Mixed precision (``bf16-mixed``, ``16-mixed``) is how to ask
for speed; on GPUs without TF32 (T4, P100) and on CPUs this changes nothing.

Set through ``torch.backends.cudnn.allow_tf32`` and ``torch.set_float32_matmul_precision``, which every
PyTorch since 1.12 has. Not through the per-op API of PyTorch ≥ 2.9 (``torch.backends.cudnn.conv.fp32_precision``):
PyTorch 2.14 refuses to read ``allow_tf32`` once the two APIs were mixed, and a user's code may read it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _per_op(dotted: str) -> str | None:
    """``fp32_precision`` of ``torch.backends.<dotted>`` (PyTorch ≥ 2.9), None where it has none."""
    obj: object = torch.backends
    for part in dotted.split(".") if dotted else ():
        obj = getattr(obj, part, None)
    return getattr(obj, "fp32_precision", None)


def tf32_allowed() -> bool:
    """Whether cuDNN's fp32 convolutions or cuBLAS's fp32 matmuls may use TF32 now (on a GPU that has it)."""
    if torch.get_float32_matmul_precision() != "highest":
        return True
    conv = _per_op("cudnn.conv")
    if conv is None:  # PyTorch < 2.9: the one cuDNN flag
        return bool(torch.backends.cudnn.allow_tf32)
    for parent in ("cudnn", ""):  # "none" inherits from the backend, then from the generic setting
        if conv != "none":
            break
        conv = _per_op(parent) or "none"
    return conv == "tf32"


def _cudnn_state() -> tuple:
    try:
        return ("legacy", torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # conv and RNN set apart through the per-op API (PyTorch ≥ 2.9): keep them as they are
        return ("per-op", torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision)


def _restore_cudnn(state: tuple) -> None:
    if state[0] == "legacy":
        torch.backends.cudnn.allow_tf32 = state[1]
    else:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision = state[1:]


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """Inside: fp32 convolutions and matmuls in IEEE fp32 on CUDA (TF32 off); the settings come back after.

    Reentrant and cheap (flag writes only); changes no arithmetic without an Ampere or newer GPU."""
    cudnn, matmul = _cudnn_state(), torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        _restore_cudnn(cudnn)
        torch.set_float32_matmul_precision(matmul)
