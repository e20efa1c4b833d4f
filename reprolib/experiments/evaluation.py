"""Evaluate one trained model: a checkpoint + a backend combo + a Fishyscapes-format set → metrics.

``evaluation_split`` runs a combo's segmentation and resynthesis over a Fishyscapes L&F / Static folder once
(cached by :func:`reprolib.precompute.precompute`); ``evaluate_checkpoint`` scores a processed split with a
trained network (raw p(anomaly) and, with ``ensemble="fixed"``, the shipped 0.75·p + 0.25·H), at the
benchmark resolution by default, and writes the per-image scores, prediction PNGs, the inference time per
image and the metrics into ``out_dir``. ``python -m reprolib evaluate`` is the command line over both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reprolib.data.fishyscapes import LostAndFoundDataset, StaticDataset
from reprolib.experiments.ensembling import evaluate_ensemble
from reprolib.experiments.runner import scored_checkpoint
from reprolib.experiments.scoring import save_scores, score_split, split_sequences, write_predictions
from reprolib.io import PathLike, ReprolibDataError, image_size, read_json, write_json

EVAL_KINDS = ("fs_lost_and_found", "fs_static")


def evaluation_dataset(kind: str, root: PathLike, *, laf_root: PathLike | None = None,
                       cityscapes_root: PathLike | None = None) -> Any:
    """The Fishyscapes-format dataset of ``kind`` at ``root`` (L&F needs ``laf_root`` outside the embedded
    world's layout; Static needs the Cityscapes tree its overlays apply to)."""
    if kind == "fs_lost_and_found":
        return LostAndFoundDataset(root, laf_root=laf_root)
    if kind == "fs_static":
        if cityscapes_root is None:
            raise ValueError("fs_static needs cityscapes_root (the Cityscapes tree whose val images it overlays)")
        return StaticDataset(root, cityscapes_root)
    raise ValueError(f"unknown evaluation set kind {kind!r}; valid kinds: {', '.join(EVAL_KINDS)}")


def evaluation_split(
    dataset: Any, combo: str, work_dir: PathLike, *, size: tuple[int, int],
    checkpoints: Mapping[str, PathLike] | None = None, embedded_dir: PathLike | None = None,
    device: str = "cpu", batch_size: int = 4, amp: bool = False,
) -> Path:
    """Precompute (or reuse) ``dataset`` through a named combo's backends at ``size``; returns the split.

    fp32, as the tables' own precompute, unless ``amp`` (fp16 autocast for the backends on CUDA): the maps then
    differ from the tables' (on an H200, the random Original backends at 1024×2048 moved 4.9 % of D's 8-bit
    values by one level and 0.025 % of the semantic labels), and the split is cached under another key."""
    # lazy: the backends and precompute import torchvision, +2.3 s on `import reprolib.experiments`
    # (python -X importtime); only a new evaluation split needs them
    from reprolib.backends import get_combo
    from reprolib.precompute import precompute

    kw: dict[str, Any] = {"device": device}
    if combo.startswith("embedded"):
        kw["embedded_dir"] = embedded_dir
    else:
        kw["checkpoints"] = dict(checkpoints or {})
    seg, resyn = get_combo(combo, **kw)
    return Path(precompute(dataset, seg, resyn, Path(work_dir) / "processed", size=size, batch_size=batch_size,
                           amp=amp))


def split_size(split: PathLike) -> tuple[int, int]:
    """The processing size a processed split was made at: its ``key.json``, else its first ``original/`` image
    (splits written by other tools, e.g. the original code's data preparation, have no key)."""
    key = Path(split) / "key.json"
    if key.is_file():
        stored = read_json(key)
        params = stored.get("params") if isinstance(stored, dict) else None
        size = params.get("size") if isinstance(params, dict) else None
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise ReprolibDataError(key, "not a precompute key.json: no params.size [H, W]")
        return int(size[0]), int(size[1])
    first = next(iter(sorted((Path(split) / "original").glob("*.png"))), None)
    if first is None:
        raise ReprolibDataError(split, "not a processed split (no key.json, no original/*.png)")
    return image_size(first)


def _precompute_seconds_per_image(split: PathLike) -> float | None:
    """Segmentation + resynthesis + maps time per image, as the precompute that made ``split`` measured it."""
    done = Path(split) / "done.json"
    rate = read_json(done).get("images_per_second") if done.is_file() else None
    return 1.0 / rate if rate else None


def load_model(checkpoint: PathLike) -> tuple[Any, Any]:
    """(network, learned ensemble or None) from a run directory (the checkpoint the tables score: its
    ``best.ckpt``, else ``last.ckpt``) or a ``.ckpt`` file; a missing, foreign or mis-sized checkpoint is a
    :class:`ReprolibDataError` naming the file."""
    # lazy: reprolib.training.run imports Lightning, +3.2 s on `import reprolib.experiments` (python -X importtime)
    from reprolib.training.run import load_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise ReprolibDataError(checkpoint, "not found (expected a run directory or a .ckpt file)")
    if checkpoint.is_dir():
        checkpoint = scored_checkpoint(checkpoint)
        if not checkpoint.is_file():
            raise ReprolibDataError(checkpoint, "checkpoint not found (has the run been trained?)")
    return load_checkpoint(checkpoint)


def evaluate_checkpoint(
    checkpoint: PathLike, split: PathLike, out_dir: PathLike, *, ensemble: str = "none",
    resolution: str = "benchmark", device: str = "cpu", batch_size: int = 4, n_predictions: int | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Score ``split`` with the network in ``checkpoint`` (a ``.ckpt`` file, or a run directory: then its
    ``best.ckpt`` — lowest validation loss, what the tables score — else its ``last.ckpt``).

    Writes ``out_dir/scores.npz`` (per-image maps), ``predictions/NNNN.png`` (p(anomaly) heat maps),
    ``metrics.json`` (AP, FPR95, AUROC, the resolution, seconds per image) and returns that dict.
    ``loaded``: the :func:`load_model` result when the caller has already loaded (and so checked) it.
    """
    checkpoint = Path(checkpoint)
    model, learned = loaded if loaded is not None else load_model(checkpoint)
    if checkpoint.is_dir():
        checkpoint = scored_checkpoint(checkpoint)  # the file actually scored, for metrics.json
    size = split_size(split)
    t0 = time.perf_counter()
    scores = score_split(model, split, size=size, device=device, batch_size=batch_size,
                         ensemble=learned, resolution=resolution)
    per_image = (time.perf_counter() - t0) / max(1, len(scores["label"]))
    metrics, info = evaluate_ensemble(scores, ensemble, sequences=split_sequences(split))[""]
    out = Path(out_dir)
    save_scores(scores, out / "scores.npz")
    write_predictions(scores["dissimilarity"], out / "predictions", limit=n_predictions)
    result = {"metrics": metrics, "ensemble": ensemble, "ensemble_info": json.loads(json.dumps(info, default=str)),
              "resolution": resolution, "eval_size": list(scores["label"][0].shape),
              "processing_size": list(size), "n_images": len(scores["label"]),
              "seconds_per_image": per_image, "device": device,
              "precompute_seconds_per_image": _precompute_seconds_per_image(split),
              "checkpoint": str(checkpoint), "split": str(split)}
    write_json(out / "metrics.json", result)
    return result
