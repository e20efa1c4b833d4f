"""Run segmentation + resynthesis + the three uncertainty maps over a dataset once; cache the result.

``precompute(dataset, segmentation, resynthesis, out_root)`` writes a processed split (spec §4.4)::

    OUT_ROOT/<kind>-<seg>-<resyn>-<hash>/original/<stem>.png        RGB at ``size``
                                        semantic/<stem>.png        trainIds (prediction, or the altered GT)
                                        synthesis/<stem>.png       RGB resynthesis
                                        labels*/<stem>.png         0 known / 1 anomaly / 255 ignore
                                        labels_native/<stem>.png   evaluation labels at the source's size
                                        entropy/ logit_distance/ mae_features/<stem>.png   8-bit maps
                                        key.json  done.json

The folder name carries a hash of everything that determines the bytes (backend names and weight
fingerprints, the dataset fingerprint, the parameters), so a second call with the same inputs returns at
once, and a changed input lands in a new folder. Files are written atomically; a killed run resumes
(batches whose stems already have every output are skipped; batches are formed from fixed positions so a
resumed run writes the same bytes as an uninterrupted one); ``done.json`` marks completion.

Sources (what ``dataset`` may be):

* a processed split made by the training-data generator (a path, or a ``ProcessedSplit`` with ``.root``):
  ``original/`` + altered ``semantic/`` (+ ``semantic_labelId/``) + ``labels*/``. By spec §4.5 the semantic
  input is the *altered ground truth*; entropy / distance come from segmenting the unaltered real image;
  the resynthesis is of the altered map, so V compares the real image with it;
* a torch Dataset whose items are dicts with ``image`` and ``name`` and either ``label`` (Fishyscapes
  L&F / Static: 0/1/255, written to ``labels/`` and ``labels_with_ROI/`` — the Fishyscapes masks already
  void everything outside the region of interest) or Cityscapes ``train_ids`` / ``label_ids`` (no anomalies:
  ``labels/`` is 0 on known classes, 255 on void);
* any object implementing :class:`PrecomputeSource`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from natsort import natsorted
from tqdm.auto import tqdm

from reprolib.backends.base import imagenet_normalize
from reprolib.backends.embedded import module_fingerprint
from reprolib.data.formats import LABEL_DIRS, MAP_FOLDERS
from reprolib.io import PathLike, ReprolibDataError, read_json, read_png, write_json, write_png
from reprolib.labels import IGNORE_INDEX, NUM_CLASSES, label_to_train, train_to_label

CACHE_VERSION = 3  # 2: labels_native/ (evaluation labels at the dataset's own, benchmark resolution);
# 3: segmentation at the source's own resolution, maps / argmax / images nearest-resized (spec §2.1, §5.3)
MAP_DIRS = tuple(MAP_FOLDERS.values())
LABEL_SOURCES = ("auto", "prediction", "ground_truth")
#: the evaluation labels (``labels_with_ROI`` if the source has them, else ``labels``) at the source's own
#: resolution, so scores can be evaluated at the benchmark's resolution rather than the processing size
NATIVE_LABEL_DIR = "labels_native"


def native_label_source(label_dirs: list[str] | set[str] | dict[str, Any]) -> str | None:
    """Which label folder ``labels_native/`` copies: ``labels_with_ROI`` if present, else ``labels``."""
    for d in ("labels_with_ROI", "labels"):
        if d in label_dirs:
            return d
    return None

@dataclass
class SourceItem:
    """One input image and what the source knows about it (all at the source's own resolution)."""

    name: str
    image: torch.Tensor  # (3,H,W) float in [0,1]
    semantic_train_ids: torch.Tensor | None = None  # (H,W) long, e.g. the altered GT of generated data
    semantic_label_ids: torch.Tensor | None = None  # (H,W) long labelIds matching semantic_train_ids
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # dir name → (H,W) uint8 0/1/255

@runtime_checkable
class PrecomputeSource(Protocol):
    """What :func:`precompute` reads: indexable :class:`SourceItem` s plus a content fingerprint."""

    kind: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> SourceItem: ...

    def fingerprint(self) -> str: ...

def _listing_hash(paths: list[Path], root: Path) -> str:
    """Hash of relative names, sizes and mtimes: cheap on large trees (a full content hash is not)."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]

class GeneratedSplitSource:
    """A processed split from the training-data generator: ``original/``, ``semantic/`` (altered trainIds),
    optional ``semantic_labelId/`` (altered labelIds), and any of the ``labels*/`` folders."""

    kind = "generated"

    def __init__(self, root: PathLike):
        self.root = Path(root)
        orig = self.root / "original"
        if not orig.is_dir():
            raise ReprolibDataError(self.root, "not a processed split: no original/ folder")
        self.files = natsorted(orig.glob("*.png"), key=lambda p: p.name)
        if not self.files:
            raise ReprolibDataError(orig, "no PNG images")
        self.stems = [p.stem for p in self.files]
        self.has_semantic = (self.root / "semantic").is_dir()
        self.has_label_ids = (self.root / "semantic_labelId").is_dir()
        self.label_dirs = [d for d in LABEL_DIRS if (self.root / d).is_dir()]
        for d in ["semantic"] * self.has_semantic + ["semantic_labelId"] * self.has_label_ids + self.label_dirs:
            missing = [s for s in self.stems if not (self.root / d / f"{s}.png").is_file()]
            if missing:
                raise ReprolibDataError(self.root / d, f"{len(missing)} image(s) without a file here, e.g. "
                                                        f"{missing[0]}.png")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SourceItem:
        stem = self.stems[index]
        rgb = read_png(self.files[index], mode="RGB")
        size = rgb.shape[:2]
        item = SourceItem(stem, torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0)
        if self.has_semantic:
            train = read_png(self.root / "semantic" / f"{stem}.png", mode="L", expect_size=size)
            item.semantic_train_ids = torch.from_numpy(train.astype(np.int64))
            if self.has_label_ids:
                lab = read_png(self.root / "semantic_labelId" / f"{stem}.png", mode="L", expect_size=size)
                item.semantic_label_ids = torch.from_numpy(lab.astype(np.int64))
        for d in self.label_dirs:
            item.labels[d] = torch.from_numpy(read_png(self.root / d / f"{stem}.png", mode="L",
                                                       expect_size=size).copy())
        return item

    def fingerprint(self) -> str:
        dirs = ["original", "semantic", "semantic_labelId", *self.label_dirs]
        files = [p for d in dirs if (self.root / d).is_dir() for p in sorted((self.root / d).glob("*.png"))]
        return _listing_hash(files, self.root)

def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x.copy())
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"dataset item field {name!r} must be a tensor or array, got {type(x).__name__}")
    return x

class DatasetSource:
    """Adapter for the torch Datasets of :mod:`reprolib.data` (Fishyscapes L&F / Static, Cityscapes).

    ``dataset.fingerprint()`` (or a ``fingerprint`` string) is used when present; otherwise the fingerprint
    covers the class, length, simple attributes and a name/size/mtime listing of every folder attribute.
    """

    def __init__(self, dataset: Any, kind: str | None = None):
        self.dataset = dataset
        self.kind = kind or type(dataset).__name__.lower().replace("dataset", "") or "dataset"

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> SourceItem:
        raw = self.dataset[index]
        if not isinstance(raw, Mapping) or "image" not in raw:
            raise ValueError(f"dataset item {index} must be a dict with an 'image' entry, got {type(raw).__name__}")
        image = _as_tensor(raw["image"], "image")
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"dataset item {index}: image must be (3,H,W), got {tuple(image.shape)}")
        image = image.float() / 255.0 if not image.is_floating_point() else image.float()
        name = str(raw.get("name", f"{index:06d}"))
        item = SourceItem(_safe_stem(name), image.clamp(0, 1))
        if "label" in raw:  # Fishyscapes: the mask already voids everything outside the ROI
            label = _as_tensor(raw["label"], "label").to(torch.uint8)
            item.labels = {"labels": label, "labels_with_ROI": label}
        if "train_ids" in raw or "label_ids" in raw:
            if "label_ids" in raw:
                lab = _as_tensor(raw["label_ids"], "label_ids").long()
                train = torch.from_numpy(label_to_train(lab.numpy()).astype(np.int64))
            else:
                train = _as_tensor(raw["train_ids"], "train_ids").long()
                lab = torch.from_numpy(train_to_label(train.numpy()).astype(np.int64))
            item.semantic_train_ids, item.semantic_label_ids = train, lab
            if "label" not in raw:  # Cityscapes: nothing is anomalous; void is ignored
                item.labels = {"labels": torch.where(train == IGNORE_INDEX, 255, 0).to(torch.uint8)}
        return item

    def fingerprint(self) -> str:
        given = getattr(self.dataset, "fingerprint", None)
        if callable(given):
            given = given()
        if isinstance(given, str) and given:
            return given
        h = hashlib.sha256(f"{type(self.dataset).__module__}.{type(self.dataset).__qualname__}\0{len(self)}".encode())
        on_disk = False
        for key, value in sorted(getattr(self.dataset, "__dict__", {}).items()):
            if isinstance(value, (str, int, float, bool, tuple, type(None))):
                h.update(f"{key}={value!r}\n".encode())
            if isinstance(value, (str, os.PathLike)) and Path(value).is_dir():
                root = Path(value)
                on_disk = True
                h.update(_listing_hash(sorted(p for p in root.rglob("*") if p.is_file()), root).encode())
        if not on_disk:  # in-memory data (a list of dicts, a synthetic Dataset): hash the content itself
            for i in range(len(self)):
                item = self[i]
                h.update(item.name.encode())
                for t in (item.image, item.semantic_train_ids, *item.labels.values()):
                    if t is not None:
                        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

def _safe_stem(name: str) -> str:
    stem = Path(name).name
    stem = stem[:-4] if stem.lower().endswith(".png") else stem
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", stem)
    if not stem or stem.startswith("."):
        raise ValueError(f"cannot make a file name from item name {name!r}")
    return stem

def as_source(dataset: Any) -> PrecomputeSource:
    """Wrap whatever :func:`precompute` was given into a :class:`PrecomputeSource`."""
    if isinstance(dataset, (str, os.PathLike)):
        return GeneratedSplitSource(dataset)
    if isinstance(dataset, PrecomputeSource) and hasattr(dataset, "kind"):
        return dataset
    root = getattr(dataset, "root", None)
    if root is not None and (Path(root) / "original").is_dir() and (Path(root) / "semantic").is_dir():
        return GeneratedSplitSource(root)  # a ProcessedSplit: read its folders directly
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        return DatasetSource(dataset)
    raise ValueError(f"cannot precompute over {type(dataset).__name__}: expected a processed-split folder, a "
                     "Dataset of dicts (image, name, label | train_ids) or a PrecomputeSource")

# ------------------------------------------------------------------------------------------ the cache
def _to_uint8(rgb01: torch.Tensor) -> torch.Tensor:
    return (rgb01.clamp(0, 1) * 255).round().to(torch.uint8)

def _resize_image(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    if mode == "nearest":
        return F.interpolate(image[None], size=size, mode="nearest")[0]
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]

def _resize_ids(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(ids.shape[-2:]) == size:
        return ids
    return F.interpolate(ids[None, None].float(), size=size, mode="nearest")[0, 0].to(ids.dtype)

def _resize_nearest(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,C,h,w) → (B,C,*size) by NEAREST, the original's resize for every map and label (spec §4.3)."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps, size=size, mode="nearest")


def _quantize(maps01: torch.Tensor, mode: str) -> np.ndarray:
    """(B,1,H,W) [0,1] → (B,H,W) uint8 via reprolib.maps.quantize_8bit.

    The original's data prep rounds H and D (``cv2.imwrite`` of floats) and truncates V (``ToPILImage``),
    spec §2.1 / §2.3.
    """
    from reprolib.maps import quantize_8bit

    q = quantize_8bit(maps01.float(), mode=mode)
    q = q.cpu().numpy() if isinstance(q, torch.Tensor) else np.asarray(q)
    return q.reshape(maps01.shape[0], *maps01.shape[-2:]).astype(np.uint8)

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "x"

def cache_key(
    source: PrecomputeSource, segmentation: torch.nn.Module, resynthesis: torch.nn.Module,
    perceptual: torch.nn.Module | None, params: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything that determines the output bytes, as a JSON-able dict."""
    def backend(m: torch.nn.Module | None) -> dict[str, str] | None:
        if m is None:
            return None
        return {"name": str(getattr(m, "name", type(m).__name__)),
                "class": f"{type(m).__module__}.{type(m).__qualname__}", "fingerprint": module_fingerprint(m)}

    return {"version": CACHE_VERSION, "segmentation": backend(segmentation), "resynthesis": backend(resynthesis),
            "perceptual": backend(perceptual), "dataset": {"kind": source.kind, "fingerprint": source.fingerprint(),
                                                           "length": len(source)},
            "params": json.loads(json.dumps(dict(params), sort_keys=True, default=str))}

def key_hash(key: Mapping[str, Any]) -> str:
    """Short stable hash of a cache key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]

def _stem_done(out: Path, stem: str, dirs: list[str]) -> bool:
    return all((out / d / f"{stem}.png").is_file() for d in dirs)

def _write_item(out: Path, stem: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one stem's outputs (each file atomic; a stem counts as done only once all exist)."""
    for d, arr in arrays.items():
        write_png(out / d / f"{stem}.png", arr)

@torch.no_grad()
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
    spec §4.3; or ``"bilinear"`` antialiased). ``amp``: autocast the backends on CUDA.
    Returns the split folder.
    """
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    if image_resize not in ("bilinear", "nearest"):
        raise ValueError(f"image_resize must be 'bilinear' or 'nearest', got {image_resize!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    size = (int(size[0]), int(size[1]))
    source = as_source(dataset)
    if len(source) == 0:
        raise ValueError("precompute: the dataset is empty")
    has_gt_semantic = bool(getattr(source, "has_semantic", False))
    resolved = ("ground_truth" if has_gt_semantic else "prediction") if label_source == "auto" else label_source
    if perceptual is None:
        from reprolib.maps import PerceptualDifference

        perceptual = PerceptualDifference()
    segmentation.eval()
    resynthesis.eval()
    perceptual.eval()

    params = {"size": list(size), "label_source": resolved, "seed": seed, "image_resize": image_resize,
              "amp": amp, "segmentation_input": "native", "extra": dict(key_params or {})}
    key = cache_key(source, segmentation, resynthesis, perceptual, params)
    digest = key_hash(key)
    out = Path(out_root) / _slug(f"{source.kind}-{key['segmentation']['name']}-{key['resynthesis']['name']}-{digest}")
    done_file = out / "done.json"
    if done_file.is_file():
        done = read_json(done_file)
        if done.get("key_hash") == digest:
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
    for batch_index, items in enumerate(loader):
        label_dirs = sorted({d for it in items for d in it.labels})
        label_dirs_seen.update(label_dirs)
        dirs = ["original", "semantic", "synthesis", *label_dirs, *MAP_DIRS]
        if native_label_source(label_dirs) is not None:
            dirs.append(NATIVE_LABEL_DIR)
        if all(_stem_done(out, it.name, dirs) for it in items):
            bar.update(len(items))
            continue
        arrays = _process_batch(items, segmentation, resynthesis, perceptual, size=size, resolved=resolved,
                                image_resize=image_resize, device=device, autocast=autocast,
                                seed=seed * 1_000_003 + batch_index)
        for it, arr in zip(items, arrays, strict=True):
            _write_item(out, it.name, arr)
            n_computed += 1
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    rate = n_computed / seconds if seconds > 0 else float("inf")
    write_json(done_file, {"key_hash": digest, "n_images": n_total, "n_computed": n_computed,
                           "seconds": round(seconds, 3), "images_per_second": round(rate, 3),
                           "label_dirs": sorted(label_dirs_seen), "label_source": resolved})
    if progress:
        tqdm.write(f"precompute: {n_computed}/{n_total} images computed in {seconds:.1f} s "
                   f"({rate:.2f} images/s) → {out}")
    return out

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
    from reprolib.maps import softmax_distance, softmax_entropy

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
            entropy[index] = _resize_nearest(softmax_entropy(logits, norm="original"), size).cpu()
            distance[index] = _resize_nearest(softmax_distance(logits, norm="original"), size).cpu()
            pred[index] = _resize_nearest(logits.argmax(1, keepdim=True).float(), size)[:, 0].long().cpu()
            del logits
        if resolved == "ground_truth":
            if any(it.semantic_train_ids is None for it in items):
                raise ValueError("label_source='ground_truth' but the dataset has no semantic map")
            train = torch.stack([_resize_ids(it.semantic_train_ids, size) for it in items])
            label_ids = torch.stack([
                _resize_ids(it.semantic_label_ids, size) if it.semantic_label_ids is not None
                else torch.from_numpy(train_to_label(_resize_ids(it.semantic_train_ids, size).numpy()).astype(np.int64))
                for it in items
            ])
        else:
            train = pred
            label_ids = torch.from_numpy(train_to_label(pred.numpy()).astype(np.int64))
        with autocast:
            synthesis = resynthesis(label_ids.to(device), image=images)
        synthesis = synthesis.float()
        if tuple(synthesis.shape[-2:]) != size:
            synthesis = F.interpolate(synthesis, size=size, mode="bilinear", align_corners=False)
        synthesis8 = _to_uint8(synthesis)
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
            arr[d] = _resize_ids(lab, size).to(torch.uint8).numpy()
        native = native_label_source(it.labels)
        if native is not None:
            arr[NATIVE_LABEL_DIR] = it.labels[native].to(torch.uint8).numpy()
        arr.update({k: m[i] for k, m in maps.items()})
        out.append(arr)
    return out

def is_complete(split: PathLike) -> bool:
    """True when ``split`` holds a finished precompute (``done.json`` present)."""
    return (Path(split) / "done.json").is_file()
