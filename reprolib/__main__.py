"""``python -m reprolib train|evaluate|table`` — the command line over the same functions the notebooks call.

* ``train --config run.yaml [--set key=value ...] --run-dir DIR``: one training run (resumes, skips if done).
* ``evaluate --run-dir DIR --split PROCESSED_SPLIT [--size H W] [--ensemble none|fixed]``: metrics of a
  trained run on a processed evaluation split (printed as JSON, per-image scores saved beside the run).
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_train = sub.add_parser("train", help="train one dissimilarity run")
    p_train.add_argument("--config", help="YAML file (see reprolib/configs/)")
    p_train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. lr=1e-5")
    p_train.add_argument("--run-dir", required=True)
    p_eval = sub.add_parser("evaluate", help="metrics of a trained run on a processed split")
    p_eval.add_argument("--run-dir", required=True)
    p_eval.add_argument("--split", required=True, help="processed evaluation split (precompute output)")
    p_eval.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    p_eval.add_argument("--ensemble", default="none", choices=["none", "fixed"])
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
        from reprolib.experiments.ensembling import evaluate_ensemble
        from reprolib.experiments.scoring import save_scores, score_split
        from reprolib.training.run import load_trained, read_config

        size = tuple(args.size) if args.size else tuple(read_config(args.run_dir)["size"])
        model, ensemble = load_trained(args.run_dir)
        scores = score_split(model, args.split, size=size, device=args.device, ensemble=ensemble)
        save_scores(scores, Path(args.run_dir) / "scores" / f"{Path(args.split).name}.npz")
        metrics, _ = evaluate_ensemble(scores, args.ensemble)[""]
        print(json.dumps(metrics, indent=2))
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
