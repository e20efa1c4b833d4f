"""Bootstrap intervals, seed aggregation and paired comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reprolib.metrics import anomaly_metrics
from reprolib.metrics.uncertainty import aggregate_seeds, bootstrap_ci, paired_comparison


def _images(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    ys = [(rng.random((32, 32)) < 0.1).astype(np.uint8) for _ in range(n)]
    ss = [np.round(rng.random((32, 32)) * 0.6 + 0.4 * y, 2) for y in ys]
    return ss, ys


def test_bootstrap_is_seeded_and_contains_the_point() -> None:
    ss, ys = _images()
    a = bootstrap_ci(ss, ys, "ap", n_boot=200, seed=1)
    assert a == bootstrap_ci(ss, ys, "ap", n_boot=200, seed=1)
    assert a != bootstrap_ci(ss, ys, "ap", n_boot=200, seed=2)
    point, lo, hi = a
    assert lo <= point <= hi and hi - lo > 0
    assert point == pytest.approx(anomaly_metrics(ss, ys)["ap"], abs=1e-9)  # 2-decimal scores: exact bins
    with pytest.raises(ValueError, match="metric"):
        bootstrap_ci(ss, ys, "iou")


def test_seed_aggregation_and_paired_comparison() -> None:
    df = pd.DataFrame({"variant": ["full"] * 3 + ["ablated"] * 3, "dataset": "d", "metric": "ap",
                       "value": [0.5, 0.6, 0.7, 0.3, 0.35, 0.4]})
    agg = aggregate_seeds(df).set_index("variant")
    assert agg.loc["full", "mean"] == pytest.approx(0.6) and agg.loc["full", "std"] == pytest.approx(0.1)
    res = paired_comparison([0.5, 0.6, 0.7], [0.3, 0.35, 0.4])
    assert res["mean_diff"] == pytest.approx(0.25) and res["t_pvalue"] < 0.05 and res["n"] == 3
    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison([0.1], [0.2])


def test_bootstrap_intervals_share_one_resampling_and_sum_histograms_exactly() -> None:
    from reprolib.metrics import metrics_from_histograms
    from reprolib.metrics.uncertainty import _image_histograms, bootstrap_intervals

    ss, ys = _images(n=9, seed=4)
    both = bootstrap_intervals(ss, ys, ("ap", "fpr95"), n_boot=150, seed=3)
    assert both["ap"] == bootstrap_ci(ss, ys, "ap", n_boot=150, seed=3)
    assert both["fpr95"] == bootstrap_ci(ss, ys, "fpr95", n_boot=150, seed=3)
    # the plain form: add up the drawn images' histograms, one resample after another
    pos, neg, spread = _image_histograms(ss, ys, 16, 255)
    assert not spread.any()  # 2-decimal scores: one distinct score per bin, so the binned metrics are exact
    rng = np.random.default_rng(3)
    plain = []
    for _ in range(150):
        idx = rng.integers(0, len(pos), len(pos))
        p, q = pos[idx].sum(0), neg[idx].sum(0)
        if p.sum() and q.sum():
            plain.append(metrics_from_histograms(p, q)["fpr95"])
    assert both["fpr95"][1:] == tuple(float(v) for v in np.quantile(plain, [0.025, 0.975]))
    with pytest.raises(ValueError, match="metric"):
        bootstrap_intervals(ss, ys, ("ap", "iou"))


def test_a_confident_detector_lies_inside_its_own_interval() -> None:
    # most anomalies score in [0.996, 1), one bin of the 16-bit keys: counted as one tie, the bins biased every
    # resample's AP low and the interval came out below the exact AP reported beside it (0.9835 vs 0.9885)
    from reprolib.metrics.uncertainty import bootstrap_intervals

    rng = np.random.default_rng(0)
    ys = [(rng.random((64, 128)) < 0.02).astype(np.uint8) for _ in range(12)]
    ss = [(1 / (1 + np.exp(-np.where(y == 1, rng.normal(7, 2, y.shape), rng.normal(-4, 2.5, y.shape))))).astype(
        np.float32) for y in ys]
    exact = anomaly_metrics(ss, ys)
    got = bootstrap_intervals(ss, ys, ("ap", "fpr95"), n_boot=200, seed=0)
    for metric in ("ap", "fpr95"):
        point, lo, hi = got[metric]
        assert point == exact[metric] and lo <= point <= hi and hi - lo > 0, (metric, got[metric])


def test_grouped_intervals_resample_each_group_and_average() -> None:
    # a cross-fitted row is the mean of its two halves' metrics: so are its point and every resample
    from reprolib.metrics.uncertainty import bootstrap_intervals

    ss, ys = _images(n=10, seed=6)
    groups = [i % 2 for i in range(10)]
    got = bootstrap_intervals(ss, ys, ("ap", "fpr95"), n_boot=100, seed=1, groups=groups)
    halves = [anomaly_metrics(ss[h::2], ys[h::2]) for h in (0, 1)]
    for metric in ("ap", "fpr95"):
        point, lo, hi = got[metric]
        assert point == pytest.approx((halves[0][metric] + halves[1][metric]) / 2, abs=1e-12) and lo <= point <= hi
    assert got != bootstrap_intervals(ss, ys, ("ap", "fpr95"), n_boot=100, seed=1)  # pooled: another metric
    assert bootstrap_intervals(ss, ys, ("ap",), n_boot=100, seed=1, groups=[0] * 10) == bootstrap_intervals(
        ss, ys, ("ap",), n_boot=100, seed=1)  # one group is the plain bootstrap


def test_spread_marks_the_bins_holding_several_distinct_scores() -> None:
    from reprolib.metrics._pixels import score_keys
    from reprolib.metrics.uncertainty import _image_histograms

    rng = np.random.default_rng(2)
    ss = [rng.random((16, 16)).astype(np.float32) ** 4 for _ in range(5)]
    ss[1][:] = ss[0][0, 0]  # one image of a single score: its bin is spread only through the other images
    ys = [(rng.random((16, 16)) < 0.2).astype(np.uint8) for _ in range(5)]
    _, _, spread = _image_histograms(ss, ys, 16, 255)
    keys = np.unique(np.concatenate([score_keys(s.ravel()) for s in ss]))
    assert np.array_equal(spread, np.bincount((keys >> np.uint32(16)).astype(np.int64), minlength=2**16) > 1)
    assert 0 < spread.sum() < len(keys)


def test_clustered_intervals_resample_whole_sequences() -> None:
    # frames of one Lost & Found sequence are near-duplicates: drawn one by one, k copies of an image count as
    # k independent images and narrow the interval; drawn as one sequence they weigh what the image alone does
    from reprolib.metrics.uncertainty import bootstrap_intervals

    ss, ys = _images(n=10, seed=7)
    alone = bootstrap_intervals(ss, ys, ("ap", "fpr95"), n_boot=150, seed=2)
    assert bootstrap_intervals(ss, ys, ("ap", "fpr95"), n_boot=150, seed=2,
                               clusters=[f"s{i}" for i in range(10)]) == alone  # one image per sequence
    copies = [s for s in ss for _ in range(3)], [y for y in ys for _ in range(3)]
    sequences = [i // 3 for i in range(30)]
    clustered = bootstrap_intervals(*copies, ("ap", "fpr95"), n_boot=150, seed=2, clusters=sequences)
    per_frame = bootstrap_intervals(*copies, ("ap", "fpr95"), n_boot=150, seed=2)
    for metric in ("ap", "fpr95"):
        assert clustered[metric] == pytest.approx(alone[metric], abs=1e-12)
        assert per_frame[metric][2] - per_frame[metric][1] < clustered[metric][2] - clustered[metric][1]
    # with halves: each half resamples its own sequences, which must not straddle the halves
    halves = [s % 2 for s in sequences]
    assert bootstrap_intervals(*copies, ("ap",), n_boot=50, seed=2, groups=halves, clusters=sequences)["ap"] == \
        pytest.approx(bootstrap_intervals(ss, ys, ("ap",), n_boot=50, seed=2, groups=[i % 2 for i in range(10)])["ap"],
                      abs=1e-12)
    with pytest.raises(ValueError, match="two groups"):
        bootstrap_intervals(*copies, ("ap",), n_boot=5, groups=[i % 2 for i in range(30)], clusters=sequences)
    with pytest.raises(ValueError, match="29 cluster labels for 30 images"):
        bootstrap_intervals(*copies, ("ap",), n_boot=5, clusters=sequences[:-1])
