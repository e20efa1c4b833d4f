"""The names a user gives weight files under (``checkpoints={name: path}``, ``--ckpt NAME=PATH``, Kaggle's
``--checkpoints name=file``) and the environment variables standing in for them.

Light on purpose (no torch): every front door checks the names before any work, so a misspelt name is an error
rather than a weight left out (the CC-FPSE encoder is optional: without it the generator would run on silently).
"""

from __future__ import annotations

from collections.abc import Iterable

#: real-backend checkpoint name → environment variable (:mod:`reprolib.backends.registry` looks them up)
CHECKPOINT_ENV = {
    "deepwv3plus": "REPROLIB_CKPT_DEEPWV3PLUS",
    "icnet": "REPROLIB_CKPT_ICNET",
    "ccfpse-generator": "REPROLIB_CKPT_CCFPSE_GENERATOR",
    "ccfpse-encoder": "REPROLIB_CKPT_CCFPSE_ENCODER",
    "spade-generator": "REPROLIB_CKPT_SPADE_GENERATOR",
}
#: the authors' published dissimilarity network (Figure 3 puts its p(anomaly) beside ours)
PUBLISHED_NAME = "dissimilarity"
PUBLISHED_ENV = "REPROLIB_CKPT_DISSIMILARITY"
#: every name a ``checkpoints`` mapping may hold
CHECKPOINT_NAMES = (*CHECKPOINT_ENV, PUBLISHED_NAME)


def check_checkpoint_names(names: Iterable[str], argument: str = "checkpoints") -> None:
    """A :class:`reprolib.cli.UsageError` (a ``ValueError``) naming ``argument`` for the first name that is not
    one of :data:`CHECKPOINT_NAMES`, with a "did you mean" suggestion."""
    from reprolib.cli import check_choice  # light; imported here so that reprolib.cli may import this module

    for name in names:
        check_choice(argument, str(name), CHECKPOINT_NAMES)
