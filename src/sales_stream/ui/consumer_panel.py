"""Live status panel of the Mongo consumer (ipywidgets), and its static French summary."""

from __future__ import annotations

import html
import threading
import time
from datetime import datetime

import ipywidgets as widgets

from sales_stream.stream import StreamState, StreamStats, StreamWorker
from sales_stream.stream.sink import HYPER_SERVICE, LAKE_SERVICE
from sales_stream.ui.format import fr_int, fr_plural, fr_time

_STATE_FR = {
    StreamState.CREATED: "pas démarré",
    StreamState.JOINING: "connexion au groupe de consommateurs",
    StreamState.RUNNING: "en cours",
    StreamState.IDLE: "à jour, en attente de nouveaux messages",
    StreamState.WAITING_KAFKA: "Kafka injoignable",
    StreamState.STOPPING: "arrêt en cours",
    StreamState.STOPPED: "arrêté",
}
_HEALTHY = (StreamState.RUNNING, StreamState.IDLE, StreamState.JOINING, StreamState.STOPPED)


#: French names of the services a sink may wait for (`SinkUnavailable.sink`).
_SERVICE_FR = {LAKE_SERVICE: "lac", HYPER_SERVICE: "extrait Hyper"}


def status_fr(stats: StreamStats, *, now: datetime | None = None) -> str:
    """The runtime's state in French, with its cause and duration when it waits or stalls."""
    seconds = stats.waited_s(now=now)
    waited = "" if seconds is None else f" depuis {seconds} s"
    if stats.state is StreamState.WAITING_SINK:
        service = _SERVICE_FR.get(stats.waiting_on or "", stats.waiting_on or "destination")
        return f"{service} injoignable{waited}, nouvel essai du lot"
    if stats.state is StreamState.STALLED:
        return f"bloqué{waited} : {stats.cause}"
    if stats.state is StreamState.FAILED:
        return f"échec : {stats.cause}"
    if stats.state is StreamState.WAITING_KAFKA:
        return f"Kafka injoignable{waited}"
    return _STATE_FR[stats.state]


def _last_commit(stats: StreamStats) -> str:
    return fr_time(stats.last_commit, never="aucun")


def summary_text(stats: StreamStats, *, now: datetime | None = None) -> str:
    """A static French summary of the consumer's stats, for notebook outputs."""
    lines = [
        f"Consommateur : {status_fr(stats, now=now)}.",
        f"{fr_plural(stats.consumed, 'message traité')} en {fr_plural(stats.batches, 'lot')} : "
        f"{fr_plural(stats.stored, 'vente enregistrée')}, "
        f"{fr_plural(stats.duplicates, 'doublon ignoré')}, "
        f"{fr_plural(stats.dead_lettered, 'lettre morte')}.",
        f"Retard : {fr_plural(stats.total_lag, 'message')} ; "
        f"dernier commit : {_last_commit(stats)}.",
    ]
    if stats.last_error:
        lines.append(f"Dernière erreur : {stats.last_error}")
    return "\n".join(lines)


class ConsumerPanel(widgets.VBox):
    """Status line, counters, lag per partition, last commit, start and stop buttons.

    Refreshes itself every ``refresh_s`` seconds from a background thread until closed.
    """

    def __init__(self, thread: StreamWorker, *, refresh_s: float = 1.0) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self.status = widgets.HTML()
        self.counters = widgets.HTML()
        self.start_button = widgets.Button(description="Démarrer", icon="play")
        self.stop_button = widgets.Button(description="Arrêter", icon="stop")
        super().__init__(
            [
                self.status,
                self.counters,
                widgets.HBox([self.start_button, self.stop_button]),
            ]
        )
        self._thread = thread
        self._refresh_s = refresh_s
        self._previous: tuple[float, int] | None = None
        self._closed = threading.Event()
        self.start_button.on_click(self._on_start)
        self.stop_button.on_click(self._on_stop)
        self.refresh()
        threading.Thread(target=self._loop, name="consumer-panel", daemon=True).start()

    def refresh(self) -> StreamStats:
        """Redraw from the consumer's current stats and return them."""
        stats = self._thread.stats
        now = time.monotonic()
        rate = 0.0
        if self._previous is not None and now > self._previous[0]:
            rate = max(0.0, (stats.consumed - self._previous[1]) / (now - self._previous[0]))
        self._previous = (now, stats.consumed)
        colour = "#060" if stats.state in _HEALTHY else "#b00"
        self.status.value = (
            f"<b>Consommateur</b> : <span style='color:{colour}'>"
            f"{html.escape(status_fr(stats))}</span> — {fr_plural(round(rate), 'message')}/s"
        )
        lag = ", ".join(f"p{p} : {fr_int(v)}" for p, v in sorted(stats.lag.items())) or "—"
        rows = [
            ("messages traités", fr_int(stats.consumed)),
            ("ventes enregistrées", fr_int(stats.stored)),
            ("doublons ignorés", fr_int(stats.duplicates)),
            ("lettres mortes", fr_int(stats.dead_lettered)),
            ("lots", fr_int(stats.batches)),
            ("retard par partition", lag),
            ("dernier commit", _last_commit(stats)),
        ]
        if stats.last_error:
            rows.append(("dernière erreur", html.escape(stats.last_error)))
        self.counters.value = (
            "<table>"
            + "".join(
                f"<tr><td>{name}</td><td style='text-align:right'><b>{value}</b></td></tr>"
                for name, value in rows
            )
            + "</table>"
        )
        running = self._thread.running
        self.start_button.disabled = running
        self.stop_button.disabled = not running
        return stats

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        self._closed.set()
        super().close()

    def _loop(self) -> None:
        while not self._closed.wait(self._refresh_s):
            self.refresh()

    def _on_start(self, _button: widgets.Button) -> None:
        if not self._thread.running:
            self._thread.start()
        self.refresh()

    def _on_stop(self, _button: widgets.Button) -> None:
        self.stop_button.disabled = True
        # The graceful stop can take seconds: keep the kernel responsive.
        threading.Thread(target=self._thread.stop, name="consumer-stop", daemon=True).start()


def consumer_panel(thread: StreamWorker, *, refresh_s: float = 1.0) -> widgets.Widget:
    """The live panel of ``thread``; display it as the last expression of a cell."""
    return ConsumerPanel(thread, refresh_s=refresh_s)
