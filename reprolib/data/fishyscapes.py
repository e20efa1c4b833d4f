"""Fishyscapes validation sets in their official formats (naming in :mod:`reprolib.data.formats`).

* Lost & Found (``fishyscapes_lostandfound.zip``): ``{fs_id:04d}_{laf_id}_labels.png`` masks; the image is the
  Lost & Found left image ``leftImg8bit/<split>/<city>/{laf_id}_leftImg8bit.png``.
* Static (``fs_val_v3.zip``): ``{fs_id:04d}_{cityscapes_id}_labels.png`` + ``..._rgb.npz`` signed overlays on
  Cityscapes val images; the image is rebuilt as the official set is: ``clip(base + overlay, 0, 255)``.

Items: ``image`` (3,H,W) float32 in [0,1], ``label`` (H,W) int64 in {0 known, 1 anomaly, 255 void}, ``name``
(``{fs_id}_{base_id}``). Read at the native (benchmark) resolution unless ``size`` is given (labels NEAREST).
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprolib.data import formats as F
from reprolib.data.transforms import (
    check_image_resize,
    check_size,
    resize_image,
    resize_labels,
    to_tensor_image,
    to_tensor_long,
)
from reprolib.io import PathLike, ReprolibDataError, file_sha256, read_png


def check_mask(label: np.ndarray, path: PathLike) -> None:
    """Raise :class:`ReprolibDataError` unless the mask holds only 0, 1 and 255."""
    bad = (label != 0) & (label != 1) & (label != 255)
    if bad.any():
        raise ReprolibDataError(path, f"Fishyscapes masks hold 0, 1 or 255; found {np.unique(label[bad])[:8].tolist()}")


def _parse_frame(base_id: str, path: Path) -> F.FrameId:
    try:
        return F.FrameId.parse(base_id)
    except ValueError:
        raise ReprolibDataError(path, f"{base_id!r} is not a {{city}}_{{seq:06d}}_{{frame:06d}} frame id") from None


class _FishyscapesBase(torch.utils.data.Dataset):
    """Lists ``*_labels.png`` masks of one Fishyscapes folder; subclasses find the images."""

    def __init__(self, root: PathLike, size: tuple[int, int] | None, image_resize: str):
        self.root = Path(root)
        self.size = check_size(size)
        self.image_resize = check_image_resize(image_resize)
        if not self.root.is_dir():
            raise ReprolibDataError(self.root, "Fishyscapes folder not found")
        self.items: list[tuple[str, str, Path]] = []
        for p in sorted(self.root.glob("*_labels.png")):
            try:
                fs_id, base_id = F.parse_fishyscapes_labels_name(p.name)
            except ValueError:
                raise ReprolibDataError(p, "mask name is not {fs_id:04d}_{base_id}_labels.png") from None
            self.items.append((fs_id, base_id, p))
        if not self.items:
            raise ReprolibDataError(self.root, "no {fs_id:04d}_{base_id}_labels.png masks found")

    def __len__(self) -> int:
        return len(self.items)

    def _image_files(self, index: int) -> list[Path]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Content key: class, size, resize mode, and the name and sha256 of every file read (not their mtimes:
        a copy, another clone or a Kaggle mount of the same files gets the same key)."""
        h = hashlib.sha256(f"{type(self).__name__}|{self.size}|{self.image_resize}".encode())
        for i, (_, _, label_path) in enumerate(self.items):
            for p in (label_path, *self._image_files(i)):
                h.update(f"{p.name}:{file_sha256(p)}\n".encode())
        return h.hexdigest()[:16]

    def _item(self, image: np.ndarray, label_path: Path, name: str, image_path: Path) -> dict[str, Any]:
        label = read_png(label_path, mode="L", expect_size=image.shape[:2], reference=image_path)
        check_mask(label, label_path)
        return {
            "image": to_tensor_image(resize_image(image, self.size, self.image_resize)),
            "label": to_tensor_long(resize_labels(label, self.size)),
            "name": name,
        }


class LostAndFoundDataset(_FishyscapesBase):
    """FS Lost & Found val: ``root`` = the folder of ``*_labels.png`` masks.

    ``laf_root`` = the Lost & Found tree holding ``leftImg8bit/{train,test}/<city>/``. It may be omitted only
    for the embedded world's layout (``root`` = ``WORLD/fishyscapes/LostAndFound``, images in
    ``WORLD/lostandfound``); for a real download pass it explicitly.
    """

    def __init__(self, root: PathLike, laf_root: PathLike | None = None, size: tuple[int, int] | None = None,
                 image_resize: str = "bilinear"):
        super().__init__(root, size, image_resize)
        if laf_root is None:
            world_laf = self.root.parent.parent / F.WORLD_LOSTANDFOUND
            is_world = self.root.resolve().as_posix().endswith(F.WORLD_FS_LAF)
            if not (is_world and world_laf.is_dir()):
                static = " (this folder holds *_rgb.npz overlays: FS Static, --kind fs_static)" if any(
                    self.root.glob("*_rgb.npz")) else ""
                raise ReprolibDataError(self.root, "laf_root is required (the Lost & Found tree with leftImg8bit/; "
                                                   "--laf-root in python -m reprolib evaluate); only the embedded "
                                                   f"world's layout has a default ({world_laf}){static}")
            laf_root = world_laf
        self.laf_root = Path(laf_root)
        splits = sorted(p for p in (self.laf_root / "leftImg8bit").glob("*") if p.is_dir())
        if not splits:
            raise ReprolibDataError(self.laf_root / "leftImg8bit", "Lost & Found image folder not found or empty "
                                                                   "(expected leftImg8bit/{train,test}/<city>/)")
        self.images: list[Path] = []
        for _, laf_id, label_path in self.items:
            city = _parse_frame(laf_id, label_path).city
            name = f"{laf_id}_leftImg8bit.png"
            hits = [s / city / name for s in splits if (s / city / name).is_file()]
            if not hits:
                raise ReprolibDataError(label_path, f"no Lost & Found image {name} under "
                                                    f"{self.laf_root / 'leftImg8bit'}/*/{city}/")
            self.images.append(hits[0])

    def _image_files(self, index: int) -> list[Path]:
        return [self.images[index]]

    def __getitem__(self, index: int) -> dict[str, Any]:
        fs_id, laf_id, label_path = self.items[index]
        return self._item(read_png(self.images[index], mode="RGB"), label_path, f"{fs_id}_{laf_id}", self.images[index])


def load_overlay(path: Path) -> np.ndarray:
    """The signed RGB delta of an FS Static ``*_rgb.npz`` (key ``rgb``, H×W×3)."""
    if not path.is_file():
        raise ReprolibDataError(path, "overlay file not found")
    try:
        loaded = np.load(path, allow_pickle=False)
        plain = not isinstance(loaded, np.lib.npyio.NpzFile)  # a plain .npy array saved under the .npz name
        if not plain:
            with loaded as z:
                overlay = np.asarray(z["rgb"])
    except KeyError:
        raise ReprolibDataError(path, "overlay .npz has no 'rgb' array") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
        # a damaged archive: zlib.error (compressed data), NotImplementedError (zip version / compression field),
        # RuntimeError (a flipped "encrypted" flag) come from zipfile, not only BadZipFile
        raise ReprolibDataError(path, f"unreadable overlay .npz ({type(exc).__name__}: {exc})") from None
    if plain:
        raise ReprolibDataError(path, "not an .npz archive but a plain .npy array; expected an .npz with key 'rgb'")
    if overlay.ndim != 3 or overlay.shape[2] != 3 or not (np.issubdtype(overlay.dtype, np.number)):
        raise ReprolibDataError(path, f"overlay must be a numeric H×W×3 array, got {overlay.dtype} {overlay.shape}")
    if np.issubdtype(overlay.dtype, np.inexact) and not np.isfinite(overlay).all():
        n = int(np.size(overlay) - np.isfinite(overlay).sum())
        raise ReprolibDataError(path, f"overlay holds {n} NaN or infinite values")
    return overlay


def blend_static(base: np.ndarray, overlay: np.ndarray) -> np.ndarray:
    """FS Static image from its Cityscapes base and signed overlay: ``clip(base + overlay, 0, 255)`` as uint8,
    the overlay cast to integers first (truncated, as bdlb's ``overlay.astype(int)``)."""
    return np.clip(base.astype(np.int64) + overlay.astype(np.int64), 0, 255).astype(np.uint8)


class StaticDataset(_FishyscapesBase):
    """FS Static val rebuilt from Cityscapes val images (``cityscapes_root``) and the signed overlays in ``root``."""

    def __init__(self, root: PathLike, cityscapes_root: PathLike, size: tuple[int, int] | None = None,
                 image_resize: str = "bilinear"):
        super().__init__(root, size, image_resize)
        self.cityscapes_root = Path(cityscapes_root)
        self.bases: list[Path] = []
        self.overlays: list[Path] = []
        for fs_id, base_id, label_path in self.items:
            base = F.cityscapes_image_path(self.cityscapes_root, "val", _parse_frame(base_id, label_path))
            if not base.is_file():
                raise ReprolibDataError(base, f"Cityscapes val image needed by {label_path.name} not found")
            overlay = self.root / F.fishyscapes_overlay_name(int(fs_id), base_id)
            if not overlay.is_file():
                # tolerate other base-id spellings in the overlay name, but only if unambiguous
                others = sorted(self.root.glob(f"{fs_id}_*rgb.npz"))
                if len(others) != 1:
                    raise ReprolibDataError(overlay, f"overlay for {label_path.name} missing"
                                                     + (f" (ambiguous: {[p.name for p in others]})" if others else ""))
                overlay = others[0]
            self.bases.append(base)
            self.overlays.append(overlay)

    def _image_files(self, index: int) -> list[Path]:
        return [self.bases[index], self.overlays[index]]

    def __getitem__(self, index: int) -> dict[str, Any]:
        fs_id, base_id, label_path = self.items[index]
        base = read_png(self.bases[index], mode="RGB")
        overlay = load_overlay(self.overlays[index])
        if overlay.shape != base.shape:
            raise ReprolibDataError(self.overlays[index], f"overlay shape {overlay.shape} differs from its image "
                                                          f"{self.bases[index].name} {base.shape}")
        return self._item(blend_static(base, overlay), label_path, f"{fs_id}_{base_id}", self.bases[index])
