"""Kaggle bundle and a push/pull round trip with the real kaggle CLI against a local fake API server."""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from reprolib import kaggle as rk

SECRET = "s3cr3t-kaggle-key-0123456789"


def _tiny_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Table X"),
        nbformat.v4.new_code_cell("profile = 'demo'\nseeds = [0]", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(profile, seeds)"),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="stale output")]
    nbformat.write(nb, path)
    return path


def test_bundle_metadata_and_notebook(tmp_path: Path) -> None:
    nb = _tiny_notebook(tmp_path / "t.ipynb")
    out = rk.build_bundle(
        nb, tmp_path / "bundle", slug="reprolib-table4", username="alice",
        parameters={"profile": "full", "seeds": [0, 1, 2]}, dataset_sources=["alice/cityscapes"],
    )
    meta = json.loads((out / rk.KERNEL_METADATA).read_text())
    assert meta["id"] == "alice/reprolib-table4"
    assert meta["kernel_sources"] == ["alice/reprolib-table4"]  # self-reference → resume from previous output
    assert meta["dataset_sources"] == ["alice/cityscapes"]
    assert meta["enable_gpu"] is True and meta["enable_internet"] is True
    assert rk.slugify(meta["title"]) == "reprolib-table4"
    bundled = nbformat.read(out / meta["code_file"], as_version=4)
    sources = [c.source for c in bundled.cells]
    assert sources[0].startswith("REPROLIB_ZIP = ")
    inj = [c for c in bundled.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(inj) == 1 and "profile = 'full'" in inj[0].source and "seeds = [0, 1, 2]" in inj[0].source
    # injected right after the parameters cell, and no stale outputs travel
    tags = [c.metadata.get("tags", []) for c in bundled.cells]
    assert tags.index(["injected-parameters"]) == tags.index(["parameters"]) + 1
    assert all(not c.get("outputs") for c in bundled.cells if c.cell_type == "code")
    # the embedded zip really contains the package
    import io
    import zipfile
    zipped = sources[0].split("\n", 1)[0][len("REPROLIB_ZIP = "):]
    names = zipfile.ZipFile(io.BytesIO(base64.b64decode(eval(zipped)))).namelist()
    assert "reprolib/kaggle.py" in names and "pyproject.toml" in names


def test_bundle_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(rk.ReprolibDataError, match="notebook not found"):
        rk.build_bundle(tmp_path / "missing.ipynb", tmp_path / "b", slug="abcde", username="u")
    nb = _tiny_notebook(tmp_path / "t.ipynb")
    with pytest.raises(ValueError, match="owner/dataset-slug"):
        rk.build_bundle(nb, tmp_path / "b", slug="abcde", username="u", dataset_sources=["nope"])
    with pytest.raises(ValueError, match="slugify"):
        rk.build_bundle(nb, tmp_path / "b", slug="abcde", username="u", title="Something Else")


class _FakeKaggle(BaseHTTPRequestHandler):
    calls: list[tuple[str, dict, str]] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _reply(self, obj: dict | bytes, ctype: str = "application/json") -> None:
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        method = self.path.rsplit("/", 1)[-1]
        self.calls.append((method, body, self.headers.get("Authorization", "")))
        if method == "SaveKernel":
            self._reply({"ref": "/code/alice/reprolib-table4", "url": "http://localhost/code/alice/reprolib-table4",
                         "versionNumber": 3, "error": "", "kernelId": 42})
        elif method == "ListKernelSessionOutput":
            self._reply({"files": [{"url": "http://localhost/files/last.ckpt", "fileName": "runs/last.ckpt"},
                                   {"url": "http://localhost/files/table4.csv", "fileName": "table4.csv"}],
                         "log": "[{\"data\": \"done\"}]", "nextPageToken": ""})
        elif method == "GetKernelSessionStatus":
            self._reply({"status": "COMPLETE", "failureMessage": ""})
        else:
            self.send_error(404)

    def do_GET(self) -> None:  # noqa: N802
        self.calls.append(("GET", {}, self.path))
        if self.path == "/files/last.ckpt":
            self._reply(b"CKPT-BYTES", "application/octet-stream")
        elif self.path == "/files/table4.csv":
            self._reply(b"variant,metric,value\nfull,ap,0.5\n", "text/csv")
        else:
            self.send_error(404)


def _port80_free() -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 80))
            return True
        except OSError:
            return False


@pytest.fixture()
def fake_kaggle(monkeypatch, tmp_path):
    if not _port80_free():
        pytest.fail("port 80 on localhost is needed for the fake Kaggle API (KAGGLE_API_ENVIRONMENT=LOCALHOST)")
    _FakeKaggle.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 80), _FakeKaggle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kcfg"))
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    yield _FakeKaggle
    server.shutdown()
    server.server_close()


def test_push_and_pull_round_trip(fake_kaggle, tmp_path: Path) -> None:
    nb = _tiny_notebook(tmp_path / "t.ipynb")
    bundle = rk.build_bundle(nb, tmp_path / "bundle", slug="reprolib-table4",
                             parameters={"profile": "full"}, dataset_sources=["alice/cityscapes"])
    out = rk.push(bundle)
    assert "successfully" in out
    saves = [c for c in fake_kaggle.calls if c[0] == "SaveKernel"]
    assert len(saves) == 1
    body, auth = saves[0][1], saves[0][2]
    assert body["slug"] == "alice/reprolib-table4"
    assert body["kernelDataSources"] == ["alice/reprolib-table4"]
    assert body["datasetDataSources"] == ["alice/cityscapes"]
    assert body["enableGpu"] is True and body["enableInternet"] is True
    assert body["kernelType"] == "notebook" and body["language"] == "python"
    assert json.loads(body["text"])["cells"][0]["source"].startswith("REPROLIB_ZIP")
    assert auth.startswith("Basic ") and base64.b64decode(auth[6:]).decode() == f"alice:{SECRET}"

    files = rk.pull("alice/reprolib-table4", tmp_path / "results")
    assert (tmp_path / "results" / "runs" / "last.ckpt").read_bytes() == b"CKPT-BYTES"
    assert (tmp_path / "results" / "table4.csv").read_text().startswith("variant,metric")
    assert len(files) >= 2
    # the credential never lands in anything we wrote
    for p in list(bundle.rglob("*")) + list((tmp_path / "results").rglob("*")):
        if p.is_file():
            assert SECRET not in p.read_text(errors="ignore")
