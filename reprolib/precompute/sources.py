"""What :func:`reprolib.precompute.precompute` reads: :class:`SourceItem`, the :class:`PrecomputeSource`
protocol, and the two sources the package ships.

* a processed split made by the training-data generator (a path, or a ``ProcessedSplit`` with ``.root``):
  ``original/`` + altered ``semantic/`` (+ ``semantic_labelId/``) + ``labels*/``. By spec §4.5 the semantic
  input is the *altered ground truth*; entropy / distance come from segmenting the unaltered real image;
  the resynthesis is of the altered map, so V compares the real image with it;
* a torch Dataset whose items are dicts with ``image`` and ``name`` and either ``label`` (Fishyscapes
  L&F / Static: 0/1/255, written to ``labels/`` and ``labels_with_ROI/`` — the Fishyscapes masks already
  void everything outside the region of interest) or Cityscapes ``train_ids`` / ``label_ids`` (no anomalies:
  ``labels/`` is 0 on known classes, 255 on void);
* any object implementing :class:`PrecomputeSource`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from natsort import natsorted

from reprolib.data.formats import LABEL_DIRS
from reprolib.io import PathLike, ReprolibDataError, file_sha256, read_png
from reprolib.labels import IGNORE_INDEX, NUM_CLASSES, label_to_train, train_to_label


@dataclass
class SourceItem:
    """One input image and what the source knows about it (all at the source's own resolution)."""

    name: str
    image: torch.Tensor  # (3,H,W) float in [0,1]
    semantic_train_ids: torch.Tensor | None = None  # (H,W) long, e.g. the altered GT of generated data
    semantic_label_ids: torch.Tensor | None = None  # (H,W) long labelIds matching semantic_train_ids
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # dir name → (H,W) uint8 0/1/255

@runtime_checkable
class PrecomputeSource(Protocol):
    """What :func:`precompute` reads: indexable :class:`SourceItem` s plus a content fingerprint."""

    kind: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> SourceItem: ...

    def fingerprint(self) -> str: ...

def _listing_hash(paths: list[Path], root: Path) -> str:
    """Hash of relative names and contents (sha256, memoised per process on path, size and mtime: see
    :func:`reprolib.io.file_sha256`), so a copy or another clone of the same files names the same split."""
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.relative_to(root)}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()[:16]

#: the values each folder of a generated split may hold (8-bit lookup tables) and how to say so
_ALLOWED = {
    "semantic": (np.r_[np.arange(NUM_CLASSES), IGNORE_INDEX], "trainIds 0..18 or 255"),
    "semantic_labelId": (np.arange(34), "Cityscapes labelIds 0..33"),
    "labels": (np.array([0, 1, IGNORE_INDEX]), "anomaly masks of 0, 1 or 255"),
}


def _read_checked(path: Path, size: tuple[int, int], kind: str, image: Path) -> np.ndarray:
    """An 8-bit map of a generated split, its values checked here: a bad value would otherwise surface later
    (in a backend's input, or as a cached label) without the name of the file it came from."""
    arr = read_png(path, mode="L", expect_size=size, reference=image)
    values, what = _ALLOWED[kind]
    ok = np.zeros(256, bool)
    ok[values] = True
    if not ok[arr].all():
        raise ReprolibDataError(path, f"expected {what}, found {np.unique(arr[~ok[arr]])[:5].tolist()}")
    return arr


class GeneratedSplitSource:
    """A processed split from the training-data generator: ``original/``, ``semantic/`` (altered trainIds),
    optional ``semantic_labelId/`` (altered labelIds), and any of the ``labels*/`` folders."""

    kind = "generated"

    def __init__(self, root: PathLike):
        self.root = Path(root)
        orig = self.root / "original"
        if not orig.is_dir():
            raise ReprolibDataError(self.root, "not a processed split: no original/ folder")
        self.files = natsorted(orig.glob("*.png"), key=lambda p: p.name)
        if not self.files:
            raise ReprolibDataError(orig, "no PNG images")
        self.stems = [p.stem for p in self.files]
        self.has_semantic = (self.root / "semantic").is_dir()
        self.has_label_ids = (self.root / "semantic_labelId").is_dir()
        self.label_dirs = [d for d in LABEL_DIRS if (self.root / d).is_dir()]
        for d in ["semantic"] * self.has_semantic + ["semantic_labelId"] * self.has_label_ids + self.label_dirs:
            missing = [s for s in self.stems if not (self.root / d / f"{s}.png").is_file()]
            if missing:
                raise ReprolibDataError(self.root / d, f"{len(missing)} image(s) without a file here, e.g. "
                                                        f"{missing[0]}.png")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SourceItem:
        stem = self.stems[index]
        rgb = read_png(self.files[index], mode="RGB")
        size = rgb.shape[:2]
        item = SourceItem(stem, torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0)
        if self.has_semantic:
            train = _read_checked(self.root / "semantic" / f"{stem}.png", size, "semantic", self.files[index])
            item.semantic_train_ids = torch.from_numpy(train.astype(np.int64))
            if self.has_label_ids:
                lab = _read_checked(self.root / "semantic_labelId" / f"{stem}.png", size, "semantic_labelId",
                                    self.files[index])
                item.semantic_label_ids = torch.from_numpy(lab.astype(np.int64))
        for d in self.label_dirs:
            label = _read_checked(self.root / d / f"{stem}.png", size, "labels", self.files[index])
            item.labels[d] = torch.from_numpy(label.copy())
        return item

    def fingerprint(self) -> str:
        dirs = ["original", "semantic", "semantic_labelId", *self.label_dirs]
        files = [p for d in dirs if (self.root / d).is_dir() for p in sorted((self.root / d).glob("*.png"))]
        return _listing_hash(files, self.root)


@dataclass
class RecordedSource:
    """A source known only by what a finished split's ``key.json`` recorded of it (kind, fingerprint, length, whether
    it held a semantic map): enough to name that split (:func:`reprolib.precompute.find_done`), not to compute it. Its
    files may be gone (a generated folder a session's output left out: :mod:`reprolib.experiments.session`)."""

    kind: str
    recorded_fingerprint: str
    length: int
    has_semantic: bool = False

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> SourceItem:
        raise ReprolibDataError(None, f"the {self.kind} source {self.recorded_fingerprint} is known by its recorded "
                                      "fingerprint only: its images cannot be read (precompute it from its files)")

    def fingerprint(self) -> str:
        return self.recorded_fingerprint


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x.copy())
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"dataset item field {name!r} must be a tensor or array, got {type(x).__name__}")
    return x

class DatasetSource:
    """Adapter for the torch Datasets of :mod:`reprolib.data` (Fishyscapes L&F / Static, Cityscapes).

    ``dataset.fingerprint()`` (or a ``fingerprint`` string) is used when present; otherwise the fingerprint
    covers the class, length, simple attributes and a name/content listing of every folder attribute.
    """

    def __init__(self, dataset: Any, kind: str | None = None):
        self.dataset = dataset
        self.kind = kind or type(dataset).__name__.lower().replace("dataset", "") or "dataset"

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> SourceItem:
        raw = self.dataset[index]
        if not isinstance(raw, Mapping) or "image" not in raw:
            raise ValueError(f"dataset item {index} must be a dict with an 'image' entry, got {type(raw).__name__}")
        image = _as_tensor(raw["image"], "image")
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"dataset item {index}: image must be (3,H,W), got {tuple(image.shape)}")
        image = image.float() / 255.0 if not image.is_floating_point() else image.float()
        name = str(raw.get("name", f"{index:06d}"))
        item = SourceItem(_safe_stem(name), image.clamp(0, 1))
        if "label" in raw:  # Fishyscapes: the mask already voids everything outside the ROI
            label = _as_tensor(raw["label"], "label").to(torch.uint8)
            item.labels = {"labels": label, "labels_with_ROI": label}
        if "train_ids" in raw or "label_ids" in raw:
            if "label_ids" in raw:
                lab = _as_tensor(raw["label_ids"], "label_ids").long()
                train = torch.from_numpy(label_to_train(lab.numpy()).astype(np.int64))
            else:
                train = _as_tensor(raw["train_ids"], "train_ids").long()
                lab = torch.from_numpy(train_to_label(train.numpy()).astype(np.int64))
            item.semantic_train_ids, item.semantic_label_ids = train, lab
            if "label" not in raw:  # Cityscapes: nothing is anomalous; void is ignored
                item.labels = {"labels": torch.where(train == IGNORE_INDEX, IGNORE_INDEX, 0).to(torch.uint8)}
        return item

    def fingerprint(self) -> str:
        given = getattr(self.dataset, "fingerprint", None)
        if callable(given):
            given = given()
        if isinstance(given, str) and given:
            return given
        h = hashlib.sha256(f"{type(self.dataset).__module__}.{type(self.dataset).__qualname__}\0{len(self)}".encode())
        on_disk = False
        for key, value in sorted(getattr(self.dataset, "__dict__", {}).items()):
            if isinstance(value, (str, int, float, bool, tuple, type(None))):
                h.update(f"{key}={value!r}\n".encode())
            if isinstance(value, (str, os.PathLike)) and Path(value).is_dir():
                root = Path(value)
                on_disk = True
                h.update(_listing_hash(sorted(p for p in root.rglob("*") if p.is_file()), root).encode())
        if not on_disk:  # in-memory data (a list of dicts, a synthetic Dataset): hash the content itself
            for i in range(len(self)):
                item = self[i]
                h.update(item.name.encode())
                for t in (item.image, item.semantic_train_ids, *item.labels.values()):
                    if t is not None:
                        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

def _safe_stem(name: str) -> str:
    stem = Path(name).name
    stem = stem[:-4] if stem.lower().endswith(".png") else stem
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", stem)
    if not stem or stem.startswith("."):
        raise ValueError(f"cannot make a file name from item name {name!r}")
    return stem

def as_source(dataset: Any) -> PrecomputeSource:
    """Wrap whatever :func:`precompute` was given into a :class:`PrecomputeSource`."""
    if isinstance(dataset, (str, os.PathLike)):
        return GeneratedSplitSource(dataset)
    if isinstance(dataset, PrecomputeSource) and hasattr(dataset, "kind"):
        return dataset
    root = getattr(dataset, "root", None)
    if root is not None and (Path(root) / "original").is_dir() and (Path(root) / "semantic").is_dir():
        return GeneratedSplitSource(root)  # a ProcessedSplit: read its folders directly
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        return DatasetSource(dataset)
    raise ValueError(f"cannot precompute over {type(dataset).__name__}: expected a processed-split folder, a "
                     "Dataset of dicts (image, name, label | train_ids) or a PrecomputeSource")
