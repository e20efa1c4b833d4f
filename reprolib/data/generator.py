"""The training-data generator (Lis et al. relabelling, SynBoost's variant; spec §4.5).

The original repository never shipped this script (giandbt/synboost#7, #19). For each Cityscapes image:

1. candidates = object instances (``instanceIds`` ≥ 1000, i.e. labelId·1000 + k: person … bicycle);
2. n = ⌊U·N⌋ of the N instances (U ~ Uniform(0, 1) per image, or a fixed ``fraction``) are relabelled with a
   labelId drawn from SynBoost's weighted list (road ×3, person ×3, car ×7, …), redrawn while equal to the
   instance's own labelId;
3. the anomaly mask = pixels whose label changed, inside the region of interest (ego vehicle, rectification
   border and out-of-roi → 255), plus every ``dynamic`` pixel with ``dynamic=True``.

``void=True`` also writes ``labels_with_void_no_ego/`` with the *intended* void-as-anomaly semantics: void
pixels (trainId 255, except ego vehicle / border / out of roi) → 1 and the instance anomalies kept. The
original's HEAD ``include_void_to_labels`` adds 255 to a uint8 0/1 mask (1 + 255 wraps to 0) and so writes
void as ignore and erases the instance anomalies; its commented-out lines and its hard-coded class weights
(≈ 11 % anomaly pixels) show the intent we implement. The semantic map's void pixels are then filled with a
known class before resynthesis (``fill_void``: e.g. a segmentation prediction; default: the nearest known
class), as ``create_void_semantic_original`` does.

Output (the processed-split layout): ``original/ semantic/ semantic_labelId/ instance/ labels/``
[``labels_with_void_no_ego/``] and ``generator.json``. Deterministic per (seed, image index); resumable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from reprolib.data import formats as F
from reprolib.data.cityscapes import CityscapesDataset, check_label_ids
from reprolib.io import PathLike, ReprolibDataError, read_json, read_png, write_json, write_png
from reprolib.labels import DYNAMIC, EGO_VEHICLE, LABEL_TO_TRAIN, OUT_OF_ROI, train_to_label

#: SynBoost's "optimized" replacement list of labelIds (spec §4.5)
REPLACEMENT_LABEL_IDS = (7, 7, 7, 8, 11, 12, 13, 20, 21, 22, 24, 24, 24, 25, 26, 26, 26, 26, 26, 26, 26, 27, 28, 32, 33)
RECTIFICATION_BORDER = 2
OUTSIDE_ROI = (EGO_VEHICLE, RECTIFICATION_BORDER, OUT_OF_ROI)
OUTPUT_DIRS = ("original", "semantic", "semantic_labelId", "instance", "labels")
VOID_DIR = "labels_with_void_no_ego"


def relabel(label_ids: np.ndarray, instance_ids: np.ndarray, rng: np.random.Generator,
            fraction: float | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Relabel a random subset of instances; returns (altered labelIds, [(instance id, new labelId)])."""
    altered = label_ids.copy()
    ids = np.unique(instance_ids[instance_ids >= 1000])
    u = rng.uniform() if fraction is None else float(fraction)
    n = int(np.floor(u * len(ids)))
    chosen = rng.choice(ids, size=n, replace=False) if n else np.zeros(0, np.int64)
    changes = []
    for iid in np.sort(chosen):
        own = int(iid) // 1000
        new = own
        while new == own:
            new = int(REPLACEMENT_LABEL_IDS[rng.integers(len(REPLACEMENT_LABEL_IDS))])
        altered[instance_ids == iid] = new
        changes.append((int(iid), new))
    return altered, changes


def anomaly_labels(label_ids: np.ndarray, altered: np.ndarray, dynamic: bool = False) -> np.ndarray:
    """0/1 mask of changed pixels (+ dynamic), 255 outside the region of interest."""
    out = (altered != label_ids).astype(np.uint8)
    if dynamic:
        out[label_ids == DYNAMIC] = 1
    out[np.isin(label_ids, OUTSIDE_ROI)] = 255
    return out


def void_anomaly_labels(label_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Intended ``labels_with_void_no_ego``: void (trainId 255, outside-ROI excluded) → 1, anomalies kept."""
    out = labels.copy()
    void = (LABEL_TO_TRAIN[label_ids] == 255) & ~np.isin(label_ids, OUTSIDE_ROI)
    out[void] = 1
    return out


def fill_void_nearest(train_ids: np.ndarray) -> np.ndarray:
    """Replace void trainIds (255) by the nearest known class (the default ``fill_void``)."""
    void = train_ids == 255
    if not void.any() or void.all():
        return train_ids
    _, (iy, ix) = ndimage.distance_transform_edt(void, return_indices=True)
    return train_ids[iy, ix]


def generate_training_data(
    cityscapes_root: PathLike,
    out_root: PathLike,
    split: str = "train",
    fraction: float | None = None,
    seed: int = 0,
    void: bool = False,
    dynamic: bool = False,
    fill_void: Callable[[int, np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
) -> Path:
    """Write the altered semantic maps and anomaly masks for a Cityscapes-format split; returns ``out_root``.

    ``fill_void(index, train_ids) -> train_ids`` fills void pixels of the semantic map when ``void``.
    A rerun with the same parameters skips images whose outputs all exist.
    """
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    out = Path(out_root)
    params = {"cityscapes_root": str(Path(cityscapes_root).resolve()), "split": split, "fraction": fraction,
              "seed": seed, "void": void, "dynamic": dynamic, "fill_void": None if fill_void is None else "custom"}
    meta = out / "generator.json"
    if meta.is_file():
        prev = read_json(meta)
        if {k: prev.get(k) for k in params} == params and prev.get("complete"):
            return out
    ds = CityscapesDataset(cityscapes_root, split)
    dirs = OUTPUT_DIRS + ((VOID_DIR,) if void else ())
    t0 = time.perf_counter()
    n_anomaly = n_valid = 0
    for i in tqdm(range(len(ds)), desc=f"generate {split}", disable=not progress):
        fid = ds.frames[i]
        stem = fid.stem
        if all((out / d / f"{stem}.png").is_file() for d in dirs):
            continue
        root = ds.root
        img_path = F.cityscapes_image_path(root, split, fid)
        lab_path = F.cityscapes_gt_path(root, split, fid, "labelIds", ds.gt)
        inst_path = F.cityscapes_gt_path(root, split, fid, "instanceIds", ds.gt)
        image = read_png(img_path, mode="RGB")
        label_ids = read_png(lab_path, mode="L", expect_size=image.shape[:2])
        instance_ids = read_png(inst_path, mode="I", expect_size=image.shape[:2])
        check_label_ids(label_ids, lab_path)
        rng = np.random.default_rng([seed, i])
        altered, _ = relabel(label_ids, instance_ids, rng, fraction)
        labels = anomaly_labels(label_ids, altered, dynamic)
        semantic = LABEL_TO_TRAIN[altered]
        outputs = {"original": image, "instance": instance_ids, "labels": labels}
        if void:
            outputs[VOID_DIR] = void_anomaly_labels(label_ids, labels)
            semantic = fill_void(i, semantic) if fill_void is not None else fill_void_nearest(semantic)
            semantic = semantic.astype(np.uint8)
            # keep out-of-ROI regions as they were: the generator repaints only true void objects
            keep = np.isin(label_ids, OUTSIDE_ROI)
            semantic[keep] = 255
            altered = np.where(keep, label_ids, train_to_label(semantic)).astype(np.uint8)
        outputs["semantic"] = semantic
        outputs["semantic_labelId"] = altered
        for d in dirs:
            write_png(out / d / f"{stem}.png", outputs[d])
        lab = outputs[VOID_DIR] if void else labels
        n_anomaly += int((lab == 1).sum())
        n_valid += int((lab != 255).sum())
    if not len(ds):
        raise ReprolibDataError(cityscapes_root, "no images to generate from")
    write_json(meta, {**params, "complete": True, "images": len(ds), "seconds": round(time.perf_counter() - t0, 2),
                      "anomaly_fraction_new_files": (n_anomaly / n_valid) if n_valid else None})
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m reprolib.data.generator --cityscapes ROOT --out DIR [--split train] [--void] ...``"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m reprolib.data.generator", description=__doc__.split("\n")[0])
    p.add_argument("--cityscapes", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--fraction", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--void", action="store_true")
    p.add_argument("--dynamic", action="store_true")
    a = p.parse_args(argv)
    print(generate_training_data(a.cityscapes, a.out, a.split, a.fraction, a.seed, a.void, a.dynamic))


if __name__ == "__main__":
    main()
