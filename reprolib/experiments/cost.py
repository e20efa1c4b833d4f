"""What a table's ``full`` run costs: measured per stage here, and estimated for a P100 / T4 from the report.

:class:`CostMeter` records wall time and peak resident memory per named stage (the dry run of
:mod:`reprolib.experiments.smoke` writes them to ``cost.json``); :func:`estimate` turns each table's workload
(:func:`table_workload`: trained models, epochs, precomputed data sets) into GPU-hours and 12 h Kaggle sessions
from the MLRC report's Table 2 (:data:`REPORT_TABLE2`); :func:`format_estimate` prints both side by side.
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
    return "\n".join(lines)
