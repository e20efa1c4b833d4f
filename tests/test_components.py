"""SMIYC component metrics on hand-built masks with hand-computed sIoU / PPV / F1."""

from __future__ import annotations

import numpy as np
import pytest

from reprolib.metrics.components import TAUS, best_f1_threshold, component_metrics


def test_hand_built_case() -> None:
    y = np.zeros((20, 40), np.int64)
    y[2:6, 2:6] = 1  # GT A: 16 px
    y[10:14, 20:24] = 1  # GT B: 16 px
    s = np.zeros((20, 40), np.float32)
    s[2:6, 2:8] = 1.0  # prediction 1: covers A (16) + 8 background px → 24 px
    s[18:20, 30:34] = 1.0  # prediction 2: 8 background px, no GT
    res = component_metrics([s], [y], threshold=0.5, min_gt_size=1, min_pred_size=1)
    # sIoU(A) = 16 / (16 + 24 − 16 − 0) = 2/3; sIoU(B) = 0 (nothing touches it)
    assert res["siou"] == pytest.approx((2 / 3 + 0) / 2)
    # PPV(1) = 16/24, PPV(2) = 0
    assert res["ppv"] == pytest.approx((16 / 24 + 0) / 2)
    # τ ≤ 0.65: TP=1 (A), FN=1 (B), FP=1 (pred 2; pred 1 has PPV 0.667 ≥ τ) → F1 = 2/(2+1+1) = 0.5
    assert res["f1_per_tau"][0.5] == pytest.approx(0.5)
    # τ = 0.7: A's sIoU 0.667 < τ → TP 0, FN 2; FP 2 → F1 = 0
    assert res["f1_per_tau"][0.7] == pytest.approx(0.0)
    assert len(res["f1_per_tau"]) == len(TAUS) == 11


def test_size_filters_and_other_components_adjustment() -> None:
    y = np.zeros((10, 30), np.int64)
    y[2:6, 2:6] = 1  # GT A
    y[2:6, 7:11] = 1  # GT B, separated by one column
    y[8, 28] = 1  # a 1-pixel GT component: ignored with min_gt_size=2
    s = np.zeros((10, 30), np.float32)
    s[2:6, 2:11] = 1.0  # one prediction covering A, the gap and B
    res = component_metrics([s], [y], threshold=0.5, min_gt_size=2, min_pred_size=1)
    # sIoU(A) = 16 / (16 + 36 − 16 − 16 [B's pixels in P(A)]) = 0.8, same for B
    assert res["siou"] == pytest.approx(0.8)
    assert res["ppv"] == pytest.approx(32 / 36)
    res2 = component_metrics([s], [y], threshold=0.5, min_gt_size=2, min_pred_size=100)
    assert res2["siou"] == 0.0 and np.isnan(res2["ppv"])  # the prediction is removed as too small


def test_best_f1_threshold() -> None:
    y = np.array([[0, 0, 1, 1]])
    s = np.array([[0.1, 0.6, 0.7, 0.9]], np.float32)
    assert best_f1_threshold([s], [y]) == pytest.approx(0.7)


def _smiyc(score: np.ndarray, label: np.ndarray, threshold: float, min_gt: int, min_pred: int) -> tuple[list, list]:
    """(sIoU per GT component, PPV per predicted component) of one image as road-anomaly-benchmark computes them
    (metrics/instance_segmentation.py: ``default_instancer`` then ``segment_metrics``), transcribed."""
    from scipy.ndimage import label as cc

    eight = np.ones((3, 3), np.uint8)
    pred = (score > threshold).astype(np.uint8)
    pred[label == 255] = 0  # only the benchmark's void here
    gt_inst, n_gt = cc(label == 1, eight)
    pred_inst, n_pred = cc(pred, eight)
    kept = pred_inst.copy()
    for comp in range(n_pred + 1):  # small predictions removed at their full size
        if np.sum(pred_inst == comp) < min_pred:
            kept[pred_inst == comp] = 0
    label = label.copy()
    for comp in range(n_gt + 1):  # small GT components become void afterwards
        if np.sum(gt_inst == comp) < min_gt:
            label[gt_inst == comp] = 255
    roi = label < 255
    gt, pr = gt_inst[roi], kept[roi]
    sious = []
    for i in np.unique(gt[gt > 0]):
        loc = pr[gt == i]
        seg = np.unique(loc[loc != 0])
        inter = np.sum(np.isin(loc, seg))
        adjust = np.sum(~np.isin(gt, [0, i]) & np.isin(pr, seg))
        sious.append(inter / (np.sum(np.isin(pr, seg)) + np.sum(gt == i) - inter - adjust))
    ppvs = []
    for j in np.unique(pr[pr > 0]):
        loc = gt[pr == j]
        ppvs.append(np.sum(np.isin(loc, np.unique(loc[loc != 0]))) / np.sum(pr == j))
    return sious, ppvs


def test_matches_the_benchmark_when_small_gt_components_touch_predictions() -> None:
    """Predicted components are found and size-filtered on the image minus its void only; the small GT components
    are voided after that (SMIYC's order). Voiding them first split or shrank predictions that cover them."""
    y = np.zeros((40, 60), np.int64)
    y[5:20, 5:20] = 1  # a large GT component (225 px)
    y[30:33, 30:33] = 1  # a small one (9 px < min_gt_size): void for the metrics
    y[:, 58:] = 255
    s = np.zeros((40, 60), np.float32)
    s[5:20, 5:22] = 0.9  # covers the large GT: 255 px
    s[28:35, 28:36] = 0.9  # 56 px around the small GT: kept (≥ 50), then 47 px of it in the ROI, none on a GT
    res = component_metrics([s], [y], threshold=0.5, min_gt_size=10, min_pred_size=50)
    sious, ppvs = _smiyc(s, y, 0.5, 10, 50)
    assert ppvs == pytest.approx([225 / 255, 0.0])  # the second prediction is a false positive
    assert res["siou"] == pytest.approx(np.mean(sious))
    assert res["ppv"] == pytest.approx(np.mean(ppvs))
    rng = np.random.default_rng(0)
    for _ in range(30):
        y = (rng.random((30, 40)) < 0.08).astype(np.int64)
        y = np.maximum(y, np.kron(rng.random((3, 4)) < 0.3, np.ones((10, 10), np.int64)))
        y[rng.random((30, 40)) < 0.05] = 255
        s = (rng.random((30, 40)) * 0.6 + 0.4 * (y == 1)).astype(np.float32)
        res = component_metrics([s], [y], threshold=0.55, min_gt_size=6, min_pred_size=8)
        sious, ppvs = _smiyc(s, y, 0.55, 6, 8)
        assert res["siou"] == pytest.approx(np.mean(sious) if sious else np.nan, nan_ok=True)
        assert res["ppv"] == pytest.approx(np.mean(ppvs) if ppvs else np.nan, nan_ok=True)


def test_a_score_equal_to_the_threshold_is_not_anomalous_as_in_the_benchmark() -> None:
    """SMIYC's instancer predicts ``anomaly_p > thresh_p``; pixels scored exactly at the threshold (quantised scores,
    a threshold given by hand) counted as anomalous here (``≥``) and formed other components."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = np.maximum((rng.random((30, 40)) < 0.05).astype(np.int64),
                       np.kron(rng.random((3, 4)) < 0.3, np.ones((10, 10), np.int64)))
        s = (np.round((rng.random((30, 40)) * 0.6 + 0.4 * (y == 1)) * 4) / 4).astype(np.float32)  # 0, .25, …, 1
        assert (s == 0.5).any()
        res = component_metrics([s], [y], threshold=0.5, min_gt_size=6, min_pred_size=8)
        sious, ppvs = _smiyc(s, y, 0.5, 6, 8)
        assert res["siou"] == pytest.approx(np.mean(sious) if sious else np.nan, nan_ok=True)
        assert res["ppv"] == pytest.approx(np.mean(ppvs) if ppvs else np.nan, nan_ok=True)
