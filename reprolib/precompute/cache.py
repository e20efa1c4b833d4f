"""The cache of processed splits: its version, the key of everything that determines the output bytes,
the folder it names, the output folders of a split, and the checks for a finished stem or split."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reprolib.backends.embedded import module_fingerprint
from reprolib.data.formats import MAP_FOLDERS, NATIVE_LABEL_DIR
from reprolib.io import PathLike
from reprolib.precompute.sources import PrecomputeSource

CACHE_VERSION = 4  # 2: labels_native/ (evaluation labels at the dataset's own, benchmark resolution);
# 3: segmentation at the source's own resolution, maps / argmax / images nearest-resized (spec §2.1, §5.3);
# 4: nearest on PIL's grid (pixel centres), CC-FPSE's style image bicubic from the native image, the
# resynthesis truncated to 8 bits, as the original. Since: that style image by PIL's own bicubic, keyed by
# params["style_resize"] (compute.py) rather than here, so splits without a style image keep their keys
MAP_DIRS = tuple(MAP_FOLDERS.values())


def native_label_source(label_dirs: list[str] | set[str] | dict[str, Any]) -> str | None:
    """Which label folder ``labels_native/`` copies: ``labels_with_ROI`` if present, else ``labels``."""
    for d in ("labels_with_ROI", "labels"):
        if d in label_dirs:
            return d
    return None


def output_dirs(label_dirs: list[str]) -> list[str]:
    """Every folder a stem of a batch with ``label_dirs`` is written to (a stem is done once all hold it)."""
    dirs = ["original", "semantic", "synthesis", *label_dirs, *MAP_DIRS]
    if native_label_source(label_dirs) is not None:
        dirs.append(NATIVE_LABEL_DIR)
    return dirs


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "x"


def split_dir(out_root: PathLike, key: Mapping[str, Any], digest: str) -> Path:
    """The folder of the split with cache ``key`` (hash ``digest``): ``<kind>-<seg>-<resyn>-<hash>``."""
    name = f"{key['dataset']['kind']}-{key['segmentation']['name']}-{key['resynthesis']['name']}-{digest}"
    return Path(out_root) / _slug(name)


def stem_done(out: Path, stem: str, dirs: list[str]) -> bool:
    """True when ``stem`` has a file in every one of ``dirs`` (each written atomically)."""
    return all((out / d / f"{stem}.png").is_file() for d in dirs)


def is_complete(split: PathLike) -> bool:
    """True when ``split`` holds a finished precompute (``done.json`` present)."""
    return (Path(split) / "done.json").is_file()
