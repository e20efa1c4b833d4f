"""``python -m reprolib train|evaluate|table`` — the command line over the same functions the notebooks call.

* ``train --config run.yaml [--set key=value ...] --run-dir DIR``: one training run (resumes, skips if done).
* ``evaluate --checkpoint RUN_DIR|FILE.ckpt (--split PROCESSED_SPLIT | --dataset DIR --kind KIND --combo NAME)
  [--resolution benchmark|processed] [--ensemble none|fixed] [--out DIR]``: metrics of a trained model on a
  Fishyscapes-format set (run through the combo's backends first) or an already processed split; writes
  scores, prediction PNGs, timing and ``metrics.json`` and prints the metrics as JSON.
* ``table NAME [--profile demo|full] [--data-root DIR] [--work-dir data]``: a whole table, like ``make``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _load_config(path: str | None, overrides: list[str]) -> dict[str, Any]:
    import yaml

    from reprolib.io import ReprolibDataError

    cfg: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ReprolibDataError(p, "config file not found")
        cfg = yaml.safe_load(p.read_text()) or {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        target = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = _parse_value(value)
    return cfg


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from reprolib.experiments import evaluation as E
    from reprolib.training.run import read_config

    ckpt = Path(args.checkpoint)
    split = args.split
    if split is None:
        if args.size:
            size = tuple(args.size)
        elif ckpt.is_dir():
            size = tuple(read_config(ckpt)["size"])
        else:
            raise ValueError("--size H W is needed with a .ckpt file (a run directory records its size)")
        checkpoints = dict(item.split("=", 1) for item in args.ckpt if "=" in item)
        if len(checkpoints) != len(args.ckpt):
            raise ValueError(f"--ckpt expects NAME=PATH, got {args.ckpt}")
        dataset = E.evaluation_dataset(args.kind, args.dataset, laf_root=args.laf_root,
                                       cityscapes_root=args.cityscapes_root)
        split = E.evaluation_split(dataset, args.combo, args.work_dir, size=size, checkpoints=checkpoints,
                                   embedded_dir=args.embedded_dir, device=args.device)
    run_dir = ckpt if ckpt.is_dir() else ckpt.parent
    out = Path(args.out) if args.out else run_dir / "evaluation" / f"{Path(split).name}-{args.resolution}-{args.ensemble}"
    result = E.evaluate_checkpoint(ckpt, split, out, ensemble=args.ensemble, resolution=args.resolution,
                                   device=args.device)
    result["out"] = str(out)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_train = sub.add_parser("train", help="train one dissimilarity run")
    p_train.add_argument("--config", help="YAML file (see reprolib/configs/)")
    p_train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. lr=1e-5")
    p_train.add_argument("--run-dir", required=True)
    p_eval = sub.add_parser("evaluate", help="metrics of a trained model on a Fishyscapes-format set")
    p_eval.add_argument("--checkpoint", "--run-dir", dest="checkpoint", required=True,
                        help="a run directory (uses checkpoints/last.ckpt) or a .ckpt file")
    src = p_eval.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", help="an already processed evaluation split (precompute output)")
    src.add_argument("--dataset", help="a Fishyscapes-format folder (L&F masks, or Static overlays)")
    p_eval.add_argument("--kind", default="fs_lost_and_found", choices=["fs_lost_and_found", "fs_static"])
    p_eval.add_argument("--combo", default="embedded-original", help="segmentation + resynthesis combo")
    p_eval.add_argument("--laf-root", default=None, help="Lost & Found tree (leftImg8bit/) for fs_lost_and_found")
    p_eval.add_argument("--cityscapes-root", default=None, help="Cityscapes tree for fs_static")
    p_eval.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH",
                        help="real backend checkpoint, e.g. ccfpse-generator=latest_net_G.pth")
    p_eval.add_argument("--embedded-dir", default=None, help="trained embedded backends (for embedded combos)")
    p_eval.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="processing size (default: the run's)")
    p_eval.add_argument("--work-dir", default="data/evaluate", help="where processed splits are cached")
    p_eval.add_argument("--resolution", default="benchmark", choices=["benchmark", "processed"])
    p_eval.add_argument("--ensemble", default="none", choices=["none", "fixed"])
    p_eval.add_argument("--out", default=None, help="output folder (default: beside the checkpoint)")
    p_eval.add_argument("--device", default="cpu")
    p_table = sub.add_parser("table", help="run a whole table (as make tableN does)")
    p_table.add_argument("name")
    p_table.add_argument("--profile", default="demo")
    p_table.add_argument("--data-root", default=None)
    p_table.add_argument("--work-dir", default="data")
    p_table.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    if args.cmd == "train":
        from reprolib.training import train

        run = train(_load_config(args.config, args.set), args.run_dir)
        done = run / "done.json"
        print(done.read_text() if done.is_file() else f"stopped before the end; resume with the same command ({run})")
    elif args.cmd == "evaluate":
        print(json.dumps(_evaluate(args), indent=2))
    else:
        from reprolib.experiments import run_table

        df = run_table(args.name, profile=args.profile, data_root=args.data_root, work_dir=args.work_dir,
                       device=args.device)
        print(df.groupby(["variant", "dataset", "metric"])["value"].mean().unstack().to_string())
    return 0


if __name__ == "__main__":
    from reprolib.io import ReprolibDataError

    try:
        sys.exit(main())
    except (ReprolibDataError, ValueError) as exc:
        sys.exit(f"error: {exc}")
