"""Training-data generator (spec §4.5): relabelled instances, ROI, void semantics, determinism, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _make_data import make_cityscapes

from reprolib.data import formats as F
from reprolib.data.generator import (
    OUTPUT_DIRS,
    REPLACEMENT_LABEL_IDS,
    VOID_DIR,
    fill_void_nearest,
    generate_training_data,
    main,
    relabel,
)
from reprolib.io import ReprolibDataError, read_json, read_png, write_png
from reprolib.labels import LABEL_TO_TRAIN

OUTSIDE_ROI = (1, 2, 3)  # ego vehicle, rectification border, out of roi


def _read(out: Path, d: str, stem: str) -> np.ndarray:
    return read_png(out / d / f"{stem}.png")


def _instances(inst: np.ndarray) -> list[int]:
    return np.unique(inst[inst >= 1000]).tolist()


def test_mask_is_changed_pixels_inside_roi(tmp_path: Path) -> None:
    frames = make_cityscapes(tmp_path / "cs", n=3)
    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=1.0, seed=1, progress=False)
    for fr in frames:
        stem, orig, inst = fr.fid.stem, fr.label_ids, fr.instance_ids
        altered = _read(out, "semantic_labelId", stem)
        labels = _read(out, "labels", stem)
        outside = np.isin(orig, OUTSIDE_ROI)
        assert outside.any() and np.all(labels[outside] == 255) and (labels[orig == 1] == 255).all()
        np.testing.assert_array_equal(labels[~outside] == 1, (altered != orig)[~outside])
        assert set(np.unique(labels[~outside])) == {0, 1}
        for iid in _instances(inst):  # fraction 1: every instance relabelled, as a whole, never to its own id
            new = np.unique(altered[inst == iid])
            assert len(new) == 1 and new[0] in REPLACEMENT_LABEL_IDS and new[0] != iid // 1000
        np.testing.assert_array_equal(altered[inst < 1000], orig[inst < 1000])  # car group, stuff, void untouched
        np.testing.assert_array_equal(_read(out, "semantic", stem), LABEL_TO_TRAIN[altered])
        np.testing.assert_array_equal(_read(out, "instance", stem), inst)
        np.testing.assert_array_equal(_read(out, "original", stem), fr.image)
    meta = read_json(out / "generator.json")
    assert meta["complete"] and meta["fraction"] == 1.0 and meta["images"] == 3


def test_relabel_draws_from_weighted_list_never_own_id() -> None:
    lab = np.full((4, 40), 26, np.uint8)
    inst = np.zeros((4, 40), np.int32)
    for k in range(10):
        inst[:, 4 * k:4 * k + 4] = 26000 + k
    lab[:, 20:] = 24
    inst[:, 20:] += 24000 - 26000
    new_ids = []
    for seed in range(40):
        altered, changes = relabel(lab, inst, np.random.default_rng(seed), fraction=0.5)
        assert len(changes) == 5  # floor(0.5 · 10)
        for iid, new in changes:
            assert new != iid // 1000 and np.all(altered[inst == iid] == new)
            new_ids.append(new)
        unchanged = ~np.isin(inst, [iid for iid, _ in changes])
        np.testing.assert_array_equal(altered[unchanged], lab[unchanged])
    assert set(new_ids) <= set(REPLACEMENT_LABEL_IDS) and len(set(new_ids)) > 5
    # the weighted list favours car: for person instances car (7 of 25 entries) is the most common draw
    counts = {v: new_ids.count(v) for v in set(new_ids)}
    assert max(counts, key=counts.get) == 26
    # default: n = floor(U · N) with U ~ Uniform(0, 1) drawn first from the image's generator
    for seed in range(10):
        u = np.random.default_rng(seed).uniform()
        _, changes = relabel(lab, inst, np.random.default_rng(seed))
        assert len(changes) == int(np.floor(u * 10))


def test_fraction_zero_gives_no_anomalies(tmp_path: Path) -> None:
    frames = make_cityscapes(tmp_path / "cs", n=2)
    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=0.0, progress=False)
    for fr in frames:
        assert not np.any(_read(out, "labels", fr.fid.stem) == 1)
        np.testing.assert_array_equal(_read(out, "semantic_labelId", fr.fid.stem), fr.label_ids)


def test_void_variant_marks_void_and_keeps_instances(tmp_path: Path) -> None:
    frames = make_cityscapes(tmp_path / "cs", n=2)
    plain = generate_training_data(tmp_path / "cs", tmp_path / "plain", fraction=1.0, progress=False)
    out = generate_training_data(tmp_path / "cs", tmp_path / "void", fraction=1.0, void=True, progress=False)
    for fr in frames:
        stem, orig = fr.fid.stem, fr.label_ids
        labels = _read(out, "labels", stem)
        np.testing.assert_array_equal(labels, _read(plain, "labels", stem))
        void_labels = _read(out, VOID_DIR, stem)
        outside = np.isin(orig, OUTSIDE_ROI)
        void = (LABEL_TO_TRAIN[orig] == 255) & ~outside
        assert {0, 4, 5} <= set(np.unique(orig[void]))  # unlabeled, static, dynamic boxes are void
        assert np.all(void_labels[void] == 1) and np.all(void_labels[outside] == 255)
        assert np.all(void_labels[labels == 1] == 1)  # instance anomalies kept (the HEAD code erased them)
        np.testing.assert_array_equal(void_labels[~void & ~outside], labels[~void & ~outside])
        # void repainted with known classes before resynthesis; known pixels keep the plain variant's classes
        semantic, plain_sem = _read(out, "semantic", stem), _read(plain, "semantic", stem)
        assert not np.any(semantic == 255)
        known = plain_sem != 255
        np.testing.assert_array_equal(semantic[known], plain_sem[known])
        np.testing.assert_array_equal(LABEL_TO_TRAIN[_read(out, "semantic_labelId", stem)], semantic)


def test_void_fill_callback(tmp_path: Path) -> None:
    frames = make_cityscapes(tmp_path / "cs", n=1)
    calls = []

    def predict_sidewalk(index: int, image: np.ndarray, train_ids: np.ndarray) -> np.ndarray:
        calls.append(index)
        assert image.shape == (*train_ids.shape, 3)
        pred = np.full(train_ids.shape, 1, np.uint8)  # sidewalk
        pred[:, :64] = 255  # no opinion on the left half: nearest known class there
        return pred

    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=0.0, void=True,
                                 fill_void=predict_sidewalk, progress=False)
    stem, orig = frames[0].fid.stem, frames[0].label_ids
    semantic = _read(out, "semantic", stem)
    void = LABEL_TO_TRAIN[orig] == 255
    assert calls == [0]
    assert np.all(semantic[void] != 255)
    right = void.copy()
    right[:, :64] = False
    assert np.all(semantic[right] == 1) and np.all(_read(out, "semantic_labelId", stem)[right] == 8)
    left = void.copy()
    left[:, 64:] = False
    partly = LABEL_TO_TRAIN[orig]
    partly[right] = 1  # what the callback filled; the rest takes the nearest known class, the new ones included
    np.testing.assert_array_equal(semantic[left], fill_void_nearest(partly)[left])


def test_fill_void_nearest_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 19, (12, 16)).astype(np.uint8)
    ids[rng.random((12, 16)) < 0.6] = 255
    filled = fill_void_nearest(ids)
    known = np.argwhere(ids != 255)
    for y, x in np.argwhere(ids == 255):
        d = ((known - (y, x)) ** 2).sum(1)
        nearest = {int(ids[tuple(k)]) for k in known[d == d.min()]}
        assert int(filled[y, x]) in nearest
    np.testing.assert_array_equal(filled[ids != 255], ids[ids != 255])


def test_dynamic_flag(tmp_path: Path) -> None:
    frames = make_cityscapes(tmp_path / "cs", n=1)
    stem, dyn = frames[0].fid.stem, frames[0].label_ids == 5
    assert dyn.any()
    on = generate_training_data(tmp_path / "cs", tmp_path / "on", fraction=0.0, dynamic=True, progress=False)
    off = generate_training_data(tmp_path / "cs", tmp_path / "off", fraction=0.0, progress=False)
    assert np.all(_read(on, "labels", stem)[dyn] == 1) and np.all(_read(off, "labels", stem)[dyn] == 0)
    np.testing.assert_array_equal(_read(on, "labels", stem)[~dyn], _read(off, "labels", stem)[~dyn])


def test_deterministic_resumable_and_cli(tmp_path: Path) -> None:
    make_cityscapes(tmp_path / "cs", n=3)
    a = generate_training_data(tmp_path / "cs", tmp_path / "a", seed=5, void=True, progress=False)
    b = main(["--cityscapes", str(tmp_path / "cs"), "--out", str(tmp_path / "b"), "--seed", "5", "--void",
              "--no-progress"])
    c = generate_training_data(tmp_path / "cs", tmp_path / "c", seed=6, void=True, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 3 * (len(OUTPUT_DIRS) + 1)
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.parts[0] == "labels")
    victim = a / "semantic" / files[0].name
    before = {f: (a / f).stat().st_mtime_ns for f in files}
    victim.unlink()
    generate_training_data(tmp_path / "cs", tmp_path / "a", seed=5, void=True, progress=False)
    assert victim.read_bytes() == (b / "semantic" / files[0].name).read_bytes()
    # the victim's image is regenerated as a whole (same bytes); every other image is skipped
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert all((a / f).stat().st_mtime_ns == t for f, t in before.items() if f.name != victim.name)
    assert not list(a.rglob("*.tmp"))
    with pytest.raises(ReprolibDataError, match=r"generator.json: .*other parameters \(seed: 5 → 7\)"):
        generate_training_data(tmp_path / "cs", tmp_path / "a", seed=7, void=True, progress=False)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ReprolibDataError, match="nowhere"):
        generate_training_data(tmp_path / "nowhere", tmp_path / "gen", progress=False)
    frames = make_cityscapes(tmp_path / "cs", n=2)
    with pytest.raises(ValueError, match="fraction"):
        generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=1.5, progress=False)
    lab_path = F.cityscapes_gt_path(tmp_path / "cs", "train", frames[1].fid, "labelIds")
    bad = frames[1].label_ids.copy()
    bad[0, 5] = 40
    write_png(lab_path, bad)
    with pytest.raises(ReprolibDataError, match=rf"{lab_path.name}: label ids outside the Cityscapes table: \[40\]"):
        generate_training_data(tmp_path / "cs", tmp_path / "gen", progress=False)
    assert (tmp_path / "gen" / "labels" / f"{frames[0].fid.stem}.png").is_file()  # earlier image kept for resume
