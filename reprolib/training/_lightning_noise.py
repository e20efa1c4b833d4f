"""Lightning messages that say nothing about a run, kept out of the progress output users read."""

from __future__ import annotations

import warnings

_LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


def quiet_lightning() -> None:
    """Ignore torch's FutureWarning on ``LeafSpec``, which Lightning 2.6 builds on every ``fit`` under torch 2.14
    (a library-version mismatch, printed once per training run: nine times in a ``make table4``)."""
    first = warnings.filters[0] if warnings.filters else None
    if first and first[0] == "ignore" and first[2] is FutureWarning and getattr(first[1], "pattern", None) == _LEAFSPEC:
        # already in force: every change to the filters makes Python forget which warnings it has shown
        # (the missing-ImageNet-weights one would then repeat at every precompute)
        return
    warnings.filterwarnings("ignore", message=_LEAFSPEC, category=FutureWarning)
