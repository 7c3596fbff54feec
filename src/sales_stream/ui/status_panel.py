"""A live one-block status panel: HTML redrawn by a background thread from a render function.

Used where a background object has no panel of its own (the Parquet lake writer of notebook
05): ``status_panel(lambda: lake_status_html(lake))``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import ipywidgets as widgets

from sales_stream.stream import StreamStats, StreamWorker
from sales_stream.ui.format import badge, counters, fr_int, fr_plural, warning

log = logging.getLogger(__name__)


class StatusPanel(widgets.VBox):
    """An HTML block refreshed every ``refresh_s`` seconds; `close` stops the refresh."""

    def __init__(self, render: Callable[[], str], *, refresh_s: float = 1.0) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self._render = render
        self._refresh_s = refresh_s
        self._closed = threading.Event()
        self.body = widgets.HTML()
        super().__init__([self.body])
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="status-panel", daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        """Redraw now."""
        try:
            self.body.value = self._render()
        except Exception as exc:  # shown, retried on the next tick
            log.exception("status panel refresh failed")
            self.body.value = warning(f"erreur d'affichage : {exc}")

    def close(self) -> None:
        """Stop refreshing and close the widget."""
        self._closed.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self._refresh_s + 1.0)
        self.body.close()
        super().close()

    def _loop(self) -> None:
        while not self._closed.wait(self._refresh_s):
            self.refresh()


def lake_status_html(lake: StreamWorker) -> str:
    """The lake writer's state and counters, in French (HTML)."""
    stats = lake.stats
    error = lake.error
    if error is not None:
        state = badge("en échec", "#dc3545")
    elif lake.running:
        state = badge("en cours", "#198754")
    else:
        state = badge("arrêté", "#495057")
    cells = [
        ("Messages lus", fr_int(stats.consumed)),
        ("Ventes écrites", fr_int(stats.stored)),
        ("Lettres mortes", fr_int(stats.dead_lettered)),
        ("Déjà présents", fr_int(stats.duplicates)),
        ("Fichiers", fr_int(getattr(lake.runtime.sinks[0], "files", 0))),
        ("Partitions Kafka", fr_int(stats.partitions)),
    ]
    parts = [f"<b>Écriture du lac Parquet</b> {state}", counters(cells)]
    if error is not None:
        parts.append(warning(f"{type(error).__name__}: {error}"))
    return "".join(parts)


def lake_summary_text(stats: StreamStats) -> str:
    """One French line of the lake writer's counters, for static outputs."""
    return (
        f"Lac Parquet : {fr_plural(stats.consumed, 'message lu')}, "
        f"{fr_plural(stats.stored, 'vente écrite')}, "
        f"{fr_plural(stats.dead_lettered, 'lettre morte')}, "
        f"{fr_plural(stats.duplicates, 'message déjà présent', 'messages déjà présents')}, "
        f"en {fr_plural(stats.batches, 'lot')}."
    )


def status_panel(render: Callable[[], str], *, refresh_s: float = 1.0) -> StatusPanel:
    """Return a live `StatusPanel` drawing ``render()``."""
    return StatusPanel(render, refresh_s=refresh_s)
