"""Browser check of notebooks/explore.ipynb: what a user of `make lab` sees, in headless Chromium.

Starts JupyterLab on a free loopback port (fresh settings, token, runtime dir), opens a copy of the notebook
with the given parameters injected (as Papermill does), runs all cells from the Lab UI, waits for the
kernel, and saves a screenshot of the explorer panel. Chromium is Debian's ``chromium`` package, driven
over the Chrome DevTools protocol (``websocket-client``, already part of the Jupyter stack) — nothing here
downloads a browser. Prints one JSON line (what rendered) last; exits 1 when a cell failed or a panel is
missing, 2 on timeout.

    python tools/lab_check.py --work-dir data --results-dir results --profile demo --screenshot explore.png
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "reprolib-lab-check"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1500,2200")

#: JS run in the page: the Lab app object (exposed by --LabApp.expose_app_in_browser) and the open notebook
#: (found among the main-area widgets: ``currentWidget`` follows focus, which a headless page may not have)
NOTEBOOK = ("(window.jupyterapp && Array.from(window.jupyterapp.shell.widgets('main'))"
            ".find(w => w.content && w.sessionContext))")
STATE_JS = f"""(() => {{
  const nb = {NOTEBOOK};
  if (!nb || !nb.content || !nb.sessionContext) return {{ready: false}};
  const kernel = nb.sessionContext.session && nb.sessionContext.session.kernel;
  const cells = nb.content.widgets.filter(c => c.model.type === 'code');
  const outputs = cells.map(c => c.model.outputs.toJSON());
  return {{
    ready: !!kernel && kernel.connectionStatus === 'connected',
    status: kernel ? kernel.status : null,
    code_cells: cells.length,
    executed: cells.filter(c => c.model.executionCount).length,
    errors: outputs.flat().filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
    images: document.querySelectorAll('.jp-OutputArea-output img').length,
    dropdowns: document.querySelectorAll('.jp-OutputArea-output .widget-dropdown').length,
    sliders: document.querySelectorAll('.jp-OutputArea-output .widget-slider').length,
    tables: document.querySelectorAll('.jp-OutputArea-output table').length,
    widget_errors: document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets-error-widget').length,
  }};
}})()"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:  # skip events until our answer arrives
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            raise RuntimeError(f"page JS failed: {details.get('exception', {}).get('description') or details.get('text')}")
        return res.get("result", {}).get("value")

    def close(self) -> None:
        self.ws.close()


def wait_for(predicate, deadline: float, what: str, poll: float = 0.5):
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out waiting for {what}")


def prepare_notebook(folder: Path, parameters: dict) -> Path:
    """A copy of explore.ipynb with the parameters injected after its parameters cell."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(ROOT / "notebooks" / "explore.ipynb")), parameters)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "explore.ipynb"
    nbformat.write(nb, path)
    return path


def start_lab(nb_dir: Path, tmp: Path, port: int) -> subprocess.Popen:
    # fresh settings; no "get notified about news?" toast over the screenshot (and no news fetch)
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={nb_dir}", "--no-browser", f"--port={port}",
           "--ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", "--LabApp.expose_app_in_browser=True",
           "--ServerApp.port_retries=0", *(["--allow-root"] if os.geteuid() == 0 else [])]
    return subprocess.Popen(cmd, cwd=nb_dir, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "lab.log", "wb"))


def start_chromium(chromium: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    """Chromium with a fresh profile; returns (process, the DevTools http endpoint)."""
    profile = tmp / "chromium-profile"
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "chromium.log", "wb"))
    active = profile / "DevToolsActivePort"  # chromium writes its chosen port here
    deadline = time.monotonic() + 60
    port = wait_for(lambda: active.is_file() and active.read_text().split("\n")[0].strip(), deadline,
                    "Chromium's DevTools port (see chromium.log)")
    return proc, f"http://127.0.0.1:{port}"


def check(args: argparse.Namespace) -> dict:
    deadline = time.monotonic() + args.timeout
    tmp = Path(tempfile.mkdtemp(prefix="reprolib-lab-check-"))
    lab = chrome = None
    try:
        params = {"profile": args.profile, "work_dir": str(Path(args.work_dir).resolve()),
                  "results_dir": str(Path(args.results_dir).resolve()), "device": "cpu"}
        prepare_notebook(tmp / "nb", params)
        port = free_port()
        lab = start_lab(tmp / "nb", tmp, port)
        base = f"http://127.0.0.1:{port}"

        def lab_up() -> bool:
            if lab.poll() is not None:
                raise RuntimeError("JupyterLab exited:\n" + (tmp / "lab.log").read_text()[-3000:])
            try:
                req = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {TOKEN}"})
                with urllib.request.urlopen(req, timeout=5):
                    return True
            except OSError:
                return False

        wait_for(lab_up, deadline, "JupyterLab to answer")
        chrome, devtools = start_chromium(args.chromium, tmp)
        pages = json.loads(urllib.request.urlopen(f"{devtools}/json/list", timeout=10).read())
        page = next(p for p in pages if p.get("type") == "page")
        cdp = DevTools(page["webSocketDebuggerUrl"])
        try:
            cdp.call("Emulation.setDeviceMetricsOverride", width=1500, height=2200, deviceScaleFactor=1, mobile=False)
            cdp.call("Page.navigate", url=f"{base}/lab/tree/explore.ipynb?token={TOKEN}")
            wait_for(lambda: (cdp.js(STATE_JS) or {}).get("ready"), deadline, "the notebook and its kernel in Lab")
            wait_for(lambda: cdp.js(STATE_JS).get("status") == "idle", deadline, "the kernel to be idle")
            cdp.js(f"(() => {{ const nb = {NOTEBOOK}; window.jupyterapp.shell.activateById(nb.id);"
                   " return nb.sessionContext.ready.then(() => window.jupyterapp.commands.execute("
                   "'notebook:run-all-cells')).then(() => true); })()")
            state = wait_for(lambda: (lambda s: s if s["executed"] == s["code_cells"] and s["status"] == "idle"
                                      else None)(cdp.js(STATE_JS)), deadline, "all cells to run", poll=1.0)
            # let the widget views and images render, then put the explorer panel at the top of the view
            time.sleep(3)
            cdp.js("(() => { const w = document.querySelector('.jp-OutputArea-output .widget-html h3')"
                   " || document.querySelector('.jp-OutputArea-output .widget-dropdown');"
                   " if (w) w.scrollIntoView({block: 'start'}); return true; })()")
            time.sleep(1)
            state = cdp.js(STATE_JS)
            shot = cdp.call("Page.captureScreenshot", format="png")
            import base64

            out = Path(args.screenshot)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(base64.b64decode(shot["data"]))
            state["screenshot"] = str(out)
        finally:
            cdp.close()
        return state
    finally:
        for proc in (chrome, lab):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default="data")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--screenshot", default="results/lab-check/explore.png")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for the whole check")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (Lab and Chromium logs)")
    args = ap.parse_args(argv)
    try:
        state = check(args)
    except TimeoutError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    ok = (not state["errors"] and state["executed"] == state["code_cells"] and state["images"] >= 1
          and state["dropdowns"] >= 3 and state["sliders"] >= 4 and not state["widget_errors"])
    print(json.dumps(state))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
