"""Table 2 (computational requirements): measured on this machine beside the report's figures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from reprolib.experiments.compute import REPORT_HARDWARE, REPORT_TABLE2, computational_requirements

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One work folder (world, backends) for this module's measurements: made once, not per test."""
    return tmp_path_factory.mktemp("table2-work")


def test_requirements_measured_beside_the_report(work: Path, tmp_path: Path, tf32_at_convolutions) -> None:
    df = computational_requirements(profile="tiny", work_dir=work, output_dir=tmp_path / "out",
                                    device="cpu", n_images=2, repeat=1)
    assert tf32_at_convolutions and not any(tf32_at_convolutions)  # timed in IEEE fp32 (no TF32 on an A100)
    assert list(df["quantity"]) == list(REPORT_TABLE2)
    assert list(df["report"]) == ["3 h in total", "2 h in total", "30 min", "9-10 GB", "2-3 GB", "63 ms"]
    ours = df.set_index("quantity")["ours"]
    for q in REPORT_TABLE2:
        if q != "peak GPU memory (training)":
            assert ours[q] > 0, q
    assert pd.isna(ours["peak GPU memory (training)"])  # CPU run: no GPU figure is invented
    assert "32-true" in df.set_index("quantity")["how"]["training time per epoch"]  # fp32 unless asked
    assert (df["profile"] == "tiny").all() and df["device"].str.len().gt(0).all()
    saved = json.loads((tmp_path / "out" / "table2.json").read_text())
    assert saved["report_hardware"] == REPORT_HARDWARE and saved["hardware"]["cpu"] and saved["size"] == [64, 128]
    assert pd.read_csv(tmp_path / "out" / "table2.csv")["quantity"].tolist() == list(REPORT_TABLE2)


def test_training_step_timed_at_the_asked_precision(work: Path, tmp_path: Path, monkeypatch) -> None:
    """fp32 unless asked, as training (it timed fp16-mixed on any GPU); a bad precision fails before any timing."""
    with pytest.raises(ValueError, match="precision must be one of"):
        computational_requirements(profile="tiny", work_dir=tmp_path / "w", device="cpu", precision="fp16")
    assert not (tmp_path / "w").exists()
    real, entered = torch.autocast, []

    def recording(device_type: str, dtype: torch.dtype | None = None, enabled: bool = True, **kw):  # noqa: ANN202
        entered.append((dtype, enabled))
        return real(device_type, dtype=dtype, enabled=enabled, **kw)

    monkeypatch.setattr(torch, "autocast", recording)
    df = computational_requirements(profile="tiny", work_dir=work, device="cpu", n_images=1, repeat=1,
                                    precision="bf16-mixed")
    assert "bf16-mixed" in df.set_index("quantity")["how"]["training time per epoch"]
    assert (torch.bfloat16, True) in entered  # the timed forward really ran under bf16 autocast


def test_make_table2_passes_only_what_it_uses() -> None:
    """`make table2` hands the notebook PRECISION and DATA, and says which variables it does not use."""
    out = subprocess.run(["make", "-n", "table2", "SEEDS=0,1", "PRECISION=bf16-mixed", "DATA=/d"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    cmd = next(line for line in out.splitlines() if "run_notebook.py notebooks/table2.ipynb" in line)
    assert "-r precision bf16-mixed" in cmd and "-r data_root /d" in cmd
    assert "seeds" not in cmd and "wandb_mode" not in cmd
    assert "table2: SEEDS not used" in out
    params = next(c.source for c in nbformat.read(ROOT / "notebooks" / "table2.ipynb", as_version=4).cells
                  if "parameters" in c.metadata.get("tags", []))
    assert all(f"{name} =" in params for name in ("profile", "work_dir", "output_dir", "data_root", "precision"))


def test_table2_notebook_has_parameters_and_takes_its_numbers_from_the_package() -> None:
    # (that it is what tools/make_notebooks.py writes: test_build.py's check of every notebook)
    nb = nbformat.read(ROOT / "notebooks" / "table2.ipynb", as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    src = "".join(c.source for c in nb.cells)
    assert "computational_requirements(" in src and "63 ms" not in src  # the numbers come from the package


def test_report_includes_table2(tmp_path: Path) -> None:
    from reprolib.report import build_report

    rows = [{"quantity": q, "report": r, "ours": (None if "GPU" in q else 1.5), "unit": "u", "how": "h",
             "profile": "demo", "device": "Test CPU_1"} for q, r in REPORT_TABLE2.items()]
    out = tmp_path / "results" / "table2"
    out.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(out / "table2.csv", index=False)
    written = build_report(tmp_path / "results", tmp_path / "report")
    tex = (tmp_path / "report" / "generated" / "table2.tex").read_text()
    assert tmp_path / "report" / "generated" / "table2.tex" in written
    assert "63 ms" in tex and "1.5" in tex and "Test CPU\\_1" in tex and "--" in tex
