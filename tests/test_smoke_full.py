"""`make smoke-full`'s code path at a reduced size: real DeepWV3Plus + CC-FPSE (random weights), the width-1.0
VGG16 network for one step, benchmark-resolution scoring, labelled rows and cost.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from reprolib.experiments.smoke import estimate, format_estimate, run_smoke, table_workload


def test_estimate_follows_report_table2() -> None:
    w = table_workload("table4")
    # 6 trained variants (full and the two w/o maps, each beside its report-selection twin; w/o ensemble reuses full's
    # models) × 5 seeds. A report-selection run starts at its twin's 11th validation (patience 10; `full` validates
    # once an epoch): 11 epochs a seed not trained. One processed split: void and no-void labels are two label
    # folders of it (pipeline.training_split)
    assert w == {"trainings": 6 * 5, "epochs": 50, "shared_epochs": 3 * 11 * 5, "precomputes": 1}
    assert table_workload("table4", report_selection=False) == {"trainings": 3 * 5, "epochs": 50, "shared_epochs": 0,
                                                                 "precomputes": 1}
    e = estimate(("table4", "table5"))
    assert e["table4"]["p100_gpu_h"] == pytest.approx(
        1 * 5 + (30 * 50 - 165) * 0.5 + (30 + 165) * 130 * 0.063 / 3600, abs=0.05)
    assert e["table4"]["p100_gpu_h_without_report_selection"] == pytest.approx(
        1 * 5 + 15 * 50 * 0.5 + 15 * 130 * 0.063 / 3600, abs=0.05)
    assert table_workload("table6")["precomputes"] == 2  # the original and the light combo
    assert table_workload("table7")["shared_epochs"] == 4 * 11  # 4 variants' twins, 1 seed
    assert e["table4"]["p100_sessions_12h"] == -(-e["table4"]["p100_gpu_h"] // 12)
    # grid + two learned ensembles and their twins, 1 seed
    assert e["table5"]["epochs"] == 25 and e["table5"]["trainings"] == 6
    lo, hi = e["table4"]["t4_gpu_h"]
    assert e["table4"]["p100_gpu_h"] < lo < hi


def test_the_summary_names_the_device_it_measured_on() -> None:
    # a dry run on a GPU said "measured here (CPU)"; the committed cost.json predates the GPU's name
    saved = json.loads((Path(__file__).parents[1] / "results" / "smoke-full" / "cost.json").read_text())
    assert "measured here (CPU):" in format_estimate(saved)
    on_gpu = {**saved, "machine": {**saved["machine"], "device": "cuda", "gpu": "NVIDIA H200"}}
    text = format_estimate(on_gpu)
    assert "measured here (cuda: NVIDIA H200):" in text and "(CPU)" not in text
    assert "torch threads 2, cuda: NVIDIA H200, load average" in text.splitlines()[0]


@pytest.mark.slow
def test_smoke_full_reduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    for var in ("REPROLIB_CKPT_DEEPWV3PLUS", "REPROLIB_CKPT_CCFPSE_GENERATOR", "REPROLIB_CKPT_CCFPSE_ENCODER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no ImageNet files: random, and said so
    out = tmp_path / "results"
    cost = run_smoke(out_dir=out, work_dir=tmp_path / "work", world={"size": (128, 256)}, size=(64, 128), steps=1,
                     progress=False)
    saved = json.loads((out / "cost.json").read_text())
    assert saved["stages"] == cost["stages"] and saved["profile"] == "smoke"
    stages = saved["stages"]
    assert {"world", "train (1 steps, batch 4)", "precompute train", "score fs_static (benchmark resolution)"} <= set(stages)
    assert all(s["seconds"] > 0 and s["peak_rss_gb"] > 0 for s in stages.values())
    assert saved["images"] == {"precomputed": 4 + 1 + 1 + 1, "scored": 2}
    assert saved["backend_weights"] == {"deepwv3plus": "random (seed 0)", "ccfpse-generator": "random (seed 0)",
                                        "ccfpse-encoder": "random (seed 0)"}
    assert set(saved["estimate"]) >= {"table3", "table4", "table8"}

    rows = pd.read_csv(out / "smoke-full.csv")
    assert len(rows) == 2 * 2 * 3  # 2 datasets × (no ensemble, fixed ensemble) × (ap, fpr95, auroc)
    assert set(rows["profile"]) == {"smoke"} and set(rows["combo"]) == {"original"}
    assert set(rows["eval_size"]) == {"128x256"}  # the benchmark resolution: the world's own size, not 64x128
    assert set(rows["imagenet_weights"]) == {"vgg16: random (seed 0); vgg19: random (seed 0)"}
    assert rows["backend_weights"].str.contains("deepwv3plus: random").all()
    assert rows["value"].between(0, 1).all()
    run = Path(rows["checkpoint"].iloc[0])
    assert run.is_file() and (run.parent / "best.ckpt").is_file()  # the real checkpointing
    printed = capsys.readouterr().out
    assert "P100" in printed and "table4" in printed and format_estimate(saved).splitlines()[-1] in printed
    assert saved["machine"]["device"] == "cpu" and saved["machine"]["gpu"] is None and "measured here (CPU)" in printed

    # a rerun measures again: by default from an empty smoke/ folder; resumed, the stages found done are marked and
    # kept out of the per-unit figures (they used to give ~0 s per image and per step as a measurement)
    resumed = run_smoke(out_dir=out, work_dir=tmp_path / "work", world={"size": (128, 256)}, size=(64, 128), steps=1,
                        progress=False, fresh=False)
    cached = {k for k, s in resumed["stages"].items() if s.get("cached")}
    assert cached == {"world", "generate training data", "precompute train", "precompute val",
                      "precompute fs_lost_and_found", "precompute fs_static", "train (1 steps, batch 4)"}
    assert resumed["per_unit"]["precompute_s_per_image"] is None and resumed["per_unit"]["train_s_per_step"] is None
    assert "found done: not measured" in format_estimate(resumed)
    pd.testing.assert_frame_equal(pd.read_csv(out / "smoke-full.csv").drop(columns="commit"),
                                  rows.drop(columns="commit"))
    marker = tmp_path / "work" / "smoke" / "processed" / "left-over"
    marker.write_text("x")

    class Started(Exception):
        pass

    def world_from_scratch(folder, **kw):  # noqa: ANN001, ANN003, ANN202
        assert not marker.exists() and not Path(folder).exists()  # the default starts from an empty smoke/
        raise Started

    monkeypatch.setattr("reprolib.experiments.smoke.generate_world", world_from_scratch)
    with pytest.raises(Started):
        run_smoke(out_dir=out, work_dir=tmp_path / "work", world={"size": (128, 256)}, size=(64, 128), steps=1,
                  progress=False)


def test_output_size_is_computed_from_measured_item_sizes(tmp_path: Path) -> None:
    """Nobody knew how big a `full` table's Kaggle output gets (Kaggle saves 20 GB a version). measure_item_sizes
    measures a small case written in the code's own formats; output_size's arithmetic is checked on it here."""
    import numpy as np
    import torch

    from reprolib.experiments.cost import DATA_IMAGES, output_size, output_sizes
    from reprolib.experiments.smoke import measure_item_sizes
    from reprolib.io import write_json, write_png

    rng = np.random.default_rng(0)
    gen, train, ev = tmp_path / "gen", tmp_path / "proc-train", tmp_path / "proc-fs"
    for split, n in ((gen, 2), (train, 2), (ev, 1)):
        for i in range(n):
            write_png(split / "original" / f"{i}.png", rng.integers(0, 256, (8, 16, 3), dtype=np.uint8))
            write_png(split / "labels" / f"{i}.png", np.zeros((8, 16), np.uint8))
        write_json(split / "done.json", {"key_hash": "x"})
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    weights = {"w": torch.zeros(1000)}
    torch.save({"state_dict": weights, "optimizer_states": [{"exp_avg": torch.zeros(1000)}], "epoch": 1},
               run / "checkpoints" / "last.ckpt")
    scores = {"dissimilarity": [rng.random((8, 16), dtype=np.float32)] * 2, "label": [np.zeros((8, 16), np.uint8)] * 2}
    # the same images at the processing size: smoother maps than the benchmark's upsampled ones compress otherwise
    processed = {"dissimilarity": [np.full((8, 16), 0.25, np.float32)] * 2, "label": [np.zeros((8, 16), np.uint8)] * 2}
    items = measure_item_sizes([gen], [train], [ev], run, scores, tmp_path / "scratch", world_size=(8, 16), size=(8, 16),
                               processed_scores=processed)
    assert not (tmp_path / "scratch").exists()
    assert set(items["generated"]) == {"original", "labels", "(files)"}
    assert items["generated"]["labels"] == sum(p.stat().st_size for p in (gen / "labels").iterdir()) / 2
    assert items["checkpoint"] == (run / "checkpoints" / "last.ckpt").stat().st_size > items["snapshot"] > 4000
    assert items["best_checkpoint"] is None and items["noise"]["rgb_native"] > 1024 * 2048 * 3  # random: no compression
    assert 0 < items["prediction_bytes_per_px"] < items["score_bytes_per_px"]
    assert 0 < items["score_bytes_per_px_processed"] < items["score_bytes_per_px"]  # constant maps: smaller
    assert 0 < items["prediction_bytes_per_px_processed"] < items["prediction_bytes_per_px"]

    e = output_size("table4", items)
    real, proc = 1024 * 2048 / (8 * 16), 256 * 512 / (8 * 16)  # pixel ratios to the measured 8×16
    n_cs, n_fs = DATA_IMAGES["cityscapes_train"] + DATA_IMAGES["cityscapes_val"], 130
    gb = {"generated": n_cs * sum(items["generated"].values()) * real,  # one combo
          "processed": n_cs * sum(items["processed_train"].values()) * proc + n_fs * sum(items["processed_eval"].values()) * proc,
          "checkpoints": 30 * 2 * items["checkpoint"],  # 6 trained variants × 5 seeds, last + best
          # Table 4 scores at the processing size: that size's own bytes per pixel
          "scores": 30 * n_fs * 256 * 512 * items["score_bytes_per_px_processed"],
          "predictions": 30 * n_fs * 256 * 512 * items["prediction_bytes_per_px_processed"],
          "snapshots": 11 * items["snapshot"] + items["checkpoint"]}  # patience 10 + 1, and the fork's
    assert e == pytest.approx({**{k: round(v / 1e9, 2) for k, v in gb.items()},
                               "final": round(sum(gb.values()) / 1e9 - gb["snapshots"] / 1e9, 2),
                               "peak": round(sum(gb.values()) / 1e9, 2),
                               "peak_kept": round((sum(gb.values()) - gb["generated"] - gb["predictions"]
                                                   - 29 * (items["checkpoint"] - items["snapshot"])) / 1e9, 2)},
                              abs=0.011)
    # at a width-1 checkpoint's sizes: the export slims 29 of the 30 runs' last.ckpt (one is still training at the peak)
    big = {**items, "checkpoint": 225e6, "snapshot": 75e6}
    slim = output_size("table4", big)
    assert slim["peak"] - slim["peak_kept"] == pytest.approx((gb["generated"] + gb["predictions"] + 29 * 150e6) / 1e9,
                                                             abs=0.021)
    # a cost.json of before has the benchmark's figures only: they stand for the processing size too
    older = {k: v for k, v in items.items() if not k.endswith("_processed")}
    assert output_size("table4", older)["scores"] == pytest.approx(30 * n_fs * 256 * 512 * items["score_bytes_per_px"] / 1e9,
                                                                   abs=0.006)
    # Table 3 scores at the benchmark resolution, 16 times the pixels; one seed, 2 runs
    assert output_size("table3", items)["scores"] == pytest.approx(2 * n_fs * 1024 * 2048 * items["score_bytes_per_px"] / 1e9,
                                                                   abs=0.006)
    bound = output_sizes(items, ("table4",))["table4"]["bound"]
    rgb_bound = items["noise"]["rgb_native"] + (items["generated"]["labels"] + items["generated"]["(files)"]) * real
    assert bound["generated"] == pytest.approx(n_cs * rgb_bound / 1e9, abs=0.006)  # RGB counted as incompressible
