"""``kaggle kernels push / output / status`` through the official CLI, its output checked and scrubbed."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from reprolib.kaggle.bundle import slugify
from reprolib.kaggle.credentials import scrub

#: lines of ``kaggle kernels push`` output that mean the push did not (fully) happen, though it exits 0
#: (a data source that is "not valid" is not mounted: the session would run without it; invalid *tags* only
#: lose a label, and no tags are sent)
PUSH_ERRORS = ("Kernel push error", "not valid dataset sources", "not valid competition sources",
               "not valid kernel sources", "error:", "Error:")


def _kaggle_cli() -> list[str]:
    exe = shutil.which("kaggle")
    if exe:
        return [exe]
    return [os.environ.get("PYTHON", "python"), "-m", "kaggle"]


def _run_cli(args: list[str]) -> str:
    proc = subprocess.run(_kaggle_cli() + args, capture_output=True, text=True, env=os.environ.copy())
    out = scrub(proc.stdout + proc.stderr)  # never echo a credential back into logs or notebooks
    if proc.returncode != 0:
        raise RuntimeError(f"kaggle {' '.join(args)} failed (exit {proc.returncode}):\n{out}")
    return out


def check_push_output(out: str, kernel_id: str | None = None) -> str:
    """Raise with the reason when ``kaggle kernels push`` printed an error (it exits 0 on those).

    Where the CLI also says "Kernel version N successfully pushed", the version exists and its session is running
    without what was refused, and the message says so (a push again would run a second session beside it). The one
    refusal accepted: the kernel's own id (``kernel_id``) as a kernel source on version 1, where there is no
    earlier version to mount.
    """
    created = re.search(r"Kernel version (\d+)? ?successfully", out)
    version = int(created.group(1)) if created and created.group(1) else None
    problems = []
    for line in out.splitlines():
        if not any(e in line for e in PUSH_ERRORS):
            continue
        refused = re.search(r"not valid kernel sources.*?: \[(.*)\]", line)
        if refused and version == 1 and kernel_id is not None:
            names = [n.strip().strip("'\"") for n in refused.group(1).split(",") if n.strip()]
            if names == [kernel_id]:
                continue  # the first version's self-reference: nothing to mount yet
        problems.append(line)
    if created and problems:
        url = re.search(r"(https?://\S+)", out[created.start():])
        where = f" at {url.group(1)}" if url else ""
        raise RuntimeError(f"kaggle kernels push: version {version or '?'} WAS created and its session is running, "
                           f"but the CLI refused part of it:\n" + "\n".join(problems) +
                           f"\nA session without its data or its previous output runs for nothing: stop it{where} "
                           f"(kaggle.com: the version's page, Cancel run) before pushing again, which would run a "
                           f"second session beside it.\n--- full output ---\n{out}")
    if problems or not created:
        reason = "\n".join(problems) or "no 'successfully pushed' line in the CLI output"
        raise RuntimeError(f"kaggle kernels push failed:\n{reason}\n--- full output ---\n{out}")
    return out


def push(bundle_dir: str | os.PathLike, timeout_s: int | None = None, accelerator: str | None = None) -> str:
    """``kaggle kernels push -p bundle_dir`` with the official CLI; returns its output, raises on any error."""
    args = ["kernels", "push", "-p", str(bundle_dir)]
    if timeout_s:
        args += ["-t", str(int(timeout_s))]
    if accelerator:
        args += ["--accelerator", accelerator]
    meta = Path(bundle_dir) / "kernel-metadata.json"
    kernel_id = json.loads(meta.read_text()).get("id") if meta.is_file() else None
    return check_push_output(_run_cli(args), kernel_id)


def pull(kernel_id: str, dest: str | os.PathLike, table: str | None = None,
         work: str | os.PathLike = "build/kaggle-pull", partial: bool = False, profile: str | None = None) -> list[Path]:
    """Download a kernel's output; with ``table``, only ``results/<table>/*`` lands in ``dest`` (where
    ``make report`` reads it), else every file. Returns the files placed in ``dest``.

    With ``table``: the output's ``status.json`` must name that table and say it is complete (``partial=True``
    takes an unfinished one); its results must be of ``profile`` (default: the profile of the results already in
    ``dest``, if any; see :func:`results_profile`), since demo and full pushes share the kernel ``reprolib-<table>``;
    and ``dest`` is replaced as a whole, its previous content kept in ``<dest>.before-pull``: a refused pull changes
    nothing, and no stale local file stays beside the pulled ones."""
    dest = Path(dest)
    if table is None:
        dest.mkdir(parents=True, exist_ok=True)
        _run_cli(["kernels", "output", kernel_id, "-p", str(dest), "--force"])
        return sorted(p for p in dest.rglob("*") if p.is_file())
    tmp = Path(work) / slugify(kernel_id)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prefix = f"results/{table}/"
    _run_cli(["kernels", "output", kernel_id, "-p", str(tmp), "--force", "--file-pattern", "^" + re.escape(prefix)])
    got = sorted(p for p in (tmp / prefix).rglob("*") if p.is_file()) if (tmp / prefix).is_dir() else []
    if not got:
        raise RuntimeError(f"kernel {kernel_id} has no {prefix} in its output (still running, or failed? "
                           f"see `kaggle kernels status {kernel_id}` and the log in {tmp})")
    _check_pulled_status(tmp / prefix / "status.json", kernel_id, table, partial)
    _check_pulled_profile(tmp / prefix, dest, kernel_id, table, profile)
    # the new folder beside dest (same file system), then swapped in: dest is the old or the new one, never a mix
    staged = dest.with_name(dest.name + ".pulling")
    shutil.rmtree(staged, ignore_errors=True)
    staged.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp / prefix), staged)
    backup = dest.with_name(dest.name + ".before-pull")
    if dest.exists():
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(dest, backup)
        try:
            os.replace(staged, dest)
        except OSError:
            os.replace(backup, dest)  # the old folder back where it was: a failed pull changes nothing
            raise
    else:
        os.replace(staged, dest)
    return sorted(p for p in dest.rglob("*") if p.is_file())


def _check_pulled_status(path: Path, kernel_id: str, table: str, partial: bool) -> None:
    """Refuse a pulled ``status.json`` of another table, an unfinished table (unless ``partial``), or none.

    Table 2 (a measurement, not ``run_table``) writes no ``status.json``: its ``table2.csv`` is written once, at
    the end, so its presence is the finished measurement."""
    from reprolib.experiments.results import MEASUREMENT_TABLES  # lazy: reprolib.experiments imports torch

    if table in MEASUREMENT_TABLES:
        if not (path.parent / f"{table}.csv").is_file():
            raise RuntimeError(f"kernel {kernel_id}'s output has no results/{table}/{table}.csv: the measurement did "
                               "not finish (nothing pulled)")
        return
    try:
        status = json.loads(path.read_text())
        name, complete, running = status["table"], status.get("complete") is True, bool(status.get("in_progress"))
    except (OSError, ValueError, KeyError, TypeError):
        raise RuntimeError(f"kernel {kernel_id}'s output has no readable results/{table}/status.json: not a finished "
                           "table session (nothing pulled)") from None
    if name != table:
        raise RuntimeError(f"kernel {kernel_id}'s results/{table}/status.json is {name}'s (nothing pulled)")
    if complete and not running:
        return
    how = ("in progress (the session was killed or crashed: the CSV holds part of the rows)" if running else
           f"{status.get('runs_finished', '?')}/{status.get('runs_total', '?')} runs finished")
    if not partial:
        raise RuntimeError(f"kernel {kernel_id}'s {table} is {how}: push again until its log says all runs are "
                           "finished, or pull with --partial to take this part (nothing pulled)")
    print(f"warning: {table} pulled though {how}", flush=True)


def results_profile(folder: str | os.PathLike, table: str) -> str | None:
    """The profile a table's results in ``folder`` were made with: ``status.json``'s ``profile`` (written by
    ``run_table``), else the ``profile`` column of ``<table>.csv`` (several profiles joined by ``+``); None when
    neither says (no results, or an empty table from a status.json that does not name its profile)."""
    folder = Path(folder)
    try:
        named = json.loads((folder / "status.json").read_text()).get("profile")
        if isinstance(named, str) and named:
            return named
    except (OSError, ValueError, AttributeError):
        pass  # none (Table 2, or results from before the profile was recorded) or unreadable: the CSV says
    try:
        with open(folder / f"{table}.csv", newline="") as fh:
            found = sorted({row["profile"] for row in csv.DictReader(fh) if row.get("profile")})
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    return "+".join(found) or None


def _check_pulled_profile(pulled: Path, dest: Path, kernel_id: str, table: str, profile: str | None) -> None:
    """Refuse pulled results of another profile than ``profile`` or, without it, than the local ones in ``dest``:
    demo and full pushes share the kernel ``reprolib-<table>``, and a pull would replace the one by the other."""
    expected = profile or results_profile(dest, table)
    if expected is None:  # nothing local to keep, and none asked for
        return
    got = results_profile(pulled, table)
    if got == expected:
        return
    mine = f"profile {expected!r} was asked for" if profile else f"{dest}/ holds profile {expected!r}"
    if got is None:
        raise RuntimeError(f"kernel {kernel_id}'s {table} results do not say their profile (no rows, no profile in "
                           f"status.json) and {mine} (nothing pulled): move {dest} away to take them")
    raise RuntimeError(f"kernel {kernel_id}'s {table} results are profile {got!r} but {mine} (nothing pulled; demo and "
                       f"full pushes share the kernel): to take them, make kaggle-pull TABLE={table} PROFILE={got} "
                       f"(python -m reprolib.kaggle pull --table {table} --profile {got})")


def status(kernel_id: str) -> str:
    """``kaggle kernels status KERNEL``."""
    return _run_cli(["kernels", "status", kernel_id]).strip()
