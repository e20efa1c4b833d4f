"""Score evaluation sets with a trained model, then turn scores into table rows.

Per-image outputs (p(anomaly) and the three maps, float32 as the original scored them) are cached as a
compressed ``.npz`` beside the run, so the
ensemble grid search and bootstrap intervals reuse them instead of re-running the network (the original
re-ran the whole network for every one of its 224 weight candidates).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from reprolib.data.formats import NATIVE_LABEL_DIR
from reprolib.data.formats import UNCERTAINTY_MAPS as MAP_NAMES
from reprolib.data.processed import ProcessedSplit
from reprolib.io import ReprolibDataError, read_png, write_bytes, write_png
from reprolib.precision import ieee_fp32

#: ``"processed"``: scores and labels at the processing size (what the original code and the MLRC report
#: evaluated: 256×512, labels nearest-resized); ``"benchmark"``: scores upsampled to the evaluation set's own
#: resolution (1024×2048 for Fishyscapes) as the original's submission did (PIL bicubic, :func:`_upsample`) and
#: scored against its full-size labels.
RESOLUTIONS = ("processed", "benchmark")
#: how ``"benchmark"`` resizes the scores (:func:`_upsample`); part of the score caches' names, so caches of another
#: resize (torch's bilinear before 2026-12-05, named ``…-benchmark-…``) are scored again, not reused
BENCHMARK_UPSAMPLING = "bicubic"


def _native_labels(split: Path, names: list[str]) -> list[np.ndarray]:
    folder = split / NATIVE_LABEL_DIR
    if not folder.is_dir():
        raise ReprolibDataError(folder, "no benchmark-resolution labels in this processed split (made by an "
                                        "older precompute?): recompute it, or evaluate at resolution='processed'")
    return [read_png(folder / f"{n}.png", mode="L") for n in names]


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,H,W) scores → (B,*size) as the original's Fishyscapes submission resized its score (``estimator.py``,
    ``estimator_worker``: ``Image.fromarray(score).resize((W, H))`` on a float image, whose default filter in the
    Pillow 7.0.0 of its Dockerfile is bicubic): PIL's bicubic (a = −0.5, not torch's −0.75), values not clipped."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    h, w = size
    up = [np.asarray(Image.fromarray(m.numpy()).resize((w, h), Image.Resampling.BICUBIC)) for m in maps.float().cpu()]
    return torch.from_numpy(np.stack(up))


@torch.no_grad()
@ieee_fp32()
def score_split(
    model: torch.nn.Module,
    split: str | Path,
    *,
    size: tuple[int, int],
    device: str = "cpu",
    batch_size: int = 4,
    ensemble: torch.nn.Module | None = None,
    label_dir: str = "labels",
    resolution: str = "processed",
) -> dict[str, list[np.ndarray]]:
    """Run the network over a processed split; returns per-image arrays for
    ``dissimilarity`` (p(anomaly)), ``entropy``, ``perceptual``, ``distance`` and ``label``.

    ``resolution`` (see :data:`RESOLUTIONS`): at ``"benchmark"`` every map is upsampled to the size of the
    split's ``labels_native/`` image and ``label`` is that image.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    ds = ProcessedSplit(split, label_dir=label_dir, size=size, uncertainty=True, flip=False, normalize=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    model = model.to(device).eval()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("dissimilarity", *MAP_NAMES, "label")}
    for batch in loader:
        args = {k: batch[k].to(device) for k in ("original", "synthesis", "semantic", *MAP_NAMES)}
        logits = model(**args)
        if ensemble is not None:
            prob = ensemble.score(logits, args["entropy"], args["perceptual"], args["distance"])
        else:
            prob = torch.softmax(logits.float(), dim=1)[:, 1]
        maps = {"dissimilarity": prob.float().cpu(), **{k: batch[k][:, 0].float() for k in MAP_NAMES}}
        if resolution == "benchmark":
            labels = _native_labels(Path(split), list(batch["name"]))
        else:
            labels = [lab.numpy().astype(np.uint8) for lab in batch["label"]]
        for i, label in enumerate(labels):
            for k, m in maps.items():
                out[k].append(_upsample(m[i:i + 1], label.shape)[0].numpy().astype(np.float32))
            out["label"].append(label.astype(np.uint8))
    return out


#: dtype of the cached maps. float32, as the original scored them: float16 (11-bit mantissa) collapses
#: p(anomaly) above ~0.9995 into a handful of values and creates ties the original does not have, which
#: move AP and FPR95. zlib (savez_compressed) keeps the files small enough.
SCORE_DTYPE = np.float32


def save_scores(scores: dict[str, list[np.ndarray]], path: str | Path) -> None:
    """Per-image scores as one compressed npz (float32 maps, uint8 labels), written atomically."""
    arrays: dict[str, Any] = {}
    for key, items in scores.items():
        dtype = np.uint8 if key == "label" else SCORE_DTYPE
        arrays[key] = np.stack(items).astype(dtype)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load_scores(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Inverse of :func:`save_scores` (maps as float32)."""
    with np.load(path) as z:
        return {k: [a.astype(np.float32) if k != "label" else a for a in z[k]] for k in z.files}


#: ``{fs_id:04d}_`` (optional) + ``{city}_{seq:06d}`` + ``_{frame:06d}``: the name the precompute gives a Fishyscapes
#: image (``{fs_id}_{base_id}``, the base a Lost & Found or Cityscapes frame id)
_SEQUENCE_RE = re.compile(r"^(?:[0-9]{4}_)?(.+_[0-9]{6})_[0-9]{6}$")


def image_sequences(names: Sequence[str]) -> list[str]:
    """Each evaluation image's recording sequence, ``{city}_{seq:06d}`` of its frame id; a name without a frame
    id is a sequence of its own. Frames of one Lost & Found sequence show the same road and obstacle a few
    metres apart: near-duplicates, which cross-fitting and the bootstrap keep together."""
    return [m.group(1) if (m := _SEQUENCE_RE.match(n)) else n for n in names]


def split_sequences(split: str | Path) -> list[str]:
    """:func:`image_sequences` of a processed split's images, in the order :func:`score_split` scores them."""
    return image_sequences(ProcessedSplit(split, size=None).names())


def crossfit_halves(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of image indices (one per image of ``sequences``, its sequence) for tuning on one and
    reporting on the other. Every sequence lies in one half: split apart, the weights would be tuned on
    near-copies of the images they score. Sequences go, largest first (ties in order of first appearance), to
    the half with fewer images so far (ties: the first), so with one image per sequence (FS Static, the
    embedded world) the halves are the even and the odd images."""
    members: dict[str, list[int]] = {}
    for i, s in enumerate(sequences):
        members.setdefault(s, []).append(i)
    if len(members) < 2:
        raise ValueError(f"cross-fitting needs images of at least two recording sequences, got {len(sequences)} "
                         f"image(s) of {len(members)}: {sorted(members)[:3]}")
    halves: tuple[list[int], list[int]] = ([], [])
    for images in sorted(members.values(), key=len, reverse=True):  # stable: ties keep first appearance
        halves[len(halves[1]) < len(halves[0])].extend(images)
    return np.sort(np.array(halves[0], np.int64)), np.sort(np.array(halves[1], np.int64))


def select(scores: dict[str, list[np.ndarray]], index: np.ndarray) -> dict[str, list[np.ndarray]]:
    return {k: [v[i] for i in index] for k, v in scores.items()}


def write_predictions(maps: list[np.ndarray], folder: str | Path, limit: int | None = None) -> None:
    """8-bit heat maps of p(anomaly), one PNG per image (``{i:04d}.png``), written atomically."""
    for i, m in enumerate(maps[:limit]):
        write_png(Path(folder) / f"{i:04d}.png", (np.clip(m, 0, 1) * 255).round().astype(np.uint8))
