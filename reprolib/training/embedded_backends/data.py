"""The embedded world's Cityscapes split, read into memory as tensors for the embedded backends' training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reprolib.data.formats import WORLD_CITYSCAPES, FrameId, cityscapes_gt_path, cityscapes_image_path
from reprolib.io import PathLike, ReprolibDataError, read_png
from reprolib.labels import label_to_train


def cityscapes_root_of(world_root: PathLike) -> Path:
    """Accept either an embedded-world root (with ``cityscapes/``) or a Cityscapes root."""
    root = Path(world_root)
    if (root / WORLD_CITYSCAPES / "leftImg8bit").is_dir():
        return root / WORLD_CITYSCAPES
    if (root / "leftImg8bit").is_dir():
        return root
    raise ReprolibDataError(root, "neither a world root (cityscapes/leftImg8bit) nor a Cityscapes root (leftImg8bit)")


def load_split_tensors(
    cityscapes_root: PathLike, split: str, image_size: tuple[int, int], limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Read a Cityscapes split into memory at ``image_size``.

    Returns images (N,3,H,W) float [0,1] (antialiased bilinear), labelIds and trainIds (N,H,W) long
    (nearest), and the frame stems. Small worlds fit in memory; training then never touches the disk.
    """
    root = Path(cityscapes_root)
    files = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not files:
        raise ReprolibDataError(root / "leftImg8bit" / split, "no *_leftImg8bit.png images found")
    files = files[:limit] if limit else files
    images, label_ids, names = [], [], []
    for f in files:
        fid = FrameId.parse(f.name[: -len("_leftImg8bit.png")])
        images.append(torch.from_numpy(read_png(cityscapes_image_path(root, split, fid), mode="RGB").copy()))
        label_ids.append(torch.from_numpy(read_png(cityscapes_gt_path(root, split, fid, "labelIds"), mode="L").copy()))
        if images[-1].shape[:2] != label_ids[-1].shape:
            raise ReprolibDataError(f, f"image {tuple(images[-1].shape[:2])} and labelIds "
                                       f"{tuple(label_ids[-1].shape)} differ in size")
        names.append(fid.stem)
    img = torch.stack([t.permute(2, 0, 1) for t in images]).float() / 255.0
    lab = torch.stack(label_ids).long()
    if tuple(img.shape[-2:]) != tuple(image_size):
        img = F.interpolate(img, size=image_size, mode="bilinear", align_corners=False, antialias=True)
        lab = F.interpolate(lab[:, None].float(), size=image_size, mode="nearest")[:, 0].long()
    train = torch.from_numpy(label_to_train(lab.numpy()).astype(np.int64))
    return img.clamp(0, 1), lab, train, names
