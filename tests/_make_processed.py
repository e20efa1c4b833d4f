"""Tiny processed splits (spec §4.4 layout) with a learnable signal, written in the real PNG format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reprolib.io import write_png


def make_processed_split(root: Path, n: int = 8, size: tuple[int, int] = (64, 128), seed: int = 0,
                         label_dirs: tuple[str, ...] = ("labels",)) -> Path:
    """Images with a bright square anomaly that the synthesis lacks; maps are high on it (learnable)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for i in range(n):
        stem = f"city_{i:06d}_000019"
        base = rng.integers(60, 160, (h, w, 3), dtype=np.uint8)
        label = np.zeros((h, w), np.uint8)
        y, x = rng.integers(4, h - 20), rng.integers(4, w - 20)
        s = int(rng.integers(8, 16))
        label[y:y + s, x:x + s] = 1
        label[:2] = 255
        original = base.copy()
        original[label == 1] = (250, 30, 200)
        semantic = rng.integers(0, 19, (h, w)).astype(np.uint8)
        semantic[:2] = 255
        m = (label == 1).astype(np.float32)
        maps = {k: np.clip(m * 180 + rng.integers(0, 60, (h, w)), 0, 255).astype(np.uint8)
                for k in ("entropy", "logit_distance", "mae_features")}
        write_png(root / "original" / f"{stem}.png", original)
        write_png(root / "synthesis" / f"{stem}.png", base)
        write_png(root / "semantic" / f"{stem}.png", semantic)
        for d in label_dirs:
            write_png(root / d / f"{stem}.png", label)
        for k, v in maps.items():
            write_png(root / k / f"{stem}.png", v)
    return root
