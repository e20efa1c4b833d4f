"""``run_table``: everything a table notebook does, as one resumable function.

Why one module of ~300 lines: it is the table's plan read top to bottom (stages in order, each resumable);
the stages themselves live in ``pipeline``, ``scoring``, ``ensembling`` and ``session``.
"""

from __future__ import annotations

import json
import numbers
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from reprolib.allocator import keep_freed_memory
from reprolib.cli import check_choice
from reprolib.experiments import pipeline as P
from reprolib.experiments.ensembling import evaluate_with_scores
from reprolib.experiments.figures import published_scores, qualitative_figure
from reprolib.experiments.profiles import get_pipeline_profile
from reprolib.experiments.results import (
    RESULT_COLUMNS,
    config_hash,
    load_results,
    result_rows,
    run_hash,
    save_results,
)
from reprolib.experiments.scoring import (
    BENCHMARK_UPSAMPLING,
    RESOLUTIONS,
    load_scores,
    save_scores,
    score_split,
    split_sequences,
    write_predictions,
)
from reprolib.experiments.session import Session, SessionOver, export_outputs, import_previous, sha256_file
from reprolib.experiments.tables import Variant, get_table
from reprolib.io import ReprolibDataError, read_json, remove_stale_temps, write_bytes, write_json
from reprolib.metrics import bootstrap_intervals
from reprolib.training.config import PRECISIONS, WANDB_MODES, imagenet_weights_identity
from reprolib.weights import CHECKPOINT_ENV, check_checkpoint_names

KAGGLE_INPUT = "/kaggle/input"  # where Kaggle mounts the previous version's output (and the datasets)


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` unchanged once
    this machine has them. Anything else is a ``ValueError`` naming the device, raised before any work (torch
    would only refuse it at the first tensor moved, after the world, or the backends, were made)."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if count == 0:
            raise ValueError(f"device {device!r}: this machine has no CUDA GPU (torch.cuda.is_available() is False); "
                             "use 'cpu' or 'auto'")
        if index >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 … cuda:{count - 1}")
    return device


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_run_arguments(spec: Any, *, seeds: Any, max_epochs: Any, wandb_mode: Any, variants: Any,
                        checkpoints: Any, data_root: Any) -> None:
    """The arguments of :func:`run_table` that no stage reads before the first training (or never reads), checked
    before any work: a bad one would otherwise stop the table after the world, the backends and the precompute
    (hours on real data), or be ignored. ``ValueError`` naming the argument (and the Makefile variable)."""
    if seeds is not None:
        items = list(seeds) if isinstance(seeds, Iterable) and not isinstance(seeds, (str, bytes, Mapping)) else None
        if not items or not all(_is_whole(s) and s >= 0 for s in items):
            raise ValueError(f"seeds must be a non-empty list of whole numbers >= 0, e.g. [0, 1, 2] (make: SEEDS=0,1,2 "
                             f"with commas), got {seeds!r}")
        repeated = sorted({s for s in items if items.count(s) > 1})
        if repeated:
            raise ValueError(f"seeds {seeds!r} repeat {repeated}: a seed counted twice would weigh twice in every "
                             "mean and interval")
    if max_epochs is not None and not (_is_whole(max_epochs) and max_epochs >= 1):
        raise ValueError(f"max_epochs must be a whole number >= 1 or None (the profile's), got {max_epochs!r}")
    if wandb_mode not in WANDB_MODES:
        raise ValueError(f"wandb_mode must be one of {WANDB_MODES} (make: WANDB=offline|online), got {wandb_mode!r}")
    if variants is not None:
        names = [v.name for v in spec.variants]
        if isinstance(variants, str) or not variants:
            raise ValueError(f"variants must be a non-empty list of {spec.name}'s variants {names}, got {variants!r}")
        for name in variants:
            check_choice("variants", str(name), names)
    if checkpoints is not None:
        if not isinstance(checkpoints, Mapping):
            raise ValueError(f"checkpoints must be a dict name → path, got {checkpoints!r}")
        check_checkpoint_names(checkpoints)
        unused = sorted(k for k in checkpoints if k in CHECKPOINT_ENV)
        if data_root is None and unused:
            raise ValueError(f"checkpoints {unused} are real-backend weights, and no data_root is given: the embedded "
                             "world runs the embedded backends, so they would not be used. Pass data_root (make: "
                             "DATA=/datasets) to run the real backends")
    if data_root is None:
        set_vars = sorted(v for v in CHECKPOINT_ENV.values() if os.environ.get(v))
        if set_vars:
            print(f"[reprolib] note: {', '.join(set_vars)} set, but no data_root: the embedded world runs the embedded "
                  "backends, not these weights (pass data_root, make: DATA=/datasets, to use them)", flush=True)


def run_table(
    name: str,
    *,
    profile: str = "demo",
    data_root: str | Path | None = None,
    checkpoints: dict[str, str] | None = None,
    seeds: list[int] | None = None,
    max_epochs: int | None = None,
    max_time: str | None = None,
    device: str = "auto",
    work_dir: str | Path = "data",
    output_dir: str | Path | None = None,
    wandb_mode: str = "offline",
    kaggle: bool = False,
    variants: list[str] | None = None,
    eval_resolution: str | None = None,
    kaggle_input: str | Path | None = None,
    session: Session | None = None,
    precision: str = "32-true",
    report_selection: bool = True,
) -> pd.DataFrame:
    """Run (or resume) every variant × seed of a table and write ``output_dir/<name>.csv``; returns the rows.

    ``max_time`` ("DD:HH:MM:SS" or seconds) is the budget of the whole call (one deadline for every stage,
    see :mod:`reprolib.experiments.session`); ``session`` may give that budget directly instead. Only
    finished runs are scored: the table holds their rows, and ``output_dir/status.json`` (and the
    printout, and ``df.attrs``) say which runs are still missing. While the call runs, ``status.json`` says
    ``"in_progress": true``, and still does after a kill or a crash: the CSV then holds part of the rows.

    ``kaggle=True`` (set by the Kaggle bundle) or a ``kaggle_input`` folder makes this a *session* of a
    chain: the previous session's output found under ``kaggle_input`` (default ``/kaggle/input``) is
    brought into ``work_dir`` first, and ``work_dir`` is packed with a content manifest at the end, so the
    next session continues from it.

    ``eval_resolution``: ``"processed"`` scores at the processing size, as the original code and the MLRC
    report did; ``"benchmark"`` upsamples the scores to the evaluation sets' own resolution (Fishyscapes:
    1024×2048), as the benchmark server does. On the embedded world both are the same size. None → the
    table's own protocol (Table 3, the test-server stand-in: ``"benchmark"``; every other table: ``"processed"``).

    Every run is scored with its ``best.ckpt`` (lowest loss on the generated Cityscapes-val split; the
    report's trainer kept the lowest FS L&F loss instead, an evaluation set: :data:`~.tables.EPOCHS_NOTE`,
    reproduced by the ``selection="report"`` variants; ``last.ckpt`` only when a run has no validation split);
    the ``checkpoint`` column names the file.
    ``precision``: training precision, fp32 (``"32-true"``) unless mixed precision is asked for.
    ``report_selection=False`` leaves out the ``<variant>@report_selection`` rows (the report's checkpoint selection,
    beside ours): each starts from its twin's trajectory, free in the demo but ``epochs`` - 11 more epochs per run
    in ``full``. Their rows from an earlier run stay in the CSV, as with ``variants`` (some variants only: the
    others' rows stay), where they were made with this call's settings (the same ``config_hash``); rows of other
    settings (another evaluation resolution, precision, ``max_epochs``…) are left out, and named.
    """
    spec = get_table(name)
    eval_resolution = eval_resolution or spec.eval_resolution or "processed"
    if eval_resolution not in RESOLUTIONS:
        raise ValueError(f"eval_resolution must be one of {RESOLUTIONS}, got {eval_resolution!r}")
    if precision not in PRECISIONS:  # checked before any work, not at the first training
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    check_run_arguments(spec, seeds=seeds, max_epochs=max_epochs, wandb_mode=wandb_mode, variants=variants,
                        checkpoints=checkpoints, data_root=data_root)
    if data_root is not None:  # before status.json and the work folder: a missing tree is found now, not after hours
        P.check_data_root(data_root)
    if not isinstance(report_selection, bool):  # Papermill's -r passes text: "False" would count as true
        raise ValueError(f"report_selection must be True or False, got {report_selection!r}")
    if not report_selection:  # a subset of the variants: the CSV keeps the others' rows
        variants = [v.name for v in spec.variants if v.selection == "corrected" and (variants is None or v.name in variants)]
        if not variants:
            raise ValueError(f"report_selection=False leaves no variant of {name} to run")
    resolved_device = resolve_device(device)
    prof = get_pipeline_profile(profile)
    session = session or Session.from_max_time(max_time)  # the clock starts now: one deadline for all
    keep_freed_memory()
    chained = kaggle or kaggle_input is not None
    chosen = [v for v in spec.variants if variants is None or v.name in variants]
    # before any file is written: `full` refuses random ImageNet weights, for every encoder the runs train
    # (Figure 4's ResNets too); a reused variant trains its source's network
    sources = [spec.source(v) for v in chosen]
    prof.check_imagenet_weights(prof.pretrained_encoders(s.model for s in sources))
    if data_root is not None:  # the real backends' weights of every combo the runs use, found before any work
        from reprolib.backends.registry import check_combo_weights  # lazy: torchvision, as pipeline.backends

        for combo in sorted({v.combo or spec.default_combo for v in [*chosen, *sources]}):
            check_combo_weights(combo, checkpoints)
    work = Path(work_dir)
    out = Path(output_dir or Path("results") / name)
    out.mkdir(parents=True, exist_ok=True)
    ctx = P.Context(profile=prof, work_dir=work / prof.name, checkpoints=checkpoints, device=resolved_device,
                    wandb_mode=wandb_mode, max_epochs=max_epochs, eval_resolution=eval_resolution,
                    precision=precision,
                    session=session, session_id=f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}",
                    kaggle_input=str(kaggle_input or KAGGLE_INPUT) if chained else None)
    seeds = list(seeds if seeds is not None else (prof.seeds or (spec.seeds_full if profile == "full" else spec.seeds_demo)))
    jobs = [(variant, seed) for variant in chosen for seed in seeds]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    csv = out / f"{name}.csv"
    # some variants only: the table keeps the other variants' rows (of this profile) from its last run
    kept = (_other_variants_rows(csv, {v.name for v in chosen}, prof.name, [v.name for v in spec.variants])
            if variants is not None else [])
    # until the final status below: the CSV may hold part of the rows (it is saved after every run), so a killed
    # or crashed run must not leave an earlier run's "complete" status beside it; `make` reruns such a table
    write_json(out / "status.json", {"table": name, "profile": prof.name, "runs_total": len(jobs), "complete": False,
                                     "in_progress": True})
    started = False  # a failed import must not export: its manifest would pass off a partial output as whole
    try:
        if chained:
            start_session(ctx)
            started = True
        P.prepare_data(ctx, data_root)
        kept = _rows_of_these_settings(ctx, spec, kept)
        for i, (variant, seed) in enumerate(jobs):
            try:
                rows += _variant_rows(ctx, spec, chosen, variant, seed, seeds, out)
                save_results(kept + rows, csv)  # after every run: a crash keeps what finished
                _select_report_twins(ctx, spec, chosen, variant, seed)
            except RunUnfinished:
                missing.append(f"{variant.name} seed {seed}")
            except SessionOver:
                missing += [f"{v.name} seed {s}" for v, s in jobs[i:]]
                break
    except SessionOver:  # before the first run (world, backends, precompute)
        missing = [f"{v.name} seed {s}" for v, s in jobs]
    finally:
        if started:
            export_outputs(ctx.work_root)
    df = save_results(kept + rows if kept or rows else pd.DataFrame(columns=RESULT_COLUMNS), csv)
    write_json(out / "timings.json", {**ctx.timings, "total_s": time.perf_counter() - t0})
    _report_status(name, prof.name, out, len(jobs), missing, session)
    df.attrs.update(runs_total=len(jobs), runs_missing=missing)
    return df


class RunUnfinished(Exception):
    """A training run stopped before its last step (the session budget): it is not scored."""


def start_session(ctx: P.Context) -> dict[str, int]:
    """Bring the previous session's output (under ``ctx.kaggle_input``) into the work root."""
    with ctx.stage("import previous output") as st:
        counts = import_previous(ctx.kaggle_input, ctx.work_root)
        st.ran, st.info = counts["copied"] > 0, counts
    print(f"[reprolib] previous output: {counts['sources']} found, {counts['copied']} files brought in, "
          f"{counts['kept']} already here"
          + (f"; {counts['dropped']} damaged or missing part(s) not imported (named in the warnings above): this "
             "session redoes them" if counts.get("dropped") else "")
          + (f"; {counts['unusable']} without a manifest, not imported (see the "
             "warning above)" + ("; this session starts the table from the beginning" if not counts["sources"] else "")
             if counts.get("unusable") else ""), flush=True)
    return counts


def _report_status(name: str, profile: str, out: Path, total: int, missing: list[str], session: Session) -> None:
    """``status.json`` and a printout: what is done, what remains (and the profile: ``kaggle-pull`` checks it)."""
    write_json(out / "status.json", {"table": name, "profile": profile, "runs_total": total,
                                     "runs_finished": total - len(missing),
                                     "runs_missing": missing, "complete": not missing,
                                     "stopped_before": session.stopped_at})
    if missing:
        print(f"[reprolib] {name}: {total - len(missing)}/{total} runs finished and in the table; "
              f"{len(missing)} missing ({', '.join(missing)}). Session budget reached"
              + (f" at {session.stopped_at!r}" if session.stopped_at else "")  # before it, or between its images
              + ": push again (or rerun) to continue.", flush=True)
    else:
        print(f"[reprolib] {name}: all {total} runs finished and in the table.", flush=True)


def _variant_rows(ctx: P.Context, spec: Any, chosen: list[Variant], variant: Variant, seed: int, seeds: list[int],
                  out: Path) -> list[dict]:
    """Train (or reuse) one variant × seed and, once its run is finished, its result rows."""
    combo = variant.combo or spec.default_combo
    source = spec.source(variant)
    # the corrected twin of a report-selection variant run now keeps the weights that one starts from (in `full`
    # ~1 GB a seed until the fork: not for a twin left out)
    run_dir = train_variant(ctx, source, combo, seed, epochs=spec.epochs,
                            snapshots=bool(spec.report_twins(source, among=chosen)))
    if not (run_dir / "done.json").is_file():
        raise RunUnfinished(run_dir.name)
    ckpt = scored_checkpoint(run_dir)
    maps = source.ensemble_maps()  # Table 7: a map the network lacks stays out of the ensemble
    rows: list[dict[str, Any]] = []
    for dataset, split in P.evaluation_splits(ctx, combo).items():
        scores = scores_for(ctx, run_dir, source, dataset, split)
        sequences = split_sequences(split)
        if spec.name == "figure3" and seed == seeds[0]:
            _figure3(ctx, split, scores, out / f"figure3-{dataset}.png",
                     title=f"{dataset} — profile {ctx.profile.name}, {variant.name}, seed {seed}, {ckpt.name}")
        with ctx.timed(f"ensemble {dataset} {variant.name} seed {seed}"):
            evaluated, scored = evaluate_with_scores(scores, variant.ensemble, ctx.profile.grid_objective, maps,
                                                     sequences)
            # every row gets its intervals: the claims are decided under the report's protocol too (its rows' weights
            # are tuned on the very images resampled: the interval holds them fixed, as the report's number does)
            cis = {suffix: _intervals(final, groups, sequences, scores["label"], seed, evaluated[suffix][0])
                   for suffix, (final, groups) in scored.items()}
        for suffix, (metrics, info) in evaluated.items():
            rows += result_rows(
                table=spec.name, variant=variant.name + suffix, dataset=dataset, metrics=metrics, seed=seed,
                profile=ctx.profile.name, config=_config(ctx, source, combo, seed, spec.epochs),
                checkpoint=ckpt, data_fingerprint=_fingerprint(split), combo=P.combo_name(ctx, combo),
                ensemble=variant.ensemble, ensemble_info=json.dumps(info, default=str),
                **cis[suffix],
            )
    return rows


def _intervals(maps: list, groups: Any, sequences: list[str], labels: list, seed: int, exact: dict[str, float],
               n_boot: int = 200) -> dict[str, float]:
    """95 % bootstrap intervals of AP and FPR95, resampling recording sequences (one image each in FS Static and
    the embedded world; seeded by the run's seed; both from one resampling; a cross-fitted row's ``groups`` are
    its halves, resampled apart and averaged as the row is; ``exact``: the row's metrics, already computed)."""
    try:
        cis = bootstrap_intervals(maps, labels, ("ap", "fpr95"), n_boot=n_boot, seed=seed, groups=groups,
                                  exact=exact, clusters=sequences)
    except (ValueError, IndexError):  # too few images or a class missing in every resample
        cis = {m: (float("nan"),) * 3 for m in ("ap", "fpr95")}
    out: dict[str, float] = {}
    for metric, (_, lo, hi) in cis.items():
        out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = lo, hi
    return out


def _other_variants_rows(csv: Path, chosen: set[str], profile: str, names: list[str]) -> list[dict[str, Any]]:
    """The rows of ``csv`` for variants other than ``chosen`` (``<variant>@…`` rows count as ``<variant>``).

    ``names``: the table's variants. A row belongs to the longest of them it starts with: a variant's own name
    may hold an ``@`` (``full@report_selection``), and its ``@report_protocol`` row is still its own, not full's.
    """
    if not csv.is_file():
        return []
    df = load_results(csv)
    base = df["variant"].astype(str).map(lambda row: _row_variant(row, names))
    return df[~base.isin(chosen) & (df["profile"] == profile)].to_dict("records")


def _rows_of_these_settings(ctx: P.Context, spec: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kept rows (:func:`_other_variants_rows`) whose ``config_hash`` is the one this call gives their variant and
    seed. A row of an earlier run with other settings (the evaluation resolution, precision, ``max_epochs``, the
    profile's training settings, another combo) would otherwise sit in one table beside the new rows, and the
    claims would compare them; each one left out is named (its run and score caches stay: rerunning its variant with
    these settings is quick where they are the same)."""
    names = [v.name for v in spec.variants]
    variants = {v.name: v for v in spec.variants}
    same, other = [], set()
    for row in rows:
        v = variants.get(_row_variant(str(row["variant"]), names))
        if v is not None and str(row["config_hash"]) == config_hash(
                _config(ctx, spec.source(v), v.combo or spec.default_combo, int(row["seed"]), spec.epochs)):
            same.append(row)
        else:
            other.add(f"{row['variant']} seed {row['seed']}")
    if other:
        print(f"[reprolib] {spec.name}: {len(rows) - len(same)} rows of an earlier run left out, made with other "
              f"settings than this run's: {', '.join(sorted(other))} (run those variants again to have them)",
              flush=True)
    return same


def _row_variant(row: str, names: list[str]) -> str:
    """The variant a result row belongs to: the longest name it equals or extends with ``@…``."""
    owners = [n for n in names if row == n or row.startswith(n + "@")]
    return max(owners, key=len) if owners else row.split("@")[0]


def _config(ctx: P.Context, variant: Variant, combo: str, seed: int, epochs: int) -> dict[str, Any]:
    """What a row's ``config_hash`` covers: every setting of the run scored (the table's epochs, the user's
    ``max_epochs`` and precision too: Table 4's and Table 7's full models are other runs in ``full``) and
    how it was evaluated; not the data's file times, so the hash is the same in every clone."""
    return {"variant": variant.training_key(), "combo": P.combo_name(ctx, combo), "seed": seed,
            "profile": ctx.profile.name, "training": ctx.profile.training_overrides(),
            "epochs": None if "max_steps" in ctx.profile.training else epochs,  # a step budget ignores them
            "max_epochs": ctx.max_epochs, "precision": ctx.precision, "ensemble": variant.ensemble,
            "eval_resolution": ctx.eval_resolution}


def _select_report_twins(ctx: P.Context, spec: Any, chosen: list[Variant], finished: Variant, seed: int) -> None:
    """Start the report-selection variants whose corrected twin is ``finished``'s model from its snapshots now, not
    at their own turn in the table: the fork removes the snapshots, which in ``full`` weigh ~1 GB a seed and would
    otherwise wait in every session's output (Kaggle keeps 20 GB) until all seeds of the twin had trained. Their
    training, when steps follow the fork, still waits for their turn. Out of time: left to their own turn."""
    for variant in spec.report_twins(spec.source(finished), among=chosen):
        try:
            train_variant(ctx, variant, variant.combo or spec.default_combo, seed, epochs=spec.epochs, select_only=True)
        except SessionOver:
            return


def _fingerprint(split: Path) -> str:
    done = Path(split) / "done.json"
    if done.is_file():
        meta = json.loads(done.read_text())
        return str(meta.get("key_hash") or meta.get("key", ""))[:16] or Path(split).name
    return Path(split).name


def train_variant(ctx: P.Context, variant: Variant, combo: str, seed: int, epochs: int | None = None,
                  snapshots: bool = False, select_only: bool = False) -> Path:
    """Train (or resume, or reuse) one variant × seed within the session's budget; returns its run directory.

    The run directory is named by :func:`reprolib.experiments.results.run_hash`: what determines the
    weights, not the time budget or the device, so a later session (or another machine) resumes it.
    ``epochs``: the table's epoch count, applied by profiles that train by epochs (see
    :meth:`PipelineProfile.training_config`); an explicit ``max_epochs`` in the context wins. ``snapshots``: keep
    the weights a report-selection twin starts from, even where steps follow them (:mod:`reprolib.training.selection`).
    ``select_only``: start a report-selection run from its twin's snapshots when it can, but train nothing.
    """
    train_split, label_dir = P.training_split(ctx, combo, "train", variant.void_labels)
    val_split, _ = P.training_split(ctx, combo, "val", variant.void_labels)
    # only a learned ensemble is part of training: grid / fixed / none models are one and the same run (Table 3's
    # model is Table 4's full model and Table 7's "all maps")
    learned = variant.ensemble if variant.ensemble.startswith("learned") else "none"
    cfg = ctx.profile.training_config(
        model=variant.model, train=variant.train, ensemble=learned, seed=seed,
        train_split=str(train_split), val_split=str(val_split), label_dir=label_dir,
        wandb_mode=ctx.wandb_mode, max_time=None, max_epochs=ctx.max_epochs, device=ctx.device,
        epochs=epochs,
    )
    if ctx.precision != "32-true":  # only when asked: the default adds nothing (run hashes stay the same)
        cfg["precision"] = ctx.precision
    # other ImageNet weights than torchvision's file (or none found) name another run, as train() records them; the
    # file itself (and none) adds nothing (run hashes stay the same)
    imagenet = imagenet_weights_identity(cfg["model"])
    if imagenet is not None:
        cfg["imagenet"] = imagenet
    corrected = dict(cfg)
    if variant.selection == "report":  # only then: the corrected selection adds nothing (run hashes stay the same)
        cfg.update(report_selection(ctx, combo))
    run_dir = ctx.work_dir / "runs" / f"{P.combo_name(ctx, combo)}-{run_hash(cfg)}-seed{seed}"
    if (run_dir / "done.json").is_file():
        return run_dir  # finished: nothing to run, whatever the budget
    if variant.selection == "report" and _start_from_corrected_run(ctx, variant, cfg, run_dir, corrected, seed):
        return run_dir
    if select_only:
        return run_dir
    if snapshots:  # a runtime key: the run's name and weights stay the same
        cfg["trajectory_snapshots"] = True
    budget = ctx.session.training_seconds()
    if budget is not None and ctx.session.clock is time.monotonic:
        cfg["max_time"] = budget  # Lightning's own timer too, on the real clock (a runtime key: not hashed)
    # resume only from the run dir: a chained session has already brought (and checked) the previous output
    cfg["kaggle_input"] = None
    with ctx.stage(f"train {variant.name} seed {seed}") as st:
        # lazy: reprolib.training.run imports Lightning, +3.2 s on `import reprolib.experiments` (python -X
        # importtime); a table whose runs are all finished (or a notebook that only reads results) never trains.
        # Inside the stage, so the first run's timing includes it.
        from reprolib.training.run import train

        before = ctx.session.steps
        train(cfg, run_dir=run_dir, callbacks=[ctx.session.callback()])
        st.info = {"run": run_dir.name, "steps": ctx.session.steps - before,
                   "finished": (run_dir / "done.json").is_file()}
    return run_dir


def _start_from_corrected_run(ctx: P.Context, variant: Variant, cfg: dict[str, Any], run_dir: Path,
                              corrected: dict[str, Any], seed: int) -> bool:
    """Start the report-selection run from the trajectory of its corrected twin (the same settings but the selection
    splits), when that run is finished and kept its snapshots: the same weights as training it, for the cost of
    validating the snapshots (:mod:`reprolib.training.selection`). True when that finished it; otherwise it is
    trained, resuming from the fork when there was one."""
    # lazy: Lightning (see train_variant)
    from reprolib.training.selection import shared_steps, start_from_trajectory

    source = run_dir.with_name(run_dir.name.replace(run_hash(cfg), run_hash(corrected)))
    snapshots = source / "checkpoints" / "validation"
    if list((run_dir / "checkpoints").glob("last*.ckpt")) and (source / "done.json").is_file() and snapshots.is_dir():
        # started (forked from them, and killed before their removal below): no run starts from them any more
        shutil.rmtree(snapshots, ignore_errors=True)
    if shared_steps(cfg, run_dir, source) is None:
        return False
    with ctx.stage(f"select {variant.name} seed {seed}") as st:
        started = start_from_trajectory(cfg, run_dir, source)
        st.info = {"run": run_dir.name, "from": source.name, "started": started}
    if started == "forked":  # now in this run's own checkpoints; in `full` they weigh ~1 GB a seed (Kaggle keeps 20 GB)
        shutil.rmtree(snapshots, ignore_errors=True)
    return started == "finished"


def report_selection(ctx: P.Context, combo: str) -> dict[str, str]:
    """Training settings of the report's checkpoint selection (spec §4.2), on the combo's processed evaluation splits.

    The original's validation loader (best.ckpt) is FS L&F with ``roi: False``, i.e. its ``labels/``; the loss
    that stepped its scheduler is the last test loader's, FS Static with ``roi: False``, i.e. its full
    ``labels/`` too. Precompute writes both ``labels/`` and ``labels_with_ROI/`` for the Fishyscapes sets (the
    same masks: they already void everything outside the ROI); we name ``labels/``, as the original did. Both of
    its loaders took one image a batch (spec §4.6), so each loss is the mean of the images' own losses
    (``val_loss="per_image"``), not of losses pooled over a training-size batch.
    """
    splits = P.evaluation_splits(ctx, combo)
    return {"val_split": str(splits["fs_lost_and_found"]), "val_label_dir": "labels",
            "plateau_split": str(splits["fs_static"]), "plateau_label_dir": "labels", "val_loss": "per_image"}


def scored_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a table scores: ``best.ckpt`` (lowest validation loss, on the generated Cityscapes-val
    split; the report's trainer selected on FS L&F's loss, spec §4.2, as a ``selection="report"`` variant
    does), or ``last.ckpt`` when the run has no validation split and so no ``best``."""
    best = Path(run_dir) / "checkpoints" / "best.ckpt"
    return best if best.is_file() else Path(run_dir) / "checkpoints" / "last.ckpt"


def _checkpoint_key(ctx: P.Context, ckpt: Path) -> str:
    """12 hex of the checkpoint file's sha256 (memoised per session: each file is hashed once)."""
    if ckpt not in ctx.checkpoint_keys:
        ctx.checkpoint_keys[ckpt] = sha256_file(ckpt)[:12]
    return ctx.checkpoint_keys[ckpt]


def _score_cache(ctx: P.Context, run_dir: Path, dataset: str, split: Path) -> tuple[Path, str, Path]:
    """The checkpoint a run is scored with, its content key, and the file its scores on ``split`` are cached in."""
    ckpt = scored_checkpoint(run_dir)
    key = _checkpoint_key(ctx, ckpt)
    return ckpt, key, Path(run_dir) / "scores" / f"{dataset}-{Path(split).name}{_suffix(ctx)}-{ckpt.stem}-{key}.npz"


def _suffix(ctx: P.Context) -> str:
    """What the evaluation resolution adds to score caches' and predictions' names ("" at the processing size; at the
    benchmark's, the resize too: :data:`reprolib.experiments.scoring.BENCHMARK_UPSAMPLING`)."""
    return "" if ctx.eval_resolution == "processed" else f"-{ctx.eval_resolution}-{BENCHMARK_UPSAMPLING}"


def same_network(a: Path, b: Path) -> bool:
    """Whether two checkpoint files hold the same network: equal hyper-parameters and every ``state_dict`` tensor
    equal, dtype included (the files may differ: one a full checkpoint, the other a weights-only snapshot)."""
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    sa, sb = ca.get("state_dict") or {}, cb.get("state_dict") or {}
    return (bool(sa) and ca.get("hyper_parameters") == cb.get("hyper_parameters") and sa.keys() == sb.keys()
            and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa))


def _reuse_source_scores(ctx: P.Context, run_dir: Path, dataset: str, split: Path, ckpt: Path, key: str,
                         cache: Path) -> dict | None:
    """Give a report-selection run finished from its twin's snapshots (``done.json``'s ``selected_from``) the
    twin's scores when the snapshot it kept holds the weights the twin is scored with: the same numbers, without
    the network (in the demo's Table 4, 5 of the 9 selections keep the twin's own best step). Writes the cache,
    predictions and timing (measured on the twin) as scoring would, and returns the scores; None when there is
    nothing to reuse."""
    source_name = read_json(Path(run_dir) / "done.json").get("selected_from")
    if not source_name:
        return None
    source = Path(run_dir).parent / source_name
    if not (source / "done.json").is_file():
        return None
    source_ckpt, _, source_cache = _score_cache(ctx, source, dataset, split)
    suffix = _suffix(ctx)
    timing = source / "predictions" / f"{dataset}{suffix}-timing.json"
    if not source_cache.is_file() or not timing.is_file() or not same_network(ckpt, source_ckpt):
        return None
    with ctx.stage(f"score {dataset} with {Path(run_dir).name} ({ckpt.name}): {source.name}'s scores") as st:
        scores = load_scores(source_cache)
        write_predictions(scores["dissimilarity"], Path(run_dir) / "predictions" / f"{dataset}{suffix}")
        write_json(Path(run_dir) / "predictions" / f"{dataset}{suffix}-timing.json",
                   {**read_json(timing), "checkpoint": ckpt.name, "checkpoint_sha256_12": key,
                    "measured_with": f"{source.name}/{source_ckpt.relative_to(source)} (the same weights)"})
        write_bytes(cache, source_cache.read_bytes())  # last, as scoring writes it: it marks the scoring done
        st.info = {"cache": cache.name, "from": source_cache.name}
    return scores  # the bytes of the cache just written


def scores_for(ctx: P.Context, run_dir: Path, variant: Variant, dataset: str, split: Path) -> dict:
    """Per-image scores of a finished run on an evaluation split (cached as npz in the run dir).

    The cache is keyed by the content of the checkpoint scored, so scores of other weights (a half-trained
    model, another checkpoint choice) are never reused.
    """
    # lazy: reprolib.training.run imports Lightning, +3.2 s on `import reprolib.experiments` (python -X importtime);
    # cached scores need no network
    from reprolib.training.run import load_checkpoint

    if not (Path(run_dir) / "done.json").is_file():
        raise ReprolibDataError(run_dir, "the run has not finished: only finished models are scored")
    ckpt, key, cache = _score_cache(ctx, run_dir, dataset, split)
    suffix = _suffix(ctx)
    if cache.is_file():
        return load_scores(cache)
    remove_stale_temps(cache.parent)  # a score cache a killed session was writing (in `full` up to GBs)
    reused = _reuse_source_scores(ctx, run_dir, dataset, split, ckpt, key, cache)
    if reused is not None:
        return reused
    with ctx.stage(f"score {dataset} with {Path(run_dir).name} ({ckpt.name})") as st:
        model, ensemble = load_checkpoint(ckpt)
        t0 = time.perf_counter()
        scores = score_split(model, split, size=ctx.profile.size, device=ctx.device,
                             batch_size=ctx.profile.eval_batch, ensemble=ensemble, resolution=ctx.eval_resolution)
        per_image = (time.perf_counter() - t0) / max(1, len(scores["label"]))
        # the cache last: it marks the scoring done, so a run killed before it scores again and writes every
        # prediction PNG and the timing (a cache written first left them missing for good)
        write_predictions(scores["dissimilarity"], Path(run_dir) / "predictions" / f"{dataset}{suffix}")
        write_json(Path(run_dir) / "predictions" / f"{dataset}{suffix}-timing.json",
                   {"seconds_per_image": per_image, "device": ctx.device, "size": list(ctx.profile.size),
                    "eval_resolution": ctx.eval_resolution, "eval_size": list(scores["label"][0].shape),
                    "checkpoint": ckpt.name, "checkpoint_sha256_12": key})
        save_scores(scores, cache)
        st.info = {"cache": cache.name}
    return load_scores(cache)  # the stored values, so a rerun reports exactly the same numbers


def _figure3(ctx: P.Context, split: Path, scores: dict, path: Path, title: str) -> None:
    """Figure 3, with the authors' published model's p(anomaly) beside ours when its checkpoint is given."""
    published = published_scores(ctx.checkpoints, split, size=ctx.profile.size, device=ctx.device,
                                  batch_size=ctx.profile.eval_batch, resolution=ctx.eval_resolution)
    qualitative_figure(split, scores, path, title=title, published=published)
