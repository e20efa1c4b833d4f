"""Ensemble evaluation for the tables: raw, fixed mix, grid search tuned on a held-out half, learned.

Every grid row comes in two protocols, both kept so a reader can compare like with like:

* ``<variant>`` — our corrected protocol: *cross-fitted*. The evaluation images are split in two halves,
  whole recording sequences each (frames of one Lost & Found sequence are near-duplicates); weights tuned on
  one half score the other, and vice versa, so every reported pixel is scored with weights that saw neither
  it nor a frame of its sequence. The row is the mean of the two halves' metrics: pooling the halves into one ranking
  would mix two weightings' score scales, which no deployed detector has, and penalise the row whenever the
  folds pick different weights (the known bias of pooled cross-validated AUCs; Forman & Scholz 2010).
  Selection: the original code's rule (lowest FPR95; the profile's ``grid_objective``).
* ``<variant>@report_protocol`` — the MLRC report's protocol, the one behind its numbers: the weights that
  maximise AP − FPR95 (the MLRC's change to the original's rule), tuned on the very set they are reported
  on (as the original, spec §3.2). ``reprolib.report.comparison_table`` puts the report's number beside it.

``allowed`` restricts which maps may get a weight (Table 7: a map removed from the network is removed from
the ensemble too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reprolib.ensemble import FIXED_ENSEMBLE, combine, grid_search
from reprolib.experiments.scoring import MAP_NAMES, crossfit_halves, select
from reprolib.experiments.tables import REPORT_PROTOCOL
from reprolib.labels import IGNORE_INDEX
from reprolib.metrics import anomaly_metrics
from reprolib.training.config import ENSEMBLES

SCORE_KEYS = ("dissimilarity", *MAP_NAMES)
#: grid objective of the MLRC report's protocol (row suffix REPORT_PROTOCOL, tuned on the reported set)
REPORT_OBJECTIVE = "ap_minus_fpr95"


def metrics_of(score_maps: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    return anomaly_metrics(score_maps, labels, ignore_index=IGNORE_INDEX)


def own_sequences(n: int) -> list[str]:
    """One sequence per image: for scores whose images' names are not known."""
    return [str(i) for i in range(n)]


Halves = tuple[np.ndarray, np.ndarray]


def crossfit_groups(halves: Halves) -> np.ndarray:
    """Each image's half in the cross-fit (0: the first of ``halves``, 1: the second)."""
    groups = np.zeros(sum(len(h) for h in halves), np.int64)
    groups[halves[1]] = 1
    return groups


def crossfit_metrics(mixed: list[np.ndarray], labels: list[np.ndarray], halves: Halves) -> dict[str, float]:
    """The cross-fitted row's metrics: each half's, averaged (see the module docstring)."""
    per_half = [metrics_of([mixed[i] for i in half], [labels[i] for i in half]) for half in halves]
    return {k: float(np.mean([h[k] for h in per_half])) for k in per_half[0]}


def _allowed(maps: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Grid-search inputs: the network's p(anomaly) and the given maps (None → every map)."""
    return None if maps is None else ("dissimilarity", *maps)


def _crossfit(scores: dict[str, list[np.ndarray]], objective: str, maps: tuple[str, ...] | None,
              halves: Halves) -> tuple[list[np.ndarray], list[dict]]:
    n = len(scores["label"])
    a, b = halves
    mixed: list[np.ndarray | None] = [None] * n
    fold_weights = []
    for tune, report in ((a, b), (b, a)):
        tuned = select(scores, tune)
        w = grid_search({k: tuned[k] for k in SCORE_KEYS}, tuned["label"], objective=objective,
                        allowed=_allowed(maps)).weights
        fold_weights.append(w)
        for i, m in zip(report, combine(select(scores, report), w), strict=True):
            mixed[i] = m
    return [m for m in mixed if m is not None], fold_weights


def evaluate_ensemble(
    scores: dict[str, list[np.ndarray]], mode: str, objective: str = "fpr95", maps: tuple[str, ...] | None = None,
    sequences: Sequence[str] | None = None,
) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
    """Metrics for one ensemble mode. Returns {row suffix: (metrics, info)}; suffix "" is the main row.

    ``objective``: the corrected (cross-fitted) row's selection rule; ``maps``: the uncertainty maps the grid
    may weight (None → all three); ``sequences``: each image's recording sequence
    (:func:`reprolib.experiments.scoring.split_sequences`), kept in one half of the cross-fit (None: every
    image its own).
    """
    return evaluate_with_scores(scores, mode, objective, maps, sequences)[0]


#: a row's per-image scores and, for a cross-fitted row, each image's half (its metric is the mean over halves)
RowScores = tuple[list[np.ndarray], "np.ndarray | None"]


def evaluate_with_scores(
    scores: dict[str, list[np.ndarray]], mode: str, objective: str = "fpr95", maps: tuple[str, ...] | None = None,
    sequences: Sequence[str] | None = None,
) -> tuple[dict[str, tuple[dict[str, float], dict[str, Any]]], dict[str, RowScores]]:
    """:func:`evaluate_ensemble`'s rows and, by the same suffix, the per-image scores each row comes from and its
    halves (None when not cross-fitted), for the intervals: one grid search for both."""
    labels = scores["label"]
    if mode == "none" or ENSEMBLES.get(mode) is not None:
        # learned ensembles are already inside the model's p(anomaly)
        final = scores["dissimilarity"]
        return {"": (metrics_of(final, labels), {"weights": "n/a"})}, {"": (final, None)}
    if mode == "fixed":
        final = combine(scores, FIXED_ENSEMBLE)
        return {"": (metrics_of(final, labels), {"weights": FIXED_ENSEMBLE})}, {"": (final, None)}
    if mode != "grid":
        raise ValueError(f"unknown ensemble mode {mode!r}")
    sequences = own_sequences(len(labels)) if sequences is None else list(sequences)
    if len(sequences) != len(labels):
        raise ValueError(f"{len(sequences)} sequences for {len(labels)} scored images")
    halves = crossfit_halves(sequences)
    mixed, fold_weights = _crossfit(scores, objective, maps, halves)
    crossfit = crossfit_metrics(mixed, labels, halves)
    same = grid_search({k: scores[k] for k in SCORE_KEYS}, labels, objective=REPORT_OBJECTIVE,
                       allowed=_allowed(maps))
    allowed = list(_allowed(maps) or SCORE_KEYS)
    reported = combine(scores, same.weights)
    rows = {
        "": (crossfit, {"weights": fold_weights, "tuning": "cross-fitted halves (corrected protocol)",
                        "metrics": "mean of the two halves'",
                        "halves": {"images": [len(h) for h in halves],
                                   "sequences": [len({sequences[i] for i in h}) for h in halves]},
                        "objective": objective, "allowed": allowed}),
        REPORT_PROTOCOL: (metrics_of(reported, labels),
                          {"weights": same.weights, "tuning": "reported set (the MLRC report's protocol)",
                           "objective": REPORT_OBJECTIVE, "allowed": allowed}),
    }
    return rows, {"": (mixed, crossfit_groups(halves)), REPORT_PROTOCOL: (reported, None)}
