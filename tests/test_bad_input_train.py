"""Bad input to ``python -m reprolib train``: one line naming the culprit, the right exit code, nothing written.

Each row: (arguments, exit code, substring of the single stderr line, paths that must not exist afterwards).
Exit 2 = bad arguments / settings (or a run directory holding a run with other settings); 1 = bad data or files.
Arguments are added after a valid base command (tiny sizes), so a row's ``--set`` overrides the base's.
Placeholders: {tmp} (the test's folder), {train}/{val} (processed splits), {finished}/{unfinished} (run
directories whose stored config is the base's), {configs} (the shipped YAMLs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _make_processed import make_processed_split

from reprolib.training.config import TrainConfig
from reprolib.training.run import RunConflictError, check_run_dir

ROOT = Path(__file__).resolve().parents[1]
BASE = {"size": [64, 128], "batch_size": 2, "max_steps": 2, "model": {"width": 0.0625, "pretrained": False},
        "wandb_mode": "disabled"}

CASES = [
    # typos and bad values in --set: "did you mean", the key named, nothing written
    (["--set", "learning_rate=5"], 2, "error: --set learning_rate: unknown key (did you mean lr?)", ["{tmp}/run"]),
    (["--set", "max_step=99999"], 2, "error: --set max_step: unknown key (did you mean max_steps?)", ["{tmp}/run"]),
    (["--set", "size=64"], 2, "error: --set size: must be [height, width]", ["{tmp}/run"]),
    (["--set", "model=3"], 2, "error: --set model: must be a mapping", ["{tmp}/run"]),
    (["--set", "model.widht=0.5"], 2, "error: --set model.widht: unknown key (did you mean width?)", ["{tmp}/run"]),
    (["--set", "model.width=-1"], 2, "error: --set model.width: bad network setting (width must be > 0", ["{tmp}/run"]),
    (["--set", "lr=abc"], 2, "error: --set lr: must be a number, got 'abc'", ["{tmp}/run"]),
    (["--set", "lr=-1"], 2, "error: --set lr: must be in (0.0, inf]", ["{tmp}/run"]),
    (["--set", "size=[60,128]"], 2, "error: --set size: height and width must be divisible by 8", ["{tmp}/run"]),
    (["--set", "precision=fp16"], 2, "error: --set precision: must be one of 32-true, bf16-mixed, 16-mixed", ["{tmp}/run"]),
    (["--set", "batch_size=0"], 2, "error: --set batch_size: must be an integer >= 1", ["{tmp}/run"]),
    (["--set", "max_steps=2.5"], 2, "error: --set max_steps: must be an integer >= 1 or null", ["{tmp}/run"]),
    (["--set", "device=tpu"], 2, "error: --set device: must be 'cpu', 'cuda' or 'cuda:N'", ["{tmp}/run"]),
    (["--set", "ensemble=learned-foo"], 2, "error: --set ensemble: must be one of none", ["{tmp}/run"]),
    (["--set", "flip=maybe"], 2, "error: --set flip: must be true or false", ["{tmp}/run"]),
    (["--set", "max_time=soon"], 2, "error: --set max_time: must be 'DD:HH:MM:SS' or seconds > 0", ["{tmp}/run"]),
    (["--set", "lr"], 2, "error: --set lr: expected key=value", ["{tmp}/run"]),
    # config files
    (["--config", "{tmp}/list.yaml"], 1, "list.yaml: must be a mapping of settings (key: value), got a list", ["{tmp}/run"]),
    (["--config", "{tmp}/string.yaml"], 1, "string.yaml: must be a mapping of settings (key: value), got a str",
     ["{tmp}/run"]),
    (["--config", "{tmp}/broken.yaml"], 1, "broken.yaml: not valid YAML", ["{tmp}/run"]),
    (["--config", "{tmp}/nope.yaml"], 1, "nope.yaml: config file not found", ["{tmp}/run"]),
    (["--config", "{tmp}/twice.yaml"], 1, "twice.yaml: not valid YAML (key 'lr' given twice (lines 1 and 3))",
     ["{tmp}/run"]),
    (["--config", "{tmp}"], 1, ": is a folder; expected a config file", ["{tmp}/run"]),
    (["--config", "{tmp}/bad_value.yaml"], 2, "bad_value.yaml: patience: must be an integer >= 0", ["{tmp}/run"]),
    # data
    (["--set", "train_split={tmp}/missing"], 1, "missing: processed split folder not found", ["{tmp}/run"]),
    (["--set", "val_split={tmp}/missing"], 1, "missing: processed split folder not found", ["{tmp}/run"]),
    (["--set", "label_dir=no_such_labels"], 1, "folder no_such_labels/ missing from the processed split", ["{tmp}/run"]),
    (["--set", "batch_size=64"], 1, "4 training images cannot fill a global batch of 64", ["{tmp}/run"]),
    # files named in the settings: read and checked before the run directory is written
    (["--set", "resume_from={tmp}/foreign.ckpt"], 1, "foreign.ckpt: not a Lightning training checkpoint to resume "
     "from (no pytorch-lightning_version, global_step)", ["{tmp}/run"]),
    (["--set", "resume_from={tmp}/wide.ckpt"], 1, "wide.ckpt: checkpoint does not match the model config",
     ["{tmp}/run"]),
    (["--set", "model.width=1.0", "--set", "model.pretrained={tmp}/nope.pth"], 1, "nope.pth: checkpoint not found",
     ["{tmp}/run"]),
    # a run directory holding a run with other determining settings: refused, named, untouched
    (["--run-dir", "{finished}", "--set", "lr=5e-4"], 2,
     "holds a finished run with other settings: lr (stored 0.0001, requested 0.0005)", ["{finished}/checkpoints"]),
    (["--run-dir", "{unfinished}", "--set", "model.width=0.125"], 2,
     "holds an unfinished run with other settings: model.width (stored 0.0625, requested 0.125)",
     ["{unfinished}/checkpoints"]),
    (["--run-dir", "{unfinished}", "--set", "max_steps=99", "--set", "seed=3"], 2,
     "holds an unfinished run with other settings: max_steps (stored 2, requested 99), seed", ["{unfinished}/checkpoints"]),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_train")
    train = make_processed_split(root / "train", 4)
    val = make_processed_split(root / "val", 2, seed=1)
    base = TrainConfig.from_dict({**BASE, "train_split": str(train), "val_split": str(val)}).to_dict()
    for name in ("finished", "unfinished"):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps(base))
    (root / "finished" / "done.json").write_text(json.dumps({"global_step": 2}))
    torch.save({"state_dict": {}, "epoch": 3}, root / "foreign.ckpt")
    torch.save({"state_dict": {"net.head.weight": torch.zeros(1)}, "pytorch-lightning_version": "2.6.0",
                "global_step": 1}, root / "wide.ckpt")
    (root / "list.yaml").write_text("- lr: 1\n")
    (root / "string.yaml").write_text("train faster\n")
    (root / "broken.yaml").write_text("lr: [1\n")
    (root / "twice.yaml").write_text("lr: 1.0e-4\nseed: 1\nlr: 5\n")
    (root / "bad_value.yaml").write_text("patience: -1\n")
    return {"tmp": str(root), "train": str(train), "val": str(val), "finished": str(root / "finished"),
            "unfinished": str(root / "unfinished"), "configs": str(ROOT / "reprolib" / "configs")}


def _base_args(world: dict[str, str]) -> list[str]:
    sets = [f"train_split={world['train']}", f"val_split={world['val']}", "size=[64,128]", "batch_size=2",
            "max_steps=2", "model.width=0.0625", "model.pretrained=false", "wandb_mode=disabled"]
    return ["train", "--run-dir", f"{world['tmp']}/run", *[a for s in sets for a in ("--set", s)]]


@pytest.mark.parametrize("args, code, message, absent", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_train_input(world: dict[str, str], args: list[str], code: int, message: str, absent: list[str]) -> None:
    args = [a.format(**world) for a in args]
    stored = {n: (Path(world[n]) / "config.json").read_bytes() for n in ("finished", "unfinished")}
    proc = subprocess.run([sys.executable, "-m", "reprolib", *_base_args(world), *args], capture_output=True,
                          text=True, cwd=world["tmp"], timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    for path in absent:
        assert not Path(path.format(**world)).exists(), f"{path} was written"
    for name, content in stored.items():  # a refused run directory keeps its config
        assert (Path(world[name]) / "config.json").read_bytes() == content


def test_runtime_settings_may_differ_on_resume(world: dict[str, str]) -> None:
    """Time budget, device, logging, checkpoint interval: a resume, not a conflict."""
    base = TrainConfig.from_dict({**BASE, "train_split": world["train"], "val_split": world["val"]})
    check_run_dir(base.replace(max_time="00:01:00:00", wandb_mode="offline", checkpoint_every=1, num_workers=2),
                  Path(world["unfinished"]))
    # the same splits mounted elsewhere (same folder names) are the same run
    moved = base.replace(train_split=f"/kaggle/input/copy/{Path(world['train']).name}")
    check_run_dir(moved, Path(world["unfinished"]))
    # more devices: a larger global batch and fewer steps, so another run, not a resume
    with pytest.raises(RunConflictError, match=r"devices \(stored 1, requested 2\)"):
        check_run_dir(base.replace(devices=2), Path(world["unfinished"]))
