"""Regenerate ``docs/img/*.png``: the live widgets in JupyterLab, as a person sees them.

JupyterLab runs on copies of the notebooks (the committed ones are left untouched) against a
fresh embedded instance; headless Chromium (Debian's ``chromium``, driven by Playwright, which
downloads no browser) runs each notebook interactively and photographs its widgets.

    sudo apt-get install chromium          # once
    .venv/bin/pip install playwright       # once
    .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from sales_stream import infra
from sales_stream.config import Settings
from sales_stream.infra.embedded import free_port
from sales_stream.infra.process import wait_until

REPO = Path(__file__).resolve().parents[1]
IMG = REPO / "docs" / "img"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: notebook -> (output to wait for, seconds to let it run, file name)
SHOTS = (
    ("02_producer.ipynb", ".widget-button", 12, "producer_panel.png"),
    ("03_consumer.ipynb", ".widget-button", 12, "consumer_panel.png"),
    ("04_export_tableau.ipynb", ".js-plotly-plot", 20, "dashboard.png"),
)


def main() -> int:
    """Start the services and JupyterLab, photograph each notebook's widgets."""
    work = Path(tempfile.mkdtemp(prefix="sales-stream-shots-"))
    for name, *_ in SHOTS:
        shutil.copy(REPO / name, work / name)
    settings = Settings(_env_file=None, state_dir=work / "state")
    env = {**os.environ, "SALES_STREAM_STATE_DIR": str(settings.state_dir)}
    with infra.up(settings), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        for index, (notebook, selector, seconds, image) in enumerate(SHOTS):
            # One JupyterLab per notebook: a fresh workspace, and its kernels end with it.
            with _jupyterlab(work, env, workspaces=work / f"workspaces-{index}") as url:
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                _shoot(page, url.format(notebook), selector, seconds, image)
                page.close()
        browser.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


@contextmanager
def _jupyterlab(root: Path, env: dict[str, str], *, workspaces: Path) -> Iterator[str]:
    """Run JupyterLab on ``root`` (loopback, random token); yield a notebook URL template."""
    token = secrets.token_hex(16)
    port = free_port()
    lab = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
            f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={workspaces}",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        if not wait_until(lambda: _answers(f"{base}/api?token={token}"), timeout=60):
            raise RuntimeError("JupyterLab did not start")
        yield f"{base}/lab/tree/{{}}?token={token}"
    finally:
        lab.terminate()
        lab.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # loopback only
            return True
    except OSError:
        return False


def _shoot(page: Page, url: str, selector: str, seconds: int, image: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=180_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=180_000)
    page.locator("[data-command='notebook:restart-run-all']").first.click()
    page.locator(".jp-Dialog button.jp-mod-accept").first.click()
    output = page.locator(f".jp-OutputArea-output:has({selector})").first
    try:
        output.wait_for(state="visible", timeout=180_000)
    except Exception:
        page.screenshot(path=str(IMG / f"failed_{image}"), full_page=True)
        raise
    time.sleep(seconds)  # let the live counters and charts move before the picture
    no_news = page.locator(".jp-toast-button", has_text="No")
    if no_news.count():
        no_news.first.click()
    output.scroll_into_view_if_needed()
    output.screenshot(path=str(IMG / image))
    print(f"wrote {IMG / image}")


if __name__ == "__main__":
    raise SystemExit(main())
