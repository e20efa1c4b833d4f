"""Time the main dissimilarity network: forward and forward+backward at 256×512 (spec §8 "CPU timings").

    python benchmarks/dissimilarity.py                       # batch 1 and 4, fp32 (AMP too on CUDA)
    python benchmarks/dissimilarity.py --batches 1 --options # plus before/after of each speed option
    python benchmarks/dissimilarity.py --original /tmp/synboost-original   # side by side with the original

    python benchmarks/dissimilarity.py --bound                # what the convolutions allow on this machine

Each setting: ``--warmup`` untimed runs, then the median of ``--runs``. Options compared (batch 1):
``joint-encoding`` (one encoder pass for original ‖ synthesis — on by default in the model) and
``channels-last`` (NHWC memory format; the model's default on CPU). Without ``--original`` the original's
CPU figures (spec §8) are printed for reference only: machines differ, and this machine may be shared (the
load average is printed).

``--original PATH`` (a checkout of github.com/giandbt/synboost; nothing of it is copied here) imports its
``DissimNetPrior`` from PATH at run time, builds it with the SPADE decoder and *our weights* (through
:func:`reprolib.models.to_original_state_dict`), checks both give the same logits, then times forward and
train step at ``--size`` in fp32 on the same inputs on ``--device`` (batch 1, or each of ``--batches``), alternating
original and ours run by run (A B A B …) so a change in the machine's load hits both alike, and prints both
medians and the ratio.

``--malloc keep`` (default, as the pipeline runs: :func:`reprolib.allocator.keep_freed_memory`) or
``default`` (glibc's own: every allocation of 32 MB or more mapped and page-faulted anew). It is set for
the whole process, so with ``--original`` both networks run under the same allocator.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from reprolib.allocator import keep_freed_memory
from reprolib.models import DissimilarityConfig, DissimilarityNet, to_original_state_dict
from reprolib.precision import ieee_fp32, tf32_allowed

CPU = torch.device("cpu")
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


def step_functions(
    call: Callable[[], torch.Tensor], model: torch.nn.Module, target: torch.Tensor, class_weight: torch.Tensor,
    ctx: Callable = nullcontext,
) -> dict[str, Callable[[], None]]:
    """``forward`` (eval, no_grad) and ``train`` (forward + weighted CE + backward) closures over ``call``."""

    def forward() -> None:
        model.eval()
        with torch.no_grad(), ctx():
            call()

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        with ctx():
            logits = call()
        loss = F.cross_entropy(logits.float(), target, weight=class_weight, ignore_index=255)
        loss.backward()

    return {"forward": forward, "train": train_step}


def bench(
    model: DissimilarityNet,
    batch: int,
    size: tuple[int, int],
    device: torch.device,
    *,
    amp: torch.dtype | None,
    channels_last: bool | None,
    warmup: int,
    runs: int,
) -> dict[str, tuple[float, float, float]]:
    """Forward (eval, no_grad) and train step (forward + weighted CE + backward) timings.

    ``channels_last``: None = the model's default layout (channels-last on CPU, ``reprolib.models.layout``);
    True / False forces NHWC / NCHW activations and weights."""
    model = model.to(device=device)
    model.channels_last = channels_last
    fmt = model.memory_format(device)
    model = model.to(memory_format=fmt)  # weights too (the forward would convert them on its first call)
    x = make_inputs(batch, *size, device)
    target = (x["entropy"][:, 0] > 0.9).long()
    target[:, :8] = 255
    class_weight = torch.tensor([1.46494611, 16.5204619], device=device)
    ctx = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None else nullcontext
    steps = step_functions(lambda: model(**x), model, target, class_weight, ctx)
    return {name: time_it(steps[name], warmup, runs, device) for name in ("forward", "train")}


def load_original_class(path: str | os.PathLike) -> type[torch.nn.Module]:
    """``DissimNetPrior`` imported from a checkout of the original repository at ``path`` (read, not copied)."""
    root = Path(path).resolve()
    module_file = root / "image_dissimilarity" / "models" / "dissimilarity_model.py"
    if not module_file.is_file():
        raise SystemExit(f"--original {path}: no {module_file.relative_to(root)} there; "
                         "pass a checkout of github.com/giandbt/synboost")
    sys.path.insert(0, str(root))  # the original imports itself as ``image_dissimilarity.…``
    return importlib.import_module("image_dissimilarity.models.dissimilarity_model").DissimNetPrior


def build_original(cls: type[torch.nn.Module], ours: DissimilarityNet) -> torch.nn.Module:
    """The original's main variant (prior + SPADE decoder) carrying ``ours``'s weights (strict load)."""
    import warnings

    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" notice from the original's code
        warnings.simplefilter("ignore", UserWarning)
        model = cls(architecture="vgg16", semantic=True, pretrained=False, correlation=True, prior=True,
                    spade="decoder", num_semantic_classes=ours.config.num_classes)
    model.load_state_dict(to_original_state_dict(ours), strict=True)
    return model


def time_alternating(fns: dict[str, Callable[[], None]], warmup: int, runs: int,
                     device: torch.device = CPU) -> dict[str, list[float]]:
    """Seconds of each of ``fns`` over ``runs`` rounds, the functions taking turns inside every round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def compare_with_original(
    path: str, ours: DissimilarityNet, size: tuple[int, int], warmup: int, runs: int,
    device: torch.device = CPU, batch: int = 1,
) -> dict[str, dict[str, float]]:
    """Side-by-side fp32 timing on ``device``: original ``DissimNetPrior`` vs ours, same weights and inputs, each
    network in its own default memory layout."""
    original = build_original(load_original_class(path), ours).to(device)
    ours = ours.to(device=device)
    ours.channels_last = None
    ours = ours.to(memory_format=ours.memory_format(device))
    x = make_inputs(batch, *size, device)
    target = (x["entropy"][:, 0] > 0.9).long()
    target[:, :8] = 255
    class_weight = torch.tensor([1.46494611, 16.5204619], device=device)
    ours_call = lambda: ours(**x)  # noqa: E731
    original_call = lambda: original(x["original"], x["synthesis"], x["semantic"],  # noqa: E731
                                     x["entropy"], x["perceptual"], x["distance"])
    ours.eval()
    original.eval()
    with torch.no_grad():
        a, b = original_call(), ours_call()
    diff = ((a - b).abs().max() / a.abs().max()).item()
    print(f"same weights and inputs: max |original − ours| / max |original| = {diff:.2e}")
    steps = {"original": step_functions(original_call, original, target, class_weight),
             "ours": step_functions(ours_call, ours, target, class_weight)}
    out = {}
    for name in ("forward", "train"):
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        t = time_alternating({who: steps[who][name] for who in steps}, warmup, runs, device)
        med = {who: statistics.median(v) for who, v in t.items()}
        ratio = med["original"] / med["ours"]
        pairs = statistics.median(o / u for o, u in zip(t["original"], t["ours"], strict=True))
        print(f"  {name:<8} original {med['original']:7.3f} s   ours {med['ours']:7.3f} s   "
              f"ratio {ratio:4.2f}×  (median of per-round ratios {pairs:4.2f}×; load average before {load})")
        out[name] = {**med, "ratio": ratio}
    return out


def convolution_bound(size: tuple[int, int], warmup: int, runs: int) -> dict[str, float]:
    """How fast a width-1 train step (batch 1, fp32) could be here: its FLOPs (``FlopCounterMode``), the best
    rate this machine's convolution kernels reach on large NHWC convolutions (measured now), and where the
    step's time goes (``torch.profiler``: convolution forward, convolution backward, everything else)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    model = DissimilarityNet(DissimilarityConfig.main(pretrained=False))
    x = make_inputs(1, *size, torch.device("cpu"))
    target = (x["entropy"][:, 0] > 0.9).long()
    steps = step_functions(lambda: model(**x), model, target, torch.tensor([1.46494611, 16.5204619]))
    with FlopCounterMode(display=False) as fc:
        steps["train"]()
    counts = fc.get_flop_counts()["Global"]
    conv_fwd = sum(v for k, v in counts.items() if "convolution_backward" not in str(k) and "convolution" in str(k))
    conv_bwd = sum(v for k, v in counts.items() if "convolution_backward" in str(k))
    total = fc.get_total_flops()
    peak = 0.0
    for c, h, w in ((128, 128, 256), (256, 64, 128), (512, 32, 64)):
        a = torch.randn(2, c, h, w).contiguous(memory_format=torch.channels_last)
        k = torch.randn(c, c, 3, 3).contiguous(memory_format=torch.channels_last)
        best, _, _ = time_it(lambda a=a, k=k: torch.conv2d(a, k, padding=1), warmup, max(runs, 3), torch.device("cpu"))
        peak = max(peak, 2 * 2 * c * c * 9 * h * w / best)
    for _ in range(warmup):
        steps["train"]()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        steps["train"]()
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    t_fwd = self_us.get("aten::mkldnn_convolution", 0.0) / 1e6
    t_bwd = self_us.get("aten::convolution_backward", 0.0) / 1e6
    t_all = sum(self_us.values()) / 1e6
    out = {"train_gflop": total / 1e9, "conv_forward_gflop": conv_fwd / 1e9, "conv_backward_gflop": conv_bwd / 1e9,
           "peak_gflops": peak / 1e9, "conv_forward_s": t_fwd, "conv_backward_s": t_bwd, "step_s": t_all}
    print(f"  train step {out['train_gflop']:.0f} GFLOP (convolutions: forward {out['conv_forward_gflop']:.0f}, "
          f"backward {out['conv_backward_gflop']:.0f}); best convolution rate here {out['peak_gflops']:.0f} GFLOP/s "
          f"→ at least {total / peak:.2f} s per step")
    print(f"  profiled step {t_all:.2f} s: convolution forward {t_fwd:.2f} s ({conv_fwd / 1e9 / t_fwd:.0f} GFLOP/s), "
          f"backward {t_bwd:.2f} s ({conv_bwd / 1e9 / t_bwd:.0f} GFLOP/s), the rest {t_all - t_fwd - t_bwd:.2f} s")
    print(f"  with no time outside the convolutions the step would take {t_fwd + t_bwd:.2f} s: the most any "
          f"non-convolution change can reach is (original's step) / {t_fwd + t_bwd:.2f} s")
    return out


def _fmt(name: str, batch: int, stats: tuple[float, float, float], ref: float | None) -> str:
    med, lo, hi = stats
    line = f"  {name:<8} batch {batch}: {med:8.3f} s  ({lo:.3f}–{hi:.3f})  {batch / med:7.2f} img/s"
    if ref is not None:
        line += f"   [original CPU, batch 1: {ref:.2f} s]"
    return line


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,4; 1 with --original)")
    ap.add_argument("--size", default="256x512", help="HxW (default 256x512)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp-dtype", default="bfloat16", choices=["bfloat16", "float16"])
    ap.add_argument("--options", action="store_true", help="before/after of each speed option at batch 1")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--bound", action="store_true",
                    help="FLOPs of a width-1 train step, this machine's best convolution rate and the step's "
                         "convolution / other split (what any change can reach)")
    ap.add_argument("--original", metavar="PATH", default=None,
                    help="checkout of the original repository: time its DissimNetPrior side by side (fp32 on "
                         "--device, each of --batches, default 1), alternating runs, and print the ratio")
    ap.add_argument("--malloc", default="keep", choices=["keep", "default"],
                    help="keep freed memory for reuse (reprolib.allocator, as the pipeline) or glibc's default")
    ap.add_argument("--tf32", action="store_true",
                    help="let cuDNN/cuBLAS use TF32 for fp32 on Ampere and newer GPUs (PyTorch's default); without it "
                         "fp32 is IEEE fp32, as every reprolib stage runs it (reprolib.precision)")
    args = ap.parse_args(argv)
    with nullcontext() if args.tf32 else ieee_fp32():
        _run(args)


def _run(args: argparse.Namespace) -> None:
    malloc = "keep" if args.malloc == "keep" and keep_freed_memory() else "default"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    h, w = (int(v) for v in args.size.lower().split("x"))
    batches = [int(b) for b in (args.batches or ("1" if args.original else "1,4")).split(",")]
    cfg = DissimilarityConfig.main(pretrained=False, width=args.width)
    model = DissimilarityNet(cfg)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"DissimilarityNet main (width {args.width}), {h}x{w}, device {device}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, malloc {malloc}, load average {load}, "
          f"fp32 {'TF32 allowed' if tf32_allowed() else 'IEEE'}")
    print(f"warm-up {args.warmup}, median of {args.runs} runs")
    if args.bound:
        print("[bound: width 1, batch 1, fp32, cpu]")
        convolution_bound((h, w), args.warmup, args.runs)
        return
    if args.original:
        if args.width != 1.0:
            raise SystemExit("--original compares the paper's network: use --width 1.0")
        for b in batches:
            print(f"[original DissimNetPrior (spade='decoder', prior=True) from {args.original} vs ours, batch {b}, "
                  f"fp32, {device}, alternating]")
            compare_with_original(args.original, model, (h, w), args.warmup, args.runs, device, b)
        print(f"load average after {os.getloadavg() if hasattr(os, 'getloadavg') else None}")
        return
    precisions: list[torch.dtype | None] = [None]
    if device.type == "cuda":
        precisions.append(getattr(torch, args.amp_dtype))
    for amp in precisions:
        print(f"[{'fp32' if amp is None else 'AMP ' + str(amp).replace('torch.', '')}]")
        for b in batches:
            res = bench(model, b, (h, w), device, amp=amp, channels_last=None, warmup=args.warmup, runs=args.runs)
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
                                         channels_last=enabled if option == "channels-last" else None,
                                         warmup=args.warmup, runs=args.runs)
            model.joint_encoding = True
            for name in ("forward", "train"):
                before, after = results[False][name][0], results[True][name][0]
                print(f"  {option:<15} {name:<8} {before:8.3f} s → {after:8.3f} s  ({before / after:5.2f}×)")


if __name__ == "__main__":
    main()
