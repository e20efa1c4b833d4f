"""GPU check of the training core: a few deterministic training steps of the main network per precision.

    python benchmarks/gpu_check.py                  # CUDA: width 1.0, 256×512, batch 4, 6 steps, 3 precisions
    python benchmarks/gpu_check.py --device cpu --width 0.0625 --size 64 128 --steps 3   # the logic, on CPU
    python benchmarks/gpu_check.py --pipeline       # then `make smoke-full`'s dry run on the device, twice
    python benchmarks/gpu_check.py --pipeline --backends   # and the embedded backends' training, twice
    python benchmarks/gpu_check.py --ensemble learned-probability   # the network with Table 5's learned ensemble

For each precision (``32-true``, ``bf16-mixed``, ``16-mixed``) it trains the dissimilarity network with the
real LightningModule (loss, optimiser, plateau scheduler) under ``Trainer(deterministic=True)`` twice from
the same seed, asserts that every loss is finite and that both runs end with identical weights, and prints
the median step time, peak GPU memory and images/s. Without CUDA (and no ``--device cpu``) it prints one
skip line and exits 0. Exit 1 if any check fails.

``--pipeline`` adds the whole ``full`` path at the real resolutions: the paper-scale dry run of ``make smoke-full``
(world at 1024×2048, the real DeepWV3Plus + CC-FPSE, precompute, the width-1.0 network trained with the real
``train``, scored at the benchmark resolution) on the device, twice from empty folders; it asserts that both
runs' result rows are finite and equal and that both trained networks have identical weights, and prints
the first run's stage times. Then it trains the dry run's network 6 steps, once straight and once stopped
after step 4 and resumed (a Kaggle session's end), and asserts the same checkpoints and scheduler state.
``--pipeline-world`` / ``--pipeline-size`` shrink it (the logic, on CPU).

``--backends`` trains the embedded backends (segmentation and resynthesis, both strengths) on the device for
``--backends-steps`` steps, twice from one seed on a small embedded world, and asserts the same weights and scores.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from reprolib.training._determinism import prepare_cuda_determinism

prepare_cuda_determinism()  # before anything initialises CUDA

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from reprolib.precision import ieee_fp32  # noqa: E402
from reprolib.training.callbacks import stop_after_this_step  # noqa: E402
from reprolib.training.config import ENSEMBLES  # noqa: E402
from reprolib.training.module import DissimilarityModule  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


class SyntheticBatches(torch.utils.data.Dataset):
    """Fixed random samples shaped like a processed split (images, one-hot semantics, maps, 0/1/255 labels)."""

    def __init__(self, n: int, h: int, w: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            label = (torch.rand(h, w, generator=g) < 0.1).long()
            label[: h // 16] = 255
            sem = torch.randint(0, 19, (h, w), generator=g)
            self.items.append({
                "original": torch.randn(3, h, w, generator=g), "synthesis": torch.randn(3, h, w, generator=g),
                "semantic": F.one_hot(sem, 19).permute(2, 0, 1).float(), "label": label,
                **{k: torch.rand(1, h, w, generator=g) for k in ("entropy", "perceptual", "distance")},
            })

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


class StepTimer(L.Callback):
    """Wall time and loss of every training step (synchronised on CUDA)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.losses: list[float] = []

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        self._sync(module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self._sync(module)
        self.times.append(time.perf_counter() - self._t0)
        self.losses.append(float(outputs["loss"]))


def run_once(args: argparse.Namespace, precision: str) -> tuple[StepTimer, dict[str, torch.Tensor], float]:
    """One seeded run; (timer, final weights on CPU, peak GPU memory in GiB or nan)."""
    L.seed_everything(0, workers=True, verbose=False)
    h, w = args.size
    data = torch.utils.data.DataLoader(SyntheticBatches(args.batch * args.steps, h, w), batch_size=args.batch)
    module = DissimilarityModule({"width": args.width, "pretrained": False, "seed": 0}, class_weights=[1.5, 20.0],
                                 ensemble_mode=ENSEMBLES[args.ensemble])
    timer = StepTimer()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = L.Trainer(accelerator="cuda" if cuda else "cpu", devices=1, precision=precision, deterministic=True,
                        max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0)
    with nullcontext() if args.tf32 else ieee_fp32():
        trainer.fit(module, data)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else math.nan
    return timer, {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}, peak


def pipeline_check(device: str, work: Path, world: tuple[int, int] | None, size: tuple[int, int] | None,
                   steps: int | None) -> list[str]:
    """The smoke-full dry run twice on ``device``; the failures (empty: rows and weights repeat exactly)."""
    import pandas as pd

    from reprolib.experiments.smoke import run_smoke
    from reprolib.training.run import load_trained

    runs = []
    for i in range(2):
        out = work / f"results-{i}"
        cost = run_smoke(out_dir=out, work_dir=work / f"work-{i}", device=device, progress=False, steps=steps,
                         world=None if world is None else {"size": world}, size=size)
        rows = pd.read_csv(out / "smoke-full.csv")
        run_dir = Path(rows["checkpoint"].iloc[0]).parent.parent
        net, _ = load_trained(run_dir)
        runs.append((cost, rows, net.state_dict(), run_dir))
    (cost, rows, weights, run_dir), (_, rows_b, weights_b, _) = runs
    print(f"  pipeline: {cost['total_seconds']:.1f} s, world {cost['world_size'][0]}x{cost['world_size'][1]}, "
          f"size {cost['size'][0]}x{cost['size'][1]}, {cost['steps']} steps; stages (s):")
    for name, stage in cost["stages"].items():
        print(f"    {stage['seconds']:8.2f}  {name}")
    print(rows.pivot_table(index=["dataset", "variant"], columns="metric", values="value").to_string())
    failures = []
    if not rows["value"].map(math.isfinite).all():
        failures.append("pipeline: a non-finite metric")
    if rows["value"].tolist() != rows_b["value"].tolist():
        failures.append("pipeline: two dry runs from the same seed give other metrics")
    if not all(torch.equal(weights[k], weights_b[k]) for k in weights):
        failures.append("pipeline: two dry runs from the same seed train other weights")
    print(f"  pipeline: rows finite and equal, weights identical: {not failures}")
    failures += resume_check(run_dir, work)
    return failures


def backends_check(device: str, work: Path, steps: int) -> list[str]:
    """The embedded backends (both strengths; segmentation and resynthesis) trained ``steps`` steps on ``device``,
    twice from one seed on a small embedded world; the failures (empty: the same weights and scores)."""
    from reprolib.backends.embedded import load_embedded_resynthesis, load_embedded_segmentation
    from reprolib.io import read_json
    from reprolib.training.embedded_backends import train_embedded_backends
    from reprolib.world import generate_world

    world = generate_world(work / "backends-world", seed=0, size=(128, 256), n_train=16, n_val=4, n_laf=2,
                           n_static=2, progress=False)
    accelerator = "cuda" if device.startswith("cuda") else "cpu"
    failures = []
    for strength in ("strong", "light"):
        t0 = time.perf_counter()
        runs = [train_embedded_backends(world, work / f"backends-{i}", strength, seed=0, max_steps=steps,
                                        accelerator=accelerator, progress=False) for i in range(2)]
        seconds = (time.perf_counter() - t0) / 2
        a, b = ({"segmentation": load_embedded_segmentation(r["segmentation"]).state_dict(),
                 "resynthesis": load_embedded_resynthesis(r["resynthesis"]).state_dict()} for r in runs)
        scores = [read_json(r["metrics"]) for r in runs]
        same = (all(torch.equal(a[kind][k], b[kind][k]) for kind in a for k in a[kind])
                and all(scores[0][k] == scores[1][k] for k in ("segmentation", "resynthesis", "fs_static")))
        loss = scores[0]["loss"]
        finite = all(math.isfinite(v["last"]) for v in loss.values())
        print(f"  backends {strength:>6}: {steps} steps each, {seconds:6.1f} s a run; losses "
              + ", ".join(f"{k} {v['first']:.3f} -> {v['last']:.3f}" for k, v in loss.items())
              + f"; finite {finite}, identical runs {same}")
        if not (same and finite):
            failures.append(f"backends {strength}: two runs from one seed differ or a loss is not finite")
    return failures


class StopAt(L.Callback):
    """What a session's deadline does, at a chosen step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:  # noqa: ANN002
        if trainer.global_step == self.step:
            stop_after_this_step(trainer)


def resume_check(dry_run: Path, work: Path, steps: int = 6, stop: int = 4) -> list[str]:
    """The dry run's training, ``steps`` long, validating every 3: uninterrupted, and stopped after step ``stop``
    and resumed (a Kaggle session's end); both must end with the same checkpoints and scheduler state."""
    from reprolib.io import read_json
    from reprolib.training import train

    cfg = {**read_json(dry_run / "config.json"), "max_steps": steps, "val_every_n_steps": 3}
    straight, stopped = work / "resume-straight", work / "resume-stopped"
    train(cfg, straight)
    train(cfg, stopped, callbacks=[StopAt(stop)])
    at = torch.load(stopped / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    train(cfg, stopped)
    failures = [] if at == stop else [f"resume: the stopped run's checkpoint is at step {at}, not {stop}"]
    for which in ("last", "best"):
        a, b = (torch.load(run / "checkpoints" / f"{which}.ckpt", map_location="cpu", weights_only=True)
                for run in (straight, stopped))
        if a["global_step"] != b["global_step"] or not all(torch.equal(a["state_dict"][k], b["state_dict"][k])
                                                           for k in a["state_dict"]):
            failures.append(f"resume: {which}.ckpt of the run stopped at step {stop} and resumed differs")
        if which == "last" and a.get("plateau") != b.get("plateau"):
            failures.append("resume: the plateau scheduler's state differs after the resume")
    print(f"  resume: stopped after step {at} of {steps} and resumed == uninterrupted: {not failures}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu (logic check only)")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--ensemble", default="none", choices=[k for k, v in ENSEMBLES.items() if v or k == "none"],
                        help="train the network with a learned ensemble on top (Table 5's end-to-end runs)")
    parser.add_argument("--pipeline", action="store_true", help="also the smoke-full dry run, twice (see above)")
    parser.add_argument("--pipeline-world", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="the dry run's world size (default the smoke profile's 1024 2048)")
    parser.add_argument("--pipeline-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="the dry run's processing size (default 256 512)")
    parser.add_argument("--pipeline-steps", type=int, default=None, help="the dry run's training steps (default 2)")
    parser.add_argument("--backends", action="store_true",
                        help="also the embedded backends' training on the device, twice (see above)")
    parser.add_argument("--backends-steps", type=int, default=20, help="their training steps (default 20)")
    parser.add_argument("--tf32", action="store_true",
                        help="time 32-true with TF32 allowed (PyTorch's default on Ampere and newer GPUs) instead of "
                             "IEEE fp32, as reprolib trains (reprolib.precision)")
    parser.add_argument("--work", default=None, help="folder for the dry runs (default a temporary one)")
    args = parser.parse_args(argv)
    if args.device is None:
        if not torch.cuda.is_available():
            print(f"gpu_check: SKIPPED - no CUDA device (torch {torch.__version__}); "
                  "run with --device cpu to check the logic on CPU")
            return 0
        args.device = "cuda"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"gpu_check: {name}, torch {torch.__version__}, width {args.width}, {args.size[0]}x{args.size[1]}, "
          f"batch {args.batch}, {args.steps} steps, ensemble {args.ensemble}, deterministic, "
          f"fp32 {'with TF32 allowed' if args.tf32 else 'IEEE (no TF32)'}")
    failures = []
    for precision in args.precisions:
        if precision == "bf16-mixed" and args.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
            print(f"  {precision:>10}: not supported by this GPU (skipped)")
            continue
        try:
            first, weights_a, peak = run_once(args, precision)
            second, weights_b, _ = run_once(args, precision)
        except RuntimeError as exc:  # e.g. an op without a deterministic CUDA kernel
            failures.append(f"{precision}: {str(exc).splitlines()[0]}")
            print(f"  {precision:>10}: FAILED {str(exc).splitlines()[0]}")
            continue
        finite = all(math.isfinite(v) for v in first.losses + second.losses)
        same = first.losses == second.losses and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
        timed = first.times[1:] or first.times  # the first step includes cuDNN / allocator warm-up
        step = statistics.median(timed)
        print(f"  {precision:>10}: step {step * 1000:8.1f} ms  {args.batch / step:7.2f} images/s  "
              f"peak {peak:6.2f} GiB  losses {first.losses[0]:.4f} -> {first.losses[-1]:.4f}  "
              f"finite {finite}  identical runs {same}")
        if not finite:
            failures.append(f"{precision}: non-finite loss {first.losses} / {second.losses}")
        if not same:
            failures.append(f"{precision}: two runs from the same seed differ")
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        checks = {"backends": (args.backends, lambda: backends_check(args.device, work, args.backends_steps)),
                  "pipeline": (args.pipeline, lambda: pipeline_check(args.device, work, args.pipeline_world,
                                                                     args.pipeline_size, args.pipeline_steps))}
        for name, (wanted, check) in checks.items():
            if not wanted:
                continue
            try:
                failures += check()
            except RuntimeError as exc:  # e.g. an op without a deterministic CUDA kernel
                failures.append(f"{name}: {str(exc).splitlines()[0]}")
                print(f"  {name}: FAILED {str(exc).splitlines()[0]}")
    if failures:
        print("gpu_check: FAILED\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("gpu_check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
