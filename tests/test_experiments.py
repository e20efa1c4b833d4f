"""A whole table end to end on the tiny profile, and a table notebook executed by Papermill."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from reprolib.experiments import run_table
from reprolib.experiments.results import RESULT_COLUMNS
from reprolib.experiments.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table4(tmp_path_factory) -> tuple[pd.DataFrame, Path, Path]:
    tmp = tmp_path_factory.mktemp("t4")
    df = run_table("table4", profile="tiny", work_dir=tmp / "work", output_dir=tmp / "out", device="cpu",
                   wandb_mode="disabled")
    return df, tmp / "work", tmp / "out"


def test_table4_rows_and_provenance(table4) -> None:
    df, _, out = table4
    saved = pd.read_csv(out / "table4.csv")
    assert list(saved.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    variants = {v.name for v in TABLES["table4"].variants}
    assert variants <= set(saved["variant"])
    assert "full@tuned_on_reported" in set(saved["variant"])  # the original's tuning, shown beside ours
    assert set(saved["dataset"]) == {"fs_lost_and_found", "fs_static"}
    assert set(saved["metric"]) == {"ap", "fpr95", "auroc"}
    assert (saved["profile"] == "tiny").all() and saved["value"].between(0, 1).all()
    assert saved["config_hash"].str.len().eq(12).all() and saved["data_fingerprint"].astype(str).str.len().gt(0).all()
    # "w/o ensemble" evaluates the full model's raw output: same checkpoint, no extra training
    ck = saved.drop_duplicates("variant").set_index("variant")["checkpoint"]
    assert ck["no_ensemble"] == ck["full"] and ck["no_uncertainty"] != ck["full"]
    assert json.loads((out / "timings.json").read_text())["total_s"] > 0
    main = saved[~saved["variant"].str.contains("@")]
    ci = main[main["metric"] == "ap"]
    assert (ci["ap_ci_low"] <= ci["value"] + 1e-9).all() and (ci["value"] <= ci["ap_ci_high"] + 1e-9).all()
    run = Path(ck["full"])
    assert len(list((run / "predictions" / "fs_static").glob("*.png"))) == 4
    assert json.loads((run / "predictions" / "fs_static-timing.json").read_text())["seconds_per_image"] > 0


def test_rerun_reuses_finished_work(table4) -> None:
    df, work, out = table4
    again = run_table("table4", profile="tiny", work_dir=work, output_dir=out, device="cpu", wandb_mode="disabled")
    pd.testing.assert_frame_equal(df.drop(columns="commit"), again.drop(columns="commit"))
    timings = json.loads((out / "timings.json").read_text())
    assert not any(k.startswith("train ") and v > 5 for k, v in timings.items())


def test_notebook_runs_under_papermill(table4, tmp_path: Path) -> None:
    import papermill as pm

    _, work, _ = table4
    out_nb = tmp_path / "table4.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "table4.ipynb"), str(out_nb), kernel_name="python3",
                        parameters={"profile": "tiny", "work_dir": str(work), "output_dir": str(tmp_path / "res"),
                                    "device": "cpu", "wandb_mode": "disabled"},
                        request_save_on_cell_execute=True, progress_bar=False, cwd=str(ROOT))
    nb = nbformat.read(out_nb, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert (tmp_path / "res" / "table4.csv").is_file() and (tmp_path / "res" / "table4.png").is_file()
    html = "".join(str(o.get("data", {}).get("text/html", "")) for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "fs_lost_and_found" in html  # the comparison table was displayed
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert pngs >= 2  # the table's figure and the world's gallery, inline


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell() -> None:
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["table3", "table5", "table6", "table7", "table8", "figures", "figure3"])
def test_every_other_notebook_runs_under_papermill(name: str, table4, tmp_path: Path) -> None:
    """Each table notebook, smallest parameters: one seed, tiny profile, sharing the tiny world and backends."""
    import papermill as pm

    _, work, _ = table4
    out = tmp_path / name
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                        kernel_name="python3", parameters={"profile": "tiny", "work_dir": str(work), "output_dir": str(out),
                                                           "device": "cpu", "wandb_mode": "disabled"},
                        progress_bar=False, cwd=str(ROOT))
    rows = pd.read_csv(out / f"{name}.csv")
    assert {v.name for v in TABLES[name].variants} <= set(rows["variant"])
    assert (out / f"{name}.png").is_file()
