"""`make setup`'s installer (tools/install.py): uv with pip's configuration passed on, pip when uv fails."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("install_tool", ROOT / "tools" / "install.py")
install_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_tool)

LISTING = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='/opt/wheels'
global.cert='/somewhere/else.pem'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
global.index-url='https://global.example/simple'
install.index-url='https://install.example/simple'
global.timeout='60'
user.something='ignored'
"""


def test_pip_config_precedence_is_pips() -> None:
    opts = install_tool.parse_pip_config(LISTING)
    assert opts["cert"] == "/etc/ssl/certs/ca-certificates.crt"  # the environment beats the config file
    assert opts["index-url"] == "https://install.example/simple"  # [install] beats [global]
    assert opts["extra-index-url"] == "file:///opt/pypi/simple file:///opt/pypi-more/simple"
    assert "something" not in opts  # not a section pip's install reads


def test_uv_gets_every_index_link_and_constraint_once() -> None:
    flags, env = install_tool.uv_arguments(install_tool.parse_pip_config(LISTING + ":env:.no-index='1'\n"))
    pairs = list(zip(flags[::2], flags[1::2], strict=False))
    assert ("--index-url", "https://install.example/simple") in pairs
    assert [v for f, v in pairs if f == "--extra-index-url"] == ["file:///opt/pypi/simple",
                                                                "file:///opt/pypi-more/simple"]
    assert flags.count("--find-links") == 1  # given twice (variable and file), passed once
    assert ("--constraint", "/etc/xdg/pip/constraints.txt") in pairs
    assert "--no-index" in flags and "60" not in flags  # options uv has no use for are left out
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}


class _Runner:
    def __init__(self, fail: tuple[str, ...] = ()):
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, cmd, env) -> int:  # noqa: ANN001
        self.calls.append(list(cmd))
        return 1 if any(word in " ".join(cmd) for word in self.fail) else 0


def test_install_uses_uv_with_pips_indexes(tmp_path: Path) -> None:
    run = _Runner()
    python = str(tmp_path / "bin" / "python")
    assert install_tool.install(["-r", "requirements.txt"], python=python, run=run, pip_config=LISTING) == "uv"
    assert run.calls[0] == [python, "-m", "pip", "install", "-q", install_tool.UV]
    uv = run.calls[1]
    assert uv[:3] == [str(tmp_path / "bin" / "uv"), "pip", "install"]
    assert uv[-2:] == ["-r", "requirements.txt"] and "unsafe-best-match" in uv and "file:///opt/pypi/simple" in uv
    assert len(run.calls) == 2


@pytest.mark.parametrize("failing", ["-q uv==", "unsafe-best-match"])
def test_install_falls_back_to_pip_when_uv_fails(tmp_path: Path, failing: str) -> None:
    run = _Runner(fail=(failing,))
    python = str(tmp_path / "python")
    assert install_tool.install(["-r", "requirements.txt"], python=python, run=run, pip_config="") == "pip"
    assert run.calls[-1] == [python, "-m", "pip", "install", "-q", "-r", "requirements.txt"]


def test_a_failed_pip_names_the_command(tmp_path: Path) -> None:
    run = _Runner(fail=("unsafe-best-match", "-q -r"))
    with pytest.raises(SystemExit, match="install failed: .* -r requirements.txt"):
        install_tool.install(["-r", "requirements.txt"], python=str(tmp_path / "python"), run=run, pip_config="")


def _wheel(folder: Path) -> None:
    """A minimal pure-Python wheel, ``tinypkg`` 1.0, found only through a find-links folder."""
    dist = "tinypkg-1.0.dist-info"
    files = {
        "tinypkg/__init__.py": "VALUE = 42\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(folder / "tinypkg-1.0-py3-none-any.whl", "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)


def test_uv_installs_from_where_pip_is_configured_to_look(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        pytest.skip("this environment was installed by pip's fallback: no uv beside its python")
    links = tmp_path / "links"
    links.mkdir()
    _wheel(links)
    # pip's configuration as the only place that names the folder: no index, find-links from the environment
    env = {**os.environ, "PIP_FIND_LINKS": str(links), "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             env=env, check=True).stdout
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "bin" / "uv").symlink_to(uv)
    python = str(venv / "bin" / "python")
    assert install_tool.install(["tinypkg==1.0"], python=python, pip_config=listing) == "uv"
    out = subprocess.run([python, "-c", "import tinypkg; print(tinypkg.VALUE)"], capture_output=True, text=True)
    assert out.stdout.strip() == "42", out.stderr


def test_the_makefiles_commands_may_write_bytecode(tmp_path: Path) -> None:
    """uv installs without compiling the stack; the first import of each module writes its bytecode, so the Makefile's
    commands run without PYTHONDONTWRITEBYTECODE (which these machines set: every process compiled torch again)."""
    probe = tmp_path / "probe.mk"
    probe.write_text("reprolib-probe:\n\t@echo \"[$$PYTHONDONTWRITEBYTECODE]\"\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", str(probe), "reprolib-probe"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
