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
