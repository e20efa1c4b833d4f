"""Kaggle credentials: the user name for the kernel id, and scrubbing every credential from the CLI's output.

Credentials are read by the official ``kaggle`` CLI (``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``,
``~/.kaggle/kaggle.json``, ``~/.kaggle/access_token``, ``~/.kaggle/credentials.json``); this package reads only
the *username* (to build the kernel id), never writes a credential, and scrubs every one of them from the CLI
output it shows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reprolib.io import ReprolibDataError


def kaggle_username(config_dir: str | os.PathLike | None = None) -> str:
    """The Kaggle user name (for the kernel id): ``KAGGLE_USERNAME``, ``kaggle.json``, else whoever the official
    CLI is logged in as (an access token or ``kaggle auth login``: ``kaggle config view`` asks Kaggle)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    cfg_dir = Path(config_dir or os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    cfg = cfg_dir / "kaggle.json"
    if cfg.is_file():
        try:
            return str(json.loads(cfg.read_text())["username"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ReprolibDataError(cfg, "expected a JSON object with 'username' and 'key'") from None
    name = _cli_username()
    if name:
        return name
    raise ReprolibDataError(cfg, "no Kaggle credentials: set KAGGLE_API_TOKEN (or ~/.kaggle/access_token), "
                                 "or KAGGLE_USERNAME/KAGGLE_KEY, or create this file")


def _cli_username() -> str | None:
    """The user the official CLI authenticates as, or None (no credentials, no network, no CLI)."""
    from reprolib.kaggle.remote import _run_cli  # remote imports scrub from here

    try:
        out = _run_cli(["config", "view"])
    except (OSError, RuntimeError):
        return None
    for line in out.splitlines():
        key, _, value = line.strip().lstrip("- ").partition(":")
        if key.strip() == "username" and value.strip() and value.strip() != "None":
            return value.strip()
    return None


def _secrets() -> list[str]:
    """Every credential kaggle 2.x (and wandb) may be using here: env values, token files, kaggle.json's key,
    the OAuth tokens of ``credentials.json`` (``kaggle auth login``), and a Kaggle notebook's token file."""
    found = [os.environ.get(k, "") for k in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "WANDB_API_KEY")]
    dirs = {Path.home() / ".kaggle", Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")}
    files = [d / name for d in dirs for name in ("access_token", "access_token.txt")]
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_API_V1_TOKEN"):  # a path to a token file, or (the first) the token
        value = os.environ.get(var, "")
        if value and len(value) < 4096 and Path(value).is_file():
            files.append(Path(value))
    for f in files:
        try:
            found.append(f.read_text().strip())
        except OSError:
            pass
    for d in dirs:
        for name, keys in (("kaggle.json", ("key",)), ("credentials.json", ("refresh_token", "access_token"))):
            try:
                data = json.loads((d / name).read_text())
                found.extend(str(data.get(k) or "") for k in keys)
            except (OSError, ValueError, AttributeError):
                pass
    return sorted({s for s in found if len(s) >= 8}, key=len, reverse=True)


def scrub(text: str) -> str:
    """``text`` with every credential value replaced by ``***``."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text
