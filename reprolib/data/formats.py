"""File naming of the official datasets, in one place (the world writer and the loaders share it).

* Cityscapes (cityscapesScripts README): ``{root}/{type}/{split}/{city}/{city}_{seq:06d}_{frame:06d}_{type}{ext}``.
* Lost & Found (LaF): same scheme, ``leftImg8bit/{train,test}/{NN}_{scene}/{NN}_{scene}_{seq}_{frame}_leftImg8bit.png``.
* Fishyscapes Lost & Found val (``fishyscapes_lostandfound.zip``, bdlb ``fishyscapes_tfds.py``): one folder of
  ``{fs_id:04d}_{laf_id}_labels.png`` masks (0 known, 1 anomaly, 255 void); the image is the LaF left image
  ``{laf_id}_leftImg8bit.png``.
* Fishyscapes Static val (``fs_val_v3.zip``): one folder of ``{fs_id:04d}_{cityscapes_id}_labels.png`` masks and
  ``{fs_id:04d}_..._rgb.npz`` overlays (key ``rgb``, signed int, H×W×3); the image is
  ``clip(cityscapes val image + overlay, 0, 255)``.
* Processed split (spec §4.4, what the dissimilarity network reads): one folder per input, the uncertainty
  maps under the original's folder names (:data:`MAP_FOLDERS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CITYSCAPES_GT_TYPES = ("labelIds", "instanceIds", "labelTrainIds", "color")

#: The uncertainty maps, in the order the original concatenates them (spec §1.2) — not the paper's H, D, V.
#: The one list of their names: the loaders, the network, the ensembles and the scoring all use it.
UNCERTAINTY_MAPS = ("entropy", "perceptual", "distance")
#: map name → folder of its 8-bit PNGs in a processed split (the original's names; in precompute's order)
MAP_FOLDERS = {"entropy": "entropy", "distance": "logit_distance", "perceptual": "mae_features"}
#: label folders a processed split may hold (0 known / 1 anomaly / 255 ignore), as the training-data generator writes them
#: processed-split folder of the evaluation labels (``labels_with_ROI`` if the source has them, else ``labels``)
#: at the source's own resolution, so scores can be evaluated at the benchmark's resolution
NATIVE_LABEL_DIR = "labels_native"
LABEL_DIRS = ("labels", "labels_with_ROI", "labels_with_void_no_ego", "labels_with_void")

#: ``0000_04_Maurener_Weg_8_000000_000030_labels.png`` → ("0000", "04_Maurener_Weg_8_000000_000030")
FISHYSCAPES_LABELS_RE = re.compile(r"^([0-9]+)_(.+)_labels\.png$")
#: ``{city}_{seq:06d}_{frame:06d}`` → city, seq, frame
FRAME_ID_RE = re.compile(r"^(.+)_([0-9]{6})_([0-9]{6})$")


@dataclass(frozen=True)
class FrameId:
    """A Cityscapes / Lost & Found frame id ``{city}_{seq:06d}_{frame:06d}``."""

    city: str
    seq: int
    frame: int

    @property
    def stem(self) -> str:
        return f"{self.city}_{self.seq:06d}_{self.frame:06d}"

    @classmethod
    def parse(cls, stem: str) -> FrameId:
        m = FRAME_ID_RE.match(stem)
        if m is None:
            raise ValueError(f"not a Cityscapes-style frame id: {stem!r}")
        return cls(m.group(1), int(m.group(2)), int(m.group(3)))


def cityscapes_image_path(root: Path, split: str, fid: FrameId) -> Path:
    return Path(root) / "leftImg8bit" / split / fid.city / f"{fid.stem}_leftImg8bit.png"


def cityscapes_gt_path(root: Path, split: str, fid: FrameId, kind: str, gt: str = "gtFine") -> Path:
    if kind not in CITYSCAPES_GT_TYPES:
        raise ValueError(f"unknown ground-truth type {kind!r}; expected one of {CITYSCAPES_GT_TYPES}")
    return Path(root) / gt / split / fid.city / f"{fid.stem}_{gt}_{kind}.png"


def fishyscapes_labels_name(fs_id: int, base_id: str) -> str:
    return f"{fs_id:04d}_{base_id}_labels.png"


def fishyscapes_overlay_name(fs_id: int, base_id: str) -> str:
    return f"{fs_id:04d}_{base_id}_rgb.npz"


def parse_fishyscapes_labels_name(name: str) -> tuple[str, str]:
    """Return (fs_id, base_id) from a Fishyscapes ``*_labels.png`` file name."""
    m = FISHYSCAPES_LABELS_RE.match(name)
    if m is None:
        raise ValueError(f"not a Fishyscapes labels file name: {name!r}")
    return m.group(1), m.group(2)


#: Sub-folders of the embedded world root (real users point each loader at their own copies).
WORLD_CITYSCAPES = "cityscapes"
WORLD_LOSTANDFOUND = "lostandfound"
WORLD_FS_LAF = "fishyscapes/LostAndFound"
WORLD_FS_STATIC = "fishyscapes/Static"
