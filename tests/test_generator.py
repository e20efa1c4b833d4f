"""Training-data generator (spec §4.5): relabelled instances, ROI, void semantics, determinism, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _make_data import make_cityscapes

from reprolib.data import formats as F
from reprolib.data.generator import (
    IMPLIED_ANOMALY_SHARE,
    OUTPUT_DIRS,
    REPLACEMENT_LABEL_IDS,
    VOID_ANOMALY_LABEL_IDS,
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
    roi = generate_training_data(tmp_path / "cs", tmp_path / "roi", fraction=1.0, seed=1, roi_ignore=True,
                                 progress=False)
    for fr in frames:
        stem, orig, inst = fr.fid.stem, fr.label_ids, fr.instance_ids
        altered = _read(out, "semantic_labelId", stem)
        labels = _read(out, "labels", stem)
        outside = np.isin(orig, OUTSIDE_ROI)
        # the original's files: 0/1 only (its class-weight code assumes two values), outside the ROI known
        np.testing.assert_array_equal(labels, (altered != orig).astype(np.uint8))
        assert outside.any() and set(np.unique(labels)) == {0, 1} and np.all(labels[outside] == 0)
        # roi_ignore: 255 outside the region of interest, the rest identical
        with_roi = _read(roi, "labels", stem)
        assert np.all(with_roi[outside] == 255)
        np.testing.assert_array_equal(with_roi[~outside], labels[~outside])
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
        anomalous_void = np.isin(orig, VOID_ANOMALY_LABEL_IDS)
        assert {0, 2, 3, 4} <= set(np.unique(orig[anomalous_void]))  # unlabeled, border, out of roi, static
        assert np.all(void_labels[anomalous_void] == 1) and np.all(void_labels[orig == 1] == 0)  # ego known
        assert np.all(void_labels[orig == 5] == labels[orig == 5])  # dynamic is not in the original's list
        assert np.all(void_labels[labels == 1] == 1)  # instance anomalies kept (the HEAD code erased them)
        np.testing.assert_array_equal(void_labels[~anomalous_void], labels[~anomalous_void])
        # void repainted with known classes before resynthesis; known pixels keep the plain variant's classes
        semantic, plain_sem = _read(out, "semantic", stem), _read(plain, "semantic", stem)
        assert not np.any(semantic == 255)
        known = plain_sem != 255
        np.testing.assert_array_equal(semantic[known], plain_sem[known])
        np.testing.assert_array_equal(LABEL_TO_TRAIN[_read(out, "semantic_labelId", stem)], semantic)


#: every Cityscapes labelId whose trainId is void (255), and the value labels_with_void_no_ego/ must hold there:
#: the original's intended list (unlabeled, rectification border, out of roi, static, caravan, trailer) → 1,
#: the ego vehicle and every other void class → 0 (known)
VOID_CLASS_EXPECTED = {0: 1, 1: 0, 2: 1, 3: 1, 4: 1, 5: 0, 6: 0, 9: 0, 10: 0, 14: 0, 15: 0, 16: 0, 18: 0, 29: 1, 30: 1}


def _void_class_scene(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """One hand-made Cityscapes frame: road + sky, one 8×8 box per void labelId, and one car instance."""
    h, w = 64, 128
    lab = np.full((h, w), 7, np.uint8)  # road
    lab[:16] = 23  # sky
    inst = lab.astype(np.int32)
    for k, lid in enumerate(VOID_CLASS_EXPECTED):
        y, x = 18 + 10 * (k // 12), 2 + 10 * (k % 12)
        lab[y:y + 8, x:x + 8] = lid
        inst[y:y + 8, x:x + 8] = lid * 1000 if lid in (29, 30) else lid  # caravan / trailer are instances
    lab[50:58, 2:20], inst[50:58, 2:20] = 26, 26000  # a car
    fid = F.FrameId("handmade", 0, 19)
    write_png(F.cityscapes_image_path(root, "train", fid), np.random.default_rng(0).integers(0, 256, (h, w, 3),
                                                                                              dtype=np.uint8))
    write_png(F.cityscapes_gt_path(root, "train", fid, "labelIds"), lab)
    write_png(F.cityscapes_gt_path(root, "train", fid, "instanceIds"), inst)
    return lab, inst


def test_void_labels_on_a_scene_with_every_void_class(tmp_path: Path, capsys) -> None:
    """The label values written for each void class, the fill of void semantics by a segmentation
    prediction, and the anomaly share printed beside the one the original's class weights imply."""
    lab, _ = _void_class_scene(tmp_path / "cs")
    assert set(VOID_CLASS_EXPECTED) == {int(i) for i in np.flatnonzero(LABEL_TO_TRAIN == 255) if i < 34}

    def predict_terrain(index: int, image: np.ndarray, train_ids: np.ndarray) -> np.ndarray:
        return np.full(train_ids.shape, 9, np.uint8)  # terrain (trainId 9, labelId 22)

    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=0.0, void=True,
                                 fill_void=predict_terrain, progress=True)
    stem = "handmade_000000_000019"
    void_labels, labels = _read(out, VOID_DIR, stem), _read(out, "labels", stem)
    for lid, expected in VOID_CLASS_EXPECTED.items():
        assert set(np.unique(void_labels[lab == lid])) == {expected}, f"labelId {lid}"
    assert set(np.unique(void_labels[np.isin(lab, (7, 23, 26))])) == {0}  # known classes (car not relabelled)
    assert set(np.unique(labels)) == {0} and set(np.unique(void_labels)) == {0, 1}  # 0/1 files, no 255
    # every void pixel of the semantic map (ego included) takes the segmentation's class, as the original
    void = LABEL_TO_TRAIN[lab] == 255
    assert np.all(_read(out, "semantic", stem)[void] == 9) and np.all(_read(out, "semantic_labelId", stem)[void] == 22)
    np.testing.assert_array_equal(_read(out, "semantic", stem)[~void], LABEL_TO_TRAIN[lab][~void])
    meta = read_json(out / "generator.json")
    share = float(np.isin(lab, VOID_ANOMALY_LABEL_IDS).mean())
    assert meta["anomaly_pixel_share_this_run"] == {"labels": 0.0, VOID_DIR: pytest.approx(share)}
    assert meta["implied_anomaly_share_original"][VOID_DIR] == pytest.approx(0.1125, abs=5e-4)
    assert IMPLIED_ANOMALY_SHARE["labels"] == pytest.approx(0.0424, abs=5e-4)
    assert f"{VOID_DIR}/ {share:.1%} (the original's class weights imply 11.2%)" in capsys.readouterr().out
    # a rerun finds every image there: one short line, not a share of zero images
    generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=0.0, void=True, fill_void=predict_terrain,
                           progress=True)
    rerun = capsys.readouterr().out
    assert f"all 1 images already generated in {out}" in rerun and "n/a" not in rerun
    # with roi_ignore, the ego vehicle, border and out-of-roi pixels are ignored in both folders instead
    roi = generate_training_data(tmp_path / "cs", tmp_path / "roi", fraction=0.0, void=True, roi_ignore=True,
                                 progress=False)
    outside = np.isin(lab, OUTSIDE_ROI)
    assert np.all(_read(roi, VOID_DIR, stem)[outside] == 255) and np.all(_read(roi, "labels", stem)[outside] == 255)
    np.testing.assert_array_equal(_read(roi, VOID_DIR, stem)[~outside], void_labels[~outside])


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


def test_stops_between_images_when_asked_and_resumes(tmp_path: Path) -> None:
    # ``before_work`` (a session's deadline) is asked before each image still to write; what it raises stops there
    make_cityscapes(tmp_path / "cs", n=3)
    clean = generate_training_data(tmp_path / "cs", tmp_path / "clean", seed=5, void=True, progress=False)
    asked = []

    def deadline_after_one_image() -> None:
        asked.append(1)
        if len(asked) == 2:
            raise TimeoutError("session over")

    with pytest.raises(TimeoutError):
        generate_training_data(tmp_path / "cs", tmp_path / "gen", seed=5, void=True, progress=False,
                               before_work=deadline_after_one_image)
    assert len(list((tmp_path / "gen" / "labels").glob("*.png"))) == 1
    assert read_json(tmp_path / "gen" / "generator.json")["complete"] is False
    generate_training_data(tmp_path / "cs", tmp_path / "gen", seed=5, void=True, progress=False,
                           before_work=lambda: asked.append(2))
    assert asked.count(2) == 2  # the two images left, not the one written
    files = sorted(p.relative_to(clean) for p in clean.rglob("*.png"))
    assert all((clean / f).read_bytes() == (tmp_path / "gen" / f).read_bytes() for f in files)


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


def test_another_input_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    """Generating from another data root into a folder that holds a generation kept its images (each present one
    skipped) and recorded the new root: DATA= switched between two copies reused the first one's data."""
    import json

    from reprolib.io import ReprolibDataError

    make_cityscapes(tmp_path / "a", n=2, seed=0)
    make_cityscapes(tmp_path / "b", n=3, seed=1)
    out = generate_training_data(tmp_path / "a", tmp_path / "gen", fraction=1.0, seed=1, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ReprolibDataError, match=r"generator.json: this folder was generated with other parameters "
                                                r"\(input: '\w+' → '\w+'\)"):
        generate_training_data(tmp_path / "b", tmp_path / "gen", fraction=1.0, seed=1, progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # a generator.json written before the input was recorded is taken as it is, and records it from then on
    meta = out / "generator.json"
    old = {k: v for k, v in json.loads(meta.read_text()).items() if k != "input"}
    meta.write_text(json.dumps(old))
    generate_training_data(tmp_path / "a", tmp_path / "gen", fraction=1.0, seed=1, progress=False)
    assert json.loads(meta.read_text())["input"] and all(p.read_bytes() == b for p, b in before.items()
                                                         if p.name != "generator.json")


def test_void_filled_by_other_weights_is_not_reused(tmp_path: Path) -> None:
    """A fill_void callable that names its weights (the pipeline's SegmentationFill does): a generation whose void
    pixels other weights filled is refused, not reused under the same backend name."""
    from reprolib.io import ReprolibDataError

    make_cityscapes(tmp_path / "cs", n=1)

    class Fill:
        __qualname__ = "segmentation:embedded"

        def __init__(self, weights: str) -> None:
            self.weights = weights

        def __call__(self, index, image, train_ids):  # noqa: ANN001, ANN204
            return np.full(train_ids.shape, 8, np.uint8)

    kw = dict(fraction=0.0, void=True, progress=False)
    generate_training_data(tmp_path / "cs", tmp_path / "gen", fill_void=Fill("aaaa"), **kw)
    generate_training_data(tmp_path / "cs", tmp_path / "gen", fill_void=Fill("aaaa"), **kw)  # the same: reused
    with pytest.raises(ReprolibDataError, match=r"fill_void_weights: 'aaaa' → 'bbbb'"):
        generate_training_data(tmp_path / "cs", tmp_path / "gen", fill_void=Fill("bbbb"), **kw)
