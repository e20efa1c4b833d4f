"""A gallery PNG of the world: scenes with labels and instances, Lost & Found and Static with their masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reprolib.data import formats as F
from reprolib.io import read_png, write_png
from reprolib.labels import IGNORE_INDEX, colorize_label


def _mask_rgb(label: np.ndarray) -> np.ndarray:
    out = np.zeros((*label.shape, 3), np.uint8)
    out[label == 0] = (40, 40, 40)
    out[label == 1] = (255, 60, 30)
    out[label == IGNORE_INDEX] = (0, 0, 90)
    return out


def _edges(inst: np.ndarray) -> np.ndarray:
    e = np.zeros(inst.shape, bool)
    e[1:] |= inst[1:] != inst[:-1]
    e[:, 1:] |= inst[:, 1:] != inst[:, :-1]
    return e


def write_gallery(root: Path, path: Path, n: int = 3) -> None:
    """Rows: train image | colour labels with instance edges; LaF image | mask; Static image | mask."""
    rows: list[tuple[str, np.ndarray]] = []
    cs = root / F.WORLD_CITYSCAPES
    for img_path in sorted((cs / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))[:n]:
        fid = F.FrameId.parse(img_path.name[: -len("_leftImg8bit.png")])
        lab = read_png(F.cityscapes_gt_path(cs, "train", fid, "labelIds"), mode="L")
        inst = read_png(F.cityscapes_gt_path(cs, "train", fid, "instanceIds"), mode="I")
        col = colorize_label(lab)
        col[_edges(inst) & (inst >= 1000)] = 255
        rows.append(("Cityscapes train: image | labels + instances", np.concatenate([read_png(img_path, mode="RGB"), col], 1)))
    for lab_path in sorted((root / F.WORLD_FS_LAF).glob("*_labels.png"))[:n]:
        _, laf_id = F.parse_fishyscapes_labels_name(lab_path.name)
        city = F.FrameId.parse(laf_id).city
        img = read_png(root / F.WORLD_LOSTANDFOUND / "leftImg8bit" / "test" / city / f"{laf_id}_leftImg8bit.png",
                       mode="RGB")
        rows.append(("FS Lost & Found: image | mask", np.concatenate([img, _mask_rgb(read_png(lab_path, mode="L"))], 1)))
    for lab_path in sorted((root / F.WORLD_FS_STATIC).glob("*_labels.png"))[:n]:
        fs_id, base_id = F.parse_fishyscapes_labels_name(lab_path.name)
        fid = F.FrameId.parse(base_id)
        base = read_png(F.cityscapes_image_path(cs, "val", fid), mode="RGB").astype(np.int16)
        with np.load(root / F.WORLD_FS_STATIC / F.fishyscapes_overlay_name(int(fs_id), base_id)) as z:
            img = np.clip(base + z["rgb"], 0, 255).astype(np.uint8)
        rows.append(("FS Static: image | mask", np.concatenate([img, _mask_rgb(read_png(lab_path, mode="L"))], 1)))
    if not rows:
        return
    width = max(r.shape[1] for _, r in rows)
    band = 14
    canvas = Image.new("RGB", (width, sum(r.shape[0] + band for _, r in rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = 0
    for title, r in rows:
        draw.text((4, y + 1), title, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(r), (0, y + band))
        y += r.shape[0] + band
    write_png(path, np.asarray(canvas))
