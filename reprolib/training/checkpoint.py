"""Lightning checkpoint I/O that writes atomically and reads with ``weights_only=True``."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from reprolib.io import ReprolibDataError, save_torch


class AtomicCheckpointIO(TorchCheckpointIO):
    """A killed process never leaves a half-written ``.ckpt`` (temp file + rename); loading never unpickles code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        save_torch(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # torch raises several unrelated types for bad files
            raise ReprolibDataError(path, f"cannot load Lightning checkpoint safely ({exc})") from None
