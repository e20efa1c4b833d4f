"""Lightning messages that say nothing about a run, kept out of the progress output users read."""

from __future__ import annotations

import logging
import warnings

_LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: … try installing litlogger" line, logged by every Trainer, and its advice on
    Ampere and newer GPUs to lower the fp32 matmul precision: the runs are fp32 by choice (the original's), and
    the networks' arithmetic is convolutions, which that setting does not reach."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return "litlogger" not in msg and "set_float32_matmul_precision" not in msg


def quiet_lightning() -> None:
    """Ignore torch's FutureWarning on ``LeafSpec``, which Lightning 2.6 builds on every ``fit`` under torch 2.14
    (a library-version mismatch), and Lightning's advert for its cloud logger: each printed once per training
    run, nine times in a ``make table4``. Call it before building a Trainer."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_NoAdverts())
    first = warnings.filters[0] if warnings.filters else None
    if first and first[0] == "ignore" and first[2] is FutureWarning and getattr(first[1], "pattern", None) == _LEAFSPEC:
        # already in force: every change to the filters makes Python forget which warnings it has shown
        # (the missing-ImageNet-weights one would then repeat at every precompute)
        return
    warnings.filterwarnings("ignore", message=_LEAFSPEC, category=FutureWarning)
