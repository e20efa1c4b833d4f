"""The embedded world: official formats, label-table consistency, anomalies, determinism, resume, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reprolib.data import CityscapesDataset, LostAndFoundDataset, StaticDataset
from reprolib.data import formats as F
from reprolib.io import ReprolibDataError, read_png
from reprolib.labels import EGO_VEHICLE, LABEL_COLORS, LABEL_TO_TRAIN, VALID_LABEL_IDS
from reprolib.world import generate_world

KW = dict(size=(64, 128), n_train=3, n_val=2, n_laf=2, n_static=2, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("w") / "world", seed=0, **KW)


def _all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_cityscapes_tree_is_consistent_with_the_label_table(world: Path) -> None:
    cs = world / F.WORLD_CITYSCAPES
    for split, n in (("train", 3), ("val", 2)):
        ds = CityscapesDataset(cs, split)
        assert len(ds) == n
        for fid in ds.frames:
            lab = read_png(F.cityscapes_gt_path(cs, split, fid, "labelIds"), mode="L")
            inst = read_png(F.cityscapes_gt_path(cs, split, fid, "instanceIds"), mode="I")
            assert set(np.unique(lab)) <= VALID_LABEL_IDS and (lab == EGO_VEHICLE).any()
            np.testing.assert_array_equal(read_png(F.cityscapes_gt_path(cs, split, fid, "labelTrainIds")),
                                          LABEL_TO_TRAIN[lab])
            np.testing.assert_array_equal(read_png(F.cityscapes_gt_path(cs, split, fid, "color"), mode="RGB"),
                                          LABEL_COLORS[lab])
            is_inst = inst >= 1000
            np.testing.assert_array_equal(inst[is_inst] // 1000, lab[is_inst])
            np.testing.assert_array_equal(inst[~is_inst], lab[~is_inst])
    assert any((read_png(p, mode="I") >= 1000).any() for p in (cs / "gtFine").rglob("*_instanceIds.png"))


def test_fishyscapes_sets(world: Path) -> None:
    laf = LostAndFoundDataset(world / F.WORLD_FS_LAF)
    static = StaticDataset(world / F.WORLD_FS_STATIC, world / F.WORLD_CITYSCAPES)
    for ds in (laf, static):
        assert len(ds) == 2
        labels = [ds[i]["label"].numpy() for i in range(2)]
        assert all(set(np.unique(y)) <= {0, 1, 255} for y in labels)
        assert any((y == 1).any() for y in labels) and all((y == 0).any() for y in labels)
    # Static: the blended image differs from its Cityscapes base exactly where the overlay is non-zero
    for lab_path in sorted((world / F.WORLD_FS_STATIC).glob("*_labels.png")):
        fs_id, base_id = F.parse_fishyscapes_labels_name(lab_path.name)
        with np.load(world / F.WORLD_FS_STATIC / F.fishyscapes_overlay_name(int(fs_id), base_id)) as z:
            overlay = z["rgb"]
        base = read_png(F.cityscapes_image_path(world / F.WORLD_CITYSCAPES, "val", F.FrameId.parse(base_id)), mode="RGB")
        img = np.clip(base.astype(int) + overlay, 0, 255)
        np.testing.assert_array_equal((img != base).any(-1), (overlay != 0).any(-1))
        assert ((overlay != 0).any(-1)[read_png(lab_path) == 1]).all()


def test_same_seed_same_bytes_other_seed_differs(world: Path, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", seed=0, **KW)
    other = generate_world(tmp_path / "other", seed=1, **KW)
    files = _all_files(world)
    assert files == _all_files(again)
    assert all((world / f).read_bytes() == (again / f).read_bytes() for f in files if f.name != "gallery.png")
    assert any((world / f).read_bytes() != (other / f).read_bytes() for f in files if f.suffix == ".png")


def test_resume_restores_a_deleted_file_and_second_call_is_free(tmp_path: Path) -> None:
    root = generate_world(tmp_path / "w", seed=0, **KW)
    victim = next((root / F.WORLD_CITYSCAPES / "gtFine").rglob("*_labelIds.png"))
    original = victim.read_bytes()
    mtime = (root / "world.json").stat().st_mtime_ns
    generate_world(root, seed=0, **KW)  # complete: nothing to do
    assert (root / "world.json").stat().st_mtime_ns == mtime
    victim.unlink()
    (root / "world.json").unlink()
    generate_world(root, seed=0, **KW)
    assert victim.read_bytes() == original
    assert not list(root.rglob("*.tmp"))


def test_a_folder_holding_another_world_is_refused(tmp_path: Path) -> None:
    """Its images would have been kept (each one present is skipped) and world.json rewritten to claim the new
    settings: make world SEED=1 over data/world gave the seed-0 world labelled seed 1."""
    root = generate_world(tmp_path / "w", seed=0, **KW)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(ReprolibDataError, match=r"world.json: this folder holds a world made with other settings "
                                                r"\(seed: 0 → 1\); generate into another folder"):
        generate_world(root, seed=1, **KW)
    with pytest.raises(ReprolibDataError, match=r"size: \[.*\] → \[32, 64\]"):
        generate_world(root, seed=0, **{**KW, "size": (32, 64)})
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_cli_and_gallery(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "reprolib.world", "--out", str(out), "--size", "64x128", "--n-train", "2",
                    "--n-val", "2", "--n-laf", "1", "--n-static", "1"], check=True, capture_output=True)
    gallery = read_png(out / "gallery.png", mode="RGB")
    assert gallery.shape[0] > 64 * 3 and gallery.std() > 10
    bad = subprocess.run([sys.executable, "-m", "reprolib.world", "--out", str(out), "--size", "64by128"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "size must look like 256x512" in bad.stderr


def test_cli_counts_default_consistently(tmp_path: Path) -> None:
    """`--n-val 2` alone used to die (the Static count defaulted to 30 > 2): it now follows --n-val."""
    out = tmp_path / "small"
    run = subprocess.run([sys.executable, "-m", "reprolib.world", "--out", str(out), "--size", "16x32", "--n-train", "1",
                          "--n-val", "2", "--n-laf", "0"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    meta = json.loads((out / "world.json").read_text())
    assert (meta["n_val"], meta["n_static"], meta["n_laf"]) == (2, 2, 0)
    assert len(list((out / F.WORLD_FS_STATIC).glob("*_labels.png"))) == 2
    with pytest.raises(ValueError, match="n_train: every image count is 0"):
        generate_world(tmp_path / "empty", n_train=0, n_val=0, n_laf=0, n_static=0, progress=False)
    with pytest.raises(ValueError, match="n_laf: must be a whole number ≥ 0, got -1"):
        generate_world(tmp_path / "neg", n_laf=-1, progress=False)
    with pytest.raises(ValueError, match=r"size: must be \(height, width\) with both ≥ 1"):
        generate_world(tmp_path / "flat", size=(0, 128), progress=False)
    assert not (tmp_path / "empty").exists() and not (tmp_path / "neg").exists() and not (tmp_path / "flat").exists()


# SIGKILL itself just before the N-th rename (inside atomic_write: its temp file written, not yet renamed)
_KILL_AT_RENAME = """
import os, sys
from reprolib.world import generate_world
n, real, count = int(sys.argv[2]), os.replace, [0]
def replace(src, dst):
    count[0] += 1
    if count[0] == n:
        os.kill(os.getpid(), 9)
    real(src, dst)
os.replace = replace
generate_world(sys.argv[1], seed=0, size=(16, 32), n_train=2, n_val=2, n_laf=1, n_static=1, progress=False)
"""


@pytest.mark.parametrize("kill_at", [3, 23])  # a Cityscapes label PNG; the Fishyscapes Static overlay (npz)
def test_world_killed_mid_write_resumes_to_the_same_bytes_and_world_json(tmp_path: Path, kill_at: int) -> None:
    """A run killed inside a write leaves a temp file beside the file it was writing; the rerun finishes the
    world, and its world.json (whose fingerprint hashes the world's files) is the uninterrupted run's: the
    fingerprint used to hash the leftover temp file too."""
    kw = dict(seed=0, size=(16, 32), n_train=2, n_val=2, n_laf=1, n_static=1, progress=False)
    reference = generate_world(tmp_path / "ref", **kw)
    root = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, str(root), str(kill_at)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert list(root.rglob("*.tmp")) and not (root / "world.json").exists()
    generate_world(root, **kw)
    assert (root / "world.json").read_bytes() == (reference / "world.json").read_bytes()
    files = [f for f in _all_files(reference) if f.name != "gallery.png"]
    assert all((root / f).read_bytes() == (reference / f).read_bytes() for f in files)
