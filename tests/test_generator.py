"""Training-data generator invariants (spec §4.5): relabelled instances, ROI, void semantics, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _make_cityscapes import make_cityscapes

from reprolib.data.generator import REPLACEMENT_LABEL_IDS, generate_training_data, relabel
from reprolib.io import read_png
from reprolib.labels import LABEL_TO_TRAIN


def _outputs(out: Path, stem: str, d: str) -> np.ndarray:
    return read_png(out / d / f"{stem}.png")


def test_mask_is_changed_pixels_inside_roi(tmp_path: Path) -> None:
    fids = make_cityscapes(tmp_path / "cs", n=3)
    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=1.0, seed=1, progress=False)
    for fid in fids:
        orig = read_png(tmp_path / "cs" / "gtFine" / "train" / fid.city / f"{fid.stem}_gtFine_labelIds.png")
        altered = _outputs(out, fid.stem, "semantic_labelId")
        labels = _outputs(out, fid.stem, "labels")
        ego = orig == 1
        assert np.all(labels[ego] == 255)
        changed = (altered != orig) & ~ego
        np.testing.assert_array_equal(labels[~ego] == 1, changed[~ego])
        assert changed.any()  # fraction 1.0 relabels every instance
        assert set(np.unique(altered[changed])) <= set(REPLACEMENT_LABEL_IDS)
        untouched = orig < 24  # non-instance classes keep their labels
        np.testing.assert_array_equal(altered[untouched], orig[untouched])
        np.testing.assert_array_equal(_outputs(out, fid.stem, "semantic"), LABEL_TO_TRAIN[altered])


def test_relabel_never_keeps_own_class() -> None:
    lab = np.full((8, 8), 26, np.uint8)
    inst = np.full((8, 8), 26000, np.int32)
    inst[:, 4:] = 26001
    for seed in range(30):
        altered, changes = relabel(lab, inst, np.random.default_rng(seed), fraction=1.0)
        assert len(changes) == 2 and all(new != iid // 1000 for iid, new in changes)
        assert not np.any(altered == 26)


def test_fraction_zero_gives_no_anomalies(tmp_path: Path) -> None:
    fids = make_cityscapes(tmp_path / "cs", n=2)
    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=0.0, progress=False)
    for fid in fids:
        assert not np.any(_outputs(out, fid.stem, "labels") == 1)


def test_void_variant_marks_void_and_keeps_instances(tmp_path: Path) -> None:
    fids = make_cityscapes(tmp_path / "cs", n=2)
    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=1.0, void=True, progress=False)
    for fid in fids:
        orig = read_png(tmp_path / "cs" / "gtFine" / "train" / fid.city / f"{fid.stem}_gtFine_labelIds.png")
        labels = _outputs(out, fid.stem, "labels")
        void_labels = _outputs(out, fid.stem, "labels_with_void_no_ego")
        assert np.all(void_labels[orig == 4] == 1)  # static void object → anomaly (the intended semantics)
        assert np.all(void_labels[orig == 1] == 255)  # ego vehicle stays ignored
        assert np.all(void_labels[labels == 1] == 1)  # instance anomalies kept (HEAD erased them)
        semantic = _outputs(out, fid.stem, "semantic")
        assert not np.any(semantic[orig == 4] == 255)  # void repainted with a known class


def test_dynamic_flag(tmp_path: Path) -> None:
    fids = make_cityscapes(tmp_path / "cs", n=1)
    lab_path = tmp_path / "cs" / "gtFine" / "train" / fids[0].city / f"{fids[0].stem}_gtFine_labelIds.png"
    from reprolib.io import write_png

    lab = read_png(lab_path)
    lab[2:5, 2:5] = 5
    write_png(lab_path, lab)
    out = generate_training_data(tmp_path / "cs", tmp_path / "gen", fraction=0.0, dynamic=True, progress=False)
    assert np.all(_outputs(out, fids[0].stem, "labels")[2:5, 2:5] == 1)


def test_deterministic_and_resumable(tmp_path: Path) -> None:
    make_cityscapes(tmp_path / "cs", n=3)
    a = generate_training_data(tmp_path / "cs", tmp_path / "a", seed=5, void=True, progress=False)
    b = generate_training_data(tmp_path / "cs", tmp_path / "b", seed=5, void=True, progress=False)
    c = generate_training_data(tmp_path / "cs", tmp_path / "c", seed=6, void=True, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if "labels" in str(f))
    victim = a / files[0]
    victim.unlink()
    (a / "generator.json").write_text(json.dumps({"complete": False}))
    generate_training_data(tmp_path / "cs", tmp_path / "a", seed=5, void=True, progress=False)
    assert victim.read_bytes() == (b / files[0]).read_bytes()
    assert not list(a.rglob("*.tmp"))
