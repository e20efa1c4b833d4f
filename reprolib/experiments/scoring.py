"""Score evaluation sets with a trained model, then turn scores into table rows.

Per-image outputs (p(anomaly) and the three maps, float16) are cached as ``.npz`` beside the run, so the
ensemble grid search and bootstrap intervals reuse them instead of re-running the network (the original
re-ran the whole network for every one of its 224 weight candidates).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reprolib.io import write_bytes

MAP_NAMES = ("entropy", "perceptual", "distance")


@torch.no_grad()
def score_split(
    model: torch.nn.Module,
    split: str | Path,
    *,
    size: tuple[int, int],
    device: str = "cpu",
    batch_size: int = 4,
    ensemble: torch.nn.Module | None = None,
    label_dir: str = "labels",
) -> dict[str, list[np.ndarray]]:
    """Run the network over a processed split; returns per-image arrays for
    ``dissimilarity`` (p(anomaly)), ``entropy``, ``perceptual``, ``distance`` and ``label``."""
    from reprolib.data.processed import ProcessedSplit

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
        for i in range(prob.shape[0]):
            out["dissimilarity"].append(prob[i].cpu().numpy().astype(np.float32))
            for k in MAP_NAMES:
                out[k].append(batch[k][i, 0].numpy().astype(np.float32))
            out["label"].append(batch["label"][i].numpy().astype(np.uint8))
    return out


def save_scores(scores: dict[str, list[np.ndarray]], path: str | Path) -> None:
    """Per-image scores as one compressed npz (float16 maps, uint8 labels), written atomically."""
    arrays: dict[str, Any] = {}
    for key, items in scores.items():
        dtype = np.uint8 if key == "label" else np.float16
        arrays[key] = np.stack(items).astype(dtype)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load_scores(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Inverse of :func:`save_scores` (maps back to float32)."""
    with np.load(path) as z:
        return {k: [a.astype(np.float32) if k != "label" else a for a in z[k]] for k in z.files}


def crossfit_halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of image indices (even / odd) for tuning on one and reporting on the other."""
    idx = np.arange(n)
    return idx[idx % 2 == 0], idx[idx % 2 == 1]


def select(scores: dict[str, list[np.ndarray]], index: np.ndarray) -> dict[str, list[np.ndarray]]:
    return {k: [v[i] for i in index] for k, v in scores.items()}


def write_predictions(maps: list[np.ndarray], folder: str | Path, limit: int | None = None) -> None:
    """8-bit heat maps of p(anomaly), one PNG per image (``{i:04d}.png``), written atomically."""
    from reprolib.io import write_png

    for i, m in enumerate(maps[:limit]):
        write_png(Path(folder) / f"{i:04d}.png", (np.clip(m, 0, 1) * 255).round().astype(np.uint8))
