"""The paper-scale dry run (``make smoke-full``): every ``full`` stage, at the real resolutions, on a handful of images.

Profile ``smoke`` (:data:`reprolib.experiments.profiles.PROFILES`):

1. the embedded world written at Cityscapes' 1024×2048 (a handful of images per split);
2. the *real* Original combo — DeepWV3Plus + CC-FPSE (:mod:`reprolib.backends`) — with the published weights when
   their checkpoint variables are set (``REPROLIB_CKPT_DEEPWV3PLUS``, ``…_CCFPSE_GENERATOR``, ``…_CCFPSE_ENCODER``),
   else seeded random weights, and every row says which;
3. the training-data generator (void as anomaly) and the precompute, which segments at the dataset's 1024×2048 and
   resynthesises / computes V at 256×512, as the original (spec §2, §5.3);
4. the width-1.0 VGG16 dissimilarity network trained for a few steps at 256×512, batch 4, with the real optimiser
   (Adam 1e-4, betas 0.5/0.999), ReduceLROnPlateau and checkpointing (:func:`reprolib.training.run.train`);
5. scoring at the benchmark resolution (1024×2048) and tidy rows (``results/smoke-full/smoke-full.csv``).

Per stage it records wall time and peak resident memory (``results/smoke-full/cost.json``, atomic), then prints a
cost estimate of each table's ``full`` run on a P100 / T4 from the MLRC report's Table 2, beside the timings measured
here (:mod:`reprolib.experiments.cost`, whose names are re-exported here). ImageNet weights (VGG16 encoder, VGG19
for V) are used when found and are otherwise random: ``smoke`` is allowed to run on random weights (``full`` is not)
and its rows say so (``imagenet_weights``).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reprolib import cli
from reprolib.allocator import keep_freed_memory
from reprolib.data.fishyscapes import LostAndFoundDataset, StaticDataset
from reprolib.data.generator import generate_training_data
from reprolib.experiments.cost import (
    DATA_IMAGES,
    EVAL_IMAGES,
    REPORT_EPOCHS,
    REPORT_TABLE2,
    SESSION_HOURS,
    T4_FACTOR,
    CostMeter,
    estimate,
    format_estimate,
    output_size,
    output_sizes,
    table_workload,
)
from reprolib.experiments.ensembling import evaluate_ensemble
from reprolib.experiments.profiles import get_pipeline_profile
from reprolib.experiments.results import config_hash, result_rows, save_results
from reprolib.experiments.scoring import score_split
from reprolib.experiments.session import TRAINING_STATE_KEYS
from reprolib.io import PathLike, read_json, write_json
from reprolib.world import generate_world

__all__ = ["DATA_IMAGES", "EVAL_IMAGES", "REPORT_EPOCHS", "REPORT_TABLE2", "SESSION_HOURS", "T4_FACTOR", "CostMeter",
           "estimate", "format_estimate", "main", "measure_item_sizes", "original_backends", "output_size", "output_sizes",
           "run_smoke", "table_workload"]


def _generated(folder: Path) -> bool:
    """True when ``folder`` holds a finished generation (its ``generator.json`` says complete)."""
    meta = folder / "generator.json"
    return meta.is_file() and bool(read_json(meta).get("complete"))


# ------------------------------------------------------------------------------------------ sizes
def _dir_bytes_per_image(splits: list[Path]) -> dict[str, float]:
    """Bytes per image of each folder of processed / generated splits (``original/`` counts the images), their loose
    files (generator.json, key.json, done.json) spread over the images as ``"(files)"``."""
    n = sum(len(list((split / "original").glob("*.png"))) for split in splits)
    out: dict[str, float] = {}
    for split in splits:
        for path in split.rglob("*"):
            if path.is_file():
                name = path.relative_to(split).parts[0] if path.parent != split else "(files)"
                out[name] = out.get(name, 0.0) + path.stat().st_size / max(1, n)
    return dict(sorted(out.items()))


def measure_item_sizes(generated: list[Path], train: list[Path], evaluation: list[Path], run_dir: Path,
                       scores: dict[str, list[Any]], scratch: Path, *, world_size: tuple[int, int],
                       size: tuple[int, int], processed_scores: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """Per-item sizes of a table's work folder, in bytes, measured on files this code wrote (the dry run's): a
    generated image (``generated`` splits, per folder), a processed image of generated data (``train``) and of an
    evaluation set (``evaluation``), the run's ``last.ckpt`` and ``best.ckpt``, a weights-only snapshot of it (what
    :class:`reprolib.training.selection.ValidationSnapshots` keeps: Lightning's checkpoint without optimiser,
    scheduler and callback state), a score cache's and a prediction PNG's bytes per pixel (``scores`` saved as
    :func:`~reprolib.experiments.scoring.save_scores` and :func:`~reprolib.experiments.scoring.write_predictions` do,
    under ``scratch``, removed after; ``processed_scores``, the same images scored at the processing size, give the
    ``…_processed`` figures: maps upsampled to the benchmark's size compress otherwise), and incompressible images'
    PNGs (random pixels: RGB at the real and the processing size, 8-bit at the processing size), which bound a
    photograph's, a resynthesis' and a map's.
    :func:`reprolib.experiments.cost.output_size` turns them into GB."""
    import io

    import numpy as np

    from reprolib.experiments.cost import REAL_SIZE
    from reprolib.experiments.scoring import save_scores, write_predictions
    from reprolib.io import png_bytes

    ckpts = run_dir / "checkpoints"
    state = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    # what Lightning's save_checkpoint(weights_only=True) leaves out: the training state, and the callbacks' state
    for key in (*TRAINING_STATE_KEYS, "callbacks"):
        state.pop(key, None)
    buf = io.BytesIO()
    torch.save(state, buf)
    def per_pixel(sample: dict[str, list[Any]], name: str) -> tuple[float, float]:
        """(score cache, prediction PNG) bytes per pixel of ``sample``."""
        pixels = sum(int(np.prod(m.shape)) for m in sample["dissimilarity"])
        save_scores(sample, scratch / f"{name}.npz")
        write_predictions(sample["dissimilarity"], scratch / name)
        return ((scratch / f"{name}.npz").stat().st_size / pixels,
                sum(p.stat().st_size for p in (scratch / name).glob("*.png")) / pixels)

    score_px, pred_px = per_pixel(scores, "scores")
    per_resolution = {}
    if processed_scores is not None:
        score_proc, pred_proc = per_pixel(processed_scores, "processed")
        per_resolution = {"score_bytes_per_px_processed": score_proc, "prediction_bytes_per_px_processed": pred_proc}
    shutil.rmtree(scratch)
    rng = np.random.default_rng(0)
    noise = {name: len(png_bytes(rng.integers(0, 256, shape, dtype=np.uint8)))
             for name, shape in (("rgb_native", (*REAL_SIZE, 3)), ("rgb_processed", (*size, 3)),
                                 ("gray_processed", tuple(size)))}
    return {"world_size": list(world_size), "size": list(size),
            "generated": _dir_bytes_per_image(generated), "processed_train": _dir_bytes_per_image(train),
            "processed_eval": _dir_bytes_per_image(evaluation),
            "checkpoint": (ckpts / "last.ckpt").stat().st_size,
            "best_checkpoint": (ckpts / "best.ckpt").stat().st_size if (ckpts / "best.ckpt").is_file() else None,
            "snapshot": len(buf.getvalue()), "score_bytes_per_px": score_px, "prediction_bytes_per_px": pred_px,
            **per_resolution, "noise": noise}


# ------------------------------------------------------------------------------------------ backends
def original_backends(checkpoints: Mapping[str, PathLike] | None = None, *, seed: int = 0,
                      device: str = "cpu") -> tuple[torch.nn.Module, torch.nn.Module, dict[str, str]]:
    """DeepWV3Plus + CC-FPSE (the Original combo): published weights from ``checkpoints`` or the
    ``REPROLIB_CKPT_*`` variables when given, else seeded random weights. Returns (seg, resyn, what was used)."""
    # lazy here and in run_smoke: the backends, maps, models and precompute import torchvision (+2.3 s) and
    # training Lightning (+3.2 s) on `import reprolib.experiments` (python -X importtime); the cost estimate
    # (table_workload, estimate, format_estimate, re-exported here) needs neither
    from reprolib.backends.ccfpse import CCFPSEResynthesis, CondConvGenerator, ConvEncoder
    from reprolib.backends.deepwv3plus import DeepWV3Plus, DeepWV3PlusSegmentation
    from reprolib.backends.registry import _checkpoint, get_resynthesis, get_segmentation
    from reprolib.models.pretrained import file_sha256

    def label(path: Path | None) -> str:
        return f"{path.name} sha256:{file_sha256(path)[:12]}" if path else f"random (seed {seed})"

    used: dict[str, str] = {}
    seg_ckpt = _checkpoint("deepwv3plus", checkpoints, required=False)
    if seg_ckpt is not None:
        seg = get_segmentation("deepwv3plus", checkpoints=checkpoints, device=device)
    else:
        with torch.random.fork_rng():  # seeded random init without touching the caller's RNG
            torch.manual_seed(seed)
            seg = DeepWV3PlusSegmentation(DeepWV3Plus())
        seg.fingerprint = f"deepwv3plus-random-seed{seed}"  # cache key without hashing 137 M weights
    used["deepwv3plus"] = label(seg_ckpt)
    gen_ckpt = _checkpoint("ccfpse-generator", checkpoints, required=False)
    enc_ckpt = _checkpoint("ccfpse-encoder", checkpoints, required=False)
    if gen_ckpt is not None:
        resyn = get_resynthesis("ccfpse", checkpoints=checkpoints, device=device)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            resyn = CCFPSEResynthesis(CondConvGenerator(), ConvEncoder(), seed=seed)
        resyn.fingerprint = f"ccfpse-random-seed{seed}"
        enc_ckpt = None
    used["ccfpse-generator"] = label(gen_ckpt)
    used["ccfpse-encoder"] = label(enc_ckpt) if gen_ckpt is None or enc_ckpt is not None else "none (no VAE code)"
    return seg.eval().to(device), resyn.eval().to(device), used


# ------------------------------------------------------------------------------------------ the run
def run_smoke(
    *,
    out_dir: PathLike = "results/smoke-full",
    work_dir: PathLike = "data",
    profile: str = "smoke",
    world: Mapping[str, Any] | None = None,
    size: tuple[int, int] | None = None,
    steps: int | None = None,
    checkpoints: Mapping[str, PathLike] | None = None,
    device: str = "cpu",
    seed: int = 0,
    wandb_mode: str = "disabled",
    progress: bool = True,
    fresh: bool = True,
) -> dict[str, Any]:
    """Run the dry run; writes ``out_dir/smoke-full.csv`` and ``out_dir/cost.json``, prints the estimate and
    returns the cost record. ``world`` / ``size`` / ``steps`` override the profile (the test's reduced run).

    ``fresh``: start from an empty ``work_dir/<profile>`` (it is a measurement: a stage that finds its work done
    measures nothing). ``fresh=False`` reuses what is there (a killed dry run resumes); such stages are marked
    ``cached`` in ``cost.json`` and left out of its per-unit figures."""
    from reprolib.maps import PerceptualDifference  # lazy: torchvision / Lightning, see original_backends
    from reprolib.precompute import precompute
    from reprolib.training.run import load_trained, train

    if steps is not None and not (isinstance(steps, int) and steps >= 1):  # 0 must not mean "the profile's"
        raise ValueError(f"steps must be a whole number >= 1 or None (the profile's), got {steps!r}")
    prof = get_pipeline_profile(profile)
    world_kw = {**prof.world, **dict(world or {})}
    world_size = tuple(int(v) for v in world_kw["size"])
    size = tuple(int(v) for v in (size or prof.size))
    out, work = Path(out_dir), Path(work_dir) / prof.name
    if fresh and work.exists():
        shutil.rmtree(work)  # the profile's own folder: nothing but this dry run's caches
    meter = CostMeter()
    load_start = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()

    world_dir = work / f"world-{world_size[0]}x{world_size[1]}"
    with meter.stage("world") as st:
        st["cached"] = (world_dir / "world.json").is_file()
        root = Path(generate_world(world_dir, seed=0, progress=progress, **world_kw))
    with meter.stage("backends (DeepWV3Plus + CC-FPSE, VGG19)"):
        seg, resyn, backends_used = original_backends(checkpoints, seed=seed, device=device)
        perceptual = PerceptualDifference(pretrained=prof.perceptual_pretrained, seed=0)
    with meter.stage("generate training data") as st:
        st["cached"] = all(_generated(work / "generated" / f"{split}-void") for split in ("train", "val"))
        generated = {split: Path(generate_training_data(root / "cityscapes", work / "generated" / f"{split}-void",
                                                        split=split, seed=0, void=True))
                     for split in ("train", "val")}
    datasets: dict[str, Any] = {
        "train": generated["train"], "val": generated["val"],
        "fs_lost_and_found": LostAndFoundDataset(root / "fishyscapes" / "LostAndFound", laf_root=root / "lostandfound"),
        "fs_static": StaticDataset(root / "fishyscapes" / "Static", root / "cityscapes"),
    }
    splits: dict[str, Path] = {}
    n_precomputed = n_measured = 0
    for name, ds in datasets.items():
        with meter.stage(f"precompute {name}") as st:
            t0_ns = time.time_ns()
            splits[name] = Path(precompute(ds, seg, resyn, work / "processed", size=size,
                                           batch_size=prof.precompute_batch, perceptual=perceptual,
                                           key_params={"profile": prof.name}, progress=progress, seed=seed))
            st["cached"] = (splits[name] / "done.json").stat().st_mtime_ns < t0_ns
        n = len(ds) if not isinstance(ds, Path) else len(list((ds / "original").glob("*.png")))
        n_precomputed += n
        n_measured += 0 if st["cached"] else n
    del seg, resyn

    max_steps = int(steps if steps is not None else prof.training["max_steps"])
    cfg = prof.training_config(
        model={}, train={"max_steps": max_steps, "val_every_n_steps": max_steps}, ensemble="none", seed=seed,
        train_split=str(splits["train"]), val_split=str(splits["val"]), label_dir="labels_with_void_no_ego",
        wandb_mode=wandb_mode, max_time=None, max_epochs=None, device=device,
    )
    cfg["size"] = list(size)
    run_dir = work / "runs" / f"original-{config_hash(cfg)}-seed{seed}"
    with meter.stage(f"train ({max_steps} steps, batch {cfg['batch_size']})") as st:
        st["cached"] = (run_dir / "done.json").is_file()
        train(cfg, run_dir=run_dir)

    rows: list[dict[str, Any]] = []
    n_scored, score_seconds = 0, 0.0
    sample: dict[str, list[Any]] = {}  # every scored image's maps: the score cache's and PNGs' sizes are measured on them
    sample_processed: dict[str, list[Any]] = {}  # the same at the processing size (the other tables' scores)
    model, ensemble = load_trained(run_dir)
    for name in ("fs_lost_and_found", "fs_static"):
        with meter.stage(f"score {name} (benchmark resolution)"):
            t1 = time.perf_counter()
            scores = score_split(model, splits[name], size=size, device=device, batch_size=prof.eval_batch,
                                 ensemble=ensemble, resolution="benchmark")
            score_seconds += time.perf_counter() - t1
            n_scored += len(scores["label"])
            for k, v in scores.items():
                sample.setdefault(k, []).extend(v)
            eval_size = "x".join(str(v) for v in scores["label"][0].shape)
            for mode in ("none", "fixed"):
                metrics, info = evaluate_ensemble(scores, mode)[""]
                rows += result_rows(
                    table="smoke-full", variant="full" + ("" if mode == "none" else "+fixed_ensemble"), dataset=name,
                    metrics=metrics, seed=seed, profile=prof.name, config={"training": cfg, "world": world_kw},
                    checkpoint=run_dir / "checkpoints" / "last.ckpt", data_fingerprint=splits[name].name,
                    combo="original", ensemble=mode, eval_resolution="benchmark", eval_size=eval_size,
                    backend_weights="; ".join(f"{k}: {v}" for k, v in backends_used.items()),
                    world_size=f"{world_size[0]}x{world_size[1]}", size=f"{size[0]}x{size[1]}",
                )
    save_results(rows, out / "smoke-full.csv")
    with meter.stage("measure item sizes (checkpoint, processed, generated)"):
        for name in ("fs_lost_and_found", "fs_static"):  # scored again at the processing size, for its score sizes only
            for k, v in score_split(model, splits[name], size=size, device=device, batch_size=prof.eval_batch,
                                    ensemble=ensemble, resolution="processed").items():
                sample_processed.setdefault(k, []).extend(v)
        items = measure_item_sizes(list(generated.values()), [splits["train"], splits["val"]],
                                   [splits["fs_lost_and_found"], splits["fs_static"]], run_dir, sample,
                                   work / "size-sample", world_size=world_size, size=size,
                                   processed_scores=sample_processed)

    pre_s = sum(s["seconds"] for k, s in meter.stages.items() if k.startswith("precompute") and not s.get("cached"))
    train_stage = next(s for k, s in meter.stages.items() if k.startswith("train"))
    cost = {
        "profile": prof.name, "label": "smoke: a dry run, not a result; backends and ImageNet weights as listed",
        "world_size": list(world_size), "size": list(size), "batch_size": cfg["batch_size"], "steps": max_steps,
        "images": {"precomputed": n_precomputed, "scored": n_scored}, "backend_weights": backends_used,
        "imagenet_weights": rows[0]["imagenet_weights"] if rows else "",
        "stages": meter.stages, "total_seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gb": max(s["peak_rss_gb"] for s in meter.stages.values()),
        # only what this run did (None: every such stage found its work done)
        "per_unit": {"precompute_s_per_image": pre_s / n_measured if n_measured else None,
                     "train_s_per_step": None if train_stage.get("cached") else train_stage["seconds"] / max_steps,
                     "score_s_per_image": score_seconds / max(1, n_scored)},
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "device": device,
                    "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
                    "load_average_start": load_start, "load_average_end": [round(v, 2) for v in os.getloadavg()]},
        "report_table2": REPORT_TABLE2, "estimate": estimate(),
        "estimate_assumptions": {"epochs": REPORT_EPOCHS, "eval_images_per_model": EVAL_IMAGES,
                                 "t4_over_p100": list(T4_FACTOR), "session_hours": SESSION_HOURS,
                                 "data_images": DATA_IMAGES},
        "item_sizes": items, "output_gb": output_sizes(items),
    }
    write_json(out / "cost.json", cost)
    print(format_estimate(cost), flush=True)
    return cost


def main(argv: list[str] | None = None) -> None:
    """``python -m reprolib.experiments.smoke [--out DIR] [--work DIR] [--device cpu] [--steps N]`` (``make smoke-full``):
    every value checked before the world is written (one-line errors through :func:`reprolib.cli.run`)."""
    from reprolib.experiments.runner import resolve_device

    parser = cli.ArgumentParser(prog="python -m reprolib.experiments.smoke", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/smoke-full", help="results folder (rows + cost.json)")
    parser.add_argument("--work", default="data", help="work folder (world, processed splits, run)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--steps", type=cli.positive_int, default=None, help="training steps (default: the profile's)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the work folder's smoke/ caches (a killed dry run); stages found done are marked "
                             "cached and not measured. Default: start from an empty WORK/smoke/")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise cli.UsageError("--device", str(exc)) from None
    cli.check_output_dir("--out", args.out)
    cli.check_output_dir("--work", args.work)
    keep_freed_memory()
    run_smoke(out_dir=args.out, work_dir=args.work, device=device, steps=args.steps, fresh=not args.resume)


if __name__ == "__main__":
    sys.exit(cli.run(main))
