"""Fishyscapes validation sets in their official formats (see :mod:`reprolib.data.formats`).

* Lost & Found: ``{fs_id}_{laf_id}_labels.png`` masks; images from the Lost & Found ``leftImg8bit`` tree.
* Static: ``{fs_id}_{cityscapes_id}_labels.png`` + ``..._rgb.npz`` overlays on Cityscapes val images;
  the image is rebuilt exactly as the official set does: ``clip(base + overlay, 0, 255)``.

Items: ``image`` (3,H,W) float [0,1], ``label`` (H,W) long in {0, 1, 255}, ``name``. Evaluation reads
at the native resolution unless ``size`` is given (labels nearest).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprolib.data import formats as F
from reprolib.data.transforms import resize_image, resize_labels, to_tensor_image
from reprolib.io import PathLike, ReprolibDataError, read_png


def _check_mask(label: np.ndarray, path: Path) -> None:
    bad = ~np.isin(label, (0, 1, 255))
    if bad.any():
        raise ReprolibDataError(path, f"Fishyscapes masks hold 0, 1 or 255; found {np.unique(label[bad])[:8].tolist()}")


class _FishyscapesBase(torch.utils.data.Dataset):
    def __init__(self, root: PathLike, size: tuple[int, int] | None, image_resize: str):
        self.root, self.size, self.image_resize = Path(root), size, image_resize
        if not self.root.is_dir():
            raise ReprolibDataError(self.root, "Fishyscapes folder not found")
        self.items: list[tuple[str, str, Path]] = []
        for p in sorted(self.root.glob("*_labels.png")):
            fs_id, base_id = F.parse_fishyscapes_labels_name(p.name)
            self.items.append((fs_id, base_id, p))
        if not self.items:
            raise ReprolibDataError(self.root, "no *_labels.png masks found")

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(f"{type(self).__name__}|{self.size}".encode())
        for _, base, p in self.items:
            h.update(f"{base}:{p.stat().st_size}".encode())
        return h.hexdigest()[:16]

    def _item(self, image: np.ndarray, label: np.ndarray, label_path: Path, name: str) -> dict[str, Any]:
        _check_mask(label, label_path)
        if label.shape != image.shape[:2]:
            raise ReprolibDataError(label_path, f"mask size {label.shape[::-1]} differs from its image {image.shape[1::-1]}")
        return {
            "image": to_tensor_image(resize_image(image, self.size, self.image_resize)),
            "label": torch.from_numpy(resize_labels(label, self.size).astype(np.int64)),
            "name": name,
        }


class LostAndFoundDataset(_FishyscapesBase):
    """FS Lost & Found val. ``laf_root`` = the Lost & Found tree holding ``leftImg8bit/{train,test}/``;
    default: ``<root>/../../lostandfound`` (the embedded world's layout)."""

    def __init__(self, root: PathLike, laf_root: PathLike | None = None, size: tuple[int, int] | None = None,
                 image_resize: str = "bilinear"):
        super().__init__(root, size, image_resize)
        self.laf_root = Path(laf_root) if laf_root is not None else self.root.parent.parent / F.WORLD_LOSTANDFOUND
        self.images: list[Path] = []
        for _, laf_id, label_path in self.items:
            city = F.FrameId.parse(laf_id).city
            hits = sorted((self.laf_root / "leftImg8bit").glob(f"*/{city}/{laf_id}_leftImg8bit.png"))
            if not hits:
                raise ReprolibDataError(label_path, f"no Lost & Found image {laf_id}_leftImg8bit.png under "
                                                    f"{self.laf_root / 'leftImg8bit'}")
            self.images.append(hits[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        fs_id, laf_id, label_path = self.items[index]
        return self._item(read_png(self.images[index], mode="RGB"), read_png(label_path, mode="L"), label_path,
                          f"{fs_id}_{laf_id}")


class StaticDataset(_FishyscapesBase):
    """FS Static val rebuilt from Cityscapes val images (``cityscapes_root``) and the signed overlays."""

    def __init__(self, root: PathLike, cityscapes_root: PathLike, size: tuple[int, int] | None = None,
                 image_resize: str = "bilinear"):
        super().__init__(root, size, image_resize)
        self.cityscapes_root = Path(cityscapes_root)
        self.bases: list[Path] = []
        self.overlays: list[Path] = []
        for fs_id, base_id, label_path in self.items:
            base = F.cityscapes_image_path(self.cityscapes_root, "val", F.FrameId.parse(base_id))
            if not base.is_file():
                raise ReprolibDataError(base, f"Cityscapes val image needed by {label_path.name} not found")
            overlays = sorted(self.root.glob(f"{fs_id}_*rgb.npz"))
            if not overlays:
                raise ReprolibDataError(label_path, f"overlay {fs_id}_..._rgb.npz missing")
            self.bases.append(base)
            self.overlays.append(overlays[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        fs_id, base_id, label_path = self.items[index]
        base = read_png(self.bases[index], mode="RGB").astype(np.int32)
        try:
            with np.load(self.overlays[index]) as z:
                overlay = z["rgb"].astype(np.int32)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ReprolibDataError(self.overlays[index], f"unreadable overlay (expected key 'rgb'): {exc}") from None
        if overlay.shape != base.shape:
            raise ReprolibDataError(self.overlays[index], f"overlay shape {overlay.shape} != image shape {base.shape}")
        image = np.clip(base + overlay, 0, 255).astype(np.uint8)
        return self._item(image, read_png(label_path, mode="L"), label_path, f"{fs_id}_{base_id}")
