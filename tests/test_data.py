"""Loaders for the official formats, on small files written in those formats; bad input gives clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from _make_cityscapes import make_cityscapes
from _make_processed import make_processed_split

from reprolib.data import CityscapesDataset, LostAndFoundDataset, ProcessedSplit, StaticDataset
from reprolib.data import formats as F
from reprolib.io import ReprolibDataError, png_bytes, write_bytes, write_png
from reprolib.labels import LABEL_TO_TRAIN


def test_cityscapes_reads_back_what_was_written(tmp_path: Path) -> None:
    fids = make_cityscapes(tmp_path, "train", n=2)
    ds = CityscapesDataset(tmp_path, "train")
    assert len(ds) == 2 and ds[0]["name"] == fids[0].stem
    item = ds[1]
    lab = item["label_ids"].numpy()
    assert item["image"].shape == (3, 32, 64) and 0 <= item["image"].min() and item["image"].max() <= 1
    np.testing.assert_array_equal(item["train_ids"].numpy(), LABEL_TO_TRAIN[lab])
    assert set(np.unique(item["instance_ids"].numpy())) >= {26000, 26001, 24001}
    small = CityscapesDataset(tmp_path, "train", size=(16, 32))[0]
    assert small["label_ids"].shape == (16, 32) and set(small["label_ids"].unique().tolist()) <= set(np.unique(lab))


def test_cityscapes_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ReprolibDataError, match="leftImg8bit"):
        CityscapesDataset(tmp_path / "nowhere", "train")
    fids = make_cityscapes(tmp_path, "train", n=2)
    F.cityscapes_gt_path(tmp_path, "train", fids[1], "instanceIds").unlink()
    with pytest.raises(ReprolibDataError, match="instanceIds.png: label file missing"):
        CityscapesDataset(tmp_path, "train")
    make_cityscapes(tmp_path, "train", n=2)
    lab_path = F.cityscapes_gt_path(tmp_path, "train", fids[0], "labelIds")
    write_png(lab_path, np.full((32, 64), 77, np.uint8))
    with pytest.raises(ReprolibDataError, match="labelIds.png: label ids outside the Cityscapes table"):
        CityscapesDataset(tmp_path, "train")[0]
    write_png(lab_path, np.full((16, 64), 7, np.uint8))
    with pytest.raises(ReprolibDataError, match="differs from its image"):
        CityscapesDataset(tmp_path, "train")[0]
    good = png_bytes(np.zeros((32, 64, 3), np.uint8))
    write_bytes(F.cityscapes_image_path(tmp_path, "train", fids[0]), good[: len(good) // 3])
    with pytest.raises(ReprolibDataError, match="leftImg8bit.png: unreadable or truncated"):
        CityscapesDataset(tmp_path, "train")[0]


def _fishyscapes(tmp_path: Path) -> tuple[Path, Path, Path]:
    laf = tmp_path / "lostandfound"
    laf_id = "04_Maurener_Weg_8_000000_000030"
    img = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    write_png(laf / "leftImg8bit" / "test" / "04_Maurener_Weg_8" / f"{laf_id}_leftImg8bit.png", img)
    fs_laf = tmp_path / "fishyscapes" / "LostAndFound"
    mask = np.zeros((32, 64), np.uint8)
    mask[10:14, 10:14] = 1
    mask[:4] = 255
    write_png(fs_laf / F.fishyscapes_labels_name(0, laf_id), mask)
    cs = tmp_path / "cityscapes"
    fids = make_cityscapes(cs, "val", n=1)
    fs_static = tmp_path / "fishyscapes" / "Static"
    overlay = np.zeros((32, 64, 3), np.int16)
    overlay[5:9, 5:9] = (200, -100, 300)
    buf = io.BytesIO()
    np.savez_compressed(buf, rgb=overlay)
    write_bytes(fs_static / F.fishyscapes_overlay_name(0, fids[0].stem), buf.getvalue())
    smask = np.zeros((32, 64), np.uint8)
    smask[5:9, 5:9] = 1
    write_png(fs_static / F.fishyscapes_labels_name(0, fids[0].stem), smask)
    return fs_laf, fs_static, cs


def test_fishyscapes_loaders(tmp_path: Path) -> None:
    fs_laf, fs_static, cs = _fishyscapes(tmp_path)
    laf = LostAndFoundDataset(fs_laf, laf_root=tmp_path / "lostandfound")
    item = laf[0]
    assert item["name"] == "0000_04_Maurener_Weg_8_000000_000030"
    assert set(item["label"].unique().tolist()) == {0, 1, 255}
    static = StaticDataset(fs_static, cs)
    base = CityscapesDataset(cs, "val")[0]["image"]
    img = static[0]["image"]
    # official rebuild: clip(base + overlay, 0, 255)
    expected = (base * 255).round() + torch.tensor([200.0, -100.0, 300.0]).view(3, 1, 1)
    np.testing.assert_allclose((img[:, 5:9, 5:9] * 255).round(), expected[:, 5:9, 5:9].clamp(0, 255), atol=0.5)
    assert torch.equal(img[:, 20:, 20:], base[:, 20:, 20:])
    assert static[0]["label"][6, 6] == 1


def test_fishyscapes_bad_input(tmp_path: Path) -> None:
    fs_laf, fs_static, cs = _fishyscapes(tmp_path)
    with pytest.raises(ReprolibDataError, match="no Lost & Found image"):
        LostAndFoundDataset(fs_laf, laf_root=tmp_path / "elsewhere")
    write_png(next(fs_static.glob("*_labels.png")), np.full((32, 64), 7, np.uint8))
    with pytest.raises(ReprolibDataError, match="hold 0, 1 or 255"):
        StaticDataset(fs_static, cs)[0]
    next(fs_static.glob("*rgb.npz")).unlink()
    with pytest.raises(ReprolibDataError, match="overlay"):
        StaticDataset(fs_static, cs)


def test_processed_split_items_and_flip(tmp_path: Path) -> None:
    root = make_processed_split(tmp_path / "p", n=4)
    ds = ProcessedSplit(root, size=(32, 64))
    item = ds[0]
    assert item["original"].shape == (3, 32, 64) and item["semantic"].shape == (19, 32, 64)
    # void rows (255) are all-zero in the one-hot, every other pixel has exactly one class
    assert item["semantic"][:, 0].sum() == 0 and torch.all(item["semantic"][:, 5:].sum(0) == 1)
    assert item["entropy"].shape == (1, 32, 64) and 0 <= item["entropy"].min() and item["entropy"].max() <= 1
    flipped = ProcessedSplit(root, size=(32, 64), flip=True, seed=3)
    decisions = [torch.equal(flipped[i]["label"], ds[i]["label"].flip(-1)) for i in range(4)]
    again = ProcessedSplit(root, size=(32, 64), flip=True, seed=3)
    assert decisions == [torch.equal(again[i]["label"], ds[i]["label"].flip(-1)) for i in range(4)]
    for i in range(4):  # all inputs flipped together
        f = flipped[i]
        same = torch.equal(f["label"], ds[i]["label"])
        assert same == torch.equal(f["entropy"], ds[i]["entropy"]) or torch.equal(f["label"], f["label"].flip(-1))


def test_processed_split_count_mismatch(tmp_path: Path) -> None:
    root = make_processed_split(tmp_path / "p", n=3)
    next((root / "synthesis").glob("*.png")).unlink()
    with pytest.raises(ReprolibDataError, match="different numbers of images"):
        ProcessedSplit(root)
    with pytest.raises(ReprolibDataError, match="folder missing"):
        ProcessedSplit(root, label_dir="labels_with_ROI")
