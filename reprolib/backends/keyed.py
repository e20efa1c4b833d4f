"""Shared helpers for the real (published) backends: checkpoint layouts, strict loading, keyed fixtures.

Three things every real backend (DeepWV3Plus, ICNet, CC-FPSE, SPADE) needs:

* **Layouts** — ``<name>-state-dict.json`` files (``[key, shape, dtype, sum]`` per line) describe the exact
  published checkpoint; :func:`read_layout` parses one.
* **Strict loading** — :func:`unwrap_state_dict` accepts the wrapper dict (``{"state_dict": ...}``) and the
  DataParallel ``module.`` prefix; :func:`load_strict` refuses any missing, unexpected or mis-shaped key
  with a message naming them (the original code silently skipped such keys, spec §7.12).
* **Keyed fixtures** — :func:`keyed_value` / :func:`keyed_state_dict` are the deterministic-weight rule the
  reference fixtures were produced with (``crc32(key)`` seeds a CPU generator per entry);
  :func:`keyed_sn_svd` is the spectral-norm variant; :func:`fixture_rgb` and :func:`tensor_summary` /
  :func:`compare_to_summary` rebuild the recorded inputs and compare outputs against recorded summaries.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reprolib.io import PathLike, ReprolibDataError, read_json, state_dict_mismatch

MODULE_PREFIX = "module."


@dataclass(frozen=True)
class LayoutEntry:
    """One state-dict entry of a published checkpoint: bare key, shape, dtype name, keyed-value sum."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    keyed_sum: float | None


def read_layout(path: PathLike) -> list[LayoutEntry]:
    """Parse a ``<name>-state-dict.json`` layout file (``[key, shape, dtype, sum]`` per entry, in order)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ReprolibDataError(path, "layout must be a JSON list of [key, shape, dtype, sum] entries")
    entries = []
    for i, row in enumerate(data):
        if (not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str) or not isinstance(row[1], list)
                or not all(isinstance(s, int) and s >= 0 for s in row[1])):
            raise ReprolibDataError(path, f"entry {i} is not [key, shape, dtype, sum]: {row!r}")
        keyed_sum = row[3]
        if isinstance(keyed_sum, str):  # strict JSON writes non-finite sums as strings
            keyed_sum = float(keyed_sum)
        entries.append(LayoutEntry(row[0], tuple(row[1]), str(row[2]), keyed_sum))
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise ReprolibDataError(path, "duplicate keys in layout")
    return entries


# --------------------------------------------------------------------------------------------------------
# strict loading


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
    import numpy as np
    from numpy._core import multiarray

    allowed: list[Any] = [np.dtype, np.ndarray]
    for func_name in ("scalar", "_reconstruct"):
        func = getattr(multiarray, func_name)
        allowed += [func, (func, f"numpy.core.multiarray.{func_name}")]
    for dtype_name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        allowed.append(getattr(np.dtypes, dtype_name))
    return allowed


def load_checkpoint_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (``weights_only=True``; numpy scalars allowed) and :func:`unwrap_state_dict` it."""
    from reprolib.io import load_torch

    with torch.serialization.safe_globals(numpy_safe_globals()):
        obj = load_torch(path)
    return unwrap_state_dict(obj, source=path)


# --------------------------------------------------------------------------------------------------------
# keyed fixture rule


def keyed_value(key: str, shape: Iterable[int]) -> torch.Tensor | None:
    """Deterministic value of state-dict entry ``key`` (the reference fixtures' rule; None = untouched).

    ``g = Generator().manual_seed(crc32(key))``, ``t = randn(shape, g)``: ``running_mean`` → 0.1t,
    ``running_var`` → 1+0.1|t|, ``num_batches_tracked`` → None, ndim ≥ 2 → t·sqrt(2/prod(shape[1:])),
    ndim 1 ending ``.weight`` → 1+0.1t, other ndim 1 → 0.05t, ndim 0 → 1+0.1t. ``key`` is the *bare* key.
    """
    if key.endswith("num_batches_tracked"):
        return None
    shape = tuple(int(s) for s in shape)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    if key.endswith("running_mean"):
        return 0.1 * t
    if key.endswith("running_var"):
        return 1 + 0.1 * t.abs()
    if len(shape) >= 2:
        return t * math.sqrt(2.0 / math.prod(shape[1:]))
    if len(shape) == 1:
        return 1 + 0.1 * t if key.endswith(".weight") else 0.05 * t
    return 1 + 0.1 * t


def keyed_state_dict(entries: Iterable[LayoutEntry | tuple[str, Iterable[int]]]) -> dict[str, torch.Tensor]:
    """``{key: keyed_value(key, shape)}`` in layout order; ``num_batches_tracked`` → int64 zero."""
    out: dict[str, torch.Tensor] = {}
    for entry in entries:
        key, shape = (entry.key, entry.shape) if isinstance(entry, LayoutEntry) else entry
        value = keyed_value(key, shape)
        out[key] = torch.zeros((), dtype=torch.long) if value is None else value
    return out


def keyed_state_dict_for(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keyed state dict with the keys and shapes of ``model.state_dict()`` (works on a meta model)."""
    return keyed_state_dict((k, tuple(v.shape)) for k, v in model.state_dict().items())


_SN_ORIG = re.compile(r"^(?P<prefix>.*)\.weight_orig$")


def keyed_sn_svd(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``keyed_sn_svd`` setting: for every spectral-norm module (``<m>.weight_orig/_u/_v``) set
    ``v`` = top right singular vector of ``W = weight_orig.reshape(out, -1)`` (float64 SVD) and
    ``u = Wv/||Wv||``, stored as float32. Returns a new dict; other entries are shared."""
    out = dict(state_dict)
    for key, w in state_dict.items():
        m = _SN_ORIG.match(key)
        if m is None:
            continue
        prefix = m.group("prefix")
        if f"{prefix}.weight_u" not in state_dict or f"{prefix}.weight_v" not in state_dict:
            raise ValueError(f"spectral-norm weight {key} lacks {prefix}.weight_u / .weight_v")
        mat = w.detach().reshape(w.shape[0], -1).double()
        v = torch.linalg.svd(mat, full_matrices=False).Vh[0]
        wv = mat @ v
        out[f"{prefix}.weight_v"] = v.float()
        out[f"{prefix}.weight_u"] = (wv / wv.norm()).float()
    return out


def check_keyed_sums(state_dict: Mapping[str, torch.Tensor], layout: Iterable[LayoutEntry],
                     rtol: float = 1e-6, atol: float = 1e-4) -> list[str]:
    """Keys whose float64 sum differs from the layout's recorded keyed sum (empty list = all match)."""
    wrong = []
    for e in layout:
        if e.keyed_sum is None:
            continue
        got = float(state_dict[e.key].double().sum())
        if not math.isclose(got, e.keyed_sum, rel_tol=rtol, abs_tol=atol):
            wrong.append(f"{e.key}: {got!r} != {e.keyed_sum!r}")
    return wrong


# --------------------------------------------------------------------------------------------------------
# fixture inputs and output comparison


def fixture_rgb(height: int, width: int, seed: int = 2001, batch: int = 1) -> torch.Tensor:
    """The segmentation fixtures' RGB image: ``rand(B,3,H,W)`` from a CPU generator seeded ``seed``,
    quantised to multiples of 1/255 (as an 8-bit image would be)."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, 3, height, width, generator=g)
    return (rgb * 255).round() / 255


def tensor_summary(t: torch.Tensor) -> dict[str, Any]:
    """``shape, sum, mean, std, min, max, abs_sum, finite`` of ``t`` in float64, as the fixtures record."""
    d = t.detach().double()
    return {
        "shape": list(t.shape), "sum": float(d.sum()), "mean": float(d.mean()), "std": float(d.std()),
        "min": float(d.min()), "max": float(d.max()), "abs_sum": float(d.abs().sum()),
        "finite": bool(torch.isfinite(d).all()),
    }


def compare_to_summary(t: torch.Tensor, expected: Mapping[str, Any]) -> dict[str, float]:
    """Compare ``t`` with a recorded fixture summary; every difference is divided by the recorded std.

    Returns ``samples`` (max |Δ| over the recorded ``[[n,c,y,x], value]`` samples), ``mean``, ``std``,
    ``min``, ``max`` (|Δ| of those statistics) and ``channel_means`` (max |Δ|), all relative to the std.
    Raises ``ValueError`` if the shapes differ.
    """
    if list(t.shape) != list(expected["shape"]):
        raise ValueError(f"shape {list(t.shape)} differs from the fixture's {expected['shape']}")
    std = float(expected["std"])
    got = tensor_summary(t)
    out: dict[str, float] = {}
    if "samples" in expected:
        d = t.detach().double()
        out["samples"] = max(abs(float(d[tuple(idx)]) - float(val)) for idx, val in expected["samples"]) / std
    for stat in ("mean", "std", "min", "max"):
        if stat in expected:
            out[stat] = abs(got[stat] - float(expected[stat])) / std
    if "channel_means" in expected:
        cm = t.detach().double().mean(dim=tuple(i for i in range(t.ndim) if i != 1))
        ref = torch.tensor([float(v) for v in expected["channel_means"]], dtype=torch.float64)
        out["channel_means"] = float((cm - ref).abs().max()) / std
    return out
