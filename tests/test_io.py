"""Atomic writes and safe reads: the guarantees every other module relies on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from reprolib.io import (
    ReprolibDataError,
    atomic_write,
    image_size,
    load_torch,
    png_bytes,
    read_json,
    read_png,
    save_torch,
    write_json,
    write_png,
)


def test_png_roundtrip_all_kinds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    ids = rng.integers(0, 33000, (5, 7)).astype(np.int32)
    for name, arr, mode in (("rgb", rgb, "RGB"), ("l", grey, "L"), ("ids", ids, "I")):
        write_png(tmp_path / f"{name}.png", arr)
        np.testing.assert_array_equal(read_png(tmp_path / f"{name}.png", mode=mode), arr)
    assert png_bytes(rgb) == png_bytes(rgb.copy())  # deterministic bytes


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write(b"half-written")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_read_png_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReprolibDataError, match="missing.png: file not found"):
        read_png(tmp_path / "missing.png")
    good = png_bytes(np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ReprolibDataError, match="trunc.png: unreadable or truncated"):
        read_png(tmp_path / "trunc.png", mode="RGB")
    write_png(tmp_path / "small.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ReprolibDataError, match="small.png: size 4x4"):
        read_png(tmp_path / "small.png", mode="L", expect_size=(8, 8))
    write_png(tmp_path / "wide.png", np.full((4, 4), 1000, np.int32))
    with pytest.raises(ReprolibDataError, match="8-bit label expected"):
        read_png(tmp_path / "wide.png", mode="L")


def test_json_and_torch(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"a": [1, 2], "b": 1}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ReprolibDataError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
    save_torch({"w": torch.arange(3)}, tmp_path / "w.pt")
    assert torch.equal(load_torch(tmp_path / "w.pt")["w"], torch.arange(3))


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_load_torch_refuses_pickled_code(tmp_path: Path) -> None:
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ReprolibDataError, match="cannot load checkpoint safely"):
        load_torch(tmp_path / "evil.pt")


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_get_the_users_umask_as_open_would(tmp_path: Path, umask: int) -> None:
    """mkstemp made every file 0600 (unreadable to a colleague sharing the folder); now writes follow the umask."""
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as fh:  # the reference: what open() gives a new file
            fh.write("x")
        write_json(tmp_path / "a.json", {"a": 1})
        write_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
        save_torch({"w": torch.zeros(1)}, tmp_path / "w.pt")
        with atomic_write(tmp_path / "t.txt", "w") as fh:
            fh.write("text")
        (tmp_path / "a.json").unlink()
        write_json(tmp_path / "a.json", {"a": 2})  # replacing a file: same rule
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == expected
    for name in ("a.json", "a.png", "w.pt", "t.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name
    assert read_json(tmp_path / "a.json") == {"a": 2}
    assert not list(tmp_path.glob(".*.tmp"))


def test_image_too_large_to_decode_is_named(tmp_path: Path) -> None:
    """A header claiming 20000×20000 is refused by PIL before decoding; the error names the file."""
    import struct
    import zlib

    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (tmp_path / "huge.png").write_bytes(bytes(data))
    for read in (lambda p: read_png(p, mode="RGB"), image_size):
        with pytest.raises(ReprolibDataError, match="huge.png: image too large to read safely"):
            read(tmp_path / "huge.png")
    write_png(tmp_path / "ok.png", np.zeros((3, 5), np.uint8))
    assert image_size(tmp_path / "ok.png") == (3, 5)


def test_stale_temps_of_killed_writers_are_removed(tmp_path: Path) -> None:
    """A temp file of atomic_write left by a killed process goes once untouched for STALE_TEMP_SECONDS; a recent one
    (a writer at work), other files and what lies in folders below stay."""
    import time

    from reprolib.io import STALE_TEMP_SECONDS, is_temp_file, remove_stale_temps

    old, fresh = tmp_path / ".last.ckpt.0a1b2c3d.tmp", tmp_path / ".best.ckpt.0a1b2c3e.tmp"
    below, other = tmp_path / "validation" / ".step-80.ckpt.0a1b2c3f.tmp", tmp_path / "notes.tmp"
    below.parent.mkdir()
    for path in (old, fresh, below, other):
        path.write_bytes(b"partial")
    past = time.time() - STALE_TEMP_SECONDS - 5
    for path in (old, below, other):
        os.utime(path, (past, past))
    assert is_temp_file(old) and not is_temp_file(other)
    assert remove_stale_temps(tmp_path) == [old]
    assert fresh.exists() and below.exists() and other.exists()
    assert remove_stale_temps(tmp_path / "missing") == []
