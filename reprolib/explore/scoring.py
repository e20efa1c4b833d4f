"""One image through one run (maps, p(anomaly), the ensemble's score, its errors), what moves when one thing
changes, and every image of a split scored: plain functions, each a widget action of the explorer."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from reprolib.data.formats import UNCERTAINTY_MAPS as MAP_NAMES
from reprolib.data.processed import ProcessedSplit
from reprolib.ensemble import ORDER as SCORE_KEYS
from reprolib.experiments.runner import scored_checkpoint
from reprolib.experiments.scoring import load_scores, score_split
from reprolib.experiments.session import sha256_file
from reprolib.explore.listing import (
    EVAL_KINDS,
    Selection,
    evaluation_split,
    image_index,
    image_names,
    list_runs,
    table_weights,
)
from reprolib.io import PathLike, ReprolibDataError
from reprolib.labels import IGNORE_INDEX
from reprolib.metrics import anomaly_metrics
from reprolib.precision import ieee_fp32
from reprolib.training.run import load_trained, read_config

MAP_LABELS = {"entropy": "H (entropy)", "distance": "D (softmax distance)", "perceptual": "V (perceptual)"}


@lru_cache(maxsize=8)
def _load_run(run_dir: str, mtime: float) -> tuple[torch.nn.Module, torch.nn.Module | None, dict[str, Any]]:
    net, ens = load_trained(run_dir, which=scored_checkpoint(Path(run_dir)).stem)
    return net, ens, read_config(run_dir)


def load_run(run_dir: PathLike) -> tuple[torch.nn.Module, torch.nn.Module | None, dict[str, Any]]:
    """(network, learned ensemble or None, config) of a finished run; cached while its checkpoint is unchanged."""
    ckpt = scored_checkpoint(Path(run_dir))  # what the tables score: best.ckpt, else last.ckpt
    if not ckpt.is_file():
        raise ReprolibDataError(ckpt, "checkpoint not found (has the run been trained?)")
    return _load_run(str(Path(run_dir).resolve()), ckpt.stat().st_mtime)


def fpr95_threshold(score: np.ndarray, label: np.ndarray) -> float:
    """The score at which 95 % of this image's anomaly pixels are detected (``score >= threshold``)."""
    pos = np.sort(score[label == 1].astype(np.float64))[::-1]
    if not len(pos):
        return float("nan")
    return float(pos[int(np.ceil(0.95 * len(pos))) - 1])


def image_metrics(score: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """AP, FPR95, AUROC of one image (NaN when it lacks anomaly or known pixels)."""
    try:
        return anomaly_metrics(score, label, ignore_index=IGNORE_INDEX)
    except ValueError:
        return {"ap": float("nan"), "fpr95": float("nan"), "auroc": float("nan")}


def error_map(score: np.ndarray, label: np.ndarray, threshold: float) -> np.ndarray:
    """(H,W,3) uint8 at a threshold: detected anomaly white, missed anomaly blue, false alarm red, ignore grey."""
    out = np.zeros((*label.shape, 3), np.uint8)
    hit = score >= threshold
    out[(label == 1) & hit] = (255, 255, 255)
    out[(label == 1) & ~hit] = (40, 110, 255)
    out[(label == 0) & hit] = (230, 30, 30)
    out[label == IGNORE_INDEX] = (110, 110, 110)
    return out


@dataclass
class ImageResult:
    """One image through one run (what :func:`image_figure` draws). Maps are (H,W) float32 in [0,1]."""

    name: str
    index: int
    run: str
    split: str
    image: np.ndarray  # (H,W,3) uint8
    semantic: np.ndarray  # (H,W) trainIds
    synthesis: np.ndarray  # (H,W,3) uint8
    maps: dict[str, np.ndarray]  # entropy / distance / perceptual as the network read them
    p_anomaly: np.ndarray  # the network's (or learned ensemble's) p(anomaly)
    score: np.ndarray  # the ensemble's score: Σ weights · (p, H, V, D)
    label: np.ndarray  # 0 known / 1 anomaly / 255 ignore
    weights: dict[str, float]
    dropped: tuple[str, ...]
    metrics: dict[str, float]  # of ``score``
    network_metrics: dict[str, float]  # of ``p_anomaly`` alone
    threshold: float  # this image's FPR95 threshold on ``score``
    errors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0, 3), np.uint8))

    def summary(self) -> str:
        m, n = self.metrics, self.network_metrics
        drop = f", without {'/'.join(self.dropped)}" if self.dropped else ""
        w = " ".join(f"{k[:4]}={v:.2f}" for k, v in self.weights.items() if v)
        return (f"{self.run} · {self.name}: ensemble AP {100 * m['ap']:.1f} %, FPR95 {100 * m['fpr95']:.1f} % "
                f"(network alone AP {100 * n['ap']:.1f} %, FPR95 {100 * n['fpr95']:.1f} %) — weights {w}{drop}")


@torch.no_grad()
@ieee_fp32()
def score_image(run_dir: PathLike, split: PathLike, image: int | str = 0, *, weights: dict[str, float] | None = None,
                drop: tuple[str, ...] | list[str] = (), results_dir: PathLike | None = "results",
                dataset: str | None = None, device: str = "cpu") -> ImageResult:
    """Run one image of ``split`` (index or name) through ``run_dir``'s network and the ensemble.

    ``weights`` (keys ``dissimilarity``, ``entropy``, ``perceptual``, ``distance``): None → what the table
    scored this image with (:func:`table_weights`). ``drop``: maps removed — fed to the network as zeros
    and given zero weight in the ensemble.
    """
    unknown = sorted(set(drop) - set(MAP_NAMES))
    if unknown:
        raise ValueError(f"cannot drop {unknown}: maps are {MAP_NAMES}")
    net, ens, cfg = load_run(run_dir)
    size = tuple(cfg.get("size", (256, 512)))
    index = image_index(split, image)
    ds = ProcessedSplit(split, size=size, uncertainty=True, normalize=True)
    raw = ProcessedSplit(split, size=size, uncertainty=False, normalize=False)
    if not 0 <= index < len(ds):
        raise IndexError(f"image {index} out of range: the split has {len(ds)} images")
    item, plain = ds[index], raw[index]
    for k in drop:
        item[k] = torch.zeros_like(item[k])
    args = {k: item[k][None].to(device) for k in ("original", "synthesis", "semantic", *MAP_NAMES)}
    net = net.to(device)
    logits = net(**args)
    if ens is not None:
        prob = ens.to(device).score(logits, args["entropy"], args["perceptual"], args["distance"])
    else:
        prob = torch.softmax(logits.float(), dim=1)[:, 1]
    p = prob[0].float().cpu().numpy()
    maps = {k: item[k][0].numpy() for k in MAP_NAMES}
    dataset = dataset or EVAL_KINDS.get(Path(split).name.split("-")[0], "")
    w = {k: 0.0 for k in SCORE_KEYS}
    w.update(table_weights(run_dir, dataset, index, results_dir) if weights is None else weights)
    for k in drop:
        w[k] = 0.0
    score = w["dissimilarity"] * p + sum(w[k] * maps[k] for k in MAP_NAMES)
    score = np.asarray(score, np.float32)
    label = item["label"].numpy().astype(np.uint8)
    threshold = fpr95_threshold(score, label)
    semantic = item["semantic"].argmax(0).numpy().astype(np.uint8)
    semantic[item["semantic"].sum(0).numpy() == 0] = IGNORE_INDEX
    return ImageResult(
        name=item["name"], index=index, run=Path(run_dir).name, split=str(split),
        image=(plain["original"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), semantic=semantic,
        synthesis=(plain["synthesis"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), maps=maps,
        p_anomaly=p, score=score, label=label, weights=w, dropped=tuple(drop), metrics=image_metrics(score, label),
        network_metrics=image_metrics(p, label), threshold=threshold,
        errors=error_map(score, label, threshold) if np.isfinite(threshold) else np.zeros((*label.shape, 3), np.uint8),
    )


def what_moves(selection: Selection, *, other_run: PathLike | None = None, other_combo: str | None = None,
               work_dir: PathLike = "data", profile: str = "demo", results_dir: PathLike | None = "results",
               device: str = "cpu") -> pd.DataFrame:
    """One image's AP / FPR95 as reported, then with one thing changed per row: the network alone, each map
    removed, ``other_run`` (default: the first finished run whose network reads no maps, i.e. the w/o-maps
    model) and, if given, the same image through ``other_combo``'s backends (:func:`evaluation_split`)."""
    sel = selection
    kw = {"results_dir": results_dir, "dataset": sel.dataset, "device": device}
    base = score_image(sel.run, sel.split, sel.image, **kw)
    rows = [("as reported", base)]
    rows.append(("network p(anomaly) alone", score_image(sel.run, sel.split, sel.image, weights={"dissimilarity": 1.0}, **kw)))
    for k in MAP_NAMES:
        rows.append((f"without {MAP_LABELS[k]}", score_image(sel.run, sel.split, sel.image, drop=[k], **kw)))
    if other_run is None:
        runs = list_runs(Path(sel.run).parent.parent.parent, Path(sel.run).parent.parent.name, results_dir)
        no_maps = runs[~runs["maps"].astype(bool) & (runs["path"] != str(sel.run))]
        other_run = no_maps["path"].iloc[0] if len(no_maps) else None
    if other_run is not None:
        rows.append((f"run {Path(other_run).name}", score_image(other_run, sel.split, sel.image, **kw)))
    if other_combo is not None:
        split = evaluation_split(work_dir, profile, other_combo, sel.dataset, device=device)
        rows.append((f"combo {other_combo}", score_image(sel.run, split, base.name, **kw)))
    out = pd.DataFrame([{"change": name, "ap": r.metrics["ap"], "fpr95": r.metrics["fpr95"],
                         "d_ap": r.metrics["ap"] - base.metrics["ap"], "d_fpr95": r.metrics["fpr95"] - base.metrics["fpr95"],
                         "network_ap": r.network_metrics["ap"], "network_fpr95": r.network_metrics["fpr95"]}
                        for name, r in rows]).set_index("change")
    out.attrs["image"] = base.name
    return out


def split_scores(run_dir: PathLike, split: PathLike, dataset: str | None = None, device: str = "cpu") -> dict:
    """Per-image scores of a split: the table's cache in the run folder when present, else computed now."""
    dataset = dataset or EVAL_KINDS.get(Path(split).name.split("-")[0], "")
    ckpt = scored_checkpoint(Path(run_dir))
    if ckpt.is_file():  # the runner's cache name: the checkpoint scored and its content hash
        cache = Path(run_dir) / "scores" / f"{dataset}-{Path(split).name}-{ckpt.stem}-{sha256_file(ckpt)[:12]}.npz"
        if cache.is_file():
            return load_scores(cache)
    net, ens, cfg = load_run(run_dir)
    return score_split(net, split, size=tuple(cfg.get("size", (256, 512))), device=device, ensemble=ens)


def per_image_table(run_dir: PathLike, split: PathLike, *, weights: dict[str, float] | None = None,
                    results_dir: PathLike | None = "results", dataset: str | None = None,
                    device: str = "cpu") -> pd.DataFrame:
    """AP, FPR95 (ensemble score and network alone) and anomaly size per image, worst AP first.

    Indexed by the image's position in the split (what :func:`score_image` takes); ``weights`` as there.
    """
    dataset = dataset or EVAL_KINDS.get(Path(split).name.split("-")[0], "")
    s = split_scores(run_dir, split, dataset, device)
    names = image_names(split)
    rows = []
    for i, label in enumerate(s["label"]):
        w = {k: 0.0 for k in SCORE_KEYS}
        w.update(table_weights(run_dir, dataset, i, results_dir) if weights is None else weights)
        score = sum(w[k] * s[k][i] for k in SCORE_KEYS)
        m, n = image_metrics(score, label), image_metrics(s["dissimilarity"][i], label)
        valid = int((label != IGNORE_INDEX).sum())
        rows.append({"image": i, "name": names[i] if i < len(names) else str(i), "ap": m["ap"], "fpr95": m["fpr95"],
                     "network_ap": n["ap"], "network_fpr95": n["fpr95"], "anomaly_px": int((label == 1).sum()),
                     "anomaly_frac": float((label == 1).sum()) / max(1, valid)})
    df = pd.DataFrame(rows).set_index("image")
    return df.sort_values(["ap", "fpr95"], ascending=[True, False], na_position="last")
