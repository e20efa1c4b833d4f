"""Compiled per-pixel loops of the streaming metrics (numba).

One pass per image does what took a dozen numpy passes and their temporaries: make the order-preserving key,
find the pixel's histogram bin and either count it there or keep it exactly (a second, read-only pass checks
the image first, so that a rejected image changes nothing). The pass is bound by the histogram's memory, not
by arithmetic; measured figures (against the numpy passes it replaced, and with two threads): ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numba
import numpy as np

SIGN = np.uint32(0x80000000)
EXPONENT = np.uint32(0x7F800000)
# a bin's first key: EMPTY until a pixel arrives, SPREAD once a second, different key did. Neither is the key
# of a finite float32 (those lie in [0x00800000, 0xFF7FFFFF])
EMPTY, SPREAD = np.uint32(0xFFFFFFFF), np.uint32(0)

# error flags a pass returns: which problem it met first is irrelevant, the caller names it
BAD_LABEL, BAD_SCORE = 1, 2


@contextlib.contextmanager
def _cache_dir(path: Path) -> Iterator[None]:
    # numba picks a function's cache folder once, when it is decorated: pointing its config there for just
    # that moment leaves every other numba user in the process as it was
    before = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(path)
    try:
        yield
    finally:
        numba.config.CACHE_DIR = before


def _fallback_cache_dir() -> Path | None:
    """A per-user cache folder under the temp folder, or None if even that cannot be written."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    path = Path(tempfile.gettempdir()) / f"reprolib-numba-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    return path


def _compiled(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, **options)``, falling back cleanly when numba finds no writable cache folder.

    numba caches beside the source (``__pycache__``), then under ``$NUMBA_CACHE_DIR`` or ``~/.cache``; when
    none is writable (a read-only install for a user whose home is read-only) ``cache=True`` raises
    ``cannot cache function ...: no locator available`` at import. Then the kernels are cached in a per-user
    temp folder, and if that fails too they are compiled afresh in each process (about a second).
    """

    def wrap(fn: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
        fallback = _fallback_cache_dir()
        if fallback is not None:
            with _cache_dir(fallback), contextlib.suppress(RuntimeError):
                return numba.njit(cache=True, **options)(fn)
        return numba.njit(cache=False, **options)(fn)

    return wrap


@numba.njit(inline="always")
def _key(u: np.uint32) -> np.uint32:
    if u == SIGN:  # −0.0 is +0.0: equal scores share a key (sklearn treats them as one threshold)
        u = np.uint32(0)
    if u & SIGN:
        return ~u
    return u | SIGN


@numba.njit(inline="always")
def _bin(k: np.uint32, table: np.ndarray) -> np.uint32:
    t = table[k >> np.uint32(16)]
    return (t >> np.uint32(5)) + ((k & np.uint32(0xFFFF)) >> (t & np.uint32(31)))


@_compiled(nogil=True, boundscheck=False)
def route(values, labels, keyed, table, floor, band_lo, band_hi, hist, first, out_k, out_y):
    """Count pixels in the histogram, or keep them exactly; returns how many keys were written out.

    ``values`` are float32 scores as their uint32 bits (checked by :func:`check`), or keys when ``keyed``
    (pixels the exact stores give back). A pixel with a label other than 0 and 1 is skipped (checked: it
    is the ignore index). A pixel whose key is above ``floor`` is kept: key and label appended to
    ``out_k``/``out_y``. Any other is counted in ``hist[bin, label]``, and ``first[bin]`` records whether the
    bin holds one key (a tie) or several (SPREAD): one uint32 per bin, rarely written, where a (min, max)
    key range cost two arrays and measured 0.3 ns more per pixel. A counted positive whose bin lies in
    ``[band_lo, band_hi]`` is also written out (the band's copy).
    """
    n_out = 0
    for i in range(values.shape[0]):
        lab = labels[i]
        if lab != 0 and lab != 1:
            continue
        k = values[i] if keyed else _key(values[i])
        if k > floor:
            out_k[n_out] = k
            out_y[n_out] = lab
            n_out += 1
            continue
        b = _bin(k, table)
        hist[b, lab] += 1
        f = first[b]
        if f != k and f != SPREAD:
            first[b] = k if f == EMPTY else SPREAD
        if lab == 1 and b >= band_lo and b <= band_hi:
            out_k[n_out] = k
            out_y[n_out] = 1
            n_out += 1
    return n_out


@_compiled(nogil=True, boundscheck=False)
def keys_of(bits):
    """Order-preserving key of each float32 score, given as its uint32 bits."""
    out = np.empty(bits.shape[0], np.uint32)
    for i in range(bits.shape[0]):
        out[i] = _key(bits[i])
    return out


@_compiled(nogil=True, boundscheck=False)
def bins_of(keys, table):
    """Fine histogram bin of each key."""
    out = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        out[i] = _bin(keys[i], table)
    return out


@_compiled(nogil=True, boundscheck=False)
def check(bits, labels, ignore):
    """Error flags of one image, before anything is counted (so a bad image leaves the accumulator as it was).
    A NaN or infinite score counts only on a counted pixel (label 0 or 1), as in the exact form."""
    bad = 0
    for i in range(bits.shape[0]):
        lab = labels[i]
        if lab != 0 and lab != 1:
            if lab != ignore:
                bad |= BAD_LABEL
        elif (bits[i] & EXPONENT) == EXPONENT:
            bad |= BAD_SCORE
    return bad


@_compiled(nogil=True, boundscheck=False)
def rank_among(keys, thresholds, shift):
    """Where each of ``keys`` falls among the distinct ascending ``thresholds``: ``(count, tied)``, with
    ``count[i]`` the keys that have exactly ``i`` thresholds below them (``i`` in ``0..T``) and ``tied[i]`` those
    equal to ``thresholds[i]``. The same counts a sort of ``keys`` and a binary search per threshold give, in
    one pass: a table over ``(key - thresholds[0]) >> shift`` points each key at the few thresholds of its
    stretch (searched linearly when they are few, by bisection when many), so its cost is one look-up per key.
    """
    n_t = thresholds.shape[0]
    lowest, highest = thresholds[0], thresholds[n_t - 1]
    s = np.uint32(shift)
    n_cells = np.int64((highest - lowest) >> s) + 2
    start = np.empty(n_cells, np.int64)  # start[c]: the first threshold of cell c or above
    j = 0
    for c in range(n_cells):
        while j < n_t and np.int64((thresholds[j] - lowest) >> s) < c:
            j += 1
        start[c] = j
    count = np.zeros(n_t + 1, np.int64)
    tied = np.zeros(n_t, np.int64)
    for n in range(keys.shape[0]):
        x = keys[n]
        if x < lowest:
            count[0] += 1
            continue
        if x > highest:
            count[n_t] += 1
            continue
        c = np.int64((x - lowest) >> s)
        lo, hi = start[c], start[c + 1]
        if hi - lo > 8:
            while lo < hi:
                mid = (lo + hi) >> 1
                if thresholds[mid] < x:
                    lo = mid + 1
                else:
                    hi = mid
        else:
            while lo < hi and thresholds[lo] < x:
                lo += 1
        count[lo] += 1
        if thresholds[lo] == x:  # lo < n_t: x ≤ highest
            tied[lo] += 1
    return count, tied
