"""Ensemble evaluation for the tables: raw, fixed mix, grid search tuned on a held-out half, learned.

Grid search is *cross-fitted*: the evaluation images are split in two halves; weights tuned on one half
score the other, and vice versa, so every reported pixel is scored with weights that never saw it. The
original tuned the weights on the very set it reported (spec §3.2); that number is kept as
``<variant>@tuned_on_reported`` so the report can show both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reprolib.ensemble import FIXED_ENSEMBLE, combine
from reprolib.experiments.scoring import MAP_NAMES, crossfit_halves, select

SCORE_KEYS = ("dissimilarity", *MAP_NAMES)


def metrics_of(score_maps: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    from reprolib.metrics import anomaly_metrics

    return anomaly_metrics(score_maps, labels, ignore_index=255)


def final_scores(scores: dict[str, list[np.ndarray]], mode: str, objective: str = "fpr95") -> list[np.ndarray]:
    """The per-image anomaly scores the main row of :func:`evaluate_ensemble` is computed from."""
    if mode in ("none", "learned-probability", "learned-repro"):
        return scores["dissimilarity"]
    if mode == "fixed":
        return combine(scores, FIXED_ENSEMBLE)
    return _crossfit(scores, objective)[0]


def _crossfit(scores: dict[str, list[np.ndarray]], objective: str) -> tuple[list[np.ndarray], list[dict]]:
    from reprolib.ensemble import grid_search

    labels = scores["label"]
    n = len(labels)
    a, b = crossfit_halves(n)
    mixed: list[np.ndarray | None] = [None] * n
    fold_weights = []
    for tune, report in ((a, b), (b, a)):
        tuned = select(scores, tune)
        w = grid_search({k: tuned[k] for k in SCORE_KEYS}, tuned["label"], objective=objective).weights
        fold_weights.append(w)
        for i, m in zip(report, combine(select(scores, report), w), strict=True):
            mixed[i] = m
    return [m for m in mixed if m is not None], fold_weights


def evaluate_ensemble(
    scores: dict[str, list[np.ndarray]], mode: str, objective: str = "fpr95"
) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
    """Metrics for one ensemble mode. Returns {row suffix: (metrics, info)}; suffix "" is the main row."""
    labels = scores["label"]
    if mode in ("none", "learned-probability", "learned-repro"):
        # learned ensembles are already inside the model's p(anomaly)
        return {"": (metrics_of(scores["dissimilarity"], labels), {"weights": "n/a"})}
    if mode == "fixed":
        return {"": (metrics_of(combine(scores, FIXED_ENSEMBLE), labels), {"weights": FIXED_ENSEMBLE})}
    if mode != "grid":
        raise ValueError(f"unknown ensemble mode {mode!r}")
    from reprolib.ensemble import grid_search

    mixed, fold_weights = _crossfit(scores, objective)
    crossfit = metrics_of(mixed, labels)
    same = grid_search({k: scores[k] for k in SCORE_KEYS}, labels, objective=objective)
    return {
        "": (crossfit, {"weights": fold_weights, "tuning": "cross-fitted halves"}),
        "@tuned_on_reported": (metrics_of(combine(scores, same.weights), labels),
                               {"weights": same.weights, "tuning": "reported set (original)"}),
    }
