"""reprolib.allocator: freed tensor memory is reused instead of mapped and page-faulted anew."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from reprolib import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# 64 MB tensors (above glibc's largest mmap threshold, 32 MB): allocated, filled and freed; the heap reaches
# its steady state after a few rounds (each 64-byte-aligned request skips the freed chunk until enough of
# them coalesce: ~8 rounds with glibc 2.36), then five rounds are counted
PROBE = """
import resource, sys, torch
from reprolib.allocator import keep_freed_memory
on = keep_freed_memory()
for _ in range(16):
    torch.ones(16 * 2**20)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(16 * 2**20)
print(int(on), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


def _probe(mode: str) -> tuple[bool, int]:
    env = {**os.environ, allocator.ENV: mode}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    on, faults = out.stdout.split()
    return bool(int(on)), int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere keep_freed_memory is a no-op")
def test_freed_memory_is_reused_without_page_faults():
    on, kept = _probe("keep")
    off, default = _probe("default")
    assert on and not off
    pages = 5 * 64 * 2**20 // 4096  # what mapping each 64 MB tensor anew costs in 4 KiB pages
    assert kept < pages // 10, f"{kept} minor page faults for 5 reused 64 MB tensors"
    assert default >= kept


def test_opt_out_and_idempotence(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv(allocator.ENV, "default")
    assert allocator.keep_freed_memory() is False
    monkeypatch.setenv(allocator.ENV, "keep")
    assert allocator.keep_freed_memory() is False  # decided once per process
