"""Fishyscapes pixel metrics (bdlb ``calculate_metrics_perpixAP``): AP, FPR at 95 % TPR, AUROC.

Only labels 0 (known) and 1 (anomaly) count, and pixels labelled ``ignore_index`` (255 by default) are dropped;
any other label, a non-integer one included, or a NaN or infinite score is a ``ValueError``
(:mod:`reprolib.metrics._pixels`, in both modes). AP is the step form of
``sklearn.metrics.average_precision_score``; AUROC the trapezoid rule over (FPR, TPR) with (0, 0) prepended; FPR95
the FPR at the first threshold whose TPR ≥ 0.95.

Two modes share one curve routine over (threshold, #positives, #negatives) counts:

* **exact**: the distinct float32 scores of all valid pixels with counts per class (plain sorts of their
  uint32 keys) — equal to sklearn on the concatenated pixels, ties included (−0.0 = +0.0).
* **streaming** (:class:`AnomalyMetrics` with ``exact=False``): memory bounded by its settings, whatever
  the number of pixels. The first ``buffer_pixels`` are kept exactly; from them a histogram over the
  order-preserving uint32 key of the float32 score is laid out with a resolution *relative to the rank*
  (:func:`adaptive_layout`: a bin holds at most ``eps`` × the pixels ranked above it, which is what bounds
  the step-form AP); the ``top_pixels`` highest scores stay exact. A bin holding several scores contributes
  the expectation over a random order of its pixels (:func:`metrics_from_histograms`). For FPR95 the keys of
  the anomaly pixels in a band of bins around the crossing are kept too, so the crossing's key is exact and
  only the negatives of its one bin are split, by key (:meth:`AnomalyMetrics.fpr95_error_bound` is a hard
  bound on the FPR95 error). The per-pixel work is one compiled pass (:mod:`reprolib.metrics.kernels`).

Measured accuracy against exact mode, speed and memory: ``benchmarks/README.md``.

This module holds the entry point :func:`anomaly_metrics` (and re-exports the rest); the curve routine is in
:mod:`reprolib.metrics.curves`, the accumulator in :mod:`reprolib.metrics.streaming`, and the input checks and
exact counts that both modes (and the component and uncertainty metrics) use in :mod:`reprolib.metrics._pixels`.
"""

from __future__ import annotations

from collections.abc import Sequence

from reprolib.labels import IGNORE_INDEX
from reprolib.metrics._pixels import ArrayLike, as_list, pooled_counts
from reprolib.metrics.curves import curve_metrics, metrics_from_histograms
from reprolib.metrics.streaming import AnomalyMetrics, adaptive_layout

__all__ = ["AnomalyMetrics", "adaptive_layout", "anomaly_metrics", "curve_metrics", "metrics_from_histograms"]


def anomaly_metrics(
    scores: ArrayLike | Sequence[ArrayLike], labels: ArrayLike | Sequence[ArrayLike], ignore_index: int = IGNORE_INDEX,
    exact: bool = True,
) -> dict[str, float]:
    """AP, FPR95 and AUROC over every valid pixel of ``scores``/``labels`` (arrays, tensors or lists of them)."""
    s_list, y_list = as_list(scores), as_list(labels)
    if len(s_list) != len(y_list):
        raise ValueError(f"{len(s_list)} score maps but {len(y_list)} label maps")
    if not exact:
        acc = AnomalyMetrics(exact=False, ignore_index=ignore_index)
        for s, y in zip(s_list, y_list, strict=True):
            acc.update(s, y)
        return acc.compute()
    return curve_metrics(*pooled_counts(s_list, y_list, ignore_index))
