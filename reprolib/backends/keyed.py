"""Checkpoint loading shared by the real (published) backends (DeepWV3Plus, ICNet, CC-FPSE, SPADE).

* :func:`unwrap_state_dict` accepts the wrapper dict (``{"state_dict": ...}``) and the DataParallel
  ``module.`` prefix; :func:`load_checkpoint_state_dict` reads a file with ``weights_only=True``.
* :func:`load_strict` refuses any missing, unexpected or mis-shaped key with a message naming them (the
  original code silently skipped such keys, spec §7.12).

The keyed-weight rule the reference fixtures were produced with, and the published layouts, are test
fixtures: ``tests/_make_keyed.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from numpy._core import multiarray
from torch import nn

from reprolib.io import PathLike, ReprolibDataError, load_torch, state_dict_mismatch

MODULE_PREFIX = "module."


def unwrap_state_dict(obj: Any, source: PathLike | None = None) -> dict[str, torch.Tensor]:
    """The bare state dict inside a checkpoint object.

    Accepts a bare state dict or a wrapper dict with a ``"state_dict"`` entry (the NVIDIA segmentation
    checkpoint also holds ``epoch``, ``optimizer``, ``mean_iu``…, ignored here); strips a ``module.`` prefix
    when every key carries it (saved from ``nn.DataParallel``). Raises ``ReprolibDataError`` naming
    ``source`` (``ValueError`` without one) when ``obj`` is not a mapping of tensors.
    """

    def fail(problem: str) -> None:
        if source is not None:
            raise ReprolibDataError(source, problem)
        raise ValueError(problem)

    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        fail(f"expected a state dict (mapping of name → tensor), got {type(obj).__name__}")
    not_tensor = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensor:
        fail(f"not a state dict: entries {not_tensor[:5]} are not name → tensor")
    if obj and all(k.startswith(MODULE_PREFIX) for k in obj):
        return {k[len(MODULE_PREFIX):]: v for k, v in obj.items()}
    return dict(obj)


def check_state_dict(
    state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], name: str,
    source: PathLike | None = None,
) -> None:
    """Raise unless ``state_dict`` has exactly the keys of ``expected`` with the same shapes.

    The message (:func:`reprolib.io.state_dict_mismatch`) counts and lists missing, unexpected and mis-shaped
    keys and names ``name`` (the network) and ``source`` (the file, if any: then ``ReprolibDataError``, else
    ``ValueError``).
    """
    problem = state_dict_mismatch(state_dict, expected)
    if problem is None:
        return
    msg = f"not a {name} state dict: {problem}"
    if source is not None:
        raise ReprolibDataError(source, msg)
    raise ValueError(msg)


def load_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], name: str, source: PathLike | None = None,
) -> nn.Module:
    """Load ``state_dict`` into ``model`` after :func:`check_state_dict`; returns ``model``.

    ``model`` may live on the ``meta`` device (built without initialising 100M+ parameters): its tensors are
    then replaced by those of ``state_dict`` (``assign=True``; floating values cast to float32, so the model
    shares memory with a float32 state dict instead of copying it).
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state_dict(state_dict, expected, name, source)
    own = model.state_dict()
    ready = {}
    for key, value in state_dict.items():
        # the model's dtype wins: float16 checkpoints become float32, counters stay int64
        ready[key] = value.detach().to(dtype=own[key].dtype)
    is_meta = any(t.is_meta for t in own.values())
    model.load_state_dict(ready, strict=True, assign=is_meta)
    return model


def numpy_safe_globals() -> list[Any]:
    """numpy types that training scripts leave in checkpoints (``mean_iu`` as ``np.float64``, small
    arrays…): plain data, safe to allow in a ``weights_only`` load. Pickles from numpy 1.x name them
    ``numpy.core.multiarray.*``, numpy 2 ``numpy._core.multiarray.*``; both names are allowed."""
    allowed: list[Any] = [np.dtype, np.ndarray]
    for func_name in ("scalar", "_reconstruct"):
        func = getattr(multiarray, func_name)
        allowed += [func, (func, f"numpy.core.multiarray.{func_name}")]
    for dtype_name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        allowed.append(getattr(np.dtypes, dtype_name))
    return allowed


def load_checkpoint_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (``weights_only=True``; numpy scalars allowed) and :func:`unwrap_state_dict` it."""
    with torch.serialization.safe_globals(numpy_safe_globals()):
        obj = load_torch(path)
    return unwrap_state_dict(obj, source=path)
