"""Write the embedded world in the official formats (Cityscapes, Lost & Found, Fishyscapes L&F / Static)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from reprolib.data import formats as F
from reprolib.io import ReprolibDataError, is_temp_file, read_json, write_bytes, write_json, write_png
from reprolib.labels import EGO_VEHICLE, IGNORE_INDEX, LABEL_TO_TRAIN, OUT_OF_ROI, colorize_label
from reprolib.world.gallery import write_gallery
from reprolib.world.scene import L, render_scene

VERSION = "reprolib-world-1"
TRAIN_CITIES = ("aachen", "bremen", "hamburg")
VAL_CITIES = ("frankfurt", "lindau", "munster")
LAF_SCENES = ("01_Hanns_Klemm_Str_45", "04_Maurener_Weg_8", "07_Festplatz_Flugfeld")
#: image counts of a default world; Static overlays val images, so ``n_static`` never exceeds ``n_val``
DEFAULT_COUNTS = {"n_train": 200, "n_val": 40, "n_laf": 40, "n_static": 30}


def check_world_args(size: object, n_train: object, n_val: object, n_laf: object, n_static: object) -> None:
    """Raise ``ValueError("<name>: <problem>")`` for a size or counts no world can have (before any write)."""
    counts = {"n_train": n_train, "n_val": n_val, "n_laf": n_laf, "n_static": n_static}
    for name, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name}: must be a whole number ≥ 0, got {n!r}")
    if not any(counts.values()):
        raise ValueError("n_train: every image count is 0; the world would be empty")
    if n_static > n_val:  # type: ignore[operator]
        raise ValueError(f"n_static: {n_static} cannot exceed n_val ({n_val}): Static is built on val images")
    parts = list(size) if isinstance(size, (tuple, list)) else []
    if len(parts) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in parts):
        raise ValueError(f"size: must be (height, width) with both ≥ 1, got {size!r}")


def _frame_ids(cities: tuple[str, ...], n: int) -> list[F.FrameId]:
    return [F.FrameId(cities[i % len(cities)], i // len(cities), 19 + 10 * (i % 7)) for i in range(n)]


def _cityscapes_files(root: Path, split: str, fid: F.FrameId) -> dict[str, Path]:
    files = {"image": F.cityscapes_image_path(root, split, fid)}
    for kind in F.CITYSCAPES_GT_TYPES:
        files[kind] = F.cityscapes_gt_path(root, split, fid, kind)
    return files


def _write_cityscapes(root: Path, split: str, fid: F.FrameId, rng: np.random.Generator, size: tuple[int, int]):
    files = _cityscapes_files(root, split, fid)
    if all(p.is_file() for p in files.values()):
        return
    s = render_scene(rng, *size)
    write_png(files["image"], s.image)
    write_png(files["labelIds"], s.label_ids)
    write_png(files["instanceIds"], s.instance_ids)
    write_png(files["labelTrainIds"], LABEL_TO_TRAIN[s.label_ids])
    write_png(files["color"], colorize_label(s.label_ids))


def _blob(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A random star-shaped polygon mask (a foreign object outline)."""
    k = int(rng.integers(5, 11))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * rng.uniform(0.55, 1.0, k)
    pts = [(cx + rr * np.cos(a), cy + rr * np.sin(a) * rng.uniform(0.6, 1.0)) for a, rr in zip(ang, rad, strict=True)]
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon(pts, fill=255)
    return np.asarray(img) > 127


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Colours no Cityscapes class has: saturated, striped or checkered."""
    base = rng.uniform(0, 255, 3)
    alt = 255 - base
    yy, xx = np.mgrid[0:h, 0:w]
    period = rng.integers(3, 9)
    kind = rng.integers(0, 3)
    if kind == 0:
        m = ((xx + yy) // period) % 2 == 0
    elif kind == 1:
        m = ((xx // period) + (yy // period)) % 2 == 0
    else:
        m = np.zeros((h, w), bool)
    return np.where(m[..., None], base, alt).astype(np.float32)


def _write_laf(world: Path, fs_id: int, rng: np.random.Generator, size: tuple[int, int]) -> None:
    scene_name = LAF_SCENES[fs_id % len(LAF_SCENES)]
    fid = F.FrameId(scene_name, fs_id // len(LAF_SCENES), 30 + fs_id)
    img_path = world / F.WORLD_LOSTANDFOUND / "leftImg8bit" / "test" / scene_name / f"{fid.stem}_leftImg8bit.png"
    lab_path = world / F.WORLD_FS_LAF / F.fishyscapes_labels_name(fs_id, fid.stem)
    if img_path.is_file() and lab_path.is_file():
        return
    h, w = size
    s = render_scene(rng, h, w)
    image = s.image.astype(np.float32)
    anomaly = np.zeros((h, w), bool)
    ys, xs = np.nonzero(s.road_mask & (np.arange(h)[:, None] > s.horizon + (h - s.horizon) * 0.25))
    for _ in range(int(rng.integers(1, 4))):
        if len(ys) == 0:
            break
        j = int(rng.integers(0, len(ys)))
        cy, cx = ys[j], xs[j]
        r = 2 + (cy - s.horizon) / (h - s.horizon) * h * rng.uniform(0.03, 0.07)
        m = _blob(rng, h, w, cx, cy - r * 0.5, r) & ~(s.label_ids == EGO_VEHICLE)
        image[m] = _texture(rng, h, w)[m]
        anomaly |= m
    # the evaluated region: the road, the sidewalks and a margin around them; void elsewhere
    region = np.isin(s.label_ids, (L["road"], L["sidewalk"])) | anomaly
    region = np.asarray(Image.fromarray(region.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))) > 0
    label = np.full((h, w), IGNORE_INDEX, np.uint8)
    label[region] = 0
    label[anomaly] = 1
    label[(s.label_ids == EGO_VEHICLE) | (s.label_ids == OUT_OF_ROI)] = IGNORE_INDEX
    out = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.5))
    write_png(img_path, np.asarray(out))
    write_png(lab_path, label)


def _write_static(world: Path, fs_id: int, base_fid: F.FrameId, rng: np.random.Generator) -> None:
    out_dir = world / F.WORLD_FS_STATIC
    lab_path = out_dir / F.fishyscapes_labels_name(fs_id, base_fid.stem)
    ovl_path = out_dir / F.fishyscapes_overlay_name(fs_id, base_fid.stem)
    if lab_path.is_file() and ovl_path.is_file():
        return
    cs = world / F.WORLD_CITYSCAPES
    base = np.asarray(Image.open(F.cityscapes_image_path(cs, "val", base_fid)).convert("RGB")).astype(np.int16)
    lab_ids = np.asarray(Image.open(F.cityscapes_gt_path(cs, "val", base_fid, "labelIds")))
    h, w = base.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    for _ in range(int(rng.integers(1, 3))):
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.35, 0.85) * h
        m = _blob(rng, h, w, cx, cy, rng.uniform(0.05, 0.14) * h)
        soft = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(1.0)),
                          np.float32) / 255
        tex = _texture(rng, h, w) * rng.uniform(0.6, 1.1)
        colour = colour * (1 - soft[..., None]) + tex * soft[..., None]
        alpha = np.maximum(alpha, soft)
    blended = np.clip(np.round(base * (1 - alpha[..., None]) + colour * alpha[..., None]), 0, 255).astype(np.int16)
    overlay = blended - base
    label = (alpha > 0.5).astype(np.uint8)
    label[(lab_ids == EGO_VEHICLE) | (lab_ids == OUT_OF_ROI)] = IGNORE_INDEX
    buf = io.BytesIO()
    np.savez_compressed(buf, rgb=overlay)
    write_bytes(ovl_path, buf.getvalue())
    write_png(lab_path, label)


def _fingerprint(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        # a killed run's temp files stay beside the files they were to become: not part of the world
        if p.is_file() and p.name not in ("world.json", "gallery.png") and not is_temp_file(p):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def generate_world(
    out: str | Path,
    *,
    seed: int = 0,
    size: tuple[int, int] = (256, 512),
    n_train: int = DEFAULT_COUNTS["n_train"],
    n_val: int = DEFAULT_COUNTS["n_val"],
    n_laf: int = DEFAULT_COUNTS["n_laf"],
    n_static: int = DEFAULT_COUNTS["n_static"],
    progress: bool = True,
    before_work: Callable[[], None] | None = None,
) -> Path:
    """Generate (or finish, or reuse) the embedded world under ``out``; returns its root.

    Counts are whole numbers ≥ 0, not all 0, with ``n_static ≤ n_val``; ``size`` is (H, W) ≥ 1 (checked
    before anything is written). ``before_work`` (a session's deadline) is called before each image of an
    unfinished world; what it raises stops the generation there, and the next call writes only what is missing.
    """
    check_world_args(size, n_train, n_val, n_laf, n_static)
    size = (int(size[0]), int(size[1]))
    root = Path(out)
    params = {"version": VERSION, "seed": seed, "size": list(size), "n_train": n_train, "n_val": n_val,
              "n_laf": n_laf, "n_static": n_static}
    meta = root / "world.json"
    if meta.is_file():
        done = read_json(meta)
        stored = {k: done.get(k) for k in params} if isinstance(done, dict) else {}
        if stored == params:
            return root
        # its images would be kept (each is skipped when present) and world.json would then claim the new settings
        changed = ", ".join(f"{k}: {stored.get(k)!r} → {v!r}" for k, v in params.items() if stored.get(k) != v)
        raise ReprolibDataError(meta, f"this folder holds a world made with other settings ({changed}); generate "
                                      "into another folder (--out), or delete this one first")
    t0 = time.perf_counter()
    cs = root / F.WORLD_CITYSCAPES
    jobs = [("train", i, f) for i, f in enumerate(_frame_ids(TRAIN_CITIES, n_train))]
    jobs += [("val", i, f) for i, f in enumerate(_frame_ids(VAL_CITIES, n_val))]
    val_ids = _frame_ids(VAL_CITIES, n_val)
    total = len(jobs) + n_laf + n_static
    check = before_work or (lambda: None)
    with tqdm(total=total, desc="world", disable=not progress) as bar:
        for split, i, fid in jobs:
            check()
            _write_cityscapes(cs, split, fid, np.random.default_rng([seed, 0 if split == "train" else 1, i]), size)
            bar.update()
        for i in range(n_laf):
            check()
            _write_laf(root, i, np.random.default_rng([seed, 2, i]), size)
            bar.update()
        for i in range(n_static):
            check()
            _write_static(root, i, val_ids[i], np.random.default_rng([seed, 3, i]))
            bar.update()
    write_gallery(root, root / "gallery.png")
    write_json(meta, {**params, "fingerprint": _fingerprint(root)})
    if progress:
        print(f"world: {n_train} train, {n_val} val, {n_laf} L&F, {n_static} Static at {size[0]}x{size[1]} "
              f"in {time.perf_counter() - t0:.1f} s → {root}")
    return root
