"""A chain of Kaggle-like sessions, simulated: each stops at its budget, the next continues from its output.

The budget is a step budget (:class:`reprolib.experiments.session.Session`), so where each session stops
is deterministic; the previous output is "mounted" read-only-style under a ``kaggle_input`` folder, in
either of Kaggle's layouts, with fresh mtimes (as a real mount has), and the working directory starts empty.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reprolib.experiments import run_table
from reprolib.experiments.results import RUNTIME_KEYS, run_hash
from reprolib.experiments.session import (
    IMPORT_STAGING,
    MANIFEST,
    Session,
    SessionOver,
    export_outputs,
    import_previous,
    import_unit,
    parse_max_time,
    read_log,
    sha256_file,
    unusable_outputs,
)
from reprolib.io import ReprolibDataError, read_json, write_json

PROVENANCE = ["commit"]  # when, not what (the chain's and the reference's run folders are the same paths)


#: the chain's counts (runs, steps, sessions) are those of these variants; full@report_selection (a fourth
#: training run) is covered by tests/test_experiments.py
CHAIN_VARIANTS = ["full", "no_ensemble", "no_uncertainty", "no_generator_no_uncertainty"]


def _table(work: Path, **kw) -> pd.DataFrame:
    return run_table("table4", profile="tiny", work_dir=work / "data", output_dir=work / "results", device="cpu",
                     wandb_mode="disabled", **{"variants": CHAIN_VARIANTS, **kw})


def _mount(working: Path, kaggle_input: Path, layout: int) -> None:
    """What Kaggle does with a version's output: a read-only copy with new mtimes, in one of two layouts."""
    if kaggle_input.exists():
        for p in kaggle_input.rglob("*"):
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(kaggle_input)
    dest = kaggle_input / ("notebooks/alice/reprolib-table4" if layout % 2 else "reprolib-table4")
    shutil.copytree(working, dest)
    for p in sorted(dest.rglob("*"), reverse=True):
        os.utime(p, (1.7e9, 1.7e9))
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=PROVENANCE)
    return df.sort_values(["variant", "dataset", "metric", "seed"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("chain")
    working, kaggle_input = tmp / "working", tmp / "input"
    sessions = []
    for i in range(8):
        session = Session(step_budget=5)
        df = _table(working, kaggle_input=kaggle_input, session=session)
        status = json.loads((working / "results" / "status.json").read_text())
        csv = pd.read_csv(working / "results" / "table4.csv")
        run_dirs = sorted((working / "data" / "tiny" / "runs").glob("*"))
        sessions.append({"status": status, "csv": csv, "df": df, "steps": session.steps,
                         "scores": {d.name: sorted(p.name for p in (d / "scores").glob("*.npz")) for d in run_dirs},
                         "done": {d.name: (d / "done.json").is_file() for d in run_dirs}})
        _mount(working, kaggle_input, i)
        if status["complete"]:
            break
        shutil.rmtree(working)  # a new session starts with an empty /kaggle/working
    log = read_log(working / "data")
    # the uninterrupted reference, at the same path (as /kaggle/working always is), from the same world,
    # backends and processed splits (content-checked caches) but training every run in one go
    shutil.rmtree(working)
    import_previous(kaggle_input, working / "data")
    shutil.rmtree(working / "data" / "tiny" / "runs")
    _table(working)
    reference = pd.read_csv(working / "results" / "table4.csv")
    return {"reference": reference, "sessions": sessions, "log": log, "working": working,
            "last_output": next(p.parent for p in kaggle_input.rglob(MANIFEST)).parent,
            "reference_log": read_log(working / "data")[len(log):]}


def test_first_session_scores_only_finished_runs(chain) -> None:
    first = chain["sessions"][0]
    assert first["steps"] == 5  # the budget: run 1 (4 steps) finished, run 2 stopped after its first step
    assert first["status"]["runs_finished"] == 2 and first["status"]["runs_missing"] == [
        "no_uncertainty seed 0", "no_generator_no_uncertainty seed 0"]
    assert first["df"].attrs["runs_missing"] == first["status"]["runs_missing"]
    assert set(first["csv"]["variant"].str.split("@").str[0]) == {"full", "no_ensemble"}
    assert sorted(first["done"].values()) == [False, True]  # one finished run, one stopped mid-training
    for run, done in first["done"].items():
        assert bool(first["scores"][run]) == done  # the half-trained model was not scored (nor cached)


def test_chain_finishes_with_the_uninterrupted_numbers(chain) -> None:
    sessions = chain["sessions"]
    assert len(sessions) == 3  # 3 runs × 4 steps at 5 steps per session
    assert [s["status"]["complete"] for s in sessions] == [False, False, True]
    assert [s["status"]["runs_finished"] for s in sessions] == [2, 3, 4]
    assert [s["steps"] for s in sessions] == [5, 5, 2]
    # the run stopped in session 1 was scored once, after it finished, under its final weights' key
    stopped = next(r for r, d in sessions[0]["done"].items() if not d)
    assert sessions[1]["done"][stopped] and len(sessions[1]["scores"][stopped]) == 2
    pd.testing.assert_frame_equal(_comparable(sessions[-1]["csv"]), _comparable(chain["reference"]))
    # the reference really trained every run in one go (and reused only the data caches)
    ref_train = [r for r in chain["reference_log"] if r["stage"].startswith("train ")]
    assert [r["steps"] for r in ref_train] == [4, 4, 4] and all(r["finished"] for r in ref_train)
    assert not any(r["stage"].startswith(("world", "precompute", "backends")) for r in chain["reference_log"])


def test_no_stage_ran_twice(chain) -> None:
    log = chain["log"]
    assert len({r["session"] for r in log}) == 3
    others = Counter(r["stage"] for r in log if not r["stage"].startswith(("train ", "import ")))
    assert others and all(n == 1 for n in others.values()), others
    assert any(s.startswith("world") for s in others) and sum(s.startswith("score ") for s in others) == 6
    assert sum(s.startswith("precompute ") for s in others) == 4  # train, val (one split, both label sets), FS L&F, FS Static
    steps: dict[str, int] = defaultdict(int)
    for r in log:
        if r["stage"].startswith("train "):
            steps[r["run"]] += r["steps"]
    assert len(steps) == 3 and set(steps.values()) == {4}  # every step trained once, across sessions
    imports = [r for r in log if r["stage"].startswith("import ")]
    assert len(imports) == 2 and all(r["copied"] > 0 for r in imports)


def test_output_is_packed_with_a_manifest(chain) -> None:
    working = chain["last_output"]
    manifest = json.loads((working / "data" / MANIFEST).read_text())
    assert any(a.startswith("packed/tiny/processed/") for a in manifest["archives"])
    assert sum(a.endswith("/predictions.tar") for a in manifest["archives"]) == 3  # one per finished run
    processed = working / "data" / "tiny" / "processed"
    assert not any(p.is_file() for p in processed.rglob("*"))  # one tar per split instead of many files
    n_files = sum(1 for p in (working / "data").rglob("*") if p.is_file())
    n_packed = sum(len(m) for m in manifest["archives"].values())
    assert n_packed > n_files  # packing really reduced the file count


@pytest.fixture(scope="module")
def clean_work(chain, tmp_path_factory) -> Path:
    """The chain's last output imported whole."""
    work = tmp_path_factory.mktemp("clean") / "data"
    assert import_previous(chain["last_output"], work)["dropped"] == 0
    return work


@pytest.fixture(scope="module")
def clean_import(clean_work) -> dict[str, tuple[str, int]]:
    """(sha256, mtime) of every file of the whole import: what a damaged import is compared with."""
    return _tree(clean_work)


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(root).as_posix(): (sha256_file(p), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run_of(chain, variant: str) -> str:
    """The run folder the chain trained for ``variant`` (seed 0)."""
    [run] = {r["run"] for r in chain["log"] if r["stage"] == f"train {variant} seed 0"}
    return run


def _import_damaged(chain, clean: dict, tmp_path: Path, capsys, damage) -> tuple[Path, tuple[str, ...]]:
    """Import the chain's last output after ``damage(data, manifest)`` (which returns the path of the file it
    damaged): the import completes, drops that file's unit (named in one warning) and keeps everything else bit for
    bit. Returns (the new session's working folder, the unit dropped)."""
    out = tmp_path / "input" / "reprolib-table4"
    shutil.copytree(chain["last_output"], out)
    for p in [out, *out.rglob("*")]:  # the mount is read-only; this copy is damaged on purpose
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    unit = import_unit(damage(out / "data", read_json(out / "data" / MANIFEST)))
    gone = {rel for rel in clean if any(rel == p or rel.startswith(p + "/") for p in unit)}
    assert gone  # the unit held files in the whole output
    work = tmp_path / "working"
    capsys.readouterr()
    counts = import_previous(tmp_path / "input", work / "data")
    assert counts["sources"] == 1 and counts["dropped"] == 1
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and f"not imported: {' and '.join(unit)} (this session redoes it)" in warnings[0]
    assert _tree(work / "data") == {rel: v for rel, v in clean.items() if rel not in gone}
    return work, unit


def _rerun(chain, work: Path, variant: str) -> list[dict]:
    """The next pipeline step: the table for ``variant`` on the imported folder. Its rows are the uninterrupted
    reference's; returns the stages it logged."""
    before = len(read_log(work / "data"))
    _table(work, variants=[variant])
    ref = chain["reference"]
    ref = ref[ref["variant"].str.split("@").str[0] == variant]
    got = pd.read_csv(work / "results" / "table4.csv")
    pd.testing.assert_frame_equal(_comparable(got.drop(columns=["checkpoint"])),  # the folder moved: its path too
                                  _comparable(ref.drop(columns=["checkpoint"])))
    return read_log(work / "data")[before:]


def test_a_run_whose_last_ckpt_is_damaged_is_dropped_whole_and_trained_again(chain, clean_import, tmp_path: Path,
                                                                             capsys) -> None:
    """Any damaged file of the previous output stopped the session (and the chain started over from nothing). A
    finished run whose last.ckpt is damaged is now left out whole, its done.json and scores too (a done.json beside
    other weights would pass it off as finished), and trained again from scratch; everything else is imported."""
    run = _run_of(chain, "full")

    def damage(data: Path, manifest: dict) -> str:
        ckpt = data / "tiny" / "runs" / run / "checkpoints" / "last.ckpt"
        content = bytearray(ckpt.read_bytes())
        content[len(content) // 2] ^= 1  # one bit, the size unchanged
        ckpt.write_bytes(bytes(content))
        return ckpt.relative_to(data).as_posix()

    work, unit = _import_damaged(chain, clean_import, tmp_path, capsys, damage)
    assert unit == (f"tiny/runs/{run}",)
    log = _rerun(chain, work, "full")
    assert [(r["stage"], r["run"], r["steps"], r["finished"]) for r in log if r["stage"].startswith("train ")] == [
        ("train full seed 0", run, 4, True)]  # from its first step
    assert sum(r["stage"].startswith("score fs_") and run in r["stage"] for r in log) == 2


def test_a_missing_score_cache_drops_the_runs_scoring_which_is_done_again(chain, clean_import, tmp_path: Path,
                                                                         capsys) -> None:
    """A file listed in the manifest but missing (Kaggle keeps 20 GB of an output): a score cache. The run's scoring
    (its caches and prediction PNGs) is left out and done again; its training is kept."""
    run = _run_of(chain, "no_uncertainty")

    def damage(data: Path, manifest: dict) -> str:
        [cache] = (data / "tiny" / "runs" / run / "scores").glob("fs_static-*.npz")
        cache.unlink()
        return cache.relative_to(data).as_posix()

    work, unit = _import_damaged(chain, clean_import, tmp_path, capsys, damage)
    assert unit == (f"tiny/runs/{run}/scores", f"tiny/runs/{run}/predictions")
    assert (work / "data" / "tiny" / "runs" / run / "done.json").is_file()
    log = _rerun(chain, work, "no_uncertainty")
    assert not [r for r in log if r["stage"].startswith("train ")]
    assert sum(r["stage"].startswith("score fs_") and run in r["stage"] for r in log) == 2
    assert {rel for rel in _tree(work / "data") if rel.startswith(unit)} == {
        rel for rel in clean_import if rel.startswith(unit)}  # its caches and predictions are back


def test_a_cut_archive_drops_its_processed_split_which_is_computed_again(chain, clean_import, tmp_path: Path,
                                                                        capsys) -> None:
    """An archive cut short (or corrupt): the processed split it packs is left out and computed again, to the same
    files; the runs scored on it keep their caches."""
    def damage(data: Path, manifest: dict) -> str:
        [tar] = (data / "packed" / "tiny" / "processed").glob("static-*.tar")
        tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
        return tar.relative_to(data / "packed").as_posix().removesuffix(".tar")

    work, unit = _import_damaged(chain, clean_import, tmp_path, capsys, damage)
    [split] = unit
    assert split.startswith("tiny/processed/static-")
    log = _rerun(chain, work, "full")
    assert [r["stage"] for r in log if r["stage"].startswith(("precompute", "train", "score"))] == [
        "precompute fs_static embedded"]
    again = _tree(work / "data")
    images = {rel for rel in clean_import if rel.startswith(split + "/") and rel.endswith(".png")}
    assert images and all(again[rel][0] == clean_import[rel][0] for rel in images)  # the same content


def test_an_archive_short_of_a_member_drops_its_folder_which_is_made_again(chain, clean_work, clean_import,
                                                                          tmp_path: Path, capsys) -> None:
    """An archive whose own hash matches (as an older manifest's, without it, would) but which lacks a member the
    manifest lists: the folder it packs (here the embedded world) is left out and generated again."""
    import tarfile

    def damage(data: Path, manifest: dict) -> str:
        tar = data / "packed" / "tiny" / "world.tar"
        with tarfile.open(tar) as tf:
            members = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]
        lost = next(m.name for m, _ in members if m.name.endswith("_leftImg8bit.png"))
        with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
            for m, content in members:
                if m.name != lost:
                    tf.addfile(m, io.BytesIO(content) if content is not None else None)
        rel = tar.relative_to(data).as_posix()
        manifest["files"][rel] = {"size": tar.stat().st_size, "mtime_ns": tar.stat().st_mtime_ns,
                                  "sha256": sha256_file(tar)}
        write_json(data / MANIFEST, manifest)
        return lost

    work, unit = _import_damaged(chain, clean_import, tmp_path, capsys, damage)
    assert unit == ("tiny/world",)
    log = _rerun(chain, work, "full")
    assert [r["stage"] for r in log if r["stage"].startswith(("world", "train"))] == ["world"]
    world = read_json(work / "data" / "tiny" / "world" / "world.json")
    assert world["fingerprint"] == read_json(clean_work / "tiny" / "world" / "world.json")["fingerprint"]


def test_export_leaves_killed_writes_out(tmp_path: Path) -> None:
    # temp files of atomic writes a kill interrupted: a packed folder's would travel in its tar, a run's beside it
    root = tmp_path / "data"
    (root / "tiny" / "processed" / "s").mkdir(parents=True)
    (root / "tiny" / "processed" / "s" / "a.png").write_bytes(b"png")
    (root / "tiny" / "processed" / "s" / ".b.png.0123abcd.tmp").write_bytes(b"pn")
    (root / "tiny" / "runs" / "r" / "checkpoints").mkdir(parents=True)
    (root / "tiny" / "runs" / "r" / "checkpoints" / ".last.ckpt.89abcdef.tmp").write_bytes(b"half a checkpoint")
    manifest = export_outputs(root)
    assert [p.name for p in root.rglob("*.tmp")] == []
    assert list(manifest["archives"]["packed/tiny/processed/s.tar"]) == ["tiny/processed/s/a.png"]
    assert not [f for f in manifest["files"] if f.endswith(".tmp")]
    work = tmp_path / "work"
    import_previous(tmp_path, work)
    assert sorted(p.name for p in work.rglob("*") if p.is_file()) == ["a.png"]


def test_import_checks_content(tmp_path: Path) -> None:
    prev = tmp_path / "input" / "notebooks" / "u" / "k" / "data"
    (prev / "tiny" / "runs" / "r").mkdir(parents=True)
    (prev / "tiny" / "runs" / "r" / "last.ckpt").write_bytes(b"weights")
    (prev / "tiny" / "processed" / "s").mkdir(parents=True)
    (prev / "tiny" / "processed" / "s" / "a.png").write_bytes(b"png")
    os.utime(prev / "tiny" / "processed" / "s" / "a.png", ns=(123_456_789_000, 123_456_789_000))
    export_outputs(prev)
    work = tmp_path / "work"
    counts = import_previous(tmp_path / "input", work)
    assert counts == {"sources": 1, "copied": 2, "kept": 0, "dropped": 0, "unusable": 0}
    assert (work / "tiny" / "runs" / "r" / "last.ckpt").read_bytes() == b"weights"
    assert (work / "tiny" / "processed" / "s" / "a.png").stat().st_mtime_ns == 123_456_789_000  # caches key on it
    assert import_previous(tmp_path / "input", work)["kept"] == 2  # a second import copies nothing
    (prev / "tiny" / "runs" / "r" / "last.ckpt").write_bytes(b"WEIGHTS")  # corrupted after the manifest
    counts = import_previous(tmp_path / "input", tmp_path / "work2")  # that run is left out, the rest comes in
    assert counts == {"sources": 1, "copied": 1, "kept": 0, "dropped": 1, "unusable": 0}
    assert not (tmp_path / "work2" / "tiny" / "runs").exists()
    assert (tmp_path / "work2" / "tiny" / "processed" / "s" / "a.png").read_bytes() == b"png"


def test_an_earlier_output_without_a_manifest_is_named_not_imported(tmp_path: Path, capsys) -> None:
    """A session killed before its end (or whose import failed) leaves an output without a manifest: the next session
    cannot check it, imports nothing of it, and says so instead of starting the table over in silence."""
    killed = tmp_path / "input" / "notebooks" / "u" / "reprolib-table4"
    (killed / "results" / "table4").mkdir(parents=True)
    (killed / "results" / "table4" / "status.json").write_text('{"table": "table4", "in_progress": true}')
    (killed / "data" / "tiny" / "runs" / "r").mkdir(parents=True)
    (killed / "data" / "tiny" / "runs" / "r" / "last.ckpt").write_bytes(b"weights")
    counts = import_previous(tmp_path / "input", tmp_path / "work")
    assert counts == {"sources": 0, "copied": 0, "kept": 0, "dropped": 0, "unusable": 1}
    assert f"{killed} is an earlier session's output without {MANIFEST}" in capsys.readouterr().out
    assert not (tmp_path / "work" / "tiny").exists()
    # a whole output beside it (its manifest under data/) is imported, and not named
    good = tmp_path / "input" / "other"
    (good / "results" / "table4").mkdir(parents=True)
    (good / "results" / "table4" / "status.json").write_text('{"table": "table4", "complete": true}')
    (good / "data" / "tiny").mkdir(parents=True)
    (good / "data" / "tiny" / "x.json").write_text("{}")
    export_outputs(good / "data")
    assert unusable_outputs(tmp_path / "input") == [killed]
    assert import_previous(tmp_path / "input", tmp_path / "work")["copied"] == 1


def test_an_archive_is_read_once_at_import(tmp_path: Path, monkeypatch) -> None:
    """Each archive of the previous output was read twice: once for its sha256, then again to unpack it (a full
    profile's output is up to 19 GB, read from Kaggle's input mount at the start of every session). It is read once
    now, hashed as it is unpacked; a damaged archive is still dropped whole (test above and below)."""
    import tarfile

    import reprolib.experiments.session as S

    prev = tmp_path / "input" / "k" / "data"
    split = prev / "tiny" / "processed" / "s"
    split.mkdir(parents=True)
    for i in range(40):
        (split / f"{i}.png").write_bytes(os.urandom(50_000))
    (split / "done.json").write_text("{}")
    last = (split / "39.png").read_bytes()
    export_outputs(prev)
    tar_path = prev / "packed" / "tiny" / "processed" / "s.tar"
    read: Counter[str] = Counter()

    class Counted(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            data = super().read(size)
            read[os.path.basename(self.name)] += len(data)
            return data

        def readinto(self, b) -> int:  # noqa: ANN001
            n = super().readinto(b)
            read[os.path.basename(self.name)] += n or 0
            return n

    def counted_open(path, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        return Counted(str(path), mode.replace("b", ""))

    monkeypatch.setattr(S, "open", counted_open, raising=False)  # the module's own reads
    monkeypatch.setattr(tarfile, "bltn_open", counted_open)  # and tarfile's, when given a path
    counts = import_previous(tmp_path / "input", tmp_path / "work")
    assert counts["copied"] == 41 and counts["dropped"] == 0
    assert read["s.tar"] == tar_path.stat().st_size  # once, whole (the old code: twice)
    assert (tmp_path / "work" / "tiny" / "processed" / "s" / "39.png").read_bytes() == last


def test_a_cut_archive_drops_its_folder_only_and_a_failed_import_exports_nothing(tmp_path: Path, monkeypatch,
                                                                                 capsys) -> None:
    """A cut or short archive stopped the whole import (and so the session: the next one started over from nothing).
    Only the folder it packs is left out now, named in a warning; what is not a reprolib output, or would be written
    outside the work folder, is still refused whole."""
    import tarfile

    prev = tmp_path / "input" / "k" / "data"
    split = prev / "tiny" / "processed" / "s"
    split.mkdir(parents=True)
    for i in range(3):
        (split / f"{i}.png").write_bytes(b"png%d" % i)
    (split / "done.json").write_text("{}")
    (prev / "tiny" / "processed" / "t").mkdir(parents=True)
    (prev / "tiny" / "processed" / "t" / "done.json").write_text('{"t": 1}')
    (prev / "tiny" / "runs" / "r").mkdir(parents=True)
    (prev / "tiny" / "runs" / "r" / "done.json").write_text("{}")
    export_outputs(prev)
    export_outputs(prev)  # a second export of one session keeps the first one's archive (its folder is gone)
    manifest = json.loads((prev / MANIFEST).read_text())
    tar_path = prev / "packed" / "tiny" / "processed" / "s.tar"
    assert sorted(manifest["archives"]) == ["packed/tiny/processed/s.tar", "packed/tiny/processed/t.tar"]
    with tarfile.open(tar_path) as tf:  # the same archive, cut after its first member
        first = tf.getmembers()[0]
        data = tf.extractfile(first).read()
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(first, io.BytesIO(data))
    whole = ["tiny/processed/t/done.json", "tiny/runs/r/done.json"]

    def imported(work: Path) -> list[str]:
        return sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())

    capsys.readouterr()
    counts = import_previous(tmp_path / "input", tmp_path / "work")
    assert counts == {"sources": 1, "copied": 2, "kept": 0, "dropped": 1, "unusable": 0}
    assert imported(tmp_path / "work") == whole  # nothing of s: no done.json without its images
    [line] = [x for x in capsys.readouterr().out.splitlines() if "WARNING" in x]
    assert f"{tar_path}: content differs from the previous session's manifest" in line
    assert line.endswith("not imported: tiny/processed/s (this session redoes it)")
    manifest["files"].pop("packed/tiny/processed/s.tar")  # without the archive's own hash: its lost members
    write_json(prev / MANIFEST, manifest)
    counts = import_previous(tmp_path / "input", tmp_path / "work2")
    assert counts["dropped"] == 1 and imported(tmp_path / "work2") == whole
    assert f"{tar_path}: 3 file(s) of the manifest are not in it, e.g. tiny/processed/s/1.png" in capsys.readouterr().out
    # the session's summary line counts it too
    from reprolib.experiments.pipeline import Context
    from reprolib.experiments.runner import start_session

    start_session(Context(profile=None, work_dir=tmp_path / "work6" / "tiny", kaggle_input=str(tmp_path / "input")))
    assert ("1 found, 2 files brought in, 0 already here; 1 damaged or missing part(s) not imported (named in the "
            "warnings above): this session redoes them") in capsys.readouterr().out
    tar_path.write_bytes(b"\x00garbage" * 100)  # not a tar at all
    assert import_previous(tmp_path / "input", tmp_path / "work3")["dropped"] == 1
    assert imported(tmp_path / "work3") == whole and not (tmp_path / "work3" / IMPORT_STAGING).exists()
    # still refused whole: a member that would land outside the work folder, a manifest that is not one
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
        evil = tarfile.TarInfo("tiny/../../evil.txt")
        evil.size = 4
        tf.addfile(evil, io.BytesIO(b"evil"))
    with pytest.raises(ReprolibDataError, match=r"s.tar: 'tiny/../../evil.txt' escapes the work folder"):
        import_previous(tmp_path / "input", tmp_path / "work4" / "data")
    assert not (tmp_path / "work4" / "evil.txt").exists() and not (tmp_path / "work4" / "data" / "tiny").exists()
    write_json(prev / MANIFEST, {**manifest, "files": {"../evil.txt": manifest["files"]["tiny/runs/r/done.json"]}})
    with pytest.raises(ReprolibDataError, match=r"'../evil.txt' escapes the work folder"):
        import_previous(tmp_path / "input", tmp_path / "work5")
    write_json(prev / MANIFEST, {**manifest, "files": {"tiny/runs/r/done.json": {"sha256": "x"}}})
    with pytest.raises(ReprolibDataError, match="not a reprolib output manifest"):
        import_previous(tmp_path / "input", tmp_path / "work5")
    # run_table: a failed import leaves no manifest behind (it would pass the partial output off as whole)
    import reprolib.experiments.runner as R

    exported = []
    monkeypatch.setattr(R, "export_outputs", lambda root: exported.append(root))
    with pytest.raises(ReprolibDataError):
        R.run_table("table4", profile="tiny", work_dir=tmp_path / "w", output_dir=tmp_path / "out", device="cpu",
                    wandb_mode="disabled", kaggle_input=tmp_path / "input")
    assert exported == []


def test_import_units() -> None:
    """What a damaged file takes with it: the smallest piece of work the pipeline redoes whole."""
    run = "tiny/runs/embedded-2799a40291a0-seed0"
    assert import_unit(f"{run}/checkpoints/last.ckpt") == import_unit(f"{run}/done.json") == (run,)
    assert import_unit(f"{run}/csv/session-0/metrics.csv") == (run,)
    scoring = (f"{run}/scores", f"{run}/predictions")
    assert import_unit(f"{run}/scores/fs_static-x-best-0123.npz") == import_unit(f"{run}/predictions") == scoring
    assert import_unit(f"{run}/predictions/fs_static-timing.json") == scoring
    assert import_unit("tiny/processed/static-x/entropy/0000.png") == import_unit("tiny/processed/static-x") == (
        "tiny/processed/static-x",)
    assert import_unit("tiny/generated/embedded-val/generator.json") == ("tiny/generated/embedded-val",)
    assert import_unit("tiny/backends/strong/lightning/segmentation/last.ckpt") == ("tiny/backends/strong",)
    assert import_unit("tiny/world/cityscapes/leftImg8bit/train/a/b.png") == import_unit("tiny/world") == (
        "tiny/world",)
    assert import_unit("session-log.json") == ("session-log.json",) and import_unit("tiny/x.json") == ("tiny/x.json",)
    assert import_unit("tiny/other/a/b.json") == ("tiny/other",)  # a folder the pipeline does not name: all of it


def _first_session_out_of_time(tmp_path: Path, monkeypatch, owner: object, name: str) -> tuple[Path, Path, dict]:
    """Table 4's full model in a session of 1000 s with a 900 s margin on a fake clock that each call of
    ``owner.name`` advances by 100 s: it runs out at the first call. Returns (work, out, run_table's kwargs)."""
    now, real = [0.0], getattr(owner, name)

    def hundred_seconds(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        now[0] += 100.0
        return real(*a, **kw)

    monkeypatch.setattr(owner, name, hundred_seconds)
    work, out = tmp_path / "work", tmp_path / "out"
    kw = dict(profile="tiny", work_dir=work, output_dir=out, device="cpu", wandb_mode="disabled", variants=["full"])
    run_table("table4", session=Session(max_time_s=1000, margin_s=900, clock=lambda: now[0]), **kw)
    return work, out, kw


def test_a_long_precompute_stops_at_the_deadline_and_the_next_session_resumes_it(tmp_path: Path, monkeypatch) -> None:
    """Kaggle kills a session at 12 h and saves its output only when the notebook ends. Precompute checked the
    budget only before it started, so one longer than what was left (Cityscapes' train split on a T4 can take most
    of a session) ran past the deadline and lost the whole session, and the next one started it again. It now
    stops between batches once the budget is spent; the next session computes only the rest."""
    import reprolib.precompute.compute as C

    # after the train split's first batch (4 of its 8 images) nothing more may start
    work, out, kw = _first_session_out_of_time(tmp_path, monkeypatch, C, "_process_batch")
    status = json.loads((out / "status.json").read_text())
    assert status["stopped_before"] == "precompute train embedded" and status["runs_missing"] == ["full seed 0"]
    [split] = (work / "tiny" / "processed").glob("generated-*")
    assert not (split / "done.json").exists() and len(list((split / "original").glob("*.png"))) == 4
    assert not any(r["stage"].startswith("precompute train") for r in read_log(work))  # not logged as done
    run_table("table4", **kw)  # the next session
    assert json.loads((split / "done.json").read_text())["n_computed"] == 4  # only the half left
    assert json.loads((out / "status.json").read_text())["complete"]


def test_backend_training_stops_at_the_deadline_and_the_next_session_resumes_it(tmp_path: Path, monkeypatch) -> None:
    """The embedded backends' training (the first minutes of every demo chain) checked the budget only before it
    started: a session whose deadline fell inside it ran past it. It now stops between steps; nothing is saved as a
    finished network, and the next session resumes from last.ckpt to the weights of an uninterrupted training."""
    import torch

    from reprolib.experiments.profiles import get_pipeline_profile
    from reprolib.training.embedded_backends import SegmentationTask, train_embedded_backends

    # the segmentation net stops after its first step (of 10)
    work, out, kw = _first_session_out_of_time(tmp_path, monkeypatch, SegmentationTask, "training_step")
    status = json.loads((out / "status.json").read_text())
    assert status["stopped_before"] == "backends embedded" and status["runs_missing"] == ["full seed 0"]
    strong = work / "tiny" / "backends" / "strong"
    assert not (strong / "segmentation.pt").exists() and not (strong / "done.json").exists()
    assert torch.load(strong / "lightning" / "segmentation" / "last.ckpt", weights_only=True)["global_step"] == 1
    assert not any(r["stage"].startswith("backends") for r in read_log(work))  # not logged as done
    run_table("table4", **kw)  # the next session
    assert json.loads((out / "status.json").read_text())["complete"]
    again = train_embedded_backends(work / "tiny" / "world", tmp_path / "uninterrupted", strength="strong",
                                    progress=False, **get_pipeline_profile("tiny").backend_training_for("strong"))
    for kind in ("segmentation", "resynthesis"):
        a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (strong / f"{kind}.pt", again[kind]))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kind


def test_world_generation_stops_at_the_deadline_and_the_next_session_finishes_it(tmp_path: Path, monkeypatch) -> None:
    """The embedded world (the first stage of a chain on the embedded default) checked the budget only before it
    started. It now stops between images; the next session writes only the missing ones, to the same world."""
    import reprolib.world.writer as W
    from reprolib.experiments.profiles import get_pipeline_profile

    work, out, kw = _first_session_out_of_time(tmp_path, monkeypatch, W, "_write_cityscapes")
    status = json.loads((out / "status.json").read_text())
    assert status["stopped_before"] == "world" and status["runs_missing"] == ["full seed 0"]
    world = work / "tiny" / "world"
    assert not (world / "world.json").exists()  # stopped after its first image
    [first] = world.rglob("*_leftImg8bit.png")
    written = first.stat().st_mtime_ns
    assert not any(r["stage"] == "world" for r in read_log(work))  # not logged as done
    run_table("table4", **kw)  # the next session
    assert json.loads((out / "status.json").read_text())["complete"]
    assert first.stat().st_mtime_ns == written  # only the missing images were written
    again = W.generate_world(tmp_path / "uninterrupted", seed=0, progress=False, **get_pipeline_profile("tiny").world)
    assert read_json(world / "world.json")["fingerprint"] == read_json(again / "world.json")["fingerprint"]


def test_run_identity_ignores_runtime_settings() -> None:
    cfg = {"lr": 1e-4, "seed": 0, "model": {"width": 0.0625}, "train_split": "/a/data/tiny/processed/gen-x-1234",
           "val_split": "/a/data/tiny/processed/gen-y-5678", "max_time": None, "device": "cpu", "devices": 1,
           "wandb_mode": "offline", "kaggle_input": "/kaggle/input", "checkpoint_every": 50}
    moved = {**cfg, "train_split": "/kaggle/working/data/tiny/processed/gen-x-1234",
             "val_split": "/kaggle/working/data/tiny/processed/gen-y-5678"}
    runtime = {**cfg, "max_time": "00:08:30:00", "device": "cuda", "wandb_mode": "online",
               "resume_from": "/x/last.ckpt", "kaggle_input": None, "checkpoint_every": 10, "num_workers": 4}
    assert set(runtime) - set(cfg) <= RUNTIME_KEYS
    assert run_hash(cfg) == run_hash(moved) == run_hash(runtime)
    # devices set the global batch (batch_size images per device and step): another run; one is the default
    no_devices = {k: v for k, v in cfg.items() if k != "devices"}
    assert "devices" not in RUNTIME_KEYS and run_hash({**cfg, "devices": 2}) != run_hash(cfg) == run_hash(no_devices)
    assert run_hash({**cfg, "lr": 1e-3}) != run_hash(cfg)
    assert run_hash({**cfg, "train_split": "/a/data/tiny/processed/gen-x-9999"}) != run_hash(cfg)


def test_max_time_budget() -> None:
    assert parse_max_time("00:08:30:00") == 8.5 * 3600 and parse_max_time("01:00") == 60 and parse_max_time(90) == 90
    assert parse_max_time(None) is None
    with pytest.raises(ValueError, match="DD:HH:MM:SS"):
        parse_max_time("eight hours")
    now = [0.0]
    s = Session(max_time_s=1000, margin_s=100, clock=lambda: now[0])
    assert s.training_seconds() == 900 and not s.expired()
    now[0] = 950  # inside the margin: nothing new starts
    with pytest.raises(SessionOver, match="score"):
        s.check("score x")
    assert s.stopped_at == "score x"


def test_profile_training_configs_resume_across_budget_and_device() -> None:
    """What the runner hashes: the profile's training config, built as train_variant builds it."""
    from reprolib.experiments.profiles import get_pipeline_profile

    prof = get_pipeline_profile("tiny")

    def cfg(**kw):
        base = dict(model={}, train={}, ensemble="grid", seed=0, train_split="/w/data/tiny/processed/gen-a-1",
                    val_split="/w/data/tiny/processed/gen-b-2", label_dir="labels", wandb_mode="offline",
                    max_time=None, max_epochs=None, device="cpu")
        return prof.training_config(**{**base, **kw})

    assert run_hash(cfg()) == run_hash(cfg(max_time="00:11:00:00", device="cuda", wandb_mode="online"))
    assert run_hash(cfg()) != run_hash(cfg(train={"lr": 1e-3}))
    assert run_hash(cfg()) != run_hash(cfg(seed=1))


def test_no_stage_starts_inside_the_margin(tmp_path: Path) -> None:
    """A budget already spent (injected clock): nothing is built, the notebook still ends cleanly."""
    ticks = iter([0.0] + [95.0] * 100)
    session = Session(max_time_s=100, margin_s=10, clock=lambda: next(ticks))
    df = _table(tmp_path, session=session)
    status = json.loads((tmp_path / "results" / "status.json").read_text())
    assert df.empty and status["runs_finished"] == 0 and len(status["runs_missing"]) == 4
    assert status["stopped_before"] == "world" and not (tmp_path / "data" / "tiny" / "world").exists()


def test_stage_progress_says_when_there_was_nothing_to_do(tmp_path: Path, capsys) -> None:
    from reprolib.experiments.pipeline import Context

    ctx = Context(profile=None, work_dir=tmp_path / "work", session_id="s0")
    with ctx.stage("precompute val embedded") as st:
        st.ran = False  # found done
    with ctx.stage("train full seed 0"):
        pass
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("[reprolib] precompute val embedded: ") and out[1].endswith(" s (nothing to do)")
    assert out[3].startswith("[reprolib] train full seed 0: ") and out[3].endswith(" s")
    assert set(ctx.timings) == {"precompute val embedded", "train full seed 0"}


def test_an_older_output_mounted_beside_the_newest_is_not_imported(tmp_path: Path, capsys) -> None:
    """Two previous outputs under /kaggle/input (the user attached an older version of the kernel too): the older
    one's files, imported after the newer one's, replaced them, so a finished run (its done.json from the newer
    output) kept the older output's half-trained best.ckpt and was scored with it. Only the newest output counts."""
    def output(root: Path, tag: bytes, done: bool, written: float) -> None:
        run = root / "tiny" / "runs" / "r"
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.ckpt").write_bytes(tag)
        if done:
            (run / "done.json").write_text("{}")
        export_outputs(root)
        manifest = read_json(root / MANIFEST)
        write_json(root / MANIFEST, {**manifest, "written": written})

    kin = tmp_path / "input" / "notebooks" / "alice"
    output(kin / "reprolib-table4" / "data", b"finished weights", True, written=2e9)
    output(kin / "reprolib-table4-v3" / "data", b"step 100 weights", False, written=1e9)  # sorts after the newest
    work = tmp_path / "work"
    counts = import_previous(tmp_path / "input", work)
    assert counts["sources"] == 1 and (work / "tiny" / "runs" / "r" / "done.json").is_file()
    assert (work / "tiny" / "runs" / "r" / "checkpoints" / "best.ckpt").read_bytes() == b"finished weights"
    assert "reprolib-table4-v3" in capsys.readouterr().out  # the one left out is named


def test_a_folder_that_cannot_be_packed_stays_as_it_is_and_the_manifest_is_written(tmp_path: Path, monkeypatch) -> None:
    """Packing writes a tar beside the folder (a second copy until the folder is removed): near Kaggle's 20 GB of
    /kaggle/working the disk fills. export_outputs raised, so no manifest was written, and the next session found
    no previous output and silently started the table over. Such a folder now travels unpacked."""
    import errno
    import tarfile

    root = tmp_path / "input" / "k" / "data"
    for split in ("a", "b"):
        (root / "tiny" / "processed" / split).mkdir(parents=True)
        (root / "tiny" / "processed" / split / "x.png").write_bytes(split.encode())
    (root / "tiny" / "runs" / "r").mkdir(parents=True)
    (root / "tiny" / "runs" / "r" / "last.ckpt").write_bytes(b"weights")
    real = tarfile.TarFile.add

    def add(self, name, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "processed/b" in str(name):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, *args, **kw)

    monkeypatch.setattr(tarfile.TarFile, "add", add)
    manifest = export_outputs(root)
    assert list(manifest["archives"]) == ["packed/tiny/processed/a.tar"] and "tiny/processed/b/x.png" in manifest["files"]
    assert not list(root.rglob("*.tmp"))
    work = tmp_path / "work"
    import_previous(tmp_path / "input", work)
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()) == [
        "tiny/processed/a/x.png", "tiny/processed/b/x.png", "tiny/runs/r/last.ckpt"]


def test_this_sessions_own_output_and_a_deep_output_are_not_taken_for_unusable_ones(tmp_path: Path, capsys) -> None:
    """run_table writes results/<table>/status.json before the import: with the work folder under kaggle_input, its own
    output was named 'an earlier session's output without a manifest'. And an output whose manifest lay one level
    deeper than import_previous searched counted as whole for the warning but was not imported: a silent start over."""
    def output(root: Path) -> None:
        (root / "results" / "table4").mkdir(parents=True)
        (root / "results" / "table4" / "status.json").write_text('{"table": "table4", "complete": false}')
        (root / "data" / "tiny").mkdir(parents=True)
        (root / "data" / "tiny" / "x.json").write_text("{}")
        export_outputs(root / "data")

    output(tmp_path / "prev")
    own = tmp_path / "working"
    (own / "results" / "table4").mkdir(parents=True)
    (own / "results" / "table4" / "status.json").write_text('{"table": "table4", "in_progress": true}')
    capsys.readouterr()
    assert import_previous(tmp_path, own / "data") == {"sources": 1, "copied": 1, "kept": 0, "dropped": 0,
                                                       "unusable": 0}
    assert "WARNING" not in capsys.readouterr().out
    deep = tmp_path / "deep"
    output(deep / "a" / "b" / "c" / "d" / "e")  # results/ at depth 5, its manifest (data/) at depth 6
    counts = import_previous(deep, tmp_path / "work2")
    assert counts["sources"] == 1 and (tmp_path / "work2" / "tiny" / "x.json").is_file()


def _fake_work(root: Path) -> dict[str, Path]:
    """A work root with one of each kind of folder export_outputs may or may not leave out (sizes in KB, well above a
    tar's headers): a generation whose processed split is done (its record), one still in progress, a run's prediction
    PNGs beside its checkpoint and score cache, and the embedded world."""
    from reprolib.experiments.session import processed_record

    prof = root / "tiny"

    def blob(path: Path, kb: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(kb * 1000))
        return path

    params = {"version": 2, "split": "train", "seed": 0, "input": "abc"}
    done_gen, open_gen = prof / "generated" / "embedded-train", prof / "generated" / "embedded-val"
    for gen, kb, split in ((done_gen, 100, "train"), (open_gen, 25, "val")):
        blob(gen / "original" / "a.png", kb)
        blob(gen / "original" / "b.png", kb)
        write_json(gen / "generator.json", {**params, "split": split, "complete": True, "written_this_run": 2})
    split = prof / "processed" / "generated-embedded-embedded-0123456789ab"
    blob(split / "original" / "a.png", 10)
    write_json(split / "done.json", {"key_hash": "0123456789ab"})
    write_json(processed_record(done_gen), {"generated": done_gen.name, "generator": params, "processed": split.name,
                                            "key_hash": "0123456789ab", "dataset": {}, "has_semantic": True})
    run = prof / "runs" / "embedded-r-seed0"
    blob(run / "checkpoints" / "last.ckpt", 100)
    blob(run / "scores" / "fs_static-x.npz", 5)
    for i in range(2):
        blob(run / "predictions" / "fs_static" / f"{i:04d}.png", 50)
    write_json(run / "predictions" / "fs_static-timing.json", {"seconds_per_image": 0.1})
    write_json(run / "done.json", {"global_step": 4})
    blob(prof / "world" / "cityscapes" / "x.png", 50)
    write_json(prof / "world" / "world.json", {"seed": 0})
    return {"done_gen": done_gen, "open_gen": open_gen, "split": split, "run": run, "world": prof / "world"}


def test_export_over_its_budget_leaves_out_rebuildable_caches_in_order(tmp_path: Path, capsys) -> None:
    """Kaggle saves at most 20 GB of a version's output, and a full Table 4's outgrows it (make smoke-full's
    estimate): export only warned, and what Kaggle cut was lost. It now removes rebuildable folders, in order, until
    the output fits, names each in the manifest's left_out and in a printed line, and keeps everything else."""
    from reprolib.experiments.session import rebuildable

    root = tmp_path / "input" / "k" / "data"
    paths = _fake_work(root)
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    # the order: prediction PNGs (nothing reads them), then the generation whose split is done (hours to make again
    # should the split be lost), then the world; never the generation still needed, the checkpoint, the score cache,
    # the processed split
    assert [rel(p) for p, _ in rebuildable(root)] == [
        "tiny/runs/embedded-r-seed0/predictions/fs_static", "tiny/generated/embedded-train", "tiny/world"]
    budget = 280_000  # the whole is ~530 KB: without the PNGs (100 KB) still over, without the done generation under
    manifest = export_outputs(root, budget_bytes=budget)
    left = manifest["left_out"]
    assert [e["path"] for e in left] == ["tiny/runs/embedded-r-seed0/predictions/fs_static", "tiny/generated/embedded-train"]
    meta_bytes = manifest["archives"]["packed/tiny/generated/embedded-val.tar"][
        "tiny/generated/embedded-val/generator.json"]["size"] + len("train") - len("val")  # the removed one's
    assert [(e["bytes"], e["files"]) for e in left] == [(100_000, 2), (200_000 + meta_bytes, 3)]
    assert all(e["reason"] for e in left)
    printed = capsys.readouterr().out
    assert all(f"left out of the output (over 280 kB): {e['path']}" in printed for e in left)
    on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert on_disk <= budget
    listed = set(manifest["files"]) | {m for a in manifest["archives"].values() for m in a}
    assert not [f for f in listed if f.startswith(tuple(e["path"] + "/" for e in left))]  # the next import expects none
    for kept in ("tiny/generated/embedded-val/original/a.png", "tiny/runs/embedded-r-seed0/checkpoints/last.ckpt",
                 "tiny/runs/embedded-r-seed0/scores/fs_static-x.npz", "tiny/world/world.json",
                 "tiny/runs/embedded-r-seed0/predictions/fs_static-timing.json", "tiny/generated/embedded-train.processed.json",
                 f"tiny/processed/{paths['split'].name}/done.json"):
        assert kept in listed, kept
    # the next session imports it without missing anything
    work = tmp_path / "work"
    assert import_previous(tmp_path / "input", work)["sources"] == 1
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()) == sorted(listed - {m for m in listed
                                                                                    if m.startswith("packed/")})
    assert not (work / "tiny" / "generated" / "embedded-train").exists()
    # within the budget nothing is left out (and without a budget neither)
    again = tmp_path / "again"
    _fake_work(again)
    assert export_outputs(again)["left_out"] == [] and export_outputs(again, budget_bytes=None)["left_out"] == []


def test_export_over_its_budget_then_drops_finished_runs_training_state(tmp_path: Path, capsys) -> None:
    """Without its generated data and PNGs a full Table 4 still ended at ~19.6 GB, over the budget: 30 runs' last.ckpt
    and best.ckpt of 225 MB, two thirds of it Adam's moments. A finished run never resumes, so the export's last resort
    rewrites its last.ckpt without the optimiser and scheduler state; never best.ckpt (the score caches key on its
    sha256), an unfinished run's last.ckpt (the next session resumes from it) or a run without best.ckpt (it is what
    the tables score)."""
    import torch

    from reprolib.experiments.session import TRAINING_STATE_KEYS, finished_last_checkpoints

    root = tmp_path / "input" / "k" / "data"
    runs = root / "tiny" / "runs"

    def ckpt(path: Path, seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        state = {"state_dict": {"w": torch.randn(20_000, generator=g)}, "hyper_parameters": {"model": {"width": 1}},
                 "global_step": 7, "epoch": 1,
                 "optimizer_states": [{"state": {0: {"exp_avg": torch.randn(20_000, generator=g),
                                                     "exp_avg_sq": torch.randn(20_000, generator=g)}}}],
                 "lr_schedulers": [{"best": 0.5}]}
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        return state

    states = {}
    for name, finished, best in (("done", True, True), ("no-best", True, False), ("open", False, True)):
        states[name] = ckpt(runs / name / "checkpoints" / "last.ckpt", len(states))
        if best:
            ckpt(runs / name / "checkpoints" / "best.ckpt", 10 + len(states))
        if finished:
            write_json(runs / name / "done.json", {"global_step": 7})
    assert finished_last_checkpoints(root) == [runs / "done" / "checkpoints" / "last.ckpt"]
    best_bytes = {n: (runs / n / "checkpoints" / "best.ckpt").read_bytes() for n in ("done", "open")}
    untouched = {n: (runs / n / "checkpoints" / "last.ckpt").read_bytes() for n in ("no-best", "open")}
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    before = (runs / "done" / "checkpoints" / "last.ckpt").stat().st_size

    manifest = export_outputs(root, budget_bytes=total - 100_000)  # only the training state can bring it under
    slim = torch.load(runs / "done" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not set(TRAINING_STATE_KEYS) & set(slim)
    assert torch.equal(slim["state_dict"]["w"], states["done"]["state_dict"]["w"])
    assert (slim["hyper_parameters"], slim["global_step"], slim["epoch"]) == ({"model": {"width": 1}}, 7, 1)
    after = (runs / "done" / "checkpoints" / "last.ckpt").stat().st_size
    assert after < before / 2
    assert all((runs / n / "checkpoints" / "best.ckpt").read_bytes() == b for n, b in best_bytes.items())
    assert all((runs / n / "checkpoints" / "last.ckpt").read_bytes() == b for n, b in untouched.items())
    [entry] = manifest["left_out"]
    assert entry["path"] == "tiny/runs/done/checkpoints/last.ckpt" and entry["part"] == "training state"
    assert entry["bytes"] == before - after
    assert manifest["files"][entry["path"]]["size"] == after  # the next session imports the slim file
    assert "the training state of tiny/runs/done/checkpoints/last.ckpt" in capsys.readouterr().out
    # a second export of the session keeps the record, and has nothing more to drop
    again = export_outputs(root, budget_bytes=total - 100_000)
    assert again["left_out"] == [entry]
    work = tmp_path / "work"
    assert import_previous(tmp_path / "input", work)["dropped"] == 0
    assert (work / entry["path"]).read_bytes() == (root / entry["path"]).read_bytes()
    # within the budget nothing is rewritten
    fresh = tmp_path / "fresh" / "tiny" / "runs" / "done"
    ckpt(fresh / "checkpoints" / "last.ckpt", 0)
    ckpt(fresh / "checkpoints" / "best.ckpt", 1)
    write_json(fresh / "done.json", {"global_step": 7})
    kept = (fresh / "checkpoints" / "last.ckpt").read_bytes()
    assert export_outputs(tmp_path / "fresh")["left_out"] == []
    assert (fresh / "checkpoints" / "last.ckpt").read_bytes() == kept


def test_a_done_processed_split_is_found_without_its_generated_data(tmp_path: Path, monkeypatch) -> None:
    """training_split generated the whole training data again (the Lis et al. generator: hours on Cityscapes) whenever
    the generated folder was missing, even with its processed split done, because precompute keys on the generated
    folder's content. A record beside the folder now finds the split, trusted only while every input matches: an
    output that left the generated data out continues without generating; a split not done, or a record of other
    inputs, generates again, to the same split."""
    import functools

    import reprolib.experiments.pipeline as P
    import reprolib.experiments.runner as R
    from reprolib.experiments.session import processed_record

    working, kaggle_input = tmp_path / "working", tmp_path / "input"
    kw = dict(profile="tiny", work_dir=working / "data", output_dir=working / "results", device="cpu",
              wandb_mode="disabled", variants=["full"])
    with monkeypatch.context() as m:  # a budget of 1 byte: every rebuildable folder is left out
        m.setattr(R, "export_outputs", functools.partial(export_outputs, budget_bytes=1))
        first = run_table("table4", kaggle_input=kaggle_input, **kw)
    manifest = read_json(working / "data" / MANIFEST)
    assert {e["path"] for e in manifest["left_out"]} >= {"tiny/generated/embedded-strong-train",
                                                         "tiny/generated/embedded-strong-val",
                                                         "tiny/world"}
    _mount(working, kaggle_input, 1)
    shutil.rmtree(working)
    calls: list[str] = []
    real = P.generate_training_data

    def counted(*a, **k):  # noqa: ANN002, ANN003, ANN202
        calls.append(k["split"])
        return real(*a, **k)

    monkeypatch.setattr(P, "generate_training_data", counted)
    second = run_table("table4", kaggle_input=kaggle_input, **kw)  # the next session
    assert calls == []  # the generator was not called
    log = read_log(working / "data")
    this = [r["stage"] for r in log if r["session"] == log[-1]["session"]]
    assert "world" in this and not [s for s in this if s.startswith(("precompute", "train", "score"))], this
    pd.testing.assert_frame_equal(_comparable(second), _comparable(first))
    # the next session: the processed train split gone, and the val record of other inputs (another Cityscapes file's
    # size): both generated again, and precomputed to the same splits
    _mount(working, kaggle_input, 0)
    shutil.rmtree(working)
    gen = working / "data" / "tiny" / "generated"
    seen: dict[str, Any] = {}

    def import_then_change(*a, **k):  # noqa: ANN002, ANN003, ANN202
        counts = import_previous(*a, **k)
        seen["train"] = working / "data" / "tiny" / "processed" / read_json(gen / "embedded-strong-train.processed.json")[
            "processed"]
        shutil.rmtree(seen["train"])
        seen["val"] = read_json(gen / "embedded-strong-val.processed.json")
        write_json(gen / "embedded-strong-val.processed.json", {**seen["val"], "generator": {**seen["val"]["generator"],
                                                                                    "input": "0"}})
        return counts

    monkeypatch.setattr(R, "import_previous", import_then_change)
    third = run_table("table4", kaggle_input=kaggle_input, **kw)
    assert sorted(calls) == ["train", "val"]
    train_split = working / "data" / "packed" / f"{seen['train'].relative_to(working / 'data')}.tar"
    val_record = seen["val"]
    # the record of other inputs names another generation: it stays, and this one gets a folder (and record) of its own
    val_gen = P.generation_root(gen / "embedded-strong-val", val_record["generator"])
    assert val_gen != gen / "embedded-strong-val"
    assert read_json(gen / "embedded-strong-val.processed.json")["generator"]["input"] == "0"
    assert train_split.is_file() and read_json(processed_record(val_gen)) == {**val_record, "generated": val_gen.name}
    pd.testing.assert_frame_equal(_comparable(third), _comparable(first))


def test_a_record_that_finds_no_done_split_never_lets_the_export_leave_its_generated_data_out(tmp_path: Path,
                                                                                              monkeypatch) -> None:
    """The record of a generation names the processed split precomputed from it. When the pipeline's key for that
    generation changes (another resynthesis checkpoint, a precompute cache version) while the generator's parameters
    do not, the record finds no done split and the split is precomputed again from the generated data. Until that
    precompute finishes, the record still named the old split, done, so an export over its budget left the generated
    data out though the split in progress needs it: the next session generated it again (hours on Cityscapes), and
    every session until the precompute finished could leave it out again."""
    import reprolib.experiments.pipeline as P
    import reprolib.precompute as PC
    from reprolib.experiments.session import processed_record, rebuildable

    root = tmp_path / "data"
    ctx = P.Context(profile=type("Profile", (), {"size": (8, 16), "precompute_batch": 1})(), work_dir=root / "tiny",
                    data=P.DataRoots(tmp_path / "world", embedded=True))
    gen = ctx.work_dir / "generated" / "embedded-strong-train"  # the combo's segmentation's generation
    params = {"version": 2, "split": "train", "seed": 0, "input": "abc"}
    write_json(gen / "generator.json", {**params, "complete": True})  # a complete generation
    old = ctx.work_dir / "processed" / "generated-old"  # its split under the former key, done
    write_json(old / "done.json", {"key_hash": "old"})
    write_json(processed_record(gen), {"generated": gen.name, "generator": params, "processed": old.name,
                                       "key_hash": "old", "dataset": {"kind": "generated", "fingerprint": "f",
                                                                      "length": 2}, "has_semantic": True})
    assert [p for p, _ in rebuildable(root)] == [gen]  # the record's split is done
    monkeypatch.setattr(P, "backends", lambda ctx, combo: ("seg", "resyn"))
    monkeypatch.setattr(P, "SegmentationFill", lambda *a: None)
    monkeypatch.setattr(P, "CityscapesDataset", lambda *a: None)
    monkeypatch.setattr(P, "generation_params", lambda ds, **k: params)  # the generation is the same
    monkeypatch.setattr(P, "generate_training_data", lambda cs, out, **k: out)  # complete: nothing to generate
    monkeypatch.setattr(PC, "find_done", lambda *a, **k: None)  # the split of today's key is not done

    def out_of_time(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise SessionOver("precompute")

    monkeypatch.setattr(PC, "precompute", out_of_time)
    with pytest.raises(SessionOver):
        P.training_split(ctx, "original", "train", True)
    assert rebuildable(root) == []  # the precompute in progress reads the generated data: it stays in the output
    new = ctx.work_dir / "processed" / "generated-new"

    def finished(*a, **k):  # noqa: ANN002, ANN003, ANN202
        write_json(new / "key.json", {"dataset": {"kind": "generated", "fingerprint": "f", "length": 2}})
        write_json(new / "done.json", {"key_hash": "new"})
        return new

    monkeypatch.setattr(PC, "precompute", finished)
    assert P.training_split(ctx, "original", "train", True) == (new, "labels_with_void_no_ego")
    assert read_json(processed_record(gen))["processed"] == new.name
    assert [p for p, _ in rebuildable(root)] == [gen]  # done under today's key: no stage needs the generation now


class _Generations:
    """``training_split`` over the real generator on small Cityscapes-format files, with the backends, the void filler
    and the precompute stood in for: the filler counts the images it fills (each one generated), and a processed split
    is named by the generated data's fingerprint and the combo's backends, as precompute's key names it."""

    def __init__(self, tmp_path: Path, monkeypatch) -> None:
        import numpy as np

        import reprolib.experiments.pipeline as P
        import reprolib.precompute as PC
        from reprolib.precompute.sources import GeneratedSplitSource

        self.P, self.filled = P, []
        filled = self.filled

        class Fill:  # as SegmentationFill: named, with the weights that fill void
            weights = "w"

            def __init__(self, seg, device, name):  # noqa: ANN001
                self.__qualname__ = f"segmentation:{name}"

            def __call__(self, index, image, train_ids):  # noqa: ANN001, ANN204
                filled.append(index)
                return np.full(train_ids.shape, 8, np.uint8)

        def split_of(out_root: Path, source, seg: str, resyn: str) -> Path:  # noqa: ANN001
            return Path(out_root) / f"generated-{source.fingerprint()}-{seg}-{resyn}"

        def precompute(gen_root, seg, resyn, out_root, **k):  # noqa: ANN001, ANN003, ANN202
            source = GeneratedSplitSource(gen_root)
            out = split_of(out_root, source, seg, resyn)
            write_json(out / "key.json", {"dataset": {"kind": "generated", "fingerprint": source.fingerprint(),
                                                      "length": len(source)}})
            write_json(out / "done.json", {"key_hash": out.name})
            return out

        def find_done(source, seg, resyn, out_root, **k):  # noqa: ANN001, ANN003, ANN202
            out = split_of(out_root, source, seg, resyn)
            return out if (out / "done.json").is_file() else None

        self.calls: list[str] = []
        real = P.generate_training_data

        def counted(cs, out, **k):  # noqa: ANN001, ANN003, ANN202
            self.calls.append(Path(cs).parent.name)
            return real(cs, out, **k)

        from reprolib.backends import COMBOS

        # each combo's segmentation and resynthesis by name, as get_combo gives them
        monkeypatch.setattr(P, "backends", lambda ctx, combo: COMBOS[P.combo_name(ctx, combo)])
        monkeypatch.setattr(P, "SegmentationFill", Fill)
        monkeypatch.setattr(P, "generate_training_data", counted)
        monkeypatch.setattr(PC, "precompute", precompute)
        monkeypatch.setattr(PC, "find_done", find_done)
        self.work = tmp_path / "work" / "full"

    def context(self, data: Path):  # noqa: ANN201
        P = self.P
        return P.Context(profile=type("Profile", (), {"size": (8, 16), "precompute_batch": 1})(), work_dir=self.work,
                         data=P.DataRoots(data, embedded=False))


def test_another_generation_of_the_same_combo_gets_a_folder_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """The generated training data of a combo lived in ``generated/<combo>-<split>`` whatever made it, and the
    generator refuses a folder holding a generation of other parameters: switching DATA= to another copy of the data
    (or the segmentation checkpoint that fills void) stopped the table with "use another out_root or delete it",
    which run_table cannot do, and deleting it threw away hours of generation that switching back needed again. A
    generation of other parameters now gets a folder of its own; the first one, and its record, stay in use."""
    from _make_data import make_cityscapes

    from reprolib.experiments.session import processed_record

    make_cityscapes(tmp_path / "a" / "cityscapes", n=2, seed=0)
    make_cityscapes(tmp_path / "b" / "cityscapes", n=3, seed=1)  # another copy of the data
    g = _Generations(tmp_path, monkeypatch)
    P = g.P
    ctx = g.context(tmp_path / "a")
    first, labels = P.training_split(ctx, "original", "train", True)
    ctx.data = P.DataRoots(tmp_path / "b", embedded=False)
    second, _ = P.training_split(ctx, "original", "train", True)
    assert second != first and read_json(second / "key.json")["dataset"]["length"] == 3
    ctx.data = P.DataRoots(tmp_path / "a", embedded=False)
    assert P.training_split(ctx, "original", "train", True) == (first, labels)  # found by its record again
    assert g.calls == ["a", "b"]  # nothing generated again
    gen = ctx.work_dir / "generated"
    assert read_json(gen / "deepwv3plus-train" / "generator.json")["input"] != read_json(
        processed_record(next(p for p in gen.iterdir() if p.is_dir() and p.name != "deepwv3plus-train")))["generator"][
        "input"]


def test_combos_that_share_a_segmentation_share_its_generation(tmp_path: Path, monkeypatch) -> None:
    """Only the segmentation that fills void makes one combo's generated training data differ from another's, but the
    generation was named by the combo (``generated/<combo>-<split>``, filler ``segmentation:<combo>``): Table 8's
    moderate1 generated again what Tables 4/6's original combo (the same DeepWV3Plus) had generated in the same work
    folder, and moderate2 what light had (ICNet): a segmentation pass over Cityscapes each. Now one generation per
    segmentation; each combo still gets its own processed split (its own resynthesis), each found again by the
    shared record."""
    from _make_data import make_cityscapes

    make_cityscapes(tmp_path / "a" / "cityscapes", n=2, seed=0)
    g = _Generations(tmp_path, monkeypatch)
    ctx = g.context(tmp_path / "a")
    splits = {c: g.P.training_split(ctx, c, "train", True)[0] for c in ("original", "moderate1", "light", "moderate2")}
    assert len(set(splits.values())) == 4  # a processed split per combo (its resynthesis)
    assert sorted(g.filled) == [0, 0, 1, 1]  # each image generated once per segmentation network, not per combo
    assert sorted(p.name for p in (ctx.work_dir / "generated").iterdir() if p.is_dir()) == ["deepwv3plus-train",
                                                                                            "icnet-train"]
    again = g.context(tmp_path / "a")  # a later table: every split found, nothing generated
    assert {c: g.P.training_split(again, c, "train", True)[0] for c in splits} == splits
    assert sorted(g.filled) == [0, 0, 1, 1]


def test_a_generation_named_by_its_combo_in_an_older_work_folder_is_used(tmp_path: Path, monkeypatch) -> None:
    """A work folder of before the generations were named by their segmentation holds ``generated/<combo>-<split>``
    (filler ``segmentation:<combo>``), its processed split done: found as it is, nothing generated again; a combo
    sharing its segmentation, new in that folder, generates its own (the old generation's filler names the combo)."""
    from _make_data import make_cityscapes

    make_cityscapes(tmp_path / "a" / "cityscapes", n=2, seed=0)
    g = _Generations(tmp_path, monkeypatch)
    ctx = g.context(tmp_path / "a")
    fill = g.P.SegmentationFill(None, "cpu", "original")  # as the code before named it
    old_root = ctx.work_dir / "generated" / "original-train"
    g.P.generate_training_data(ctx.data.cityscapes, old_root, split="train", seed=0, void=True, fill_void=fill)
    import reprolib.precompute as PC

    old_split = PC.precompute(old_root, "deepwv3plus", "ccfpse", ctx.work_dir / "processed")
    params = g.P.generation_params(g.P.CityscapesDataset(ctx.data.cityscapes, "train"), seed=0, void=True,
                                   fill_void=fill)
    g.P._record_split(old_root, params, old_split)
    g.filled.clear()
    assert g.P.training_split(ctx, "original", "train", True)[0] == old_split
    assert g.filled == [] and not (ctx.work_dir / "generated" / "deepwv3plus-train").exists()
    g.P.training_split(ctx, "moderate1", "train", True)
    assert sorted(g.filled) == [0, 1]
