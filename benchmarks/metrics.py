"""Speed of the Fishyscapes metrics against sklearn and a plain read pass, measured in one run.

    python benchmarks/metrics.py [--pixels 50000000] [--big-images 0] [--realistic]

Prints each time and the ratios: sklearn (average_precision_score + roc_curve + auc), reprolib exact,
reprolib streaming, and a read pass over the arrays (the memory-bandwidth floor). ``--big-images N``
streams N images of 1024×2048 generated on the fly (N = 1000 is FS Static test scale, 2.1·10^9 pixels)
and reports time and peak resident memory. ``--realistic`` compares streaming with exact on 5.2·10^7
pixels of the tests' smooth sigmoid / logit and per-pixel softmax maps (400 images of 256×512 each).
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
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

    t_read, _ = _timed(lambda s, y: (float(s.sum()), int(y.sum())), scores, labels)
    t_sk, ref = _timed(sk, scores, labels)
    t_exact, ex = _timed(anomaly_metrics, scores, labels)
    t_stream, st = _timed(stream, scores, labels)
    print(f"{n:,} pixels, 2 % positives")
    print(f"  read pass (floor)   {t_read:8.3f} s")
    print(f"  sklearn             {t_sk:8.3f} s   AP {ref[0]:.6f}")
    print(f"  reprolib exact      {t_exact:8.3f} s   AP {ex['ap']:.6f}   {t_sk / t_exact:6.1f}× faster than sklearn")
    print(f"  reprolib streaming  {t_stream:8.3f} s   AP {st['ap']:.6f}   {t_sk / t_stream:6.1f}× faster than sklearn, "
          f"{t_stream / t_read:.1f}× the read floor; |ΔAP| {abs(st['ap'] - ex['ap']):.1e} "
          f"|ΔFPR95| {abs(st['fpr95'] - ex['fpr95']):.1e} |ΔAUROC| {abs(st['auroc'] - ex['auroc']):.1e}")
    if args.big_images:
        acc = AnomalyMetrics(exact=False)
        t = time.perf_counter()
        for i in range(args.big_images):
            r = np.random.default_rng(i)
            y = (r.random((1024, 2048)) < 0.02).astype(np.uint8)
            s = np.clip(r.normal(0.3, 0.15, y.shape) + 0.35 * y, 0, 1).astype(np.float32)
            acc.update(s, y)
        acc.compute()
        dt = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  streaming {args.big_images} × 1024×2048 ({args.big_images * 2**21:,} pixels): {dt:.1f} s "
              f"(incl. generating them), peak RSS {peak:.0f} MiB")
    if args.realistic:
        _realistic()


def _realistic() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_metrics import _score_maps

    from reprolib.metrics import AnomalyMetrics, anomaly_metrics

    for kind in ("sigmoid", "logit", "softmax"):
        ss, ys, acc = [], [], AnomalyMetrics(exact=False)
        for i in range(25):
            s, y = _score_maps(kind, 16, seed=100 + i, shape=(256, 512))
            for a, b in zip(s, y, strict=True):
                acc.update(a, b)
            ss += s
            ys += y
        st, ex = acc.compute(), anomaly_metrics(ss, ys)
        print(f"  {kind:8s} {sum(s.size for s in ss):,} pixels: " + "  ".join(
            f"{k} {ex[k]:.4f} |Δ| {abs(ex[k] - st[k]):.1e}" for k in ex))


if __name__ == "__main__":
    main()
