"""The processed-split layout the dissimilarity network trains and evaluates on (spec §4.3–4.4).

``original/ semantic/ synthesis/ <label_dir>/`` and, with uncertainty maps, ``entropy/ logit_distance/
mae_features/``; files paired by natural sort of their names, as the original does. Everything is resized
to ``size`` with NEAREST by default — the original's choice for every input, RGB included (spec §4.3) —
``image_resize="bilinear"`` is offered for the RGB images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from natsort import natsorted

from reprolib.data.transforms import one_hot, resize_image, resize_labels, to_tensor_image
from reprolib.io import PathLike, ReprolibDataError, read_png

MAP_FOLDERS = {"entropy": "entropy", "distance": "logit_distance", "perceptual": "mae_features"}
LABEL_DIRS = ("labels", "labels_with_ROI", "labels_with_void_no_ego", "labels_with_void")


class ProcessedSplit(torch.utils.data.Dataset):
    """Items: ``original``/``synthesis`` (3,H,W), ``semantic`` (19,H,W) one-hot (void all-zero), ``label``
    (H,W) long 0/1/255, and with ``uncertainty`` ``entropy``/``perceptual``/``distance`` (1,H,W) in [0,1].

    ``flip=True`` mirrors all inputs together with p = 0.5, drawn from a generator seeded by
    (seed, epoch, index) — reproducible and resumable; call :meth:`set_epoch` each epoch.
    ``suffixes`` selects light-pipeline folders, e.g. ``{"semantic": "_icnet", "synthesis": "_spade"}``.
    """

    def __init__(self, root: PathLike, label_dir: str = "labels", size: tuple[int, int] | None = (256, 512),
                 uncertainty: bool = True, flip: bool = False, normalize: bool = True,
                 suffixes: dict[str, str] | None = None, seed: int = 0, image_resize: str = "nearest"):
        self.root, self.size, self.uncertainty, self.flip = Path(root), size, uncertainty, flip
        self.normalize, self.seed, self.image_resize, self.epoch = normalize, seed, image_resize, 0
        sfx = suffixes or {}
        self.dirs = {"original": "original", "semantic": "semantic" + sfx.get("semantic", ""),
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
                raise ReprolibDataError(d, f"folder missing from the processed split (needed for {key})")
            self.files[key] = natsorted(d.glob("*.png"), key=lambda p: p.name)
        counts = {self.dirs[k]: len(v) for k, v in self.files.items()}
        if len(set(counts.values())) != 1 or not counts["original"]:
            raise ReprolibDataError(self.root, f"folders hold different numbers of images: {counts}")

    def __len__(self) -> int:
        return len(self.files["original"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def names(self) -> list[str]:
        return [p.stem for p in self.files["original"]]

    def _flip(self, index: int) -> bool:
        if not self.flip:
            return False
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
        return bool(torch.rand(1, generator=g).item() < 0.5)

    def __getitem__(self, index: int) -> dict[str, Any]:
        f = {k: v[index] for k, v in self.files.items()}
        original = read_png(f["original"], mode="RGB")
        native = original.shape[:2]
        synthesis = read_png(f["synthesis"], mode="RGB")
        semantic = read_png(f["semantic"], mode="L")
        label = read_png(f["label"], mode="L")
        for key, arr in (("synthesis", synthesis), ("semantic", semantic), ("label", label)):
            if arr.shape[:2] != native:
                raise ReprolibDataError(f[key], f"size {arr.shape[1::-1]} differs from original {native[::-1]}")
        bad = ~np.isin(label, (0, 1, 255))
        if bad.any():
            raise ReprolibDataError(f["label"], f"labels must be 0, 1 or 255; found {np.unique(label[bad])[:5].tolist()}")
        size = self.size or native
        item: dict[str, Any] = {
            "original": to_tensor_image(resize_image(original, size, self.image_resize), self.normalize),
            "synthesis": to_tensor_image(resize_image(synthesis, size, self.image_resize), self.normalize),
            "semantic": one_hot(resize_labels(semantic, size)),
            "label": torch.from_numpy(resize_labels(label, size).astype(np.int64)),
            "name": f["original"].stem,
        }
        if self.uncertainty:
            for key in MAP_FOLDERS:
                m = read_png(f[key], mode="L")
                if m.shape != native:
                    raise ReprolibDataError(f[key], f"size {m.shape[::-1]} differs from original {native[::-1]}")
                item[key] = torch.from_numpy(resize_labels(m, size).astype(np.float32) / 255.0).unsqueeze(0)
        if self._flip(index):
            for key, value in item.items():
                if isinstance(value, torch.Tensor):
                    item[key] = value.flip(-1)
        return item
