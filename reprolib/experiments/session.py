"""One deadline per session, and outputs that accumulate from one Kaggle session to the next.

A Kaggle session ends after 12 h whatever runs. :class:`Session` turns ``max_time`` into one absolute
deadline, fixed when the notebook starts: every stage gets what is left, a training run stops (with a
checkpoint) ``margin_s`` before the deadline, and no stage starts once the margin is reached. The table
then holds the finished runs, and the next session (``push`` again) picks up the rest.

Each Kaggle version saves only ``/kaggle/working``; the previous version's output is mounted read-only
under ``/kaggle/input``. :func:`import_previous` copies it into the working directory at session start
(every file checked against the sha256 the previous session recorded, and its mtime restored; the caches key
on names and contents, the in-process memo of those hashes on mtimes too), and :func:`export_outputs` writes
that record at the end,
packing bulky, many-file folders (world, generated training data, processed splits, prediction PNGs) into
one tar each, so each version's output holds everything done so far in a modest number of files. A file missing
from that output (Kaggle keeps 20 GB) or damaged costs only its unit of work (:func:`import_unit`: a run, a
processed split, ...), which is left out, named, and redone by the pipeline; not the whole chain.

Kaggle saves at most 20 GB a version, and a ``full`` table's work folder outgrows it (``make smoke-full`` estimates
it, :func:`reprolib.experiments.cost.output_size`). :func:`export_outputs` keeps the output under a budget
(:data:`OUTPUT_BUDGET_BYTES`, 19 GB) by leaving out rebuildable folders (:func:`rebuildable`: prediction PNGs,
generated training data whose processed split is done, the embedded world; then, last, the optimiser state of finished
runs' ``last.ckpt``: :func:`finished_last_checkpoints`), named in the manifest's ``left_out``; the
pipeline does not need them (``reprolib.experiments.pipeline.training_split`` finds a done split by its record,
:func:`processed_record`, without the generated data).

Why one module of ~640 lines: the deadline and the import/export are one contract (a session that stops at
its deadline must leave exactly what the next one imports), tested together by ``tests/test_session_chain.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprolib.io import ReprolibDataError, is_temp_file, load_error, read_json, save_torch, write_json
from reprolib.training.config import parse_max_time

MANIFEST = "REPROLIB_OUTPUT.json"  # at the work root: what a session left, with content hashes
SESSION_LOG = "session-log.json"  # at the work root: every stage that did work, over all sessions
PACKED = "packed"  # tar archives of bulky folders, relative to the work root
#: folders (relative to a profile's work dir) packed into one tar each at session end: the many-file ones
#: (one PNG per image); a run's checkpoints, scores and logs stay plain files
PACK_PATTERNS = ("world", "generated/*", "processed/*", "runs/*/predictions")
_CHUNK = 1 << 20
IMPORT_DEPTH = 5  # how deep under kaggle_input import_previous looks for an earlier output's results/
#: what export_outputs keeps a session's output under, leaving out rebuildable caches (Kaggle saves at most 20 GB of
#: /kaggle/working per version; 1 GB is kept back for what the notebook writes after the export)
OUTPUT_BUDGET_BYTES = 19 * 10**9
#: beside a generated folder ``<name>`` (``generated/<name>.processed.json``): the processed split computed from it,
#: and everything that determined that generation (reprolib.experiments.pipeline.training_split writes and reads it)
PROCESSED_RECORD_SUFFIX = ".processed.json"
_TAR_OVERHEAD = 1536  # per packed file at most: its header, a PAX header (mtime_ns, long names) and padding
_MANIFEST_ENTRY = 300  # bytes a manifest entry takes, about (path, size, mtime_ns, sha256)


class SessionOver(Exception):
    """Raised when a stage cannot start (or finish) before the session's deadline."""

    def __init__(self, stage: str):
        super().__init__(f"session budget reached before {stage!r}")
        self.stage = stage


def default_margin(max_time_s: float | None) -> float:
    """Time kept back for the last checkpoint, scoring the finished runs and packing the output."""
    if max_time_s is None:
        return 0.0
    return min(1800.0, max(60.0, 0.05 * max_time_s))


@dataclass
class Session:
    """The time budget of one session: an absolute deadline on ``clock``, and an optional step budget.

    ``step_budget`` (training steps this session may run, all runs together) is a deterministic stand-in
    for the clock, used to simulate a chain of sessions in the tests.
    """

    max_time_s: float | None = None
    margin_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    step_budget: int | None = None
    steps: int = 0
    stopped_at: str | None = None
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        if self.margin_s is None:
            self.margin_s = default_margin(self.max_time_s)
        self.deadline = math.inf if self.max_time_s is None else self.clock() + self.max_time_s

    @classmethod
    def from_max_time(cls, max_time: str | int | float | None, **kw: Any) -> Session:
        return cls(max_time_s=parse_max_time(max_time), **kw)

    def remaining(self) -> float:
        """Seconds left before the deadline (inf without one)."""
        return self.deadline - self.clock()

    def expired(self) -> bool:
        """True once nothing new may start: inside the margin, or the step budget spent."""
        if self.step_budget is not None and self.steps >= self.step_budget:
            return True
        return self.remaining() <= float(self.margin_s or 0.0)

    def check(self, stage: str) -> None:
        """Raise :class:`SessionOver` if ``stage`` may not start any more."""
        if self.expired():
            self.stopped_at = self.stopped_at or stage
            raise SessionOver(stage)

    def training_seconds(self) -> float | None:
        """The ``max_time`` a training run gets: what is left minus the margin (None without a deadline)."""
        if math.isinf(self.deadline):
            return None
        return max(1.0, self.remaining() - float(self.margin_s or 0.0))

    def callback(self, count_steps: bool = True) -> Any:
        """A Lightning callback that stops training (after the current step) when the session expires.

        ``count_steps=False``: its steps do not count against ``step_budget`` (the embedded backends' training: the
        step budget stands for the dissimilarity runs' steps)."""
        # lazy: Lightning adds 3.2 s to `import reprolib.experiments` (python -X importtime); only training needs it
        from lightning.pytorch.callbacks import Callback

        from reprolib.training.callbacks import stop_after_this_step

        session = self

        class _SessionStop(Callback):
            def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
                session.steps += count_steps
                # every DDP rank must stop at the same step: rank 0's clock decides
                if trainer.strategy.broadcast(session.expired()):
                    stop_after_this_step(trainer)  # without an extra validation: see reprolib.training.callbacks

        return _SessionStop()


# ---------------------------------------------------------------------------------------------- log


def log_stage(work_root: Path, record: dict[str, Any]) -> None:
    """Append one stage record to ``work_root/session-log.json`` (atomic rewrite; the log is small)."""
    path = Path(work_root) / SESSION_LOG
    records = read_json(path) if path.is_file() else []
    records.append(record)
    write_json(path, records)


def read_log(work_root: Path) -> list[dict[str, Any]]:
    path = Path(work_root) / SESSION_LOG
    return read_json(path) if path.is_file() else []


# ---------------------------------------------------------------------------------------------- files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _pack_dirs(work_root: Path) -> list[Path]:
    """The bulky folders to pack: PACK_PATTERNS inside each profile folder of the work root."""
    found: list[Path] = []
    for prof in sorted(p for p in work_root.iterdir() if p.is_dir() and p.name != PACKED):
        for pattern in PACK_PATTERNS:
            found += sorted(d for d in prof.glob(pattern) if d.is_dir())
    return found


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            yield Path(dirpath) / name


def _entry(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}


def _size(n_bytes: float) -> str:
    """``n_bytes`` for a printed line: GB, MB or kB (decimal, as Kaggle's 20 GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes / 1e3:g} kB"


def processed_record(gen_root: str | os.PathLike) -> Path:
    """Where the record of the processed split computed from the generated folder ``gen_root`` lives: beside it."""
    gen_root = Path(gen_root)
    return gen_root.with_name(gen_root.name + PROCESSED_RECORD_SUFFIX)


def _split_done_for(generated: Path) -> bool:
    """True when the generated folder ``generated`` is no longer needed: its record names a processed split whose
    ``done.json`` holds the recorded key, and the folder's ``generator.json`` says it is the complete generation the
    record describes (every parameter that determines its bytes equal). Anything unreadable: False (kept)."""
    try:
        record, meta = read_json(processed_record(generated)), read_json(generated / "generator.json")
        done = read_json(generated.parent.parent / "processed" / str(record["processed"]) / "done.json")
        return (meta.get("complete") is True and done.get("key_hash") == record["key_hash"]
                and all(meta.get(k) == v for k, v in record["generator"].items()))
    except (ReprolibDataError, KeyError, TypeError, AttributeError):
        return False


def rebuildable(work_root: str | os.PathLike) -> list[tuple[Path, str]]:
    """The folders of ``work_root`` a session's output may leave out, each with why, in the order
    :func:`export_outputs` leaves them out (what no stage reads again first; what a user may look at after):

    1. prediction PNGs (``runs/<run>/predictions/<set>/``): nothing reads them, and the run's score cache holds the
       maps they show (``write_predictions(load_scores(cache)["dissimilarity"], folder)`` writes them again);
    2. generated training data whose processed split is done (:func:`_split_done_for`): the split is found from its
       record without it (``reprolib.experiments.pipeline.training_split``), but should that split ever be lost
       (a damaged import unit), generating it again costs hours;
    3. the embedded world: the next session generates it again from its seed (the same bytes, so every cache keyed
       on it still holds), at the cost of that generation.

    Never listed (not cheaply or not deterministically rebuilt, or read to skip work): checkpoints, snapshots, done
    markers, score caches, processed splits, the embedded backends, results, logs, a generation still needed."""
    root = Path(work_root)
    profiles = sorted(p for p in root.iterdir() if p.is_dir() and p.name != PACKED) if root.is_dir() else []
    found: list[tuple[Path, str]] = []
    for prof in profiles:
        found += [(d, "prediction PNGs; the run's score cache holds the maps (scoring.write_predictions)")
                  for d in sorted(prof.glob("runs/*/predictions/*")) if d.is_dir()]
    for prof in profiles:
        found += [(g, f"generated training data; its processed split is done ({processed_record(g).name} names it)")
                  for g in sorted(prof.glob("generated/*")) if g.is_dir() and _split_done_for(g)]
    for prof in profiles:
        if (prof / "world" / "world.json").is_file():
            found.append((prof / "world", "the embedded world; generated again from its seed at the next session"))
    return found


def _leave_out(root: Path, budget_bytes: int | None) -> list[dict[str, Any]]:
    """Remove rebuildable folders (:func:`rebuildable`, in its order) until the output's estimated size is within
    ``budget_bytes``; returns one entry per folder removed (path, bytes, files, reason), each printed."""
    if budget_bytes is None:
        return []
    files = [p for p in _walk(root) if p.name != MANIFEST]
    packed = {d: sum(1 for _ in _walk(d)) for d in _pack_dirs(root)}
    # estimated size of the output: the files, the tars' headers and the manifest's entries
    size = sum(p.stat().st_size for p in files) + (_TAR_OVERHEAD + _MANIFEST_ENTRY) * sum(packed.values()) \
        + _MANIFEST_ENTRY * len(files)
    left: list[dict[str, Any]] = []
    for folder, reason in rebuildable(root):
        if size <= budget_bytes:
            break
        inside = list(_walk(folder))
        n_bytes = sum(p.stat().st_size for p in inside)
        size -= n_bytes + (2 * _MANIFEST_ENTRY + _TAR_OVERHEAD) * len(inside)
        shutil.rmtree(folder)
        rel = folder.relative_to(root).as_posix()
        left.append({"path": rel, "bytes": n_bytes, "files": len(inside), "reason": reason})
        print(f"[reprolib] left out of the output (over {_size(budget_bytes)}): {rel} ({_size(n_bytes)}, "
              f"{len(inside)} files): {reason}", flush=True)
    for ckpt in finished_last_checkpoints(root):
        if size <= budget_bytes:
            break
        saved = _drop_training_state(ckpt)
        if not saved:
            continue
        size -= saved
        rel = ckpt.relative_to(root).as_posix()
        left.append({"path": rel, "part": "training state", "bytes": saved, "files": 0, "reason": TRAINING_STATE_REASON})
        print(f"[reprolib] left out of the output (over {_size(budget_bytes)}): the training state of {rel} "
              f"({_size(saved)}): {TRAINING_STATE_REASON}", flush=True)
    return left


#: the optimiser, its schedulers and the precision scaler: what only resuming reads (callbacks' small state stays)
TRAINING_STATE_KEYS = ("optimizer_states", "lr_schedulers", "MixedPrecision", "native_amp_scaling_state")
TRAINING_STATE_REASON = ("a finished run never resumes; its weights, hyper-parameters and step stay (what "
                         "load_trained reads), and the tables score best.ckpt, which is kept whole")


def finished_last_checkpoints(work_root: str | os.PathLike) -> list[Path]:
    """The ``last.ckpt`` of every finished run (``done.json``) that has a ``best.ckpt``, the checkpoint its tables
    score (``runner.scored_checkpoint``): the last resort of :func:`export_outputs` over its budget, which drops their
    optimiser and scheduler state (two thirds of a width-1 checkpoint with Adam's moments). ``best.ckpt`` is never
    touched: the score caches key on its sha256. Neither is an unfinished run's ``last.ckpt`` (the next session
    resumes from it), nor a source run's fork checkpoint or snapshots (their own files)."""
    root = Path(work_root)
    if not root.is_dir():
        return []
    return [run / "checkpoints" / "last.ckpt"
            for prof in sorted(p for p in root.iterdir() if p.is_dir() and p.name != PACKED)
            for run in sorted(prof.glob("runs/*"))
            if (run / "done.json").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
            and (run / "checkpoints" / "last.ckpt").is_file()]


def _drop_training_state(ckpt: Path) -> int:
    """Rewrite ``ckpt`` (atomically) without :data:`TRAINING_STATE_KEYS`; the bytes saved (0: nothing to drop)."""
    import torch  # lazy: the session's import/export runs before anything needs torch

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # not ours to judge here: keep it as it is, named
        print(f"[reprolib] WARNING: {ckpt}: not a readable checkpoint ({load_error(exc)}); kept whole", flush=True)
        return 0
    if not isinstance(state, dict) or not any(state.get(k) for k in TRAINING_STATE_KEYS):
        return 0
    before = ckpt.stat().st_size
    save_torch({k: v for k, v in state.items() if k not in TRAINING_STATE_KEYS}, ckpt)
    return max(before - ckpt.stat().st_size, 0)


def export_outputs(work_root: str | os.PathLike, budget_bytes: int | None = OUTPUT_BUDGET_BYTES) -> dict[str, Any]:
    """Pack the bulky folders (one uncompressed tar each, the folder removed) and write the manifest.

    Call it last in a session: the manifest lists every file (plain or inside an archive) with size,
    mtime and sha256, which :func:`import_previous` checks in the next session.

    ``budget_bytes`` (default :data:`OUTPUT_BUDGET_BYTES`; None: no limit): when the output would be larger, the
    rebuildable folders of :func:`rebuildable` are removed first, in its order, until it fits (before packing: a tar
    is a second copy on a disk near full). They are in neither ``files`` nor ``archives`` of the manifest (the next
    session does not expect them) but under ``left_out`` (path, bytes, files, reason), and each is named in a printed
    line. Then, while still over, each finished run's ``last.ckpt`` (:func:`finished_last_checkpoints`) is rewritten
    without its optimiser and scheduler state (a ``left_out`` entry with ``"part": "training state"``). What cannot be
    left out stays, with a warning when the output is still over the budget.
    """
    root = Path(work_root)
    root.mkdir(parents=True, exist_ok=True)
    for path in list(root.rglob("*.tmp")):
        # a killed write's leftover (at export nothing of this session writes any more): never output, and a
        # checkpoint's can weigh as much as the checkpoint, in Kaggle's 20 GB
        if is_temp_file(path):
            path.unlink()
    archives: dict[str, dict[str, Any]] = {}
    left_out: list[dict[str, Any]] = []
    if (root / MANIFEST).is_file():  # an earlier export of this session: its archives' folders are gone
        with contextlib.suppress(ReprolibDataError, KeyError, TypeError, AttributeError):
            earlier = read_json(root / MANIFEST)
            archives.update({a: m for a, m in earlier["archives"].items() if (root / a).is_file()})
            # what it left out, unless made again since
            left_out += [e for e in earlier.get("left_out", []) if e.get("part") or (not (root / e["path"]).exists()
                         and not (root / PACKED / f"{e['path']}.tar").is_file())]
    left_out += _leave_out(root, budget_bytes)
    for folder in _pack_dirs(root):
        rel = folder.relative_to(root).as_posix()
        tar_path = root / PACKED / f"{rel}.tar"
        tar_path.parent.mkdir(parents=True, exist_ok=True)
        arch = tar_path.relative_to(root).as_posix()
        members: dict[str, Any] = {}
        tmp = tar_path.with_name(tar_path.name + ".tmp")
        try:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
                for path in _walk(folder):
                    name = path.relative_to(root).as_posix()
                    members[name] = _entry(path)
                    tf.add(path, arcname=name, recursive=False)
            os.replace(tmp, tar_path)
        except OSError as exc:
            # the tar is a second copy of the folder until the folder is removed: near Kaggle's 20 GB the disk fills.
            # The folder then travels as plain files, and the manifest is still written (without it the next session
            # would import nothing and start over)
            tmp.unlink(missing_ok=True)
            if archives.pop(arch, None) is not None:  # an earlier export's archive of it: out of date
                tar_path.unlink(missing_ok=True)
            print(f"[reprolib] WARNING: could not pack {rel} ({exc}); it stays as {sum(1 for _ in _walk(folder))} "
                  "plain files", flush=True)
            continue
        archives[arch] = members
        shutil.rmtree(folder)
    files: dict[str, Any] = {}
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST or rel.endswith(".tmp"):
            continue
        files[rel] = _entry(path)
    manifest = {"version": 1, "written": time.time(), "files": files, "archives": archives, "left_out": left_out}
    write_json(root / MANIFEST, manifest)
    size = sum(f["size"] for f in files.values()) + (root / MANIFEST).stat().st_size
    print(f"[reprolib] output: {len(files) + 1} files, {size / 1e9:.2f} GB in {root}"
          + (f"; {len(left_out)} rebuildable folder(s) left out ({_size(sum(e['bytes'] for e in left_out))})"
             if left_out else ""), flush=True)
    if budget_bytes is not None and size > budget_bytes:
        print(f"[reprolib] WARNING: the output is over {_size(budget_bytes)} even without its rebuildable caches; "
              "Kaggle keeps at most 20 GB per version, and the next session would miss what is cut", flush=True)
    return manifest


def find_previous(kaggle_input: str | os.PathLike | None, max_depth: int = 5) -> list[Path]:
    """Work roots left by earlier sessions under ``kaggle_input``, whichever way Kaggle mounted them.

    A notebook's output is mounted at ``/kaggle/input/notebooks/<user>/<slug>/`` (older images:
    ``/kaggle/input/<slug>/``); the work root is a folder of it holding :data:`MANIFEST`.
    """
    if not kaggle_input or not Path(kaggle_input).is_dir():
        return []
    base = Path(kaggle_input)
    found: list[Path] = []
    for depth in range(max_depth + 1):
        pattern = "/".join(["*"] * depth + [MANIFEST])
        found += [p.parent for p in sorted(base.glob(pattern)) if p.is_file()]
    return found


def unusable_outputs(kaggle_input: str | os.PathLike | None, max_depth: int = IMPORT_DEPTH,
                     work_root: str | os.PathLike | None = None, previous: list[Path] | None = None) -> list[Path]:
    """Earlier outputs of a table session under ``kaggle_input`` (a ``results/<table>/status.json`` inside) that hold
    no :data:`MANIFEST`: a session killed before its end (out of memory, Kaggle's 12 h), or one whose import of its
    own previous output failed. :func:`import_previous` cannot check, so does not import, anything of them.

    ``previous``: the work roots with a manifest (default :func:`find_previous` to ``max_depth`` + 2, the depth
    :func:`import_previous` searches). The folder holding ``work_root`` (this session's own output, whose
    ``status.json`` the table writes before the import) is no earlier output."""
    if not kaggle_input or not Path(kaggle_input).is_dir():
        return []
    base = Path(kaggle_input)
    roots = {p.parents[2] for depth in range(max_depth + 1)
             for p in base.glob("/".join(["*"] * depth + ["results", "*", "status.json"])) if p.is_file()}
    good = find_previous(kaggle_input, max_depth + 2) if previous is None else previous
    own = Path(work_root).resolve() if work_root is not None else None
    return sorted(r for r in roots if not any(g == r or r in g.parents for g in good)
                  and not (own is not None and (own == r.resolve() or r.resolve() in own.parents)))


# ------------------------------------------------------------------------------------------- import

IMPORT_STAGING = ".import-staging"  # at the work root while import_previous runs: files waiting for their unit
#: a profile's folders whose every sub-folder is one unit of work (:func:`import_unit`)
_UNIT_FOLDERS = ("backends", "generated", "processed", "runs")


class _Damaged(Exception):
    """A file (or archive) of the previous output that cannot be brought in as its manifest records it."""


def import_unit(rel: str) -> tuple[str, ...]:
    """What is dropped together with the file (or packed folder) ``rel`` of the previous output when it is missing
    or damaged there: the paths (folders or files, relative to the work root) of the smallest piece of work whose
    consistency depends on it, which the pipeline redoes whole when it is absent.

    * a profile's ``world/``, ``backends/<strength>/``, ``generated/<x>/``, ``processed/<split>/``: the folder (its
      ``world.json`` / ``done.json`` marks all of it done: a marker must never stand without its content);
    * ``runs/<run>/scores/`` and ``runs/<run>/predictions/`` (a finished run's scoring: the score caches mark it
      done, the prediction PNGs are written before them): both, and the run is scored again;
    * anything else of ``runs/<run>/`` (checkpoints, ``done.json``, ``config.json``, logs): the whole run folder,
      scores included, and the run is trained again from scratch (a ``done.json`` beside a damaged ``last.ckpt``
      would pass the run off as finished);
    * another folder of a profile: all of it; a file at the work root or directly in a profile: itself.
    """
    parts = rel.split("/")
    if len(parts) == 1:
        return (rel,)
    prof, kind = parts[0], parts[1]
    if kind == "world":
        return (f"{prof}/world",)
    if len(parts) == 2:
        return (rel,)
    if kind == "runs" and len(parts) > 3 and parts[3] in ("scores", "predictions"):
        run = "/".join(parts[:3])
        return (f"{run}/scores", f"{run}/predictions")
    if kind in _UNIT_FOLDERS:
        return ("/".join(parts[:3]),)
    return (f"{prof}/{kind}",)


def _under(rel: str, paths: tuple[str, ...]) -> bool:
    """True when ``rel`` is one of ``paths`` or lies inside one of them."""
    return any(rel == p or rel.startswith(p + "/") for p in paths)


def _inside(root: Path, rel: str, origin: Path, what: str = "the work folder") -> Path:
    """``root / rel``, refused (a hard error, not damage: a manifest or archive made to write elsewhere) when it
    would land outside ``root``."""
    dest = root / rel
    if not rel or not dest.resolve().is_relative_to(root.resolve()):
        raise ReprolibDataError(origin, f"{rel!r} escapes {what}")
    return dest


def _stage(read: Callable[[], Any], staged: Path, info: dict[str, Any]) -> None:
    """Stream into ``staged`` and check the sha256 against the manifest: :class:`_Damaged` when it differs or the
    source cannot be read. A failed write (a full disk) is no damage of the previous output: it propagates."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(staged, "wb") as out:
        try:
            src = read()
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise _Damaged(f"unreadable ({exc})") from None
        with src:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except (OSError, tarfile.TarError, EOFError) as exc:
                    raise _Damaged(f"unreadable ({exc})") from None
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
    if h.hexdigest() != info["sha256"]:
        raise _Damaged("content differs from the previous session's manifest (cut or corrupt output?)")


class _HashingReader:
    """A file read once, front to back, hashing what passes (tarfile's stream mode reads only forward)."""

    def __init__(self, fh: Any):
        self.fh, self.sha256 = fh, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.fh.read(size)
        self.sha256.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        """The sha256 of the whole file: what the archive reader left unread (end-of-archive padding) read first."""
        while self.read(_CHUNK):
            pass
        return self.sha256.hexdigest()


def _members(tar_path: Path, hashed: list[str]) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """The regular files of an archive, in order, each to be read (or not) before the next; :class:`_Damaged` where it
    cannot be read on (cut, corrupt). The archive is read once, as a stream: its sha256 is appended to ``hashed`` at
    the end (an archive of 19 GB was read twice, to check its hash and then to unpack it)."""
    try:
        with open(tar_path, "rb") as fh:
            reader = _HashingReader(fh)
            with tarfile.open(fileobj=reader, mode="r|", bufsize=_CHUNK) as tf:
                it = iter(tf)
                while True:
                    try:
                        member = next(it)
                    except StopIteration:
                        break
                    except (OSError, tarfile.TarError, EOFError) as exc:
                        raise _Damaged(f"unreadable archive ({exc})") from None
                    if member.isfile():
                        yield tf, member
            hashed.append(reader.hexdigest())
    except (OSError, tarfile.TarError, EOFError) as exc:  # opening it, or closing it
        raise _Damaged(f"unreadable archive ({exc})") from None


def _present(dest: Path, info: dict[str, Any]) -> bool:
    if not dest.is_file() or dest.stat().st_size != info["size"]:
        return False
    if sha256_file(dest) != info["sha256"]:
        return False
    if dest.stat().st_mtime_ns != info["mtime_ns"]:
        os.utime(dest, ns=(info["mtime_ns"], info["mtime_ns"]))
    return True


def _entries_ok(entries: Any) -> bool:
    return isinstance(entries, dict) and all(
        isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("sha256"), str)
        and isinstance(v.get("size"), int) and isinstance(v.get("mtime_ns"), int) for k, v in entries.items())


def _read_manifest(path: Path) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """(written, files, archives) of an output's manifest; :class:`ReprolibDataError` when it is not one (a hard
    error: nothing of such an output can be checked)."""
    try:
        manifest = read_json(path)
        files, archives, written = manifest["files"], manifest["archives"], float(manifest.get("written", 0))
    except (KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError, ReprolibDataError):
        raise ReprolibDataError(path, "not a reprolib output manifest") from None
    if not (_entries_ok(files) and isinstance(archives, dict)
            and all(isinstance(a, str) and _entries_ok(m) for a, m in archives.items())):
        raise ReprolibDataError(path, "not a reprolib output manifest (an entry without sha256, size and mtime_ns)")
    return written, files, archives


def import_previous(kaggle_input: str | os.PathLike | None, work_root: str | os.PathLike) -> dict[str, int]:
    """Bring the newest earlier session's output found under ``kaggle_input`` into ``work_root`` (by the time its
    manifest was written; an older one mounted beside it is left out, with a warning).

    Files are copied (the mount is read-only), checked against the sha256 in that session's manifest,
    and given back their recorded mtimes; archives are unpacked. Files already present with the same
    content are kept. A file listed but missing (Kaggle cuts an output at 20 GB), or whose content differs, or an
    archive cut, corrupt or short of members, drops its unit of work (:func:`import_unit`: a run folder, a processed
    split, ...) and nothing else: nothing of that unit is brought in (its files wait in a staging folder until the
    whole output is checked), what the work folder already held of it is left as it was, one warning line names it
    with the file and the problem, and the pipeline redoes it. A manifest that is not one, or an entry that would
    land outside the work folder, is still an error.

    Returns counts: ``sources``, ``copied``, ``kept``, ``dropped`` (units left out), ``unusable`` (outputs without a
    manifest, :func:`unusable_outputs`, each named in a warning: a chain that starts over says why).
    """
    root = Path(work_root)
    counts = {"sources": 0, "copied": 0, "kept": 0, "dropped": 0, "unusable": 0}
    # as deep as unusable_outputs looks for a manifest: an output it counts as whole must be imported, not passed over
    previous = find_previous(kaggle_input, IMPORT_DEPTH + 2)
    unusable = unusable_outputs(kaggle_input, IMPORT_DEPTH, work_root=root, previous=previous)
    for prev in unusable:
        print(f"[reprolib] WARNING: {prev} is an earlier session's output without {MANIFEST}: that session was killed "
              "before its end (out of memory, the 12-h limit) or could not import its own previous output (see its "
              "log); nothing of it can be checked, so nothing of it is imported", flush=True)
    counts["unusable"] = len(unusable)
    found = []
    for prev in previous:
        if prev.resolve() == root.resolve():
            continue
        written, files, archives = _read_manifest(prev / MANIFEST)
        found.append((written, prev, files, archives))
    # only the newest output: it holds everything done so far, and an older one (a version attached as well) would
    # replace its files with older ones (a finished run's best.ckpt by a half-trained one)
    found.sort(key=lambda f: f[0], reverse=True)
    for _, prev, _, _ in found[1:]:
        print(f"[reprolib] WARNING: {prev} is an older reprolib output than {found[0][1]}: not imported", flush=True)
    staging = root / IMPORT_STAGING
    for _, prev, files, archives in found[:1]:
        counts["sources"] += 1
        shutil.rmtree(staging, ignore_errors=True)  # a killed import's leftovers
        try:
            _import_output(prev, root, staging, files, archives, counts)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return counts


def _import_output(prev: Path, root: Path, staging: Path, files: dict[str, Any], archives: dict[str, Any],
                   counts: dict[str, int]) -> None:
    """:func:`import_previous` for one output: every file checked into ``staging`` (or found already present), then
    the files of every whole unit moved into place; ``counts`` updated."""
    staged: dict[str, dict[str, Any]] = {}  # checked, waiting in staging for the rest of their unit
    kept: list[str] = []
    damage: dict[tuple[str, ...], list[str]] = {}  # unit → "file: problem", the first one found first

    def damaged(units: set[tuple[str, ...]], origin: Path | str, problem: str) -> None:
        for unit in units:
            damage.setdefault(unit, []).append(f"{origin}: {problem}")

    def dropped(rel: str) -> bool:  # a unit already found damaged: its other files need not be read
        return any(_under(rel, unit) for unit in damage)

    def take(rel: str, info: dict[str, Any], read: Callable[[], Any], origin: str) -> None:
        if _present(root / rel, info):
            kept.append(rel)
        elif not dropped(rel):
            try:
                _stage(read, staging / rel, info)
                staged[rel] = info
            except _Damaged as exc:
                damaged({import_unit(rel)}, origin, str(exc))

    for rel, info in sorted(files.items()):
        if rel.startswith(PACKED + "/"):
            continue  # unpacked below, not copied
        _inside(root, rel, prev / MANIFEST)
        src = prev / rel
        if not src.is_file():
            damaged({import_unit(rel)}, src, "listed in the previous session's manifest but missing")
            continue
        take(rel, info, lambda src=src: open(src, "rb"), str(src))
    for arch, members in sorted(archives.items()):
        _inside(prev, arch, prev / MANIFEST, "the previous output")
        tar_path = prev / arch
        # the folder it packs, and (should the manifest say so) wherever its members lie: dropped whole if it is
        units = {import_unit(arch.removeprefix(PACKED + "/").removesuffix(".tar"))} | {import_unit(m) for m in members}
        if not tar_path.is_file():
            damaged(units, tar_path, "listed in the previous session's manifest but missing")
            continue
        unpacked: set[str] = set()
        hashed: list[str] = []
        try:
            for tf, member in _members(tar_path, hashed):
                _inside(root, member.name, tar_path)
                info = members.get(member.name)
                if info is None:
                    raise _Damaged(f"member {member.name!r} is not in the previous session's manifest")
                unpacked.add(member.name)
                take(member.name, info, lambda m=member, tf=tf: tf.extractfile(m), f"{tar_path}:{member.name}")
        except _Damaged as exc:
            damaged(units, tar_path, str(exc))
            continue
        if arch in files and hashed != [files[arch]["sha256"]]:  # cut or corrupt: what was staged of it stays out
            damaged(units, tar_path, "content differs from the previous session's manifest (cut or corrupt output?)")
            continue
        lost = sorted(set(members) - unpacked)
        for unit in sorted({import_unit(m) for m in lost}):
            of_unit = [m for m in lost if import_unit(m) == unit]
            damaged({unit}, tar_path, f"{len(of_unit)} file(s) of the manifest are not in it, e.g. {of_unit[0]}")
    # a unit inside another one dropped (a run's scoring inside its run) is named with it, not apart
    units = [u for u in damage if not any(o != u and all(_under(p, o) for p in u) for o in damage)]
    for unit in sorted(units):
        problems = [p for u, ps in damage.items() if all(_under(q, unit) for q in u) for p in ps]
        more = f" (and {len(problems) - 1} more damaged file(s) of it)" if len(problems) > 1 else ""
        print(f"[reprolib] WARNING: previous output: {problems[0]}{more}; not imported: {' and '.join(unit)} "
              "(this session redoes it)", flush=True)
    counts["dropped"] += len(units)
    for rel, info in staged.items():
        if dropped(rel):
            continue
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, dest)
        os.utime(dest, ns=(info["mtime_ns"], info["mtime_ns"]))
        counts["copied"] += 1
    counts["kept"] += sum(not dropped(rel) for rel in kept)
