"""A real JupyterLab server and a headless chromium page on it (Debian's chromium + playwright).

Shared by ``tests/test_browser.py`` and ``docs/screenshots.py``: one way to start the lab, open
a notebook and Run All. Playwright drives ``/usr/bin/chromium``; it never downloads a browser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sales_stream.infra.ports import free_port
from sales_stream.infra.process import terminate, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[1]
TOKEN = "browser-test-token"
RUN_ALL_TIMEOUT_S = 240

_OPEN = """
async (path) => {
  const app = window.jupyterapp;
  const widget = await app.commands.execute('docmanager:open', {path});
  await widget.context.ready;
  await widget.sessionContext.ready;
  app.shell.activateById(widget.id);
  return widget;
}
"""
_OPEN_AND_RUN = f"""
async ({{path, timeoutMs}}) => {{
  const timer = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`Run All of ${{path}} timed out`)), timeoutMs));
  const widget = await Promise.race([({_OPEN})(path), timer]);
  await Promise.race([window.jupyterapp.commands.execute('notebook:run-all-cells'), timer]);
  return widget.id;
}}
"""
_OUTPUTS = """
(id) => {
  const widget = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.id === id);
  return widget.content.widgets.map(c => c.model.type === 'code' ? c.model.outputs.toJSON() : []);
}
"""
_SHOW_CELL = f"""
async ({{path, marker}}) => {{
  const timer = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`opening ${{path}} timed out`)), 60000));
  const widget = await Promise.race([({_OPEN})(path), timer]);
  const notebook = widget.content;
  const index = notebook.widgets.findIndex(c => c.model.sharedModel.getSource().includes(marker));
  notebook.activeCellIndex = index;
  await notebook.scrollToCell(notebook.widgets[index]);
  return widget.id;
}}
"""


def lab_env(root: Path, state: Path) -> dict[str, str]:
    """The environment of a lab on ``root`` whose services keep their state in ``state``."""
    settings_dir = root / "settings"
    news = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false"}))  # no « notified about news? » toast
    return {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(state),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
    }


class Lab:
    """A JupyterLab server on ``root`` (loopback, fixed token), logging to ``log``."""

    def __init__(self, root: Path, env: dict[str, str], *, log: Path) -> None:
        self.root = root
        self.runtime_dir = Path(env["JUPYTER_RUNTIME_DIR"])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("w") as log_file:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("jupyter")),
                    "lab",
                    "--allow-root",
                    "--no-browser",
                    "--expose-app-in-browser",
                    f"--ServerApp.port={self.port}",
                    "--ServerApp.ip=127.0.0.1",
                    f"--IdentityProvider.token={TOKEN}",
                    f"--ServerApp.root_dir={root}",
                    "--LabApp.news_url=None",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                    f"--LabApp.workspaces_dir={root / 'workspaces'}",
                    "--LabApp.extension_manager=readonly",
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        if not wait_until(self._up, timeout=60, interval=0.5):
            self.close()
            raise RuntimeError(f"JupyterLab did not start (log: {log})")

    def _up(self) -> bool:
        try:
            self.api("GET", "/api/status")
        except OSError:
            return False
        return True

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_of(self, notebook: str) -> str:
        """The id of the kernel of ``notebook``'s session."""
        for session in self.api("GET", "/api/sessions"):
            if session["path"].endswith(notebook):
                return session["kernel"]["id"]
        raise AssertionError(f"no session for {notebook}")

    def run_in(self, notebook: str, code: str) -> str:
        """Run ``code`` in ``notebook``'s kernel (a second client) and return its stdout."""
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient(
            connection_file=str(self.runtime_dir / f"kernel-{self.kernel_of(notebook)}.json")
        )
        client.load_connection_file()
        client.start_channels()
        out: list[str] = []

        def collect(message: dict[str, Any]) -> None:
            if message["msg_type"] == "stream":
                out.append(message["content"]["text"])

        try:
            reply = client.execute_interactive(code, timeout=60, output_hook=collect)
        finally:
            client.stop_channels()
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)

    def close(self) -> None:
        """Stop the server (and with it the kernels), then reap it."""
        terminate(self.process.pid)
        self.process.wait(timeout=10)


@contextmanager
def lab_page(lab: Lab, *, width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless chromium page on ``lab``, JupyterLab started."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{lab.url}/lab?token={TOKEN}")
            page.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
            page.evaluate("window.jupyterapp.started")
            yield page
        finally:
            browser.close()


def run_all(page: Any, notebook: str, *, timeout_s: float = RUN_ALL_TIMEOUT_S) -> str:
    """Open ``notebook``, Run All, wait for the end; return the notebook panel's id."""
    return page.evaluate(_OPEN_AND_RUN, {"path": notebook, "timeoutMs": timeout_s * 1000})


def show_cell(page: Any, notebook: str, marker: str) -> str:
    """Bring ``notebook`` to the front, scrolled to the first cell whose source has ``marker``."""
    return page.evaluate(_SHOW_CELL, {"path": notebook, "marker": marker})


def errors(page: Any, panel: str) -> list[str]:
    """The error outputs of a notebook panel (``ename: evalue``)."""
    return [
        f"{output['ename']}: {output['evalue']}"
        for outputs in page.evaluate(_OUTPUTS, panel)
        for output in outputs
        if output.get("output_type") == "error"
    ]
