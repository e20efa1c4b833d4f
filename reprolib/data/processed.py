"""The processed-split layout the dissimilarity network trains and evaluates on (spec §4.3–4.4).

Folders ``original/ semantic/ synthesis/ <label_dir>/`` and, with uncertainty maps, ``entropy/
logit_distance/ mae_features/``. Files in each folder are paired by natural sort of their names and the
counts must be equal, as the original does; unlike the original, the names must also be the same in every
folder (a renamed file is an error naming it, not a silent mispairing). Every input is resized to ``size``
with NEAREST by default — the original's choice for all inputs, RGB included (spec §4.3) —
``image_resize="bilinear"`` is offered for the two RGB images. Horizontal flips are drawn per (seed, epoch,
index), so a run is reproducible and a resumed run sees the same augmentation.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from natsort import natsorted

from reprolib.data.formats import MAP_FOLDERS
from reprolib.data.transforms import (
    check_image_resize,
    check_size,
    one_hot,
    resize_image,
    resize_labels,
    to_tensor_image,
    to_tensor_long,
)
from reprolib.io import PathLike, ReprolibDataError, read_png
from reprolib.labels import IGNORE_INDEX, NUM_CLASSES

SUFFIX_KEYS = ("original", "semantic", "synthesis", *MAP_FOLDERS)
#: environment variable: MiB of decoded PNGs kept per process (0 turns the cache off)
DECODE_CACHE_ENV = "REPROLIB_DECODE_CACHE_MB"


class DecodedPNGs:
    """Process-wide LRU of decoded PNGs, keyed by (path, mtime, size, mode): what a processed split's items
    are made of, so the runs of a table that share a split decode each file once.

    A demo Table 4 trains 9 runs on one split: PNG decoding was 4.1 s of each run's 57 s. A file rewritten in
    place (new mtime or size) is read again; every hit returns a copy, so callers may write to it.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = int(max_bytes), 0
        self._arrays: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # DataLoader threads, or a notebook's background work

    @classmethod
    def from_env(cls) -> DecodedPNGs:
        value = os.environ.get(DECODE_CACHE_ENV, "512")
        try:
            mib = float(value)
        except ValueError:
            raise ValueError(f"${DECODE_CACHE_ENV} must be a number of MiB, got {value!r}") from None
        return cls(int(max(mib, 0.0) * 2**20))

    def read(self, path: Path, mode: str, expect_size: tuple[int, int] | None = None,
             reference: Path | None = None) -> np.ndarray:
        """:func:`reprolib.io.read_png` (same checks and errors), from memory when this file was read before."""
        try:
            st = path.stat()
        except OSError:
            return read_png(path, mode=mode, expect_size=expect_size, reference=reference)  # its error names the file
        key = (str(path), st.st_mtime_ns, st.st_size, mode)
        with self._lock:
            arr = self._arrays.get(key)
            if arr is not None:
                self._arrays.move_to_end(key)
        if arr is None or (expect_size is not None and tuple(arr.shape[:2]) != tuple(expect_size)):
            arr = read_png(path, mode=mode, expect_size=expect_size, reference=reference)
            self._store(key, arr)
        return arr.copy()

    def _store(self, key: tuple, arr: np.ndarray) -> None:
        if arr.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._arrays.pop(key, None)
            self.bytes -= 0 if old is None else old.nbytes
            self._arrays[key] = arr  # callers only ever get copies of it
            self.bytes += arr.nbytes
            while self.bytes > self.max_bytes:
                _, dropped = self._arrays.popitem(last=False)
                self.bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._arrays.clear()
            self.bytes = 0


DECODED = DecodedPNGs.from_env()


class ProcessedSplit(torch.utils.data.Dataset):
    """A processed split as the dissimilarity network reads it.

    Items: ``original``, ``synthesis`` (3,H,W) float32 (ImageNet-normalised when ``normalize``, else [0,1]);
    ``semantic`` (19,H,W) float32 one-hot of trainIds, void/255 all-zero; ``label`` (H,W) int64 0/1/255;
    with ``uncertainty``: ``entropy``, ``perceptual``, ``distance`` (1,H,W) float32 = PNG/255; ``name`` (stem
    of the original image).

    ``suffixes`` selects light-pipeline folders, e.g. ``{"semantic": "_icnet", "synthesis": "_spade",
    "entropy": "_icnet", "distance": "_icnet", "perceptual": "_spade"}`` → ``semantic_icnet/`` … .
    ``flip=True`` mirrors all inputs together with p = 0.5, drawn from a ``torch.Generator`` seeded by
    (``seed``, epoch, index); call :meth:`set_epoch` at the start of each epoch.
    """

    def __init__(self, root: PathLike, label_dir: str = "labels", size: tuple[int, int] | None = (256, 512),
                 uncertainty: bool = True, flip: bool = False, normalize: bool = True,
                 suffixes: dict[str, str] | None = None, seed: int = 0, image_resize: str = "nearest"):
        self.root = Path(root)
        self.size = check_size(size)
        self.image_resize = check_image_resize(image_resize)
        self.uncertainty, self.flip, self.normalize = uncertainty, flip, normalize
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed, self.epoch = int(seed), 0
        sfx = dict(suffixes or {})
        unknown = sorted(set(sfx) - set(SUFFIX_KEYS))
        if unknown:
            raise ValueError(f"unknown suffixes keys {unknown}; expected some of {SUFFIX_KEYS}")
        self.dirs = {"original": "original" + sfx.get("original", ""), "semantic": "semantic" + sfx.get("semantic", ""),
                     "synthesis": "synthesis" + sfx.get("synthesis", ""), "label": label_dir}
        if uncertainty:
            for key, folder in MAP_FOLDERS.items():
                self.dirs[key] = folder + sfx.get(key, "")
        if not self.root.is_dir():
            raise ReprolibDataError(self.root, "processed split folder not found")
        self.files: dict[str, list[Path]] = {}
        for key, folder in self.dirs.items():
            d = self.root / folder
            if not d.is_dir():
                raise ReprolibDataError(d, f"folder {folder}/ missing from the processed split (needed for {key!r})")
            self.files[key] = natsorted(d.glob("*.png"), key=lambda p: p.name)
        counts = {self.dirs[k]: len(v) for k, v in self.files.items()}
        if len(set(counts.values())) != 1:
            listing = ", ".join(f"{folder}/: {n}" for folder, n in counts.items())
            raise ReprolibDataError(self.root, f"folders hold different numbers of images ({listing}); "
                                               "files are paired by natural sort, so counts must match")
        if not counts[self.dirs["original"]]:
            raise ReprolibDataError(self.root / self.dirs["original"], "no PNG images")
        # pairing by position is only right if every folder holds the same names: one renamed or foreign
        # file would silently pair image i with the map of image i+1
        stems = [p.stem for p in self.files["original"]]
        for files in self.files.values():
            other = [p.stem for p in files]
            if other != stems:
                i = next(j for j, (a, b) in enumerate(zip(stems, other, strict=True)) if a != b)
                raise ReprolibDataError(files[i], f"does not pair with {self.dirs['original']}/{stems[i]}.png: every "
                                                  "folder of a processed split must hold the same file names")

    def __len__(self) -> int:
        return len(self.files["original"])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose flips :meth:`__getitem__` draws (call once per epoch, before iterating)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def names(self) -> list[str]:
        """Stems of the original images, in item order."""
        return [p.stem for p in self.files["original"]]

    def flip_decision(self, index: int, epoch: int | None = None) -> bool:
        """Whether item ``index`` is mirrored in ``epoch`` (default: the current one); pure in (seed, epoch, index)."""
        if not self.flip:
            return False
        epoch = self.epoch if epoch is None else int(epoch)
        index = int(index) % len(self)  # ds[-1] flips like ds[len - 1]
        # SeedSequence mixes the three integers into a well-spread 63-bit seed (no collisions between
        # nearby tuples, unlike a linear combination), independent of Python's hash randomisation.
        state = np.random.SeedSequence([self.seed, epoch, int(index)]).generate_state(2, np.uint32)
        g = torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))
        return bool(torch.rand((), generator=g).item() < 0.5)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        f = {k: v[index] for k, v in self.files.items()}
        original = DECODED.read(f["original"], "RGB")
        hw = original.shape[:2]
        synthesis = DECODED.read(f["synthesis"], "RGB", expect_size=hw, reference=f["original"])
        semantic = DECODED.read(f["semantic"], "L", expect_size=hw, reference=f["original"])
        label = DECODED.read(f["label"], "L", expect_size=hw, reference=f["original"])
        bad = (semantic >= NUM_CLASSES) & (semantic != IGNORE_INDEX)
        if bad.any():
            found = np.unique(semantic[bad])[:5].tolist()
            raise ReprolibDataError(f["semantic"], f"trainIds must be 0..18 or 255; found {found}")
        bad = (label != 0) & (label != 1) & (label != 255)
        if bad.any():
            found = np.unique(label[bad])[:5].tolist()
            raise ReprolibDataError(f["label"], f"labels must be 0, 1 or 255; found {found}")
        size = self.size or hw
        item: dict[str, Any] = {
            "original": to_tensor_image(resize_image(original, size, self.image_resize), self.normalize),
            "synthesis": to_tensor_image(resize_image(synthesis, size, self.image_resize), self.normalize),
            "semantic": one_hot(resize_labels(semantic, size), NUM_CLASSES),
            "label": to_tensor_long(resize_labels(label, size)),
            "name": f["original"].stem,
        }
        if self.uncertainty:
            for key in MAP_FOLDERS:
                m = DECODED.read(f[key], "L", expect_size=hw, reference=f["original"])
                item[key] = torch.from_numpy(resize_labels(m, size).astype(np.float32) / 255.0).unsqueeze(0)
        if self.flip_decision(index):
            for key, value in item.items():
                if isinstance(value, torch.Tensor):
                    item[key] = value.flip(-1)
        return item
