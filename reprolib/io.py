"""Safe file I/O shared by every module: atomic writes and reads that fail with a clear message.

Every file reprolib writes goes through :func:`atomic_write` (temp file in the same folder, then
``os.replace``), so a killed process never leaves a half-written file behind and a rerun can trust
whatever exists. Every image read goes through :func:`read_png`, which names the file and the
problem instead of surfacing a stack trace from deep inside PIL or numpy.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PathLike = str | os.PathLike


class ReprolibDataError(ValueError):
    """Bad input data: the message names the file and the problem."""

    def __init__(self, path: PathLike | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


def _create_temp_beside(path: Path) -> tuple[int, Path]:
    """A new, exclusively created temp file next to ``path`` with the permissions ``open()`` would give it.

    ``tempfile.mkstemp`` always makes mode 0600 files, so every result would be unreadable to the rest of a
    group sharing a folder; ``os.open(..., 0o666)`` lets the kernel apply the user's umask instead (reading
    the umask to ``chmod`` afterwards would mean ``os.umask`` calls, which are not thread-safe).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def is_temp_file(path: PathLike) -> bool:
    """True for a temp file of :func:`atomic_write` (``.<name>.<8 hex>.tmp``): what a killed process leaves behind
    beside the file it was writing; never part of the output (fingerprints and listings skip it)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


#: seconds a temp file of :func:`atomic_write` must have gone untouched before it counts as a killed writer's: a live
#: writer's file changes with every block it writes (the largest, a checkpoint or a split's score cache, take seconds)
STALE_TEMP_SECONDS = 600.0


def remove_stale_temps(folder: PathLike, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temp files of :func:`atomic_write` directly in ``folder`` that no writer has touched for
    ``older_than`` seconds: what a process killed mid-write left beside a checkpoint or a score cache (in ``full``
    hundreds of MB each, which nothing else removes). Another process writing there at the same time keeps its file
    (too recent). Returns the files removed."""
    folder, now, removed = Path(folder), time.time(), []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        try:
            if is_temp_file(path) and path.is_file() and now - path.stat().st_mtime >= older_than:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    return removed


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``, else delete it.

    The file gets the permissions a plain ``open(path, "w")`` of a new file would (0666 minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp_beside(path)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically (stable bytes for fingerprints)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: PathLike) -> Any:
    """Read JSON, raising :class:`ReprolibDataError` on a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ReprolibDataError(path, not_found(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReprolibDataError(path, f"not valid JSON ({exc})") from None


def png_bytes(array: np.ndarray) -> bytes:
    """Encode an array as PNG bytes deterministically (no metadata, fixed compression).

    uint8 (H,W) → 8-bit grey, uint8 (H,W,3) → RGB, uint16/int32 (H,W) with values < 65536 → 16-bit grey
    (Cityscapes ``instanceIds`` are 16-bit).
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        img = Image.fromarray(array)
    elif array.ndim == 2 and array.dtype == np.uint8:
        img = Image.fromarray(array)
    elif array.ndim == 2 and np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError("16-bit PNG needs values in [0, 65535]")
        img = Image.fromarray(array.astype(np.uint16))  # Pillow picks "I;16" for uint16
    else:
        raise ValueError(f"cannot write array of shape {array.shape} and dtype {array.dtype} as PNG")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png(path: PathLike, array: np.ndarray) -> None:
    """Write an image array as PNG atomically (see :func:`png_bytes` for the accepted types)."""
    write_bytes(path, png_bytes(array))


def read_png(
    path: PathLike,
    *,
    mode: str | None = None,
    expect_size: tuple[int, int] | None = None,
    reference: PathLike | None = None,
) -> np.ndarray:
    """Read a PNG (or any PIL image) fully into a numpy array.

    ``mode``: ``"RGB"`` → (H,W,3) uint8; ``"L"`` → (H,W) uint8; ``"I"`` → (H,W) int32 (16-bit ids);
    ``None`` → as stored. ``expect_size`` = (H, W) checks the size; ``reference``: the file that size was read
    from (its image), named beside this one when they differ, since either may be the wrong one. Any failure
    raises :class:`ReprolibDataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ReprolibDataError(path, not_found(path))
    try:
        with Image.open(path) as img:
            img.load()
            if mode == "RGB":
                if img.mode not in ("RGB", "RGBA", "L", "P"):
                    raise ReprolibDataError(path, f"expected a colour image, found PIL mode {img.mode}")
                img = img.convert("RGB")
                arr = np.array(img, dtype=np.uint8)
            elif mode == "L":
                if img.mode not in ("L", "P", "I", "I;16"):
                    raise ReprolibDataError(path, f"expected a single-channel label image, found {img.mode}")
                arr = np.array(img)
                if arr.dtype != np.uint8:
                    if arr.size and arr.max() > 255:
                        raise ReprolibDataError(path, f"8-bit label expected, found values up to {arr.max()}")
                    arr = arr.astype(np.uint8)
            elif mode == "I":
                arr = np.array(img).astype(np.int32)
                if arr.ndim != 2:
                    raise ReprolibDataError(path, f"expected a single-channel id image, found {img.mode}")
            else:
                arr = np.array(img)
    except ReprolibDataError:
        raise
    except Image.DecompressionBombError as exc:  # a header claiming gigapixels: refuse before decoding
        raise ReprolibDataError(path, f"image too large to read safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ReprolibDataError(path, f"unreadable or truncated image ({exc})") from None
    if expect_size is not None and tuple(arr.shape[:2]) != tuple(expect_size):
        expected = f"{expect_size[1]}x{expect_size[0]}"
        raise ReprolibDataError(
            path, f"size {arr.shape[1]}x{arr.shape[0]} (WxH) does not match "
            + (f"its image {Path(reference)} ({expected}): one of the two is not the other's" if reference is not None
               else f"expected {expected}")
        )
    return arr


def image_size(path: PathLike) -> tuple[int, int]:
    """(H, W) of an image from its header only, with the same checks and messages as :func:`read_png`."""
    path = Path(path)
    if not path.is_file():
        raise ReprolibDataError(path, not_found(path))
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Image.DecompressionBombError as exc:
        raise ReprolibDataError(path, f"image too large to read safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ReprolibDataError(path, f"unreadable or truncated image ({exc})") from None


def save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save`` atomically."""
    # lazy: torch costs ~1.8 s at import (python -X importtime) and reprolib.io is the bottom layer, imported by
    # torch-free paths (reprolib.cli, reprolib.training.config: a bad argument is reported in 0.2 s)
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def not_found(path: PathLike, what: str = "file") -> str:
    """The problem with a ``path`` that is not a file: a folder given for a file, or nothing there."""
    return f"is a folder; expected a {what}" if Path(path).is_dir() else f"{what} not found"


def load_error(exc: Exception) -> str:
    """torch.load's failure in one line. A pickle of classes (what weights_only=True refuses) gets what to do:
    torch's own text is a page of advice to load it unsafely, which no reprolib loader does."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsupported:
        return (f"holds Python objects ({unsupported.group(1)}) that only an unsafe unpickling would load; reprolib "
                "loads checkpoints with weights_only=True: re-save the tensors (e.g. torch.save(model.state_dict(), "
                "path)) where the file was made")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_torch(path: PathLike, map_location: str | None = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (never unpickles code), with a clear error."""
    import torch  # lazy: see save_torch (measured import cost)

    path = Path(path)
    if not path.is_file():
        raise ReprolibDataError(path, not_found(path, "checkpoint"))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise ReprolibDataError(path, f"cannot load checkpoint safely ({load_error(exc)})") from None


def file_sha256(path: PathLike) -> str:
    """sha256 of a file's bytes, memoised per process on its path, size and mtime (a large file is read once).

    What the caches' keys use for data sets: it does not change when a file is only copied or touched (another
    clone, a Kaggle mount), as a name/size/mtime listing did."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def state_dict_mismatch(state_dict: Mapping[Any, Any], expected: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why ``state_dict`` cannot load into a model whose parameters have the shapes ``expected`` (None: it can).

    One message for every loader: ``checkpoint does not match the model config: N missing / M mis-shaped
    keys (first: ...)``, then the first few missing, unexpected and mis-shaped keys by name. Keys that are
    not strings and values that are not tensors count as unexpected / mis-shaped rather than crashing.
    """
    missing = [k for k in expected if k not in state_dict]
    extra = [repr(k) if not isinstance(k, str) else k for k in state_dict if k not in expected]
    bad = []
    for k, shape in expected.items():
        if k in state_dict:
            got = getattr(state_dict[k], "shape", None)
            if got is None or tuple(got) != tuple(shape):
                found = type(state_dict[k]).__name__ if got is None else tuple(got)
                bad.append(f"{k} {found} (expected {tuple(shape)})")
    if not (missing or extra or bad):
        return None
    first = (missing + bad)[:1] or extra[:1]
    summary = f"{len(missing)} missing / {len(bad)} mis-shaped keys"
    if extra:
        summary += f" / {len(extra)} unexpected"
    parts = [f"checkpoint does not match the model config: {summary} (first: {first[0]})"]
    for label, items in (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes", bad)):
        if items:
            parts.append(f"{label}: {', '.join(items[:5])}{', …' if len(items) > 5 else ''} ({len(items)})")
    return "; ".join(parts)
