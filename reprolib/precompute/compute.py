"""The compute loop: segment, resynthesise and map a source batch by batch, and write each stem's files.

:func:`precompute` resolves the cache folder (:mod:`reprolib.precompute.cache`), skips the batches whose stems
are all written and computes the rest (:func:`_process_batch`), then writes ``done.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from reprolib.backends.base import imagenet_normalize
from reprolib.data.transforms import resize_image, resize_nearest_tensor, to_tensor_image
from reprolib.io import PathLike, read_json, write_json, write_png
from reprolib.labels import NUM_CLASSES, train_to_label
from reprolib.maps import PerceptualDifference, quantize_8bit, softmax_distance, softmax_entropy
from reprolib.precision import ieee_fp32
from reprolib.precompute.cache import (
    NATIVE_LABEL_DIR,
    cache_key,
    key_hash,
    native_label_source,
    output_dirs,
    split_dir,
    stem_done,
)
from reprolib.precompute.sources import PrecomputeSource, SourceItem, as_source

LABEL_SOURCES = ("auto", "prediction", "ground_truth")


def _to_uint8(rgb01: torch.Tensor) -> torch.Tensor:
    return (rgb01.clamp(0, 1) * 255).round().to(torch.uint8)


def _synthesis_to_uint8(rgb01: torch.Tensor) -> torch.Tensor:
    """The resynthesis as the original stores it: ``((g + 1) / 2 * 255).astype(np.uint8)``, truncated."""
    return (rgb01.clamp(0, 1) * 255).to(torch.uint8)

def _resize_image(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    if mode == "nearest":
        return resize_nearest_tensor(image, size)
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]



def _style_images(items: list[SourceItem], resynthesis: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The real images (B,3,h,w) float32 in [0,1] a resynthesis takes its style from: at its ``style_size``,
    each image's own 8-bit RGB resized by PIL (bicubic), else the processed ``images``."""
    size = getattr(resynthesis, "style_size", None)
    if size is None:
        return images
    size = (int(size[0]), int(size[1]))
    # the original's loader (spec §5.3 step 4): uint8 RGB PIL image → resize BICUBIC → ToTensor (/255); the
    # generator maps [0,1] to [−1,1] after, as its Normalize(0.5, 0.5) (x·2−1 is bit-equal to (x−0.5)/0.5).
    # torch's antialiased bicubic is up to a grey level off PIL's, so PIL itself resizes.
    style = [to_tensor_image(resize_image(np.ascontiguousarray(_to_uint8(it.image).cpu().permute(1, 2, 0).numpy()),
                                          size, "bicubic")) for it in items]
    return torch.stack(style).to(images.device)


def _quantize(maps01: torch.Tensor, mode: str) -> np.ndarray:
    """(B,1,H,W) [0,1] → (B,H,W) uint8 via reprolib.maps.quantize_8bit.

    The original's data prep rounds H and D (``cv2.imwrite`` of floats) and truncates V (``ToPILImage``),
    spec §2.1 / §2.3.
    """
    q = quantize_8bit(maps01.float(), mode=mode)
    q = q.cpu().numpy() if isinstance(q, torch.Tensor) else np.asarray(q)
    return q.reshape(maps01.shape[0], *maps01.shape[-2:]).astype(np.uint8)

def _write_item(out: Path, stem: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one stem's outputs (each file atomic; a stem counts as done only once all exist)."""
    for d, arr in arrays.items():
        write_png(out / d / f"{stem}.png", arr)

@torch.no_grad()
@ieee_fp32()
def precompute(
    dataset: Any,
    segmentation: torch.nn.Module,
    resynthesis: torch.nn.Module,
    out_root: PathLike,
    *,
    size: tuple[int, int] = (256, 512),
    batch_size: int = 4,
    perceptual: torch.nn.Module | None = None,
    label_source: str = "auto",
    key_params: Mapping[str, Any] | None = None,
    progress: bool = True,
    seed: int = 0,
    image_resize: str = "nearest",
    amp: bool = False,
    num_workers: int = 0,
    before_work: Callable[[], None] | None = None,
) -> Path:
    """Compute (or reuse) the processed split of ``dataset`` for a segmentation + resynthesis pair.

    ``label_source``: where ``semantic/`` and the resynthesis input come from — ``"prediction"`` (argmax of
    the segmentation), ``"ground_truth"`` (the source's semantic map: the altered GT of generated data), or
    ``"auto"`` (ground truth for generated training data, prediction otherwise). ``perceptual``: the V module
    (default ``reprolib.maps.PerceptualDifference()``). ``key_params``: extra values that should separate
    caches (e.g. a profile name). ``seed`` fixes stochastic generators (CC-FPSE's VAE noise) per batch.
    The segmentation sees each image at the source's own resolution (1024×2048 for Cityscapes and
    Fishyscapes), as the original did (spec §2.1, §5.3); H, D and the argmax are computed there and then
    nearest-resized to ``size``. Resynthesis and V run at ``size`` (spec §2.3, §5.3 steps 4–5).
    ``image_resize``: how the source image is brought to ``size`` (``"nearest"``, the original's data loader,
    spec §4.3; or ``"bilinear"`` antialiased). ``amp``: autocast the backends on CUDA. ``before_work``: called
    before each batch that has images to compute; what it raises stops the split there (a session's deadline):
    the images written stay, and a later call resumes with the rest. Returns the split folder.
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    if image_resize not in ("bilinear", "nearest"):
        raise ValueError(f"image_resize must be 'bilinear' or 'nearest', got {image_resize!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    source = as_source(dataset)
    if len(source) == 0:
        raise ValueError("precompute: the dataset is empty")
    if perceptual is None:
        perceptual = PerceptualDifference()
    segmentation.eval()
    resynthesis.eval()
    perceptual.eval()
    key, digest, out = _split_key(source, segmentation, resynthesis, perceptual, out_root, size=size,
                                  label_source=label_source, key_params=key_params, seed=seed,
                                  image_resize=image_resize, amp=amp)
    size, resolved = (int(size[0]), int(size[1])), key["params"]["label_source"]
    done_file = out / "done.json"
    if _done(out, digest):
        return out
    write_json(out / "key.json", key)

    device = next((p.device for p in segmentation.parameters()), torch.device("cpu"))
    resynthesis.to(device)
    perceptual.to(device)
    autocast = torch.autocast("cuda", enabled=amp and device.type == "cuda")
    loader = torch.utils.data.DataLoader(
        _Indexed(source), batch_size=batch_size, shuffle=False, num_workers=num_workers,
        collate_fn=list,
    )
    n_total, n_computed, label_dirs_seen = len(source), 0, set()
    t0 = time.perf_counter()
    bar = tqdm(total=n_total, unit="img", desc=f"precompute {out.name}", disable=not progress or None)
    with bar:
        for batch_index, items in enumerate(loader):
            label_dirs = sorted({d for it in items for d in it.labels})
            label_dirs_seen.update(label_dirs)
            dirs = output_dirs(label_dirs)
            if all(stem_done(out, it.name, dirs) for it in items):
                bar.update(len(items))
                continue
            if before_work is not None:
                before_work()
            arrays = _process_batch(items, segmentation, resynthesis, perceptual, size=size, resolved=resolved,
                                    image_resize=image_resize, device=device, autocast=autocast,
                                    seed=seed * 1_000_003 + batch_index)
            for it, arr in zip(items, arrays, strict=True):
                _write_item(out, it.name, arr)
                n_computed += 1
                bar.update(1)
    seconds = time.perf_counter() - t0
    rate = n_computed / seconds if seconds > 0 else float("inf")
    write_json(done_file, {"key_hash": digest, "n_images": n_total, "n_computed": n_computed,
                           "seconds": round(seconds, 3), "images_per_second": round(rate, 3),
                           "label_dirs": sorted(label_dirs_seen), "label_source": resolved})
    if progress:
        tqdm.write(f"precompute: {n_computed}/{n_total} images computed in {seconds:.1f} s "
                   f"({rate:.2f} images/s) → {out}")
    return out


def _split_key(source: PrecomputeSource, segmentation: torch.nn.Module, resynthesis: torch.nn.Module,
               perceptual: torch.nn.Module, out_root: PathLike, *, size: tuple[int, int], label_source: str,
               key_params: Mapping[str, Any] | None, seed: int, image_resize: str, amp: bool,
               ) -> tuple[dict[str, Any], str, Path]:
    """(cache key, its hash, the split folder) of ``source`` precomputed with these backends and settings."""
    has_gt_semantic = bool(getattr(source, "has_semantic", False))
    resolved = ("ground_truth" if has_gt_semantic else "prediction") if label_source == "auto" else label_source
    params = {"size": [int(size[0]), int(size[1])], "label_source": resolved, "seed": seed,
              "image_resize": image_resize, "amp": amp, "segmentation_input": "native", "extra": dict(key_params or {})}
    if getattr(resynthesis, "style_size", None) is not None:
        # a style image used to come from torch's bicubic (cache version 4): this entry keeps such a stale split
        # from being reused, and keeps the keys (and the tables' data_fingerprint) of the resyntheses without
        # a style image, which a CACHE_VERSION bump would change for nothing
        params["style_resize"] = "pil_bicubic"
    key = cache_key(source, segmentation, resynthesis, perceptual, params)
    digest = key_hash(key)
    return key, digest, split_dir(out_root, key, digest)


def _done(out: Path, digest: str) -> bool:
    done_file = out / "done.json"
    return done_file.is_file() and read_json(done_file).get("key_hash") == digest


def find_done(
    dataset: Any,
    segmentation: torch.nn.Module,
    resynthesis: torch.nn.Module,
    out_root: PathLike,
    *,
    size: tuple[int, int] = (256, 512),
    perceptual: torch.nn.Module | None = None,
    label_source: str = "auto",
    key_params: Mapping[str, Any] | None = None,
    seed: int = 0,
    image_resize: str = "nearest",
    amp: bool = False,
) -> Path | None:
    """The finished split :func:`precompute` would return for these arguments, or None when it is not done; computes
    nothing. ``dataset`` may be a :class:`~reprolib.precompute.sources.RecordedSource` (a source known by its recorded
    fingerprint only: its files need not exist any more)."""
    source = as_source(dataset)
    _, digest, out = _split_key(source, segmentation, resynthesis, perceptual or PerceptualDifference(), out_root,
                                size=size, label_source=label_source, key_params=key_params, seed=seed,
                                image_resize=image_resize, amp=amp)
    return out if _done(out, digest) else None


class _Indexed(torch.utils.data.Dataset):
    """Let a DataLoader (optionally with workers) read a source in order."""

    def __init__(self, source: PrecomputeSource):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> SourceItem:
        return self.source[index]

def _process_batch(
    items: list[SourceItem], segmentation: torch.nn.Module, resynthesis: torch.nn.Module,
    perceptual: torch.nn.Module, *, size: tuple[int, int], resolved: str, image_resize: str,
    device: torch.device, autocast: Any, seed: int,
) -> list[dict[str, np.ndarray]]:
    """Segment, resynthesise and map one batch; return per item the arrays to write, by folder.

    Segmentation runs on each image at the source's own resolution (the original segments Cityscapes and
    Fishyscapes at 1024×2048, spec §5.3 step 2); H and D are normalised per image there (spec §2.1–2.2) and,
    with the argmax, nearest-resized to ``size`` (spec §2 intro, §5.3 step 6). Items of equal size are
    segmented together.
    """
    # the 8-bit image is what original/ stores and what every later reader sees, so the networks get it too
    images8 = torch.stack([_to_uint8(_resize_image(it.image, size, image_resize)) for it in items])
    images = images8.to(device).float() / 255.0
    groups: dict[tuple[int, int], list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(tuple(it.image.shape[-2:]), []).append(i)
    entropy = torch.empty(len(items), 1, *size)
    distance = torch.empty(len(items), 1, *size)
    pred = torch.empty(len(items), *size, dtype=torch.long)
    # fork_rng: stochastic third-party generators (CC-FPSE's VAE noise) draw from the global RNG; seeding it
    # per batch inside a fork makes the output repeatable without leaking state to the caller
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        for shape, index in groups.items():
            batch = torch.stack([_to_uint8(items[i].image) for i in index]).to(device).float() / 255.0
            with autocast:
                logits = segmentation(imagenet_normalize(batch))
            logits = logits.float()
            if logits.ndim != 4 or logits.shape[1] != NUM_CLASSES:
                raise ValueError(f"segmentation backend returned {tuple(logits.shape)}, expected (B,19,H,W)")
            if tuple(logits.shape[-2:]) != shape:
                logits = F.interpolate(logits, size=shape, mode="bilinear", align_corners=False)
            entropy[index] = resize_nearest_tensor(softmax_entropy(logits, norm="original"), size).cpu()
            distance[index] = resize_nearest_tensor(softmax_distance(logits, norm="original"), size).cpu()
            pred[index] = resize_nearest_tensor(logits.argmax(1, keepdim=True).float(), size)[:, 0].long().cpu()
            del logits
        if resolved == "ground_truth":
            if any(it.semantic_train_ids is None for it in items):
                raise ValueError("label_source='ground_truth' but the dataset has no semantic map")
            train = torch.stack([resize_nearest_tensor(it.semantic_train_ids, size) for it in items])
            label_ids = torch.stack([
                resize_nearest_tensor(it.semantic_label_ids, size) if it.semantic_label_ids is not None
                else torch.from_numpy(train_to_label(resize_nearest_tensor(it.semantic_train_ids, size).numpy()).astype(np.int64))
                for it in items
            ])
        else:
            train = pred
            label_ids = torch.from_numpy(train_to_label(pred.numpy()).astype(np.int64))
        with autocast:
            synthesis = resynthesis(label_ids.to(device), image=_style_images(items, resynthesis, images))
        synthesis = synthesis.float()
        if tuple(synthesis.shape[-2:]) != size:
            synthesis = F.interpolate(synthesis, size=size, mode="bilinear", align_corners=False)
        synthesis8 = _synthesis_to_uint8(synthesis)
        # V is computed from the stored 8-bit images, as the original reads them back from disk
        v = perceptual(imagenet_normalize(images), imagenet_normalize(synthesis8.float() / 255.0))
    maps = {"entropy": _quantize(entropy, "round"), "logit_distance": _quantize(distance, "round"),
            "mae_features": _quantize(v, "truncate")}
    out = []
    for i, it in enumerate(items):
        arr = {
            "original": images8[i].permute(1, 2, 0).numpy(),
            "semantic": train[i].clamp(0, 255).to(torch.uint8).numpy(),
            "synthesis": synthesis8[i].permute(1, 2, 0).cpu().numpy(),
        }
        for d, lab in it.labels.items():
            arr[d] = resize_nearest_tensor(lab, size).to(torch.uint8).numpy()
        native = native_label_source(it.labels)
        if native is not None:
            arr[NATIVE_LABEL_DIR] = it.labels[native].to(torch.uint8).numpy()
        arr.update({k: m[i] for k, m in maps.items()})
        out.append(arr)
    return out
