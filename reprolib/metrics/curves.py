"""From per-threshold (#positives, #negatives) counts to AP, FPR95 and AUROC: the one curve routine both
modes of the pixel metrics share (:func:`curve_metrics`), and its form for histograms whose bins may hold
several scores (:func:`metrics_from_histograms`)."""

from __future__ import annotations

import numpy as np

from reprolib.metrics import kernels


def curve_metrics(pos: np.ndarray, neg: np.ndarray) -> dict[str, float]:
    """AP / FPR95 / AUROC from per-threshold counts ordered from the highest score to the lowest."""
    tps = np.cumsum(pos, dtype=np.float64)
    fps = np.cumsum(neg, dtype=np.float64)
    P, N = (tps[-1] if len(tps) else 0.0), (fps[-1] if len(fps) else 0.0)
    if P == 0 or N == 0:
        raise ValueError(f"metrics need both classes among the valid pixels (positives={P:.0f}, negatives={N:.0f})")
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / P
    # sklearn step form: AP = Σ (R_k − R_{k−1}) · P_k
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    tpr = np.concatenate([[0.0], recall])
    fpr = np.concatenate([[0.0], fps / N])
    auroc = float(np.trapezoid(tpr, fpr))
    fpr95 = float(fpr[np.searchsorted(tpr, 0.95, side="left")])
    return {"ap": ap, "fpr95": fpr95, "auroc": auroc}


def metrics_from_histograms(pos: np.ndarray, neg: np.ndarray, spread: np.ndarray | None = None) -> dict[str, float]:
    """Metrics from (positive, negative) histograms ordered low → high score.

    ``spread[b]`` marks bins holding more than one distinct score. Their AP contribution is the expectation
    under a random order of the bin's pixels (each positive's expected precision, summed) instead
    of sklearn's tie step, which is what the unseen exact order averages to when a bin is narrow. AUROC's
    trapezoid already is that expectation; FPR95, when its crossing falls in a spread bin, is the expected
    FPR at the crossing positive under that random order.
    """
    nz = (pos + neg) > 0
    p, n = pos[nz][::-1].astype(np.float64), neg[nz][::-1].astype(np.float64)
    out = curve_metrics(p, n)
    if spread is None or not spread[nz].any():
        return out
    sp = spread[nz][::-1]
    P = p.sum()
    t0 = np.concatenate([[0.0], np.cumsum(p)[:-1]])
    b0 = t0 + np.concatenate([[0.0], np.cumsum(n)[:-1]])
    c = p + n
    step = (p / P) * (t0 + p) / (b0 + c)
    # Expected step-form contribution under a random order of the bin's pixels: its j-th positive sits, on
    # average, at position j·a (a = (c+1)/(p+1)) and scores precision (t0+j)/(b0+j·a). The sum over j is
    # taken as the integral over [½, p+½] (midpoint rule; exact for p = c = 1, error O((c/b0)²) per bin).
    # The plain integral over [0, p] instead is biased by O(1/b0) per positive, which adds up over many
    # small bins (measured: 2e-6 in AP on 5·10^6 pixels).
    a = (c + 1) / (p + 1)
    expected = (p / a + (t0 - b0 / a) / a * np.log1p(a * p / (b0 + a / 2))) / P
    out["ap"] = float(np.sum(np.where(sp, expected, step)))
    # FPR95 inside a spread bin: the k-th of its p positives is preceded, in expectation over a random
    # order, by k·n/(p+1) of its n negatives (instead of all n: the bin's upper edge)
    tps, fps = np.cumsum(p), np.cumsum(n)
    i = int(np.searchsorted(tps / P, 0.95, side="left"))
    if i < len(p) and sp[i]:
        k = np.ceil(0.95 * P - (tps[i] - p[i]) - 1e-9)
        out["fpr95"] = float((fps[i] - n[i] + k * n[i] / (p[i] + 1)) / fps[-1])
    return out


def metrics_from_keys(pos_keys: np.ndarray, neg_keys: np.ndarray) -> dict[str, float]:
    """AP / FPR95 / AUROC from the positives' and the negatives' score keys (uint32, any order): the same
    values as :func:`curve_metrics` over every distinct threshold (up to the order of a float sum).

    The curve only moves where a threshold holds a positive, so only the negatives at and under each distinct
    positive key are needed: :func:`~reprolib.metrics.kernels.rank_among` counts them in one pass, where a sort
    of the negatives and a binary search per threshold gave the very same counts 7× slower (the grid-search
    ensemble does this for each of its 224 candidates: ``python benchmarks/metrics.py --grid``). AUROC is the
    Mann–Whitney count (ties count ½), which the trapezoid rule over all thresholds equals.
    """
    P, N = len(pos_keys), len(neg_keys)
    if P == 0 or N == 0:
        raise ValueError(f"metrics need both classes among the valid pixels (positives={P}, negatives={N})")
    kp = np.sort(np.asarray(pos_keys, np.uint32))
    starts = np.flatnonzero(np.concatenate([[True], kp[1:] != kp[:-1]]))
    thresholds, count = kp[starts], np.diff(np.concatenate([starts, [P]]))
    at_rank, tied = kernels.rank_among(np.ascontiguousarray(neg_keys, np.uint32), thresholds,
                                       _cell_shift(thresholds))
    below = np.cumsum(at_rank)[:-1] - tied  # negatives under each threshold
    # highest threshold first, as the curve
    return _curve_at_positives(count[::-1], below[::-1], tied[::-1], P, N)


def _cell_shift(thresholds: np.ndarray) -> int:
    """Key bits per cell of :func:`~reprolib.metrics.kernels.rank_among`'s table: about 16 cells per threshold,
    at least 2^10 and at most 2^18 cells (1 MB: cache-sized), whatever the span of the keys."""
    cells = min(2**18, max(2**10, 16 * len(thresholds)))
    span = int(thresholds[-1]) - int(thresholds[0])
    return max(0, span.bit_length() - cells.bit_length() + 1)


def _curve_at_positives(count: np.ndarray, below: np.ndarray, tied: np.ndarray, P: int, N: int) -> dict[str, float]:
    """The metrics from each distinct positive threshold (highest first): its positives, the negatives under it
    and those tied with it."""
    tps = np.cumsum(count, dtype=np.float64)
    fps = (N - below).astype(np.float64)  # negatives at or above the threshold
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / P
    ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    tpr = np.concatenate([[0.0], recall])
    fpr = np.concatenate([[0.0], fps / N])
    fpr95 = float(fpr[np.searchsorted(tpr, 0.95, side="left")])
    wins = int(np.sum(count * (2 * below.astype(np.int64) + tied)))  # 2 × (pairs ranked right + ½ ties)
    return {"ap": ap, "fpr95": fpr95, "auroc": wins / (2.0 * P * N)}
