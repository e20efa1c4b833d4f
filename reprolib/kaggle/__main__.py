"""``python -m reprolib.kaggle push|pull --table table4 ...``: :func:`reprolib.kaggle.command.main` through
:func:`reprolib.cli.run` (one-line errors: exit 2 for bad usage, 1 for bad data)."""

from __future__ import annotations

import sys

from reprolib import cli
from reprolib.kaggle.command import main

if __name__ == "__main__":
    try:
        sys.exit(cli.run(main))
    except RuntimeError as exc:  # the official CLI failed or refused a push / pull (remote.py): its reason, exit 1
        sys.exit(f"error: {exc}")
