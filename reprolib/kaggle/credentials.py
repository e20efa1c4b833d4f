"""Kaggle credentials: the user name for the kernel id, and scrubbing every credential from the CLI's output.

Credentials are read by the official ``kaggle`` CLI (``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``,
``~/.kaggle/kaggle.json``, ``~/.kaggle/access_token``); this package reads only the *username* (to build
the kernel id), never writes a credential, and scrubs every one of them from the CLI output it shows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reprolib.io import ReprolibDataError


def kaggle_username(config_dir: str | os.PathLike | None = None) -> str:
    """The Kaggle user name from ``KAGGLE_USERNAME`` or ``kaggle.json`` (the key is never read into output)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    cfg_dir = Path(config_dir or os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    cfg = cfg_dir / "kaggle.json"
    if not cfg.is_file():
        raise ReprolibDataError(cfg, "no Kaggle credentials: set KAGGLE_USERNAME/KAGGLE_KEY or create this file")
    try:
        name = json.loads(cfg.read_text())["username"]
    except (json.JSONDecodeError, KeyError):
        raise ReprolibDataError(cfg, "expected a JSON object with 'username' and 'key'") from None
    return str(name)


def _secrets() -> list[str]:
    """Every credential kaggle 2.x (and wandb) may be using here: env values, token files, kaggle.json's key."""
    found = [os.environ.get(k, "") for k in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "WANDB_API_KEY")]
    token = os.environ.get("KAGGLE_API_TOKEN", "")
    files = [Path.home() / ".kaggle" / "access_token", Path.home() / ".kaggle" / "access_token.txt"]
    if token and len(token) < 4096 and Path(token).is_file():
        files.append(Path(token))
    for f in files:
        try:
            found.append(f.read_text().strip())
        except OSError:
            pass
    for cfg in {Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle") / "kaggle.json",
                Path.home() / ".kaggle" / "kaggle.json"}:
        try:
            found.append(str(json.loads(cfg.read_text()).get("key", "")))
        except (OSError, ValueError, AttributeError):
            pass
    return sorted({s for s in found if len(s) >= 8}, key=len, reverse=True)


def scrub(text: str) -> str:
    """``text`` with every credential value replaced by ``***``."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text
