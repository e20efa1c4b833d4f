"""Grid-search ensemble of the network's p(anomaly) with the uncertainty maps (spec §3.2).

Candidates: every w ∈ {0,1,2,3}^4 over [dissimilarity, entropy H, perceptual V, distance D], skipping
vectors whose entries are all equal (zeros included), L1-normalised, duplicates dropped — 252 tried,
224 distinct, as the original. Score = Σ w_k · map_k per pixel (all maps in [0, 1]).

Unlike the original, which re-ran the whole network for each candidate, the search reuses the network's
outputs: every candidate is a weighted sum of arrays already in memory. Up to the streaming metric's exact
buffer (2^22 valid pixels) the valid pixels are pooled once and each candidate is scored exactly from its
ranked positives (:func:`reprolib.metrics.curves.metrics_from_keys`); beyond it, with the streaming metric.
Selection: ``"fpr95"`` = the lowest FPR95 (the original; ties → higher AP), ``"ap_minus_fpr95"`` = the MLRC
reproduction's rule.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reprolib.data.formats import UNCERTAINTY_MAPS
from reprolib.labels import IGNORE_INDEX
from reprolib.metrics import AnomalyMetrics
from reprolib.metrics._pixels import score_keys, valid_pixels
from reprolib.metrics.curves import metrics_from_keys

ORDER = ("dissimilarity", *UNCERTAINTY_MAPS)
#: The "fixed" ensemble: the original code ships 0.75·p(anomaly) + 0.25·H (spec §3.1).
FIXED_ENSEMBLE = {"dissimilarity": 0.75, "entropy": 0.25, "perceptual": 0.0, "distance": 0.0}
OBJECTIVES = ("fpr95", "ap_minus_fpr95")


def candidate_weights(levels: Sequence[int] = (0, 1, 2, 3)) -> tuple[list[tuple[float, ...]], int]:
    """(distinct L1-normalised weight vectors, number of vectors tried before de-duplication)."""
    tried, seen, out = 0, set(), []
    for w in itertools.product(levels, repeat=len(ORDER)):
        if len(set(w)) == 1:  # all equal, zeros included
            continue
        tried += 1
        v = tuple(float(x) / sum(w) for x in w)
        key = str(np.round(v, 12).tolist())
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out, tried


def combine(maps: Mapping[str, Sequence[np.ndarray]], weights: Mapping[str, float]) -> list[np.ndarray]:
    """Per-image weighted sum Σ_k w_k · map_k over :data:`ORDER`, in float32: a weighted ensemble's score.

    ``maps`` may hold other entries (such as ``"label"``), ignored. Raises ``ValueError`` for a weight that
    names no map of :data:`ORDER`, or a non-zero weight whose map is missing from ``maps``.
    """
    unknown = sorted(set(weights) - set(ORDER))
    if unknown:
        raise ValueError(f"weights for unknown maps {unknown}; expected some of {ORDER}")
    missing = [k for k in ORDER if float(weights.get(k, 0.0)) != 0.0 and k not in maps]
    if missing:
        raise ValueError(f"non-zero weights for maps not given: {missing}")
    n = len(maps["dissimilarity"])
    return [sum(float(weights.get(k, 0.0)) * np.asarray(maps[k][i], np.float32) for k in ORDER if k in maps)
            for i in range(n)]


@dataclass
class GridSearchResult:
    weights: dict[str, float]
    metrics: dict[str, float]
    table: pd.DataFrame


def grid_search(maps: Mapping[str, Sequence[np.ndarray]], labels: Sequence[np.ndarray],
                objective: str = "fpr95", exact: bool = False,
                allowed: Sequence[str] | None = None) -> GridSearchResult:
    """Best weights over the candidate grid on (maps, labels); ``table`` lists every candidate.

    ``allowed``: the inputs that may get a weight (default: all of :data:`ORDER`). The others are fixed at 0,
    i.e. only the candidates with a zero there are tried — how Table 7 keeps a map that was removed from the
    network out of the ensemble as well.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    allowed = tuple(ORDER if allowed is None else allowed)
    unknown = [k for k in allowed if k not in ORDER]
    if unknown or "dissimilarity" not in allowed:
        raise ValueError(f"allowed must name inputs of {ORDER}, the network's p(anomaly) included; got {allowed}")
    missing = [k for k in ORDER if k not in maps]
    if missing:
        raise ValueError(f"grid search needs maps {ORDER}; missing {missing}")
    if len(labels) != len(maps["dissimilarity"]):
        raise ValueError("one label map per image is needed")
    cands, _ = candidate_weights()
    off = [i for i, k in enumerate(ORDER) if k not in allowed]
    cands = [w for w in cands if all(w[i] == 0 for i in off)]
    pooled = _Pooled.of(maps, labels)
    weightings = [dict(zip(ORDER, w, strict=True)) for w in cands]
    if pooled is not None:
        metrics = pooled.metrics_of(weightings)
    else:
        metrics = []
        for weights in weightings:
            acc = AnomalyMetrics(exact=exact)
            for s, y in zip(combine(maps, weights), labels, strict=True):
                acc.update(s, y)
            metrics.append(acc.compute())
    table = pd.DataFrame([{**w, **m} for w, m in zip(weightings, metrics, strict=True)])
    if objective == "fpr95":
        best = table.sort_values(["fpr95", "ap"], ascending=[True, False], kind="stable").iloc[0]
    else:
        best = table.assign(obj=table["ap"] - table["fpr95"]).sort_values("obj", ascending=False,
                                                                            kind="stable").iloc[0]
    return GridSearchResult({k: float(best[k]) for k in ORDER},
                            {k: float(best[k]) for k in ("ap", "fpr95", "auroc")}, table)


def grid_threads() -> int:
    """Threads for the candidates: the CPUs this process may run on, at most 8 (each holds its candidate's sum and
    keys, ~8 bytes a pooled pixel: at most 32 MB at :attr:`_Pooled.MAX_PIXELS`)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


class _Pooled:
    """The valid pixels of every map, pooled once, so each candidate costs one weighted sum and one counting pass
    over the negatives' keys against the (few) positives' — 5.2 s → 0.6–0.9 s for a 224-candidate search over
    680k pixels (demo FS Static, ``benchmarks/README.md``) with a sort of the negatives per candidate, against
    re-combining and re-ranking every image per candidate; the counting pass, another 6.6–7.6× on that step."""

    #: the streaming metric is exact up to its buffer; past it the pooled copy would grow with the data
    MAX_PIXELS = 2**22

    def __init__(self, positives: dict[str, np.ndarray], negatives: dict[str, np.ndarray]):
        self.positives, self.negatives = positives, negatives

    @classmethod
    def of(cls, maps: Mapping[str, Sequence[np.ndarray]], labels: Sequence[np.ndarray]) -> _Pooled | None:
        """Pool the valid pixels (labels 0 / 1) of every image, or None past :attr:`MAX_PIXELS`."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ORDER}
        positive, total = [], 0
        for i, y in enumerate(labels):
            for k in ORDER:
                s, yk = valid_pixels(maps[k][i], y, IGNORE_INDEX)  # the streaming metric's checks, per map
                parts[k].append(s)
            total += len(yk)
            if total > cls.MAX_PIXELS:
                return None
            positive.append(yk == 1)
        pos = np.concatenate(positive)
        values = {k: np.concatenate(v) for k, v in parts.items()}
        return cls({k: v[pos] for k, v in values.items()}, {k: v[~pos] for k, v in values.items()})

    def metrics(self, weights: Mapping[str, float]) -> dict[str, float]:
        return metrics_from_keys(self._keys(self.positives, weights), self._keys(self.negatives, weights))

    def metrics_of(self, weightings: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
        """:meth:`metrics` of each weighting, in order, on up to :func:`grid_threads` threads: each candidate is
        independent and its arithmetic the same on any thread (numpy's and the numba kernels' loops release the
        GIL), so the values are those of one thread, bit for bit; 1.72× on 2 cores (benchmarks/README.md)."""
        threads = min(grid_threads(), len(weightings))
        if threads <= 1:
            return [self.metrics(w) for w in weightings]
        with ThreadPoolExecutor(threads, thread_name_prefix="grid") as pool:
            return list(pool.map(self.metrics, weightings))

    @staticmethod
    def _keys(values: dict[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
        # the same float32 sum, term by term, as combine(): identical scores
        return score_keys(sum(float(weights.get(k, 0.0)) * values[k] for k in ORDER))
