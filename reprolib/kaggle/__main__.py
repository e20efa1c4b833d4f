"""``python -m reprolib.kaggle push|pull --table table4 ...``: :func:`reprolib.kaggle.command.main`, one-line errors."""

from __future__ import annotations

import sys

from reprolib.io import ReprolibDataError
from reprolib.kaggle.command import main

if __name__ == "__main__":
    try:
        main()
    except (ReprolibDataError, ValueError, RuntimeError) as exc:
        sys.exit(f"error: {exc}")
