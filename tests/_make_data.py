"""Tiny trees in the real on-disk formats (Cityscapes, Lost & Found, Fishyscapes, processed split) for the
data and generator tests; written by hand here, independent of the procedural world generator."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reprolib.data import formats as F
from reprolib.io import write_bytes, write_png
from reprolib.labels import LABEL_TO_TRAIN, colorize_label

SIZE = (64, 128)


@dataclass
class Frame:
    """What was written for one Cityscapes frame."""

    fid: F.FrameId
    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    n_instances: int


def cityscapes_scene(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, np.ndarray, int]:
    """(labelIds uint8, instanceIds int32, number of instances) of a small street scene.

    Sky, building, sidewalk, road; 3–6 object instances (cars, persons, a caravan — void but an instance);
    a car *group* without instance id; static / dynamic / unlabeled void boxes; rectification border on the
    left column, out-of-roi in the top-right corner and the ego vehicle at the bottom.
    """
    h, w = size
    lab = np.full((h, w), 23, np.uint8)  # sky
    lab[h // 4:] = 11  # building
    lab[h // 2 - 4:] = 8  # sidewalk
    lab[h // 2:] = 7  # road
    inst = lab.astype(np.int32)
    n = int(rng.integers(3, 7))
    slot_w = (w - 8) // 6
    classes = [26, 24, 29, 26, 24, 26]
    for k in range(n):
        x0 = 4 + k * slot_w + int(rng.integers(0, 3))
        y0 = h // 2 - 6 + int(rng.integers(0, 8))
        bw, bh = slot_w - 4, int(rng.integers(6, 12))
        c = classes[k]
        lab[y0:y0 + bh, x0:x0 + bw] = c
        inst[y0:y0 + bh, x0:x0 + bw] = c * 1000 + k
    lab[h // 4:h // 4 + 4, 10:20] = 26  # a car group: labelId 26, no instance id
    inst[h // 4:h // 4 + 4, 10:20] = 26
    for lid, (y0, x0) in ((4, (h // 4 + 6, 30)), (5, (h // 4 + 6, 50)), (0, (h // 4 + 6, 70))):
        lab[y0:y0 + 5, x0:x0 + 8] = lid
        inst[y0:y0 + 5, x0:x0 + 8] = lid
    lab[:, 0] = 2  # rectification border
    lab[:6, -8:] = 3  # out of roi
    lab[-6:] = 1  # ego vehicle
    for lid in (2, 3, 1):
        inst[lab == lid] = lid
    return lab, inst, n


def make_cityscapes(root: Path, split: str = "train", n: int = 3, size: tuple[int, int] = SIZE, seed: int = 0,
                    city: str = "testcity", train_ids_file: bool = True) -> list[Frame]:
    """Write ``n`` frames of ``split`` (images, labelIds, instanceIds, color [+ labelTrainIds])."""
    frames = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        fid = F.FrameId(city, i, 19)
        lab, inst, k = cityscapes_scene(rng, size)
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        write_png(F.cityscapes_image_path(root, split, fid), img)
        write_png(F.cityscapes_gt_path(root, split, fid, "labelIds"), lab)
        write_png(F.cityscapes_gt_path(root, split, fid, "instanceIds"), inst)
        write_png(F.cityscapes_gt_path(root, split, fid, "color"), colorize_label(lab))
        if train_ids_file:
            write_png(F.cityscapes_gt_path(root, split, fid, "labelTrainIds"), LABEL_TO_TRAIN[lab])
        frames.append(Frame(fid, img, lab, inst, k))
    return frames


@dataclass
class Fishy:
    """Paths and arrays of a tiny world-shaped tree: cityscapes/, lostandfound/, fishyscapes/{LostAndFound,Static}."""

    world: Path
    fs_laf: Path
    fs_static: Path
    cityscapes: Path
    lostandfound: Path
    laf_images: list[np.ndarray] = field(default_factory=list)
    laf_masks: list[np.ndarray] = field(default_factory=list)
    laf_names: list[str] = field(default_factory=list)
    static_bases: list[np.ndarray] = field(default_factory=list)
    static_overlays: list[np.ndarray] = field(default_factory=list)
    static_masks: list[np.ndarray] = field(default_factory=list)
    static_names: list[str] = field(default_factory=list)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def make_fishyscapes(world: Path, n: int = 2, size: tuple[int, int] = SIZE, seed: int = 0) -> Fishy:
    """FS L&F (masks + LaF images in two cities) and FS Static (masks + int16 overlays on Cityscapes val)."""
    h, w = size
    fy = Fishy(world, world / F.WORLD_FS_LAF, world / F.WORLD_FS_STATIC, world / F.WORLD_CITYSCAPES,
               world / F.WORLD_LOSTANDFOUND)
    rng = np.random.default_rng(seed)
    for i in range(n):
        city = ("04_Maurener_Weg_8", "13_Elberfelder_Str")[i % 2]
        laf_id = F.FrameId(city, i, 30 + i).stem
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        write_png(fy.lostandfound / "leftImg8bit" / "test" / city / f"{laf_id}_leftImg8bit.png", img)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 2:h // 2 + 6, 20 + 10 * i:30 + 10 * i] = 1
        mask[:h // 4] = 255
        write_png(fy.fs_laf / F.fishyscapes_labels_name(i, laf_id), mask)
        fy.laf_images.append(img)
        fy.laf_masks.append(mask)
        fy.laf_names.append(f"{i:04d}_{laf_id}")
    frames = make_cityscapes(fy.cityscapes, "val", n=n, size=size, seed=seed + 1)
    for i, fr in enumerate(frames):
        overlay = np.zeros((h, w, 3), np.int16)
        overlay[10:20, 10:30] = (300, -300, 17)  # saturates high, low, and stays in range
        overlay[30:34, 40 + i:60] = rng.integers(-255, 256, (4, 20 - i, 3))
        write_bytes(fy.fs_static / F.fishyscapes_overlay_name(i, fr.fid.stem), npz_bytes(rgb=overlay))
        mask = ((overlay != 0).any(-1)).astype(np.uint8)
        mask[-6:] = 255
        write_png(fy.fs_static / F.fishyscapes_labels_name(i, fr.fid.stem), mask)
        fy.static_bases.append(fr.image)
        fy.static_overlays.append(overlay)
        fy.static_masks.append(mask)
        fy.static_names.append(f"{i:04d}_{fr.fid.stem}")
    return fy


PROCESSED_DIRS = ("original", "semantic", "synthesis", "entropy", "logit_distance", "mae_features")


def make_processed(root: Path, ids: tuple[int, ...] = (1, 2, 10, 11), size: tuple[int, int] = SIZE, seed: int = 0,
                   label_dirs: tuple[str, ...] = ("labels",), suffixes: dict[str, str] | None = None
                   ) -> dict[str, dict[str, np.ndarray]]:
    """A processed split whose stems ``frame_{id}`` sort differently by natural and by plain order.

    Returns {stem: {folder key: array written}} with keys original, semantic, synthesis, label, entropy,
    logit_distance, mae_features. ``suffixes`` maps folder → suffix (e.g. {"semantic": "_icnet"}).
    """
    rng = np.random.default_rng(seed)
    sfx = suffixes or {}
    h, w = size
    written: dict[str, dict[str, np.ndarray]] = {}
    for i in ids:
        stem = f"frame_{i}"
        semantic = rng.integers(0, 19, (h, w)).astype(np.uint8)
        semantic[:4] = 255
        label = (rng.random((h, w)) < 0.1).astype(np.uint8)
        label[:4] = 255
        arrays = {
            "original": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "synthesis": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "semantic": semantic,
            "entropy": rng.integers(0, 256, (h, w), dtype=np.uint8),
            "logit_distance": rng.integers(0, 256, (h, w), dtype=np.uint8),
            "mae_features": rng.integers(0, 256, (h, w), dtype=np.uint8),
        }
        for d, arr in arrays.items():
            write_png(root / f"{d}{sfx.get(d, '')}" / f"{stem}.png", arr)
        for d in label_dirs:
            write_png(root / d / f"{stem}.png", label)
        written[stem] = {**arrays, "label": label}
    return written
