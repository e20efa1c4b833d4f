"""Fishyscapes metrics against sklearn (the bdlb definitions), streaming vs exact, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from reprolib.metrics import AnomalyMetrics, anomaly_metrics, metrics_from_histograms


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


def _score_maps(kind: str, n: int, seed: int = 2, shape: tuple[int, int] = (64, 128)) -> tuple[list, list]:
    """Realistic maps: per-pixel softmax, or spatially smooth logits / sigmoids with blob-shaped anomalies."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    h, w = shape
    ss, ys = [], []
    for _ in range(n):
        if kind == "softmax":
            y = (rng.random(shape) < 0.02).astype(np.uint8)
            logits = rng.normal(size=(2, h, w)).astype(np.float32)
            logits[1] += 2.0 * y
            s = torch.softmax(torch.from_numpy(logits), 0)[1].numpy()
        else:
            y = np.zeros(shape, np.uint8)
            yy, xx = np.ogrid[:h, :w]
            for _ in range(rng.integers(1, 4)):
                cy, cx, r = rng.integers(h // 2, h), rng.integers(0, w), rng.integers(3, 10)
                y[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 1
            z = gaussian_filter(rng.normal(size=shape), 3) * 20 - 3 + 5 * gaussian_filter(y.astype(float), 2)
            z += 0.5 * rng.normal(size=shape)
            y[rng.random(shape) < 0.05] = 255
            s = (z if kind == "logit" else 1 / (1 + np.exp(-z))).astype(np.float32)
        ss.append(s)
        ys.append(y)
    return ss, ys


def _small_stream(**kw: int) -> AnomalyMetrics:
    """Streaming with every store far smaller than the data, so the histogram, top and band paths all run."""
    return AnomalyMetrics(exact=False, **{"buffer_pixels": 2**14, "top_pixels": 2**11, "band_positives": 2**10,
                                          "max_bins": 2**18, **kw})


def _assert_within_bounds(acc: AnomalyMetrics, stream: dict, exact: dict, tol: float) -> None:
    """AP and AUROC within ``tol``; FPR95 within the accumulator's own hard bound (and ``tol`` when that is 0)."""
    for k in ("ap", "auroc"):
        assert abs(exact[k] - stream[k]) <= tol, (k, exact[k], stream[k])
    bound = acc.fpr95_error_bound()
    assert abs(exact["fpr95"] - stream["fpr95"]) <= max(bound, tol), (exact["fpr95"], stream["fpr95"], bound)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "logit"])
def test_streaming_with_small_stores_stays_within_its_bounds(kind: str) -> None:
    """Stores 30–500× smaller than the data (4.9·10^5 pixels), so every path runs: the histogram, the top store's
    compaction and the band's narrowing. The layout's sample is then two images, far from the defaults."""
    ss, ys = _score_maps(kind, 60)
    acc = _small_stream()
    for s, y in zip(ss, ys, strict=True):
        acc.update(torch.from_numpy(s) if kind == "softmax" else s, y)
    exact, stream = anomaly_metrics(ss, ys), acc.compute()
    assert acc._table is not None and acc._floor > 0
    assert acc._band_bins is not None and acc._band_bins != (0, len(acc._hist) - 1)  # narrowed, still there
    assert acc._band_n <= acc.band_positives and acc._top.n <= 2 * acc.top_pixels
    rank, band = acc._crossing()
    assert 1 <= rank <= len(band)  # images in random order: the band followed the crossing
    assert 0 < acc.fpr95_error_bound() < 1e-4
    _assert_within_bounds(acc, stream, exact, 1e-5)


@pytest.mark.parametrize("kind", ["softmax", "logit"])
def test_streaming_defaults_within_1e6_just_past_the_buffer(kind: str) -> None:
    """The defaults on 6.3·10^6 pixels of 256×512 maps: past the 4·10^6-pixel exact buffer, where the bins
    at the crossing hold the most pixels relative to the data, the documented 1e-6 holds for all three."""
    ss, ys = _score_maps(kind, 48, seed=200, shape=(256, 512))
    acc = AnomalyMetrics(exact=False)
    for s, y in zip(ss, ys, strict=True):
        acc.update(s, y)
    exact, stream = anomaly_metrics(ss, ys), acc.compute()
    assert acc._table is not None  # past the buffer
    for k in exact:
        assert abs(exact[k] - stream[k]) <= 1e-6, (k, exact[k], stream[k])


def test_streaming_is_exact_within_the_buffer_and_for_quantised_scores() -> None:
    ss, ys = _score_maps("softmax", 5)
    acc = AnomalyMetrics(exact=False)  # 4·10^4 pixels: all in the exact buffer
    for s, y in zip(ss, ys, strict=True):
        acc.update(s, y)
    assert acc.compute() == pytest.approx(anomaly_metrics(ss, ys), abs=1e-12)
    ss, ys = _score_maps("sigmoid", 40, seed=3)
    # past the buffer: 8-bit maps and float16 scores (AMP, the score cache) have a bin per distinct value
    levels = [np.where(s > 0.7, 0.9, np.where(s > 0.2, 0.5, 0.1)).astype(np.float32) for s in ss]  # heavy ties
    for quantised in ([np.round(s * 255) / 255 for s in ss], [s.astype(np.float16) for s in ss], levels):
        acc = _small_stream()
        for s, y in zip(quantised, ys, strict=True):
            acc.update(s, y)
        assert acc.compute() == pytest.approx(anomaly_metrics(quantised, ys), abs=1e-12)
        assert acc.fpr95_error_bound() == 0.0
    assert acc._band_bins is None  # three levels: the crossing's bin alone outgrew the band; the histogram is exact


def test_streaming_compute_midway_and_reset() -> None:
    ss, ys = _score_maps("logit", 30, seed=4)
    acc, plain = _small_stream(), _small_stream()
    for i, (s, y) in enumerate(zip(ss, ys, strict=True)):
        acc.update(s, y)
        plain.update(s, y)
        if i in (0, 14):  # once inside the buffer, once past it; later updates must still count
            mid = acc.compute()
            assert mid == pytest.approx(anomaly_metrics(ss[: i + 1], ys[: i + 1]), abs=1e-12 if i == 0 else 1e-4)
    assert acc.compute() == pytest.approx(plain.compute(), abs=1e-12)  # asking midway changes nothing
    _assert_within_bounds(acc, acc.compute(), anomaly_metrics(ss, ys), 1e-5)
    acc.reset()
    acc.update(ss[0], ys[0])
    assert acc.compute() == pytest.approx(anomaly_metrics(ss[:1], ys[:1]), abs=1e-12)


def test_streaming_when_the_crossing_drifts() -> None:
    """Images ordered from easy to hard move the crossing far from where it was when the band narrowed; it
    may leave the band, and FPR95 then comes from the histogram, still within the hard bound."""
    ss, ys = _score_maps("sigmoid", 60, seed=6)
    order = np.argsort([anomaly_metrics(s, y)["fpr95"] if (y == 1).any() else 0.0
                        for s, y in zip(ss, ys, strict=True)])
    ss, ys = [ss[i] for i in order], [ys[i] for i in order]
    acc = _small_stream()
    for s, y in zip(ss, ys, strict=True):
        acc.update(s, y)
    _assert_within_bounds(acc, acc.compute(), anomaly_metrics(ss, ys), 1e-5)


def test_streaming_bad_input_changes_nothing() -> None:
    """The streaming checks run before anything is counted: a rejected image leaves the accumulator as it was."""
    ss, ys = _score_maps("logit", 8, seed=5)
    acc, ref = _small_stream(buffer_pixels=2**12), _small_stream(buffer_pixels=2**12)
    for i, (s, y) in enumerate(zip(ss, ys, strict=True)):
        acc.update(s, y)
        ref.update(s, y)
        if i in (0, 5):  # inside the buffer and past it
            bad = s.copy()
            bad[3, 4] = np.inf
            with pytest.raises(ValueError, match="NaN or infinite"):
                acc.update(bad, y)
            with pytest.raises(ValueError, match=r"labels must be 0, 1 or 255; found \[7\]"):
                acc.update(s, np.where(y == 1, 7, y))
            with pytest.raises(ValueError, match="does not match labels shape"):
                acc.update(s, y[:-1])
    assert acc.compute() == ref.compute()
    # a NaN where the label is ignored is not a score: both forms leave it out, as the benchmark drops void pixels
    s, y = ss[0].copy(), ys[0].copy()
    y[0, 0], s[0, 0] = 255, np.nan
    stream = _small_stream(buffer_pixels=2**12)
    stream.update(s, y)
    assert stream.compute() == pytest.approx(anomaly_metrics(s, y), abs=1e-6)
    # label dtypes past the buffer: bool, int32 with a negative ignore index, whole-number floats
    s = np.concatenate([a.ravel() for a in ss])
    y = np.concatenate([b.ravel() for b in ys])
    keep = y != 255
    cases = ((s[keep], y[keep].astype(bool), 255), (s, np.where(keep, y.astype(np.int32), -1), -1),
             (s, y.astype(np.float64), 255))
    for scores, labels, ignore in cases:
        acc, ref = _small_stream(buffer_pixels=2**12, ignore_index=ignore), _small_stream(buffer_pixels=2**12)
        as_uint8 = np.where(labels == ignore, 255, labels).astype(np.uint8)
        for a, b, c in zip(*(np.array_split(x, 8) for x in (scores, labels, as_uint8)), strict=True):
            acc.update(a, b)
            ref.update(a, c)
        assert acc._table is not None
        assert acc.compute() == ref.compute()


def test_expected_step_inside_a_spread_bin() -> None:
    """A bin of many distinct scores: AP and the FPR95 crossing are the expectation over a random order of
    the bin's pixels, not the bin's upper edge (which would count all of its negatives)."""
    # one spread bin with 100 positives and 10000 negatives below 1000 positives at distinct scores
    pos = np.concatenate([[100], np.ones(1000)])
    neg = np.concatenate([[10000], np.zeros(1000)])
    spread = np.concatenate([[True], np.zeros(1000, bool)])
    out = metrics_from_histograms(pos, neg, spread)
    assert out["fpr95"] == pytest.approx(45 * 10000 / 101 / 10000, abs=1e-9)  # the 45th positive of the bin
    rng = np.random.default_rng(0)
    aps = []
    for _ in range(200):  # AP against the mean over random orders of the bin
        y = np.concatenate([np.ones(1000), rng.permutation(np.r_[np.ones(100), np.zeros(10000)])]).astype(np.uint8)
        aps.append(anomaly_metrics(np.arange(len(y), 0, -1, dtype=np.float64), y)["ap"])
    assert out["ap"] == pytest.approx(np.mean(aps), abs=4 * np.std(aps) / np.sqrt(len(aps)) + 1e-6)


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
    with pytest.raises(ValueError, match="top_pixels must be at least 1"):
        AnomalyMetrics(top_pixels=0)
    acc = _small_stream()  # past the buffer, a data set without anomalies is the same clear error
    for _ in range(3):
        acc.update(np.random.default_rng(0).random(2**14), np.zeros(2**14, np.uint8))
    with pytest.raises(ValueError, match="both classes"):
        acc.compute()


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


@pytest.mark.parametrize("decimals", [None, 2, 0])
def test_metrics_from_ranked_positives_equal_the_whole_curve(decimals: int | None) -> None:
    from reprolib.metrics._pixels import score_keys
    from reprolib.metrics.curves import metrics_from_keys

    rng = np.random.default_rng(11)
    y = (rng.random(20000) < 0.03).astype(np.uint8)
    s = (rng.normal(size=20000) + 1.2 * y).astype(np.float32)
    if decimals is not None:  # heavy ties between positives and negatives
        s = np.round(s, decimals).astype(np.float32)
    keys = score_keys(s)
    ours = metrics_from_keys(keys[y == 1], keys[y == 0])
    ref = _sklearn(s, y)
    for k in ("ap", "auroc", "fpr95"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k
    with pytest.raises(ValueError, match="both classes"):
        metrics_from_keys(keys[:0], keys)


@pytest.mark.parametrize("case", ["spread", "clustered", "extremes", "one threshold", "all tied"])
def test_counting_pass_gives_the_counts_of_a_sort_and_search(case: str) -> None:
    """rank_among's one pass against sorting the keys and searching each threshold, where its table is coarse
    (keys over the whole uint32 range), where many thresholds share a cell (bisection), at the range's ends and
    with ties everywhere."""
    from reprolib.metrics.curves import _cell_shift
    from reprolib.metrics.kernels import rank_among

    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2**32, 50000, dtype=np.uint64).astype(np.uint32)
    thresholds = rng.integers(0, 2**32, 700, dtype=np.uint64).astype(np.uint32)
    if case == "clustered":  # 600 thresholds within 2000 key values, and the keys around them
        thresholds = np.concatenate([thresholds[:100], 3_000_000_000 + rng.integers(0, 2000, 600).astype(np.uint32)])
        keys = np.concatenate([keys, 3_000_000_000 + rng.integers(0, 2000, 50000).astype(np.uint32)])
    elif case == "extremes":
        thresholds = np.array([0, 1, 2**31, 2**32 - 2, 2**32 - 1], np.uint32)
        keys = np.concatenate([keys, thresholds, thresholds])
    elif case == "one threshold":
        thresholds = keys[7:8]
    elif case == "all tied":
        keys = rng.choice(thresholds, 50000)
    thresholds = np.unique(thresholds)
    rng.shuffle(keys)
    count, tied = rank_among(keys, thresholds, _cell_shift(thresholds))
    ordered = np.sort(keys)
    below = np.searchsorted(ordered, thresholds, side="left")
    assert np.array_equal(np.cumsum(count)[:-1] - tied, below)
    assert np.array_equal(tied, np.searchsorted(ordered, thresholds, side="right") - below)
    assert count.sum() == len(keys)
    for shift in (0, 4, 31):  # any cell size gives the same counts: only the speed depends on it
        if shift == 0 and int(thresholds[-1]) - int(thresholds[0]) > 2**24:
            continue  # a cell per key value: too large a table to build here
        got = rank_among(keys, thresholds, shift)
        assert np.array_equal(got[0], count) and np.array_equal(got[1], tied)
