"""notebooks/explore.ipynb and reprolib.explore: every widget action as a plain call, on a tiny trained Table 4."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from reprolib import explore as X
from reprolib.experiments import run_table
from reprolib.experiments.ensembling import SCORE_KEYS
from reprolib.metrics import anomaly_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    """The full model (grid ensemble) and the w/o-maps model of Table 4, tiny profile, one seed (~30 s)."""
    tmp = tmp_path_factory.mktemp("explore")
    df = run_table("table4", profile="tiny", work_dir=tmp / "work", output_dir=tmp / "results" / "table4",
                   device="cpu", wandb_mode="disabled", variants=["full", "no_uncertainty"])
    return tmp / "work", tmp / "results", df


def _rows(df: pd.DataFrame, variant: str, dataset: str, metric: str) -> pd.Series:
    return df[(df["variant"] == variant) & (df["dataset"] == dataset) & (df["metric"] == metric)].iloc[0]


def test_nothing_trained_says_what_to_run(tmp_path: Path, capsys) -> None:
    assert X.list_runs(tmp_path, "demo").empty
    assert X.default_selection(tmp_path, "demo") is None
    assert "make table4" in capsys.readouterr().out
    widget = X.explorer(tmp_path, "demo")
    assert "make table4" in widget.value


def test_listings_link_runs_tables_and_splits(tiny) -> None:
    work, results, df = tiny
    runs = X.list_runs(work, "tiny", results)
    assert len(runs) == 2 and set(runs["combo"]) == {"embedded"}
    full = runs[runs["maps"]].iloc[0]
    assert "table4:full" in full["used_by"] and "table4:no_ensemble" not in full["used_by"]
    assert Path(full["path"]).resolve() == Path(_rows(df, "full", "fs_static", "ap")["checkpoint"]).resolve().parents[1]
    assert runs[~runs["maps"]].iloc[0]["used_by"] == "table4:no_uncertainty"
    splits = X.list_splits(work, "tiny")
    assert set(splits["dataset"]) == {"fs_lost_and_found", "fs_static"} and (splits["images"] == 4).all()
    assert set(X.run_splits(full["path"])) == {"fs_lost_and_found", "fs_static"}
    sel = X.default_selection(work, "tiny", results_dir=results, dataset="fs_static", image=1)
    assert sel is not None and sel.run == Path(full["path"]) and sel.dataset == "fs_static" and sel.image == 1


@pytest.mark.parametrize("dataset", ["fs_lost_and_found", "fs_static"])
def test_table_weights_reproduce_the_tables_ensemble(tiny, dataset: str) -> None:
    """Per-image weights from the table's cross-fitted folds, applied to the cached scores, give its AP/FPR95."""
    work, results, df = tiny
    row = _rows(df, "full", dataset, "ap")
    run = Path(row["checkpoint"]).parents[1]  # rows name the checkpoint scored: <run>/checkpoints/best.ckpt
    split = X.run_splits(run)[dataset]
    s = X.split_scores(run, split, dataset)
    mixed = []
    for i in range(len(s["label"])):
        w = X.table_weights(run, dataset, i, results)
        mixed.append(sum(w.get(k, 0.0) * s[k][i] for k in SCORE_KEYS))
    halves = [anomaly_metrics(mixed[h::2], s["label"][h::2]) for h in (0, 1)]  # the row: the halves' mean
    m = {k: (halves[0][k] + halves[1][k]) / 2 for k in ("ap", "fpr95")}
    assert m["ap"] == pytest.approx(row["value"], abs=1e-12)
    assert m["fpr95"] == pytest.approx(_rows(df, "full", dataset, "fpr95")["value"], abs=1e-12)


def test_score_image_panels_weights_and_removed_maps(tiny, tf32_at_convolutions) -> None:
    work, results, _ = tiny
    sel = X.default_selection(work, "tiny", results_dir=results)
    r = X.score_image(sel.run, sel.split, sel.image, results_dir=results)
    assert tf32_at_convolutions and not any(tf32_at_convolutions)  # IEEE fp32 (no TF32 on an A100)
    h, w = r.label.shape
    assert (h, w) == (64, 128) and r.image.shape == r.synthesis.shape == r.errors.shape == (h, w, 3)
    assert set(np.unique(r.semantic)) <= set(range(19)) | {255}
    assert r.weights == {k: X.table_weights(sel.run, sel.dataset, sel.image, results).get(k, 0.0) for k in SCORE_KEYS}
    expected = r.weights["dissimilarity"] * r.p_anomaly + sum(r.weights[k] * r.maps[k] for k in ("entropy", "perceptual",
                                                                                               "distance"))
    np.testing.assert_allclose(r.score, expected, rtol=1e-6)
    # errors at this image's FPR95 threshold: ≥ 95 % of the anomaly found, false alarms = the image's FPR95
    found = (r.score >= r.threshold)[r.label == 1].mean()
    false_alarms = (r.errors == (230, 30, 30)).all(-1).sum() / (r.label == 0).sum()
    assert found >= 0.95 and false_alarms == pytest.approx(r.metrics["fpr95"], abs=1e-9)
    # by name as well as by index; a slider setting is just weights
    assert X.score_image(sel.run, sel.split, r.name, results_dir=results).metrics == r.metrics
    only_h = X.score_image(sel.run, sel.split, sel.image, weights={"entropy": 1.0})
    np.testing.assert_array_equal(only_h.score, only_h.maps["entropy"])
    # removing a map: zero at the network's input (its output moves) and zero weight in the ensemble
    no_v = X.score_image(sel.run, sel.split, sel.image, drop=["perceptual"], results_dir=results)
    assert no_v.weights["perceptual"] == 0 and not no_v.maps["perceptual"].any()
    assert not np.allclose(no_v.p_anomaly, r.p_anomaly)
    with pytest.raises(ValueError, match="cannot drop"):
        X.score_image(sel.run, sel.split, 0, drop=["semantic"])
    fig = X.image_figure(r)
    assert [ax.get_title() for ax in fig.axes] == list(X.PANELS)
    assert X.figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_image_table_finds_the_failures(tiny) -> None:
    work, results, _ = tiny
    sel = X.default_selection(work, "tiny", results_dir=results, dataset="fs_static")
    table = X.per_image_table(sel.run, sel.split, results_dir=results)
    assert len(table) == 4 and list(table["ap"]) == sorted(table["ap"])
    s = X.split_scores(sel.run, sel.split)
    worst = int(table.index[0])
    assert table.loc[worst, "anomaly_px"] == int((s["label"][worst] == 1).sum()) > 0
    r = X.score_image(sel.run, sel.split, worst, results_dir=results)
    # the table scores the cached (float16) maps, the panel re-runs the network: the same image, close numbers
    assert r.name == table.loc[worst, "name"] and r.metrics["ap"] == pytest.approx(table.loc[worst, "ap"], abs=0.02)


def test_what_moves_other_run_and_other_combo(tiny) -> None:
    work, results, _ = tiny
    sel = X.default_selection(work, "tiny", results_dir=results)
    moves = X.what_moves(sel, other_combo="embedded-light", work_dir=work, profile="tiny", results_dir=results)
    no_maps = X.list_runs(work, "tiny", results).query("not maps")["run"].iloc[0]
    assert list(moves.index) == ["as reported", "network p(anomaly) alone", "without H (entropy)",
                                 "without V (perceptual)", "without D (softmax distance)", f"run {no_maps}",
                                 "combo embedded-light"]
    assert moves.loc["as reported", "d_ap"] == 0 and moves[["ap", "fpr95"]].stack().between(0, 1).all()
    assert moves.loc["combo embedded-light", "ap"] != moves.loc["as reported", "ap"]
    light = X.list_splits(work, "tiny")
    assert {"embedded-light"} <= set(light["segmentation"])  # the other combo's split is now listed too


def test_explorer_controls_rescore_on_the_spot(tiny) -> None:
    work, results, _ = tiny
    box = X.explorer(work, "tiny", results)
    c, o = box.controls, box.outputs
    before = o["metrics"].value
    assert "AP" in before and o["picture"].value[:4] == b"\x89PNG" and "<table" in o["table"].value
    c["table_weights"].value = False
    for k in SCORE_KEYS:
        c[k].value = 0.0
    c["entropy"].value = 1.0
    assert "entr=1.00" in o["metrics"].value and "ΔAP" in o["metrics"].value
    c["drop_entropy"].value = True
    assert "without entropy" in o["metrics"].value
    c["row"].value = 2
    c["show_row"].click()
    assert c["image"].value == 2 and X.image_names(c["split"].value)[2] in o["metrics"].value
    # another segmentation/resynthesis combo: its images are prepared and the same image is scored through it
    name = c["image"].label
    c["combo"].value = "embedded-light"
    c["add_combo"].click()
    assert "embedded-light" in c["split"].label and c["image"].label == name and o["status"].value == ""
    other = next(v for _, v in c["run"].options if v != c["run"].value)
    c["run"].value = other
    assert Path(other).name in o["metrics"].value and o["status"].value == ""


def test_explore_notebook_runs_under_papermill(tiny, tmp_path: Path) -> None:
    import papermill as pm

    work, results, _ = tiny
    out = tmp_path / "explore.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "explore.ipynb"), str(out), kernel_name="python3",
                        parameters={"profile": "tiny", "work_dir": str(work), "results_dir": str(results)},
                        progress_bar=False, cwd=str(ROOT))
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    mimes = [m for o in outputs for m in o.get("data", {})]
    assert "application/vnd.jupyter.widget-view+json" in mimes  # the interactive panel
    assert mimes.count("image/png") >= 2  # the chosen image and the worst one
    html = "".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "without V (perceptual)" in html and "anomaly_px" in html and "table4:full" in html


def test_notebooks_are_generated_and_show_their_figures() -> None:
    """The committed notebooks are what tools/make_notebooks.py writes; tables show their PNGs and the gallery."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_notebooks as M
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert nbformat.writes(M.build_explore()).strip() == (ROOT / "notebooks" / "explore.ipynb").read_text().strip()
    for name, title in M.NOTEBOOKS.items():
        nb = M.build(name, title)
        assert nbformat.writes(nb).strip() == (ROOT / "notebooks" / f"{name}.ipynb").read_text().strip(), name
        source = "\n".join(c.source for c in nb.cells)
        assert "display(Image(filename=str(png)))" in source and "gallery.png" in source


def test_browser_check_in_lab(tiny, tmp_path: Path) -> None:
    """tools/lab_check.py: JupyterLab + headless Chromium run explore.ipynb; the panels render (screenshot)."""
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; .ci/run installs it as root)")
    work, results, _ = tiny
    shot = tmp_path / "explore.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "lab_check.py"), "--work-dir", str(work), "--results-dir", str(results),
         "--profile", "tiny", "--screenshot", str(shot), "--chromium", chromium, "--timeout", "240"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == [] and report["executed"] == report["code_cells"]
    assert report["images"] >= 3 and report["dropdowns"] >= 3 and report["sliders"] == 4
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
