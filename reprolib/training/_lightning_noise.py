"""Lightning messages that say nothing about a run, kept out of the progress output users read."""

from __future__ import annotations

import warnings


def quiet_lightning() -> None:
    """Ignore torch's FutureWarning on ``LeafSpec``, which Lightning 2.6 builds on every ``fit`` under torch 2.14
    (a library-version mismatch, printed once per training run: nine times in a ``make table4``)."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
