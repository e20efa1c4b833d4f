"""Kaggle bundle and a push/pull round trip with the real kaggle CLI against a local fake API server."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from reprolib import kaggle as rk

SECRET = "s3cr3t-kaggle-key-0123456789"
ROOT = Path(__file__).resolve().parents[1]


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
    assert "reprolib/kaggle/__init__.py" in names and "pyproject.toml" in names


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
    save_reply: dict = {}  # overrides of the SaveKernel answer (a failed push)

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
                         "versionNumber": 3, "error": "", "kernelId": 42, **self.save_reply})
        elif method == "ListKernelSessionOutput":
            self._reply({"files": [{"url": "http://localhost/files/last.ckpt", "fileName": "runs/last.ckpt"},
                                   {"url": "http://localhost/files/table4.csv", "fileName": "table4.csv"},
                                   {"url": "http://localhost/files/table4.csv", "fileName": "results/table4/table4.csv"},
                                   {"url": "http://localhost/files/status.json", "fileName": "results/table4/status.json"},
                                   {"url": "http://localhost/files/last.ckpt",
                                    "fileName": "data/demo/runs/r/checkpoints/last.ckpt"}],
                         "log": "[{\"data\": \"done\"}]", "nextPageToken": ""})
        elif method == "GetKernelSessionStatus":
            self._reply({"status": "COMPLETE", "failureMessage": ""})
        elif method == "IntrospectToken":  # an access token's owner (token-only credentials)
            self._reply({"active": body.get("token") == "tok-alice-0123456789", "username": "alice"})
        else:
            self.send_error(404)

    def do_GET(self) -> None:  # noqa: N802
        self.calls.append(("GET", {}, self.path))
        if self.path == "/files/last.ckpt":
            self._reply(b"CKPT-BYTES", "application/octet-stream")
        elif self.path == "/files/table4.csv":
            self._reply(b"variant,metric,value\nfull,ap,0.5\n", "text/csv")
        elif self.path == "/files/status.json":
            self._reply({"table": "table4", "runs_total": 1, "runs_finished": 1, "complete": True})
        else:
            self.send_error(404)


def _port80_free() -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is fine
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
    _FakeKaggle.save_reply = {}
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


def test_push_errors_fail_loudly(fake_kaggle, tmp_path: Path, monkeypatch) -> None:
    """kaggle 2.2.5 prints these and exits 0: push must raise, with the reason, and leak no key."""
    nb = _tiny_notebook(tmp_path / "t.ipynb")
    bundle = rk.build_bundle(nb, tmp_path / "bundle", slug="reprolib-table4")
    fake_kaggle.save_reply = {"error": f"Notebook not found (key {SECRET})", "versionNumber": 0}
    with pytest.raises(RuntimeError, match="Kernel push error: Notebook not found") as err:
        rk.push(bundle)
    assert SECRET not in str(err.value) and "***" in str(err.value)
    fake_kaggle.save_reply = {"invalidKernelSources": ["alice/reprolib-table4"]}
    with pytest.raises(RuntimeError, match="not valid kernel sources") as err:
        rk.push(bundle)
    # version 3 exists and runs without the previous output: the message says so, and to stop it
    assert "version 3 WAS created" in str(err.value) and "stop it at http://localhost/code/alice/reprolib-table4" \
        in str(err.value)
    # the first version cannot mount itself (there is no earlier version): that refusal alone is no error
    fake_kaggle.save_reply = {"invalidKernelSources": ["alice/reprolib-table4"], "versionNumber": 1}
    assert "Kernel version 1 successfully pushed" in rk.push(bundle)
    # but another refused source on version 1 is
    fake_kaggle.save_reply = {"invalidKernelSources": ["alice/reprolib-table4"], "versionNumber": 1,
                              "invalidDatasetSources": ["alice/synboost-data"]}
    with pytest.raises(RuntimeError, match=r"version 1 WAS created(.|\n)*not valid dataset sources.*synboost-data"):
        rk.push(bundle)
    # and the command line exits non-zero
    fake_kaggle.save_reply = {"error": "quota exceeded"}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notebooks").mkdir()
    proc = subprocess.run([sys.executable, "-m", "reprolib.kaggle", "push", "--table", "table4"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0 and "quota exceeded" in proc.stderr


def test_push_output_check_without_a_server() -> None:
    ok = "Kernel version 2 successfully pushed.  Please check progress at https://www.kaggle.com/code/a/b"
    assert rk.check_push_output(ok, "a/b") == ok
    with pytest.raises(RuntimeError, match="no 'successfully pushed' line"):
        rk.check_push_output("", "a/b")
    self_ref = "The following are not valid kernel sources and could not be added to the kernel: ['a/b']\n"
    assert rk.check_push_output(self_ref + ok.replace("version 2", "version 1"), "a/b")
    with pytest.raises(RuntimeError, match="version 2 WAS created"):  # an existing kernel that cannot mount itself
        rk.check_push_output(self_ref + ok, "a/b")
    with pytest.raises(RuntimeError, match="version 1 WAS created"):  # another kernel's id refused
        rk.check_push_output(self_ref.replace("a/b", "a/c") + ok.replace("version 2", "version 1"), "a/b")


def test_push_sends_accelerator_and_pinned_image(fake_kaggle, tmp_path: Path) -> None:
    nb = _tiny_notebook(tmp_path / "t.ipynb")
    bundle = rk.build_bundle(nb, tmp_path / "bundle", slug="reprolib-table4", accelerator="NvidiaTeslaT4")
    meta = json.loads((bundle / rk.KERNEL_METADATA).read_text())
    assert meta["machine_shape"] == "NvidiaTeslaT4" and meta["docker_image_pinning_type"] == "original"
    rk.push(bundle)
    body = [c for c in fake_kaggle.calls if c[0] == "SaveKernel"][0][1]
    assert body["machineShape"] == "NvidiaTeslaT4" and body["dockerImagePinningType"] == "original"


def test_pull_fetches_only_results_where_the_report_reads(fake_kaggle, tmp_path: Path) -> None:
    files = rk.pull("alice/reprolib-table4", tmp_path / "results" / "table4", table="table4", work=tmp_path / "b")
    assert files == [tmp_path / "results" / "table4" / n for n in ("status.json", "table4.csv")]
    assert files[1].read_text().startswith("variant,metric")
    downloads = [c[2] for c in fake_kaggle.calls if c[0] == "GET"]
    assert downloads == ["/files/table4.csv", "/files/status.json"]  # no checkpoint was downloaded


def test_bundle_carries_tracked_files_and_pinned_installs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "reprolib").mkdir(parents=True)
    (root / "reprolib" / "__init__.py").write_text("")
    (root / "requirements.txt").write_text("torch==2.0\nlightning==2.6.6\ntorchmetrics==1.9.0\n"
                                           "cityscapesscripts==2.3.0\nnatsort==8.4.0\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "reprolib/__init__.py"], check=True)
    (root / "reprolib" / "notes.env").write_text("WANDB_API_KEY=stray")  # untracked: must not travel
    assert rk.bundle_files(root) == ["requirements.txt", "reprolib/__init__.py"]
    nb = _tiny_notebook(tmp_path / "t.ipynb")
    out = rk.build_bundle(nb, tmp_path / "bundle", slug="reprolib-table4", username="alice", package_root=root)
    first = nbformat.read(out / "reprolib-table4.ipynb", as_version=4).cells[0].source
    assert "KERNEL_PINS = ['lightning==2.6.6', 'torchmetrics==1.9.0', 'cityscapesscripts==2.3.0', 'natsort==8.4.0']" in first
    assert "-c" in first and "IMAGE_PINNED" in first and "raise RuntimeError" in first and "-e" not in first.split()
    (root / "requirements.txt").write_text("lightning\n")
    with pytest.raises(ValueError, match="pins none"):
        rk.build_bundle(nb, tmp_path / "b2", slug="reprolib-table4", username="alice", package_root=root)


def test_bootstrap_stops_with_a_clear_message_when_pip_fails(tmp_path: Path) -> None:
    nb = _tiny_notebook(tmp_path / "t.ipynb")
    out = rk.build_bundle(nb, tmp_path / "bundle", slug="reprolib-table4", username="alice")
    code = nbformat.read(out / "reprolib-table4.ipynb", as_version=4).cells[0].source
    code = code.replace("KERNEL_PINS = [", "KERNEL_PINS = ['reprolib-no-such-package==0.0.1', ", 1)
    (tmp_path / "boot.py").write_text(code)
    proc = subprocess.run([sys.executable, "boot.py"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode != 0
    assert "reprolib: could not install reprolib-no-such-package==0.0.1" in proc.stderr
    assert "torch==" in proc.stderr  # the image's torch was held, not replaced


def test_scrub_covers_every_kaggle_credential(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "access_token").write_text("file-token-abcdef123456\n")
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "alice", "key": "json-key-0123456789"}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "env-token-zyxwvut98765")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    text = f"a {SECRET} b env-token-zyxwvut98765 c file-token-abcdef123456 d json-key-0123456789"
    assert rk.scrub(text) == "a *** b *** c *** d ***"


def test_scrub_covers_oauth_and_notebook_tokens(tmp_path: Path, monkeypatch) -> None:
    """`kaggle auth login` keeps OAuth tokens in credentials.json; a Kaggle notebook points KAGGLE_API_V1_TOKEN
    at a token file; a token may sit in $KAGGLE_CONFIG_DIR."""
    home, cfg = tmp_path / "home", tmp_path / "cfg"
    (home / ".kaggle").mkdir(parents=True)
    cfg.mkdir()
    (home / ".kaggle" / "credentials.json").write_text(json.dumps(
        {"refresh_token": "refresh-0123456789abc", "access_token": "oauth-access-9876543210"}))
    (cfg / "access_token").write_text("cfgdir-token-55554444\n")
    (tmp_path / "v1").write_text("notebook-token-31415926\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(cfg))
    monkeypatch.setenv("KAGGLE_API_V1_TOKEN", str(tmp_path / "v1"))
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_KEY", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    text = "a refresh-0123456789abc b oauth-access-9876543210 c cfgdir-token-55554444 d notebook-token-31415926"
    assert rk.scrub(text) == "a *** b *** c *** d ***"


def test_username_of_a_token_only_login(fake_kaggle, tmp_path: Path, monkeypatch) -> None:
    """README: a token alone is enough; the kernel id's user name then comes from the CLI (it asks Kaggle)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-alice-0123456789")
    assert rk.kaggle_username() == "alice"
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-revoked-000000000")
    with pytest.raises(rk.ReprolibDataError, match="no Kaggle credentials"):
        rk.kaggle_username()


def test_data_and_checkpoints_travel_as_datasets(tmp_path: Path) -> None:
    import argparse

    args = argparse.Namespace(profile="full", table="table4", max_time="00:11:00:00", wandb="offline", datasets="",
                              data="alice/synboost-data", checkpoints_dataset="alice/synboost-weights",
                              checkpoints="deepwv3plus=cityscapes_best.pth,ccfpse-generator=latest_net_G.pth")
    params, datasets = rk.push_parameters(args)
    assert datasets == ["alice/synboost-data", "alice/synboost-weights"]
    # in the kernel: either mount layout, data root = the folder holding cityscapes/
    kin = tmp_path / "input"
    (kin / "datasets" / "alice" / "synboost-data" / "root" / "cityscapes").mkdir(parents=True)
    (kin / "synboost-weights").mkdir(parents=True)
    env = {"__builtins__": __builtins__}
    code = f"data_root = {params['data_root']!r}\ncheckpoints = {params['checkpoints']!r}\n"
    code = code.replace("mounted_dataset(", f"mounted_dataset(kaggle_input={str(kin)!r}, ref=")
    exec(code, env)
    assert env["data_root"] == str(kin / "datasets" / "alice" / "synboost-data" / "root")
    assert env["checkpoints"] == {"deepwv3plus": str(kin / "synboost-weights" / "cityscapes_best.pth"),
                                  "ccfpse-generator": str(kin / "synboost-weights" / "latest_net_G.pth")}
    with pytest.raises(rk.ReprolibDataError, match="not mounted"):
        rk.mounted_dataset("alice/other", kaggle_input=kin)
    with pytest.raises(ValueError, match="kaggle datasets create"):
        rk.push_parameters(argparse.Namespace(**{**vars(args), "data": "/local/datasets"}))
    # a budget the kernel cannot parse, or past Kaggle's 12 h stop (killed before it saves its output): refused here
    with pytest.raises(ValueError, match=r"--max-time: max_time must be 'DD:HH:MM:SS'"):
        rk.push_parameters(argparse.Namespace(**{**vars(args), "max_time": "abc"}))
    with pytest.raises(ValueError, match=r"past Kaggle's 12 h session"):
        rk.push_parameters(argparse.Namespace(**{**vars(args), "max_time": "2:00:00:00"}))
    assert rk.push_parameters(argparse.Namespace(**{**vars(args), "max_time": "00:12:00:00"}))[0]["max_time"]
    with pytest.raises(ValueError, match=r"--checkpoints must be name=file"):  # not a weight silently left out
        rk.push_parameters(argparse.Namespace(**{**vars(args), "checkpoints": "deepwv3plus=a.pth,latest_net_G.pth"}))


def _fake_output(monkeypatch, status: dict | None, csv: str = "variant,profile\nfull,full\n") -> None:
    """`kaggle kernels output` of a kernel whose results/table4/ holds this CSV and, unless None, this status.json."""
    from reprolib.kaggle import remote

    def fake_cli(args: list[str]) -> str:
        out = Path(args[args.index("-p") + 1]) / "results" / "table4"
        out.mkdir(parents=True)
        (out / "table4.csv").write_text(csv)
        if status is not None:
            (out / "status.json").write_text(json.dumps(status))
        return ""

    monkeypatch.setattr(remote, "_run_cli", fake_cli)


def test_pull_refuses_an_unfinished_table_and_replaces_the_folder_whole(tmp_path: Path, monkeypatch) -> None:
    """kaggle-pull moved whatever the kernel's last output held over results/<table>/, file by file: a session's
    partial table (6 of 40 runs; "in_progress" after a crash, which makes `make report` rerun it locally) replaced a
    finished local one without a word, and stale local files stayed beside the pulled ones."""
    dest = tmp_path / "results" / "table4"
    dest.mkdir(parents=True)
    (dest / "table4.csv").write_text("variant,profile\nfull,demo\n")
    (dest / "stale.png").write_text("an older figure")
    kw = dict(table="table4", work=tmp_path / "b", profile="full")  # full results over demo ones: asked for
    for status, why in (({"table": "table4", "runs_total": 40, "runs_finished": 6, "complete": False}, "6/40 runs"),
                        ({"table": "table4", "complete": False, "in_progress": True}, "in progress"),
                        ({"table": "table7", "complete": True}, "table7"), (None, "no readable")):
        _fake_output(monkeypatch, status)
        with pytest.raises(RuntimeError, match=why):
            rk.pull("alice/reprolib-table4", dest, **kw)
        assert (dest / "table4.csv").read_text().endswith("full,demo\n")  # untouched
    _fake_output(monkeypatch, {"table": "table4", "runs_total": 40, "runs_finished": 6, "complete": False})
    assert rk.pull("alice/reprolib-table4", dest, partial=True, **kw)  # asked for: the partial table
    _fake_output(monkeypatch, {"table": "table4", "runs_total": 40, "runs_finished": 40, "complete": True})
    files = rk.pull("alice/reprolib-table4", dest, **kw)
    assert sorted(p.name for p in files) == sorted(p.name for p in dest.iterdir()) == ["status.json", "table4.csv"]
    backup = dest.with_name("table4.before-pull")  # the local folder it replaced is kept aside
    assert (backup / "table4.csv").read_text().endswith("full,full\n")  # (the partial pull, replaced in turn)


def test_pull_takes_table2_which_writes_no_status_and_a_failed_swap_keeps_the_old_folder(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """Table 2 is pushed and pulled like the others (check_table lists it) but is a measurement: it writes table2.csv
    and table2.json, never a status.json, so every pull of it was refused, --partial or not."""
    import os

    from reprolib.kaggle import remote

    def fake_cli(args: list[str]) -> str:
        out = Path(args[args.index("-p") + 1]) / "results" / "table2"
        out.mkdir(parents=True)
        (out / "table2.csv").write_text("quantity,report,ours,unit\n")
        (out / "table2.json").write_text("{}")
        return ""

    monkeypatch.setattr(remote, "_run_cli", fake_cli)
    dest = tmp_path / "results" / "table2"
    files = rk.pull("alice/reprolib-table2", dest, table="table2", work=tmp_path / "b")
    assert sorted(p.name for p in files) == ["table2.csv", "table2.json"]
    # the new folder cannot be renamed into place: the old one is put back, not left in table2.before-pull only
    (dest / "mine.txt").write_text("local")
    real = os.replace

    def replace(src, dst):  # noqa: ANN001, ANN202
        if str(src).endswith(".pulling"):
            raise OSError("simulated")
        return real(src, dst)

    monkeypatch.setattr(remote.os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        rk.pull("alice/reprolib-table2", dest, table="table2", work=tmp_path / "b")
    assert (dest / "mine.txt").read_text() == "local"


def test_pull_refuses_results_of_another_profile(tmp_path: Path, monkeypatch) -> None:
    """Demo and full pushes share the kernel reprolib-<table>: a pull replaced the committed demo results by a full
    session's (or the other way round) without a word. It takes the local results' profile only, or the one asked
    for (make kaggle-pull PROFILE=...), and says which two differ."""
    dest = tmp_path / "results" / "table4"
    dest.mkdir(parents=True)
    (dest / "table4.csv").write_text("variant,profile\nfull,demo\n")
    (dest / "status.json").write_text('{"table": "table4", "complete": true}')  # as committed: no profile in it
    kw = dict(table="table4", work=tmp_path / "b")
    done = {"table": "table4", "runs_total": 1, "runs_finished": 1, "complete": True}
    _fake_output(monkeypatch, done)  # a full session's rows
    with pytest.raises(RuntimeError, match=r"results are profile 'full' but \S+table4/ holds profile 'demo' "
                                           r"\(nothing pulled.*make kaggle-pull TABLE=table4 PROFILE=full"):
        rk.pull("alice/reprolib-table4", dest, **kw)
    with pytest.raises(RuntimeError, match=r"profile 'full' but profile 'demo' was asked for"):
        rk.pull("alice/reprolib-table4", dest, profile="demo", **kw)
    assert (dest / "table4.csv").read_text().endswith("full,demo\n") and not dest.with_name("table4.pulling").exists()
    _fake_output(monkeypatch, done, csv="variant,profile\n")  # no rows, and a status.json without its profile
    with pytest.raises(RuntimeError, match="do not say their profile"):
        rk.pull("alice/reprolib-table4", dest, **kw)
    _fake_output(monkeypatch, {**done, "profile": "demo"}, csv="variant,profile\n")  # run_table's status says it
    assert rk.pull("alice/reprolib-table4", dest, **kw)
    _fake_output(monkeypatch, done)
    rk.pull("alice/reprolib-table4", dest, profile="full", **kw)  # asked for: full replaces demo
    assert (dest / "table4.csv").read_text().endswith("full,full\n")
    assert rk.results_profile(dest, "table4") == "full"
    rk.pull("alice/reprolib-table4", dest, **kw)  # the local results are full ones now
    from reprolib.cli import UsageError
    from reprolib.kaggle.command import main

    with pytest.raises(UsageError, match=r"--profile: unknown value 'ful'; did you mean 'full'"):
        main(["pull", "--table", "table4", "--profile", "ful", "--dest", str(dest)])
