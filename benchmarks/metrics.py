"""Speed of the Fishyscapes metrics against sklearn and a plain read pass, measured in one run.

    python benchmarks/metrics.py [--pixels 50000000] [--big-images 0] [--realistic]
    python benchmarks/metrics.py --grid [SCORES.npz]

Prints each time and the ratios: sklearn (average_precision_score + roc_curve + auc), reprolib exact,
reprolib streaming, and a read pass over the arrays (the memory-bandwidth floor). ``--big-images N``
streams N images of 1024×2048 generated on the fly (N = 1000 is FS Static test scale, 2.1·10^9 pixels)
and reports time and peak resident memory. ``--realistic`` compares streaming with exact on 5.2·10^7
pixels of the tests' smooth sigmoid / logit and per-pixel softmax maps (400 images of 256×512 each), fed in
random order and ordered from easy to hard.

``--grid`` times only the grid-search ensemble's per-candidate step (:class:`reprolib.ensemble.grid_search._Pooled`)
over its 224 candidates: the counting pass (:func:`reprolib.metrics.curves.metrics_from_keys`) against the sort of
the negatives' keys and a binary search per positive threshold it replaced, on the same keys, candidates
alternating; then every candidate's whole step on one thread against ``grid_threads()`` threads. It checks each
pair gives the same metrics to the bit. Given a run's cached scores (``data/demo/runs/<run>/
scores/fs_static-*.npz``, written by ``make table4``) it uses them; without, demo-sized synthetic maps (24 images of
128×256, 0.9 % anomalies, as the embedded FS Static).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import numpy as np


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pixels", type=int, default=50_000_000)
    ap.add_argument("--big-images", type=int, default=0)
    ap.add_argument("--realistic", action="store_true")
    ap.add_argument("--grid", nargs="?", const="", default=None, metavar="SCORES.npz",
                    help="time the grid search's per-candidate metrics (on these cached scores, if given)")
    args = ap.parse_args()
    if args.grid is not None:
        _grid(args.grid)
        return
    from sklearn.metrics import auc, average_precision_score, roc_curve

    from reprolib.metrics import AnomalyMetrics, anomaly_metrics

    rng = np.random.default_rng(0)
    n = args.pixels
    labels = (rng.random(n) < 0.02).astype(np.uint8)
    scores = np.clip(rng.normal(0.3, 0.15, n) + 0.35 * labels, 0, 1).astype(np.float32)

    def sk(s, y):
        fpr, tpr, _ = roc_curve(y, s)
        return average_precision_score(y, s), auc(fpr, tpr), fpr[np.searchsorted(tpr, 0.95)]

    def stream(s, y):
        acc = AnomalyMetrics(exact=False)
        for a, b in zip(np.array_split(s, 50), np.array_split(y, 50), strict=True):  # image by image
            acc.update(a, b)
        return acc.compute()

    # the compiled kernels load (or compile, on a fresh install) once per process: timed apart from the runs
    t_load, _ = _timed(stream, scores[:100_000], labels[:100_000])
    t_read, _ = _timed(lambda s, y: (float(s.sum()), int(y.sum())), scores, labels)
    t_sk, ref = _timed(sk, scores, labels)
    t_exact, ex = _timed(anomaly_metrics, scores, labels)
    t_stream, st = _timed(stream, scores, labels)
    print(f"{n:,} pixels, 2 % positives (streaming's one-off kernel load before the runs: {t_load:.2f} s)")
    print(f"  read pass (floor)   {t_read:8.3f} s")
    print(f"  sklearn             {t_sk:8.3f} s   AP {ref[0]:.6f}")
    print(f"  reprolib exact      {t_exact:8.3f} s   AP {ex['ap']:.6f}   {t_sk / t_exact:6.1f}× faster than sklearn")
    print(f"  reprolib streaming  {t_stream:8.3f} s   AP {st['ap']:.6f}   {t_sk / t_stream:6.1f}× faster than sklearn, "
          f"{t_stream / t_read:.1f}× the read floor; |ΔAP| {abs(st['ap'] - ex['ap']):.1e} "
          f"|ΔFPR95| {abs(st['fpr95'] - ex['fpr95']):.1e} |ΔAUROC| {abs(st['auroc'] - ex['auroc']):.1e}")
    if args.big_images:
        # in a fresh process, so that its peak memory is its own (this one held sklearn's 5·10^7-pixel arrays)
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_big_run, args=(args.big_images,))
        child.start()
        child.join()
    if args.realistic:
        _realistic()


def _big_run(n_images: int) -> None:
    from reprolib.metrics import AnomalyMetrics

    acc = AnomalyMetrics(exact=False)
    t = time.perf_counter()
    for i in range(n_images):
        r = np.random.default_rng(i)
        y = (r.random((1024, 2048)) < 0.02).astype(np.uint8)
        s = np.clip(r.normal(0.3, 0.15, y.shape) + 0.35 * y, 0, 1).astype(np.float32)
        acc.update(s, y)
    out = acc.compute()
    rank, band = acc._crossing() if acc._band_bins else (0, [])
    print(f"  streaming {n_images} × 1024×2048 ({n_images * 2**21:,} pixels): {time.perf_counter() - t:.1f} s "
          f"(incl. generating them), AP {out['ap']:.6f}, FPR95 crossing in the band: {1 <= rank <= len(band)}, "
          f"hard FPR95 bound {acc.fpr95_error_bound():.1e}; peak RSS of that process {_peak_rss_mib():.0f} MiB", flush=True)


def _peak_rss_mib() -> float:
    """This process's own peak resident memory. VmHWM belongs to the address space, which exec replaces; the
    rusage maximum would also count the parent's pages that the fork shared before exec."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _realistic() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_metrics import _score_maps

    from reprolib.metrics import AnomalyMetrics, anomaly_metrics

    for kind in ("sigmoid", "logit", "softmax"):
        ss, ys = [], []
        for i in range(25):
            s, y = _score_maps(kind, 16, seed=100 + i, shape=(256, 512))
            ss += s
            ys += y
        ex = anomaly_metrics(ss, ys)
        # random order, then easy → hard (by each image's own FPR95): the crossing drifts as images arrive
        hardness = [anomaly_metrics(s, y)["fpr95"] if (y == 1).any() else 0.0 for s, y in zip(ss, ys, strict=True)]
        for order_name, order in (("random", range(len(ss))), ("easy→hard", np.argsort(hardness))):
            acc = AnomalyMetrics(exact=False)
            for i in order:
                acc.update(ss[i], ys[i])
            st = acc.compute()
            print(f"  {kind:8s} {order_name:9s} {sum(s.size for s in ss):,} pixels: " + "  ".join(
                f"{k} {ex[k]:.4f} |Δ| {abs(ex[k] - st[k]):.1e}" for k in ex)
                + f"  (hard FPR95 bound {acc.fpr95_error_bound():.1e})")


def _sorted_reference(pos_keys: np.ndarray, neg_keys: np.ndarray) -> dict[str, float]:
    """The replaced step: sort the negatives' keys, then two binary searches per distinct positive threshold."""
    from reprolib.metrics.curves import _curve_at_positives

    ordered = np.sort(neg_keys)
    kp = np.sort(pos_keys)[::-1]
    starts = np.flatnonzero(np.concatenate([[True], kp[1:] != kp[:-1]]))
    keys, count = kp[starts], np.diff(np.concatenate([starts, [len(kp)]]))
    below = np.searchsorted(ordered, keys, side="left")
    tied = np.searchsorted(ordered, keys, side="right") - below
    return _curve_at_positives(count, below, tied, len(pos_keys), len(neg_keys))


def _grid(path: str) -> None:
    import os

    from reprolib.ensemble.grid_search import ORDER, _Pooled, candidate_weights, grid_threads
    from reprolib.metrics.curves import metrics_from_keys

    if path:
        from reprolib.experiments.scoring import load_scores

        scores = load_scores(path)
        maps, labels, what = {k: scores[k] for k in ORDER}, scores["label"], path
    else:
        rng = np.random.default_rng(0)
        labels = [(rng.random((128, 256)) < 0.009).astype(np.uint8) for _ in range(24)]
        maps = {k: [np.clip(rng.beta(1.2, 6.0, y.shape) + (0.15 + 0.1 * j) * y, 0, 1).astype(np.float32)
                    for y in labels] for j, k in enumerate(ORDER)}
        what = "synthetic, 24 images of 128×256"
    pooled = _Pooled.of(maps, labels)
    cands = [dict(zip(ORDER, w, strict=True)) for w in candidate_weights()[0]]
    metrics_from_keys(pooled._keys(pooled.positives, cands[0]), pooled._keys(pooled.negatives, cands[0]))  # load
    t_ref = t_new = 0.0
    for w in cands:  # alternating, so a change in the machine's load hits both alike
        pk, nk = pooled._keys(pooled.positives, w), pooled._keys(pooled.negatives, w)
        dt_ref, ref = _timed(_sorted_reference, pk, nk)
        dt_new, new = _timed(metrics_from_keys, pk, nk)
        if ref != new:
            raise SystemExit(f"the counting pass differs from the sort for weights {w}: {new} vs {ref}")
        t_ref, t_new = t_ref + dt_ref, t_new + dt_new
    n_pos, n_neg = len(pooled.positives["dissimilarity"]), len(pooled.negatives["dissimilarity"])
    print(f"grid search, {len(cands)} candidates, {n_pos:,} positives, {n_neg:,} negatives ({what}); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"  sort + binary search (before)  {t_ref:7.3f} s")
    print(f"  counting pass (now)            {t_new:7.3f} s   {t_ref / t_new:5.1f}× faster, the same metrics to the bit")
    # the whole candidate step (sums, keys, metrics) on one thread and on grid_threads(), alternating, 3 rounds each
    threads = grid_threads()
    t_one = t_many = 0.0
    for _ in range(3):
        dt_one, one = _timed(lambda: [pooled.metrics(w) for w in cands])
        dt_many, many = _timed(pooled.metrics_of, cands)
        if one != many:
            raise SystemExit(f"{threads} threads gave other metrics than one")
        t_one, t_many = t_one + dt_one / 3, t_many + dt_many / 3
    print(f"  every candidate, 1 thread      {t_one:7.3f} s")
    print(f"  every candidate, {threads} threads     {t_many:7.3f} s   {t_one / t_many:5.2f}× faster, "
          "the same metrics to the bit")


if __name__ == "__main__":
    main()
