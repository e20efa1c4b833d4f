"""``run_table``: everything a table notebook does, as one resumable function."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from reprolib.experiments import pipeline as P
from reprolib.experiments.ensembling import evaluate_ensemble, final_scores
from reprolib.experiments.profiles import get_pipeline_profile
from reprolib.experiments.results import config_hash, result_rows, save_results
from reprolib.experiments.scoring import load_scores, save_scores, score_split, write_predictions
from reprolib.experiments.tables import Variant, get_table
from reprolib.io import write_json


def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def run_table(
    name: str,
    *,
    profile: str = "demo",
    data_root: str | Path | None = None,
    checkpoints: dict[str, str] | None = None,
    seeds: list[int] | None = None,
    max_epochs: int | None = None,
    max_time: str | None = None,
    device: str = "auto",
    work_dir: str | Path = "data",
    output_dir: str | Path | None = None,
    wandb_mode: str = "offline",
    kaggle: bool = False,
    variants: list[str] | None = None,
    eval_resolution: str = "processed",
) -> pd.DataFrame:
    """Run (or resume) every variant × seed of a table and write ``output_dir/<name>.csv``; returns the rows.

    ``eval_resolution``: ``"processed"`` scores at the processing size, as the original code and the MLRC
    report did; ``"benchmark"`` upsamples the scores to the evaluation sets' own resolution (Fishyscapes:
    1024×2048), as the benchmark server does. On the embedded world both are the same size.
    """
    from reprolib.experiments.scoring import RESOLUTIONS

    if eval_resolution not in RESOLUTIONS:
        raise ValueError(f"eval_resolution must be one of {RESOLUTIONS}, got {eval_resolution!r}")
    spec = get_table(name)
    prof = get_pipeline_profile(profile)
    prof.check_imagenet_weights()  # before any file is written: `full` refuses random ImageNet weights
    work = Path(work_dir)
    out = Path(output_dir or Path("results") / name)
    out.mkdir(parents=True, exist_ok=True)
    ctx = P.Context(profile=prof, work_dir=work / prof.name, data=P.resolve_data(work / prof.name, data_root, prof),
                    checkpoints=checkpoints, device=_device(device), wandb_mode=wandb_mode, max_time=max_time,
                    max_epochs=max_epochs, eval_resolution=eval_resolution)
    seeds = list(seeds if seeds is not None else (prof.seeds or (spec.seeds_full if profile == "full" else spec.seeds_demo)))
    chosen = [v for v in spec.variants if variants is None or v.name in variants]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    csv = out / f"{name}.csv"
    for variant in chosen:
        combo = variant.combo or spec.default_combo
        for seed in seeds:
            source = next(v for v in spec.variants if v.name == variant.reuse) if variant.reuse else variant
            run_dir = train_variant(ctx, source, combo, seed)
            for dataset, split in P.evaluation_splits(ctx, combo).items():
                scores = scores_for(ctx, run_dir, source, dataset, split)
                if name == "figure3" and seed == seeds[0]:
                    from reprolib.experiments.figures import qualitative_figure

                    qualitative_figure(split, scores, out / f"figure3-{dataset}.png",
                                       title=f"{dataset} — profile {prof.name}, {variant.name}, seed {seed}")
                evaluated = evaluate_ensemble(scores, variant.ensemble, prof.grid_objective)
                cis = _intervals(final_scores(scores, variant.ensemble, prof.grid_objective), scores["label"], seed)
                for suffix, (metrics, info) in evaluated.items():
                    rows += result_rows(
                        table=name, variant=variant.name + suffix, dataset=dataset, metrics=metrics, seed=seed,
                        profile=prof.name, config=_config(ctx, source, combo, seed),
                        checkpoint=run_dir, data_fingerprint=_fingerprint(split), combo=P.combo_name(ctx, combo),
                        ensemble=variant.ensemble, ensemble_info=json.dumps(info, default=str),
                        **(cis if suffix == "" else {}),
                    )
            save_results(rows, csv)  # after every run: a crash keeps what finished
    write_json(out / "timings.json", {**ctx.timings, "total_s": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def _intervals(maps: list, labels: list, seed: int, n_boot: int = 200) -> dict[str, float]:
    """95 % per-image bootstrap intervals of AP and FPR95 (seeded by the run's seed)."""
    from reprolib.metrics import bootstrap_ci

    out: dict[str, float] = {}
    for metric in ("ap", "fpr95"):
        try:
            _, lo, hi = bootstrap_ci(maps, labels, metric, n_boot=n_boot, seed=seed)
        except (ValueError, IndexError):  # too few images or a class missing in every resample
            lo = hi = float("nan")
        out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = lo, hi
    return out


def _config(ctx: P.Context, variant: Variant, combo: str, seed: int) -> dict[str, Any]:
    return {"variant": variant.training_key(), "combo": P.combo_name(ctx, combo), "seed": seed,
            "profile": ctx.profile.name, "training": ctx.profile.training_overrides(),
            "eval_resolution": ctx.eval_resolution}


def _fingerprint(split: Path) -> str:
    done = Path(split) / "done.json"
    if done.is_file():
        meta = json.loads(done.read_text())
        return str(meta.get("key_hash") or meta.get("key", ""))[:16] or Path(split).name
    return Path(split).name


def train_variant(ctx: P.Context, variant: Variant, combo: str, seed: int) -> Path:
    """Train (or resume, or reuse) one variant × seed; returns its run directory."""
    from reprolib.training.run import train

    train_split, label_dir = P.training_split(ctx, combo, "train", variant.void_labels)
    val_split, _ = P.training_split(ctx, combo, "val", variant.void_labels)
    cfg = ctx.profile.training_config(
        model=variant.model, train=variant.train, ensemble=variant.ensemble, seed=seed,
        train_split=str(train_split), val_split=str(val_split), label_dir=label_dir,
        wandb_mode=ctx.wandb_mode, max_time=ctx.max_time, max_epochs=ctx.max_epochs, device=ctx.device,
    )
    run_dir = ctx.work_dir / "runs" / f"{P.combo_name(ctx, combo)}-{config_hash(cfg)}-seed{seed}"
    with ctx.stage(f"train {variant.name} seed {seed}"):
        train(cfg, run_dir=run_dir)
    return run_dir


def scores_for(ctx: P.Context, run_dir: Path, variant: Variant, dataset: str, split: Path) -> dict:
    """Per-image scores of a trained model on an evaluation split (cached as npz in the run dir)."""
    from reprolib.training.run import load_trained

    suffix = "" if ctx.eval_resolution == "processed" else f"-{ctx.eval_resolution}"
    cache = Path(run_dir) / "scores" / f"{dataset}-{Path(split).name}{suffix}.npz"
    if cache.is_file():
        return load_scores(cache)
    with ctx.stage(f"score {dataset} with {Path(run_dir).name}"):
        model, ensemble = load_trained(run_dir)
        t0 = time.perf_counter()
        scores = score_split(model, split, size=ctx.profile.size, device=ctx.device,
                             batch_size=ctx.profile.eval_batch, ensemble=ensemble, resolution=ctx.eval_resolution)
        per_image = (time.perf_counter() - t0) / max(1, len(scores["label"]))
    save_scores(scores, cache)
    write_predictions(scores["dissimilarity"], Path(run_dir) / "predictions" / f"{dataset}{suffix}")
    write_json(Path(run_dir) / "predictions" / f"{dataset}{suffix}-timing.json",
               {"seconds_per_image": per_image, "device": ctx.device, "size": list(ctx.profile.size),
                "eval_resolution": ctx.eval_resolution, "eval_size": list(scores["label"][0].shape)})
    return load_scores(cache)  # the stored (float16) values, so a rerun reports exactly the same numbers
