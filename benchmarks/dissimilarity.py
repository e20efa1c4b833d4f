"""Time the main dissimilarity network: forward and forward+backward at 256×512 (spec §8 "CPU timings").

    python benchmarks/dissimilarity.py                       # batch 1 and 4, fp32 (AMP too on CUDA)
    python benchmarks/dissimilarity.py --batches 1 --options # plus before/after of each speed option

Each setting: ``--warmup`` untimed runs, then the median of ``--runs``. Options compared (batch 1):
``joint-encoding`` (one encoder pass for original ‖ synthesis — on by default in the model) and
``channels-last`` (NHWC memory format). The original's CPU figures are printed for reference only:
machines differ, and this machine may be shared (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from reprolib.models import DissimilarityConfig, DissimilarityNet

ORIGINAL_CPU = {"forward": 3.78, "train": 9.40}  # s, 1×3×256×512, 2 cores (spec §8)


def make_inputs(batch: int, h: int, w: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the right kinds (ImageNet-like images, one-hot semantic map, [0,1] maps)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 20, (batch, h, w), generator=g)
    x = {
        "original": torch.randn(batch, 3, h, w, generator=g),
        "synthesis": torch.randn(batch, 3, h, w, generator=g),
        "semantic": F.one_hot(labels, 20)[..., :19].permute(0, 3, 1, 2).float(),
        "entropy": torch.rand(batch, 1, h, w, generator=g),
        "perceptual": torch.rand(batch, 1, h, w, generator=g),
        "distance": torch.rand(batch, 1, h, w, generator=g),
    }
    return {k: v.to(device) for k, v in x.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, warmup: int, runs: int, device: torch.device) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def bench(
    model: DissimilarityNet,
    batch: int,
    size: tuple[int, int],
    device: torch.device,
    *,
    amp: torch.dtype | None,
    channels_last: bool,
    warmup: int,
    runs: int,
) -> dict[str, tuple[float, float, float]]:
    """Forward (eval, no_grad) and train step (forward + weighted CE + backward) timings."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    x = make_inputs(batch, *size, device)
    if channels_last:
        x = {k: v.contiguous(memory_format=torch.channels_last) for k, v in x.items()}
    target = (x["entropy"][:, 0] > 0.9).long()
    target[:, :8] = 255
    class_weight = torch.tensor([1.46494611, 16.5204619], device=device)
    ctx = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else nullcontext

    def forward() -> None:
        model.eval()
        with torch.no_grad(), ctx():
            model(**x)

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with ctx():
            logits = model(**x)
        loss = F.cross_entropy(logits.float(), target, weight=class_weight, ignore_index=255)
        loss.backward()

    return {"forward": time_it(forward, warmup, runs, device), "train": time_it(train_step, warmup, runs, device)}


def _fmt(name: str, batch: int, stats: tuple[float, float, float], ref: float | None) -> str:
    med, lo, hi = stats
    line = f"  {name:<8} batch {batch}: {med:8.3f} s  ({lo:.3f}–{hi:.3f})  {batch / med:7.2f} img/s"
    if ref is not None:
        line += f"   [original CPU, batch 1: {ref:.2f} s]"
    return line


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,4", help="comma-separated batch sizes (default 1,4)")
    ap.add_argument("--size", default="256x512", help="HxW (default 256x512)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp-dtype", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--options", action="store_true", help="before/after of each speed option at batch 1")
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    h, w = (int(v) for v in args.size.lower().split("x"))
    batches = [int(b) for b in args.batches.split(",")]
    cfg = DissimilarityConfig.main(pretrained=False, width=args.width)
    model = DissimilarityNet(cfg)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"DissimilarityNet main (width {args.width}), {h}x{w}, device {device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load average {load}")
    print(f"warm-up {args.warmup}, median of {args.runs} runs")
    precisions: list[torch.dtype | None] = [None]
    if device.type == "cuda":
        precisions.append(getattr(torch, args.amp_dtype))
    for amp in precisions:
        print(f"[{'fp32' if amp is None else 'AMP ' + str(amp).replace('torch.', '')}]")
        for b in batches:
            res = bench(model, b, (h, w), device, amp=amp, channels_last=False, warmup=args.warmup, runs=args.runs)
            for name in ("forward", "train"):
                ref = ORIGINAL_CPU[name] if device.type == "cpu" and (h, w) == (256, 512) and b == 1 else None
                print(_fmt(name, b, res[name], ref))
    if args.options:
        amp = getattr(torch, args.amp_dtype) if device.type == "cuda" else None
        print(f"[options, batch 1, {'fp32' if amp is None else 'AMP'}: before → after]")
        for option in ("joint-encoding", "channels-last"):
            results = {}
            for enabled in (False, True):
                model.joint_encoding = enabled if option == "joint-encoding" else True
                results[enabled] = bench(model, 1, (h, w), device, amp=amp,
                                         channels_last=enabled and option == "channels-last",
                                         warmup=args.warmup, runs=args.runs)
                model = model.to(memory_format=torch.contiguous_format)
            model.joint_encoding = True
            for name in ("forward", "train"):
                before, after = results[False][name][0], results[True][name][0]
                print(f"  {option:<15} {name:<8} {before:8.3f} s → {after:8.3f} s  ({before / after:5.2f}×)")


if __name__ == "__main__":
    main()
