"""Private helpers shared by the pixel, streaming, component and uncertainty metrics: input checks (score and
label maps → flat valid arrays), the order-preserving uint32 key of a float32 score, and exact
(#positives, #negatives) counts per distinct score."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reprolib.metrics import kernels

ArrayLike = object


def to_numpy(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor on any device; half / bfloat16 scores → float32
        x = x.detach()
        x = (x.float() if x.is_floating_point() else x).cpu().numpy()
    return np.asarray(x)


def valid_pixels(scores: ArrayLike, labels: ArrayLike, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    s = to_numpy(scores).astype(np.float32, copy=False)
    y = to_numpy(labels)
    if s.shape != y.shape:
        raise ValueError(f"scores shape {s.shape} does not match labels shape {y.shape}")
    if y.dtype.kind == "f":  # float label maps are accepted when they hold whole numbers
        as_int = y.astype(np.int64)
        if not np.array_equal(as_int, y):
            raise ValueError(f"labels must be 0, 1 or {ignore_index}; found non-integer values")
        y = as_int
    elif y.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers (0, 1 or {ignore_index}), got dtype {y.dtype}")
    s, y = s.ravel(), y.ravel()
    # checks in the labels' own dtype: widening uint8 masks to int64 first costs more than the metric
    counted = y <= 1 if y.dtype.kind in "ub" else (y == 0) | (y == 1)
    if not counted.all():
        other = ~counted & (y != ignore_index)
        if other.any():
            raise ValueError(f"labels must be 0, 1 or {ignore_index}; found {np.unique(y[other])[:5].tolist()}")
        s, y = s[counted], y[counted]
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s, y.astype(np.uint8, copy=False)


def checked_bits(scores: ArrayLike, labels: ArrayLike, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Streaming input: flat float32 scores as uint32 bits and integer labels, checked in one compiled pass.

    Ignored pixels stay in (the routing pass skips them): compressing them out first costs a pass of its own.
    """
    s = np.ascontiguousarray(to_numpy(scores), dtype=np.float32)
    y = to_numpy(labels)
    if s.shape != y.shape:
        raise ValueError(f"scores shape {s.shape} does not match labels shape {y.shape}")
    if y.dtype.kind == "f":
        as_int = y.astype(np.int64)
        if not np.array_equal(as_int, y):
            raise ValueError(f"labels must be 0, 1 or {ignore_index}; found non-integer values")
        y = as_int
    elif y.dtype.kind == "b":
        y = y.view(np.uint8)
    elif y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers (0, 1 or {ignore_index}), got dtype {y.dtype}")
    bits, y = s.reshape(-1).view(np.uint32), np.ascontiguousarray(y).reshape(-1)
    bad = kernels.check(bits, y, ignore_index)
    if bad & kernels.BAD_LABEL:
        other = (y != 0) & (y != 1) & (y != ignore_index)
        raise ValueError(f"labels must be 0, 1 or {ignore_index}; found {np.unique(y[other])[:5].tolist()}")
    if bad & kernels.BAD_SCORE:
        raise ValueError("scores contain NaN or infinite values")
    return bits, y


def as_list(x: ArrayLike) -> list:
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def score_keys(s: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 key of float32 values (larger score → larger key; −0.0 and +0.0 share one)."""
    return kernels.keys_of(np.ascontiguousarray(s, dtype=np.float32).reshape(-1).view(np.uint32))


def distinct_counts(k: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys, #positives, #negatives), from the lowest key to the highest."""
    if len(k) == 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Two plain uint32 sorts (all keys, then the positives' keys) instead of a stable argsort of the scores
    # or one sort of packed key<<1|label uint64: numpy's SIMD sort is fastest on 32-bit keys, and positives
    # are few (measured on 5·10^7 keys: 0.36 s, against 3.5 s for the packed uint64 sort)
    ks = np.sort(k)
    starts = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    keys, count = ks[starts], np.diff(np.concatenate([starts, [len(ks)]]))
    kp = np.sort(k[y == 1])
    pos = np.zeros(len(keys), np.int64)
    if len(kp):
        p_starts = np.flatnonzero(np.concatenate([[True], kp[1:] != kp[:-1]]))
        pos[np.searchsorted(keys, kp[p_starts])] = np.diff(np.concatenate([p_starts, [len(kp)]]))
    return keys, pos, count - pos


def key_counts(k: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(#positives, #negatives) per distinct key, from the highest key to the lowest."""
    _, pos, neg = distinct_counts(k, y)
    return pos[::-1], neg[::-1]


def exact_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(#positives, #negatives) per distinct float32 score, from the highest score to the lowest."""
    return key_counts(score_keys(s), y)


def pooled_counts(scores: Sequence[ArrayLike], labels: Sequence[ArrayLike], ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_counts` over the valid pixels of every (score map, label map) pair, pooled."""
    pairs = [valid_pixels(s, y, ignore_index) for s, y in zip(scores, labels, strict=True)]
    s = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.float32)
    y = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.uint8)
    return exact_counts(s, y)
