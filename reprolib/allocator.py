"""Keep freed tensor memory in the process instead of handing it back to the OS after every step (glibc).

glibc serves every allocation of 32 MB or more with a fresh ``mmap`` and unmaps it on ``free``; a width-1
activation at 256×512 (1×128×256×512 floats) is 64 MB, so each training step maps, page-faults and zeroes
gigabytes anew: 6.6–8.3·10^5 minor page faults and ~2 s of system CPU time per width-1 training step on 2
cores (``benchmarks/README.md``, "Dissimilarity network"). Serving them from the heap, and keeping the heap's
free top, reuses the same pages every step: same session, width 1, the training step 5.43–5.65 → 5.17–5.28 s
and the forward 1.77–1.83 → 1.56 s; from a fresh clone the demo's ``make table4`` 16m24s → 15m01s (system
time 2m28s → 0m32s), with bit-identical results (allocation does not touch the arithmetic). The cost: the
process keeps its peak heap until it exits (peak RSS 2775 → 3212 MB for the width-1 steps above).

Done with ``mallopt`` at run time (what ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:...`` does at start-up), so
a notebook, the CLIs and the benchmarks get it without an environment variable. No-op off glibc;
``REPROLIB_MALLOC=default`` leaves glibc's behaviour as it is.
"""

from __future__ import annotations

import ctypes
import os

ENV = "REPROLIB_MALLOC"

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# mallopt takes a C int: the largest free heap top (bytes) kept before glibc trims it back to the OS
_TRIM_THRESHOLD = 2**31 - 1

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse; True when in effect.

    Idempotent and process-wide. False where the C library has no ``mallopt`` (not glibc) or where
    ``REPROLIB_MALLOC=default`` asks to leave the allocator alone.
    """
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(ENV, "").strip().lower() == "default":
        _applied = False
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        _applied = False
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # trim threshold first: with mmap off, a large free would otherwise shrink the heap right back
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_MAX, 0))
    return _applied
