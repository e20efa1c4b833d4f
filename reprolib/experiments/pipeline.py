"""From raw data to a table: the stages every notebook shares, each cached under ``work_dir``.

    world (or the user's data) → backends → generated training data → precompute (maps) →
    train each variant × seed → score the evaluation sets → ensemble → metrics → tidy rows

Every stage is keyed by what it depends on and skips finished work, so a rerun (or a new Kaggle session
with the previous output mounted) picks up where the last one stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprolib.experiments.tables import EMBEDDED_COMBOS

log = logging.getLogger("reprolib.experiments")

EVAL_SETS = ("fs_lost_and_found", "fs_static")


@dataclass
class DataRoots:
    """Where the datasets live: the embedded world or the user's copies (same sub-folder layout)."""

    root: Path
    embedded: bool

    @property
    def cityscapes(self) -> Path:
        return self.root / "cityscapes"

    @property
    def lostandfound(self) -> Path:
        return self.root / "lostandfound"

    @property
    def fs_lost_and_found(self) -> Path:
        return self.root / "fishyscapes" / "LostAndFound"

    @property
    def fs_static(self) -> Path:
        return self.root / "fishyscapes" / "Static"


@dataclass
class Context:
    """Everything a table run needs to know; built by :func:`reprolib.experiments.run_table`."""

    profile: Any  # reprolib.training.profiles.Profile
    work_dir: Path
    data: DataRoots
    checkpoints: dict[str, str] | None = None
    device: str = "cpu"
    wandb_mode: str = "offline"
    max_time: str | None = None
    max_epochs: int | None = None
    eval_resolution: str = "processed"  # or "benchmark": see reprolib.experiments.scoring.RESOLUTIONS
    precision: str = "32-true"  # training precision (TrainConfig.precision)
    timings: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)


class _Stage:
    """Context manager that logs and times one pipeline stage."""

    def __init__(self, ctx: Context, name: str):
        self.ctx, self.name = ctx, name

    def __enter__(self) -> _Stage:
        self.t0 = time.perf_counter()
        print(f"[reprolib] {self.name} …", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        dt = time.perf_counter() - self.t0
        self.ctx.timings[self.name] = self.ctx.timings.get(self.name, 0.0) + dt
        print(f"[reprolib] {self.name}: {dt:.1f} s", flush=True)


def resolve_data(work_dir: Path, data_root: str | Path | None, profile: Any) -> DataRoots:
    """The user's data root, or the embedded world generated (once) under ``work_dir/world``."""
    if data_root is not None:
        root = Path(data_root)
        if not (root / "cityscapes").is_dir():
            from reprolib.io import ReprolibDataError

            raise ReprolibDataError(root, "expected cityscapes/, lostandfound/ and fishyscapes/ inside the data root")
        return DataRoots(root, embedded=False)
    from reprolib.world import generate_world

    world = generate_world(work_dir / "world", seed=0, **profile.world)
    return DataRoots(Path(world), embedded=True)


def combo_name(ctx: Context, combo: str) -> str:
    """Real combo names map to their embedded twins on the embedded world."""
    return EMBEDDED_COMBOS.get(combo, combo) if ctx.data.embedded else combo


def backends(ctx: Context, combo: str) -> tuple[Any, Any]:
    """(segmentation, resynthesis) of a combo; embedded ones are trained on first use."""
    from reprolib.backends import get_combo

    name = combo_name(ctx, combo)
    kw: dict[str, Any] = {"device": ctx.device}
    if name.startswith("embedded"):
        kw.update(embedded_dir=ctx.work_dir / "backends", world_root=ctx.data.root,
                  train_kwargs=dict(ctx.profile.backend_training))
    else:
        kw.update(checkpoints=ctx.checkpoints)
    return get_combo(name, **kw)


def training_split(ctx: Context, combo: str, split: str, void_labels: bool) -> tuple[Path, str]:
    """Generated training data (Lis et al. relabelling, + void-as-anomaly) precomputed with a combo.

    Returns (processed split folder, label folder name to train on).
    """
    from reprolib.data.generator import generate_training_data
    from reprolib.precompute import precompute

    gen_root = ctx.work_dir / "generated" / f"{split}-{'void' if void_labels else 'novoid'}"
    gen_root = Path(generate_training_data(ctx.data.cityscapes, gen_root, split=split, seed=0, void=void_labels))
    seg, resyn = backends(ctx, combo)
    out = precompute(gen_root, seg, resyn, ctx.work_dir / "processed", size=ctx.profile.size,
                     batch_size=ctx.profile.precompute_batch)
    return Path(out), ("labels_with_void_no_ego" if void_labels else "labels")


def evaluation_splits(ctx: Context, combo: str) -> dict[str, Path]:
    """FS Lost & Found and FS Static, run through the combo's backends and maps once."""
    from reprolib.data.fishyscapes import LostAndFoundDataset, StaticDataset
    from reprolib.precompute import precompute

    seg, resyn = backends(ctx, combo)
    datasets = {
        "fs_lost_and_found": LostAndFoundDataset(ctx.data.fs_lost_and_found, laf_root=ctx.data.lostandfound),
        "fs_static": StaticDataset(ctx.data.fs_static, ctx.data.cityscapes),
    }
    return {
        name: Path(precompute(ds, seg, resyn, ctx.work_dir / "processed", size=ctx.profile.size,
                              batch_size=ctx.profile.precompute_batch))
        for name, ds in datasets.items()
    }
