"""The command line ``python -m reprolib.kaggle push|pull --table table4 ...`` (``make kaggle-push/-pull``)."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reprolib.cli import ArgumentParser, check_choice
from reprolib.kaggle.bundle import DATASET_REF_RE, DEFAULT_ACCELERATOR, REPO_ROOT, build_bundle
from reprolib.kaggle.credentials import kaggle_username
from reprolib.kaggle.kernel import KernelCode
from reprolib.kaggle.remote import pull, push
from reprolib.training.config import PRECISIONS, parse_max_time
from reprolib.weights import CHECKPOINT_ENV, check_checkpoint_names


def _dataset_ref(value: str, what: str) -> str:
    if not DATASET_REF_RE.fullmatch(value):
        raise ValueError(f"{what} must be a Kaggle dataset 'owner/slug', got {value!r}: upload the folder first "
                         "(`kaggle datasets create -p FOLDER`, see the README) and pass its owner/slug")
    return value


#: Kaggle stops a session after 12 h: a budget past it would be killed before the margin, with no output exported
KAGGLE_SESSION_S = 12 * 3600


def _max_time(value: str) -> str:
    try:
        seconds = parse_max_time(value)
    except ValueError as exc:
        raise ValueError(f"--max-time: {exc}") from None
    if seconds is None or seconds > KAGGLE_SESSION_S:
        raise ValueError(f"--max-time {value!r} is past Kaggle's 12 h session: the session would be killed before it "
                         "saves its output; use at most 00:11:00:00 (the default)")
    return value


def _seeds(value: str) -> list[int]:
    """``--seeds 0,1,2`` → [0, 1, 2] (as ``make SEEDS=0,1,2``)."""
    items = [v.strip() for v in value.split(",")]
    if not all(v.isdigit() for v in items) or len(set(items)) != len(items):
        raise ValueError(f"--seeds must be distinct whole numbers >= 0 separated by commas, e.g. 0,1,2; got {value!r}")
    return [int(v) for v in items]


def check_table(table: str) -> str:
    """A misspelt table is an error here, not a Kaggle session (and its GPU quota) spent failing."""
    # lazy: reprolib.experiments imports torch (python -X importtime: 2.5-4.4 s); only push and pull need the names
    from reprolib.experiments.tables import TABLES

    return check_choice("--table", table, [*sorted(TABLES), "table2"])


def notebook_parameters(table: str) -> set[str]:
    """The names the table notebook's ``parameters`` cell assigns: the values an injected cell can change."""
    path = REPO_ROOT / "notebooks" / f"{table}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return set()
    body = ast.parse("".join(cell["source"])).body
    return {t.id for node in body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


#: the options a push sends only when given, by the notebook parameter they set
_ASKED = {"precision": "--precision", "eval_resolution": "--eval-resolution", "seeds": "--seeds",
          "report_selection": "--no-report-selection"}


def push_parameters(args: Any) -> tuple[dict[str, Any], list[str]]:
    """The notebook parameters and dataset sources of a push (data and checkpoints resolved in the kernel).

    Every value is checked here, before the push: the kernel would only fail on it inside a Kaggle session."""
    # lazy: reprolib.experiments imports torch (python -X importtime: 2.5-4.4 s); only a push needs these
    from reprolib.experiments.profiles import PROFILES
    from reprolib.experiments.scoring import RESOLUTIONS

    check_table(args.table)
    check_choice("--profile", args.profile, sorted(PROFILES))
    params: dict[str, Any] = {
        "profile": args.profile,
        "work_dir": "/kaggle/working/data",
        "output_dir": f"/kaggle/working/results/{args.table}",
        "max_time": _max_time(args.max_time),
        "device": "auto",
        "wandb_mode": args.wandb,
    }
    # only when asked: a push without them sends the notebook's defaults, as before
    if getattr(args, "precision", ""):
        params["precision"] = check_choice("--precision", args.precision, PRECISIONS)
    if getattr(args, "eval_resolution", ""):
        params["eval_resolution"] = check_choice("--eval-resolution", args.eval_resolution, RESOLUTIONS)
    if getattr(args, "seeds", ""):
        params["seeds"] = _seeds(args.seeds)
    if getattr(args, "no_report_selection", False):
        params["report_selection"] = False
    datasets = [_dataset_ref(d, "--datasets") for d in args.datasets.split(",") if d]
    mount = "__import__('reprolib.kaggle', fromlist=['mounted_dataset']).mounted_dataset"
    if args.data:
        datasets.append(_dataset_ref(args.data, "--data"))
        params["data_root"] = KernelCode(f"str({mount}({args.data!r}, contains='cityscapes'))")
    if args.checkpoints:
        if not args.checkpoints_dataset:
            raise ValueError("--checkpoints needs --checkpoints-dataset owner/slug (the dataset holding the files)")
        datasets.append(_dataset_ref(args.checkpoints_dataset, "--checkpoints-dataset"))
        items = [item for item in args.checkpoints.split(",") if item]
        if not items or any("=" not in item for item in items):  # one bad item is an error, not a weight left out
            raise ValueError("--checkpoints must be name=file[,name=file…], e.g. deepwv3plus=cityscapes_best.pth; "
                             f"got {args.checkpoints!r}")
        pairs = dict(item.split("=", 1) for item in items)
        check_checkpoint_names(pairs, "--checkpoints")  # a misspelt name: a weight the kernel would never look up
        real = sorted(k for k in pairs if k in CHECKPOINT_ENV)
        if real and not args.data:
            raise ValueError(f"--checkpoints {real} are real-backend weights and need --data (make: DATA=you/dataset): "
                             "on the embedded world the kernel trains and runs the embedded backends")
        where = f"{mount}({args.checkpoints_dataset!r})"
        params["checkpoints"] = KernelCode("{" + ", ".join(f"{k!r}: str({where} / {v!r})" for k, v in pairs.items()) + "}")
    # a notebook without the parameter (Table 2 times single steps: no seeds, no budget) would assign it and ignore
    # it: an option given for it is an error, a default is left out
    known = notebook_parameters(args.table)
    unused = [_ASKED[k] for k in params if k in _ASKED and k not in known]
    if unused:
        raise ValueError(f"{args.table}'s notebook has no parameter for {', '.join(unused)}: it would be ignored there")
    return {k: v for k, v in params.items() if k in known}, list(dict.fromkeys(datasets))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m reprolib.kaggle push|pull --table table4 ...`` (used by ``make kaggle-push/-pull``)."""
    parser = ArgumentParser(prog="python -m reprolib.kaggle", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_push = sub.add_parser("push", help="build the kernel bundle for a table and push it")
    p_push.add_argument("--table", required=True)
    p_push.add_argument("--profile", default="demo")
    p_push.add_argument("--data", default="", help="Kaggle dataset owner/slug holding cityscapes/, lostandfound/, "
                                                    "fishyscapes/ (default: the embedded world)")
    p_push.add_argument("--checkpoints-dataset", default="", help="Kaggle dataset owner/slug holding backend weights")
    p_push.add_argument("--checkpoints", default="", help="name=file,... inside it, e.g. deepwv3plus=cityscapes_best.pth")
    p_push.add_argument("--datasets", default="", help="more comma-separated owner/slug Kaggle datasets to mount")
    p_push.add_argument("--max-time", default="00:11:00:00",
                        help="the whole session's budget (Kaggle stops a session at 12 h)")
    p_push.add_argument("--accelerator", default=DEFAULT_ACCELERATOR, help="Kaggle machine shape ('none': CPU)")
    p_push.add_argument("--docker-pinning", default="original", choices=("original", "latest"),
                        help="'original': every version runs the first version's Docker image")
    p_push.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"),
                        help="online needs a WANDB_API_KEY Kaggle Secret attached to the notebook (see README)")
    p_push.add_argument("--precision", default="", help="training precision, e.g. 16-mixed on a T4/P100 (default: "
                                                         "the notebook's, fp32)")
    p_push.add_argument("--eval-resolution", default="", help="processed|benchmark (default: the table's protocol)")
    p_push.add_argument("--seeds", default="", help="comma-separated seeds, e.g. 0,1,2 (default: the table's for the profile)")
    p_push.add_argument("--no-report-selection", action="store_true",
                        help="leave out the <variant>@report_selection rows (in full: epochs - 11 more epochs a run)")
    p_push.add_argument("--build-dir", default="build/kaggle")
    p_push.add_argument("--dry-run", action="store_true", help="build the bundle only")
    p_pull = sub.add_parser("pull", help="fetch a table kernel's results into results/<table>/")
    p_pull.add_argument("--table", required=True)
    p_pull.add_argument("--dest", default=None)
    p_pull.add_argument("--partial", action="store_true", help="take the table though its runs are not all finished")
    p_pull.add_argument("--profile", default=None, help="the profile the pulled results must be of (default: that of "
                                                        "the results already in --dest; none there: any)")
    args = parser.parse_args(argv)

    check_table(args.table)
    slug = f"reprolib-{args.table}"
    if args.cmd == "push":
        params, datasets = push_parameters(args)
        gpu = args.accelerator.lower() != "none"
        bundle = build_bundle(REPO_ROOT / "notebooks" / f"{args.table}.ipynb", Path(args.build_dir) / args.table,
                              slug=slug, parameters=params, dataset_sources=datasets, enable_gpu=gpu,
                              accelerator=args.accelerator if gpu else None, docker_pinning=args.docker_pinning,
                              wandb_secret=args.wandb == "online")
        print(f"bundle: {bundle}")
        if not args.dry_run:
            print(push(bundle, accelerator=args.accelerator if gpu else None))
    else:
        if args.profile is not None:  # a misspelt profile is an error here, not a pull refused for it
            from reprolib.experiments.profiles import PROFILES  # lazy: torch, as in push_parameters

            check_choice("--profile", args.profile, sorted(PROFILES))
        dest = Path(args.dest or Path("results") / args.table)
        files = pull(f"{kaggle_username()}/{slug}", dest, table=args.table, partial=args.partial, profile=args.profile)
        print(f"{len(files)} result files → {dest}")
