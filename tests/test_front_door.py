"""The front door: an option given is either used or refused with an error naming it, before any work.

Each case here was once accepted and then ignored, misapplied, or refused only after minutes (hours on real
data) of work, with a traceback: the Makefile's variables, the notebooks' parameters (``run_table``), the
command lines (``python -m reprolib evaluate``, ``reprolib.experiments.smoke``, ``reprolib.kaggle``) and the
checkpoint names of ``checkpoints=`` / ``--ckpt`` / ``CKPTS``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from reprolib import cli
from reprolib.experiments import run_table
from reprolib.experiments.tables import get_table

ROOT = Path(__file__).resolve().parents[1]


def _make_dry(*args: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _one_line(call) -> tuple[int, str]:
    """(exit code, stderr line) as :func:`reprolib.cli.run` gives them for ``call``'s exception."""
    with pytest.raises((ValueError, OSError)) as info:
        call()
    found = cli.error_line(info.value)
    assert found is not None, f"{info.value!r} would print a traceback"
    line, code = found
    return code, line


# --------------------------------------------------------------------------------------------------------
# run_table (every table notebook's parameters): checked before the world, the backends, the precompute

BAD_RUN_ARGUMENTS = [
    ({"seeds": ["0 1 2"]}, r"seeds must be a non-empty list of whole numbers.*SEEDS=0,1,2"),  # make SEEDS="0 1 2"
    ({"seeds": [0, 0]}, r"repeat \[0\]"),
    ({"seeds": []}, r"seeds must be a non-empty list"),
    ({"seeds": 3}, r"seeds must be a non-empty list"),
    ({"wandb_mode": "Online"}, r"wandb_mode must be one of .*'Online'"),
    ({"device": "gpu"}, r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ({"max_epochs": 0}, r"max_epochs must be a whole number >= 1"),
    ({"variants": ["ful"]}, r"variants: unknown value 'ful'; did you mean 'full'\?"),
    ({"checkpoints": {"ccfpse_encoder": "latest_net_E.pth"}},
     r"checkpoints: unknown value 'ccfpse_encoder'; did you mean 'ccfpse-encoder'\?"),
    ({"checkpoints": {"deepwv3plus": "cityscapes_best.pth"}}, r"no data_root is given.*DATA=/datasets"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_RUN_ARGUMENTS, ids=[str(k) for k, _ in BAD_RUN_ARGUMENTS])
def test_run_table_refuses_bad_arguments_before_any_work(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"profile": "tiny", "work_dir": tmp_path / "work", "output_dir": tmp_path / "out", "device": "cpu",
            "wandb_mode": "disabled", **kwargs}
    with pytest.raises(ValueError, match=message):
        run_table("table4", **args)
    assert list(tmp_path.iterdir()) == []  # no world, no backends, no output folder


def test_a_data_root_missing_what_the_tables_read_is_refused_before_any_work(tmp_path: Path) -> None:
    """Every table precomputes Cityscapes and scores FS Lost & Found and FS Static: a tree (or a file) missing
    there was found after hours of backends, precompute and training, with status.json left behind."""
    from _make_data import make_cityscapes, make_fishyscapes

    from reprolib.io import ReprolibDataError

    data = tmp_path / "datasets"
    args = {"profile": "tiny", "data_root": data, "work_dir": tmp_path / "work", "output_dir": tmp_path / "out",
            "device": "cpu", "wandb_mode": "disabled"}
    make_cityscapes(data / "cityscapes", "train", n=1)
    with pytest.raises(ReprolibDataError, match=r"datasets: missing lostandfound/, fishyscapes/LostAndFound/, "
                                                r"fishyscapes/Static/ inside the data root"):
        run_table("table4", **args)
    fishy = make_fishyscapes(data, n=2)  # lostandfound/, fishyscapes/ and Cityscapes val in the official formats
    base = sorted((fishy.cityscapes / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))[1]
    base.unlink()
    with pytest.raises(ReprolibDataError, match=rf"{base.name}: Cityscapes val image needed by 0001_\w+_labels.png"):
        run_table("table4", **args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datasets"]  # no work folder, no results, no status.json


def test_the_real_backends_weights_are_found_before_any_work(tmp_path: Path, monkeypatch) -> None:
    """Table 6's four combos load the four published backends: each is looked up before the first stage."""
    from _make_data import make_cityscapes, make_fishyscapes

    from reprolib.io import ReprolibDataError
    from reprolib.weights import CHECKPOINT_ENV

    for var in CHECKPOINT_ENV.values():
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "datasets"
    make_cityscapes(data / "cityscapes", "train", n=1)
    make_fishyscapes(data, n=1)
    args = {"profile": "tiny", "data_root": data, "work_dir": tmp_path / "work", "output_dir": tmp_path / "out",
            "device": "cpu", "wandb_mode": "disabled"}
    with pytest.raises(ValueError, match=r"missing checkpoint 'deepwv3plus'"):
        run_table("table4", **args)
    weights = {"deepwv3plus": tmp_path / "w.pth", "icnet": tmp_path / "w.pth", "ccfpse-generator": tmp_path / "w.pth"}
    (tmp_path / "w.pth").write_bytes(b"")  # found; loading it is the backends stage's check
    with pytest.raises(ReprolibDataError, match=r"nope.pth: checkpoint 'spade-generator' not found"):
        run_table("table6", **args, checkpoints={**weights, "spade-generator": tmp_path / "nope.pth"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datasets", "w.pth"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_up_front() -> None:
    from reprolib.experiments.runner import resolve_device

    with pytest.raises(ValueError, match=r"'cuda': this machine has no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"


def test_backend_weights_in_the_environment_without_data_are_named(monkeypatch, capsys) -> None:
    from reprolib.experiments.runner import check_run_arguments

    monkeypatch.setenv("REPROLIB_CKPT_DEEPWV3PLUS", "/weights/cityscapes_best.pth")
    check_run_arguments(get_table("table4"), seeds=[0, 1], max_epochs=None, wandb_mode="offline", variants=None,
                        checkpoints={"dissimilarity": "best_net.pth"}, data_root=None)  # dissimilarity: Figure 3's
    assert "REPROLIB_CKPT_DEEPWV3PLUS set, but no data_root" in capsys.readouterr().out
    check_run_arguments(get_table("table4"), seeds=None, max_epochs=None, wandb_mode="offline", variants=None,
                        checkpoints={"deepwv3plus": "a.pth"}, data_root="/datasets")
    assert capsys.readouterr().out == ""


def test_a_misspelt_checkpoint_name_is_an_error_not_a_weight_left_out(tmp_path: Path) -> None:
    from reprolib.backends.registry import _checkpoint

    weights = tmp_path / "latest_net_E.pth"
    weights.write_bytes(b"")
    assert _checkpoint("ccfpse-encoder", {"ccfpse-encoder": weights}, required=False) == weights
    # the encoder is optional: looked up by its right name, a misspelt one left CC-FPSE without its VAE code
    with pytest.raises(ValueError, match=r"unknown value 'ccfpse_encoder'; did you mean 'ccfpse-encoder'\?"):
        _checkpoint("ccfpse-encoder", {"ccfpse_encoder": weights}, required=False)


# --------------------------------------------------------------------------------------------------------
# the Makefile


def _papermill_parameters(dry_run: str) -> dict:
    """The parameters papermill would inject for the dry run's papermill command (its -p / -r / -y rules)."""
    from papermill.cli import _resolve_type

    line = next(line for line in dry_run.splitlines() if "run_notebook.py notebooks/" in line)
    words, params = shlex.split(line), {}
    for i, word in enumerate(words):
        if word == "-p":
            params[words[i + 1]] = _resolve_type(words[i + 2])
        elif word == "-r":
            params[words[i + 1]] = words[i + 2]
        elif word == "-y":
            params.update(yaml.safe_load(words[i + 1]))
    return params


def test_make_passes_paths_and_names_as_text() -> None:
    params = _papermill_parameters(_make_dry("table4", "WORK=2024", "DATA=None", "MAX_TIME=3600", "SEEDS=0,1",
                                             "PRECISION=16-mixed", "EVAL_RES=benchmark"))
    # -p made WORK=2024 the number 2024 (a TypeError deep in run_table) and DATA=None the embedded world
    assert params == {"profile": "demo", "work_dir": "2024", "wandb_mode": "offline", "output_dir": "results/table4",
                      "data_root": "None", "seeds": [0, 1], "max_time": "3600", "precision": "16-mixed",
                      "eval_resolution": "benchmark"}


def test_report_selection_rows_can_be_left_out_and_only_by_a_clear_yes_or_no() -> None:
    """REPORT_SELECTION=no reaches the notebook as the bool False (papermill's -r would pass the text "False", which
    counts as true), and the kaggle push as --no-report-selection; any other value stops make before any work."""
    assert _papermill_parameters(_make_dry("table4", "REPORT_SELECTION=no"))["report_selection"] is False
    assert "report_selection" not in _papermill_parameters(_make_dry("table4", "REPORT_SELECTION=yes"))
    assert "--no-report-selection" in _make_dry("kaggle-push", "TABLE=table4", "REPORT_SELECTION=no")
    assert "--no-report-selection" not in _make_dry("kaggle-push", "TABLE=table4")
    bad = subprocess.run(["make", "-n", "table4", "REPORT_SELECTION=false"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "REPORT_SELECTION must be yes or no, got 'false'" in bad.stderr
    assert "table2: REPORT_SELECTION not used" in _make_dry("table2", "REPORT_SELECTION=no")


def test_kaggle_push_forwards_precision_eval_res_and_seeds() -> None:
    dry = _make_dry("kaggle-push", "TABLE=table4", "PRECISION=16-mixed", "EVAL_RES=benchmark", "SEEDS=0,1,2")
    assert "--precision 16-mixed" in dry and "--eval-resolution benchmark" in dry and "--seeds 0,1,2" in dry
    assert "--precision" not in _make_dry("kaggle-push", "TABLE=table4")


# --------------------------------------------------------------------------------------------------------
# python -m reprolib.kaggle push|pull


def _push_args(**changes) -> argparse.Namespace:
    base = {"profile": "full", "table": "table4", "max_time": "00:11:00:00", "wandb": "offline", "datasets": "",
            "data": "alice/synboost-data", "checkpoints_dataset": "alice/synboost-weights",
            "checkpoints": "deepwv3plus=cityscapes_best.pth", "precision": "", "eval_resolution": "", "seeds": ""}
    return argparse.Namespace(**{**base, **changes})


def test_kaggle_push_sends_the_options_it_was_given() -> None:
    from reprolib.kaggle.command import push_parameters

    params, _ = push_parameters(_push_args())
    assert not {"precision", "eval_resolution", "seeds"} & set(params)  # not given: the notebook's defaults
    params, _ = push_parameters(_push_args(precision="16-mixed", eval_resolution="benchmark", seeds="0,1,2"))
    assert params["precision"] == "16-mixed" and params["eval_resolution"] == "benchmark"
    assert params["seeds"] == [0, 1, 2] and "report_selection" not in params
    params, _ = push_parameters(_push_args(no_report_selection=True))
    assert params["report_selection"] is False
    with pytest.raises(ValueError, match="table2's notebook has no parameter for --no-report-selection"):
        push_parameters(_push_args(table="table2", data="", checkpoints="", no_report_selection=True))


def test_kaggle_push_sends_a_notebook_only_its_own_parameters() -> None:
    # Table 2 times single steps: no seeds, no session budget, no WandB run, no evaluation protocol
    from reprolib.kaggle.command import notebook_parameters, push_parameters

    params, _ = push_parameters(_push_args(table="table2", data="", checkpoints="", checkpoints_dataset=""))
    assert set(params) == {"profile", "work_dir", "output_dir", "device"} <= notebook_parameters("table2")
    params, _ = push_parameters(_push_args(table="table2", precision="16-mixed", data="", checkpoints=""))
    assert params["precision"] == "16-mixed"  # the timed training step's precision
    for option, value in (("seeds", "0,1"), ("eval_resolution", "benchmark")):
        flag = "--" + option.replace("_", "-")
        with pytest.raises(ValueError, match=f"table2's notebook has no parameter for {flag}"):
            push_parameters(_push_args(table="table2", data="", checkpoints="", **{option: value}))
    params, _ = push_parameters(_push_args())  # a table notebook keeps every one
    assert {"max_time", "wandb_mode", "data_root", "checkpoints"} <= set(params)


@pytest.mark.parametrize(("changes", "message"), [
    ({"profile": "ful"}, r"--profile: unknown value 'ful'; did you mean 'full'\?"),
    ({"table": "explore"}, r"--table: unknown value 'explore'"),
    ({"precision": "fp16"}, r"--precision: unknown value 'fp16'"),
    ({"eval_resolution": "native"}, r"--eval-resolution: unknown value 'native'"),
    ({"seeds": "0 1 2"}, r"--seeds must be distinct whole numbers"),
    ({"seeds": "0,0"}, r"--seeds must be distinct whole numbers"),
    ({"checkpoints": "ccfpse_encoder=latest_net_E.pth"}, r"--checkpoints: unknown value 'ccfpse_encoder'"),
    ({"data": ""}, r"--checkpoints \['deepwv3plus'\] are real-backend weights and need --data"),
])
def test_kaggle_push_refuses_before_pushing(changes: dict, message: str) -> None:
    from reprolib.kaggle.command import push_parameters

    with pytest.raises(ValueError, match=message):
        push_parameters(_push_args(**changes))


def test_kaggle_pull_refuses_an_unknown_table() -> None:
    from reprolib.kaggle.command import main

    with pytest.raises(ValueError, match=r"--table: unknown value 'tabel4'; did you mean 'table4'\?"):
        main(["pull", "--table", "tabel4"])


def test_kaggle_usage_errors_are_one_line() -> None:
    # cli.ArgumentParser, run through cli.run by __main__: one error line and exit 2, not argparse's usage block
    from reprolib.kaggle.command import main

    code, line = _one_line(lambda: main(["push"]))
    assert code == cli.EXIT_USAGE and line == "error: --table: required (see python -m reprolib.kaggle push --help)"
    code, line = _one_line(lambda: main(["push", "--table", "table4", "--wandb", "yes"]))
    assert code == cli.EXIT_USAGE and line.startswith("error: --wandb: invalid choice: 'yes'"), line


# --------------------------------------------------------------------------------------------------------
# python -m reprolib evaluate


@pytest.mark.parametrize(("extra", "message"), [
    (("--split", "{d}/split", "--size", "32", "64"), r"^error: --size: only with --dataset"),
    (("--split", "{d}/split", "--combo", "light"), r"^error: --combo: only with --dataset"),
    (("--split", "{d}/split", "--ckpt", "icnet=a.pth"), r"^error: --ckpt: only with --dataset"),
    (("--split", "{d}/split", "--device", "gpu"), r"^error: --device: device must be 'auto', 'cpu', 'cuda'"),
    (("--dataset", "{d}/laf", "--ckpt", "ccfpse_encoder=latest_net_E.pth"),
     r"^error: --ckpt: unknown value 'ccfpse_encoder'; did you mean 'ccfpse-encoder'\?"),
])
def test_evaluate_refuses_options_it_would_ignore(tmp_path: Path, extra: tuple, message: str) -> None:
    from reprolib.__main__ import main

    argv = ["evaluate", "--run-dir", str(tmp_path / "run"), *(a.format(d=tmp_path) for a in extra)]
    code, line = _one_line(lambda: main(argv))
    assert code == cli.EXIT_USAGE and re.search(message, line), line
    assert list(tmp_path.iterdir()) == []


def test_evaluate_help_names_the_checkpoint_it_scores(capsys) -> None:
    from reprolib.__main__ import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "best.ckpt" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------------------------------------
# python -m reprolib.experiments.smoke (make smoke-full)


@pytest.mark.parametrize(("argv", "message"), [
    (["--steps", "0"], r"^error: --steps: must be at least 1, got 0$"),  # was: the profile's steps, silently
    (["--steps", "-2"], r"^error: --steps: must be 0 or more"),
    (["--device", "gpu"], r"^error: --device: device must be"),
    (["--out", "{d}/a_file"], r"^error: --out: .*a_file is a file"),
])
def test_smoke_full_checks_its_options_before_the_world(tmp_path: Path, argv: list, message: str) -> None:
    from reprolib.experiments.smoke import main

    (tmp_path / "a_file").write_text("")
    argv = [a.format(d=tmp_path) for a in argv] + ["--work", str(tmp_path / "work")]
    code, line = _one_line(lambda: main(argv))
    assert code == cli.EXIT_USAGE and re.search(message, line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_run_smoke_refuses_zero_steps(tmp_path: Path) -> None:
    from reprolib.experiments.smoke import run_smoke

    with pytest.raises(ValueError, match=r"steps must be a whole number >= 1"):
        run_smoke(out_dir=tmp_path / "out", work_dir=tmp_path / "work", steps=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------------
# notebooks/explore.ipynb


def test_explore_refuses_an_unknown_dataset(tmp_path: Path) -> None:
    from reprolib.explore import default_selection

    # was: silently the first set the run was scored on (here: nothing trained, so a "train first" note)
    with pytest.raises(ValueError, match=r"dataset must be one of .*got 'fs_statc'"):
        default_selection(tmp_path, "demo", dataset="fs_statc")


def test_kaggle_pull_takes_an_unfinished_table_only_when_asked() -> None:
    assert _make_dry("kaggle-pull", "TABLE=table4").strip().endswith("pull --table table4")
    assert _make_dry("kaggle-pull", "TABLE=table4", "PARTIAL=yes").strip().endswith("pull --table table4 --partial")
    assert "--partial" not in _make_dry("kaggle-pull", "TABLE=table4", "PARTIAL=no")


def test_every_environment_variable_reprolib_reads_is_in_the_readme() -> None:
    """Each ``REPROLIB_*`` name in the package (all are environment variables it reads) is in the README, so a user can
    find what it changes without reading the source."""
    names = {m for f in (ROOT / "reprolib").rglob("*.py")
             for m in re.findall(r"[\"'](REPROLIB_[A-Z0-9_]+)[\"']", f.read_text(encoding="utf-8"))}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(names) >= 10 and not [n for n in sorted(names) if n not in readme]


def test_world_help_gives_every_default(capsys) -> None:
    from reprolib.world.__main__ import main
    from reprolib.world.writer import DEFAULT_COUNTS

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0)" in text and "(default: 256x512)" in text  # seed, size
    for option, key in (("--n-train", "n_train"), ("--n-val", "n_val"), ("--n-laf", "n_laf"), ("--n-static", "n_static")):
        part = text.split(f"{option} {option[2:].upper().replace('-', '_')} ", 1)[1]
        assert f"default: {DEFAULT_COUNTS[key]}" in part.split(" --", 1)[0], option
