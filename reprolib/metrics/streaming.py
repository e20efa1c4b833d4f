"""The streaming accumulator :class:`AnomalyMetrics` (and its exact mode): memory bounded by its settings,
whatever the number of pixels. How it bounds the error is described in :mod:`reprolib.metrics.pixel`."""

from __future__ import annotations

import numpy as np

from reprolib.labels import IGNORE_INDEX
from reprolib.metrics import kernels
from reprolib.metrics._pixels import ArrayLike, checked_bits, distinct_counts, key_counts, pooled_counts, valid_pixels
from reprolib.metrics.curves import curve_metrics, metrics_from_histograms

_COARSE_BITS = 16  # a key's top 16 bits pick its coarse bin; the layout keeps 0–16 of its low 16 bits
# before the histogram starts: a bin table that puts every key in bin 0, and a histogram of one bin (a floor
# of 0 keeps every pixel exactly, so neither is ever written)
_ONE_BIN = np.full(2**_COARSE_BITS, 32 - _COARSE_BITS, np.uint32)
_DUMMY_HIST = (np.zeros((1, 2), np.int64), np.zeros(1, np.uint32))


def adaptive_layout(keys: np.ndarray, max_bins: int = 2**20) -> np.ndarray:
    """Per coarse bin (the key's top 16 bits), how many of the 16 low bits the histogram keeps.

    Chosen from a sample of keys so that a fine bin holds at most ``eps`` × (pixels ranked above it), with the
    smallest ``eps`` that fits ``max_bins``. The step-form AP moves inside a bin by about the bin's share of
    the pixels ranked above it, so this bounds the AP error by a *relative* resolution, where a fixed
    histogram's bins near the top of the ranking are as wide as anywhere else. Coarse bins the sample never
    reached keep one bin each, so every later score still has a place.
    """
    n_coarse, full = 2**_COARSE_BITS, 32 - _COARSE_BITS
    count = np.bincount((keys >> np.uint32(full)).astype(np.intp), minlength=n_coarse).astype(np.float64)
    above = np.cumsum(count[::-1])[::-1] - count  # pixels in higher coarse bins
    seen = count > 0
    budget = max_bins - n_coarse
    # 3 bits at least: a coarse bin holds 8 float16 values, so float16 scores (AMP, the score cache) then
    # each have a bin of their own and stay exact
    least = 3 if 7 * int(seen.sum()) <= budget else 0

    def refine(log2_eps: float) -> np.ndarray:
        want = np.log2(np.maximum(count[seen] / (2.0**log2_eps * (above[seen] + 1.0)), 1.0))
        return np.clip(np.ceil(want - 1e-9), least, full).astype(np.int64)

    lo, hi = -60.0, 60.0  # at eps = 2^60 every coarse bin keeps one bin, which fits
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if int(np.sum(2 ** refine(mid) - 1)) <= budget else (mid, hi)
    bits = np.zeros(n_coarse, np.int64)
    bits[seen] = refine(hi)
    return bits


class _Store:
    """Pixels kept exactly, as (key, label) chunks."""

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self.n = 0

    def add(self, k: np.ndarray, y: np.ndarray) -> None:
        if len(k):
            self.chunks.append((k, y))
            self.n += len(k)

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        k = np.concatenate([c[0] for c in self.chunks]) if self.chunks else np.zeros(0, np.uint32)
        y = np.concatenate([c[1] for c in self.chunks]) if self.chunks else np.zeros(0, np.uint8)
        self.chunks, self.n = [], 0
        return k, y

    def peek(self) -> tuple[np.ndarray, np.ndarray]:
        k, y = self.take()
        self.add(k, y)
        return k, y

    def positives(self) -> int:
        return int(sum(int(np.count_nonzero(c[1])) for c in self.chunks))


class AnomalyMetrics:
    """Accumulate pixels image by image; ``compute()`` gives the same dict as :func:`anomaly_metrics`.

    ``exact=True`` keeps every valid pixel (memory grows with the pixels). ``exact=False`` (streaming) holds
    at most ``buffer_pixels + 2·top_pixels + band_positives`` keys and ``max_bins`` histogram bins, however
    many pixels pass. Each pixel's score becomes an order-preserving uint32 key of its float32 value, and:

    1. the first ``buffer_pixels`` are kept as they are: up to there the result is exact;
    2. from them :func:`adaptive_layout` chooses a variable-resolution histogram over the key, and every
       later pixel is counted in it, except
    3. the ``top_pixels`` highest-scoring pixels so far, kept exactly: the first ranks weigh most in AP.
    4. For FPR95, the keys of the anomaly pixels in a *band* of bins around the crossing are kept as well
       (they are counted in the histogram all the same). The crossing is the key of the positive at 95 %
       TPR; knowing it exactly leaves only the negatives of its one bin to split, by key. The band starts
       as every bin; whenever it holds more than ``band_positives`` keys it shrinks to a quarter of that
       around the crossing of all data so far. Anomalies are rare, so the band spans far more of the
       ranking than one holding every pixel would.

    Histogram bins and top pixels never share a key, so ``compute()`` merges them into one ranking. The
    bound is described in :mod:`reprolib.metrics.pixel`; the tests and ``benchmarks/metrics.py`` measure it.
    """

    def __init__(self, exact: bool = False, ignore_index: int = IGNORE_INDEX, buffer_pixels: int = 2**22,
                 max_bins: int = 2**20, top_pixels: int = 2**16, band_positives: int = 2**22):
        if max_bins < 2 * 2**_COARSE_BITS:
            raise ValueError(f"max_bins must be at least {2 * 2**_COARSE_BITS}, got {max_bins}")
        for name, value in (("buffer_pixels", buffer_pixels), ("top_pixels", top_pixels),
                            ("band_positives", band_positives)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.exact, self.ignore_index, self.max_bins = exact, ignore_index, max_bins
        self.buffer_pixels, self.top_pixels, self.band_positives = buffer_pixels, top_pixels, band_positives
        self.reset()

    def reset(self) -> None:
        self._scores: list[np.ndarray] = []  # exact mode
        self._labels: list[np.ndarray] = []
        self._pending = _Store()  # streaming: the exact buffer, until the histogram starts
        self._table: np.ndarray | None = None  # per coarse bin: first fine bin << 5 | (16 − kept bits)
        self._top = _Store()
        self._band: list[np.ndarray] = []  # keys of the positives in the band's bins (also in the histogram)
        self._band_n = 0
        self._floor = np.uint32(0)  # _top holds the keys above it; every finite key is above 0
        self._band_bins: tuple[int, int] | None = None  # first and last fine bin of the band

    def update(self, scores: ArrayLike, labels: ArrayLike) -> None:
        if self.exact:
            s, y = valid_pixels(scores, labels, self.ignore_index)
            self._scores.append(s)
            self._labels.append(y)
            return
        bits, y = checked_bits(scores, labels, self.ignore_index)
        if self._table is not None:
            self._route(bits, y, keyed=False)
            return
        # before the histogram: every valid pixel, keyed, into the buffer (bin table of one bin, floor 0)
        self._pending.add(*self._pass(bits, y, False, _ONE_BIN, np.uint32(0), None, *_DUMMY_HIST))
        if self._pending.n > self.buffer_pixels:
            self._start_histogram()

    def _pass(self, values: np.ndarray, y: np.ndarray, keyed: bool, table: np.ndarray, floor: np.uint32,
              band: tuple[int, int] | None, hist: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One compiled pass (:func:`kernels.route`); returns the keys it kept, with their labels."""
        band_lo, band_hi = (np.uint32(1), np.uint32(0)) if band is None else (np.uint32(band[0]), np.uint32(band[1]))
        out_k, out_y = np.empty(len(values), np.uint32), np.empty(len(values), np.uint8)
        n = kernels.route(values, y, keyed, table, floor, band_lo, band_hi, hist, first, out_k, out_y)
        return out_k[:n].copy(), out_y[:n].copy()

    def _start_histogram(self) -> None:
        k, y = self._pending.take()
        bits = adaptive_layout(k, self.max_bins)
        width = 2**bits
        first = np.concatenate([[0], np.cumsum(width)[:-1]])
        self._table = ((first << 5) | (32 - _COARSE_BITS - bits)).astype(np.uint32)
        n_bins = int(width.sum())
        self._hist = np.zeros((n_bins, 2), np.int64)  # (negatives, positives) per fine bin, key order
        # per bin, its first key or SPREAD: one key → a true tie (sklearn's step form); several → interpolated
        self._first = np.full(n_bins, kernels.EMPTY, np.uint32)
        if len(k) > self.top_pixels:  # start the top store at its size, not with every buffered pixel
            self._floor = np.partition(k, len(k) - self.top_pixels)[len(k) - self.top_pixels]
        self._band_bins = (0, n_bins - 1)  # every bin, until the band outgrows its budget
        self._route(k, y, keyed=True)

    def _route(self, values: np.ndarray, y: np.ndarray, keyed: bool) -> None:
        """Count pixels in the histogram or keep them in the top store; copy the band's positives."""
        if len(values) == 0:
            return
        k, ky = self._pass(values, y, keyed, self._table, self._floor, self._band_bins, self._hist, self._first)
        top = k > self._floor
        self._top.add(k[top], ky[top])
        band = k[~top]  # positives only: the kernel copies no negative into the band
        if len(band):
            self._band.append(band)
            self._band_n += len(band)
        if self._top.n > 2 * self.top_pixels:
            self._compact_top()
        if self._band_n > self.band_positives:
            self._narrow_band()

    def _compact_top(self) -> None:
        # keep the top_pixels highest keys (fewer when the cut falls on a tie); count the rest
        k, y = self._top.take()
        cut = len(k) - self.top_pixels
        self._floor = np.partition(k, cut)[cut]
        high = k > self._floor
        self._top.add(k[high], y[high])
        self._route(k[~high], y[~high], keyed=True)

    def _band_keys(self) -> np.ndarray:
        """The band's positive keys, highest first."""
        keys = np.sort(np.concatenate(self._band)) if self._band else np.zeros(0, np.uint32)
        self._band, self._band_n = [keys], len(keys)
        return keys[::-1]

    def _crossing(self) -> tuple[int, np.ndarray]:
        """(rank of the FPR95 crossing among the band's positives, 1-based; band keys, highest first). The
        crossing is the ⌈0.95·P⌉-th highest positive key; the rank is outside 1…len when it is not in the band."""
        keys = self._band_keys()
        top_pos = self._top.positives()
        total = int(self._hist[:, 1].sum()) + top_pos
        above = top_pos + (int(self._hist[self._band_bins[1] + 1:, 1].sum()) if self._band_bins else 0)
        return int(np.ceil(0.95 * total - 1e-9)) - above, keys

    def _narrow_band(self) -> None:
        r, keys = self._crossing()
        a, b = self._band_bins
        if 1 <= r <= len(keys):
            crossing = int(kernels.bins_of(keys[r - 1:r], self._table)[0])
        else:  # the crossing has left the band: keep its nearer edge
            crossing = b if r < 1 else a
        bins = kernels.bins_of(keys, self._table)
        counts = np.bincount(bins - a, minlength=b - a + 1)
        band = _band_around(counts, crossing - a, (0, b - a), self.band_positives // 4)
        if band is None:  # one bin holds more positives than the band may: FPR95 from the histogram alone
            self._band_bins, self._band, self._band_n = None, [], 0
            return
        self._band_bins = (a + band[0], a + band[1])
        keys = keys[(bins >= self._band_bins[0]) & (bins <= self._band_bins[1])]
        self._band, self._band_n = [keys], len(keys)

    def compute(self) -> dict[str, float]:
        if self.exact:
            return curve_metrics(*pooled_counts(self._scores, self._labels, self.ignore_index))
        if self._table is None:
            return curve_metrics(*key_counts(*self._pending.peek()))
        tk, ty = self._top.peek()
        keys, s_pos, s_neg = distinct_counts(tk, ty)
        # Histogram bins and top keys in one key order: a top key goes after the histogram's pixels of its bin
        # (top keys are above the floor, every histogram key at or below it)
        nz = np.flatnonzero(self._hist[:, 0] + self._hist[:, 1])
        at = np.searchsorted(nz, kernels.bins_of(keys, self._table), side="right")
        pos = np.insert(self._hist[nz, 1], at, s_pos)
        neg = np.insert(self._hist[nz, 0], at, s_neg)
        spread = np.insert(self._first[nz] == kernels.SPREAD, at, False)
        out = metrics_from_histograms(pos, neg, spread)
        if self._band_bins is not None:
            r, band = self._crossing()
            if 1 <= r <= len(band):
                out["fpr95"] = self._fpr_at(band[r - 1], int(s_neg.sum()))
        return out

    def fpr95_error_bound(self) -> float:
        """A hard bound on |FPR95 − exact FPR95| for what :meth:`compute` returns now: the share of the
        negatives in the crossing's histogram bin when that bin holds several keys (both estimates of how many
        of them lie above the crossing stay inside the bin), else 0. Exact mode: 0."""
        if self.exact or self._table is None:
            return 0.0
        pos = self._hist[:, 1]
        _, ty = self._top.peek()
        top_pos = int(np.count_nonzero(ty))
        total = int(pos.sum()) + top_pos
        r = int(np.ceil(0.95 * total - 1e-9)) - top_pos  # the crossing's rank among the histogram's positives
        if r < 1:
            return 0.0  # in the top store: exact
        b = int(np.searchsorted(np.cumsum(pos[::-1]), r))  # bins from the top until r positives
        b = len(pos) - 1 - b
        if self._first[b] != kernels.SPREAD:
            return 0.0
        return float(self._hist[b, 0]) / float(self._hist[:, 0].sum() + len(ty) - top_pos)

    def _fpr_at(self, t: np.uint32, top_neg: int) -> float:
        """FPR at threshold key ``t`` (a histogram key): the negatives of higher bins and of the top store, and
        of ``t``'s own bin the share whose keys are at least ``t``, taken as spread evenly over the bin's keys."""
        b = int(kernels.bins_of(np.array([t], np.uint32), self._table)[0])
        neg = self._hist[:, 0]
        fp = float(top_neg + neg[b + 1:].sum())
        if self._first[b] == kernels.SPREAD:
            entry = int(self._table[int(t) >> (32 - _COARSE_BITS)])
            shift = entry & 31
            lo = (int(t) >> shift) << shift  # the bin's first key
            fp += neg[b] * ((lo + 2**shift - int(t)) / 2**shift)
        else:  # one key in the bin, and it is t: all of its negatives tie with t
            fp += neg[b]
        return fp / float(top_neg + neg.sum())


def _band_around(counts: np.ndarray, centre: int, limits: tuple[int, int], budget: int) -> tuple[int, int] | None:
    """The run of bins around ``centre`` (inside ``limits``) holding at most ``budget`` of ``counts``, about half on
    each side; ``None`` when the centre bin alone holds more."""
    lo_lim, hi_lim = limits
    centre = min(max(centre, lo_lim), hi_lim)
    room = budget - int(counts[centre])
    if room < 0:
        return None
    below = np.cumsum(counts[lo_lim:centre][::-1])  # pixels in the 1, 2, … bins just below the centre
    above = np.cumsum(counts[centre + 1:hi_lim + 1])
    n_below = int(np.searchsorted(below, room // 2, side="right"))
    used = int(below[n_below - 1]) if n_below else 0
    n_above = int(np.searchsorted(above, room - used, side="right"))
    used_above = int(above[n_above - 1]) if n_above else 0
    n_below = int(np.searchsorted(below, room - used_above, side="right"))  # what the upper side left over
    return centre - n_below, centre + n_above
