"""The student's JupyterLab session in a real browser (Debian's chromium driven by playwright).

One JupyterLab server on copies of the notebooks, one headless chromium; in order:

1. Run All on 01 → 05 with their interactive defaults: no error output, non-empty tables;
2. the rate slider of 02 set to 20/s, Run All again on 02 and 03: one producer and one consumer
   thread per kernel, the slider's rate kept, no MongoDB client more in 03, and the number of
   sales in MongoDB keeps growing;
3. a dashboard filter (04) changes the charts within 2 s;
4. after a page reload the charts are drawn again;
5. the panels of 02 and 03 replaced in their kernels after the last save (as a re-run of their
   cell does), then a page reload, then a second browser session: every panel of 02–05 is
   there, live, and its counters change; nowhere « model not found » (but for one more reload
   where ipywidgets' own race shows it over a model the page does hold: `_live`);
6. with 01's kernel shut down, 02–04 keep working (the supervised services belong to
   JupyterLab, not to the kernel that started them).

Skipped, with the reason, only where ``/usr/bin/chromium`` is absent (``.ci/run`` installs it).
Screenshots land in ``out/browser/`` (gitignored).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_session import CHROMIUM, REPO, TOKEN, Lab, errors, lab_env, lab_page, show_cell
from lab_session import run_all as _run_all

from sales_stream import infra, notebooks
from sales_stream.config import Settings
from sales_stream.infra.process import wait_until

SHOTS = REPO / "out" / "browser"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium "
        "(apt-get install -y chromium; .ci/run does it)",
    ),
]

_TABLE_ROWS = """
(id) => {
  const node = document.getElementById(id);
  return Array.from(node.querySelectorAll('.jp-OutputArea-output table'))
    .map(t => t.querySelectorAll('tbody tr').length);
}
"""
_CHARTS = """
(id) => {
  const node = document.getElementById(id);
  return Array.from(node.querySelectorAll('.js-plotly-plot'))
    .map(gd => JSON.stringify((gd.data || []).map(trace => [trace.x, trace.y])));
}
"""


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Any]]:
    root = tmp_path_factory.mktemp("lab")
    state = root / "state"
    for name in notebooks.NOTEBOOKS:
        shutil.copy(REPO / name, root / name)
    settings = Settings(_env_file=None, mode="embedded", state_dir=state)
    SHOTS.mkdir(parents=True, exist_ok=True)
    lab = Lab(root, lab_env(root, state), log=SHOTS / "jupyter.log")
    try:
        with lab_page(lab) as page:
            yield lab, page
    finally:
        lab.close()
        infra.down(settings)


def run_all(page: Any, notebook: str) -> str:
    """Open ``notebook``, Run All, wait for the end, photograph it; return the panel's id."""
    panel = _run_all(page, notebook)
    page.screenshot(path=str(SHOTS / f"{Path(notebook).stem}.png"), full_page=True)
    return panel


def _count(lab: Lab, notebook: str, expression: str) -> int:
    return int(lab.run_in(notebook, f"import threading\nprint({expression})").strip())


_ALIVE = "sum(t.is_alive() and t.name == {!r} + {} for t in threading.enumerate())"
_PRODUCERS = _ALIVE.format("producer-", "settings.topic")
_PRODUCER_PANELS = _ALIVE.format("producer-panel", "''")
_CONSUMERS = _ALIVE.format("stream-", "consumer.name")  # the StreamWorker thread
_SALES = "db[SALES].estimated_document_count()"
_MONGO_THREADS = "sum(t.name.startswith('pymongo') for t in threading.enumerate())"
#: A rate whatever the time of day (the default, the history's, is one sale in 2 minutes at night).
RATE = 20.0


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
    lab.run_in("02_producer.ipynb", f"panel.rate_slider.value = {RATE}")  # the user's rate
    mongo_threads = _count(lab, "03_consumer.ipynb", _MONGO_THREADS)
    for name in ("02_producer.ipynb", "03_consumer.ipynb"):
        panels[name] = run_all(page, name)
        assert errors(page, panels[name]) == [], f"{name} shows an error after a re-run"
    assert float(lab.run_in("02_producer.ipynb", "print(producer.rate)")) == RATE
    assert wait_until(
        lambda: _count(lab, "03_consumer.ipynb", _MONGO_THREADS) == mongo_threads, timeout=15
    ), f"03: MongoDB threads {mongo_threads} -> {_count(lab, '03_consumer.ipynb', _MONGO_THREADS)}"
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
    dashboard = show_cell(page, "04_export_tableau.ipynb", "LiveDashboard(")
    page.wait_for_function(f"({_CHARTS})('{dashboard}').length >= 4", timeout=30_000)
    charts = page.evaluate(_CHARTS, dashboard)
    period = page.locator(f"#{dashboard} .widget-dropdown", has_text="Période").locator("select")
    period.select_option(label="24 dernières heures")
    changed = f"JSON.stringify(({_CHARTS})('{dashboard}')) !== {json.dumps(json.dumps(charts))}"
    page.wait_for_function(changed, timeout=2_000)
    _scroll_to_chart(page, dashboard)
    page.screenshot(path=str(SHOTS / "04_filtre.png"))


def test_reload_draws_the_charts_again(session: tuple[Lab, Any]) -> None:
    """4. after a save and a reload, the charts are drawn again from the kernel's widgets."""
    _lab, page = session
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save-all')")
    page.reload()
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
    page.evaluate("window.jupyterapp.started")
    panel = show_cell(page, "04_export_tableau.ipynb", "LiveDashboard(")
    try:
        page.wait_for_function(f"({_CHARTS})('{panel}').length >= 4", timeout=60_000)
        _scroll_to_chart(page, panel)
    finally:
        page.screenshot(path=str(SHOTS / "04_apres_rechargement.png"))


#: The panels of each notebook: a piece of the source of the cell that shows it.
PANELS = {
    "02_producer.ipynb": ("producer_panel(producer)",),
    "03_consumer.ipynb": ("consumer_panel(consumer)",),
    "04_export_tableau.ipynb": ("export_panel(extract_worker)", "LiveDashboard("),
    "05_data_lake.ipynb": ("status_panel(",),
}
_PANEL = """
({id, marker}) => {
  const widget = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.id === id);
  const cell = widget.content.widgets.find(c => c.model.sharedModel.getSource().includes(marker));
  const node = cell.outputArea.node;
  return {live: node.querySelectorAll('.widget-vbox').length, text: node.textContent,
          missing: node.textContent.includes('model not found')};
}
"""
_SCROLL = """
({id, marker}) => {
  const widget = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.id === id);
  window.jupyterapp.shell.activateById(id);
  const cell = widget.content.widgets.find(c => c.model.sharedModel.getSource().includes(marker));
  cell.outputArea.node.scrollIntoView({block: 'center'});
}
"""
#: Run in a kernel, it replaces the panel as a re-run of its cell does (the saved output then
#: shows a panel that no longer exists, unless outputs point at something that outlives it).
_REPLACE = """
from IPython.display import display
display(show(live.replace({kind!r}, {factory})))
"""


#: Whether the page's widget manager of the notebook ``id`` holds the model the output of
#: the cell with ``marker`` points at, while that output says « model not found ».
_LATE_RENDER = """
async ({id, marker}) => {
  const widget = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.id === id);
  const cell = widget.content.widgets.find(c => c.model.sharedModel.getSource().includes(marker));
  if (!cell.outputArea.node.textContent.includes('model not found')) return false;
  const ids = cell.model.outputs.toJSON()
    .map(o => (o.data || {})['application/vnd.jupyter.widget-view+json'])
    .filter(Boolean).map(v => v.model_id);
  const managers = [];
  const visit = (w) => {
    if (w._manager && w._manager.promise) managers.push(w._manager.promise);
    for (const child of (w.widgets || [])) visit(child);
  };
  visit(cell.outputArea);
  for (const manager of await Promise.all(managers)) {
    if (ids.length && ids.every(i => manager.has_model(i))) return true;
  }
  return false;
}
"""


def _live(page: Any, notebook: str, marker: str) -> dict[str, str]:
    """Show the cell; wait until its panel is a live widget; return the cell's locator args.

    « model not found » over a model the page's widget manager does hold is ipywidgets'
    own race (jupyter-widgets/ipywidgets#4026, unfixed in 8.1.9: an output rendered ~2 s
    before the restore registers its model stays failed); a student reloads the page once
    more, and so does this test, once. A model the manager lacks is ours: no second chance.
    """
    for attempt in range(2):
        args = {"id": show_cell(page, notebook, marker), "marker": marker}
        # a reload reconnects every kernel and fetches every model: slow on a busy machine
        if wait_until(lambda a=args: page.evaluate(_PANEL, a)["live"], timeout=120):
            return args
        if attempt or not page.evaluate(_LATE_RENDER, args):
            break
        page.reload()
        page.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
    raise AssertionError(f"the panel of {notebook} ({marker}) is not a live widget")


def _panels_live(page: Any, tag: str) -> None:
    """Every panel of 02–05 is a live widget whose text changes; no « model not found »."""
    for notebook, markers in PANELS.items():
        for marker in markers:
            args = {"id": show_cell(page, notebook, marker), "marker": marker}
            try:
                args = _live(page, notebook, marker)
                before = page.evaluate(_PANEL, args)
                assert not before["missing"], f"{tag}: « model not found » in {notebook}"
                assert wait_until(
                    lambda a=args, b=before: page.evaluate(_PANEL, a)["text"] != b["text"],
                    timeout=30,
                ), f"{tag}: the panel of {notebook} ({marker}) does not update"
            except AssertionError as exc:
                raise AssertionError(f"{tag}: {exc}") from exc
            finally:
                page.evaluate(_SCROLL, args)
                shot = f"{tag}_{Path(notebook).stem}_{marker.split('(')[0]}.png"
                page.screenshot(path=str(SHOTS / shot))


def test_every_panel_survives_a_reload_and_a_second_session(session: tuple[Lab, Any]) -> None:
    """5. outputs saved before the panels were replaced, a reload, a second browser session."""
    lab, page = session
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save-all')")
    lab.run_in(
        "02_producer.ipynb",
        _REPLACE.format(kind="producer_panel", factory="producer_panel(producer)"),
    )
    lab.run_in(
        "03_consumer.ipynb",
        _REPLACE.format(kind="consumer_panel", factory="consumer_panel(consumer)"),
    )
    page.reload()
    page.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
    _panels_live(page, "rechargement")
    second = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        other = second.new_page()
        other.goto(f"{lab.url}/lab?token={TOKEN}")
        other.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
        _panels_live(other, "seconde_session")
    finally:
        second.close()


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
    """6. 01's kernel started the embedded services; shutting it down leaves 02-04 working."""
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
