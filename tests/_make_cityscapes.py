"""Tiny Cityscapes-format trees written by hand (independent of the world generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reprolib.data import formats as F
from reprolib.io import write_png
from reprolib.labels import LABEL_TO_TRAIN, colorize_label


def make_cityscapes(root: Path, split: str = "train", n: int = 3, size: tuple[int, int] = (32, 64)) -> list[F.FrameId]:
    """Road + sky + two cars (instances 26000, 26001) + a person + ego vehicle + a static void box."""
    h, w = size
    fids = []
    for i in range(n):
        fid = F.FrameId("testcity", i, 19)
        lab = np.full((h, w), 23, np.uint8)  # sky
        lab[h // 2:] = 7  # road
        inst = lab.astype(np.int32).copy()
        lab[h // 2:h // 2 + 6, 4:14] = 26
        inst[h // 2:h // 2 + 6, 4:14] = 26000
        lab[h // 2:h // 2 + 6, 20:30] = 26
        inst[h // 2:h // 2 + 6, 20:30] = 26001
        lab[h // 2 - 8:h // 2 + 2, 40:44] = 24
        inst[h // 2 - 8:h // 2 + 2, 40:44] = 24000 + i
        lab[h // 2 + 2:h // 2 + 6, 50:56] = 4  # static (void)
        inst[h // 2 + 2:h // 2 + 6, 50:56] = 4
        lab[-3:] = 1  # ego vehicle
        inst[-3:] = 1
        img = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        write_png(F.cityscapes_image_path(root, split, fid), img)
        write_png(F.cityscapes_gt_path(root, split, fid, "labelIds"), lab)
        write_png(F.cityscapes_gt_path(root, split, fid, "instanceIds"), inst)
        write_png(F.cityscapes_gt_path(root, split, fid, "labelTrainIds"), LABEL_TO_TRAIN[lab])
        write_png(F.cityscapes_gt_path(root, split, fid, "color"), colorize_label(lab))
        fids.append(fid)
    return fids
