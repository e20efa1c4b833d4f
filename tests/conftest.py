"""Test-wide settings: offline logging, no downloads, quiet progress bars."""

from __future__ import annotations

import os

# Never touch the network from a test: WandB offline, no hub downloads, and an empty torch cache so
# pretrained-weight loading takes its documented "not found → warning + random init" path.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
