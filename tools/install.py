"""Install packages into this interpreter's environment with uv, as pip is configured; pip when uv fails.

    python tools/install.py -r requirements.txt      # what `make setup` runs, with the venv's python
    python tools/install.py --no-deps -e .

The arguments are ``pip install``'s. Why uv: it resolves and unpacks wheels in parallel, so on 2 cores the pinned
stack (6 GB in the venv, most of it CUDA torch and its libraries) installs in ~16 s where pip takes ~80 s, from the
same local wheels (measured 2026-12-04 on this project's Intel machine: fresh venvs, `pip install -r` 78 s,
`uv pip install -r` 15.6 s with an empty uv cache). uv does not read pip's configuration, so the indexes, find-links,
constraints, trusted hosts and certificate pip would use (its config files and ``PIP_*`` variables, as
``pip config list`` shows them) are passed on, and ``--index-strategy unsafe-best-match`` keeps pip's rule of the
best version across all indexes (uv's default takes a package from the first index that has it). uv itself is
pip-installed at :data:`UV` into the same environment; if that or uv's install fails, pip installs instead, as
``make setup`` did before, so the result never depends on uv being available.

uv leaves the bytecode to the first import, which compiles only the modules a process uses (pip and
``uv --compile-bytecode`` compile every module of the 6 GB stack at install: 16 s of a 25 s ``make setup`` here,
measured 2026-12-05 on an AMD EPYC of this project, against 9.5 s without). The Makefile lets its commands write it
(``unexport PYTHONDONTWRITEBYTECODE``, which these machines set): else each new process would compile torch,
Lightning and pandas from source again (importing the stack 12.4 s a process against 5.4 s with the bytecode). The
first ``make table4`` pays ~11 s for what its kernel imports, so it is ~5 s sooner in all; ``make test``'s dozens
of processes share what the first wrote.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

UV = "uv==0.13.9"

#: pip option → how uv takes it: a flag repeated per value, or a bare flag for a true boolean
_LIST_FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
               "constraint": "--constraint", "trusted-host": "--allow-insecure-host"}
_BOOL_FLAGS = {"no-index": "--no-index"}

Runner = Callable[[Sequence[str], Mapping[str, str]], int]


def parse_pip_config(listing: str) -> dict[str, str]:
    """The options pip's ``install`` would use, from ``pip config list`` output (``section.key='value'`` lines).

    Environment variables (section ``:env:``) override the ``install`` section, which overrides ``global``, as in
    pip. Values stay strings; a list option holds its entries separated by whitespace.
    """
    rank = {"global": 0, "install": 1, ":env:": 2}
    chosen: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        name, sep, raw = line.partition("=")
        section, dot, key = name.strip().rpartition(".")
        if not sep or not dot or section not in rank:
            continue
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip().strip("'\"")
        if key not in chosen or rank[section] >= chosen[key][0]:
            chosen[key] = (rank[section], str(value))
    return {key: value for key, (_, value) in chosen.items()}


def uv_arguments(options: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv flags and environment variables for pip's options (see :func:`parse_pip_config`); others are ignored."""
    flags: list[str] = []
    for key, flag in _LIST_FLAGS.items():
        seen: list[str] = []
        for value in options.get(key, "").split():
            if value not in seen:
                seen.append(value)
                flags += [flag, value]
    for key, flag in _BOOL_FLAGS.items():
        if options.get(key, "").strip().lower() in ("1", "true", "yes", "on"):
            flags.append(flag)
    env = {"SSL_CERT_FILE": options["cert"]} if options.get("cert") else {}
    return flags, env


def _run(cmd: Sequence[str], env: Mapping[str, str]) -> int:
    return subprocess.run(list(cmd), env={**os.environ, **env}).returncode


def install(args: Sequence[str], python: str = sys.executable, run: Runner = _run,
            pip_config: str | None = None) -> str:
    """``pip install args`` into ``python``'s environment, with uv when it can be had; returns "uv" or "pip".

    Raises ``SystemExit`` naming the command when pip fails too.
    """
    started = time.perf_counter()
    uv = str(Path(python).parent / "uv")
    if pip_config is None:
        pip_config = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                                    text=True).stdout
    flags, env = uv_arguments(parse_pip_config(pip_config))
    have_uv = Path(uv).is_file() or run([python, "-m", "pip", "install", "-q", UV], {}) == 0
    if have_uv:
        # no --compile-bytecode: the first import compiles what is used (see the module docstring)
        cmd = [uv, "pip", "install", "--quiet", "--python", python, "--index-strategy",
               "unsafe-best-match", *flags, *args]
        if run(cmd, env) == 0:
            print(f"installed with uv in {time.perf_counter() - started:.0f} s: {' '.join(args)}", flush=True)
            return "uv"
        print(f"uv could not install {' '.join(args)}; installing with pip instead", file=sys.stderr, flush=True)
    else:
        print(f"{UV} could not be installed; installing with pip instead", file=sys.stderr, flush=True)
    for cmd in ([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], [python, "-m", "pip", "install", "-q",
                                                                               *args]):
        if run(cmd, {}) != 0:
            raise SystemExit(f"install failed: {' '.join(cmd)}")
    return "pip"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    install(sys.argv[1:])
