"""The entry point :func:`train_embedded_backends`: train (or resume, or reuse) both embedded networks of one
strength, then score them and write the run folder described in :mod:`reprolib.training.embedded_backends`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from reprolib.backends.embedded import (
    EmbeddedGenerator,
    EmbeddedSegmentation,
    build_generator,
    build_segmentation,
    checkpoint_path,
    load_embedded_resynthesis,
    load_embedded_segmentation,
    save_embedded,
)
from reprolib.io import PathLike, ReprolibDataError, read_json, write_json, write_png
from reprolib.precision import ieee_fp32
from reprolib.training.embedded_backends.data import cityscapes_root_of, load_split_tensors
from reprolib.training.embedded_backends.scores import (
    preview_grid,
    resynthesis_scores,
    segmentation_scores,
    static_anomaly_scores,
)
from reprolib.training.embedded_backends.tasks import EmbeddedTask, ResynthesisTask, SegmentationTask, fit_task

#: default optimisation steps (segmentation, resynthesis) per strength
DEFAULT_STEPS = {"strong": (400, 400), "light": (150, 150)}
DEFAULT_BATCH = 8


def backend_config(world_root: PathLike, strength: str = "strong", seed: int = 0,
                   max_steps: int | tuple[int, int] | None = None, image_size: tuple[int, int] = (128, 256), *,
                   batch_size: int = DEFAULT_BATCH, lr: float = 3e-3, train_limit: int | None = None) -> dict[str, Any]:
    """The settings that determine one strength's backends, as :func:`train_embedded_backends` records them (its
    ``config.json`` and ``done.json``) and compares them before it resumes or reuses a run."""
    if strength not in DEFAULT_STEPS:
        raise ValueError(f"unknown strength {strength!r}; expected one of {tuple(DEFAULT_STEPS)}")
    steps = DEFAULT_STEPS[strength] if max_steps is None else max_steps
    seg_steps, gen_steps = (steps, steps) if isinstance(steps, int) else tuple(steps)
    if min(seg_steps, gen_steps) < 1:
        raise ValueError(f"max_steps must be ≥ 1, got {steps!r}")
    return {"strength": strength, "seed": seed, "steps": [seg_steps, gen_steps],
            "image_size": [int(image_size[0]), int(image_size[1])], "batch_size": batch_size, "lr": lr,
            "train_limit": train_limit, "cityscapes_root": str(cityscapes_root_of(world_root).resolve())}


def check_finished_backends(done: Path, config: dict[str, Any]) -> None:
    """Refuse the finished backends of ``done`` (their ``done.json``) where they were trained with other settings
    than ``config`` (:func:`backend_config`; a profile edited since): every cache after them keys on their weights,
    so reusing them would give the old backends' rows under the new settings. The Cityscapes root does not count
    here: the pipeline checks the embedded world's identity itself, and a work folder may move (a Kaggle output)."""
    previous = read_json(done).get("config") or {}
    diff = {k: (previous.get(k), v) for k, v in config.items() if k != "cityscapes_root" and previous.get(k) != v}
    if diff:
        changes = ", ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in diff.items())
        raise ReprolibDataError(done.parent, f"holds embedded backends trained with other settings ({changes}); "
                                             "delete this folder to train them with the profile's settings")


@ieee_fp32()
def train_embedded_backends(
    world_root: PathLike,
    out_dir: PathLike,
    strength: str = "strong",
    seed: int = 0,
    max_steps: int | tuple[int, int] | None = None,
    image_size: tuple[int, int] = (128, 256),
    *,
    batch_size: int = DEFAULT_BATCH,
    lr: float = 3e-3,
    accelerator: str = "cpu",
    train_limit: int | None = None,
    progress: bool = True,
    callbacks: Callable[[str], list[Any]] | None = None,
) -> dict[str, Path]:
    """Train (or resume, or reuse) the embedded segmentation + resynthesis backends of one strength.

    ``max_steps``: one int for both networks or (segmentation, resynthesis); default per strength
    (:data:`DEFAULT_STEPS`). ``world_root``: the embedded world root or any Cityscapes root.
    ``callbacks(kind)`` may add Lightning callbacks per network; one that stops a training early (a session's
    budget) makes this raise :class:`~reprolib.training.embedded_backends.tasks.TrainingStopped`, with nothing of
    that network saved as finished (the next call resumes it). Returns paths of ``segmentation``,
    ``resynthesis``, ``metrics``, ``preview`` and ``run_dir``.
    """
    config = backend_config(world_root, strength, seed, max_steps, image_size, batch_size=batch_size, lr=lr,
                            train_limit=train_limit)
    seg_steps, gen_steps = config["steps"]
    image_size = (int(image_size[0]), int(image_size[1]))
    cs_root = cityscapes_root_of(world_root)
    run_dir = Path(out_dir) / strength
    paths = {
        "segmentation": checkpoint_path(out_dir, strength, "segmentation"),
        "resynthesis": checkpoint_path(out_dir, strength, "resynthesis"),
        "metrics": run_dir / "metrics.json",
        "preview": run_dir / "preview.png",
        "run_dir": run_dir,
    }
    done = run_dir / "done.json"
    if done.is_file():
        previous = read_json(done).get("config")
        if previous != config:
            raise ValueError(f"{run_dir} holds a finished run with another config ({previous}); "
                             f"use another out_dir or delete it to retrain with {config}")
        return paths
    stored = run_dir / "config.json"
    if stored.is_file() and read_json(stored) != config:  # its checkpoints would resume under the new config
        raise ValueError(f"{run_dir} holds an unfinished run with another config ({read_json(stored)}); "
                         f"use another out_dir or delete it to train with {config}")
    write_json(stored, config)

    t0 = time.perf_counter()
    images, label_ids, train_ids, _ = load_split_tensors(cs_root, "train", image_size, limit=train_limit)
    data = TensorDataset(images, label_ids, train_ids)
    extra = callbacks or (lambda kind: [])

    losses: dict[str, list[float]] = {}
    jobs: list[tuple[str, Callable[[], torch.nn.Module], type[EmbeddedTask], int]] = [
        ("segmentation", lambda: build_segmentation(strength, seed=seed), SegmentationTask, seg_steps),
        ("resynthesis", lambda: build_generator(strength, seed=seed), ResynthesisTask, gen_steps),
    ]
    for kind, build, task_cls, n_steps in jobs:
        # the loss history, written before the network: a run killed after it reports the whole history
        loss_file = run_dir / "lightning" / kind / "losses.json"
        if paths[kind].is_file():
            if loss_file.is_file():
                losses[kind] = [float(v) for v in read_json(loss_file)]
            continue
        task = task_cls(build(), lr=lr, max_steps=n_steps, seed=seed)
        fit_task(task, data, run_dir / "lightning" / kind, max_steps=n_steps, batch_size=batch_size, seed=seed,
                 accelerator=accelerator, progress=progress, callbacks=extra(kind))
        losses[kind] = task.losses
        write_json(loss_file, task.losses)
        save_embedded(task.model.cpu().eval(), paths[kind])
    train_seconds = time.perf_counter() - t0

    seg: EmbeddedSegmentation = load_embedded_segmentation(paths["segmentation"])
    gen: EmbeddedGenerator = load_embedded_resynthesis(paths["resynthesis"])
    try:
        v_images, v_label_ids, v_train_ids, _ = load_split_tensors(cs_root, "val", image_size)
    except ReprolibDataError:  # a hand-made tree may have no val split: evaluate on train
        v_images, v_label_ids, v_train_ids = images, label_ids, train_ids
    metrics = {
        "config": config,
        "segmentation": segmentation_scores(seg, v_images, v_train_ids),
        "segmentation_train": {k: v for k, v in segmentation_scores(seg, images, train_ids).items()
                               if k != "iou_per_class"},
        "resynthesis": resynthesis_scores(gen, v_images, v_label_ids),
        "fs_static": static_anomaly_scores(world_root, seg, image_size),
        "loss": {k: {"first": v[0], "last": v[-1], "n": len(v)} for k, v in losses.items() if v},
        "train_seconds": round(train_seconds, 1),
        "n_train": len(images),
        "n_val": len(v_images),
        "parameters": {"segmentation": sum(p.numel() for p in seg.parameters()),
                       "resynthesis": sum(p.numel() for p in gen.parameters())},
    }
    write_json(paths["metrics"], metrics)
    write_png(paths["preview"], preview_grid(seg, gen, v_images, v_label_ids, v_train_ids))
    write_json(done, {"config": config, "metrics": str(paths["metrics"].name)})
    if progress:
        tqdm.write(f"embedded {strength}: val mIoU {metrics['segmentation']['miou']:.3f}, "
                   f"resynthesis PSNR {metrics['resynthesis']['psnr']:.1f} dB, {train_seconds:.0f} s")
    return paths
