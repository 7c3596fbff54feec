"""The student's JupyterLab session in a real browser (Debian's chromium driven by playwright).

One JupyterLab server on copies of the notebooks, one headless chromium; in order:

1. Run All on 01 → 05 with their interactive defaults: no error output, non-empty tables;
2. Run All again on 02 and 03: one producer and one consumer thread per kernel, and the
   number of sales in MongoDB keeps growing;
3. a dashboard filter (04) changes the charts within 2 s;
4. after a page reload the charts are drawn again;
5. with 01's kernel shut down, 02–04 keep working (the supervised services belong to
   JupyterLab, not to the kernel that started them).

Skipped, with the reason, only where ``/usr/bin/chromium`` is absent (``.ci/run`` installs it).
Screenshots land in ``out/browser/`` (gitignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sales_stream import infra, notebooks
from sales_stream.config import Settings
from sales_stream.infra.embedded import free_port
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
SHOTS = REPO / "out" / "browser"
TOKEN = "browser-test-token"
RUN_ALL_TIMEOUT_S = 240

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium "
        "(apt-get install -y chromium; .ci/run does it)",
    ),
]

_OPEN_AND_RUN = """
async ({path, timeoutMs}) => {
  const app = window.jupyterapp;
  const widget = await app.commands.execute('docmanager:open', {path});
  await widget.context.ready;
  await widget.sessionContext.ready;
  app.shell.activateById(widget.id);
  const timer = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`Run All of ${path} timed out`)), timeoutMs));
  await Promise.race([app.commands.execute('notebook:run-all-cells'), timer]);
  return widget.id;
}
"""
_OUTPUTS = """
(id) => {
  const widget = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.id === id);
  return widget.content.widgets.map(c => c.model.type === 'code' ? c.model.outputs.toJSON() : []);
}
"""
_TABLE_ROWS = """
(id) => {
  const node = document.getElementById(id);
  return Array.from(node.querySelectorAll('.jp-OutputArea-output table'))
    .map(t => t.querySelectorAll('tbody tr').length);
}
"""
_SHOW_DASHBOARD = """
async (path) => {
  const app = window.jupyterapp;
  const widget = await app.commands.execute('docmanager:open', {path});
  await widget.context.ready;
  await widget.sessionContext.ready;
  app.shell.activateById(widget.id);
  const notebook = widget.content;
  const index = notebook.widgets.findIndex(
    c => c.model.sharedModel.getSource().includes('LiveDashboard('));
  notebook.activeCellIndex = index;
  await notebook.scrollToCell(notebook.widgets[index]);
  return widget.id;
}
"""
_CHARTS = """
(id) => {
  const node = document.getElementById(id);
  return Array.from(node.querySelectorAll('.js-plotly-plot'))
    .map(gd => JSON.stringify((gd.data || []).map(trace => [trace.x, trace.y])));
}
"""


class Lab:
    """A JupyterLab server and a chromium page on it."""

    def __init__(self, root: Path, env: dict[str, str], runtime_dir: Path) -> None:
        self.root = root
        self.runtime_dir = runtime_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = (SHOTS / "jupyter.log").open("w")
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
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        assert wait_until(self._up, timeout=60, interval=0.5), "JupyterLab did not start"

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


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Any]]:
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("lab")
    state = root / "state"
    for name in notebooks.NOTEBOOKS:
        shutil.copy(REPO / name, root / name)
    runtime_dir = root / "runtime"
    settings_dir = root / "settings"
    news = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))  # no « notified about news? » toast
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(state),
        "JUPYTER_RUNTIME_DIR": str(runtime_dir),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
    }
    settings = Settings(_env_file=None, mode="embedded", state_dir=state)
    SHOTS.mkdir(parents=True, exist_ok=True)
    lab = Lab(root, env, runtime_dir)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{lab.url}/lab?token={TOKEN}")
            page.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
            page.evaluate("window.jupyterapp.started")
            yield lab, page
            browser.close()
    finally:
        lab.close()
        infra.down(settings)


def run_all(page: Any, notebook: str) -> str:
    """Open ``notebook``, Run All, wait for the end; return the notebook panel's id."""
    panel = page.evaluate(_OPEN_AND_RUN, {"path": notebook, "timeoutMs": RUN_ALL_TIMEOUT_S * 1000})
    page.screenshot(path=str(SHOTS / f"{Path(notebook).stem}.png"), full_page=True)
    return panel


def errors(page: Any, panel: str) -> list[str]:
    """The error outputs of a notebook panel (``ename: evalue``)."""
    return [
        f"{output['ename']}: {output['evalue']}"
        for outputs in page.evaluate(_OUTPUTS, panel)
        for output in outputs
        if output.get("output_type") == "error"
    ]


def _count(lab: Lab, notebook: str, expression: str) -> int:
    return int(lab.run_in(notebook, f"import threading\nprint({expression})").strip())


_ALIVE = "sum(t.is_alive() and t.name == {!r} + {} for t in threading.enumerate())"
_PRODUCERS = _ALIVE.format("producer-", "settings.topic")
_PRODUCER_PANELS = _ALIVE.format("producer-panel", "''")
_CONSUMERS = _ALIVE.format("stream-", "consumer.name")  # the StreamWorker thread
_SALES = "db[SALES].estimated_document_count()"


def test_student_session(session: tuple[Lab, Any]) -> None:
    lab, page = session
    panels = {}
    for name in notebooks.NOTEBOOKS:
        panels[name] = run_all(page, name)
        assert errors(page, panels[name]) == [], f"{name} shows an error"
        rows = page.evaluate(_TABLE_ROWS, panels[name])
        assert rows, f"{name} shows no table"
        assert all(n > 0 for n in rows), f"{name} shows an empty table: rows {rows}"

    # 2. a second Run All replaces the producer and the consumer, the stream keeps flowing
    for name in ("02_producer.ipynb", "03_consumer.ipynb"):
        panels[name] = run_all(page, name)
        assert errors(page, panels[name]) == [], f"{name} shows an error after a re-run"
    for notebook, threads in [
        ("02_producer.ipynb", _PRODUCERS),
        ("02_producer.ipynb", _PRODUCER_PANELS),
        ("03_consumer.ipynb", _CONSUMERS),
    ]:  # the replaced thread may take a moment to settle its last deliveries
        assert wait_until(lambda n=notebook, t=threads: _count(lab, n, t) == 1, timeout=15), (
            f"{notebook}: {_count(lab, notebook, threads)} threads alive for {threads}"
        )
    before = _count(lab, "03_consumer.ipynb", _SALES)
    assert wait_until(lambda: _count(lab, "03_consumer.ipynb", _SALES) > before, timeout=60)

    # 3. a filter change redraws the dashboard within 2 s
    dashboard = page.evaluate(_SHOW_DASHBOARD, "04_export_tableau.ipynb")
    page.wait_for_function(f"({_CHARTS})('{dashboard}').length >= 4", timeout=30_000)
    charts = page.evaluate(_CHARTS, dashboard)
    period = page.locator(f"#{dashboard} .widget-dropdown", has_text="Période").locator("select")
    period.select_option(label="24 dernières heures")
    changed = f"JSON.stringify(({_CHARTS})('{dashboard}')) !== {json.dumps(json.dumps(charts))}"
    page.wait_for_function(changed, timeout=2_000)
    page.locator(f"#{dashboard} .js-plotly-plot").nth(1).scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "04_filtre.png"))


def test_reload_draws_the_charts_again(session: tuple[Lab, Any]) -> None:
    """4. after a save and a reload, the charts are drawn again from the kernel's widgets."""
    _lab, page = session
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save-all')")
    page.reload()
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
    page.evaluate("window.jupyterapp.started")
    panel = page.evaluate(_SHOW_DASHBOARD, "04_export_tableau.ipynb")
    try:
        page.wait_for_function(f"({_CHARTS})('{panel}').length >= 4", timeout=60_000)
        _scroll_to_chart(page, panel)
    finally:
        page.screenshot(path=str(SHOTS / "04_apres_rechargement.png"))


def _scroll_to_chart(page: Any, panel: str, *, attempts: int = 3) -> None:
    """Scroll the second chart into view for the screenshot; a redraw may replace it meanwhile."""
    from playwright.sync_api import Error

    for attempt in range(attempts):
        try:
            page.locator(f"#{panel} .js-plotly-plot").nth(1).scroll_into_view_if_needed()
            return
        except Error:  # "Element is not attached to the DOM": a refresh redrew the chart
            if attempt == attempts - 1:
                raise


def _counts_or_none(lab: Lab) -> tuple[int, int, int] | None:
    """Sent by 02, stored per 03, total per 04; ``None`` when a kernel cannot reach a service."""
    try:
        return (
            _count(lab, "02_producer.ipynb", "producer.stats.acked"),
            _count(lab, "03_consumer.ipynb", _SALES),
            _count(lab, "04_export_tableau.ipynb", "queries.totals(db)['sales']"),
        )
    except AssertionError:  # the cell raised: MongoDB or Kafka unreachable
        return None


def test_services_outlive_the_kernel_that_started_them(session: tuple[Lab, Any]) -> None:
    """5. 01's kernel started the embedded services; shutting it down leaves 02-04 working."""
    lab, _page = session
    before = _counts_or_none(lab)
    assert before is not None
    lab.api("DELETE", f"/api/kernels/{lab.kernel_of('01_setup.ipynb')}")

    def grown() -> bool:
        now = _counts_or_none(lab)
        return now is not None and all(b < n for b, n in zip(before, now, strict=True))

    assert wait_until(grown, timeout=60, interval=2), (
        "after 01's kernel shut down, 02 stopped sending, 03 stopped storing or 04 stopped "
        f"reading (before: {before}, now: {_counts_or_none(lab)})"
    )
