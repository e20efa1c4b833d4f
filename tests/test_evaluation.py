"""Evaluation of a trained model on a Fishyscapes-format set: benchmark vs processing resolution, outputs,
and the command line with the real (published-architecture) light combo, ICNet + SPADE, on the embedded
world's official-format files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reprolib.__main__ import main
from reprolib.backends import get_combo, icnet, spade
from reprolib.experiments import evaluation as E
from reprolib.experiments.scoring import score_split
from reprolib.io import ReprolibDataError, read_png, save_torch
from reprolib.metrics import anomaly_metrics
from reprolib.precompute import NATIVE_LABEL_DIR, precompute
from reprolib.training.run import load_checkpoint, train
from reprolib.world import generate_world

sys.path.insert(0, str(Path(__file__).parent))
import _make_keyed  # noqa: E402
from _make_processed import make_processed_split  # noqa: E402
from _make_real_backends import layout  # noqa: E402

NATIVE = (64, 128)  # the world's (benchmark) resolution
PROCESSED = (32, 64)  # the processing size: smaller, as 256×512 is for the real 1024×2048 sets


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_world(tmp_path_factory.mktemp("w") / "world", seed=0, size=NATIVE, n_train=2, n_val=2,
                          n_laf=3, n_static=2, progress=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    split = make_processed_split(tmp / "train", 2, size=PROCESSED)
    cfg = {"train_split": str(split), "val_split": None, "label_dir": "labels", "size": list(PROCESSED),
           "max_steps": 1, "batch_size": 2, "model": {"width": 0.0625, "pretrained": False},
           "wandb_mode": "disabled", "seed": 0}
    return train(cfg, tmp / "run")


@pytest.fixture(scope="module")
def laf_split(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    seg, resyn = get_combo("embedded-light", untrained=True)
    ds = E.evaluation_dataset("fs_lost_and_found", world / "fishyscapes" / "LostAndFound")
    return precompute(ds, seg, resyn, tmp_path_factory.mktemp("processed"), size=PROCESSED, batch_size=2,
                      progress=False)


def test_precompute_keeps_native_labels(world: Path, laf_split: Path) -> None:
    masks = sorted((world / "fishyscapes" / "LostAndFound").glob("*_labels.png"))
    native = sorted((laf_split / NATIVE_LABEL_DIR).glob("*.png"))
    assert len(native) == len(masks) == 3
    for mask, stored in zip(masks, native, strict=True):
        assert np.array_equal(read_png(stored), read_png(mask))  # bit-identical to the benchmark's masks
    assert read_png(laf_split / "labels_with_ROI" / native[0].name).shape == PROCESSED


def test_benchmark_resolution_upsamples_scores(run_dir: Path, laf_split: Path, tmp_path: Path) -> None:
    model, _ = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    low = score_split(model, laf_split, size=PROCESSED, resolution="processed")
    high = score_split(model, laf_split, size=PROCESSED, resolution="benchmark")
    assert low["dissimilarity"][0].shape == PROCESSED and high["dissimilarity"][0].shape == NATIVE
    for i, label in enumerate(high["label"]):
        # as the original's Fishyscapes submission resized its score: a float PIL image, Pillow 7.0.0's default
        # filter (bicubic); torch's bilinear (what this did before) gives other benchmark-resolution numbers
        expected = np.asarray(Image.fromarray(low["dissimilarity"][i]).resize(NATIVE[::-1], Image.Resampling.BICUBIC))
        assert np.allclose(high["dissimilarity"][i], expected, atol=1e-6)
        bilinear = torch.nn.functional.interpolate(torch.from_numpy(low["dissimilarity"][i])[None, None],
                                                   size=NATIVE, mode="bilinear", align_corners=False)[0, 0]
        assert not np.allclose(high["dissimilarity"][i], bilinear.numpy(), atol=1e-4)
        assert high["entropy"][i].shape == NATIVE
        assert label.shape == NATIVE
    result = E.evaluate_checkpoint(run_dir, laf_split, tmp_path / "eval", resolution="benchmark")
    assert result["eval_size"] == list(NATIVE) and result["processing_size"] == list(PROCESSED)
    assert Path(result["checkpoint"]).name == "last.ckpt"  # a run dir without validation has no best.ckpt
    assert result["metrics"] == pytest.approx(anomaly_metrics(high["dissimilarity"], high["label"], ignore_index=255), abs=1e-3)
    assert result["seconds_per_image"] > 0 and result["precompute_seconds_per_image"] > 0
    assert len(list((tmp_path / "eval" / "predictions").glob("*.png"))) == 3
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["metrics"] == result["metrics"] and saved["resolution"] == "benchmark"
    with pytest.raises(ValueError, match="resolution must be one of"):
        score_split(model, laf_split, size=PROCESSED, resolution="full")


def test_evaluate_cross_fits_whole_sequences(run_dir: Path, laf_split: Path, tmp_path: Path, monkeypatch) -> None:
    # the world's FS L&F images are one sequence each; as if the first two were frames of one sequence
    assert E.split_sequences(laf_split) == [n[5:-7] for n in sorted(p.stem for p in (laf_split / "original").glob("*"))]
    monkeypatch.setattr(E, "split_sequences", lambda split: ["a", "a", "b"])
    result = E.evaluate_checkpoint(run_dir, laf_split, tmp_path / "eval", ensemble="grid", resolution="processed")
    assert result["ensemble_info"]["halves"] == {"images": [2, 1], "sequences": [1, 1]}


def test_split_without_native_labels_is_named(run_dir: Path, tmp_path: Path) -> None:
    old = make_processed_split(tmp_path / "old", 2, size=PROCESSED)  # a split without labels_native/
    model, _ = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    with pytest.raises(ReprolibDataError, match="labels_native.*recompute it"):
        score_split(model, old, size=PROCESSED, resolution="benchmark")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ReprolibDataError, match="bad.ckpt: not a readable checkpoint"):
        load_checkpoint(bad)


def test_cli_evaluate_light_combo_with_real_backends(world: Path, run_dir: Path, tmp_path: Path, capsys) -> None:
    """`python -m reprolib evaluate` from the Fishyscapes-format folder through ICNet + SPADE checkpoints."""
    ckpts = {"icnet": tmp_path / "icnet_final.pth", "spade-generator": tmp_path / "latest_net_G.pth"}
    save_torch(_make_keyed.keyed_state_dict(layout("icnet")), ckpts["icnet"])
    save_torch(_make_keyed.keyed_sn_svd(_make_keyed.keyed_state_dict(layout("spade-generator"))), ckpts["spade-generator"])
    out = tmp_path / "out"
    argv = ["evaluate", "--checkpoint", str(run_dir / "checkpoints" / "last.ckpt"),
            "--dataset", str(world / "fishyscapes" / "LostAndFound"), "--kind", "fs_lost_and_found",
            "--combo", "light", "--size", *map(str, PROCESSED), "--work-dir", str(tmp_path / "work"),
            "--ensemble", "fixed", "--out", str(out)] + [f"--ckpt={k}={v}" for k, v in ckpts.items()]
    assert main(argv) == 0
    captured = capsys.readouterr().out
    printed = json.loads(captured[captured.index("{"):])
    result = json.loads((out / "metrics.json").read_text())
    assert printed["metrics"] == result["metrics"]
    assert set(result["metrics"]) == {"ap", "fpr95", "auroc"} and result["eval_size"] == list(NATIVE)
    assert result["ensemble"] == "fixed" and result["n_images"] == 3
    split = Path(result["split"])
    key = json.loads((split / "key.json").read_text())
    assert key["segmentation"]["name"] == icnet.NAME and key["resynthesis"]["name"] == spade.SPADEResynthesis.name
    synth = read_png(next((split / "synthesis").glob("*.png")))
    assert synth.shape == (*PROCESSED, 3) and synth.std() > 5  # a real, non-constant SPADE image


def test_a_cuda_evaluation_split_is_fp32_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # it used to autocast the backends in fp16 whenever the device was CUDA: maps other than the tables' fp32 ones
    # (on an H200: 4.9 % of D's 8-bit values, 0.025 % of the labels) for the same set through `python -m reprolib
    # evaluate` or the explorer
    import reprolib.backends
    import reprolib.precompute

    calls: list[dict] = []
    monkeypatch.setattr(reprolib.backends, "get_combo", lambda combo, **kw: (f"seg on {kw['device']}", "resyn"))
    monkeypatch.setattr(reprolib.precompute, "precompute",
                        lambda dataset, seg, resyn, out, **kw: calls.append({"seg": seg, **kw}) or out / "split")
    E.evaluation_split("a dataset", "original", tmp_path, size=(8, 16), device="cuda:0")
    E.evaluation_split("a dataset", "original", tmp_path, size=(8, 16), device="cuda:0", amp=True)
    assert [c["amp"] for c in calls] == [False, True]
    assert calls[0]["seg"] == "seg on cuda:0" and calls[0]["size"] == (8, 16)
