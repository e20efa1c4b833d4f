"""Tidy results with provenance: one row per run × dataset × metric.

Every table notebook appends rows through :func:`result_rows` and saves them with :func:`save_results`
(atomic). Columns: ``table, variant, dataset, metric, value, seed, profile, commit, config_hash,
checkpoint, data_fingerprint`` (+ ``imagenet_weights`` and free extra columns). Metric values are fractions in [0, 1].
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from reprolib.experiments.profiles import PROFILES
from reprolib.io import ReprolibDataError, atomic_write
from reprolib.training.config import RUNTIME_KEYS as RUNTIME_KEYS  # re-exported: where callers look for it
from reprolib.training.config import run_identity

RESULT_COLUMNS = [
    "table", "variant", "dataset", "metric", "value", "seed", "profile",
    "commit", "config_hash", "checkpoint", "data_fingerprint",
]


def git_commit(repo: Path | None = None) -> str:
    """The current commit (with ``-dirty`` when the tree has changes), or ``unknown`` outside git.

    Changes under the top-level ``results/`` do not count: the runs themselves rewrite the committed result
    files, so counting them would mark every row after the first table as ``-dirty``.
    """
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results/"], cwd=cwd, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable 12-hex hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# run_identity (one home: reprolib.training.config) drops RUNTIME_KEYS, the settings that decide *how* a run
# executes, not *what* it computes, so a changed time budget, device, logger, resume source, mount point,
# checkpoint cadence or loader worker count resumes the same run; splits count by folder name.


def run_hash(config: Mapping[str, Any]) -> str:
    """12-hex identity of a training run: equal for configs that train the same weights."""
    return config_hash(run_identity(config))


def result_rows(
    *,
    table: str,
    variant: str,
    dataset: str,
    metrics: Mapping[str, float],
    seed: int,
    profile: str,
    config: Mapping[str, Any],
    checkpoint: str | Path | None = None,
    data_fingerprint: str = "",
    commit: str | None = None,
    imagenet_weights: str | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    """Rows for one run on one dataset (one per metric).

    ``imagenet_weights``: which ImageNet weights the encoder and V used (file name + sha256 prefix, or
    ``random (seed N)``); by default derived from the profile and the variant (:func:`imagenet_weights_used`).
    """
    if imagenet_weights is None:
        imagenet_weights = imagenet_weights_used(profile, config, seed)
    base = {
        "table": table, "variant": variant, "dataset": dataset, "seed": int(seed), "profile": profile,
        "commit": commit or git_commit(), "config_hash": config_hash(config),
        "checkpoint": "" if checkpoint is None else str(checkpoint), "data_fingerprint": data_fingerprint,
        "imagenet_weights": imagenet_weights, **extra,
    }
    return [{**base, "metric": name, "value": float(value)} for name, value in metrics.items()]


def imagenet_weights_used(profile: str, config: Mapping[str, Any], seed: int) -> str:
    """``"<encoder>: <weights>; vgg19: <weights>"`` for a run of ``profile`` (see
    :func:`reprolib.models.pretrained.describe_imagenet_weights`): the encoder is pretrained where the profile
    (or the variant) says so, V's VGG19 whenever its file is found (``PerceptualDifference`` default, seed 0)."""
    # lazy: reprolib.models imports torchvision, +2.3 s on `import reprolib.experiments` (python -X importtime)
    from reprolib.models.pretrained import describe_imagenet_weights

    prof = PROFILES.get(profile)
    model = dict(prof.model) if prof is not None else {}
    try:  # the variant's model overrides, as stored in the config by the runner (Variant.training_key)
        model.update(dict(config.get("variant", ((),))[0]))
    except (TypeError, ValueError, IndexError):
        pass
    encoder = str(model.get("encoder", "vgg16"))
    pretrained = model.get("pretrained", False) and float(model.get("width", 1.0)) == 1.0
    parts = [f"{encoder}: {describe_imagenet_weights(encoder, pretrained, seed)}",
             f"vgg19: {describe_imagenet_weights('vgg19', prof is None or prof.perceptual_pretrained, 0)}"]
    return "; ".join(parts)


def save_results(rows: list[dict[str, Any]] | pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write tidy rows as CSV atomically; returns the frame."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    cols = RESULT_COLUMNS + [c for c in df.columns if c not in RESULT_COLUMNS]
    df = df[cols]
    with atomic_write(path, "w") as fh:
        df.to_csv(fh, index=False)
    return df


#: tables that measure the machine rather than score a model (their CSV has its own columns; see ``compute``)
MEASUREMENT_TABLES = ("table2",)


def result_tables(results_dir: str | Path) -> list[Path]:
    """Every ``results/<t>/<t>.csv`` that holds scored rows (Table 2's measurements left out), sorted."""
    return [csv for csv in sorted(Path(results_dir).glob("*/*.csv"))
            if csv.stem == csv.parent.name and csv.stem not in MEASUREMENT_TABLES]


#: result columns that identify (a commit, a hash, a path): text, whatever characters they hold
IDENTITY_COLUMNS = ("commit", "config_hash", "checkpoint", "data_fingerprint")


def load_results(path: str | Path) -> pd.DataFrame:
    """Read a tidy results CSV, checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise ReprolibDataError(path, "results file not found")
    # identities as text: a 12-hex commit or hash of digits only would read as a number (and lose a leading zero)
    df = pd.read_csv(path, dtype={c: str for c in IDENTITY_COLUMNS})
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ReprolibDataError(path, f"not a reprolib results table: missing columns {missing}")
    return df
