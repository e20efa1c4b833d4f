"""Train the embedded backends on the embedded world with Lightning (CPU-friendly, minutes).

``train_embedded_backends(world_root, out_dir, strength)`` trains the segmentation net (cross-entropy on
trainIds, ignore 255) and the generator (L1 + image-gradient L1 on ground-truth labelIds → image), then
evaluates on the world's val split and writes::

    OUT/{strength}/segmentation.pt  resynthesis.pt     # embedded checkpoints (weights_only-loadable)
    OUT/{strength}/metrics.json                        # val mIoU, per-class IoU, generator L1/PSNR, losses
    OUT/{strength}/preview.png                         # rows: image | gt | prediction | resynthesis
    OUT/{strength}/done.json                           # written last: a finished run is not retrained
    OUT/{strength}/lightning/{segmentation,resynthesis}/last.ckpt   # resume points

A killed run resumes from ``last.ckpt``; a finished one returns at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm.auto import tqdm

from reprolib.backends.base import imagenet_normalize
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
from reprolib.data.formats import (
    WORLD_CITYSCAPES,
    WORLD_FS_STATIC,
    FrameId,
    cityscapes_gt_path,
    cityscapes_image_path,
    parse_fishyscapes_labels_name,
)
from reprolib.io import PathLike, ReprolibDataError, read_json, read_png, write_json, write_png
from reprolib.labels import IGNORE_INDEX, NUM_CLASSES, TRAIN_CLASS_NAMES, colorize_train, label_to_train
from reprolib.training._determinism import prepare_cuda_determinism
from reprolib.training.checkpoint import AtomicCheckpointIO
from reprolib.training.loss import weighted_cross_entropy

#: default optimisation steps (segmentation, resynthesis) per strength
DEFAULT_STEPS = {"strong": (400, 400), "light": (150, 150)}
DEFAULT_BATCH = 8


# ----------------------------------------------------------------------------------------------- data
def cityscapes_root_of(world_root: PathLike) -> Path:
    """Accept either an embedded-world root (with ``cityscapes/``) or a Cityscapes root."""
    root = Path(world_root)
    if (root / WORLD_CITYSCAPES / "leftImg8bit").is_dir():
        return root / WORLD_CITYSCAPES
    if (root / "leftImg8bit").is_dir():
        return root
    raise ReprolibDataError(root, "neither a world root (cityscapes/leftImg8bit) nor a Cityscapes root (leftImg8bit)")


def load_split_tensors(
    cityscapes_root: PathLike, split: str, image_size: tuple[int, int], limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Read a Cityscapes split into memory at ``image_size``.

    Returns images (N,3,H,W) float [0,1] (antialiased bilinear), labelIds and trainIds (N,H,W) long
    (nearest), and the frame stems. Small worlds fit in memory; training then never touches the disk.
    """
    root = Path(cityscapes_root)
    files = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not files:
        raise ReprolibDataError(root / "leftImg8bit" / split, "no *_leftImg8bit.png images found")
    files = files[:limit] if limit else files
    images, label_ids, names = [], [], []
    for f in files:
        fid = FrameId.parse(f.name[: -len("_leftImg8bit.png")])
        images.append(torch.from_numpy(read_png(cityscapes_image_path(root, split, fid), mode="RGB").copy()))
        label_ids.append(torch.from_numpy(read_png(cityscapes_gt_path(root, split, fid, "labelIds"), mode="L").copy()))
        if images[-1].shape[:2] != label_ids[-1].shape:
            raise ReprolibDataError(f, f"image {tuple(images[-1].shape[:2])} and labelIds "
                                       f"{tuple(label_ids[-1].shape)} differ in size")
        names.append(fid.stem)
    img = torch.stack([t.permute(2, 0, 1) for t in images]).float() / 255.0
    lab = torch.stack(label_ids).long()
    if tuple(img.shape[-2:]) != tuple(image_size):
        img = F.interpolate(img, size=image_size, mode="bilinear", align_corners=False, antialias=True)
        lab = F.interpolate(lab[:, None].float(), size=image_size, mode="nearest")[:, 0].long()
    train = torch.from_numpy(label_to_train(lab.numpy()).astype(np.int64))
    return img.clamp(0, 1), lab, train, names


def _flip(step_seed: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Random horizontal flip per sample, drawn from a generator seeded by the step (resume-safe)."""
    g = torch.Generator().manual_seed(step_seed)
    mask = torch.rand(tensors[0].shape[0], generator=g) < 0.5
    out = []
    for t in tensors:
        t = t.clone()
        t[mask] = t[mask].flip(-1)
        out.append(t)
    return out


# -------------------------------------------------------------------------------------------- modules
class _Task(L.LightningModule):
    """Shared optimiser / logging for both embedded tasks."""

    def __init__(self, model: torch.nn.Module, lr: float, max_steps: int, seed: int):
        super().__init__()
        self.model = model
        self.lr, self.max_steps_, self.seed = lr, max_steps, seed
        self.losses: list[float] = []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(self.max_steps_, 2),
                                                    pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _record(self, loss: torch.Tensor) -> torch.Tensor:
        self.losses.append(float(loss.detach()))
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["loss_history"] = torch.tensor(self.losses, dtype=torch.float64)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hist = checkpoint.get("loss_history")
        self.losses = [] if hist is None else [float(v) for v in hist]


class SegmentationTask(_Task):
    """Cross-entropy on trainIds (ignore 255), in the form that is deterministic on CUDA (training.loss)."""

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        image, _, train_ids = batch
        image, train_ids = _flip(self.seed * 1_000_003 + self.global_step, image, train_ids)
        logits = self.model(imagenet_normalize(image))
        return self._record(weighted_cross_entropy(logits, train_ids, ignore_index=IGNORE_INDEX))


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences: a cheap edge/texture term beside plain L1."""
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


class ResynthesisTask(_Task):
    """L1 + gradient L1 between the generator's output for the GT labelIds and the real image."""

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        image, label_ids, _ = batch
        image, label_ids = _flip(self.seed * 1_000_003 + self.global_step, image, label_ids)
        fake = self.model(label_ids)
        return self._record(F.l1_loss(fake, image) + gradient_l1(fake, image))


# ------------------------------------------------------------------------------------------ training
def fit_task(
    task: _Task,
    data: TensorDataset,
    work_dir: Path,
    *,
    max_steps: int,
    batch_size: int,
    seed: int,
    accelerator: str = "cpu",
    progress: bool = True,
    callbacks: list[Any] | None = None,
) -> _Task:
    """Run ``task`` for ``max_steps`` with checkpoints in ``work_dir``, resuming from ``last.ckpt``."""
    if accelerator in ("cuda", "gpu"):
        prepare_cuda_determinism()
    L.seed_everything(seed, workers=True, verbose=False)
    loader = DataLoader(data, batch_size=min(batch_size, len(data)), shuffle=True, drop_last=False,
                        generator=torch.Generator().manual_seed(seed), num_workers=0)
    ckpt_cb = ModelCheckpoint(dirpath=work_dir, save_last=True, save_top_k=0,
                              every_n_train_steps=max(1, min(50, max_steps // 4)))
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, max_steps=max_steps, max_epochs=-1, deterministic=True,
        logger=False, enable_progress_bar=progress, enable_model_summary=False,
        callbacks=[ckpt_cb, *(callbacks or [])], plugins=[AtomicCheckpointIO()], default_root_dir=work_dir,
        log_every_n_steps=10, num_sanity_val_steps=0,
    )
    last = work_dir / "last.ckpt"
    trainer.fit(task, loader, ckpt_path=last if last.is_file() else None)
    return task


# -------------------------------------------------------------------------------------------- metrics
@torch.no_grad()
def segmentation_scores(
    model: EmbeddedSegmentation | torch.nn.Module, images: torch.Tensor, train_ids: torch.Tensor,
    batch_size: int = 8,
) -> dict[str, Any]:
    """mIoU (over classes present in gt or prediction), pixel accuracy and per-class IoU, ignore 255."""
    device = next(model.parameters()).device
    cm = MulticlassConfusionMatrix(num_classes=NUM_CLASSES, ignore_index=IGNORE_INDEX).to(device)
    for i in range(0, len(images), batch_size):
        logits = model(imagenet_normalize(images[i : i + batch_size].to(device)))
        cm.update(logits.argmax(1), train_ids[i : i + batch_size].to(device))
    mat = cm.compute().double().cpu()
    tp = mat.diag()
    union = mat.sum(0) + mat.sum(1) - tp
    iou = tp / union.clamp(min=1)
    valid = union > 0
    return {
        "miou": float(iou[valid].mean()) if valid.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / mat.sum().clamp(min=1)),
        "iou_per_class": {TRAIN_CLASS_NAMES[c]: round(float(iou[c]), 4) for c in range(NUM_CLASSES) if valid[c]},
    }


@torch.no_grad()
def resynthesis_scores(model: torch.nn.Module, images: torch.Tensor, label_ids: torch.Tensor,
                       batch_size: int = 8) -> dict[str, float]:
    """Mean L1 and PSNR of the generator's output for the GT labelIds against the real images."""
    device = next(model.parameters()).device
    l1, mse, n = 0.0, 0.0, 0
    for i in range(0, len(images), batch_size):
        fake = model(label_ids[i : i + batch_size].to(device)).cpu()
        real = images[i : i + batch_size]
        l1 += float((fake - real).abs().mean(dim=(1, 2, 3)).sum())
        mse += float(((fake - real) ** 2).mean(dim=(1, 2, 3)).sum())
        n += len(real)
    mse /= max(n, 1)
    return {"l1": l1 / max(n, 1), "psnr": float(10 * np.log10(1.0 / max(mse, 1e-12)))}


@torch.no_grad()
def preview_grid(seg: torch.nn.Module, gen: torch.nn.Module, images: torch.Tensor, label_ids: torch.Tensor,
                 train_ids: torch.Tensor, n: int = 4) -> np.ndarray:
    """(n·H, 4·W, 3) uint8 rows of image | gt | prediction | resynthesis of the gt labelIds."""
    rows = []
    for i in range(min(n, len(images))):
        img = images[i : i + 1]
        pred = seg(imagenet_normalize(img)).argmax(1)[0].cpu().numpy()
        fake = gen(label_ids[i : i + 1])[0].cpu()
        to8 = lambda t: (t.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)  # noqa: E731
        rows.append(np.concatenate([to8(img[0]), colorize_train(train_ids[i].numpy()),
                                    colorize_train(pred), to8(fake)], axis=1))
    return np.concatenate(rows, axis=0)


@torch.no_grad()
def static_anomaly_scores(world_root: PathLike, model: torch.nn.Module, image_size: tuple[int, int],
                          limit: int = 50) -> dict[str, float] | None:
    """How the segmentation behaves on the world's FS Static anomalies (None when the world has none).

    Returns the mean softmax entropy on anomaly vs. known pixels and the AUROC of entropy as an anomaly
    score: a useful backend is confident on known classes and unsure (or wrong) on the pasted objects.
    """
    from sklearn.metrics import roc_auc_score

    root = Path(world_root)
    static = root / WORLD_FS_STATIC
    if not static.is_dir():
        return None
    cs_root = cityscapes_root_of(root)
    device = next(model.parameters()).device
    ent_all, lab_all = [], []
    for lab_path in sorted(static.glob("*_labels.png"))[:limit]:
        fs_id, base = parse_fishyscapes_labels_name(lab_path.name)
        label = read_png(lab_path, mode="L")
        npz = static / f"{fs_id}_{base}_rgb.npz"
        try:
            overlay = np.load(npz)["rgb"].astype(np.int32)
        except (OSError, KeyError, ValueError) as exc:
            raise ReprolibDataError(npz, f"unreadable FS Static overlay ({exc})") from None
        base_rgb = read_png(cityscapes_image_path(cs_root, "val", FrameId.parse(base)), mode="RGB")
        rgb = np.clip(base_rgb.astype(np.int32) + overlay, 0, 255).astype(np.float32) / 255.0
        img = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None], size=image_size, mode="bilinear",
                            align_corners=False, antialias=True)
        lab = F.interpolate(torch.from_numpy(label.copy())[None, None].float(), size=image_size, mode="nearest")[0, 0]
        p = model(imagenet_normalize(img.to(device))).softmax(1)
        ent = -(p * p.clamp_min(1e-12).log()).sum(1)[0].cpu()
        keep = lab != 255
        ent_all.append(ent[keep])
        lab_all.append(lab[keep])
    if not ent_all:
        return None
    ent, lab = torch.cat(ent_all).numpy(), torch.cat(lab_all).numpy()
    if lab.min() == lab.max():
        return None
    return {"entropy_anomaly": float(ent[lab == 1].mean()), "entropy_known": float(ent[lab == 0].mean()),
            "entropy_auroc": float(roc_auc_score(lab == 1, ent)), "n_images": len(ent_all)}


# ---------------------------------------------------------------------------------------- entry point
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
    ``callbacks(kind)`` may add Lightning callbacks per network. Returns paths of ``segmentation``,
    ``resynthesis``, ``metrics``, ``preview`` and ``run_dir``.
    """
    if strength not in DEFAULT_STEPS:
        raise ValueError(f"unknown strength {strength!r}; expected one of {tuple(DEFAULT_STEPS)}")
    steps = DEFAULT_STEPS[strength] if max_steps is None else max_steps
    seg_steps, gen_steps = (steps, steps) if isinstance(steps, int) else tuple(steps)
    if min(seg_steps, gen_steps) < 1:
        raise ValueError(f"max_steps must be ≥ 1, got {steps!r}")
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
    config = {"strength": strength, "seed": seed, "steps": [seg_steps, gen_steps], "image_size": list(image_size),
              "batch_size": batch_size, "lr": lr, "train_limit": train_limit,
              "cityscapes_root": str(cs_root.resolve())}
    done = run_dir / "done.json"
    if done.is_file():
        previous = read_json(done).get("config")
        if previous != config:
            raise ValueError(f"{run_dir} holds a finished run with another config ({previous}); "
                             f"use another out_dir or delete it to retrain with {config}")
        return paths
    write_json(run_dir / "config.json", config)

    t0 = time.perf_counter()
    images, label_ids, train_ids, _ = load_split_tensors(cs_root, "train", image_size, limit=train_limit)
    data = TensorDataset(images, label_ids, train_ids)
    extra = callbacks or (lambda kind: [])

    losses: dict[str, list[float]] = {}
    jobs: list[tuple[str, Callable[[], torch.nn.Module], type[_Task], int]] = [
        ("segmentation", lambda: build_segmentation(strength, seed=seed), SegmentationTask, seg_steps),
        ("resynthesis", lambda: build_generator(strength, seed=seed), ResynthesisTask, gen_steps),
    ]
    for kind, build, task_cls, n_steps in jobs:
        if paths[kind].is_file():
            continue
        task = task_cls(build(), lr=lr, max_steps=n_steps, seed=seed)
        fit_task(task, data, run_dir / "lightning" / kind, max_steps=n_steps, batch_size=batch_size, seed=seed,
                 accelerator=accelerator, progress=progress, callbacks=extra(kind))
        losses[kind] = task.losses
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
