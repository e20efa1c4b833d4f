"""``python -m reprolib train|evaluate|table`` — the command line over the same functions the notebooks call.

* ``train --config run.yaml [--set key=value ...] --run-dir DIR``: one training run (resumes, skips if done).
* ``evaluate --checkpoint RUN_DIR|FILE.ckpt (--split PROCESSED_SPLIT | --dataset DIR --kind KIND --combo NAME)
  [--resolution benchmark|processed] [--ensemble none|fixed] [--out DIR]``: metrics of a trained model on a
  Fishyscapes-format set (run through the combo's backends first) or an already processed split; writes
  scores, prediction PNGs, timing and ``metrics.json`` and prints the metrics as JSON.
* ``table NAME [--profile demo|full] [--data-root DIR] [--work-dir data]``: a whole table with ``run_table``, the
  function its notebook calls under ``make``: table3 … table8, figures (Figures 4–6), figure3. Table 2 is not one of
  them: it is ``make table2`` (``reprolib.experiments.compute.computational_requirements``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from reprolib import cli
from reprolib.allocator import keep_freed_memory
from reprolib.io import ReprolibDataError, read_json
from reprolib.training.config import ConfigError, TrainConfig, read_yaml_settings
from reprolib.weights import CHECKPOINT_NAMES

# Imported where a subcommand needs them, not here: torch and Lightning. ``--help`` and a bad ``train`` argument
# answer in 0.2-0.5 s; ``python -X importtime`` measures reprolib.training.run (Lightning) at 7.5-9.5 s and
# reprolib.experiments.evaluation / reprolib.backends.registry / reprolib.experiments (torch) at 2.5-4.4 s
# (shared 2-core machine, warm disk cache).


class TrainUsageError(Exception):
    """A bad ``train`` argument: printed as ``error: <where>: <problem>``, exit code 2."""

    def __init__(self, where: str, problem: str):
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}")


def _parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` (dotted keys for the network: ``model.width=0.5``) → {dotted key: YAML value}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise TrainUsageError(f"--set {item}", "expected key=value, e.g. --set lr=1e-5")
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise TrainUsageError(f"--set {key}", f"cannot read the value {text!r}") from None
    return out


def _train_config(config: str | None, sets: list[str]) -> Any:
    """YAML (optional) + ``--set`` overrides → a validated TrainConfig; errors name the file or the --set key."""
    settings = read_yaml_settings(config) if config else {}
    overrides = _parse_sets(sets)
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in settings.items()}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        target = merged
        for part in parents:
            if not isinstance(target.get(part, {}), dict):
                raise TrainUsageError(f"--set {key}", f"{part} is not a group of settings")
            target = target.setdefault(part, {})
        target[leaf] = value
    try:
        return TrainConfig.from_dict(merged)
    except ConfigError as exc:
        key = exc.key or ""
        if key == "train_split" and "train_split" not in overrides:
            raise TrainUsageError(config or "--set train_split", "required setting train_split missing "
                                  "(the processed training split; pass --set train_split=DIR)") from None
        if key in overrides or key.split(".")[0] in overrides:
            raise TrainUsageError(f"--set {key}", exc.problem) from None
        nested = [k for k in overrides if k.startswith(f"{key}.")]  # e.g. a bad value given as --set model.width=-1
        if key and nested:
            culprit = next((k for k in nested if k.split(".")[-1] in exc.problem), nested[0])
            raise TrainUsageError(f"--set {culprit}", exc.problem) from None
        raise TrainUsageError(config or "--set", str(exc)) from None


def _check_encoder_weights(model: dict[str, Any]) -> None:
    """A width-1 encoder asked for ImageNet weights (the default) must find them: weeks of GPU time on a random
    encoder are not a warning's worth. Random weights stay one ``--set model.pretrained=false`` away."""
    if model.get("pretrained", True) is not True or float(model.get("width", 1.0)) != 1.0:
        return  # a path is checked where it is loaded; thinner encoders have no ImageNet weights
    from reprolib.models.pretrained import expected_imagenet_path, find_imagenet_checkpoint, weights_env

    arch = model.get("encoder", "vgg16")
    if find_imagenet_checkpoint(arch) is None:
        expected = expected_imagenet_path(arch)
        raise ReprolibDataError(expected, f"ImageNet weights for the {arch} encoder not found (model.pretrained is "
                                          f"true): put torchvision's {expected.name} there, set "
                                          f"${weights_env(arch)}=/path/to/it, or pass --set model.pretrained=false "
                                          "to train from random weights")


def _train(args: argparse.Namespace) -> int:
    """The ``train`` subcommand: everything is checked before anything is written; one-line errors
    (exit 2: bad arguments or settings, or a run directory holding other settings; exit 1: bad data)."""
    try:
        cfg = _train_config(args.config, args.set)
        _check_encoder_weights(cfg.model)
        from reprolib.training.run import train  # Lightning (7.5-9.5 s, see the top) loads only for a valid command

        run = train(cfg, args.run_dir)
    except TrainUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # e.g. the run directory holds a run with other settings
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ReprolibDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    done = run / "done.json"
    print(done.read_text() if done.is_file() else f"stopped before the end; resume with the same command ({run})")
    return 0


def _run_size(run_dir: Path) -> tuple[int, int]:
    """The processing size a run directory recorded in its ``config.json``."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise ReprolibDataError(path, "not found: the run's processing size is read from it (or pass --size H W)")
    config = read_json(path)
    size = config.get("size") if isinstance(config, dict) else None
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ReprolibDataError(path, f"has no valid 'size' [H, W] (found {size!r}); pass --size H W")
    return size[0], size[1]


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from reprolib.backends.registry import COMBOS  # torch (2.5-4.4 s, see the top): only for this subcommand
    from reprolib.experiments import evaluation as E
    from reprolib.experiments.runner import resolve_device

    # every argument is checked, and the checkpoint loaded, before any precompute, scoring or write
    if args.split is not None:  # a processed split already holds its backends' outputs, at its own size
        given = [opt for opt, value in (("--combo", args.combo), ("--kind", args.kind), ("--size", args.size),
                                        ("--ckpt", args.ckpt), ("--laf-root", args.laf_root),
                                        ("--cityscapes-root", args.cityscapes_root),
                                        ("--embedded-dir", args.embedded_dir)) if value]
        if given:
            raise cli.UsageError(given[0], "only with --dataset: --split is already processed (its combo and size "
                                           "are the ones it was made with)")
    args.combo = args.combo or "original"
    args.kind = args.kind or "fs_lost_and_found"
    cli.check_choice("--combo", args.combo, COMBOS)
    try:
        args.device = resolve_device(args.device)
    except ValueError as exc:
        raise cli.UsageError("--device", str(exc)) from None
    checkpoints = {}
    for item in args.ckpt:
        name, sep, path = item.partition("=")
        if not (sep and name and path):
            raise cli.UsageError("--ckpt", f"expects NAME=PATH, got {item!r}")
        cli.check_choice("--ckpt", name, CHECKPOINT_NAMES)  # a misspelt name: a weight never looked up
        checkpoints[name] = path
    if args.dataset is not None and args.kind == "fs_static" and not args.cityscapes_root:
        raise cli.UsageError("--cityscapes-root", "needed with --kind fs_static (the Cityscapes tree it overlays)")
    ckpt = Path(args.checkpoint)
    run_dir = ckpt if ckpt.is_dir() else ckpt.parent
    if args.out:
        cli.check_output_dir("--out", args.out)
    else:
        cli.check_output_dir("--out (default)", run_dir / "evaluation")
    loaded = E.load_model(ckpt)  # a foreign or mis-sized checkpoint fails here, naming the file
    split = args.split
    if split is None:
        if args.size:
            size = tuple(args.size)
        elif ckpt.is_dir():
            size = _run_size(ckpt)
        else:
            raise cli.UsageError("--size", "needed with a .ckpt file (a run directory records its size)")
        dataset = E.evaluation_dataset(args.kind, args.dataset, laf_root=args.laf_root,
                                       cityscapes_root=args.cityscapes_root)
        split = E.evaluation_split(dataset, args.combo, args.work_dir, size=size, checkpoints=checkpoints,
                                   embedded_dir=args.embedded_dir, device=args.device)
    out = Path(args.out) if args.out else run_dir / "evaluation" / f"{Path(split).name}-{args.resolution}-{args.ensemble}"
    result = E.evaluate_checkpoint(ckpt, split, out, ensemble=args.ensemble, resolution=args.resolution,
                                   device=args.device, loaded=loaded)
    result["out"] = str(out)
    return result


#: what ``table NAME`` runs: reprolib.experiments.TABLES, written out so that --help stays light (tests/test_cli.py
#: checks the two agree); Table 2 has its own function and notebook (``make table2``)
TABLE_NAMES = ("table3", "table4", "table5", "table6", "table7", "table8", "figures", "figure3")


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="python -m reprolib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_train = sub.add_parser("train", help="train one dissimilarity run")
    p_train.add_argument("--config", help="YAML file (see reprolib/configs/)")
    p_train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. lr=1e-5")
    p_train.add_argument("--run-dir", required=True)
    p_eval = sub.add_parser("evaluate", help="metrics of a trained model on a Fishyscapes-format set")
    p_eval.add_argument("--checkpoint", "--run-dir", dest="checkpoint", required=True,
                        help="a run directory (uses its best.ckpt, lowest validation loss, as the tables; else "
                             "last.ckpt) or a .ckpt file")
    src = p_eval.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", help="an already processed evaluation split (precompute output)")
    src.add_argument("--dataset", help="a Fishyscapes-format folder (L&F masks, or Static overlays)")
    # --dataset only, like --size, --ckpt, --laf-root, --cityscapes-root, --embedded-dir (None: not given)
    p_eval.add_argument("--kind", default=None, choices=["fs_lost_and_found", "fs_static"],
                        help="the --dataset's kind (default: fs_lost_and_found)")
    p_eval.add_argument("--combo", default=None,
                        help="segmentation + resynthesis combo (reprolib.backends.COMBOS; default: original, the paper's)")
    p_eval.add_argument("--laf-root", default=None, help="Lost & Found tree (leftImg8bit/) for fs_lost_and_found")
    p_eval.add_argument("--cityscapes-root", default=None, help="Cityscapes tree for fs_static")
    p_eval.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH",
                        help="real backend checkpoint, e.g. ccfpse-generator=latest_net_G.pth")
    p_eval.add_argument("--embedded-dir", default=None, help="trained embedded backends (for embedded combos)")
    p_eval.add_argument("--size", type=cli.positive_int, nargs=2, default=None, metavar=("H", "W"),
                        help="processing size (default: the run's)")
    p_eval.add_argument("--work-dir", default="data/evaluate", help="where processed splits are cached")
    p_eval.add_argument("--resolution", default="benchmark", choices=["benchmark", "processed"])
    p_eval.add_argument("--ensemble", default="none", choices=["none", "fixed"])
    p_eval.add_argument("--out", default=None, help="output folder (default: beside the checkpoint)")
    p_eval.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    table_help = ("run a whole table with run_table, the function its notebook calls under make: "
                  f"{', '.join(TABLE_NAMES)} (figures: Figures 4-6); Table 2 is make table2")
    p_table = sub.add_parser("table", help=table_help, description=table_help)
    p_table.add_argument("name", help="one of " + ", ".join(TABLE_NAMES))
    p_table.add_argument("--profile", default="demo")
    p_table.add_argument("--data-root", default=None)
    p_table.add_argument("--work-dir", default="data")
    p_table.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    keep_freed_memory()
    if args.cmd == "train":
        return _train(args)
    elif args.cmd == "evaluate":
        print(json.dumps(_evaluate(args), indent=2))
    else:
        from reprolib.experiments import run_table  # torch (2.5-4.4 s, see the top)

        df = run_table(args.name, profile=args.profile, data_root=args.data_root, work_dir=args.work_dir,
                       device=args.device)
        print(df.groupby(["variant", "dataset", "metric"])["value"].mean().unstack().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
