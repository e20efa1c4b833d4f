"""`make lab`: JupyterLab starts on the notebooks with the project's kernel, and that kernel runs reprolib.

What `make lab` runs (``jupyter lab --notebook-dir=notebooks``, ``--allow-root`` as root, as in containers)
is started
headless; the test asks the server for its kernel specs, starts the project's kernel through the server's
REST API (as the Lab UI does) and runs a notebook's first code cells in that same kernel spec.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "reprolib-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {TOKEN}"},
                                 data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=20) as resp:
        return json.loads(resp.read())


@pytest.fixture()
def lab_server(tmp_path: Path):
    port = _free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--notebook-dir=notebooks", "--no-browser", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                _get(f"{base}/api/status")
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode()) from None
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_lab_serves_the_notebooks_with_the_project_kernel(lab_server: str) -> None:
    specs = _get(f"{lab_server}/api/kernelspecs")
    assert "python3" in specs["kernelspecs"]
    spec = specs["kernelspecs"]["python3"]["spec"]
    # the kernel is the project's environment, not a system Python
    # "python" is replaced by the server's own interpreter (jupyter_client), i.e. the project's environment
    assert spec["argv"][0] == "python" or Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()
    contents = _get(f"{lab_server}/api/contents")
    names = {item["name"] for item in contents["content"]}
    assert {"table4.ipynb", "table3.ipynb", "figure3.ipynb"} <= names
    with urllib.request.urlopen(f"{lab_server}/lab?token={TOKEN}", timeout=20) as resp:
        assert resp.status == 200 and b"JupyterLab" in resp.read()
    kernel = _get(f"{lab_server}/api/kernels", method="POST")
    assert kernel["name"] == "python3"


def test_project_kernel_runs_a_notebooks_setup_cells() -> None:
    """The table notebook's parameters cell and its imports run in the kernel `make lab` offers."""
    nb = nbformat.read(ROOT / "notebooks" / "table4.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    try:
        outputs: list[str] = []

        def run(src: str) -> dict:
            return kc.execute_interactive(src, timeout=120, output_hook=lambda m: outputs.append(
                m["content"].get("text", "")) if m["msg_type"] == "stream" else None)

        assert run(code[0].source)["content"]["status"] == "ok"
        imports = "\n".join(line for line in code[1].source.splitlines() if line.startswith(("from ", "import ")))
        assert run(imports)["content"]["status"] == "ok"
        assert run("import reprolib, sys; print(profile, reprolib.__file__, sys.prefix)")["content"]["status"] == "ok"
        printed = "".join(outputs)
        assert printed.startswith("demo ") and str(ROOT / "reprolib") in printed and sys.prefix in printed
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
