"""The training-data generator (Lis et al. instance relabelling, SynBoost's variant; spec §4.5).

The original repository never shipped a runnable script for this (giandbt/synboost#7, #19). Per Cityscapes
image (ground-truth ``labelIds`` + ``instanceIds``):

1. candidates = object instances: ``instanceIds`` ≥ 1000 (labelId·1000 + k; person … bicycle);
2. n = ⌊U·N⌋ of the N candidates, U ~ Uniform(0, 1) per image (the original), or n = ⌊fraction·N⌋ when
   ``fraction`` is given, chosen without replacement;
3. each chosen instance gets a labelId drawn from SynBoost's weighted list :data:`REPLACEMENT_LABEL_IDS`
   (road ×3, person ×3, car ×7, …), re-drawn while equal to the instance's own labelId;
4. the anomaly mask (``labels/``) = pixels whose labelId changed (+ every ``dynamic`` pixel when
   ``dynamic=True``), 0 elsewhere — 0/1 only, as the original wrote it (its class-weight code assumes two
   values); ``roi_ignore=True`` writes 255 outside the region of interest (ego vehicle, rectification
   border, out of roi) instead.

Outputs, in the processed-split layout: ``original/`` (the image), ``semantic/`` (altered trainIds),
``semantic_labelId/`` (altered labelIds), ``instance/`` (unaltered instanceIds, for resynthesis generators
that draw instance edges, e.g. CC-FPSE), ``labels/`` (0/1/255), with ``void=True`` also
``labels_with_void_no_ego/``, and ``generator.json`` (parameters and statistics, among them the share of
anomaly pixels beside the share the original's hard-coded class weights imply, :data:`IMPLIED_ANOMALY_SHARE`).

Run it as ``python -m reprolib.data.generator --cityscapes ROOT --out DIR [--split train] [--void] ...``.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from reprolib import cli
from reprolib.data.cityscapes import CityscapesDataset
from reprolib.io import PathLike, ReprolibDataError, read_json, write_json, write_png
from reprolib.labels import DYNAMIC, EGO_VEHICLE, IGNORE_INDEX, LABEL_TO_TRAIN, NUM_CLASSES, OUT_OF_ROI, TRAIN_TO_LABEL

GENERATOR_VERSION = 2  # 2: void-as-anomaly = the original's intended labelIds; 0/1 files (roi_ignore option)
#: SynBoost's "optimized" weighted list of replacement labelIds (spec §4.5)
REPLACEMENT_LABEL_IDS: tuple[int, ...] = (7, 7, 7, 8, 11, 12, 13, 20, 21, 22, 24, 24, 24, 25,
                                          26, 26, 26, 26, 26, 26, 26, 27, 28, 32, 33)
RECTIFICATION_BORDER = 2
#: labelIds outside the region of interest: 255 (ignored) in every anomaly mask
OUTSIDE_ROI: tuple[int, ...] = (EGO_VEHICLE, RECTIFICATION_BORDER, OUT_OF_ROI)
OUTPUT_DIRS: tuple[str, ...] = ("original", "semantic", "semantic_labelId", "instance", "labels")
VOID_DIR = "labels_with_void_no_ego"
#: the void labelIds that count as anomaly in ``labels_with_void_no_ego/``: the list the original's
#: ``include_void_to_labels`` was written for (its commented-out "without ego vehicle" line, whose
#: void → 1 semantics match the class weights hard-coded for void data): unlabeled, rectification border,
#: out of roi, static, caravan, trailer. The ego vehicle (1) stays known (0), hence "no_ego"; the other void
#: classes (dynamic, ground, parking, rail track, guard rail, bridge, tunnel, polegroup) stay known too.
VOID_ANOMALY_LABEL_IDS: tuple[int, ...] = (0, RECTIFICATION_BORDER, OUT_OF_ROI, 4, 29, 30)
#: the original's hard-coded ENet class weights [known, anomaly] (spec §4.1) ...
ORIGINAL_CLASS_WEIGHTS = {"labels": (1.46494611, 16.5204619), VOID_DIR: (1.54843156, 8.03912212)}
#: ... and the anomaly-pixel share each implies, inverting w = 1 / ln(1.02 + p): ≈ 4.2 % and ≈ 11.2 %
IMPLIED_ANOMALY_SHARE = {k: float(np.exp(1.0 / w[1]) - 1.02) for k, w in ORIGINAL_CLASS_WEIGHTS.items()}
#: parameters that determine the bytes; a rerun into the same folder must match them
_PARAM_KEYS = ("version", "split", "fraction", "seed", "void", "dynamic", "fill_void", "fill_void_weights",
               "roi_ignore", "input")
#: keys a generator.json of an earlier version may lack: accepted there (and recorded from then on)
_NEWER_KEYS = ("fill_void_weights", "input")

FillVoid = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


def relabel(label_ids: np.ndarray, instance_ids: np.ndarray, rng: np.random.Generator,
            fraction: float | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Relabel a random subset of object instances.

    Returns the altered labelIds (a copy) and ``[(instance id, new labelId), …]`` in increasing instance id.
    Draws, in order: U (only when ``fraction`` is None), the chosen instances, then the new labels.
    """
    if label_ids.shape != instance_ids.shape:
        raise ValueError(f"labelIds {label_ids.shape} and instanceIds {instance_ids.shape} differ in shape")
    altered = label_ids.copy()
    candidates = np.unique(instance_ids[instance_ids >= 1000])
    u = rng.uniform() if fraction is None else float(fraction)
    n = int(np.floor(u * len(candidates)))
    chosen = np.sort(rng.choice(candidates, size=n, replace=False)) if n else candidates[:0]
    table = np.asarray(REPLACEMENT_LABEL_IDS)
    changes = []
    for iid in chosen.tolist():
        own = iid // 1000
        new = own
        while new == own:
            new = int(table[rng.integers(len(table))])
        altered[instance_ids == iid] = new
        changes.append((iid, new))
    return altered, changes


def anomaly_labels(label_ids: np.ndarray, altered: np.ndarray, dynamic: bool = False,
                   roi_ignore: bool = False) -> np.ndarray:
    """uint8 mask: 1 where the labelId changed (+ ``dynamic`` pixels), 0 elsewhere (the original's 0/1);
    with ``roi_ignore`` 255 outside the ROI."""
    out = (altered != label_ids).astype(np.uint8)
    if dynamic:
        out[label_ids == DYNAMIC] = 1
    if roi_ignore:
        out[np.isin(label_ids, OUTSIDE_ROI)] = IGNORE_INDEX
    return out


def void_anomaly_labels(label_ids: np.ndarray, labels: np.ndarray, roi_ignore: bool = False) -> np.ndarray:
    """The *intended* ``labels_with_void_no_ego``: pixels of :data:`VOID_ANOMALY_LABEL_IDS` in the ground
    truth → 1, the instance anomalies of ``labels`` kept, everything else as in ``labels`` (the ego vehicle
    known); with ``roi_ignore`` 255 outside the ROI (ego vehicle, border, out of roi) instead."""
    out = labels.copy()
    out[np.isin(label_ids, VOID_ANOMALY_LABEL_IDS)] = 1
    if roi_ignore:
        out[np.isin(label_ids, OUTSIDE_ROI)] = IGNORE_INDEX
    return out


def fill_void_nearest(train_ids: np.ndarray) -> np.ndarray:
    """Replace void trainIds (255) by the class of the nearest known pixel (Euclidean distance transform)."""
    void = train_ids == IGNORE_INDEX
    if not void.any() or void.all():
        return train_ids.copy()
    _, (iy, ix) = ndimage.distance_transform_edt(void, return_indices=True)
    return train_ids[iy, ix]


def _fill_void(index: int, image: np.ndarray, train_ids: np.ndarray, fill_void: FillVoid | None) -> np.ndarray:
    """Void pixels of ``train_ids`` take ``fill_void``'s class; whatever stays void, the nearest known class."""
    filled = train_ids.copy()
    void = train_ids == IGNORE_INDEX
    if fill_void is not None and void.any():
        pred = np.asarray(fill_void(index, image, train_ids))
        if pred.shape != train_ids.shape:
            raise ValueError(f"fill_void returned shape {pred.shape} for image {index}; expected {train_ids.shape}")
        pred = pred.astype(np.int64)
        if ((pred < 0) | ((pred >= NUM_CLASSES) & (pred != IGNORE_INDEX))).any():
            raise ValueError(f"fill_void returned values outside trainIds 0..18 / 255 for image {index}")
        filled[void] = pred[void].astype(np.uint8)
    return fill_void_nearest(filled)


def other_parameters(prev: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The parameters (:data:`_PARAM_KEYS`) in which a recorded generation ``prev`` (a ``generator.json``) differs
    from ``params``, as {key: (recorded, requested)}; a key an earlier version did not record (:data:`_NEWER_KEYS`)
    does not count."""
    return {k: (prev.get(k), params[k]) for k in _PARAM_KEYS
            if prev.get(k) != params[k] and not (k in _NEWER_KEYS and k not in prev)}


def _check_params(meta: Path, params: dict[str, Any]) -> None:
    """Refuse to mix outputs of different parameters in one folder (a rerun would silently keep stale files)."""
    if not meta.is_file():
        return
    diff = other_parameters(read_json(meta), params)
    if diff:
        changes = ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in diff.items())
        raise ReprolibDataError(meta, f"this folder was generated with other parameters ({changes}); "
                                      "use another out_root or delete it")


def input_identity(ds: CityscapesDataset) -> str:
    """Which Cityscapes files a generation read: their names and sizes (a stat each, not a hash: Cityscapes' train
    split is ~6 GB, and this is checked on every reuse). Another data root, or another split's files, in the same
    output folder would otherwise be taken for the generated data of this one."""
    h = hashlib.sha256(f"{ds.split}|{len(ds)}".encode())
    for i, fid in enumerate(ds.frames):
        paths = ds.paths(i)
        sizes = ":".join(str(paths[k].stat().st_size) for k in ("image", "label_ids", "instance_ids"))
        h.update(f"{fid.stem}:{sizes}\n".encode())
    return h.hexdigest()[:16]


def _check_args(fraction: float | None, seed: Any) -> None:
    if fraction is not None and not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1] or None, got {fraction}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def generation_params(ds: CityscapesDataset, *, fraction: float | None = None, seed: int = 0, void: bool = False,
                      dynamic: bool = False, fill_void: FillVoid | None = None, roi_ignore: bool = False) -> dict[str, Any]:
    """Everything that determines a generation's bytes (:data:`_PARAM_KEYS`, as ``generator.json`` records them),
    without generating: the generator is deterministic in them, so a cache computed from its output (a processed
    split) can be found by them when the output itself is gone (:func:`reprolib.experiments.pipeline.training_split`).
    ``ValueError`` for a ``fraction`` outside [0, 1] or a negative ``seed``."""
    _check_args(fraction, seed)
    return {
        "version": GENERATOR_VERSION, "split": ds.split, "fraction": None if fraction is None else float(fraction),
        "seed": int(seed), "void": bool(void), "dynamic": bool(dynamic),
        "fill_void": None if fill_void is None else getattr(fill_void, "__qualname__", type(fill_void).__name__),
        # which weights filled void (a segmentation network's fingerprint), where the callable says
        "fill_void_weights": getattr(fill_void, "weights", None),
        "roi_ignore": bool(roi_ignore),
        "input": input_identity(ds),
    }


def generate_training_data(
    cityscapes_root: PathLike,
    out_root: PathLike,
    split: str = "train",
    fraction: float | None = None,
    seed: int = 0,
    void: bool = False,
    dynamic: bool = False,
    fill_void: FillVoid | None = None,
    progress: bool = True,
    roi_ignore: bool = False,
    before_work: Callable[[], None] | None = None,
) -> Path:
    """Write SynBoost's generated training data for a Cityscapes-format split; returns ``out_root``.

    ``fraction`` fixes the share of relabelled instances (default: U ~ Uniform(0,1) per image, the original).
    ``dynamic`` also marks every ``dynamic`` (labelId 5) pixel inside the ROI as anomalous.

    ``void=True`` writes ``labels_with_void_no_ego/`` with the **intended** void-as-anomaly semantics: the
    ground-truth pixels of :data:`VOID_ANOMALY_LABEL_IDS` (unlabeled, rectification border, out of roi,
    static, caravan, trailer) → 1, the instance anomalies kept, the ego vehicle known (0). This fixes the
    original HEAD ``include_void_to_labels`` (spec §4.5, §7.5), which adds 255 to a uint8 0/1 mask (1 + 255
    wraps to 0) and so writes void as *ignored* and erases the instance anomalies; its commented-out lines
    and the class weights hard-coded for void data (≈ 11 % anomaly pixels, no ignore) show the intent
    implemented here. Like the original, every file holds 0/1 only; ``roi_ignore=True`` writes 255 on the
    ego vehicle, rectification border and out-of-roi pixels of both label folders instead. As
    ``create_void_semantic_original`` does, the void pixels of ``semantic/`` (and ``semantic_labelId/``) are
    then filled with a known class before resynthesis, so void objects get repainted: by
    ``fill_void(index, image, train_ids) -> (H,W) trainIds`` when given (e.g. a segmentation prediction of the
    (H,W,3) uint8 image; only its values at void pixels are used), else — and wherever it returns 255 — by
    the nearest known class. ``labels/`` is the same in both modes.

    Determinism: image ``i`` (sorted frame order) uses ``np.random.default_rng([seed, i])``, so the PNG bytes
    depend only on the inputs and the parameters. Resumable: images whose outputs all exist are skipped
    (every file is written atomically), and ``generator.json`` guards against mixing parameters. ``before_work``:
    called before each image still to write; what it raises stops there (a session's deadline), to be resumed.
    """
    _check_args(fraction, seed)  # before the data root is read
    out = Path(out_root)
    ds = CityscapesDataset(cityscapes_root, split)
    params = generation_params(ds, fraction=fraction, seed=seed, void=void, dynamic=dynamic, fill_void=fill_void,
                               roi_ignore=roi_ignore)
    meta = out / "generator.json"
    _check_params(meta, params)
    dirs = OUTPUT_DIRS + ((VOID_DIR,) if void else ())
    info = {**params, "cityscapes_root": str(Path(cityscapes_root).resolve()), "images": len(ds),
            "replacement_label_ids": list(REPLACEMENT_LABEL_IDS), "outside_roi_label_ids": list(OUTSIDE_ROI),
            "void_anomaly_label_ids": list(VOID_ANOMALY_LABEL_IDS),
            "implied_anomaly_share_original": {d: IMPLIED_ANOMALY_SHARE[d] for d in ("labels",) + ((VOID_DIR,) if void else ())}}
    write_json(meta, {**info, "complete": False})
    t0 = time.perf_counter()
    written = relabelled = 0
    counts = {d: [0, 0] for d in ("labels",) + ((VOID_DIR,) if void else ())}  # anomaly, valid pixels
    bar = tqdm(range(len(ds)), desc=f"generate {split}", unit="img", disable=None if progress else True)
    for i in bar:
        stem = ds.frames[i].stem
        if all((out / d / f"{stem}.png").is_file() for d in dirs):
            continue
        if before_work is not None:
            before_work()
        a = ds.load_arrays(i)
        label_ids, instance_ids = a["label_ids"], a["instance_ids"]
        altered, changes = relabel(label_ids, instance_ids, np.random.default_rng([int(seed), i]), fraction)
        labels = anomaly_labels(label_ids, altered, dynamic, roi_ignore)
        semantic = LABEL_TO_TRAIN[altered]
        outputs = {"original": a["image"], "instance": instance_ids, "labels": labels}
        if void:
            outputs[VOID_DIR] = void_anomaly_labels(label_ids, labels, roi_ignore)
            filled = _fill_void(i, a["image"], semantic, fill_void)
            was_void = semantic == IGNORE_INDEX
            altered = np.where(was_void, TRAIN_TO_LABEL[filled], altered).astype(np.uint8)
            semantic = filled
        outputs["semantic"], outputs["semantic_labelId"] = semantic, altered
        for d in dirs:
            write_png(out / d / f"{stem}.png", outputs[d])
        written += 1
        relabelled += len(changes)
        for d, c in counts.items():
            c[0] += int((outputs[d] == 1).sum())
            c[1] += int((outputs[d] != IGNORE_INDEX).sum())
    bar.close()
    seconds = time.perf_counter() - t0
    shares = {d: (a / v if v else None) for d, (a, v) in counts.items()}
    main_dir = VOID_DIR if void else "labels"
    write_json(meta, {**info, "complete": True, "written_this_run": written, "relabelled_instances_this_run": relabelled,
                      "anomaly_pixel_fraction_this_run": shares[main_dir], "anomaly_pixel_share_this_run": shares,
                      "seconds_this_run": round(seconds, 2)})
    if progress and not written:
        tqdm.write(f"all {len(ds)} images already generated in {out}")
    elif progress:
        share = ", ".join(f"{d}/ {'n/a' if f is None else f'{f:.1%}'} (the original's class weights imply "
                          f"{IMPLIED_ANOMALY_SHARE[d]:.1%})" for d, f in shares.items())
        tqdm.write(f"generated {written} / {len(ds)} images ({len(ds) - written} already there) into {out} "
                   f"in {seconds:.1f} s; anomaly pixels: {share}")
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: ``python -m reprolib.data.generator --cityscapes ROOT --out DIR [options]``."""
    p = cli.ArgumentParser(prog="python -m reprolib.data.generator",
                           description="Generate SynBoost training data (instance relabelling, spec §4.5).")
    p.add_argument("--cityscapes", required=True, help="Cityscapes root (leftImg8bit/, gtFine/)")
    p.add_argument("--out", required=True, help="output folder (processed-split layout)")
    p.add_argument("--split", default="train")
    p.add_argument("--fraction", type=cli.fraction, default=None,
                   help="share of instances to relabel (default: uniform random per image, as the original)")
    p.add_argument("--seed", type=cli.count, default=0)
    p.add_argument("--void", action="store_true", help="also write labels_with_void_no_ego/ and fill void semantics")
    p.add_argument("--dynamic", action="store_true", help="mark every 'dynamic' pixel as anomalous")
    p.add_argument("--roi-ignore", action="store_true",
                   help="write 255 outside the region of interest (default: 0/1 only, as the original)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cli.check_output_dir("--out", a.out)
    out = generate_training_data(a.cityscapes, a.out, split=a.split, fraction=a.fraction, seed=a.seed,
                                 void=a.void, dynamic=a.dynamic, progress=not a.no_progress, roi_ignore=a.roi_ignore)
    print(out)
    return out


if __name__ == "__main__":
    sys.exit(cli.run(main))
