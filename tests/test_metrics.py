"""Fishyscapes metrics against sklearn (the bdlb definitions), streaming vs exact, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from reprolib.metrics import AnomalyMetrics, anomaly_metrics


def _sklearn(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    keep = labels != 255
    s, y = scores[keep].astype(np.float32), labels[keep]
    fpr, tpr, _ = roc_curve(y, s)
    return {"ap": average_precision_score(y, s), "auroc": roc_auc_score(y, s),
            "fpr95": float(fpr[np.searchsorted(tpr, 0.95)])}


@pytest.mark.parametrize("decimals", [None, 2, 1])
def test_exact_equals_sklearn_with_ties(decimals: int | None) -> None:
    rng = np.random.default_rng(decimals or 0)
    y = (rng.random(30000) < 0.05).astype(np.uint8)
    s = rng.normal(size=30000) + 1.5 * y  # logits of any sign
    if decimals is not None:
        s = np.round(s, decimals)
    y[rng.random(30000) < 0.1] = 255
    ours, ref = anomaly_metrics(s, y), _sklearn(s, y)
    for k in ("ap", "auroc", "fpr95"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-9), k


def test_constant_scores_and_single_positive() -> None:
    y = np.zeros(1000, np.uint8)
    y[3] = 1
    const = anomaly_metrics(np.full(1000, 0.5), y)
    assert const == pytest.approx(_sklearn(np.full(1000, 0.5), y), abs=1e-12)
    s = np.linspace(0, 1, 1000)
    assert anomaly_metrics(s, y) == pytest.approx(_sklearn(s, y), abs=1e-12)


def test_lists_tensors_and_all_void_images() -> None:
    rng = np.random.default_rng(1)
    ys = [(rng.random((16, 16)) < 0.1).astype(np.uint8) for _ in range(3)]
    ss = [rng.random((16, 16)) + y for y in ys]
    ys.append(np.full((16, 16), 255, np.uint8))  # an all-void image contributes nothing
    ss.append(rng.random((16, 16)))
    ref = anomaly_metrics(np.concatenate([s.ravel() for s in ss[:3]]), np.concatenate([y.ravel() for y in ys[:3]]))
    assert anomaly_metrics([torch.from_numpy(s) for s in ss], [torch.from_numpy(y) for y in ys]) == pytest.approx(ref)
    acc = AnomalyMetrics(exact=True)
    for s, y in zip(ss, ys, strict=True):
        acc.update(s, y)
    assert acc.compute() == pytest.approx(ref)


def test_streaming_close_to_exact_on_softmax_maps() -> None:
    rng = np.random.default_rng(2)
    acc = AnomalyMetrics(exact=False)
    ss, ys = [], []
    for _ in range(5):
        y = (rng.random((64, 128)) < 0.02).astype(np.uint8)
        logits = torch.from_numpy(rng.normal(size=(2, 64, 128)).astype(np.float32))
        logits[1] += torch.from_numpy(2.0 * y)
        p = torch.softmax(logits, 0)[1]
        acc.update(p, y)
        ss.append(p.numpy())
        ys.append(y)
    exact = anomaly_metrics(ss, ys)
    stream = acc.compute()
    bound = {"ap": 1e-3, "fpr95": 1e-3, "auroc": 1e-5}  # documented in reprolib.metrics.pixel (small set here)
    for k in exact:
        assert abs(exact[k] - stream[k]) <= bound[k], k
    # exact when all scores are distinct bins apart (8-bit maps; float16 scores, as the score cache stores)
    q = [np.round(s * 255) / 255 for s in ss]
    assert anomaly_metrics(q, ys, exact=False) == pytest.approx(anomaly_metrics(q, ys), abs=1e-12)
    h = [s.astype(np.float16) for s in ss]
    assert anomaly_metrics(h, ys, exact=False) == pytest.approx(anomaly_metrics(h, ys), abs=1e-12)


def test_streaming_fpr95_inside_a_spread_bin() -> None:
    """The FPR95 crossing inside a bin of many distinct scores: the expectation over a random order of the
    bin's pixels, not the bin's upper edge (which would count all of its negatives)."""
    rng = np.random.default_rng(5)
    # 1000 positives well above, then one bin-narrow cluster holding 100 positives and 10000 negatives
    s = np.concatenate([np.linspace(0.9, 0.99, 1000), 0.5 + rng.random(10100) * 1e-5]).astype(np.float32)
    y = np.concatenate([np.ones(1000), np.ones(100), np.zeros(10000)]).astype(np.uint8)
    y[1000:] = rng.permutation(y[1000:])
    exact = anomaly_metrics(s, y)["fpr95"]
    stream = anomaly_metrics(s, y, exact=False)["fpr95"]
    # crossing at the 45th positive of the cluster: exact ≈ 45/101 of the cluster's negatives
    assert stream == pytest.approx(45 * 10000 / 101 / 10000, abs=1e-9)
    assert abs(stream - exact) < 0.1 and abs(1.0 - exact) > 0.3  # the bin edge would give FPR 1.0


def test_bad_input() -> None:
    y = np.array([0, 1, 0, 1], np.uint8)
    with pytest.raises(ValueError, match="NaN or infinite"):
        anomaly_metrics(np.array([0.1, np.nan, 0.2, 0.3]), y)
    with pytest.raises(ValueError, match="does not match labels shape"):
        anomaly_metrics(np.zeros(3), y)
    with pytest.raises(ValueError, match="labels must be 0, 1 or 255"):
        anomaly_metrics(np.zeros(4), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="both classes"):
        anomaly_metrics(np.zeros(4), np.zeros(4, np.uint8))


def test_signed_zero_ties_and_label_dtypes() -> None:
    """−0.0 and +0.0 are one threshold (as for sklearn); labels of any integer dtype, whole-number floats."""
    rng = np.random.default_rng(7)
    s = rng.choice(np.array([-0.0, 0.0, 0.5, -0.5, 1.0], np.float32), 5000)
    y = (rng.random(5000) < 0.3).astype(np.uint8)
    assert anomaly_metrics(s, y) == pytest.approx(_sklearn(s, y), abs=1e-12)
    assert anomaly_metrics(s, y, exact=False) == pytest.approx(_sklearn(s, y), abs=1e-12)
    y32 = y.astype(np.int32)
    y32[:100] = -1
    ref = _sklearn(s[100:], y[100:])
    assert anomaly_metrics(s, y32, ignore_index=-1) == pytest.approx(ref, abs=1e-12)
    assert anomaly_metrics(torch.from_numpy(s), torch.from_numpy(y32), ignore_index=-1) == pytest.approx(ref, abs=1e-12)
    assert anomaly_metrics(s, y.astype(np.float32)) == pytest.approx(_sklearn(s, y), abs=1e-12)
    with pytest.raises(ValueError, match="non-integer"):
        anomaly_metrics(s, y.astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match=r"found \[2\]"):
        anomaly_metrics(s, np.where(y == 1, 2, 0).astype(np.uint8))
