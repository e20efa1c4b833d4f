"""Tiny hand-made data in the official on-disk formats, for the backend and precompute tests.

Scenes are simple (sky, buildings, vegetation, sidewalk, road, cars, people) with a fixed colour per class
plus noise, so a small network learns them in a few dozen steps.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reprolib.data.formats import (
    WORLD_CITYSCAPES,
    WORLD_FS_STATIC,
    FrameId,
    cityscapes_gt_path,
    cityscapes_image_path,
    fishyscapes_labels_name,
    fishyscapes_overlay_name,
)
from reprolib.io import read_png, write_bytes, write_png
from reprolib.labels import colorize_label, label_to_train

SKY, BUILDING, VEGETATION, SIDEWALK, ROAD, CAR, PERSON = 23, 11, 21, 8, 7, 26, 24
CLASS_RGB = {
    SKY: (70, 130, 220), BUILDING: (120, 90, 80), VEGETATION: (40, 140, 40), SIDEWALK: (200, 170, 200),
    ROAD: (90, 90, 95), CAR: (20, 20, 160), PERSON: (230, 40, 40),
}


def _png16(array: np.ndarray) -> bytes:
    """16-bit PNG bytes (Pillow 13 refuses ``fromarray(..., mode="I;16")`` used by reprolib.io.png_bytes)."""
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def make_scene(rng: np.random.Generator, size: tuple[int, int] = (64, 128)) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]:
    """(rgb uint8 H×W×3, labelIds uint8 H×W, instanceIds int32 H×W) of one random street scene."""
    h, w = size
    lab = np.full((h, w), SKY, dtype=np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.5))
    x = 0
    while x < w:  # building / vegetation blocks along the horizon
        bw = int(rng.integers(w // 8, w // 3))
        top = int(rng.integers(h // 10, horizon))
        lab[top:horizon, x : x + bw] = BUILDING if rng.random() < 0.6 else VEGETATION
        x += bw
    walk = horizon + max(2, h // 12)
    lab[horizon:walk] = SIDEWALK
    lab[walk:] = ROAD
    inst = lab.astype(np.int32)
    for k in range(int(rng.integers(1, 4))):
        cls = CAR if rng.random() < 0.7 else PERSON
        ch = int(rng.integers(h // 8, h // 4))
        cw = ch * (2 if cls == CAR else 1) // (1 if cls == CAR else 2) + 1
        y0 = int(rng.integers(horizon, max(horizon + 1, h - ch)))
        x0 = int(rng.integers(0, w - cw))
        lab[y0 : y0 + ch, x0 : x0 + cw] = cls
        inst[y0 : y0 + ch, x0 : x0 + cw] = cls * 1000 + k
    rgb = np.zeros((h, w, 3), dtype=np.float64)
    for cls, colour in CLASS_RGB.items():
        rgb[lab == cls] = colour
    rgb += rng.normal(0.0, 8.0, size=rgb.shape)
    return rgb.clip(0, 255).astype(np.uint8), lab, inst


def make_cityscapes_tree(root: Path, n_train: int = 8, n_val: int = 4, size: tuple[int, int] = (64, 128),
                         seed: int = 0) -> Path:
    """Write a tiny Cityscapes tree (leftImg8bit + gtFine labelIds/instanceIds/labelTrainIds/color)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            fid = FrameId("tinytown", i // 3, i)
            rgb, lab, inst = make_scene(rng, size)
            write_png(cityscapes_image_path(root, split, fid), rgb)
            write_png(cityscapes_gt_path(root, split, fid, "labelIds"), lab)
            write_bytes(cityscapes_gt_path(root, split, fid, "instanceIds"), _png16(inst))
            write_png(cityscapes_gt_path(root, split, fid, "labelTrainIds"), label_to_train(lab))
            write_png(cityscapes_gt_path(root, split, fid, "color"), colorize_label(lab))
    return Path(root)


def make_fs_static(world_root: Path, n: int = 3, seed: int = 0) -> Path:
    """Write FS-Static-style masks + int16 overlays over the world's Cityscapes val images (a yellow box)."""
    rng = np.random.default_rng(seed)
    cs = Path(world_root) / WORLD_CITYSCAPES
    images = sorted((cs / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))[:n]
    for k, path in enumerate(images):
        base = read_png(path, mode="RGB").astype(np.int16)
        h, w = base.shape[:2]
        y, x = int(rng.integers(h // 2, h - h // 4)), int(rng.integers(0, w - w // 6))
        target = base.copy()
        target[y : y + h // 5, x : x + w // 8] = (250, 240, 0)
        label = np.zeros((h, w), dtype=np.uint8)
        label[y : y + h // 5, x : x + w // 8] = 1
        stem = path.name[: -len("_leftImg8bit.png")]
        out = Path(world_root) / WORLD_FS_STATIC
        write_png(out / fishyscapes_labels_name(k, stem), label)
        buf = io.BytesIO()
        np.savez_compressed(buf, rgb=(target - base).astype(np.int16))
        write_bytes(out / fishyscapes_overlay_name(k, stem), buf.getvalue())
    return Path(world_root)


def make_generated_split(root: Path, n: int = 5, size: tuple[int, int] = (64, 128), seed: int = 0) -> Path:
    """Write a processed training split as the training-data generator does: original/, semantic/
    (altered trainIds), semantic_labelId/ (altered labelIds), labels/ (0/1)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        stem = f"tinytown_{i // 3:06d}_{i:06d}"
        rgb, lab, inst = make_scene(rng, size)
        altered = lab.copy()
        mask = np.zeros(lab.shape, dtype=np.uint8)
        for iid in np.unique(inst[inst >= 1000]):
            if rng.random() < 0.7:
                sel = inst == iid
                altered[sel] = ROAD if lab[sel][0] != ROAD else BUILDING
                mask[sel] = 1
        write_png(root / "original" / f"{stem}.png", rgb)
        write_png(root / "semantic" / f"{stem}.png", label_to_train(altered))
        write_png(root / "semantic_labelId" / f"{stem}.png", altered)
        write_png(root / "labels" / f"{stem}.png", mask)
    return Path(root)


class TinyAnomalyDataset(torch.utils.data.Dataset):
    """In-memory stand-in with the Fishyscapes loaders' item contract: dict(image, label, name)."""

    def __init__(self, n: int = 5, size: tuple[int, int] = (64, 128), seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            rgb, lab, _ = make_scene(rng, size)
            label = np.zeros(size, dtype=np.uint8)
            h, w = size
            y, x = int(rng.integers(h // 2, h - 8)), int(rng.integers(0, w - 8))
            rgb[y : y + 6, x : x + 6] = (250, 250, 0)  # a yellow 'anomaly' box
            label[y : y + 6, x : x + 6] = 1
            label[:2] = 255
            self.items.append({"image": torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0,
                               "label": torch.from_numpy(label).long(), "name": f"{i:04d}_scene_{i}"})
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return dict(self.items[i])

    def fingerprint(self) -> str:
        return f"tiny-anomaly-{len(self)}-{self.seed}"
