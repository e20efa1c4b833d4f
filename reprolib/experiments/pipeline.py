"""From raw data to a table: the stages every notebook shares, each cached under ``work_dir``.

    world (or the user's data) → backends → generated training data → precompute (maps) →
    train each variant × seed → score the evaluation sets → ensemble → metrics → tidy rows

Every stage is keyed by what it depends on and skips finished work, so a rerun (or a new Kaggle session
with the previous output mounted) picks up where the last one stopped. A finished processed training split is found
without the generated data it was computed from (``generated/<name>.processed.json`` records which inputs made it), so
a session's output may leave that data out (:func:`reprolib.experiments.session.export_outputs`). Every stage runs inside the
session's budget (:class:`reprolib.experiments.session.Session`): none starts once the budget is spent,
and each one that did work is recorded in ``session-log.json`` at the work root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reprolib.data.cityscapes import CityscapesDataset
from reprolib.data.fishyscapes import LostAndFoundDataset, StaticDataset
from reprolib.data.generator import VOID_DIR, generate_training_data, generation_params, other_parameters
from reprolib.data.transforms import imagenet_normalize
from reprolib.experiments.session import Session, log_stage, processed_record
from reprolib.experiments.tables import EMBEDDED_COMBOS
from reprolib.io import ReprolibDataError, read_json, write_json
from reprolib.world import generate_world

log = logging.getLogger("reprolib.experiments")

EVAL_SETS = ("fs_lost_and_found", "fs_static")


@dataclass
class DataRoots:
    """Where the datasets live: the embedded world or the user's copies (same sub-folder layout)."""

    root: Path
    embedded: bool

    @property
    def cityscapes(self) -> Path:
        return self.root / "cityscapes"

    @property
    def lostandfound(self) -> Path:
        return self.root / "lostandfound"

    @property
    def fs_lost_and_found(self) -> Path:
        return self.root / "fishyscapes" / "LostAndFound"

    @property
    def fs_static(self) -> Path:
        return self.root / "fishyscapes" / "Static"


@dataclass
class Context:
    """Everything a table run needs to know; built by :func:`reprolib.experiments.run_table`."""

    profile: Any  # reprolib.training.profiles.Profile
    work_dir: Path
    data: DataRoots | None = None
    checkpoints: dict[str, str] | None = None
    device: str = "cpu"
    wandb_mode: str = "offline"
    max_time: str | None = None
    max_epochs: int | None = None
    eval_resolution: str = "processed"  # or "benchmark": see reprolib.experiments.scoring.RESOLUTIONS
    precision: str = "32-true"  # training precision (TrainConfig.precision)
    timings: dict[str, float] = field(default_factory=dict)
    session: Session = field(default_factory=Session)  # the whole session's budget (one deadline)
    session_id: str = ""  # names this session in session-log.json
    kaggle_input: str | None = None  # where training may look for a previous session's checkpoints
    checkpoint_keys: dict[Path, str] = field(default_factory=dict)  # content hashes, computed once each
    #: what :func:`backends`, :func:`training_split` and :func:`evaluation_splits` resolved in this call, by their
    #: arguments (:meth:`resolved_key`): each table row asks again, and finding finished work again (loading the
    #: backends, hashing their weights, listing the data, building V's VGG19 for the cache key) took 0.2-0.4 s a time,
    #: ~40 s of a demo Table 4
    resolved: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def resolved_key(self, *parts: Any) -> tuple[Any, ...]:
        """``parts`` with the data root and device they were resolved for (a caller may switch either)."""
        return (*parts, self.data.root if self.data is not None else None, str(self.device))

    @property
    def work_root(self) -> Path:
        """The folder that holds every profile's work dir (what a Kaggle session carries over)."""
        return self.work_dir.parent

    def stage(self, name: str) -> _Stage:
        """Time and log one stage; raises ``SessionOver`` instead of starting once the budget is spent."""
        return _Stage(self, name)

    def timed(self, name: str) -> _Stage:
        """Time work that finishes what a stage started (a finished run's ensembles and intervals). It always
        runs, whatever the budget, so no finished run is left out of the table, and it is redone in every
        session that builds the table, so it stays out of the session log (whose stages run once)."""
        return _Stage(self, name, check_budget=False, log=False)


class _Stage:
    """Context manager that checks the session budget, then logs and times one pipeline stage.

    Set ``ran = False`` inside when the stage found its work done (nothing is then logged as run), and
    put what it did in ``info``.
    """

    def __init__(self, ctx: Context, name: str, check_budget: bool = True, log: bool = True):
        self.ctx, self.name, self.check_budget, self.log = ctx, name, check_budget, log
        self.ran = True
        self.info: dict[str, Any] = {}

    def __enter__(self) -> _Stage:
        if self.check_budget:
            self.ctx.session.check(self.name)
        self.t0 = time.perf_counter()
        self.t0_ns = time.time_ns()
        print(f"[reprolib] {self.name} …", flush=True)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        dt = time.perf_counter() - self.t0
        self.ctx.timings[self.name] = self.ctx.timings.get(self.name, 0.0) + dt
        print(f"[reprolib] {self.name}: {dt:.1f} s" + ("" if self.ran else " (nothing to do)"), flush=True)
        if exc_type is None and self.ran and self.log:
            log_stage(self.ctx.work_root, {"session": self.ctx.session_id, "stage": self.name,
                                           "seconds": round(dt, 3), **self.info})

    def check_budget_inside(self) -> None:
        """Raise ``SessionOver`` once the session's budget is spent, from inside a long stage (between its images):
        Kaggle kills a session at 12 h and its output is saved only when the notebook ends, so a stage longer than
        what is left (precompute of Cityscapes' train split on a T4 can take most of a session) must stop in time
        and leave the rest, which resumes, to the next session. Its work so far is not logged as a finished stage."""
        self.ctx.session.check(self.name)

    def changed(self, path: Path) -> bool:
        """True when ``path`` was written during this stage (its work was not cached)."""
        return Path(path).is_file() and Path(path).stat().st_mtime_ns >= self.t0_ns


def check_data_root(data_root: str | Path) -> DataRoots:
    """The user's data root, checked for everything a table reads before any work: the four trees, each image's
    labels, each Fishyscapes mask's image or base image. Every table precomputes Cityscapes (train, val) and
    scores FS Lost & Found and FS Static, so a tree missing there would otherwise stop a run after hours of
    backends, precompute and training. :class:`ReprolibDataError` naming the folder or file."""
    root = Path(data_root)
    if not root.is_dir():
        raise ReprolibDataError(root, "data root folder not found")
    roots = DataRoots(root, embedded=False)
    trees = {"cityscapes/": roots.cityscapes, "lostandfound/": roots.lostandfound,
             "fishyscapes/LostAndFound/": roots.fs_lost_and_found, "fishyscapes/Static/": roots.fs_static}
    missing = [name for name, path in trees.items() if not path.is_dir()]
    if missing:
        raise ReprolibDataError(root, f"missing {', '.join(missing)} inside the data root (it holds cityscapes/, "
                                      "lostandfound/, fishyscapes/LostAndFound/ and fishyscapes/Static/ in their "
                                      "official layouts: README, 'Real data and checkpoints')")
    for split in ("train", "val"):
        CityscapesDataset(roots.cityscapes, split=split)
    LostAndFoundDataset(roots.fs_lost_and_found, laf_root=roots.lostandfound)
    StaticDataset(roots.fs_static, roots.cityscapes)
    return roots


def resolve_data(work_dir: Path, data_root: str | Path | None, profile: Any,
                 before_work: Callable[[], None] | None = None) -> DataRoots:
    """The user's data root, or the embedded world generated (once) under ``work_dir/world``; ``before_work`` is
    asked before each of its images (see :func:`reprolib.world.generate_world`). A table checks the whole data root
    first (:func:`check_data_root`, from ``run_table``); here only its Cityscapes tree is required (Table 2 and the
    explorer read no other)."""
    if data_root is not None:
        root = Path(data_root)
        if not (root / "cityscapes").is_dir():
            raise ReprolibDataError(root, "expected cityscapes/, lostandfound/ and fishyscapes/ inside the data root")
        return DataRoots(root, embedded=False)
    world = generate_world(work_dir / "world", seed=0, before_work=before_work, **profile.world)
    return DataRoots(Path(world), embedded=True)


def prepare_data(ctx: Context, data_root: str | Path | None) -> DataRoots:
    """``ctx.data``: the user's data, or the embedded world (a stage: generated once, then reused)."""
    with ctx.stage("world") as st:
        ctx.data = resolve_data(ctx.work_dir, data_root, ctx.profile, before_work=st.check_budget_inside)
        st.ran = ctx.data.embedded and st.changed(ctx.data.root / "world.json")
    return ctx.data


def combo_name(ctx: Context, combo: str) -> str:
    """Real combo names map to their embedded twins on the embedded world."""
    return EMBEDDED_COMBOS.get(combo, combo) if ctx.data.embedded else combo


def _train_embedded(ctx: Context, name: str) -> None:
    """Train the embedded backends a combo needs, once (the registry only loads: training lives in training/)."""
    # lazy here and below: the backends (torchvision) and training (Lightning) add 2.3 s / 3.2 s to
    # `import reprolib.experiments` (python -X importtime); a rerun over finished splits and runs needs neither
    from reprolib.backends import COMBOS
    from reprolib.backends.embedded import checkpoint_path
    from reprolib.training.embedded_backends import TrainingStopped, train_embedded_backends
    from reprolib.training.embedded_backends.train import backend_config, check_finished_backends

    run_dir = ctx.work_dir / "backends"
    for backend in COMBOS[name]:
        strength = backend.split("-", 1)[1]
        # finished = done.json, written last: a run killed after its checkpoints but before its evaluation
        # (metrics.json, preview.png, done.json) is finished by train_embedded_backends, which skips the training
        done = checkpoint_path(run_dir, strength, "segmentation").parent / "done.json"
        if done.is_file():  # reused only with the profile's settings (an edited profile must not show old rows)
            check_finished_backends(done, backend_config(ctx.data.root, strength=strength,
                                                         **ctx.profile.backend_training_for(strength)))
        else:
            # on the run's device (a Kaggle GPU too); the training is deterministic on CUDA (fit_task), and
            # finished backends are reused whatever device trained them
            # stopped at the session's deadline between steps (a demo chain on Kaggle trains them in its first
            # session): the next session resumes from their last.ckpt
            try:
                train_embedded_backends(ctx.data.root, run_dir, strength=strength,
                                        accelerator="cuda" if str(ctx.device).startswith("cuda") else "cpu",
                                        callbacks=lambda kind: [ctx.session.callback(count_steps=False)],
                                        **ctx.profile.backend_training_for(strength))
            except TrainingStopped:  # only the session's callback stops it: its check raises SessionOver
                ctx.session.check(f"backends {name}")
                raise


def backends(ctx: Context, combo: str) -> tuple[Any, Any]:
    """(segmentation, resynthesis) of a combo; embedded ones are trained on first use."""
    from reprolib.backends import get_combo  # lazy: torchvision, see _train_embedded

    name = combo_name(ctx, combo)
    key = ctx.resolved_key("backends", name)
    if key in ctx.resolved:
        return ctx.resolved[key]
    kw: dict[str, Any] = {"device": ctx.device}
    if name.startswith("embedded"):
        kw.update(embedded_dir=ctx.work_dir / "backends")
    else:
        kw.update(checkpoints=ctx.checkpoints)
    with ctx.stage(f"backends {name}") as st:
        if name.startswith("embedded"):
            _train_embedded(ctx, name)
        combo = get_combo(name, **kw)
        done = list((ctx.work_dir / "backends").glob("*/done.json")) if name.startswith("embedded") else []
        st.ran = any(st.changed(p) for p in done)
    ctx.resolved[key] = combo
    return combo


class SegmentationFill:
    """``fill_void`` for the generator: the segmentation network's prediction (trainIds) of the real image at
    its own resolution, as the original's ``create_void_semantic_original`` fills void with predictions."""

    def __init__(self, segmentation: Any, device: str, name: str):
        from reprolib.backends.embedded import module_fingerprint  # lazy: torchvision, see _train_embedded

        self.segmentation, self.device = segmentation, device
        # recorded in generator.json: which network filled void, and with which weights (other weights under the
        # same backend name must not reuse a generation whose void pixels the old ones filled)
        self.__qualname__ = f"segmentation:{name}"
        self.weights = module_fingerprint(segmentation)

    def __call__(self, index: int, image: Any, train_ids: Any) -> Any:
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().div(255.0).to(self.device)
        with torch.no_grad():
            logits = self.segmentation.eval()(imagenet_normalize(x))
        return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()


def training_split(ctx: Context, combo: str, split: str, void_labels: bool) -> tuple[Path, str]:
    """Generated training data (Lis et al. relabelling + void-as-anomaly) precomputed with a combo.

    One processed split serves both label sets, as in the original: "w/o data generator" trains on the
    same images, semantic maps (void filled with the combo's segmentation prediction), resyntheses and maps
    as the full model, and only the label folder differs (``labels/`` instead of ``labels_with_void_no_ego/``).
    Returns (processed split folder, label folder name to train on).

    A finished split is found by its record (:func:`_recorded_split`) without the generated folder it was computed
    from: a session's output may leave that folder out (:func:`reprolib.experiments.session.export_outputs`), and
    generating it again costs hours on Cityscapes.
    """
    from reprolib.precompute import precompute  # lazy: torchvision, see _train_embedded

    labels = VOID_DIR if void_labels else "labels"
    name = combo_name(ctx, combo)
    key = ctx.resolved_key("training_split", name, split)
    if key in ctx.resolved:
        return ctx.resolved[key], labels
    seg, resyn = backends(ctx, combo)
    with ctx.stage(f"precompute {split} {name}") as st:
        gen_root, fill, params = _generation_of(ctx, name, split, seg)
        out = _recorded_split(ctx, gen_root, params, seg, resyn)
        if out is None:
            # a record that finds no done split (another key: a backend's weights, the cache version; its split
            # dropped) names none this pipeline uses: removed before the work, or an export meanwhile would take its
            # old split, done, for this one and leave out the generated data the precompute in progress reads
            processed_record(gen_root).unlink(missing_ok=True)
            gen_root = Path(generate_training_data(ctx.data.cityscapes, gen_root, split=split, seed=0, void=True,
                                                   fill_void=fill, before_work=st.check_budget_inside))
            out = Path(precompute(gen_root, seg, resyn, ctx.work_dir / "processed", size=ctx.profile.size,
                                  batch_size=ctx.profile.precompute_batch, before_work=st.check_budget_inside))
            _record_split(gen_root, params, out)
        st.ran = st.changed(out / "done.json")
    ctx.resolved[key] = out
    return out, labels


def _generation_of(ctx: Context, name: str, split: str, seg: Any) -> tuple[Path, SegmentationFill, dict[str, Any]]:
    """(folder, void filler, generator parameters) of the generated ``split`` for the combo ``name``, whose void its
    segmentation ``seg`` fills. The generation is named by the segmentation network (``generated/<segmentation>-<split>``,
    its filler ``segmentation:<segmentation>``), not by the combo: only the segmentation's prediction makes one
    combo's generated data differ from another's, so combos sharing a segmentation in one work folder (Table 8's
    moderate1 and Tables 4/6's original; moderate2 and Table 6's light) share one generation, a segmentation pass over
    Cityscapes (a Kaggle chain works one table per work folder: there each table's combos differ). A work folder of before
    named it by the combo (``generated/<combo>-<split>``, filler ``segmentation:<combo>``): a generation there of
    otherwise the same parameters is used as it is (its processed split, found by its record, included)."""
    from reprolib.backends import COMBOS  # lazy: torchvision, see _train_embedded

    seg_name = COMBOS[name][0]
    fill = SegmentationFill(seg, ctx.device, seg_name)
    params = generation_params(CityscapesDataset(ctx.data.cityscapes, split), seed=0, void=True, fill_void=fill)
    generated = ctx.work_dir / "generated"
    if seg_name != name:
        legacy_params = {**params, "fill_void": f"segmentation:{name}"}
        legacy = generation_root(generated / f"{name}-{split}", legacy_params)
        if _holds(legacy, legacy_params):
            fill.__qualname__ = legacy_params["fill_void"]  # the same network and weights (fingerprinted once)
            return legacy, fill, legacy_params
    return generation_root(generated / f"{seg_name}-{split}", params), fill, params


def _recorded_parameters(folder: Path) -> dict[str, Any] | None:
    """The generator's parameters a generated folder records (its ``generator.json``, else its processed split's
    record), or None where it records none."""
    meta, record = folder / "generator.json", processed_record(folder)
    if meta.is_file():
        return read_json(meta)
    if record.is_file():
        return read_json(record)["generator"]
    return None


def _holds(folder: Path, params: dict[str, Any]) -> bool:
    """Whether ``folder`` records a generation of ``params`` (nothing unreadable counts)."""
    try:
        recorded = _recorded_parameters(folder)
        return recorded is not None and not other_parameters(recorded, params)
    except (ReprolibDataError, KeyError, TypeError, AttributeError):
        return False


def generation_root(default: Path, params: dict[str, Any]) -> Path:
    """Where the generation ``params`` describes lives: ``default`` (``generated/<segmentation>-<split>``), unless that folder
    holds, or its record (:func:`_record_split`) describes, a generation of other parameters (other Cityscapes files, other
    segmentation weights filling void): then ``<default>-<hash of params>``. The generator refuses a folder of other
    parameters, which a table cannot get round; each generation in its own folder keeps both, and switching back finds
    the first one's split by its record. ``default`` stays the folder of every generation that had it."""
    try:
        recorded = _recorded_parameters(default)
        if recorded is None:
            return default
        other = bool(other_parameters(recorded, params))
    except (ReprolibDataError, KeyError, TypeError, AttributeError):
        return default  # unreadable: the generator (or _recorded_split) says what is wrong with it, as before
    if not other:
        return default
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return default.with_name(f"{default.name}-{digest}")


def _record_split(gen_root: Path, params: dict[str, Any], split: Path) -> None:
    """Write ``<generated folder>.processed.json`` beside ``gen_root``: the generator's parameters (everything that
    determines its bytes) and the identity the precompute's key took of its output, with the split folder it named.
    Atomic; outside the generated folder, so it stays when that folder is left out of a session's output."""
    key, done = read_json(split / "key.json"), read_json(split / "done.json")
    write_json(processed_record(gen_root), {
        "generated": gen_root.name, "generator": params, "dataset": key["dataset"],
        "has_semantic": (gen_root / "semantic").is_dir(), "processed": split.name, "key_hash": done["key_hash"]})


def _recorded_split(ctx: Context, gen_root: Path, params: dict[str, Any], seg: Any, resyn: Any) -> Path | None:
    """The finished processed split of the generation ``params`` describes, from its record, or None (generate and
    precompute then, as without a record). Trusted only when every input matches: the generator's parameters (its
    version, seed, settings, the segmentation weights that filled void, the names and sizes of the Cityscapes files
    read) and then the whole precompute key (backends' weights, size, settings) recomputed with the recorded identity
    of the generated data, whose ``done.json`` must hold that key's hash."""
    from reprolib.precompute import RecordedSource, find_done  # lazy: torchvision, see _train_embedded

    path = processed_record(gen_root)
    if not path.is_file():
        return None  # an older work folder, or a generation never precomputed
    try:
        record = read_json(path)
        dataset = record["dataset"]
        source = RecordedSource(str(dataset["kind"]), str(dataset["fingerprint"]), int(dataset["length"]),
                                has_semantic=bool(record["has_semantic"]))
        recorded = record["generator"]
    except (ReprolibDataError, KeyError, TypeError, ValueError) as exc:
        log.warning("%s: not a readable record of a processed split (%s); generating again", path, exc)
        return None
    if recorded != params:
        return None
    return find_done(source, seg, resyn, ctx.work_dir / "processed", size=ctx.profile.size)


def evaluation_splits(ctx: Context, combo: str) -> dict[str, Path]:
    """FS Lost & Found and FS Static, run through the combo's backends and maps once."""
    from reprolib.precompute import precompute  # lazy: torchvision, see _train_embedded

    key = ctx.resolved_key("evaluation_splits", combo_name(ctx, combo))
    if key in ctx.resolved:
        return dict(ctx.resolved[key])
    seg, resyn = backends(ctx, combo)
    datasets = {
        "fs_lost_and_found": LostAndFoundDataset(ctx.data.fs_lost_and_found, laf_root=ctx.data.lostandfound),
        "fs_static": StaticDataset(ctx.data.fs_static, ctx.data.cityscapes),
    }
    splits: dict[str, Path] = {}
    for name, ds in datasets.items():
        with ctx.stage(f"precompute {name} {combo_name(ctx, combo)}") as st:
            splits[name] = Path(precompute(ds, seg, resyn, ctx.work_dir / "processed", size=ctx.profile.size,
                                           batch_size=ctx.profile.precompute_batch, before_work=st.check_budget_inside))
            st.ran = st.changed(splits[name] / "done.json")
    ctx.resolved[key] = dict(splits)
    return splits
