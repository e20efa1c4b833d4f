"""``train(config, run_dir)`` and ``load_trained(run_dir)``: resumable, time-boxed, logged training runs.

A run directory holds ``config.json``, ``checkpoints/last.ckpt`` (every ``checkpoint_every`` steps and when
the run stops), ``checkpoints/best.ckpt`` (lowest loss on ``val_split``; ``plateau_split``, when given, only steps
the learning-rate scheduler), ``checkpoints/validation/`` (weights at the validations runs differing only in
their selection splits share; by default only when no step follows them: see :mod:`reprolib.training.selection`),
``csv/`` (CSVLogger), ``wandb/`` (offline
unless the user opts in; online, ``wandb_id.json`` keeps the W&B run every session logs into) and, once finished,
``done.json``. Calling ``train`` again:

* on a finished run returns at once (nothing is retrained);
* on an unfinished one resumes from the newest ``last.ckpt`` — in the run directory, or under
  ``/kaggle/input/**`` (a previous Kaggle version's output, mounted read-only), or a path given as
  ``resume_from`` — with optimiser, scheduler and data position, so the final weights are bit-identical
  to an uninterrupted run on CPU.

``max_time`` ("DD:HH:MM:SS" or seconds) stops cleanly with a checkpoint before a session ends; it counts
this call's time only (a resumed run gets the whole budget again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from reprolib.allocator import keep_freed_memory
from reprolib.io import (
    PathLike,
    ReprolibDataError,
    load_error,
    read_json,
    remove_stale_temps,
    state_dict_mismatch,
    write_bytes,
    write_json,
)
from reprolib.precision import ieee_fp32
from reprolib.training._determinism import prepare_cuda_determinism, skip_uninitialized_fill
from reprolib.training._lightning_noise import quiet_lightning
from reprolib.training.callbacks import BestCheckpoint, StepCheckpoint, TimeBudget, ValidationImageLogger
from reprolib.training.checkpoint import AtomicCheckpointIO
from reprolib.training.config import (
    IDENTITY_DEFAULTS,
    ConfigError,
    TrainConfig,
    imagenet_weights_identity,
    parse_max_time,
)
from reprolib.training.data import DissimilarityDataModule, enet_class_weights
from reprolib.training.module import DissimilarityModule, scalar_metrics
from reprolib.training.selection import ValidationSnapshots, keeps_snapshots

SECRET_ENV = ("WANDB_API_KEY", "KAGGLE_KEY", "KAGGLE_API_TOKEN")


def find_resume_checkpoint(run_dir: Path, kaggle_input: str | None = "/kaggle/input",
                           explicit: PathLike | None = None) -> Path | None:
    """The newest ``last.ckpt``: an explicit path, else the run directory, else ``kaggle_input/**`` (same run name)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ReprolibDataError(path, "resume checkpoint not found")
        return path
    candidates = list((run_dir / "checkpoints").glob("last*.ckpt"))
    if kaggle_input and Path(kaggle_input).is_dir():
        candidates += [p for p in Path(kaggle_input).glob(f"**/{run_dir.name}/checkpoints/last*.ckpt")]
    candidates = [p for p in candidates if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _check_resume_file(path: Path, module: torch.nn.Module) -> None:
    """A ``resume_from`` the user named must be this run's kind of Lightning checkpoint: Lightning's own errors
    (a ``KeyError`` deep in its connector) come after the run directory is written and name no file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, or a pickle of classes weights_only refuses
        raise ReprolibDataError(path, f"not a readable Lightning checkpoint ({load_error(exc)})") from None
    missing = [k for k in ("state_dict", "pytorch-lightning_version", "global_step") if not (isinstance(ckpt, dict)
                                                                                        and k in ckpt)]
    if missing:
        raise ReprolibDataError(path, f"not a Lightning training checkpoint to resume from (no {', '.join(missing)}); "
                                      "resume_from takes a run's checkpoints/last.ckpt")
    if not isinstance(ckpt["state_dict"], dict):
        raise ReprolibDataError(path, f"its state_dict is a {type(ckpt['state_dict']).__name__}, not a mapping")
    problem = state_dict_mismatch(ckpt["state_dict"], {k: tuple(v.shape) for k, v in module.state_dict().items()})
    if problem is not None:  # another run's network (width, encoder, maps): say so before Lightning loads it
        raise ReprolibDataError(path, problem)


def _loggers(run_dir: Path, cfg: dict[str, Any], resume: Path | None = None) -> list:
    # one CSV folder per session: a resumed run must not overwrite the metrics logged before the kill
    session = len(list((run_dir / "csv").glob("session-*"))) if (run_dir / "csv").is_dir() else 0
    loggers: list = [CSVLogger(str(run_dir), name="csv", version=f"session-{session}")]
    mode = cfg.get("wandb_mode", "offline")
    if mode in ("offline", "online"):
        os.environ.setdefault("WANDB_SILENT", "true")
        if mode == "offline":
            os.environ["WANDB_MODE"] = "offline"  # no account, no network, no hang
        # online, every session of a run logs into one W&B run (Lightning's WandbLogger resumes an id it is
        # given); offline, each session is a W&B run of its own, as `wandb sync` of two offline folders with
        # one id is not a documented way to join them
        run_id = wandb_run_id(run_dir, resume) if mode == "online" else None
        extra = {"settings": _offline_wandb_settings()} if mode == "offline" else {}
        wandb_logger = WandbLogger(project="reprolib", name=run_dir.name, save_dir=str(run_dir), mode=mode,
                                   id=run_id, config=_public_config(cfg), **extra)
        # Lightning passes anonymous=None to every wandb.init, and wandb 0.2x prints "The anonymous setting has no
        # effect" for any value given: once per training run, nine times in a `make table4`
        getattr(wandb_logger, "_wandb_init", {}).pop("anonymous", None)
        loggers.append(wandb_logger)
    return loggers


WANDB_ID_FILE = "wandb_id.json"


def wandb_run_id(run_dir: Path, resume: Path | None = None) -> str:
    """The online W&B run id of a training run: made on its first session and kept in ``run_dir``, which the
    next session gets back with the checkpoints (or, resuming from another folder's ``last.ckpt``, taken from
    that run's folder). A deleted and retrained run gets a new id, so it never appends to the old W&B run."""
    own = run_dir / WANDB_ID_FILE
    # <run>/checkpoints/last.ckpt → <run>/wandb_id.json
    run_id = _stored_id(own) or (_stored_id(resume.parent.parent / WANDB_ID_FILE) if resume else None)
    run_id = run_id or secrets.token_hex(8)  # not the seeded generators: logging must not move the run's draws
    # a DDP rank > 0 (relaunched with LOCAL_RANK set) never starts the W&B run and must not race rank 0's file
    if os.environ.get("LOCAL_RANK", "0") == "0" and _stored_id(own) != run_id:
        write_json(own, {"id": run_id})
    return run_id


def _stored_id(path: Path) -> str | None:
    with contextlib.suppress(ReprolibDataError, KeyError, TypeError):
        return str(read_json(path)["id"]) or None
    return None


def _offline_wandb_settings() -> Any:
    """What an offline run leaves out: what the W&B dashboard's system and files tabs would show (CPU and memory
    sampled by W&B's service process beside the training, the console copied into ``output.log``, the installed
    packages as ``requirements.txt``, git state and machine metadata). The metrics, config, sample predictions and
    summary are logged as before. Measured on the demo's Table 4 trainings (2 cores): offline logging cost ~2.4 s a
    run against none, ~1 s less without these (benchmarks/README.md). Online runs keep W&B's defaults: whoever opts
    in gets the full dashboard."""
    import wandb

    return wandb.Settings(console="off", x_disable_stats=True, x_save_requirements=False, x_disable_meta=True,
                          disable_git=True, disable_code=True)


def _finish_wandb(loggers: list, exit_code: int = 0) -> None:
    """End this run's WandB run. A WandbLogger finds the previous run still open otherwise and logs into it:
    a table's next training run (same process) would write its metrics and config into the last one's."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:  # no run was started: nothing to end (and none to create)
        return
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=exit_code)


def _public_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config with anything that looks like a credential removed (never logged, never saved)."""
    secrets = {os.environ[k] for k in SECRET_ENV if os.environ.get(k)}
    return {k: v for k, v in cfg.items() if not any(s and s in str(v) for s in secrets) and "key" not in k.lower()}


def _strategy(devices: int) -> str:
    """DDP for several devices: re-launching the script from a shell, forking inside Jupyter (e.g. Kaggle 2×T4)."""
    if devices <= 1:
        return "auto"
    try:  # optional: IPython is there only inside Jupyter / Kaggle kernels
        from IPython import get_ipython

        in_notebook = get_ipython() is not None
    except ImportError:
        in_notebook = False
    return "ddp_notebook" if in_notebook else "ddp"


def _finished(run_dir: Path) -> bool:
    return (run_dir / "done.json").is_file()


class RunConflictError(ConfigError):
    """``run_dir`` holds a run whose stored config differs in determining settings from the requested one."""


def check_run_dir(cfg: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume or reuse ``run_dir`` when its ``config.json`` differs in determining settings
    (runtime settings — time budget, device, logging — may differ: that is a resume)."""
    stored_path = run_dir / "config.json"
    if not stored_path.is_file():
        return
    try:
        # keys older versions saved but never read (e.g. a profile's top-level "pretrained") do not count
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        stored = TrainConfig.from_dict({k: v for k, v in read_json(stored_path).items() if k in known})
    except (ConfigError, ValueError) as exc:
        raise ReprolibDataError(stored_path, f"stored config is not a valid training config ({exc}); "
                                             "use another run directory") from None
    diff = cfg.differing_keys(stored)
    if diff:
        old, new = stored.identity(), cfg.identity()

        def show(key: str, d: dict) -> Any:
            return d["model"].get(key[6:], "default") if key.startswith("model.") else d.get(key, IDENTITY_DEFAULTS.get(key))

        details = ", ".join(f"{k} (stored {show(k, old)!r}, requested {show(k, new)!r})" for k in diff)
        state = "a finished" if _finished(run_dir) else "an unfinished"
        raise RunConflictError(str(run_dir), f"holds {state} run with other settings: {details}; "
                                             "use another run directory, or delete this one to retrain")


def with_imagenet_identity(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``imagenet`` set from the ImageNet file its encoder will load (a caller may leave it unset: the
    file decides); a value that names other weights than the file found is an error, not a silent retrain."""
    found = imagenet_weights_identity(cfg.model)
    if cfg.imagenet is not None and cfg.imagenet != found:
        actual = found or "torchvision's own file"
        raise ConfigError("imagenet", f"the config names the ImageNet weights {cfg.imagenet!r}, but the encoder would "
                                      f"start from {actual}")
    return cfg if cfg.imagenet == found else cfg.replace(imagenet=found)


def train(config: TrainConfig | dict[str, Any], run_dir: PathLike, callbacks: Sequence[Any] = ()) -> Path:
    """Train (or resume, or skip) one run; returns ``run_dir``.

    ``config``: a :class:`TrainConfig` or a dict validated into one. Everything is checked (settings, the
    run directory's stored config, the data) before anything is written. ``callbacks``: extra Lightning
    callbacks (e.g. the session deadline's stop, which must not enter the saved config).
    """
    cfg = with_imagenet_identity(TrainConfig.from_dict(config))
    run_dir = Path(run_dir)
    check_run_dir(cfg, run_dir)
    if _finished(run_dir):
        return run_dir
    for folder in (run_dir / "checkpoints", run_dir / "checkpoints" / "validation"):  # a killed session's partials
        remove_stale_temps(folder)
    resume = find_resume_checkpoint(run_dir, cfg.kaggle_input, cfg.resume_from)
    if resume is not None and resume.parent.parent.resolve() != run_dir.resolve():
        # another folder's run (a mounted previous output, found by folder name): the same settings, or refuse
        check_run_dir(cfg, resume.parent.parent)
    if cfg.accelerator == "cuda":
        prepare_cuda_determinism()
    keep_freed_memory()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = DissimilarityDataModule(cfg.train_split, cfg.val_split, label_dir=cfg.label_dir,
                                 val_label_dir=cfg.val_label_dir, plateau_split=cfg.plateau_split,
                                 plateau_label_dir=cfg.plateau_label_dir, size=cfg.size, batch_size=cfg.batch_size,
                                 seed=cfg.seed, flip=cfg.flip, num_workers=cfg.num_workers)
    dm.setup("fit")  # reads and checks the data before anything is written
    if len(dm.train_ds) < cfg.batch_size * cfg.devices:
        raise ReprolibDataError(cfg.train_split, f"{len(dm.train_ds)} training images cannot fill a global batch of "
                                                 f"{cfg.batch_size * cfg.devices} (batch_size × devices)")
    weights = enet_class_weights(dm.train_ds.files["label"]) if cfg.class_weights == "enet" else cfg.class_weights
    steps_per_epoch = max(1, len(dm.train_ds) // (cfg.batch_size * cfg.devices))
    max_steps = cfg.max_steps or cfg.max_epochs * steps_per_epoch
    val_every = cfg.val_every_n_steps or steps_per_epoch
    # built (and a model.pretrained path loaded) before anything is written: a bad file leaves no run behind
    model_cfg = {**cfg.model, "seed": int(cfg.model.get("seed", cfg.seed))}
    module = DissimilarityModule(model_cfg, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                 class_weights=list(weights) if weights else None, ensemble_mode=cfg.ensemble_mode,
                                 patience=cfg.patience, factor=cfg.factor,
                                 plateau_every=val_every if cfg.val_split else None,
                                 plateau_loader=1 if cfg.plateau_split else 0, val_loss=cfg.val_loss)
    if cfg.resume_from:
        _check_resume_file(Path(cfg.resume_from), module)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", _public_config(cfg.to_dict()))
    ckpt_dir = run_dir / "checkpoints"
    budget = parse_max_time(cfg.max_time)
    trainer_callbacks = [
        *([TimeBudget(budget)] if budget is not None else []),  # not Lightning's max_time: see callbacks.py
        ValidationImageLogger(),
        # weights the run passes through whatever its validation splits: a run differing only in them selects from
        # these instead of training again (reprolib.training.selection)
        *([ValidationSnapshots(run_dir, max_steps, val_every, cfg.patience)]
          if keeps_snapshots(cfg, max_steps, val_every) else []),
        *callbacks,
        # checkpoints last, best before last: last.ckpt then holds best.ckpt's state after a validation
        BestCheckpoint(ckpt_dir),
        StepCheckpoint(ckpt_dir / "last.ckpt", cfg.checkpoint_every),
    ]
    quiet_lightning()
    loggers = _loggers(run_dir, cfg.to_dict(), resume)
    trainer = L.Trainer(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=_strategy(cfg.devices),
        precision=cfg.precision, max_steps=max_steps, max_epochs=-1,
        val_check_interval=val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        limit_val_batches=None if cfg.val_split else 0, callbacks=trainer_callbacks, logger=loggers,
        plugins=[AtomicCheckpointIO()], deterministic=True, log_every_n_steps=max(1, min(10, val_every)),
        enable_progress_bar=True, enable_model_summary=False, default_root_dir=str(run_dir),
    )
    skip_uninitialized_fill()
    _bring_best(resume, ckpt_dir)
    try:
        with ieee_fp32():
            trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
        # collective under DDP (every rank calls it; rank 0 writes): the stopping point, whatever stopped it
        trainer.save_checkpoint(ckpt_dir / "last.ckpt", weights_only=False)
    except BaseException:
        with contextlib.suppress(Exception):  # the run's own error is the one to report
            _finish_wandb(loggers, exit_code=1)  # marked failed, not finished, on the dashboard
        raise
    _finish_wandb(loggers)
    if trainer.global_rank == 0 and trainer.global_step >= max_steps:
        # this session's values over those of the sessions before it (a resumed run's checkpoint holds them)
        metrics = {**module.restored_metrics, **scalar_metrics(trainer.callback_metrics)}
        write_json(run_dir / "done.json", {"global_step": trainer.global_step, "max_steps": max_steps,
                                           "val_every": val_every, "metrics": metrics, "profile": cfg.profile})
    return run_dir


def _bring_best(resume: Path | None, ckpt_dir: Path) -> None:
    """Resuming from another folder's ``last.ckpt`` (a mounted previous output): its ``best.ckpt`` comes along,
    since the restored record of the best validation so far names it (re-rooted here by BestCheckpoint)."""
    if resume is None or resume.parent.resolve() == ckpt_dir.resolve():
        return
    src, dst = resume.parent / "best.ckpt", ckpt_dir / "best.ckpt"
    if src.is_file() and not dst.exists():
        write_bytes(dst, src.read_bytes())


def load_trained(run_dir: PathLike, which: str = "last") -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(network, learned ensemble or None) from ``run_dir/checkpoints/<which>.ckpt``, in eval mode (weights_only
    loading).

    ``which="last"`` (the default) loads ``last.ckpt``, the latest checkpoint the run wrote: the end of training only
    once the run has finished, which is not checked (``done.json`` is not read), so a run stopped by its time budget
    loads too. ``which="best"`` loads ``best.ckpt`` (lowest validation loss), the checkpoint the tables and
    ``python -m reprolib evaluate`` score (``reprolib.experiments.runner.scored_checkpoint``). A missing file is a
    :class:`ReprolibDataError`."""
    path = Path(run_dir) / "checkpoints" / f"{which}.ckpt"
    if not path.is_file():
        raise ReprolibDataError(path, "checkpoint not found (has the run been trained?)")
    return load_checkpoint(path)


def load_checkpoint(path: PathLike) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(network, learned ensemble or None) from one Lightning checkpoint file, in eval mode (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise ReprolibDataError(path, "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: name it instead of unpickling noise
        raise ReprolibDataError(path, f"not a readable checkpoint ({load_error(exc)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ReprolibDataError(path, "not a reprolib training checkpoint (no 'state_dict')")
    hparams = ckpt.get("hyper_parameters", {})
    try:
        if not isinstance(hparams, dict) or not isinstance(hparams.get("model") or {}, dict):
            raise TypeError(f"hyper_parameters {type(hparams).__name__} with model "
                            f"{type(hparams.get('model')).__name__ if isinstance(hparams, dict) else '?'}")
        module = DissimilarityModule.from_hparams(hparams)
    except (TypeError, ValueError, KeyError) as exc:  # another project's Lightning checkpoint
        raise ReprolibDataError(path, f"its hyper_parameters do not describe a reprolib dissimilarity network "
                                      f"({exc})") from None
    problem = state_dict_mismatch(ckpt["state_dict"], {k: tuple(v.shape) for k, v in module.state_dict().items()})
    if problem is not None:  # torch's own message names neither the file nor the count of bad keys
        raise ReprolibDataError(path, problem)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return module.net, module.ensemble


def run_metadata(run_dir: PathLike) -> dict[str, Any]:
    """``done.json`` (final metrics) of a finished run."""
    return read_json(Path(run_dir) / "done.json")


def read_config(run_dir: PathLike) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "config.json").read_text())
