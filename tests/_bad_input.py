"""The bad-input table's machinery: one record per case, run as a subprocess (CLI) or a call (API).

A case is a :class:`Case` (or a dict with the same keys, e.g. appended from another test file):

* ``id``: short name;
* ``argv``: ``("reprolib.world", "--out", "{case}/w", ...)`` — the module run with ``python -m`` and its
  arguments, with placeholders (``{case}`` = the case's own empty folder, also the working directory; the
  others are the shared fixtures of the test module, e.g. ``{run}``, ``{split}``, ``{cs}``);
* or ``call``: ``f(case_dir, env)`` that must raise; its line and code are what :func:`reprolib.cli.run`
  would print and return for that exception;
* ``code``: the expected exit code (2 bad usage, 1 bad data);
* ``message``: a regex the one ``error: ...`` line must match — it names the culprit (option or file);
* ``setup``: optional ``f(case_dir, env)`` that makes the bad input inside the case folder;
* ``may_write``: glob patterns (relative to the case folder) that the case may create or change; everything
  else in the case folder and the shared fixtures must be byte-for-byte as before (nothing partial or wrong
  written).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from reprolib import cli

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    id: str
    code: int
    message: str
    argv: tuple[str, ...] | None = None
    call: Callable[[Path, Mapping[str, Path]], Any] | None = None
    setup: Callable[[Path, Mapping[str, Path]], Any] | None = None
    may_write: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: Case | Mapping[str, Any]) -> Case:
        if isinstance(record, Case):
            return record
        record = dict(record)
        for key in ("argv", "may_write"):
            if key in record and record[key] is not None:
                record[key] = tuple(record[key])
        return cls(**record)


def snapshot(*folders: Path) -> dict[str, tuple[int, bytes | None]]:
    """path → (size, content of small files) under ``folders``: what must not change under a failing case."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for folder in folders:
        for p in folder.rglob("*"):
            key = p.relative_to(folder.parent).as_posix()
            if p.is_file():
                size = p.stat().st_size
                out[key] = (size, p.read_bytes() if size < 1 << 20 else None)
            elif p.is_dir():
                out[key + "/"] = (0, None)
    return out


@dataclass
class Outcome:
    """What one case did: exit code, stderr / stdout, and the paths it wrote or changed."""

    code: int
    stderr: str
    stdout: str
    changed: list[str]


def _changed(case: Case, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                  and not any(fnmatch(k.rstrip("/"), f"{case.id}/{pat}") for pat in case.may_write))


def _prepare(case: Case, root: Path, env: Mapping[str, Path]) -> Path:
    case_dir = root / "cases" / case.id
    case_dir.mkdir(parents=True)
    if case.setup is not None:
        case.setup(case_dir, env)
    return case_dir


# Runs CLI cases one after another in one interpreter, each exactly as ``python -m MODULE ARGS`` would (its
# ``__main__`` block through runpy, in its own working directory): the imports (torch, Lightning) are paid
# once per batch instead of once per case, which is most of a failing case's cost.
_DRIVER = """
import contextlib, io, json, os, runpy, sys, traceback
cases, out_path = json.load(open(sys.argv[1])), sys.argv[2]
results = {}
for case in cases:
    out, err = io.StringIO(), io.StringIO()
    os.chdir(case["cwd"])
    sys.argv = list(case["argv"])
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(case["argv"][0], run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results[case["id"]] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
json.dump(results, open(out_path, "w"))
"""


def run_cli_cases(cases: list[Case], root: Path, env: Mapping[str, Path], shared: Path) -> dict[str, Outcome]:
    """Run every CLI case as ``python -m MODULE ARGS`` in a subprocess. By default the cases are split into a
    few batches, each one subprocess that runs its cases in turn (see ``_DRIVER``); with
    ``REPROLIB_BAD_INPUT_ISOLATED=1`` every case gets its own interpreter (slower, the strictest form).
    Each case's snapshot covers its own folder and ``shared`` (the fixtures every case reads, none may change).
    """
    prepared = [(c, _prepare(c, root, env)) for c in cases]
    proc_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    jobs = [{"id": c.id, "cwd": str(d), "argv": [a.format(**{**{k: str(v) for k, v in env.items()}, "case": str(d)})
                                                 for a in c.argv or ()]} for c, d in prepared]
    befores = {c.id: snapshot(d, shared) for c, d in prepared}
    workers = max(2, min(8, os.cpu_count() or 2))
    isolated = os.environ.get("REPROLIB_BAD_INPUT_ISOLATED") == "1"
    batches = [[job] for job in jobs] if isolated else [jobs[i::workers] for i in range(workers)]

    def one(batch: list[dict[str, Any]]) -> dict[str, Outcome]:
        if isolated:
            job = batch[0]
            proc = subprocess.run([sys.executable, "-m", *job["argv"]], cwd=job["cwd"], capture_output=True,
                                  text=True, env=proc_env, timeout=600)
            return {job["id"]: Outcome(proc.returncode, proc.stderr, proc.stdout, [])}
        spec = root / f"batch-{batch[0]['id']}.json"
        spec.write_text(json.dumps(batch))
        result = spec.with_suffix(".out")
        proc = subprocess.run([sys.executable, "-c", _DRIVER, str(spec), str(result)], capture_output=True, text=True,
                              env=proc_env, timeout=1200)
        assert proc.returncode == 0 and result.is_file(), f"driver failed ({proc.returncode}): {proc.stderr[-3000:]}"
        found = json.loads(result.read_text())
        return {k: Outcome(v["code"], v["stderr"], v["stdout"], []) for k, v in found.items()}

    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(one, [b for b in batches if b]):
            outcomes.update(part)
    for case, case_dir in prepared:
        outcomes[case.id].changed = _changed(case, befores[case.id], snapshot(case_dir, shared))
    return outcomes


def check_outcome(case: Case, outcome: Outcome) -> str:
    """Assert one error line on stderr (nothing on stdout), the exit code, the message and no writes."""
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
    assert outcome.stdout.strip() == "", f"{case.id}: printed on stdout: {outcome.stdout[-500:]}"
    assert len(lines) == 1, f"{case.id}: expected one stderr line, got:\n{outcome.stderr[-3000:]}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert re.search(case.message, line), f"{case.id}: {line!r} does not match {case.message!r}"
    assert outcome.code == case.code, f"{case.id}: exit {outcome.code}, expected {case.code}: {line}"
    assert not outcome.changed, f"{case.id}: wrote or changed {outcome.changed[:10]}"
    return line


def run_api_case(case: Case, root: Path, env: Mapping[str, Path], shared: Path) -> Outcome:
    """Run a ``call`` case in this process; its outcome is the line and code :func:`reprolib.cli.run` gives."""
    assert case.call is not None, f"{case.id}: needs argv or call"
    case_dir = _prepare(case, root, env)
    before = snapshot(case_dir, shared)
    try:
        case.call(case_dir, env)
    except (ValueError, OSError) as exc:
        found = cli.error_line(exc)
        assert found is not None, f"{case.id}: {type(exc).__name__} is not a user-facing error: {exc}"
        line, code = found
    else:
        raise AssertionError(f"{case.id}: no error raised")
    return Outcome(code, line + "\n", "", _changed(case, before, snapshot(case_dir, shared)))
