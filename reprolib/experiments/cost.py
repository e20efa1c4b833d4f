"""What a table's ``full`` run costs: measured per stage here, and estimated for a P100 / T4 from the report.

:class:`CostMeter` records wall time and peak resident memory per named stage (the dry run of
:mod:`reprolib.experiments.smoke` writes them to ``cost.json``); :func:`estimate` turns each table's workload
(:func:`table_workload`: trained models, epochs, precomputed data sets) into GPU-hours and 12 h Kaggle sessions
from the MLRC report's Table 2 (:data:`REPORT_TABLE2`); :func:`format_estimate` prints both side by side.

:func:`output_size` estimates the size of a table's work folder on the real data (what each Kaggle session's output
carries) from per-item sizes the dry run measured on the code's own files (:func:`reprolib.experiments.smoke.
measure_item_sizes`): a generated and a processed image, a checkpoint, a snapshot, a score cache and a prediction PNG.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psutil

from reprolib.experiments.profiles import PROFILES
from reprolib.experiments.session import OUTPUT_BUDGET_BYTES
from reprolib.experiments.tables import TABLES, get_table
from reprolib.training.config import TrainConfig, shared_validations

#: The MLRC report's Table 2 ("Computational Requirement", §3.6), measured on Kaggle's Tesla P100-PCIE-16GB
#: (CUDA 11.0). Precompute: 3 h for the semantic maps (H, D) and 2 h for the resyntheses (with V).
REPORT_TABLE2: dict[str, Any] = {
    "hardware": "Kaggle Tesla P100-PCIE-16GB (NVIDIA-SMI 450.119.04, CUDA 11.0)",
    "precompute_maps_h": 3.0,
    "precompute_synthesis_h": 2.0,
    "epoch_min": 30.0,
    "gpu_memory_gb": "9-10",
    "cpu_memory_gb": "2-3",
    "inference_ms": 63.0,
}
#: Epochs per table in the report's protocol: 50 for the main results / ablation, and "for additional
#: experiments, we just train for 25 epochs" (report, Table 1 caption): Tables 5–8 and the figures.
REPORT_EPOCHS = {"table3": 50, "table4": 50, "figure3": 50, "table5": 25, "table6": 25, "table7": 25, "table8": 25,
                 "figures": 25}
#: FS validation images scored per trained model (FS Lost & Found 100, FS Static 30), at 63 ms each
EVAL_IMAGES = 130
#: T4 / P100 slowdown bounds: peak fp32 throughput (P100-PCIe 9.3 vs T4 8.1 TFLOPS) and memory bandwidth
#: (732 vs 320 GB/s). An assumption, not a measurement: the report ran only on the P100.
T4_FACTOR = (9.3 / 8.1, 732 / 320)
SESSION_HOURS = 12.0  # one Kaggle GPU session


#: images of the real data sets a table reads: Cityscapes train and val (generated, then precomputed) and the FS
#: Lost & Found and FS Static validation sets (precomputed, scored)
DATA_IMAGES = {"cityscapes_train": 2975, "cityscapes_val": 500, "fs_lost_and_found": 100, "fs_static": 30}
REAL_SIZE = (1024, 2048)  # Cityscapes' and Fishyscapes' images: the generator's output, the benchmark resolution
#: the folders whose PNGs the dry run cannot size truly, each with the incompressible image that bounds it
#: (``items["noise"]``): photographs (the world's images are photo-like, but not photographs), and the resynthesis and
#: maps, near-constant with the random backend weights the dry run uses unless the checkpoints are given
BOUND_DIRS = {"generated": {"original": "rgb_native"},
              "processed": {"original": "rgb_processed", "synthesis": "rgb_processed", "entropy": "gray_processed",
                            "logit_distance": "gray_processed", "mae_features": "gray_processed"}}
OUTPUT_BUDGET_GB = OUTPUT_BUDGET_BYTES / 1e9  # what a session's export keeps its output under


# ----------------------------------------------------------------------------------------- measuring
class CostMeter:
    """Wall time and peak RSS (process + children, sampled by a thread with psutil) per named stage."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.stages: dict[str, dict[str, float]] = {}
        self._proc = psutil.Process()

    def _rss(self) -> int:
        rss = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                pass
        return rss

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time ``name`` and record the highest RSS seen while it runs. Set ``cached`` in the yielded dict when the
        stage found its work done: its time is then not a measurement of that work."""
        peak = [self._rss()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self.interval):
                peak[0] = max(peak[0], self._rss())

        thread = threading.Thread(target=sample, daemon=True)
        print(f"[smoke] {name} …", flush=True)
        t0 = time.perf_counter()
        thread.start()
        flags: dict[str, Any] = {"cached": False}
        try:
            yield flags
        finally:
            stop.set()
            thread.join()
            seconds = time.perf_counter() - t0
            peak[0] = max(peak[0], self._rss())
            self.stages[name] = {"seconds": round(seconds, 2), "peak_rss_gb": round(peak[0] / 2**30, 3),
                                 **({"cached": True} if flags["cached"] else {})}
            print(f"[smoke] {name}: {seconds:.1f} s, peak RSS {peak[0] / 2**30:.2f} GiB"
                  + (" (found done: not measured)" if flags["cached"] else ""), flush=True)


# ------------------------------------------------------------------------------------------ estimate
def table_workload(table: str, report_selection: bool = True) -> dict[str, int]:
    """Trained models (distinct variants × the report's seeds), epochs each, epochs not trained because a run
    starts from its corrected twin's trajectory (``shared_epochs``, over all seeds), and precomputed data sets
    (one per combo) of one table's ``full`` run (``report_selection=False``: without the report-selection rows)."""
    spec = get_table(table)
    if not report_selection:
        spec = replace(spec, variants=tuple(v for v in spec.variants if v.selection == "corrected"))
    trained = {v.training_key() for v in spec.variants if not v.reuse}
    # one processed split per combo: "w/o data generator" trains on the same split as the full model, with its other
    # label folder (reprolib.experiments.pipeline.training_split)
    data = {v.combo or spec.default_combo for v in spec.variants if not v.reuse}
    epochs = REPORT_EPOCHS.get(table, 50)
    # a report-selection run shares its twin's first validations (reprolib.training.selection); `full` validates
    # once an epoch, so it starts after that many epochs (all of them when its plateau scheduler cannot act)
    patience = int(PROFILES["full"].training.get("patience", TrainConfig.patience))
    corrected = {v.training_key(): v for v in spec.variants if not v.reuse and v.selection == "corrected"}
    twins = sum(len(spec.report_twins(v)) for v in corrected.values())
    shared = twins * len(shared_validations(epochs, 1, patience))
    return {"trainings": len(trained) * len(spec.seeds_full), "epochs": epochs,
            "shared_epochs": shared * len(spec.seeds_full), "precomputes": len(data)}


def _p100_hours(w: Mapping[str, int]) -> tuple[float, float, float]:
    """(precompute, training, scoring) P100 hours of a :func:`table_workload`."""
    pre = w["precomputes"] * (REPORT_TABLE2["precompute_maps_h"] + REPORT_TABLE2["precompute_synthesis_h"])
    train = (w["trainings"] * w["epochs"] - w["shared_epochs"]) * REPORT_TABLE2["epoch_min"] / 60
    # each trained model scored once, and each snapshot a report-selection run starts from validated once
    score = (w["trainings"] + w["shared_epochs"]) * EVAL_IMAGES * REPORT_TABLE2["inference_ms"] / 1000 / 3600
    return pre, train, score


def estimate(tables: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """GPU-hours and 12 h Kaggle sessions per table's ``full`` run, from the report's Table 2 (P100) and the
    T4 bounds :data:`T4_FACTOR`. Precompute: 3 h + 2 h per data set; training: 30 min per epoch trained (not the
    ``shared_epochs``); scoring: 63 ms per FS validation image per model and per shared snapshot. Also the P100
    hours without the table's report-selection rows (``run_table(report_selection=False)``)."""
    out: dict[str, dict[str, Any]] = {}
    for name in tables or tuple(TABLES):
        w = table_workload(name)
        pre, train, score = _p100_hours(w)
        p100 = pre + train + score
        t4 = (p100 * T4_FACTOR[0], p100 * T4_FACTOR[1])
        out[name] = {**w, "precompute_h": round(pre, 2), "train_h": round(train, 2), "score_h": round(score, 3),
                     "p100_gpu_h": round(p100, 1), "p100_sessions_12h": math.ceil(p100 / SESSION_HOURS),
                     "p100_gpu_h_without_report_selection": round(
                         sum(_p100_hours(table_workload(name, report_selection=False))), 1),
                     "t4_gpu_h": [round(t, 1) for t in t4],
                     "t4_sessions_12h": [math.ceil(t / SESSION_HOURS) for t in t4]}
    return out


def _per_image(per_dir: Mapping[str, float], bound: Mapping[str, float] | None, scale: float) -> float:
    """Bytes an image takes in a split, its folders' measured sizes scaled by ``scale`` (pixels here / pixels
    measured); with ``bound`` (folder → bytes) those folders count at that size (an incompressible image) instead."""
    return sum(bound[d] if bound is not None and d in bound else b * scale for d, b in per_dir.items())


def _per_px(items: Mapping[str, Any], kind: str, benchmark: bool) -> float:
    """Bytes per pixel of a ``kind`` ("score" cache or "prediction" PNG) at a table's evaluation resolution: the
    processing size's own figure where measured (cost.json files of before 2026-12-05 have only the benchmark's)."""
    return items[f"{kind}_bytes_per_px"] if benchmark else items.get(f"{kind}_bytes_per_px_processed",
                                                                     items[f"{kind}_bytes_per_px"])


def output_size(table: str, items: Mapping[str, Any], *, report_selection: bool = True,
                incompressible: bool = False) -> dict[str, float]:
    """GB of a table's ``full`` work folder on the real data (:data:`DATA_IMAGES`), by kind, from measured per-item
    sizes ``items`` (:func:`reprolib.experiments.smoke.measure_item_sizes`):

    * ``generated``: each combo's generated Cityscapes train + val (``items["generated"]``: bytes per image in each
      folder, at ``items["world_size"]``, scaled to :data:`REAL_SIZE` by pixel count);
    * ``processed``: each combo's processed train + val (``items["processed_train"]``) and FS L&F + FS Static
      (``items["processed_eval"]``), at ``items["size"]``, scaled to the ``full`` profile's size;
    * ``checkpoints``: each trained run's ``last.ckpt`` + ``best.ckpt`` (``items["checkpoint"]``, with the optimiser's
      state: an upper bound for a report-selection run whose best is a weights-only snapshot);
    * ``scores``, ``predictions``: each run's score cache and prediction PNGs of the FS images at the table's
      evaluation resolution (``items["score_bytes_per_px"]``, ``items["prediction_bytes_per_px"]`` at the benchmark's,
      their ``…_processed`` twins at the processing size);
    * ``snapshots``: what a run with a report-selection twin keeps until the twin starts from it (patience + 1
      weights-only snapshots, ``items["snapshot"]``, and a full checkpoint at the fork), for one run at a time:
      the runner forks the twin as soon as its run finishes.

    ``final``: everything but the snapshots (what the last session's output holds); ``peak``: the largest output over
    the chain (``final`` + one run's snapshots); ``peak_kept``: ``peak`` less what a session's export leaves out when
    over its budget (prediction PNGs, generated data whose split is done: :func:`reprolib.experiments.session.
    rebuildable`; then the optimiser state of every finished run's ``last.ckpt`` but the one still training:
    :func:`reprolib.experiments.session.finished_last_checkpoints`). ``incompressible``: the folders of
    :data:`BOUND_DIRS` counted at ``items["noise"]`` (a random image's PNG at the real and the processing size): a
    bound for photographs and for the resyntheses and maps of trained backends, which the dry run's random ones make
    near-constant."""
    spec, w = get_table(table), table_workload(table, report_selection)
    real_px = REAL_SIZE[0] * REAL_SIZE[1]
    size = tuple(PROFILES["full"].size)
    proc_px = size[0] * size[1]
    world_px = items["world_size"][0] * items["world_size"][1]
    meas_px = items["size"][0] * items["size"][1]
    gen_bound, proc_bound = ({d: items["noise"][n] for d, n in BOUND_DIRS[k].items()} if incompressible else None
                             for k in ("generated", "processed"))
    gen_img = _per_image(items["generated"], gen_bound, real_px / world_px)
    train_img = _per_image(items["processed_train"], proc_bound, proc_px / meas_px)
    eval_img = _per_image(items["processed_eval"], proc_bound, proc_px / meas_px)
    n_cs = DATA_IMAGES["cityscapes_train"] + DATA_IMAGES["cityscapes_val"]
    n_fs = DATA_IMAGES["fs_lost_and_found"] + DATA_IMAGES["fs_static"]
    benchmark = (spec.eval_resolution or "processed") == "benchmark"
    eval_px = real_px if benchmark else proc_px
    runs = w["trainings"]
    patience = int(PROFILES["full"].training.get("patience", TrainConfig.patience))
    twins = any(spec.report_twins(v) for v in spec.variants if v.selection == "corrected") and report_selection
    gb = {
        "generated": w["precomputes"] * n_cs * gen_img,
        "processed": w["precomputes"] * (n_cs * train_img + n_fs * eval_img),
        "checkpoints": runs * 2 * items["checkpoint"],
        "scores": runs * n_fs * eval_px * _per_px(items, "score", benchmark),
        "predictions": runs * n_fs * eval_px * _per_px(items, "prediction", benchmark),
        "snapshots": ((patience + 1) * items["snapshot"] + items["checkpoint"]) if twins else 0.0,
    }
    gb = {k: v / 1e9 for k, v in gb.items()}
    final = sum(v for k, v in gb.items() if k != "snapshots")
    peak = final + gb["snapshots"]
    out = {k: round(v, 2) for k, v in gb.items()}
    # the export's last resort: every finished run's last.ckpt down to its weights (a snapshot's size); at the peak
    # one run is still training, and its last.ckpt keeps the state it resumes from
    training_state = max(runs - 1, 0) * max(items["checkpoint"] - items["snapshot"], 0) / 1e9
    out.update(final=round(final, 2), peak=round(peak, 2),
               peak_kept=round(peak - gb["generated"] - gb["predictions"] - training_state, 2))
    return out


def output_sizes(items: Mapping[str, Any], tables: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
    """:func:`output_size` of each table, as measured (``measured``) and with photographs, resyntheses and maps
    bounded at an incompressible image's size (``bound``); ``budget_gb``: what a session's export keeps the output
    under (:data:`OUTPUT_BUDGET_GB`)."""
    return {name: {"measured": output_size(name, items), "bound": output_size(name, items, incompressible=True),
                   "budget_gb": OUTPUT_BUDGET_GB} for name in tables or tuple(TABLES)}


def format_output_sizes(sizes: Mapping[str, Any]) -> list[str]:
    """The printed lines of :func:`output_sizes`: each table's output (final and peak over the chain, in GB)."""
    lines = [f"each table's `full` output on the real data (GB; Cityscapes {DATA_IMAGES['cityscapes_train']} + "
             f"{DATA_IMAGES['cityscapes_val']}, FS {DATA_IMAGES['fs_lost_and_found']} + {DATA_IMAGES['fs_static']} "
             "images), from the sizes measured here; bound: photographs, resyntheses and maps as incompressible PNGs "
             "(random backend weights make the latter near-constant); kept: the peak less what an export over "
             f"{OUTPUT_BUDGET_GB:g} GB leaves out (prediction PNGs, generated data, finished runs' optimiser state):",
             f"{'table':<9}{'generated':>10}{'processed':>10}{'ckpts':>7}{'scores':>7}{'preds':>7}{'snaps':>7}"
             f"{'final':>7}{'peak':>7}{'kept':>7}{'bound: peak':>13}{'kept':>7}"]
    for name, e in sizes.items():
        m, b = e["measured"], e["bound"]
        lines.append(f"{name:<9}{m['generated']:>10.1f}{m['processed']:>10.1f}{m['checkpoints']:>7.1f}"
                     f"{m['scores']:>7.1f}{m['predictions']:>7.1f}{m['snapshots']:>7.1f}{m['final']:>7.1f}"
                     f"{m['peak']:>7.1f}{m['peak_kept']:>7.1f}{b['peak']:>13.1f}{b['peak_kept']:>7.1f}")
    return lines


def format_estimate(cost: Mapping[str, Any]) -> str:
    """The printed summary: measured stages here, then the per-table estimate."""
    machine = cost["machine"]
    # cost.json files written before the GPU's name was recorded have none
    where = "CPU" if machine.get("device", "cpu") == "cpu" else f"{machine['device']}: {machine.get('gpu') or 'GPU'}"
    lines = [f"smoke-full on {machine['cpu']} ({machine['cpus']} CPUs, torch threads {machine['torch_threads']}"
             f"{'' if where == 'CPU' else ', ' + where}, load average at start {machine['load_average_start']}, "
             f"at end {machine['load_average_end']}; timings are under whatever else ran)",
             f"{'stage':<44}{'wall s':>10}{'peak RSS GiB':>14}"]
    for name, s in cost["stages"].items():
        lines.append(f"{name:<44}{s['seconds']:>10.1f}{s['peak_rss_gb']:>14.2f}"
                     + ("  found done: not measured" if s.get("cached") else ""))
    lines.append(f"{'total':<44}{cost['total_seconds']:>10.1f}{cost['peak_rss_gb']:>14.2f}")
    per = cost["per_unit"]

    def rate(key: str, digits: int) -> str:
        return "not measured (found done)" if per.get(key) is None else f"{per[key]:.{digits}f} s"

    lines.append(f"measured here ({where}): {rate('precompute_s_per_image', 1)} per image precomputed (segmentation at "
                 f"{cost['world_size'][0]}×{cost['world_size'][1]}), {rate('train_s_per_step', 1)} per training step "
                 f"(batch {cost['batch_size']}, {cost['size'][0]}×{cost['size'][1]}), {rate('score_s_per_image', 2)} "
                 "per image scored")
    r = REPORT_TABLE2
    lines.append(f"report (Table 2, {r['hardware']}): precompute {r['precompute_maps_h']:.0f} h + "
                 f"{r['precompute_synthesis_h']:.0f} h, {r['epoch_min']:.0f} min/epoch, {r['gpu_memory_gb']} GB GPU, "
                 f"{r['cpu_memory_gb']} GB CPU, {r['inference_ms']:.0f} ms inference")
    lines.append(f"estimate of each table's `full` run (report's epochs; T4 = P100 × {T4_FACTOR[0]:.2f}–"
                 f"{T4_FACTOR[1]:.2f}, an assumption; Kaggle sessions of {SESSION_HOURS:.0f} h; shared: epochs the "
                 "report-selection runs take from their twin's trajectory instead of training them):")
    lines.append(f"{'table':<9}{'models':>7}{'epochs':>7}{'shared':>7}{'data':>5}{'P100 h':>9}{'sessions':>9}"
                 f"{'T4 h':>14}{'sessions':>10}{'P100 h w/o report sel.':>24}")
    for name, e in cost["estimate"].items():
        t4h, t4s = e["t4_gpu_h"], e["t4_sessions_12h"]
        lines.append(f"{name:<9}{e['trainings']:>7}{e['epochs']:>7}{e.get('shared_epochs', 0):>7}{e['precomputes']:>5}"
                     f"{e['p100_gpu_h']:>9.1f}"
                     f"{e['p100_sessions_12h']:>9}{f'{t4h[0]:.0f}–{t4h[1]:.0f}':>14}{f'{t4s[0]}–{t4s[1]}':>10}"
                     + (f"{e['p100_gpu_h_without_report_selection']:>24.1f}"
                        if "p100_gpu_h_without_report_selection" in e else ""))
    if "output_gb" in cost:  # cost.json files written before the output's size was estimated have none
        items = cost["item_sizes"]
        lines.append(f"measured here: a generated image {sum(items['generated'].values()) / 1e6:.2f} MB at "
                     f"{items['world_size'][0]}×{items['world_size'][1]}, a processed one "
                     f"{sum(items['processed_train'].values()) / 1e6:.2f} MB at {items['size'][0]}×{items['size'][1]}, "
                     f"a checkpoint {items['checkpoint'] / 1e6:.0f} MB (weights-only snapshot "
                     f"{items['snapshot'] / 1e6:.0f} MB), {items['score_bytes_per_px']:.2f} B/pixel of scores, "
                     f"{items['prediction_bytes_per_px']:.2f} B/pixel of prediction PNGs at the benchmark's size"
                     + (f" ({items['score_bytes_per_px_processed']:.2f} and "
                        f"{items['prediction_bytes_per_px_processed']:.2f} at the processing size)"
                        if "score_bytes_per_px_processed" in items else ""))
        lines += format_output_sizes(cost["output_gb"])
    return "\n".join(lines)
