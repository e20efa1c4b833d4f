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


#: The ops that raise a RuntimeError on CUDA under ``torch.use_deterministic_algorithms(True)``, as ATen op
#: names (what a TorchDispatchMode sees, forward and backward), each with its entry in the list
#: "The following normally-nondeterministic operations will throw a RuntimeError when mode=True" of the
#: ``torch.use_deterministic_algorithms`` documentation of the installed torch 2.14
#: (https://docs.pytorch.org/docs/2.14/generated/torch.use_deterministic_algorithms.html, the docstring of
#: ``torch.use_deterministic_algorithms``). "When attempting to differentiate" = the op's backward kernel.
THROWS_ON_CUDA_UNDER_DETERMINISM: dict[str, str] = {
    "avg_pool3d_backward": "torch.nn.AvgPool3d when attempting to differentiate a CUDA tensor",
    "_adaptive_avg_pool2d_backward": "torch.nn.AdaptiveAvgPool2d when attempting to differentiate a CUDA tensor",
    "_adaptive_avg_pool3d_backward": "torch.nn.AdaptiveAvgPool3d when attempting to differentiate a CUDA tensor",
    "adaptive_max_pool2d_backward": "torch.nn.AdaptiveMaxPool2d when attempting to differentiate a CUDA tensor",
    "fractional_max_pool2d_backward": "torch.nn.FractionalMaxPool2d when attempting to differentiate a CUDA tensor",
    "fractional_max_pool3d_backward": "torch.nn.FractionalMaxPool3d when attempting to differentiate a CUDA tensor",
    "max_unpool2d": "torch.nn.MaxUnpool1d / torch.nn.MaxUnpool2d",
    "max_unpool3d": "torch.nn.MaxUnpool3d",
    "upsample_linear1d_backward": "torch.nn.functional.interpolate (linear) when attempting to differentiate a CUDA tensor",
    "upsample_bilinear2d_backward": "torch.nn.functional.interpolate (bilinear) when attempting to differentiate "
                                    "a CUDA tensor",
    "_upsample_bilinear2d_aa_backward": "torch.nn.functional.interpolate (bilinear, antialias) when attempting to "
                                        "differentiate a CUDA tensor",
    "upsample_bicubic2d_backward": "torch.nn.functional.interpolate (bicubic) when attempting to differentiate a CUDA tensor",
    "_upsample_bicubic2d_aa_backward": "torch.nn.functional.interpolate (bicubic, antialias) when attempting to "
                                       "differentiate a CUDA tensor",
    "upsample_trilinear3d_backward": "torch.nn.functional.interpolate (trilinear) when attempting to differentiate "
                                     "a CUDA tensor",
    "reflection_pad1d_backward": "torch.nn.ReflectionPad1d when attempting to differentiate a CUDA tensor",
    "reflection_pad2d_backward": "torch.nn.ReflectionPad2d when attempting to differentiate a CUDA tensor",
    "reflection_pad3d_backward": "torch.nn.ReflectionPad3d when attempting to differentiate a CUDA tensor",
    "nll_loss_forward": "torch.nn.NLLLoss when called on a CUDA tensor (also inside F.cross_entropy)",
    "nll_loss2d_forward": "torch.nn.NLLLoss when called on a CUDA tensor (also inside F.cross_entropy, 4-D)",
    "_ctc_loss_backward": "torch.nn.CTCLoss when attempting to differentiate a CUDA tensor",
    "_embedding_bag_backward": "torch.nn.EmbeddingBag when attempting to differentiate a CUDA tensor when mode='max'",
    "put_": "torch.Tensor.put_ (accumulate=False; accumulate=True on a CUDA tensor)",
    "put": "torch.Tensor.put_ (accumulate=False; accumulate=True on a CUDA tensor)",
    "histc": "torch.histc when called on a CUDA tensor",
    "bincount": "torch.bincount when called on a CUDA tensor and weights tensor is given",
    "median": "torch.median with indices output when called on a CUDA tensor",
    "grid_sampler_2d_backward": "torch.nn.functional.grid_sample when attempting to differentiate a CUDA tensor",
    "grid_sampler_3d_backward": "torch.nn.functional.grid_sample when attempting to differentiate a CUDA tensor",
    "scatter_reduce": "torch.Tensor.scatter_reduce when reduce='prod' and called on CUDA tensor",
    "resize_": "torch.Tensor.resize_ when called with a quantized tensor",
}


def throws_on_cuda(op_name: str, args: tuple = (), kwargs: dict | None = None) -> str | None:
    """The documentation entry if ATen op ``op_name`` (overload packet name, e.g. ``nll_loss2d_forward``) with
    these arguments would raise on CUDA under determinism; None when it is safe."""
    entry = THROWS_ON_CUDA_UNDER_DETERMINISM.get(op_name)
    if entry is None:
        return None
    kwargs = kwargs or {}
    if op_name == "bincount" and (len(args) < 2 or args[1] is None) and kwargs.get("weights") is None:
        return None
    if op_name == "median" and len(args) < 2 and "dim" not in kwargs:  # no indices output
        return None
    if op_name == "scatter_reduce" and (args[3] if len(args) > 3 else kwargs.get("reduce")) != "prod":
        return None
    if op_name == "resize_" and not (args and getattr(args[0], "is_quantized", False)):
        return None
    return entry


def skip_uninitialized_fill() -> None:
    """Turn off ``torch.utils.deterministic.fill_uninitialized_memory`` (call after ``L.Trainer(deterministic=True)``).

    With it on, deterministic mode fills every new tensor with NaN first, a debugging aid that catches kernels
    reading memory they never wrote. It changes no result of a correct kernel, and cost 38,940 ``fill_`` calls
    in 30 demo training steps (6.6 % of the time, ``torch.profiler``). The choice of deterministic kernels, what
    ``use_deterministic_algorithms`` is for, is unchanged.
    """
    torch.utils.deterministic.fill_uninitialized_memory = False
