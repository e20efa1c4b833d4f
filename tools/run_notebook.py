"""Papermill's command line, with every save of the executed notebook atomic (temp file + rename).

    python tools/run_notebook.py notebooks/table4.ipynb results/table4/table4.ipynb --request-save-on-cell-execute ...

What the Makefile runs for each table. Papermill saves the executed notebook after every cell (so a crash keeps
what ran) with a plain ``open(path, "w")``: a run killed during one of those writes (Ctrl-C, OOM, a session's
end) left a truncated ``.ipynb`` that no longer opens, in place of the copy saved after the previous cell. Here each
save goes through :func:`reprolib.io.write_text`, so the file is always the last whole save. The arguments are
papermill's own (``--help``).

Papermill looks up its local-file handler by the scheme ``"local"`` and keeps the first one registered, so the
handler is replaced in its registry rather than registered beside it (papermill is pinned in requirements.txt;
``tests/test_build.py`` runs a notebook through this and checks the saves).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from papermill.iorw import LocalHandler, papermill_io

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from any folder: reprolib is importable from the checkout
    sys.path.insert(0, str(ROOT))

from reprolib.io import write_text  # noqa: E402


class AtomicLocalHandler(LocalHandler):
    """Papermill's local handler, writing through a temp file beside the target and a rename."""

    def write(self, buf: str, path: str) -> None:
        full = Path(self._cwd or ".") / path
        if not full.parent.is_dir():  # as papermill: the output folder must exist (no typo'd tree is created)
            raise FileNotFoundError(f"output folder {os.path.dirname(path)} doesn't exist.")
        write_text(full, buf)


def install() -> AtomicLocalHandler:
    """Put :class:`AtomicLocalHandler` in place of papermill's local handler; return it."""
    handlers = papermill_io._handlers  # noqa: SLF001 (papermill has no public way to replace a handler)
    positions = [i for i, (scheme, _) in enumerate(handlers) if scheme == "local"]
    if not positions or not all(type(handlers[i][1]) in (LocalHandler, AtomicLocalHandler) for i in positions):
        raise RuntimeError("papermill's local-file handler is not where this papermill version kept it")
    atomic = AtomicLocalHandler()
    for i in positions:
        handlers[i] = ("local", atomic)
    return atomic


def main() -> None:
    from papermill.cli import papermill

    install()
    papermill(prog_name="papermill")


if __name__ == "__main__":
    main()
