"""Look inside a trained model on one image, change one thing, see what moves (``notebooks/explore.ipynb``).

Every widget action of :func:`explorer` is a plain function here, so a test (or a script) calls it directly:

* :func:`list_runs` — finished training runs under ``work_dir/<profile>/runs/`` (any table's), with the table
  rows that used them; :func:`list_splits` — the evaluation images (processed FS L&F / FS Static splits, of
  any combo) a run can be scored on; :func:`evaluation_split` makes one for another combo or data root;
* :func:`score_image` — one image through one run: the maps, the network's p(anomaly), the ensemble's score
  with given weights (or the weights the table used), a map removed, its AP / FPR95, the errors at the
  image's FPR95 threshold; :func:`image_figure` draws it;
* :func:`per_image_table` — AP, FPR95 and anomaly size of every image of a split, worst first.

Nothing here trains: with no finished run, :func:`nothing_trained` says what to run first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from reprolib.ensemble import FIXED_ENSEMBLE as FIXED_WEIGHTS
from reprolib.experiments.ensembling import SCORE_KEYS
from reprolib.experiments.runner import scored_checkpoint
from reprolib.experiments.scoring import MAP_NAMES
from reprolib.experiments.session import sha256_file
from reprolib.io import PathLike, ReprolibDataError, read_json

#: processed-split kind (``key.json``'s dataset kind) → evaluation set name used in the tables
EVAL_KINDS = {"lostandfound": "fs_lost_and_found", "static": "fs_static"}
MAP_LABELS = {"entropy": "H (entropy)", "distance": "D (softmax distance)", "perceptual": "V (perceptual)"}


def resolve_dir(path: PathLike) -> Path:
    """A relative ``work_dir``/``results_dir`` as the Makefile means it: from the repository root, also when the
    kernel runs in ``notebooks/`` (JupyterLab starts kernels in the notebook's folder)."""
    p = Path(path)
    if p.is_absolute() or p.exists() or Path.cwd().name != "notebooks":
        return p
    return Path.cwd().parent / p


def nothing_trained(work_dir: PathLike = "data", profile: str = "demo") -> str:
    """What to run first when ``work_dir`` holds no finished run."""
    return (f"No finished training run under {Path(work_dir) / profile / 'runs'}. Train one first, e.g. "
            f"`make table4` (profile {profile!r}; a few minutes on the demo profile), or run notebooks/table4.ipynb, "
            "then rerun this notebook.")


# ---------------------------------------------------------------------------------------------- listings


def _results_index(results_dir: PathLike | None) -> pd.DataFrame:
    """Every table row written under ``results_dir`` (``*/<table>.csv``), for linking runs to tables."""
    if results_dir is None or not Path(results_dir).is_dir():
        return pd.DataFrame(columns=["table", "variant", "dataset", "checkpoint", "ensemble", "ensemble_info"])
    frames = []
    for csv in sorted(Path(results_dir).glob("**/*.csv")):
        try:
            df = pd.read_csv(csv, usecols=lambda c: c in {"table", "variant", "dataset", "checkpoint", "ensemble",
                                                          "ensemble_info", "metric"})
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue  # not a table of results (e.g. a comparison export)
        if {"table", "variant", "checkpoint"} <= set(df.columns):
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["table", "variant", "dataset", "checkpoint", "ensemble", "ensemble_info"])
    df = pd.concat(frames, ignore_index=True)
    # rows name the checkpoint file scored (``<run>/checkpoints/best.ckpt``): index them by run folder
    df["checkpoint"] = df["checkpoint"].astype(str).map(
        lambda p: str((Path(p).parents[1] if p.endswith(".ckpt") else Path(p)).resolve()))
    return df


def list_runs(work_dir: PathLike = "data", profile: str | None = None,
              results_dir: PathLike | None = "results") -> pd.DataFrame:
    """Finished runs (``done.json``) under ``work_dir/<profile>/runs/``, one row each.

    Columns: ``run`` (folder name), ``profile``, ``combo``, ``seed``, ``maps`` (whether the network reads
    H/D/V), ``ensemble``, ``used_by`` (``table:variant`` rows of ``results_dir`` that report it), ``path``.
    """
    pattern = f"{profile}/runs/*/done.json" if profile else "*/runs/*/done.json"
    used = _results_index(results_dir)
    rows = []
    for done in sorted(Path(work_dir).glob(pattern)):
        run = done.parent
        try:
            cfg = read_json(run / "config.json")
        except ReprolibDataError:
            continue
        model = cfg.get("model", {})
        by = used[used["checkpoint"] == str(run.resolve())] if len(used) else used
        rows.append({
            "run": run.name, "profile": cfg.get("profile", run.parent.parent.name),
            "combo": run.name.rsplit("-", 2)[0], "seed": cfg.get("seed"),
            "maps": bool(model.get("uncertainty", True)), "ensemble": cfg.get("ensemble", "none"),
            "used_by": ", ".join(sorted({f"{t}:{v}" for t, v in zip(by["table"], by["variant"], strict=True)})),
            "path": str(run),
        })
    return pd.DataFrame(rows, columns=["run", "profile", "combo", "seed", "maps", "ensemble", "used_by", "path"])


def list_splits(work_dir: PathLike = "data", profile: str | None = None) -> pd.DataFrame:
    """Finished evaluation splits (FS L&F / FS Static, any combo) under ``work_dir/<profile>/processed/``.

    Columns: ``dataset`` (``fs_lost_and_found`` / ``fs_static`` / the source kind), ``segmentation``,
    ``resynthesis``, ``images``, ``path``.
    """
    pattern = f"{profile}/processed/*/done.json" if profile else "*/processed/*/done.json"
    rows = []
    for done in sorted(Path(work_dir).glob(pattern)):
        split = done.parent
        try:
            key = read_json(split / "key.json")
        except ReprolibDataError:
            continue
        kind = key.get("dataset", {}).get("kind", "")
        if kind == "generated":  # training / validation data, not an evaluation set
            continue
        rows.append({"dataset": EVAL_KINDS.get(kind, kind), "segmentation": key["segmentation"]["name"],
                     "resynthesis": key["resynthesis"]["name"],
                     "images": len(list((split / "original").glob("*.png"))), "path": str(split)})
    return pd.DataFrame(rows, columns=["dataset", "segmentation", "resynthesis", "images", "path"])


def run_splits(run_dir: PathLike, work_dir: PathLike | None = None) -> dict[str, Path]:
    """The evaluation splits a run was scored on by its table ({dataset: split}), from its score cache."""
    run_dir = Path(run_dir)
    processed = Path(work_dir) if work_dir else run_dir.parent.parent / "processed"
    out: dict[str, Path] = {}
    splits = [p for p in processed.iterdir() if p.is_dir()] if processed.is_dir() else []
    for npz in sorted((run_dir / "scores").glob("*.npz")):  # <dataset>-<split>[-benchmark]-<ckpt>-<sha12>.npz
        for dataset in EVAL_KINDS.values():
            for split in splits:
                if npz.stem.startswith(f"{dataset}-{split.name}-"):
                    out.setdefault(dataset, split)
    return out


def evaluation_split(work_dir: PathLike = "data", profile: str = "demo", combo: str = "original",
                     dataset: str = "fs_lost_and_found", data_root: PathLike | None = None,
                     checkpoints: dict[str, str] | None = None, device: str = "cpu") -> Path:
    """The processed split of ``dataset`` under another ``combo`` (or another Fishyscapes-format ``data_root``).

    Reuses the table pipeline's cache: returns at once when the split exists, else runs the combo's
    backends and maps over the images (embedded backends not yet trained are trained first: minutes).
    """
    from reprolib.experiments import pipeline as P
    from reprolib.experiments.profiles import get_pipeline_profile

    prof = get_pipeline_profile(profile)
    work = Path(work_dir) / prof.name
    ctx = P.Context(profile=prof, work_dir=work, data=P.resolve_data(work, data_root, prof),
                    checkpoints=checkpoints, device=device, wandb_mode="disabled")
    splits = P.evaluation_splits(ctx, combo)
    if dataset not in splits:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(splits)}")
    return splits[dataset]


# ---------------------------------------------------------------------------------------------- one image


def image_names(split: PathLike) -> list[str]:
    """Stems of a split's images, in the order the tables score them."""
    from natsort import natsorted

    files = natsorted((Path(split) / "original").glob("*.png"), key=lambda p: p.name)
    if not files:
        raise ReprolibDataError(Path(split) / "original", "no PNG images (not a processed split?)")
    return [p.stem for p in files]


@lru_cache(maxsize=8)
def _load_run(run_dir: str, mtime: float) -> tuple[torch.nn.Module, torch.nn.Module | None, dict[str, Any]]:
    from reprolib.training.run import load_trained, read_config

    net, ens = load_trained(run_dir, which=scored_checkpoint(Path(run_dir)).stem)
    return net, ens, read_config(run_dir)


def load_run(run_dir: PathLike) -> tuple[torch.nn.Module, torch.nn.Module | None, dict[str, Any]]:
    """(network, learned ensemble or None, config) of a finished run; cached while its checkpoint is unchanged."""
    ckpt = scored_checkpoint(Path(run_dir))  # what the tables score: best.ckpt, else last.ckpt
    if not ckpt.is_file():
        raise ReprolibDataError(ckpt, "checkpoint not found (has the run been trained?)")
    return _load_run(str(Path(run_dir).resolve()), ckpt.stat().st_mtime)


def table_weights(run_dir: PathLike, dataset: str, index: int, results_dir: PathLike | None = "results") -> dict:
    """The ensemble weights the table's main row scored image ``index`` with.

    Grid search is cross-fitted (:mod:`reprolib.experiments.ensembling`): fold 0 is tuned on the even images
    and scores the odd ones, fold 1 the reverse. A run no table reports gets the shipped fixed weights when it
    was trained for the grid ensemble, else its p(anomaly) alone.
    """
    idx = _results_index(results_dir)
    rows = idx[(idx["checkpoint"] == str(Path(run_dir).resolve())) & (idx.get("dataset") == dataset)
               & ~idx["variant"].astype(str).str.contains("@")] if len(idx) else idx
    if len(rows) and (rows["ensemble"] == "fixed").all():
        return dict(FIXED_WEIGHTS)
    for _, row in rows.iterrows():
        if row.get("ensemble") != "grid":
            continue
        weights = json.loads(row["ensemble_info"]).get("weights")
        if isinstance(weights, list) and len(weights) == 2:
            return {k: float(v) for k, v in weights[0 if index % 2 else 1].items()}
        if isinstance(weights, dict):
            return {k: float(v) for k, v in weights.items()}
    if len(rows) or _run_ensemble(run_dir) != "grid":
        return {"dissimilarity": 1.0}  # reported without the ensemble (or a learned one, inside p(anomaly))
    return dict(FIXED_WEIGHTS)


def _run_ensemble(run_dir: PathLike) -> str:
    try:
        return str(read_json(Path(run_dir) / "config.json").get("ensemble", "none"))
    except ReprolibDataError:
        return "none"


def fpr95_threshold(score: np.ndarray, label: np.ndarray) -> float:
    """The score at which 95 % of this image's anomaly pixels are detected (``score >= threshold``)."""
    pos = np.sort(score[label == 1].astype(np.float64))[::-1]
    if not len(pos):
        return float("nan")
    return float(pos[int(np.ceil(0.95 * len(pos))) - 1])


def image_metrics(score: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """AP, FPR95, AUROC of one image (NaN when it lacks anomaly or known pixels)."""
    from reprolib.metrics import anomaly_metrics

    try:
        return anomaly_metrics(score, label, ignore_index=255)
    except ValueError:
        return {"ap": float("nan"), "fpr95": float("nan"), "auroc": float("nan")}


def error_map(score: np.ndarray, label: np.ndarray, threshold: float) -> np.ndarray:
    """(H,W,3) uint8 at a threshold: detected anomaly white, missed anomaly blue, false alarm red, ignore grey."""
    out = np.zeros((*label.shape, 3), np.uint8)
    hit = score >= threshold
    out[(label == 1) & hit] = (255, 255, 255)
    out[(label == 1) & ~hit] = (40, 110, 255)
    out[(label == 0) & hit] = (230, 30, 30)
    out[label == 255] = (110, 110, 110)
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


def _image_index(split: PathLike, image: int | str) -> int:
    if isinstance(image, str):
        names = image_names(split)
        if image not in names:
            raise ReprolibDataError(split, f"no image named {image!r} in this split")
        return names.index(image)
    return int(image)


@torch.no_grad()
def score_image(run_dir: PathLike, split: PathLike, image: int | str = 0, *, weights: dict[str, float] | None = None,
                drop: tuple[str, ...] | list[str] = (), results_dir: PathLike | None = "results",
                dataset: str | None = None, device: str = "cpu") -> ImageResult:
    """Run one image of ``split`` (index or name) through ``run_dir``'s network and the ensemble.

    ``weights`` (keys ``dissimilarity``, ``entropy``, ``perceptual``, ``distance``): None → what the table
    scored this image with (:func:`table_weights`). ``drop``: maps removed — fed to the network as zeros
    and given zero weight in the ensemble.
    """
    from reprolib.data.processed import ProcessedSplit

    unknown = sorted(set(drop) - set(MAP_NAMES))
    if unknown:
        raise ValueError(f"cannot drop {unknown}: maps are {MAP_NAMES}")
    net, ens, cfg = load_run(run_dir)
    size = tuple(cfg.get("size", (256, 512)))
    index = _image_index(split, image)
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
    semantic[item["semantic"].sum(0).numpy() == 0] = 255
    return ImageResult(
        name=item["name"], index=index, run=Path(run_dir).name, split=str(split),
        image=(plain["original"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), semantic=semantic,
        synthesis=(plain["synthesis"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), maps=maps,
        p_anomaly=p, score=score, label=label, weights=w, dropped=tuple(drop), metrics=image_metrics(score, label),
        network_metrics=image_metrics(p, label), threshold=threshold,
        errors=error_map(score, label, threshold) if np.isfinite(threshold) else np.zeros((*label.shape, 3), np.uint8),
    )


PANELS = ("image", "semantic map", "resynthesis", "H (entropy)", "D (softmax distance)", "V (perceptual)",
          "network p(anomaly)", "ensemble score", "ground truth", "errors at FPR95")


def image_figure(result: ImageResult, title: str | None = None):
    """The ten panels of one image side by side (a matplotlib Figure, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from reprolib.labels import colorize_train

    r = result
    gt = np.where(r.label == 255, 0.5, r.label.astype(np.float32))
    panels = [r.image, colorize_train(r.semantic), r.synthesis, r.maps["entropy"], r.maps["distance"],
              r.maps["perceptual"], r.p_anomaly, r.score, gt, r.errors]
    h, w = r.label.shape
    fig = Figure(figsize=(13, 2 * 13 / 5 * h / w + 0.9), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 5)
    for ax, name, panel in zip(axes.ravel(), PANELS, panels, strict=True):
        vmax = max(1.0, float(panel.max())) if name == "ensemble score" else 1.0
        ax.imshow(panel, cmap=None if panel.ndim == 3 else ("gray" if name == "ground truth" else "magma"),
                  vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or r.summary(), fontsize=9)
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    """PNG bytes of a figure (what the widget's image panel shows)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def show_figure(fig) -> None:
    """Display a figure inline as a PNG (works whatever matplotlib backend another cell selected)."""
    from IPython.display import Image, display

    display(Image(data=figure_png(fig)))


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


# ---------------------------------------------------------------------------------------------- the set


def split_scores(run_dir: PathLike, split: PathLike, dataset: str | None = None, device: str = "cpu") -> dict:
    """Per-image scores of a split: the table's cache in the run folder when present, else computed now."""
    from reprolib.experiments.scoring import load_scores, score_split

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
        valid = int((label != 255).sum())
        rows.append({"image": i, "name": names[i] if i < len(names) else str(i), "ap": m["ap"], "fpr95": m["fpr95"],
                     "network_ap": n["ap"], "network_fpr95": n["fpr95"], "anomaly_px": int((label == 1).sum()),
                     "anomaly_frac": float((label == 1).sum()) / max(1, valid)})
    df = pd.DataFrame(rows).set_index("image")
    return df.sort_values(["ap", "fpr95"], ascending=[True, False], na_position="last")


# ---------------------------------------------------------------------------------------------- the widget


@dataclass
class Selection:
    """What the explorer shows: a run, a split, an image; defaults chosen by :func:`default_selection`."""

    run: Path
    split: Path
    image: int = 0
    dataset: str = ""


def default_selection(work_dir: PathLike = "data", profile: str | None = "demo", run: str | None = None,
                      dataset: str = "fs_lost_and_found", image: int | str = 0,
                      results_dir: PathLike | None = "results") -> Selection | None:
    """A run (by folder name; default: the first one a table reports with maps, else the first) and one of its
    evaluation splits; prints :func:`nothing_trained` and returns None when nothing is trained."""
    runs = list_runs(work_dir, profile, results_dir)
    if runs.empty:
        print(nothing_trained(work_dir, profile or "demo"))
        return None
    if run is not None:
        chosen = runs[runs["run"] == run]
        if chosen.empty:
            raise ValueError(f"no finished run named {run!r}; found {list(runs['run'])}")
    else:
        ranked = runs.assign(_reported=runs["used_by"] != "").sort_values(["_reported", "maps"], ascending=False,
                                                                          kind="stable")
        chosen = ranked
    for path in chosen["path"]:
        splits = run_splits(path)
        if splits:
            ds = dataset if dataset in splits else sorted(splits)[0]
            return Selection(Path(path), splits[ds], _image_index(splits[ds], image), ds)
    listing = list_splits(work_dir, profile)
    if listing.empty:
        print(f"The runs under {work_dir} have not been scored on an evaluation set yet: run the table to the end.")
        return None
    row = listing[listing["dataset"] == dataset].iloc[0] if (listing["dataset"] == dataset).any() else listing.iloc[0]
    return Selection(Path(chosen["path"].iloc[0]), Path(row["path"]), _image_index(row["path"], image), row["dataset"])


def explorer(work_dir: PathLike = "data", profile: str | None = "demo", results_dir: PathLike | None = "results",
             selection: Selection | None = None, device: str = "cpu"):
    """The interactive panel: run / split / image pickers, ensemble-weight sliders, map removal, the ten
    panels with AP / FPR95 beside them, and the per-image table with a row picker. Returns the widget
    (an HTML message when nothing is trained). The widget's ``controls`` attribute exposes every control,
    its ``refresh()`` redraws — both plain calls, so a test drives it without a browser."""
    import ipywidgets as W

    selection = selection or default_selection(work_dir, profile, results_dir=results_dir)
    if selection is None:
        return W.HTML(f"<b>{nothing_trained(work_dir, profile or 'demo')}</b>")
    runs = list_runs(work_dir, profile, results_dir)
    splits = list_splits(work_dir, profile)

    def run_label(r: pd.Series) -> str:
        return f"{r['run']} ({'maps' if r['maps'] else 'no maps'}; {r['used_by'] or 'no table'})"

    def split_label(r: pd.Series) -> str:
        return f"{r['dataset']} — {r['segmentation']} / {r['resynthesis']} ({r['images']} images)"

    run_dd = W.Dropdown(options=[(run_label(r), r["path"]) for _, r in runs.iterrows()],
                        value=str(selection.run), description="run", layout=W.Layout(width="60%"))
    split_dd = W.Dropdown(options=[(split_label(r), r["path"]) for _, r in splits.iterrows()],
                          value=str(selection.split), description="images", layout=W.Layout(width="520px"))
    image_dd = W.Dropdown(options=[(n, i) for i, n in enumerate(image_names(selection.split))],
                          value=selection.image, description="image")
    table_w = W.Checkbox(value=True, description="weights the table used", indent=False)
    names = {"dissimilarity": "p(anomaly)", "entropy": "H", "perceptual": "V", "distance": "D"}
    sliders = {k: W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description=f"weight {names[k]}",
                                continuous_update=False, readout_format=".2f", style={"description_width": "120px"},
                                layout=W.Layout(width="340px")) for k in SCORE_KEYS}
    drops = {k: W.Checkbox(value=False, description=f"remove {MAP_LABELS[k]}", indent=False,
                           layout=W.Layout(width="240px")) for k in MAP_NAMES}
    picture = W.Image(format="png", layout=W.Layout(width="100%"))
    metrics = W.HTML()
    table = W.HTML()
    row = W.BoundedIntText(value=selection.image, min=0, max=max(0, len(image_names(selection.split)) - 1),
                           description="show row")
    status = W.HTML()
    state: dict[str, Any] = {"baseline": None}
    from reprolib.backends import COMBOS

    combo_dd = W.Dropdown(options=[c for c in COMBOS if c.startswith("embedded")] + [c for c in COMBOS
                                                                                   if not c.startswith("embedded")],
                          value="embedded-light", description="other combo")
    combo_btn = W.Button(description="add its images", tooltip="run this combo's backends and maps over the set "
                                                                 "(cached; embedded backends not yet trained: minutes)")

    def dataset_of(path: str) -> str:
        match = splits[splits["path"] == path]
        return str(match["dataset"].iloc[0]) if len(match) else ""

    def current_weights() -> dict[str, float] | None:
        return None if table_w.value else {k: s.value for k, s in sliders.items()}

    def refresh(*_: Any) -> ImageResult | None:
        status.value = "<i>scoring…</i>"
        try:
            res = score_image(run_dd.value, split_dd.value, image_dd.value, weights=current_weights(),
                              drop=[k for k, c in drops.items() if c.value], results_dir=results_dir,
                              dataset=dataset_of(split_dd.value), device=device)
        except (ReprolibDataError, ValueError, IndexError) as exc:
            status.value = f"<b>cannot score:</b> {exc}"
            return None
        if table_w.value:  # show the table's weights on the (inactive) sliders
            for k, s in sliders.items():
                s.value = res.weights[k]
        picture.value = figure_png(image_figure(res))
        base = state["baseline"]
        line = res.summary()
        if base is not None and base.name == res.name:
            d_ap, d_fpr = 100 * (res.metrics["ap"] - base.metrics["ap"]), 100 * (res.metrics["fpr95"] - base.metrics["fpr95"])
            line += f"<br>vs as reported: ΔAP {d_ap:+.1f} pt, ΔFPR95 {d_fpr:+.1f} pt"
        metrics.value = f"<b>AP {100 * res.metrics['ap']:.1f} % · FPR95 {100 * res.metrics['fpr95']:.1f} %</b><br>{line}"
        status.value = ""
        return res

    def reset_baseline(*_: Any) -> None:
        state["baseline"] = score_image(run_dd.value, split_dd.value, image_dd.value, results_dir=results_dir,
                                        dataset=dataset_of(split_dd.value), device=device)

    def refresh_table(*_: Any) -> pd.DataFrame:
        df = per_image_table(run_dd.value, split_dd.value, weights=current_weights(), results_dir=results_dir,
                             dataset=dataset_of(split_dd.value), device=device)
        table.value = (df.style.format({c: "{:.3f}" for c in ("ap", "fpr95", "network_ap", "network_fpr95",
                                                               "anomaly_frac")}).to_html())
        return df

    def on_image(*_: Any) -> None:
        reset_baseline()
        refresh()

    def on_split(*_: Any) -> None:
        # keep the same image (by name) when another combo's split of the same set is picked
        old = image_dd.label
        names = image_names(split_dd.value)
        image_dd.unobserve(on_image, "value")
        image_dd.options = [(n, i) for i, n in enumerate(names)]
        image_dd.value = names.index(old) if old in names else 0
        image_dd.observe(on_image, "value")
        row.max = len(names) - 1
        reset_baseline()
        refresh()
        refresh_table()

    def on_run(*_: Any) -> None:
        reset_baseline()
        refresh()
        refresh_table()

    def add_combo(*_: Any) -> Path | None:
        nonlocal splits
        status.value = f"<i>preparing {combo_dd.value}…</i>"
        try:
            path = evaluation_split(work_dir, profile or "demo", combo_dd.value, dataset_of(split_dd.value) or
                                    "fs_lost_and_found", device=device)
        except (ReprolibDataError, ValueError) as exc:
            status.value = f"<b>cannot prepare {combo_dd.value}:</b> {exc}"
            return None
        splits = list_splits(work_dir, profile)
        split_dd.options = [(split_label(r), r["path"]) for _, r in splits.iterrows()]
        split_dd.value = str(path)
        status.value = ""
        return Path(path)

    def show_row(*_: Any) -> None:
        image_dd.value = int(row.value)

    run_dd.observe(on_run, "value")
    split_dd.observe(on_split, "value")
    image_dd.observe(on_image, "value")
    table_w.observe(lambda *_: (refresh(), refresh_table()), "value")
    for s in sliders.values():
        s.observe(lambda ch: None if table_w.value else (refresh(), refresh_table()), "value")
    for c in drops.values():
        c.observe(refresh, "value")
    combo_btn.on_click(add_combo)
    show = W.Button(description="show this row")
    show.on_click(show_row)

    box = W.VBox([
        W.HTML("<h3>Look inside one model</h3>"), run_dd, W.HBox([split_dd, combo_dd, combo_btn]), image_dd,
        W.HBox([W.VBox([table_w, *sliders.values()], layout=W.Layout(width="360px")),
                W.VBox(list(drops.values()), layout=W.Layout(width="250px")),
                W.VBox([metrics, status], layout=W.Layout(flex="1"))]),
        picture,
        W.HTML("<h4>Every image of the set, worst AP first</h4>"), W.HBox([row, show]), table,
    ])
    box.controls = {"run": run_dd, "split": split_dd, "image": image_dd, "table_weights": table_w, **sliders,
                    **{f"drop_{k}": c for k, c in drops.items()}, "row": row, "show_row": show,
                   "combo": combo_dd, "add_combo": combo_btn}
    box.outputs = {"picture": picture, "metrics": metrics, "table": table, "status": status}
    box.refresh, box.refresh_table = refresh, refresh_table
    reset_baseline()
    refresh()
    refresh_table()
    return box
