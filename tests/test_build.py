"""The build: the Makefile is a DAG over result files, `make help` documents every target, and the committed
notebooks are exactly what ``tools/make_notebooks.py`` writes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
TABLES = re.search(r"^TABLES :=(.*)$", MAKEFILE, re.M).group(1).split()


def _make(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "MAKEFLAGS": ""})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _runs(dry_run: str) -> list[str]:
    """The tables a dry run would execute, in order (one papermill call each)."""
    return re.findall(r"run_notebook\.py notebooks/(\w+)\.ipynb", dry_run)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A bare copy of the Makefile's inputs: an installed venv stamp, every table's notebook, main.tex."""
    shutil.copyfile(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("requirements.txt", "pyproject.toml", "report/main.tex", *(f"notebooks/{t}.ipynb" for t in TABLES)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
        os.utime(tmp_path / name, (1_000, 1_000))
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()
    return tmp_path


def _touch(path: Path, t: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (t, t))


def test_report_depends_on_every_table_csv(project: Path) -> None:
    # nothing run yet: the report first makes every table, then builds from their CSVs
    dry = _make(project, "-n", "report")
    assert sorted(_runs(dry)) == sorted(TABLES)
    assert dry.index("build_report") > max(dry.index(f"notebooks/{t}.ipynb") for t in TABLES)
    assert dry.index("latexmk") > dry.index("build_report")
    # only the tables REPORT_TABLES names
    assert _runs(_make(project, "-n", "report", "REPORT_TABLES=table4")) == ["table4"]


def test_table_csvs_are_files_the_aliases_always_run(project: Path) -> None:
    for t in TABLES:
        _touch(project / "results" / t / f"{t}.csv", 2_000)
    # every CSV newer than its notebook: the report does not rerun any table
    dry = _make(project, "-n", "report")
    assert _runs(dry) == [] and "build_report" in dry
    assert _runs(_make(project, "-n", "results/table4/table4.csv")) == []
    # `make table4` always runs its notebook (it resumes / reuses runs), writing into results/table4
    dry = _make(project, "-n", "table4")
    assert _runs(dry) == ["table4"] and "-r output_dir results/table4 " in dry
    # `make all`: every table, then the report
    dry = _make(project, "-n", "all")
    assert sorted(_runs(dry)) == sorted(TABLES) and dry.index("build_report") > dry.index("run_notebook.py")
    # a newer notebook makes its table out of date, and only its table
    os.utime(project / "notebooks" / "table7.ipynb", (3_000, 3_000))
    assert _runs(_make(project, "-n", "report")) == ["table7"]
    # built fragments newer than every CSV: the report goes straight to LaTeX
    os.utime(project / "notebooks" / "table7.ipynb", (1_000, 1_000))
    _touch(project / "report" / "generated" / "profiles.tex", 4_000)
    dry = _make(project, "-n", "report")
    assert "build_report" not in dry and "latexmk" in dry


def test_make_help_documents_every_target() -> None:
    help_text = _make(ROOT, "-s", "help")
    phony = " ".join(re.findall(r"^\.PHONY:(.*)$", MAKEFILE, re.M)).split()
    targets = [t for t in phony if t not in ("FORCE", "$(TABLES)")]
    missing = [t for t in targets if not re.search(rf"\bmake {re.escape(t)}\b", help_text)]
    assert not missing, f"`make help` does not document {missing}"
    listed = re.search(r"^make <table> .*any of: (.*) →", help_text, re.M).group(1).split()
    assert listed == TABLES and "make results/table4/table4.csv" in help_text


def test_notebooks_are_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), "--out", str(tmp_path)], check=True,
                   env=env, timeout=120)
    generated = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    committed = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert generated == committed, "notebooks/ and tools/make_notebooks.py disagree on which notebooks exist"
    stale = [n for n in generated if (tmp_path / n).read_bytes() != (ROOT / "notebooks" / n).read_bytes()]
    assert not stale, f"{stale} differ from tools/make_notebooks.py's output: run `python tools/make_notebooks.py`"
    # the generator leaves an unchanged notebook alone (make reads its modification time)
    os.utime(tmp_path / generated[0], (1_000, 1_000))
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), "--out", str(tmp_path)], check=True,
                   env=env, timeout=120)
    assert (tmp_path / generated[0]).stat().st_mtime == 1_000


def test_a_killed_tables_csv_is_out_of_date(project: Path) -> None:
    """A killed table keeps the rows it finished in its CSV, newer than its notebook; its status.json still says
    "in_progress" (reprolib.experiments.runner), so `make report` resumes that table rather than report part of
    it, as it used to. A table stopped by its time budget writes its final status: it is reported as it is."""
    for t in TABLES:
        _touch(project / "results" / t / f"{t}.csv", 2_000)
    (project / "results" / "table4" / "status.json").write_text('{\n  "complete": false,\n  "in_progress": true\n}\n')
    (project / "results" / "table5" / "status.json").write_text('{\n  "complete": false,\n  "runs_missing": ["x"]\n}\n')
    assert _runs(_make(project, "-n", "report")) == ["table4"]
    assert _runs(_make(project, "-n", "results/table4/table4.csv")) == ["table4"]


# --------------------------------------------------------------------------------------------------------
# tools/run_notebook.py: papermill, each save of the executed notebook atomic


def _run_notebook_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "tools" / "run_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tables_run_through_the_atomic_runner(project: Path) -> None:
    dry = _make(project, "-n", "table4")
    line = next(line for line in dry.splitlines() if "notebooks/table4.ipynb" in line)
    assert "tools/run_notebook.py notebooks/table4.ipynb results/table4/table4.ipynb" in line
    assert "--request-save-on-cell-execute" in line


def test_a_save_killed_before_its_rename_leaves_the_previous_save_whole(tmp_path: Path, monkeypatch) -> None:
    """A kill during papermill's save after a cell used to leave a truncated .ipynb; now the last whole save stays."""
    from papermill.iorw import papermill_io

    import reprolib.io

    runner = _run_notebook_module()
    saved = {"_handlers": list(papermill_io._handlers)}
    try:
        runner.install()
        handler = papermill_io.get_handler(str(tmp_path / "out.ipynb"))
        assert isinstance(handler, runner.AtomicLocalHandler)
        out = tmp_path / "out.ipynb"
        handler.write('{"cells": ["first"]}', str(out))

        def killed(fd: int) -> None:
            raise KeyboardInterrupt  # the process dies after writing part of the new save, before the rename

        monkeypatch.setattr(reprolib.io.os, "fsync", killed)
        with pytest.raises(KeyboardInterrupt):
            handler.write('{"cells": ["first", "second"]}', str(out))
        assert out.read_text() == '{"cells": ["first"]}'
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb"]  # no temp file left beside it
        monkeypatch.undo()
        # a folder that does not exist is refused, as papermill does (no typo'd tree created)
        with pytest.raises(FileNotFoundError, match="output folder"):
            handler.write("{}", str(tmp_path / "nope" / "out.ipynb"))
        assert not (tmp_path / "nope").exists()
    finally:
        papermill_io._handlers[:] = saved["_handlers"]


def test_the_runner_executes_a_notebook_and_keeps_what_ran_before_a_failure(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                            "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print('ran', x * 7)"),
                nbformat.v4.new_code_cell("raise RuntimeError('stop here')"),
                nbformat.v4.new_code_cell("print('never')")]
    src, out = tmp_path / "in.ipynb", tmp_path / "out" / "out.ipynb"
    nbformat.write(nb, src)
    out.parent.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebook.py"), str(src), str(out),
                           "--request-save-on-cell-execute", "-k", "python3", "-p", "x", "6"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0 and "stop here" in proc.stderr + proc.stdout
    done = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for c in done.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "ran 42" in printed and "never" not in printed  # the injected x=6 ran; the cell after the error did not
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.ipynb"]
