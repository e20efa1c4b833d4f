"""What there is to look at: finished runs and evaluation splits, the table rows that used them, the weights a
table scored an image with, and the run / split / image the explorer starts on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from natsort import natsorted

from reprolib.ensemble import FIXED_ENSEMBLE as FIXED_WEIGHTS
from reprolib.experiments import pipeline as P
from reprolib.experiments.profiles import get_pipeline_profile
from reprolib.experiments.tables import REPORT_PROTOCOL
from reprolib.io import PathLike, ReprolibDataError, read_json

#: processed-split kind (``key.json``'s dataset kind) → evaluation set name used in the tables
EVAL_KINDS = {"lostandfound": "fs_lost_and_found", "static": "fs_static"}


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
            f"`make table4` (profile {profile!r}; about 9–13 minutes on 2 CPU cores in the demo profile), or run "
            "notebooks/table4.ipynb, then rerun this notebook.")


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
    for npz in sorted((run_dir / "scores").glob("*.npz")):  # <dataset>-<split>[-benchmark-<resize>]-<ckpt>-<sha12>.npz
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
    prof = get_pipeline_profile(profile)
    work = Path(work_dir) / prof.name
    ctx = P.Context(profile=prof, work_dir=work, data=P.resolve_data(work, data_root, prof),
                    checkpoints=checkpoints, device=device, wandb_mode="disabled")
    splits = P.evaluation_splits(ctx, combo)
    if dataset not in splits:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(splits)}")
    return splits[dataset]


def image_names(split: PathLike) -> list[str]:
    """Stems of a split's images, in the order the tables score them."""
    files = natsorted((Path(split) / "original").glob("*.png"), key=lambda p: p.name)
    if not files:
        raise ReprolibDataError(Path(split) / "original", "no PNG images (not a processed split?)")
    return [p.stem for p in files]


def image_index(split: PathLike, image: int | str) -> int:
    """The position of ``image`` (an index, or a stem of :func:`image_names`) in ``split``."""
    if isinstance(image, str):
        names = image_names(split)
        if image not in names:
            raise ReprolibDataError(split, f"no image named {image!r} in this split")
        return names.index(image)
    return int(image)


def table_weights(run_dir: PathLike, dataset: str, index: int, results_dir: PathLike | None = "results") -> dict:
    """The ensemble weights the table's main row scored image ``index`` with.

    Grid search is cross-fitted (:mod:`reprolib.experiments.ensembling`): fold 0 is tuned on the even images
    and scores the odd ones, fold 1 the reverse. A run no table reports gets the shipped fixed weights when it
    was trained for the grid ensemble, else its p(anomaly) alone.
    """
    idx = _results_index(results_dir)
    rows = idx[(idx["checkpoint"] == str(Path(run_dir).resolve())) & (idx.get("dataset") == dataset)
               # the main row: not the report-protocol one (a variant's own name may hold "@": full@report_selection)
               & ~idx["variant"].astype(str).str.endswith(REPORT_PROTOCOL)] if len(idx) else idx
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
    evaluation splits (``dataset``'s when the run was scored on it, else another, said in a printed note); prints
    :func:`nothing_trained` and returns None when nothing is trained. A ``dataset`` that is no evaluation set is
    a ``ValueError`` (it would otherwise look like a set the run was not scored on)."""
    if dataset not in P.EVAL_SETS:
        raise ValueError(f"dataset must be one of {P.EVAL_SETS}, got {dataset!r}")
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
            if ds != dataset:
                print(f"{Path(path).name} was not scored on {dataset}: showing {ds}")
            return Selection(Path(path), splits[ds], image_index(splits[ds], image), ds)
    listing = list_splits(work_dir, profile)
    if listing.empty:
        print(f"The runs under {work_dir} have not been scored on an evaluation set yet: run the table to the end.")
        return None
    row = listing[listing["dataset"] == dataset].iloc[0] if (listing["dataset"] == dataset).any() else listing.iloc[0]
    return Selection(Path(chosen["path"].iloc[0]), Path(row["path"]), image_index(row["path"], image), row["dataset"])
