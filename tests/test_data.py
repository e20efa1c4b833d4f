"""Loaders for the official formats and the processed split, on tiny trees written in those formats."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from _make_data import SIZE, make_cityscapes, make_fishyscapes, make_processed, npz_bytes
from cityscapesscripts.helpers.labels import labels as cs_labels
from natsort import natsorted
from PIL import Image

from reprolib.data import CityscapesDataset, LostAndFoundDataset, ProcessedSplit, StaticDataset
from reprolib.data import formats as F
from reprolib.data.fishyscapes import blend_static, load_overlay
from reprolib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, one_hot, resize_image, resize_labels
from reprolib.io import ReprolibDataError, png_bytes, write_bytes, write_png

# ---------------------------------------------------------------------------------------------- transforms


def test_nearest_resize_is_pils_nearest() -> None:
    rng = np.random.default_rng(0)
    for hin, win, hout, wout in ((64, 128, 32, 64), (20, 33, 37, 91), (1024, 2048, 256, 512), (37, 91, 20, 33)):
        ids = rng.integers(0, 60000, (hin, win)).astype(np.int32)
        pil = np.asarray(Image.fromarray(ids).resize((wout, hout), Image.Resampling.NEAREST))
        np.testing.assert_array_equal(resize_labels(ids, (hout, wout)), pil)
        rgb = rng.integers(0, 256, (hin, win, 3), dtype=np.uint8)
        pil = np.asarray(Image.fromarray(rgb).resize((wout, hout), Image.Resampling.NEAREST))
        np.testing.assert_array_equal(resize_image(rgb, (hout, wout), "nearest"), pil)
    with pytest.raises(ValueError, match="image_resize"):
        resize_image(rgb, (8, 8), "lanczos")


def test_one_hot_void_is_all_zero() -> None:
    ids = np.array([[0, 18, 255], [5, 19, 7]], np.uint8)
    oh = one_hot(ids)
    assert oh.shape == (19, 2, 3) and oh.dtype == torch.float32
    np.testing.assert_array_equal(oh.sum(0).numpy(), [[1, 1, 0], [1, 0, 1]])
    assert oh[18, 0, 1] == 1 and oh[5, 1, 0] == 1 and oh[7, 1, 2] == 1


# ---------------------------------------------------------------------------------------------- Cityscapes


def test_label_table_matches_cityscapesscripts(tmp_path: Path) -> None:
    # every labelId of the official table, written as one image without labelTrainIds.png → computed trainIds
    ids = sorted(lab.id for lab in cs_labels if lab.id >= 0)
    lab = np.repeat(np.array(ids, np.uint8)[None], 4, axis=0)
    fid = F.FrameId("tab", 0, 1)
    write_png(F.cityscapes_image_path(tmp_path, "val", fid), np.zeros((*lab.shape, 3), np.uint8))
    write_png(F.cityscapes_gt_path(tmp_path, "val", fid, "labelIds"), lab)
    write_png(F.cityscapes_gt_path(tmp_path, "val", fid, "instanceIds"), lab.astype(np.int32))
    item = CityscapesDataset(tmp_path, "val")[0]
    expected = {lab.id: (lab.trainId if 0 <= lab.trainId < 19 else 255) for lab in cs_labels if lab.id >= 0}
    got = dict(zip(item["label_ids"][0].tolist(), item["train_ids"][0].tolist(), strict=True))
    assert got == expected
    assert item["paths"]["train_ids"] == ""


def test_cityscapes_reads_back_what_was_written(tmp_path: Path) -> None:
    frames = make_cityscapes(tmp_path, "train", n=2)
    ds = CityscapesDataset(tmp_path, "train")
    assert len(ds) == 2 and [f.stem for f in ds.frames] == [fr.fid.stem for fr in frames]
    for i, fr in enumerate(frames):
        item = ds[i]
        assert item["name"] == fr.fid.stem and item["path"].endswith(f"{fr.fid.stem}_leftImg8bit.png")
        assert item["paths"]["train_ids"].endswith("_gtFine_labelTrainIds.png")
        assert item["image"].shape == (3, *SIZE) and item["image"].dtype == torch.float32
        np.testing.assert_array_equal((item["image"] * 255).round().byte().permute(1, 2, 0).numpy(), fr.image)
        np.testing.assert_array_equal(item["label_ids"].numpy(), fr.label_ids)
        np.testing.assert_array_equal(item["instance_ids"].numpy(), fr.instance_ids)
        assert item["instance_ids"].max() >= 26000 and item["label_ids"].dtype == torch.int64
    # without labelTrainIds files the same trainIds come from the official table
    for fr in frames:
        F.cityscapes_gt_path(tmp_path, "train", fr.fid, "labelTrainIds").unlink()
    for i in range(2):
        assert torch.equal(CityscapesDataset(tmp_path, "train")[i]["train_ids"], ds[i]["train_ids"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["label_ids"].shape == (2, *SIZE) and len(batch["name"]) == 2


def test_cityscapes_resize_policy(tmp_path: Path) -> None:
    frames = make_cityscapes(tmp_path, "train", n=1)
    small = CityscapesDataset(tmp_path, "train", size=(32, 64), image_resize="nearest")[0]
    native = CityscapesDataset(tmp_path, "train")[0]
    assert native["label_ids"].shape == SIZE  # evaluation default: native resolution
    np.testing.assert_array_equal(small["label_ids"].numpy(), resize_labels(frames[0].label_ids, (32, 64)))
    np.testing.assert_array_equal(small["instance_ids"].numpy(), resize_labels(frames[0].instance_ids, (32, 64)))
    # nearest RGB samples exactly the pixels the labels sample, so they stay aligned
    np.testing.assert_array_equal((small["image"] * 255).round().byte().permute(1, 2, 0).numpy(),
                                  resize_labels(frames[0].image, (32, 64)))
    bil = CityscapesDataset(tmp_path, "train", size=(32, 64))[0]["image"]
    assert bil.shape == (3, 32, 64) and not torch.equal(bil, small["image"])
    with pytest.raises(ValueError, match="size"):
        CityscapesDataset(tmp_path, "train", size=(0, 64))


def test_cityscapes_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ReprolibDataError, match="nowhere"):
        CityscapesDataset(tmp_path / "nowhere", "train")
    frames = make_cityscapes(tmp_path, "train", n=2)
    with pytest.raises(ReprolibDataError, match=r"leftImg8bit/val: Cityscapes image folder"):
        CityscapesDataset(tmp_path, "val")
    inst_path = F.cityscapes_gt_path(tmp_path, "train", frames[1].fid, "instanceIds")
    inst_path.unlink()
    with pytest.raises(ReprolibDataError, match=f"{inst_path.name}: label file missing"):
        CityscapesDataset(tmp_path, "train")
    write_png(inst_path, frames[1].instance_ids)
    ds = CityscapesDataset(tmp_path, "train")
    lab_path = F.cityscapes_gt_path(tmp_path, "train", frames[0].fid, "labelIds")
    bad = frames[0].label_ids.copy()
    bad[5, 5] = 77
    write_png(lab_path, bad)
    with pytest.raises(ReprolibDataError, match=rf"{lab_path.name}: label ids outside the Cityscapes table: \[77\]"):
        ds[0]
    write_png(lab_path, frames[0].label_ids[:32])
    with pytest.raises(ReprolibDataError, match=f"{lab_path.name}: size 128x32"):
        ds[0]
    write_png(lab_path, frames[0].label_ids)
    wrong = frames[0].instance_ids.copy()
    wrong[frames[0].instance_ids >= 26000] = 24000  # person ids on car pixels
    write_png(F.cityscapes_gt_path(tmp_path, "train", frames[0].fid, "instanceIds"), wrong)
    with pytest.raises(ReprolibDataError, match="instanceIds.png: .* disagrees"):
        ds[0]
    good = png_bytes(frames[1].image)
    img_path = F.cityscapes_image_path(tmp_path, "train", frames[1].fid)
    write_bytes(img_path, good[: len(good) // 3])
    with pytest.raises(ReprolibDataError, match=f"{img_path.name}: unreadable or truncated"):
        ds[1]


def test_cityscapes_instance_ids_below_1000_are_label_ids(tmp_path: Path) -> None:
    """``instanceIds`` store labelId·1000+k for instances and the labelId itself everywhere else (cityscapesScripts
    json2instanceImg). An 8-bit copy of the 16-bit file (ids clipped to 255) breaks that: read as it is, it has no
    instance at all, and the generator would write training data without a single anomaly, silently."""
    frames = make_cityscapes(tmp_path, "train", n=1)
    ds = CityscapesDataset(tmp_path, "train")
    ds.load_arrays(0)  # the official encoding passes: stuff, void boxes and a car group store their labelId
    inst_path = F.cityscapes_gt_path(tmp_path, "train", frames[0].fid, "instanceIds")
    write_png(inst_path, np.minimum(frames[0].instance_ids, 255).astype(np.uint8))
    assert Image.open(inst_path).mode == "L"
    with pytest.raises(ReprolibDataError, match=rf"{inst_path.name}: \d+ pixels whose instance id .* below 1000 .*"
                                                r"e\.g\. 255 on labelId 2[46]"):
        ds.load_arrays(0)


# ---------------------------------------------------------------------------------------------- Fishyscapes


def test_lost_and_found_reads_back(tmp_path: Path) -> None:
    fy = make_fishyscapes(tmp_path / "world")
    for ds in (LostAndFoundDataset(fy.fs_laf, laf_root=fy.lostandfound), LostAndFoundDataset(fy.fs_laf)):
        assert len(ds) == 2
        for i in range(2):
            item = ds[i]
            assert item["name"] == fy.laf_names[i]
            np.testing.assert_array_equal(item["label"].numpy(), fy.laf_masks[i])
            np.testing.assert_array_equal((item["image"] * 255).round().byte().permute(1, 2, 0).numpy(),
                                          fy.laf_images[i])
    small = LostAndFoundDataset(fy.fs_laf, size=(32, 64))[1]["label"]
    np.testing.assert_array_equal(small.numpy(), resize_labels(fy.laf_masks[1], (32, 64)))


def test_fingerprints_follow_content_not_file_times(tmp_path: Path) -> None:
    """The caches' and runs' names come from these keys: another clone, a copy or a Kaggle mount of the same files
    (other mtimes) must give the same key, a changed file another one. They hashed names, sizes and mtimes."""
    import os
    import shutil

    fy = make_fishyscapes(tmp_path / "world")
    make_cityscapes(fy.cityscapes, "train", n=2)

    def keys(world: Path) -> list[str]:
        return [LostAndFoundDataset(world / F.WORLD_FS_LAF, laf_root=world / F.WORLD_LOSTANDFOUND).fingerprint(),
                StaticDataset(world / F.WORLD_FS_STATIC, world / F.WORLD_CITYSCAPES).fingerprint(),
                CityscapesDataset(world / F.WORLD_CITYSCAPES, "train").fingerprint()]

    before = keys(fy.world)
    shutil.copytree(fy.world, tmp_path / "copy", copy_function=shutil.copy)  # new mtimes
    for f in (tmp_path / "copy").rglob("*"):
        os.utime(f, ns=(1, 1))
    assert keys(tmp_path / "copy") == before
    for i, folder in enumerate((F.WORLD_FS_LAF, F.WORLD_FS_STATIC)):  # one byte of a label: same size, same name
        label = sorted((tmp_path / "copy" / folder).glob("*_labels.png"))[0]
        mask = np.array(Image.open(label))
        mask[0, 0] = 1 - mask[0, 0] if mask[0, 0] < 2 else 0
        write_png(label, mask)
        assert keys(tmp_path / "copy")[i] != before[i]
    image = sorted((tmp_path / "copy" / F.WORLD_CITYSCAPES / "leftImg8bit" / "train").rglob("*.png"))[0]
    write_png(image, np.array(Image.open(image))[::-1].copy())
    assert keys(tmp_path / "copy")[2] != before[2]


def test_static_reconstruction_rule(tmp_path: Path) -> None:
    fy = make_fishyscapes(tmp_path / "world")
    ds = StaticDataset(fy.fs_static, fy.cityscapes)
    for i in range(2):
        item = ds[i]
        expected = np.clip(fy.static_bases[i].astype(np.int32) + fy.static_overlays[i], 0, 255).astype(np.uint8)
        got = (item["image"] * 255).round().byte().permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(got, expected)
        assert (got[15, 15] == (255, 0, np.clip(int(fy.static_bases[i][15, 15, 2]) + 17, 0, 255))).all()
        np.testing.assert_array_equal(item["label"].numpy(), fy.static_masks[i])
        assert item["name"] == fy.static_names[i]


def test_fishyscapes_bad_input(tmp_path: Path) -> None:
    fy = make_fishyscapes(tmp_path / "world")
    elsewhere = tmp_path / "copy" / "LostAndFound"
    elsewhere.mkdir(parents=True)
    for p in fy.fs_laf.glob("*.png"):
        (elsewhere / p.name).write_bytes(p.read_bytes())
    with pytest.raises(ReprolibDataError, match=r"laf_root is required \(.*--laf-root.*\)[^)]*$"):
        LostAndFoundDataset(elsewhere)
    # FS Static given as FS L&F (evaluate's --kind left at its default): the message says which it is
    with pytest.raises(ReprolibDataError, match=r"laf_root is required .*holds \*_rgb.npz overlays: FS Static, "
                                                r"--kind fs_static"):
        LostAndFoundDataset(fy.fs_static)
    laf_img = next(fy.lostandfound.rglob("*_leftImg8bit.png"))
    laf_img.rename(laf_img.with_suffix(".bak"))
    with pytest.raises(ReprolibDataError, match=f"no Lost & Found image {laf_img.name}"):
        LostAndFoundDataset(fy.fs_laf)
    mask_path = sorted(fy.fs_static.glob("*_labels.png"))[0]
    write_png(mask_path, np.full(SIZE, 7, np.uint8))
    with pytest.raises(ReprolibDataError, match=f"{mask_path.name}: Fishyscapes masks hold 0, 1 or 255; found \\[7\\]"):
        StaticDataset(fy.fs_static, fy.cityscapes)[0]
    write_png(mask_path, np.zeros((32, 64), np.uint8))
    with pytest.raises(ReprolibDataError, match=f"{mask_path.name}: size 64x32"):
        StaticDataset(fy.fs_static, fy.cityscapes)[0]
    overlay = sorted(fy.fs_static.glob("*_rgb.npz"))[1]
    write_bytes(overlay, npz_bytes(rgb=np.zeros((10, 10, 3), np.int16)))
    with pytest.raises(ReprolibDataError, match=f"{overlay.name}: overlay shape"):
        StaticDataset(fy.fs_static, fy.cityscapes)[1]
    write_bytes(overlay, npz_bytes(other=np.zeros((10, 10, 3), np.int16)))
    with pytest.raises(ReprolibDataError, match=f"{overlay.name}: overlay .npz has no 'rgb'"):
        StaticDataset(fy.fs_static, fy.cityscapes)[1]
    buf = io.BytesIO()
    np.save(buf, np.zeros((*SIZE, 3), np.int16))  # a plain .npy under the .npz name
    write_bytes(overlay, buf.getvalue())
    with pytest.raises(ReprolibDataError, match=f"{overlay.name}: not an .npz archive but a plain .npy array"):
        StaticDataset(fy.fs_static, fy.cityscapes)[1]
    # a float overlay is cast to integers first (truncated towards zero), as bdlb's overlay.astype(int)
    assert blend_static(np.array([100, 100, 90], np.uint8), np.array([-0.5, 0.4, -1.7])).tolist() == [100, 100, 89]
    overlay.unlink()
    with pytest.raises(ReprolibDataError, match=f"{overlay.name}: overlay for .* missing"):
        StaticDataset(fy.fs_static, fy.cityscapes)


def test_static_corrupt_overlay_names_the_file(tmp_path: Path) -> None:
    """A damaged ``*_rgb.npz`` (a broken download of ``fs_val_v3.zip``) is a ReprolibDataError naming the file,
    whatever byte is damaged: zipfile / zlib raise zlib.error, NotImplementedError or RuntimeError for some."""
    fy = make_fishyscapes(tmp_path / "world")
    overlay = sorted(fy.fs_static.glob("*_rgb.npz"))[0]
    good = npz_bytes(rgb=np.arange(4 * 8 * 3, dtype=np.int16).reshape(4, 8, 3) - 40)
    for offset in range(len(good)):
        bad = bytearray(good)
        bad[offset] ^= 0xFF
        write_bytes(overlay, bytes(bad))
        try:
            load_overlay(overlay)
        except ReprolibDataError as exc:
            assert exc.path == overlay
    # through the dataset: the compressed data of the real overlay damaged
    data = bytearray(npz_bytes(rgb=fy.static_overlays[0]))
    data[len(data) // 4] ^= 0xFF
    write_bytes(overlay, bytes(data))
    with pytest.raises(ReprolibDataError, match=f"{overlay.name}: unreadable overlay .npz"):
        StaticDataset(fy.fs_static, fy.cityscapes)[0]


# ---------------------------------------------------------------------------------------------- processed split


def test_processed_split_items(tmp_path: Path) -> None:
    written = make_processed(tmp_path / "p")
    raw = ProcessedSplit(tmp_path / "p", size=None, normalize=False)
    assert raw.names() == natsorted(written) == ["frame_1", "frame_2", "frame_10", "frame_11"]
    for i, stem in enumerate(raw.names()):
        item, w = raw[i], written[stem]
        assert item["name"] == stem
        np.testing.assert_array_equal((item["original"] * 255).round().byte().permute(1, 2, 0).numpy(), w["original"])
        np.testing.assert_array_equal(item["label"].numpy(), w["label"])
        for key, folder in (("entropy", "entropy"), ("distance", "logit_distance"), ("perceptual", "mae_features")):
            assert item[key].shape == (1, *SIZE)
            torch.testing.assert_close(item[key][0], torch.from_numpy(w[folder]).float() / 255.0)
        sem = item["semantic"]
        assert sem.shape == (19, *SIZE)
        void = w["semantic"] == 255
        assert sem[:, torch.from_numpy(void)].sum() == 0
        assert torch.all(sem.sum(0)[torch.from_numpy(~void)] == 1)
        np.testing.assert_array_equal(sem.argmax(0).numpy()[~void], w["semantic"][~void])
    norm = ProcessedSplit(tmp_path / "p", size=(32, 64))[0]
    assert norm["original"].shape == (3, 32, 64) and norm["label"].shape == (32, 64)
    x = torch.from_numpy(resize_labels(written["frame_1"]["synthesis"], (32, 64))).permute(2, 0, 1).float() / 255
    expected = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(norm["synthesis"], expected)
    assert "entropy" not in ProcessedSplit(tmp_path / "p", uncertainty=False)[0]


def test_processed_split_suffixes(tmp_path: Path) -> None:
    sfx = {"semantic": "_icnet", "synthesis": "_spade", "entropy": "_icnet", "logit_distance": "_icnet",
           "mae_features": "_spade"}
    written = make_processed(tmp_path / "p", ids=(1, 2), suffixes=sfx, label_dirs=("labels_with_ROI",))
    ds = ProcessedSplit(tmp_path / "p", label_dir="labels_with_ROI", size=None, normalize=False,
                        suffixes={"semantic": "_icnet", "synthesis": "_spade", "entropy": "_icnet",
                                  "distance": "_icnet", "perceptual": "_spade"})
    item = ds[1]
    np.testing.assert_array_equal((item["synthesis"] * 255).round().byte().permute(1, 2, 0).numpy(),
                                  written["frame_2"]["synthesis"])
    torch.testing.assert_close(item["perceptual"][0], torch.from_numpy(written["frame_2"]["mae_features"]) / 255.0)
    with pytest.raises(ReprolibDataError, match="semantic/ missing"):
        ProcessedSplit(tmp_path / "p", label_dir="labels_with_ROI")
    with pytest.raises(ValueError, match="unknown suffixes keys"):
        ProcessedSplit(tmp_path / "p", suffixes={"segmentation": "_icnet"})


def test_processed_split_flip_is_consistent_and_reproducible(tmp_path: Path) -> None:
    make_processed(tmp_path / "p", ids=tuple(range(8)), size=(16, 32))
    plain = ProcessedSplit(tmp_path / "p", size=None)
    ds = ProcessedSplit(tmp_path / "p", size=None, flip=True, seed=3)
    decisions = {}
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in reversed(range(8)):  # access order must not matter
            item, ref = ds[i], plain[i]
            flipped = ds.flip_decision(i)
            decisions[epoch, i] = flipped
            for key, value in item.items():
                if isinstance(value, torch.Tensor):  # every input mirrored together, or none
                    assert torch.equal(value, ref[key].flip(-1) if flipped else ref[key]), (key, epoch, i)
    assert set(decisions.values()) == {True, False}
    assert any(decisions[0, i] != decisions[1, i] for i in range(8))  # epochs differ
    again = ProcessedSplit(tmp_path / "p", size=None, flip=True, seed=3)  # e.g. a resumed run
    assert all(again.flip_decision(i, epoch) == d for (epoch, i), d in decisions.items())
    other = ProcessedSplit(tmp_path / "p", size=None, flip=True, seed=4)
    assert any(other.flip_decision(i, epoch) != d for (epoch, i), d in decisions.items())
    assert not any(plain.flip_decision(i) for i in range(8))
    ds.set_epoch(1)
    assert torch.equal(ds[-1]["label"], ds[7]["label"])
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)


def test_processed_split_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ReprolibDataError, match="processed split folder not found"):
        ProcessedSplit(tmp_path / "none")
    written = make_processed(tmp_path / "p", ids=(1, 2, 3))
    (tmp_path / "p" / "synthesis" / "frame_2.png").unlink()
    with pytest.raises(ReprolibDataError, match=r"different numbers of images \(original/: 3, semantic/: 3, "
                                                r"synthesis/: 2, labels/: 3"):
        ProcessedSplit(tmp_path / "p")
    with pytest.raises(ReprolibDataError, match="labels_with_void_no_ego/ missing"):
        ProcessedSplit(tmp_path / "p", label_dir="labels_with_void_no_ego")
    write_png(tmp_path / "p" / "synthesis" / "frame_2.png", written["frame_2"]["synthesis"])
    write_png(tmp_path / "p" / "labels" / "frame_3.png", np.full(SIZE, 2, np.uint8))
    with pytest.raises(ReprolibDataError, match=r"labels/frame_3.png: labels must be 0, 1 or 255; found \[2\]"):
        ProcessedSplit(tmp_path / "p")[2]
    write_png(tmp_path / "p" / "entropy" / "frame_1.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ReprolibDataError, match="entropy/frame_1.png: size 8x8"):
        ProcessedSplit(tmp_path / "p")[0]


def test_decoded_png_cache_reuses_copies_and_notices_rewrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import reprolib.data.processed as processed

    calls = []
    real = processed.read_png
    monkeypatch.setattr(processed, "read_png", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cache = processed.DecodedPNGs(max_bytes=3 * 16 * 16)
    paths = [tmp_path / f"m{i}.png" for i in range(4)]
    for i, p in enumerate(paths):
        write_png(p, np.full((16, 16), i, np.uint8))
    first = cache.read(paths[0], "L")
    first[:] = 99  # the caller owns what it gets
    again = cache.read(paths[0], "L")
    assert calls == [paths[0]] and int(again.max()) == 0
    # a rewrite (new size or mtime) is read again
    write_png(paths[0], np.full((16, 16), 7, np.uint8))
    os.utime(paths[0], ns=(1, 1))
    assert int(cache.read(paths[0], "L")[0, 0]) == 7 and len(calls) == 2
    # the byte budget evicts the least recently used
    for p in paths[1:]:
        cache.read(p, "L")
    assert cache.bytes <= cache.max_bytes and len(calls) == 5
    cache.read(paths[0], "L")
    assert len(calls) == 6  # evicted by the three after it
    with pytest.raises(ReprolibDataError, match="size 16x16"):  # a cached file is still checked
        cache.read(paths[3], "L", expect_size=(8, 8))
    with pytest.raises(ReprolibDataError, match="file not found"):
        cache.read(tmp_path / "none.png", "L")
    monkeypatch.setenv(processed.DECODE_CACHE_ENV, "lots")
    with pytest.raises(ValueError, match="REPROLIB_DECODE_CACHE_MB"):
        processed.DecodedPNGs.from_env()
    monkeypatch.setenv(processed.DECODE_CACHE_ENV, "0")
    off = processed.DecodedPNGs.from_env()
    off.read(paths[1], "L")
    assert off.bytes == 0
