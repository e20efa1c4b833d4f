"""SegmentMeIfYouCan component metrics: sIoU per ground-truth component, PPV per predicted component, mean F1.

As the SMIYC benchmark defines them (``road-anomaly-benchmark``, metrics/instance_segmentation.py):
threshold the score at the best-F1 pixel threshold (unless given; prediction = score > threshold, as the benchmark's
instancer, so a pixel scored exactly at it is not anomalous); predicted components = 8-connected components
of the prediction zeroed on void pixels, those smaller than ``min_pred_size`` removed; ground-truth components =
8-connected components of label 1, those smaller than ``min_gt_size`` ignored (made void *after* the predicted
components are formed and filtered, as the benchmark does); everything is then restricted to the non-void pixels.

* sIoU(k) = |k ∩ P(k)| / (|k| + |P(k)| − |k ∩ P(k)| − |P(k) ∩ other ground-truth components|), P(k) = the
  predicted components touching k;
* PPV(j) = |j ∩ GT| / |j|;
* at τ: TP = #GT with sIoU ≥ τ, FN = #GT with sIoU < τ, FP = #pred with PPV < τ; F1(τ) = 2TP / (2TP + FN + FP);
  mean F1 over τ = 0.25, 0.30, …, 0.75. sIoU and PPV are means over all components of the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from reprolib.labels import IGNORE_INDEX
from reprolib.metrics._pixels import exact_counts, to_numpy, valid_pixels

TAUS = tuple(np.round(np.arange(0.25, 0.751, 0.05), 2))
_EIGHT = np.ones((3, 3), int)


def best_f1_threshold(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], ignore_index: int = IGNORE_INDEX) -> float:
    """The pixel threshold maximising F1 over all valid pixels (score ≥ threshold = anomaly)."""
    pairs = [valid_pixels(s, y, ignore_index) for s, y in zip(scores, labels, strict=True)]
    s = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    pos, neg = exact_counts(s, y)
    thresholds = np.unique(s)[::-1]
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    f1 = 2 * tp / np.maximum(tp + fp + tp[-1], 1)
    return float(thresholds[int(np.argmax(f1))])


def component_metrics(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], threshold: float | None = None,
                      min_gt_size: int = 100, min_pred_size: int = 500, ignore_index: int = IGNORE_INDEX) -> dict:
    """sIoU, PPV, mean F1 (and F1 per τ) over a list of images."""
    scores = [to_numpy(s).astype(np.float32) for s in scores]
    labels = [to_numpy(y).astype(np.int64) for y in labels]
    if threshold is None:
        threshold = best_f1_threshold(scores, labels, ignore_index)
    sious, ppvs = [], []
    for s, y in zip(scores, labels, strict=True):
        # SMIYC's order (default_instancer): predicted components are found and size-filtered on the image minus
        # its void; only then do the small GT components become void, and both maps are restricted to the ROI
        pred = (s > threshold) & (y != ignore_index)  # SMIYC's rule: anomaly_p > thresh_p
        pred_cc, n_pred = ndimage.label(pred, structure=_EIGHT)
        psizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1)
        pred_cc[np.isin(pred_cc, np.flatnonzero(psizes < min_pred_size))] = 0
        gt_cc, n_gt = ndimage.label(y == 1, structure=_EIGHT)
        sizes = np.bincount(gt_cc.ravel(), minlength=n_gt + 1)
        small = np.flatnonzero(sizes < min_gt_size)
        small = small[small > 0]
        outside_roi = (y == ignore_index) | np.isin(gt_cc, small)
        gt_cc[outside_roi] = 0
        pred_cc[outside_roi] = 0
        gt_any = gt_cc > 0
        for k in np.unique(gt_cc[gt_any]):
            comp = gt_cc == k
            touching = np.unique(pred_cc[comp & (pred_cc > 0)])
            pk = np.isin(pred_cc, touching) if len(touching) else np.zeros_like(comp)
            inter = int((comp & pk).sum())
            other = int((pk & gt_any & ~comp).sum())
            denom = int(comp.sum()) + int(pk.sum()) - inter - other
            sious.append(inter / denom if denom else 0.0)
        for j in np.unique(pred_cc[pred_cc > 0]):
            comp = pred_cc == j
            ppvs.append(float((comp & gt_any).sum()) / float(comp.sum()))
    sious_a, ppvs_a = np.asarray(sious), np.asarray(ppvs)
    f1 = {}
    for tau in TAUS:
        tp = int((sious_a >= tau).sum())
        fn = int((sious_a < tau).sum())
        fp = int((ppvs_a < tau).sum())
        f1[float(tau)] = 2 * tp / (2 * tp + fn + fp) if (2 * tp + fn + fp) else float("nan")
    return {"siou": float(sious_a.mean()) if sious else float("nan"),
            "ppv": float(ppvs_a.mean()) if ppvs else float("nan"),
            "mean_f1": float(np.nanmean(list(f1.values()))), "f1_per_tau": f1, "threshold": float(threshold)}
