"""The front door shared by every command line: argument checks and one-line errors.

Each entry point (``python -m reprolib``, ``python -m reprolib.world``, ``python -m reprolib.data.generator``,
``python -m reprolib.experiments.smoke``, ``python -m reprolib.kaggle``) builds its parser with
:class:`ArgumentParser`, checks every value before anything is written, and runs its ``main`` through :func:`run`,
which turns the project's errors into one line on stderr:

* bad usage — an argparse error, a :class:`UsageError` or another ``ValueError`` — prints
  ``error: <argument>: <problem>`` and exits 2;
* bad data — :class:`reprolib.io.ReprolibDataError`, or an ``OSError`` on a named file — prints
  ``error: <path>: <problem>`` and exits 1.

Both are the user's to fix, so neither shows a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from reprolib.io import ReprolibDataError

EXIT_USAGE = 2
EXIT_DATA = 1


class UsageError(ValueError):
    """A bad command-line value: ``argument`` is the option (``--size``) and ``problem`` says what is wrong."""

    def __init__(self, argument: str, problem: str):
        self.argument, self.problem = argument, problem
        super().__init__(f"{argument}: {problem}")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`UsageError` (one line via :func:`run`)
    instead of printing the usage block; ``--help`` is unchanged. Sub-parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        m = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if m:
            raise UsageError(m.group(1), m.group(2))
        m = re.match(r"the following arguments are required: (.*)", message)
        if m:
            raise UsageError(m.group(1), f"required (see {self.prog} --help)")
        m = re.match(r"unrecognized arguments: (.*)", message)
        if m:
            raise UsageError(m.group(1), f"unrecognized argument (see {self.prog} --help)")
        raise UsageError(self.prog, message)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(exc: BaseException) -> tuple[str, int] | None:
    """(``error: …`` line, exit code) for the errors a user can fix; None for anything else (a bug)."""
    if isinstance(exc, ReprolibDataError):
        return f"error: {_one_line(str(exc))}", EXIT_DATA
    if isinstance(exc, ValueError):  # UsageError, and value checks of the library functions a CLI calls
        return f"error: {_one_line(str(exc))}", EXIT_USAGE
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"error: {exc.filename}: {_one_line(exc.strerror or str(exc))}", EXIT_DATA
    return None


def run(main: Callable[[], Any]) -> int:
    """Call ``main()``; return its exit code (an int it returns, else 0), or print the one-line error of a
    user-fixable failure and return that failure's code."""
    try:
        code = main()
    except (ValueError, OSError) as exc:
        found = error_line(exc)
        if found is None:
            raise
        line, code = found
        print(line, file=sys.stderr)
        return code
    return code if isinstance(code, int) else 0  # main() may return its result (e.g. a path): success


# --------------------------------------------------------------------------------------------------------
# argument types and checks (argparse ``type=`` functions raise ArgumentTypeError → "error: --opt: ...")


def count(text: str) -> int:
    """A non-negative integer (an image count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_int(text: str) -> int:
    """A strictly positive integer (a size in pixels)."""
    value = count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1, got 0")
    return value


def size_hw(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``256x512``), both positive."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 256x512, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    return h, w


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def check_choice(argument: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else :class:`UsageError` with a "did you mean" suggestion."""
    choices = list(choices)
    if value in choices:
        return value
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UsageError(argument, f"unknown value {value!r}; {hint}valid: {', '.join(choices)}")


def check_output_dir(argument: str, path: str | os.PathLike) -> Path:
    """``path`` if it is (or can become) a writable folder: a file in its place, or a file or an unwritable
    folder as its nearest existing ancestor, is a :class:`UsageError` now rather than after the work."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise UsageError(argument, f"{path} {what}; expected a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(argument, f"{path}: folder {probe} is not writable")
    return path
