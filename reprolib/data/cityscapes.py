"""Cityscapes in its official layout (``leftImg8bit`` + ``gtFine``), as a torch Dataset.

Every image must have its ``labelIds`` and ``instanceIds`` (checked at construction, so a broken download
fails before a long run starts); ``labelTrainIds`` is used when present, otherwise computed from the
official cityscapesscripts table (:func:`reprolib.labels.label_to_train`). File contents are checked when
an item is read: unreadable / truncated PNGs, label ids outside the table, and size mismatches raise
:class:`~reprolib.io.ReprolibDataError` naming the file.
"""

from __future__ import annotations

import hashlib
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
from reprolib.labels import IGNORE_INDEX, NUM_CLASSES, VALID_LABEL_IDS, label_to_train

_VALID_LABEL_LUT = np.zeros(256, dtype=bool)
_VALID_LABEL_LUT[sorted(VALID_LABEL_IDS)] = True
_VALID_TRAIN_LUT = np.zeros(256, dtype=bool)
_VALID_TRAIN_LUT[list(range(NUM_CLASSES)) + [IGNORE_INDEX]] = True
_IMAGE_SUFFIX = "_leftImg8bit.png"


def check_label_ids(label_ids: np.ndarray, path: PathLike) -> None:
    """Raise :class:`ReprolibDataError` if ``label_ids`` holds ids outside the Cityscapes label table."""
    ids = np.asarray(label_ids).astype(np.int64)
    bad = (ids < 0) | (ids > 255)
    bad |= ~_VALID_LABEL_LUT[ids.clip(0, 255)]
    if bad.any():
        found = np.unique(ids[bad])[:8].tolist()
        raise ReprolibDataError(path, f"label ids outside the Cityscapes table: {found}")


def check_train_ids(train_ids: np.ndarray, path: PathLike) -> None:
    """Raise :class:`ReprolibDataError` unless every value is a trainId 0..18 or 255."""
    bad = ~_VALID_TRAIN_LUT[np.asarray(train_ids).astype(np.int64).clip(0, 255)]
    if bad.any():
        raise ReprolibDataError(path, f"trainIds must be 0..18 or 255; found {np.unique(train_ids[bad])[:8].tolist()}")


def check_instance_ids(instance_ids: np.ndarray, label_ids: np.ndarray, path: PathLike) -> None:
    """Instance ids ≥ 1000 encode labelId·1000 + k, every other pixel stores its labelId (cityscapesScripts
    ``json2instanceImg``: stuff, void and crowd groups); both must agree with the labelIds image. The second rule
    catches an instanceIds file not in that 16-bit encoding (e.g. an 8-bit copy, ids clipped to 255), which
    would otherwise read as an image without instances."""
    inst = instance_ids >= 1000
    wrong = inst & (instance_ids // 1000 != label_ids)
    if wrong.any():
        raise ReprolibDataError(path, f"{int(wrong.sum())} pixels whose instance id (labelId·1000+k) disagrees "
                                      f"with the labelIds image, e.g. {int(instance_ids[wrong][0])}")
    wrong = ~inst & (instance_ids != label_ids)
    if wrong.any():
        i = np.flatnonzero(wrong.ravel())[0]
        raise ReprolibDataError(path, f"{int(wrong.sum())} pixels whose instance id is below 1000 but not their "
                                      f"labelId (the encoding stores the labelId there), e.g. "
                                      f"{int(instance_ids.ravel()[i])} on labelId {int(label_ids.ravel()[i])}: "
                                      "not a 16-bit Cityscapes instanceIds image")


class CityscapesDataset(torch.utils.data.Dataset):
    """Cityscapes images with ``labelIds``, ``instanceIds`` and trainIds.

    Items: ``image`` (3,H,W) float32 in [0,1]; ``label_ids``, ``train_ids`` (255 = void), ``instance_ids``
    (H,W) int64; ``name`` (frame id ``{city}_{seq}_{frame}``); ``path`` (the image) and ``paths`` (dict of
    the files read; ``train_ids`` is ``""`` when computed from the table). ``size=(H,W)`` resizes (labels
    always NEAREST, the image by ``image_resize``); ``None`` (default) keeps the native resolution.
    """

    def __init__(self, root: PathLike, split: str = "train", size: tuple[int, int] | None = None,
                 image_resize: str = "bilinear", gt: str = "gtFine"):
        self.root, self.split, self.gt = Path(root), split, gt
        self.size = check_size(size)
        self.image_resize = check_image_resize(image_resize)
        if not self.root.is_dir():
            raise ReprolibDataError(self.root, "Cityscapes root folder not found (expected <root>/leftImg8bit, <root>/gtFine)")
        img_dir = self.root / "leftImg8bit" / split
        if not img_dir.is_dir():
            raise ReprolibDataError(img_dir, f"Cityscapes image folder for split {split!r} not found "
                                             "(expected <root>/leftImg8bit/<split>/<city>/)")
        self.frames: list[F.FrameId] = []
        for p in sorted(img_dir.glob(f"*/*{_IMAGE_SUFFIX}")):
            try:
                self.frames.append(F.FrameId.parse(p.name[: -len(_IMAGE_SUFFIX)]))
            except ValueError:
                raise ReprolibDataError(p, "image name is not {city}_{seq:06d}_{frame:06d}_leftImg8bit.png") from None
        if not self.frames:
            raise ReprolibDataError(img_dir, "no <city>/*_leftImg8bit.png images found")
        for fid in self.frames:
            for kind in ("labelIds", "instanceIds"):
                path = F.cityscapes_gt_path(self.root, split, fid, kind, gt)
                if not path.is_file():
                    raise ReprolibDataError(path, f"label file missing for image {fid.stem}_leftImg8bit.png")

    def __len__(self) -> int:
        return len(self.frames)

    def paths(self, index: int) -> dict[str, Path]:
        """Files of item ``index``: image, label_ids, instance_ids, train_ids (may not exist)."""
        fid = self.frames[index]
        gt = lambda kind: F.cityscapes_gt_path(self.root, self.split, fid, kind, self.gt)  # noqa: E731
        return {"image": F.cityscapes_image_path(self.root, self.split, fid), "label_ids": gt("labelIds"),
                "instance_ids": gt("instanceIds"), "train_ids": gt("labelTrainIds")}

    def fingerprint(self) -> str:
        """Content key: split, size, resize mode, and the name and sha256 of the images and labelIds (not their
        mtimes: a copy, another clone or a Kaggle mount of the same files gets the same key)."""
        h = hashlib.sha256(f"{self.split}|{self.size}|{self.image_resize}|{self.gt}".encode())
        for i, fid in enumerate(self.frames):
            for key in ("image", "label_ids"):
                h.update(f"{fid.stem}:{key}:{file_sha256(self.paths(i)[key])}\n".encode())
        return h.hexdigest()[:16]

    def load_arrays(self, index: int) -> dict[str, np.ndarray]:
        """Native-resolution arrays of item ``index``, validated: ``image`` (H,W,3) uint8, ``label_ids``,
        ``train_ids`` (H,W) uint8, ``instance_ids`` (H,W) int32."""
        p = self.paths(index)
        image = read_png(p["image"], mode="RGB")
        hw = image.shape[:2]
        label_ids = read_png(p["label_ids"], mode="L", expect_size=hw, reference=p["image"])
        check_label_ids(label_ids, p["label_ids"])
        instance_ids = read_png(p["instance_ids"], mode="I", expect_size=hw, reference=p["image"])
        check_instance_ids(instance_ids, label_ids, p["instance_ids"])
        if p["train_ids"].is_file():
            train_ids = read_png(p["train_ids"], mode="L", expect_size=hw, reference=p["image"])
            check_train_ids(train_ids, p["train_ids"])
        else:
            train_ids = label_to_train(label_ids)
        return {"image": image, "label_ids": label_ids, "train_ids": train_ids, "instance_ids": instance_ids}

    def __getitem__(self, index: int) -> dict[str, Any]:
        a = self.load_arrays(index)
        p = self.paths(index)
        return {
            "image": to_tensor_image(resize_image(a["image"], self.size, self.image_resize)),
            "label_ids": to_tensor_long(resize_labels(a["label_ids"], self.size)),
            "train_ids": to_tensor_long(resize_labels(a["train_ids"], self.size)),
            "instance_ids": to_tensor_long(resize_labels(a["instance_ids"], self.size)),
            "name": self.frames[index].stem,
            "path": str(p["image"]),
            "paths": {k: (str(v) if k != "train_ids" or v.is_file() else "") for k, v in p.items()},
        }
