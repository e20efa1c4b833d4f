"""The command line: train from a shipped YAML with overrides, then evaluate the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from _make_processed import make_processed_split

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_parse() -> None:
    for path in (ROOT / "reprolib" / "configs").glob("*.yaml"):
        cfg = yaml.safe_load(path.read_text())
        assert "lr" in cfg and "model" in cfg, path


def test_table_help_names_the_tables_it_runs(capsys) -> None:
    # `table table2` is refused (Table 2 is make table2), so the help lists what run_table takes, and says so
    import pytest

    from reprolib.__main__ import TABLE_NAMES, main
    from reprolib.experiments.tables import TABLES

    assert set(TABLE_NAMES) == set(TABLES) and "table2" not in TABLES
    with pytest.raises(SystemExit):
        main(["table", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in TABLE_NAMES) and "Table 2 is make table2" in text


def test_train_then_evaluate(tmp_path: Path) -> None:
    train_split = make_processed_split(tmp_path / "train", 4, label_dirs=("labels", "labels_with_void_no_ego"))
    val_split = make_processed_split(tmp_path / "val", 2, seed=1, label_dirs=("labels", "labels_with_void_no_ego"))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "reprolib", "train", "--config", str(ROOT / "reprolib" / "configs" / "demo.yaml"),
           "--set", f"train_split={train_split}", "--set", f"val_split={val_split}", "--set", "size=[64,128]",
           "--set", "max_steps=2", "--set", "batch_size=2", "--set", "model.width=0.0625", "--set", "wandb_mode=disabled",
           "--run-dir", str(run)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    assert json.loads((run / "done.json").read_text())["global_step"] == 2
    out = subprocess.run([sys.executable, "-m", "reprolib", "evaluate", "--run-dir", str(run), "--split", str(val_split),
                          "--resolution", "processed"], check=True, capture_output=True, text=True, cwd=tmp_path)
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert set(result["metrics"]) == {"ap", "fpr95", "auroc"} and result["eval_size"] == [64, 128]
    assert (run / "evaluation" / "val-processed-none" / "scores.npz").is_file()
    # a split made without benchmark-resolution labels: a one-line error naming the folder, no traceback
    bad_eval = subprocess.run([sys.executable, "-m", "reprolib", "evaluate", "--run-dir", str(run), "--split",
                               str(val_split)], capture_output=True, text=True, cwd=tmp_path)
    assert bad_eval.returncode != 0 and "labels_native" in bad_eval.stderr and "Traceback" not in bad_eval.stderr
    bad = subprocess.run([sys.executable, "-m", "reprolib", "train", "--config", str(tmp_path / "nope.yaml"),
                          "--run-dir", str(run)], capture_output=True, text=True)
    assert bad.returncode != 0 and "nope.yaml: config file not found" in bad.stderr


def test_train_refuses_a_width_one_encoder_without_its_imagenet_weights(tmp_path: Path, monkeypatch) -> None:
    """full.yaml asks for ImageNet VGG16 (as the paper); without the file the CLI stops before writing anything,
    instead of training a random encoder under a warning. Random weights are one --set away."""
    from reprolib.__main__ import _check_encoder_weights

    split = make_processed_split(tmp_path / "train", 2, label_dirs=("labels", "labels_with_void_no_ego"))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("REPROLIB_")}
    env["TORCH_HOME"] = str(tmp_path / "torch")
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "reprolib", "train", "--config",
                           str(ROOT / "reprolib" / "configs" / "full.yaml"), "--set", f"train_split={split}",
                           "--run-dir", str(run)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "vgg16-397923af.pth" in proc.stderr and "--set model.pretrained=false" in proc.stderr
    assert "Traceback" not in proc.stderr and not run.exists()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("REPROLIB_VGG16_WEIGHTS", raising=False)
    _check_encoder_weights({"width": 1.0, "pretrained": False})  # asked for random weights: fine
    _check_encoder_weights({"width": 0.125})  # no ImageNet weights exist at this width
