"""Table 2 of the MLRC report — computational requirements — measured on the machine this runs on.

:func:`computational_requirements` times, with the pipeline's own backends and networks at the profile's
sizes: the precompute per image (segmentation + H + D at the dataset's resolution; resynthesis + V at the
processing size), the dissimilarity network's training step (→ time per epoch over the training images),
its inference per image, and peak GPU and CPU memory; it puts each beside the report's figure
(:data:`REPORT_TABLE2`, Kaggle Tesla P100-PCIE-16GB) and names the hardware. Timings are medians over a few
repetitions after one warm-up; an epoch is extrapolated from the step time (the report's 30 min/epoch is a
wall-clock figure that also includes its data loading and validation).
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from reprolib.data.cityscapes import CityscapesDataset
from reprolib.data.transforms import imagenet_normalize
from reprolib.experiments import pipeline as P
from reprolib.experiments.cost import REPORT_TABLE2 as _REPORT
from reprolib.experiments.profiles import get_pipeline_profile
from reprolib.experiments.runner import resolve_device
from reprolib.io import atomic_write, write_json
from reprolib.labels import IGNORE_INDEX, train_to_label
from reprolib.precision import ieee_fp32
from reprolib.training.config import PRECISIONS

#: The report's Table 2 and §3.6 as printed beside ours, from its one home (:data:`cost.REPORT_TABLE2`).
#: Precompute totals are for the whole training data, whose image count the report does not state.
REPORT_TABLE2: dict[str, str] = {
    "segmentation + H + D (precompute)": f"{_REPORT['precompute_maps_h']:g} h in total",
    "resynthesis + V (precompute)": f"{_REPORT['precompute_synthesis_h']:g} h in total",
    "training time per epoch": f"{_REPORT['epoch_min']:g} min",
    "peak GPU memory (training)": f"{_REPORT['gpu_memory_gb']} GB",
    "peak CPU memory": f"{_REPORT['cpu_memory_gb']} GB",
    "inference time per image (dissimilarity network)": f"{_REPORT['inference_ms']:g} ms",
}
REPORT_HARDWARE = _REPORT["hardware"]
#: Cityscapes train images: how many images one epoch (and the training-data precompute) covers in full
CITYSCAPES_TRAIN_IMAGES = 2975


def hardware() -> dict[str, Any]:
    """CPU model, cores and torch threads; GPU name and memory when CUDA is used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__, "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def _timed(fn: Callable[[], Any], device: str, repeat: int) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs after one warm-up (CUDA synchronised)."""
    def once() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    once()
    return statistics.median(once() for _ in range(max(1, repeat)))


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if platform.system() == "Darwin" else 2**20)


def _time_precompute(ctx: Any, combo: str, images: list[torch.Tensor], size: tuple[int, int],
                     repeat: int) -> tuple[float, float]:
    """Seconds per image of (segmentation + H + D at the image's own resolution, as the original) and
    (resynthesis + V at the processing size), with the combo's backends."""
    # lazy: reprolib.maps imports torchvision, +2.3 s on `import reprolib.experiments` (python -X importtime)
    from reprolib.maps import PerceptualDifference, softmax_distance, softmax_entropy

    dev = ctx.device
    seg, resyn = P.backends(ctx, combo)
    seg, resyn = seg.to(dev).eval(), resyn.to(dev).eval()
    perceptual = PerceptualDifference().to(dev)

    with torch.no_grad():
        # 1. segmentation + H + D at the dataset's resolution (as the original), one image at a time
        def segment_all() -> None:
            for img in images:
                logits = seg(imagenet_normalize(img[None].to(dev))).float()
                softmax_entropy(logits), softmax_distance(logits)

        seg_s = _timed(segment_all, dev, repeat) / len(images)
        # 2. resynthesis + V at the processing size
        small = [torch.nn.functional.interpolate(img[None], size=size, mode="bilinear", antialias=True,
                                                 align_corners=False).to(dev) for img in images]
        label_ids = []
        for img in small:
            pred = seg(imagenet_normalize(img)).float().argmax(1).cpu().numpy()
            label_ids.append(torch.from_numpy(train_to_label(pred).astype("int64")).to(dev))

        def resynthesise_all() -> None:
            for img, lab in zip(small, label_ids, strict=True):
                syn = resyn(lab, image=img).float()
                perceptual(imagenet_normalize(img), imagenet_normalize(syn))

        resyn_s = _timed(resynthesise_all, dev, repeat) / len(images)
    return seg_s, resyn_s


@ieee_fp32()
def computational_requirements(
    *,
    profile: str = "demo",
    data_root: str | Path | None = None,
    checkpoints: dict[str, str] | None = None,
    work_dir: str | Path = "data",
    output_dir: str | Path | None = None,
    device: str = "auto",
    combo: str = "original",
    n_images: int = 3,
    repeat: int = 3,
    precision: str = "32-true",
) -> pd.DataFrame:
    """Measure Table 2 on this machine; returns (and writes to ``output_dir/table2.csv`` and ``table2.json``) one row
    per quantity with the report's figure beside ours, the unit, and how ours was measured.

    ``precision``: the training step's, as ``make table4 PRECISION=…`` trains (fp32 unless asked)."""
    # lazy: reprolib.training.module imports Lightning, +3.2 s on `import reprolib.experiments` (python -X importtime)
    from reprolib.training.module import DissimilarityModule

    if precision not in PRECISIONS:  # before any timing, not at the training step
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    prof = get_pipeline_profile(profile)
    dev = resolve_device(device)
    work = Path(work_dir)
    ctx = P.Context(profile=prof, work_dir=work / prof.name, data=P.resolve_data(work / prof.name, data_root, prof),
                    checkpoints=checkpoints, device=dev)
    cuda = dev.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ds = CityscapesDataset(ctx.data.cityscapes, "train")
    n_train = len(ds)
    images = [torch.from_numpy(ds.load_arrays(i)["image"].copy()).permute(2, 0, 1).float().div(255)
              for i in range(min(n_images, n_train))]
    size = tuple(prof.size)
    seg_s, resyn_s = _time_precompute(ctx, combo, images, size, repeat)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    # 3. one training step of the dissimilarity network (batch, size and precision as the profile trains)
    model_cfg = {**prof.model, "seed": 0}
    module = DissimilarityModule(model_cfg, lr=float(prof.training.get("lr", 1e-4)), class_weights=[1.0, 10.0]).to(dev)
    module.train()
    optim = torch.optim.Adam(module.parameters(), lr=float(prof.training.get("lr", 1e-4)), betas=(0.5, 0.999))
    bs = int(prof.training.get("batch_size", 4))
    g = torch.Generator().manual_seed(0)
    h, w = size

    def batch_of(b: int) -> dict[str, torch.Tensor]:
        sem = torch.nn.functional.one_hot(torch.randint(0, 19, (b, h, w), generator=g), 19).permute(0, 3, 1, 2)
        return {"original": torch.randn(b, 3, h, w, generator=g).to(dev),
                "synthesis": torch.randn(b, 3, h, w, generator=g).to(dev), "semantic": sem.float().to(dev),
                **{k: torch.rand(b, 1, h, w, generator=g).to(dev) for k in ("entropy", "perceptual", "distance")}}

    batch = batch_of(bs)
    label = (torch.rand(bs, h, w, generator=g) < 0.1).long().to(dev)
    # as Lightning's mixed precision: autocast in the forward, a loss scaler for fp16 only
    dev_type = "cuda" if cuda else "cpu"
    scaler = torch.amp.GradScaler(dev_type, enabled=precision == "16-mixed")
    weight = torch.tensor([1.0, 10.0], device=dev)
    autocast_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def step() -> None:
        optim.zero_grad(set_to_none=True)
        with torch.autocast(dev_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = module.net(**batch)
        loss = torch.nn.functional.cross_entropy(logits.float(), label, weight=weight, ignore_index=IGNORE_INDEX)
        scaler.scale(loss).backward()
        scaler.step(optim)
        scaler.update()

    step_s = _timed(step, dev, repeat)
    gpu_train_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    # 4. inference per image (batch 1, eval, no grad), as the report's 63 ms
    net = module.net.eval()
    one = batch_of(1)
    with torch.no_grad():
        infer_s = _timed(lambda: net(**one), dev, max(repeat, 5))
    steps_per_epoch = max(1, (CITYSCAPES_TRAIN_IMAGES if not ctx.data.embedded else n_train) // bs)
    n_epoch_images = CITYSCAPES_TRAIN_IMAGES if not ctx.data.embedded else n_train
    hw = hardware()
    backend = P.combo_name(ctx, combo)
    rows = [
        ("segmentation + H + D (precompute)", seg_s, "s/image",
         f"{backend} segmentation at the dataset's resolution ({len(images)} images); "
         f"× {n_epoch_images} images = {_duration(seg_s * n_epoch_images)}"),
        ("resynthesis + V (precompute)", resyn_s, "s/image",
         f"{backend} resynthesis + VGG19 V at {h}x{w}; × {n_epoch_images} images = "
         f"{_duration(resyn_s * n_epoch_images)}"),
        ("training time per epoch", step_s * steps_per_epoch / 60, "min",
         f"{step_s:.3f} s/step (batch {bs}, {h}x{w}, {precision}) × {steps_per_epoch} steps; no data loading"),
        ("peak GPU memory (training)", gpu_train_gib, "GiB",
         "torch.cuda.max_memory_allocated over the training steps" if cuda else "no GPU used"),
        ("peak CPU memory", _peak_rss_gib(), "GiB", "peak resident memory of this process (ru_maxrss)"),
        ("inference time per image (dissimilarity network)", infer_s * 1000, "ms",
         f"batch 1, {h}x{w}, eval + no_grad, fp32, median of {max(repeat, 5)}"),
    ]
    device_name = hw["gpu"] if cuda else f"{hw['cpu']} ({hw['torch_threads']} torch threads)"
    df = pd.DataFrame([{"quantity": q, "report": REPORT_TABLE2[q], "ours": None if v is None else round(float(v), 4),
                        "unit": u, "how": how, "profile": prof.name, "device": device_name}
                       for q, v, u, how in rows])
    if output_dir is not None:
        out = Path(output_dir)
        with atomic_write(out / "table2.csv", "w") as fh:
            df.to_csv(fh, index=False)
        write_json(out / "table2.json", {"rows": df.to_dict(orient="records"), "hardware": hw,
                                               "report_hardware": REPORT_HARDWARE, "profile": prof.name,
                                               "width": prof.model.get("width"), "size": list(size)})
    return df
