"""Regenerate ``docs/img/*.png`` from a real session: JupyterLab in headless chromium, real data.

The embedded services start on a fresh state folder; JupyterLab runs copies of the notebooks
(the committed ones are left untouched): 02 publishes a week of history then streams live, 03
consumes into MongoDB and its rollups (should it fail, the CLI ``python -m sales_stream consume``
does it instead, and the old consumer picture stays), 04 draws the live dashboard, photographed
without a filter, over 40 s of streaming, then with each filter. The static charts of
``charts.py`` are drawn last from the same MongoDB. The JupyterLab and chromium launch is
``tests/lab_session.py``'s.

    sudo apt-get install chromium          # once (playwright drives it; it downloads no browser)
    .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from lab_session import Lab, errors, lab_env, lab_page, run_all, show_cell  # noqa: E402

from sales_stream import infra  # noqa: E402
from sales_stream.charts import save_charts  # noqa: E402
from sales_stream.clients import mongo_client  # noqa: E402
from sales_stream.config import Settings  # noqa: E402
from sales_stream.infra.process import terminate  # noqa: E402
from sales_stream.read.dashboard_views import Selection, load_snapshot  # noqa: E402

IMG = REPO / "docs" / "img"
NOTEBOOKS = ("02_producer.ipynb", "03_consumer.ipynb", "04_export_tableau.ipynb")
DASHBOARD = "04_export_tableau.ipynb"
REGION = "Bretagne"
PRODUCT = "Câble USB-C"
STEP_S = 20  # seconds between two pictures of the real-time sequence
#: Live rate set with 02's slider: a few sales a second instead of the history's intensity at the
#: time of day (one every 2 minutes at night), so that 20 s of streaming show on the dashboard.
LIVE_RATE = 2.0
_CHARTS = """
(id) => JSON.stringify(Array.from(document.getElementById(id).querySelectorAll('.js-plotly-plot'))
  .map(gd => (gd.data || []).map(trace => [trace.x, trace.y])))
"""


def main() -> int:
    """Start services, consumer and JupyterLab; write the PNGs into ``docs/img/``."""
    work = Path(tempfile.mkdtemp(prefix="sales-stream-shots-"))
    for name in NOTEBOOKS:
        shutil.copy(REPO / name, work / name)
    state = work / "state"
    settings = Settings(_env_file=None, mode="embedded", state_dir=state)
    env = lab_env(work, state)
    endpoints = infra.up(settings)
    lab = Lab(work, env, log=work / "jupyter.log")
    consumer = None
    try:
        with lab_page(lab, width=1400, height=2400) as page:
            if not _shoot_panels(lab, page):  # 03 failed: the CLI consumes instead
                consumer = subprocess.Popen(
                    [sys.executable, "-m", "sales_stream", "consume"],
                    env=env,
                    stdout=(work / "consume.log").open("w"),
                    stderr=subprocess.STDOUT,
                )
            _shoot_dashboard(page)
        db = mongo_client(endpoints.mongo_uri.get_secret_value())[settings.db]
        view = load_snapshot(db).view(Selection())
        for path in save_charts(
            over_time=view.over_time,
            recent=view.live,
            by_region=view.by_region,
            top=view.top,
            out_dir=IMG,
        ).values():
            print(f"wrote {path} ({view.sales} sales)")
    finally:
        lab.close()
        if consumer is not None:
            terminate(consumer.pid)
            consumer.wait(timeout=30)
        infra.down(settings)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _shoot_panels(lab: Lab, page: Any) -> bool:
    """02's producer panel, then 03's consumer panel; ``False`` when 03 shows an error."""
    for notebook, image in (
        ("02_producer.ipynb", "producer_panel.png"),
        ("03_consumer.ipynb", "consumer_panel.png"),
    ):
        panel = run_all(page, notebook)
        if failed := errors(page, panel):
            print(f"{notebook} shows errors, {image} not taken: {failed}", file=sys.stderr)
            return False
        if notebook == "02_producer.ipynb":  # what moving the slider does
            lab.run_in(notebook, f"panel.rate_slider.value = {LIVE_RATE}")
        time.sleep(8)  # let the live counters move
        _widget(page, panel, ".widget-button").screenshot(path=str(IMG / image))
        print(f"wrote {IMG / image}")
    return True


def _shoot_dashboard(page: Any) -> None:
    """04's dashboard: no filter, a real-time sequence, then one picture per filter."""
    run_all(page, DASHBOARD)
    panel = show_cell(page, DASHBOARD, "LiveDashboard(")
    page.wait_for_function(
        f"document.getElementById('{panel}').querySelectorAll('.js-plotly-plot').length >= 4",
        timeout=60_000,
    )
    dashboard = _widget(page, panel, ".js-plotly-plot")
    status = page.locator(f"#{panel} .widget-html", has_text="ventes").first
    captions: dict[str, str] = {}

    def shoot(image: str) -> None:
        dashboard.screenshot(path=str(IMG / image))
        captions[image] = status.inner_text()  # the figures a caption quotes
        print(f"{image}: {captions[image]}")
        # the report's captions read them back (sales_stream.report)
        (IMG / "captures.json").write_text(
            json.dumps(captions, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )

    time.sleep(3)
    shoot("dashboard_sans_filtre.png")
    for step in (1, 2, 3):
        if step > 1:
            time.sleep(STEP_S)
        shoot(f"temps_reel_{step}.png")
    control = page.locator(f"#{panel} .widget-dropdown", has_text="Période").locator("select")
    _filtered(page, panel, lambda: control.select_option(label="Dernière heure"))
    shoot("dashboard_filtre_periode.png")
    _filtered(page, panel, lambda: control.select_option(label="Tout l'historique"))
    regions = page.locator(f"#{panel} .widget-select-multiple", has_text="Régions").locator(
        "select"
    )
    _filtered(page, panel, lambda: regions.select_option(label=REGION))
    shoot("dashboard_filtre_region.png")
    _filtered(page, panel, lambda: regions.select_option([]))
    products = page.locator(f"#{panel} .widget-select-multiple", has_text="Produits")
    _filtered(page, panel, lambda: products.locator("select").select_option(label=PRODUCT))
    shoot("dashboard_filtre_produit.png")


def _widget(page: Any, panel: str, selector: str) -> Any:
    output = page.locator(f"#{panel} .jp-OutputArea-output:has({selector})").first
    output.wait_for(state="visible", timeout=180_000)
    output.scroll_into_view_if_needed()
    return output


def _filtered(page: Any, panel: str, change: Any) -> None:
    """Apply ``change`` to a filter and wait until the charts are redrawn."""
    before = page.evaluate(_CHARTS, panel)
    change()
    page.wait_for_function(f"({_CHARTS})('{panel}') !== {json.dumps(before)}", timeout=10_000)
    time.sleep(1.5)  # plotly's transition


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO / "src"))
    raise SystemExit(main())
