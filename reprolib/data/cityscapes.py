"""Cityscapes in its official layout (``leftImg8bit`` + ``gtFine``), as a torch Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprolib.data import formats as F
from reprolib.data.transforms import resize_image, resize_labels, to_tensor_image
from reprolib.io import PathLike, ReprolibDataError, read_png
from reprolib.labels import VALID_LABEL_IDS, label_to_train

_VALID_LUT = np.zeros(256, bool)
_VALID_LUT[list(VALID_LABEL_IDS)] = True


def check_label_ids(label_ids: np.ndarray, path: Path) -> None:
    """Refuse labelIds that are not in the Cityscapes label table."""
    bad = ~_VALID_LUT[label_ids.astype(np.int64).clip(0, 255)] | (label_ids > 255)
    if bad.any():
        raise ReprolibDataError(path, f"label ids outside the Cityscapes table: {np.unique(label_ids[bad])[:8].tolist()}")


class CityscapesDataset(torch.utils.data.Dataset):
    """Images with ``labelIds``, ``instanceIds`` and trainIds (from ``labelTrainIds`` or the official table).

    Items: ``image`` (3,H,W) float [0,1], ``label_ids``, ``train_ids`` (255 = void), ``instance_ids``
    (H,W) long, ``name`` (frame id), ``path``. ``size=(H,W)`` resizes (labels nearest, images by
    ``image_resize``); ``None`` keeps the native resolution.
    """

    def __init__(self, root: PathLike, split: str = "train", size: tuple[int, int] | None = None,
                 image_resize: str = "bilinear", gt: str = "gtFine"):
        self.root, self.split, self.size, self.image_resize, self.gt = Path(root), split, size, image_resize, gt
        img_dir = self.root / "leftImg8bit" / split
        if not img_dir.is_dir():
            raise ReprolibDataError(img_dir, "Cityscapes image folder not found (expected <root>/leftImg8bit/<split>)")
        suffix = "_leftImg8bit.png"
        self.frames = [F.FrameId.parse(p.name[: -len(suffix)]) for p in sorted(img_dir.glob(f"*/*{suffix}"))]
        if not self.frames:
            raise ReprolibDataError(img_dir, "no *_leftImg8bit.png images found")
        for fid in self.frames:
            for kind in ("labelIds", "instanceIds"):
                path = F.cityscapes_gt_path(self.root, split, fid, kind, gt)
                if not path.is_file():
                    raise ReprolibDataError(path, f"label file missing for image {fid.stem}")

    def __len__(self) -> int:
        return len(self.frames)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(f"{self.split}|{self.size}|{self.image_resize}".encode())
        for fid in self.frames:
            p = F.cityscapes_image_path(self.root, self.split, fid)
            h.update(f"{fid.stem}:{p.stat().st_size}".encode())
        return h.hexdigest()[:16]

    def __getitem__(self, index: int) -> dict[str, Any]:
        fid = self.frames[index]
        img_path = F.cityscapes_image_path(self.root, self.split, fid)
        lab_path = F.cityscapes_gt_path(self.root, self.split, fid, "labelIds", self.gt)
        inst_path = F.cityscapes_gt_path(self.root, self.split, fid, "instanceIds", self.gt)
        image = read_png(img_path, mode="RGB")
        label_ids = read_png(lab_path, mode="L")
        inst = read_png(inst_path, mode="I")
        for arr, path in ((label_ids, lab_path), (inst, inst_path)):
            if arr.shape != image.shape[:2]:
                raise ReprolibDataError(path, f"size {arr.shape[::-1]} differs from its image {image.shape[1::-1]}")
        check_label_ids(label_ids, lab_path)
        train_path = F.cityscapes_gt_path(self.root, self.split, fid, "labelTrainIds", self.gt)
        train_ids = read_png(train_path, mode="L") if train_path.is_file() else label_to_train(label_ids)
        return {
            "image": to_tensor_image(resize_image(image, self.size, self.image_resize)),
            "label_ids": torch.from_numpy(resize_labels(label_ids, self.size).astype(np.int64)),
            "train_ids": torch.from_numpy(resize_labels(train_ids, self.size).astype(np.int64)),
            "instance_ids": torch.from_numpy(resize_labels(inst, self.size).astype(np.int64)),
            "name": fid.stem,
            "path": str(img_path),
        }
