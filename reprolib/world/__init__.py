"""The embedded driving world: procedurally generated street scenes written in the official formats.

``generate_world(out, seed=0, size=(256, 512), ...)`` writes a Cityscapes-format tree, a Lost & Found-format
set with Fishyscapes Lost & Found masks, and a Fishyscapes Static-format set (see docs/ARCHITECTURE.md), so
the real loaders and the whole pipeline run on it unchanged. One seed → byte-identical files.
"""

from reprolib.world.writer import VERSION, generate_world

__all__ = ["VERSION", "generate_world"]
