"""Cityscapes label tables, taken from ``cityscapesscripts`` (the official definitions).

Look-up tables are numpy arrays indexed by id, so conversions are one fancy-indexing pass.
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import id2label, labels, name2label, trainId2label

NUM_CLASSES = 19
IGNORE_INDEX = 255

#: labelIds that exist in the Cityscapes label table (0..33; license plate −1 is never stored in PNGs).
VALID_LABEL_IDS: frozenset[int] = frozenset(lab.id for lab in labels if lab.id >= 0)

#: labelId → trainId (255 for void / ignored classes and for ids outside the table).
LABEL_TO_TRAIN = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _lab in labels:
    if 0 <= _lab.id < 256 and 0 <= _lab.trainId < NUM_CLASSES:
        LABEL_TO_TRAIN[_lab.id] = _lab.trainId

#: trainId → labelId (255 → 0 "unlabeled").
TRAIN_TO_LABEL = np.zeros(256, dtype=np.uint8)
for _tid in range(NUM_CLASSES):
    TRAIN_TO_LABEL[_tid] = trainId2label[_tid].id

#: trainId → RGB colour (255 → black).
TRAIN_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _tid in range(NUM_CLASSES):
    TRAIN_COLORS[_tid] = trainId2label[_tid].color

#: labelId → RGB colour, as in ``*_gtFine_color.png``.
LABEL_COLORS = np.zeros((256, 3), dtype=np.uint8)
for _lab in labels:
    if 0 <= _lab.id < 256:
        LABEL_COLORS[_lab.id] = _lab.color

#: labelIds of classes that carry instances (person … bicycle): instanceIds store labelId*1000+k.
INSTANCE_LABEL_IDS: frozenset[int] = frozenset(lab.id for lab in labels if lab.hasInstances and lab.id >= 0)

TRAIN_CLASS_NAMES: tuple[str, ...] = tuple(trainId2label[t].name for t in range(NUM_CLASSES))

EGO_VEHICLE = name2label["ego vehicle"].id  # 1
OUT_OF_ROI = name2label["out of roi"].id  # 3
STATIC = name2label["static"].id  # 4
DYNAMIC = name2label["dynamic"].id  # 5


def label_to_train(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelIds array to trainIds (uint8, 255 = ignore)."""
    return LABEL_TO_TRAIN[np.asarray(label_ids, dtype=np.int64).clip(0, 255)]


def train_to_label(train_ids: np.ndarray) -> np.ndarray:
    """Map a trainIds array back to labelIds (255 → 0)."""
    return TRAIN_TO_LABEL[np.asarray(train_ids, dtype=np.int64).clip(0, 255)]


def colorize_train(train_ids: np.ndarray) -> np.ndarray:
    """(H,W) trainIds → (H,W,3) uint8 colours."""
    return TRAIN_COLORS[np.asarray(train_ids, dtype=np.int64).clip(0, 255)]


def colorize_label(label_ids: np.ndarray) -> np.ndarray:
    """(H,W) labelIds → (H,W,3) uint8 colours (the ``*_gtFine_color.png`` convention)."""
    return LABEL_COLORS[np.asarray(label_ids, dtype=np.int64).clip(0, 255)]


def label_name(label_id: int) -> str:
    """Human-readable class name of a labelId."""
    return id2label[int(label_id)].name
