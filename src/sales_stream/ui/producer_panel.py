"""Notebook controls of a `ProducerThread`, and a static French summary of its stats.

`producer_panel` returns a `ProducerPanel`: start / pause / stop buttons, a log-scale rate
slider (0.001–5 000 ev/s, showing the rate it sets to three significant digits), a
malformed-ratio box, live counters, a text sparkline of the measured rate and the latest
events. A daemon thread refreshes it every ``refresh_s`` seconds, so the kernel stays free;
``panel.close()`` stops that thread. Widgets do not render on GitHub: print `summary_text`
after a run to leave a readable trace in the notebook.
"""

from __future__ import annotations

import html
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import ipywidgets as widgets

from sales_stream.events import SaleEvent
from sales_stream.produce.backfill import backfill, topic_has_records
from sales_stream.produce.generator import SimulatedClock
from sales_stream.produce.producer import ProducerThread
from sales_stream.produce.stats import ProducerStats
from sales_stream.ui.format import (
    badge,
    counters,
    fr_float,
    fr_int,
    fr_number,
    fr_plural,
    parse_percent,
    warning,
)

log = logging.getLogger(__name__)

#: The slider's range: the wall-clock rate of a quiet night hour (~0.008 ev/s) is inside it.
RATE_MIN = 0.001
RATE_MAX = 5_000.0
#: d3-format of the slider's readout: 3 significant digits (1.60, 0.00810, 1500): it shows
#: the rate it sets, never « 2 » for 1.6.
RATE_READOUT = ".3r"
SPARK_POINTS = 40
EVENT_ROWS = 8
_SPARK_BARS = "▁▂▃▄▅▆▇█"
_STATE_LABELS = {
    "idle": "prêt",
    "running": "en cours",
    "paused": "en pause",
    "stopped": "arrêté",
    "failed": "en échec",
}
_STATE_COLOURS = {
    "idle": "#6c757d",
    "running": "#198754",
    "paused": "#fd7e14",
    "stopped": "#495057",
    "failed": "#dc3545",
}


def _fr_rate(value: float) -> str:
    if math.isinf(value):
        return "maximum"
    # one decimal, or as many as three significant digits need below 1 (0,0081 év./s)
    return f"{fr_number(value)} év./s"


def summary_text(stats: ProducerStats) -> str:
    """Return a French multi-line summary of producer stats, for static notebook outputs.

    Args:
        stats: A snapshot from `ProducerThread.stats` or `sales_stream.produce.backfill.backfill`.

    Returns:
        Three lines (four with an error): state and start time, counters, rates.
    """
    started = (
        f"démarré le {stats.started_at:%d/%m/%Y à %H:%M:%S} UTC"
        if stats.started_at is not None
        else "pas encore démarré"
    )
    lines = [
        f"Producteur {_STATE_LABELS[stats.state]} ({started}).",
        f"Envoyés : {fr_int(stats.sent)} (valides : {fr_int(stats.valid_sent)}, "
        f"malformés : {fr_int(stats.bad_sent)}) · acquittés : {fr_int(stats.acked)} · "
        f"en échec : {fr_int(stats.failed)} · en attente : {fr_int(stats.in_flight)}.",
        _average_line(stats),
    ]
    if stats.last_error:
        lines.append(f"Dernière erreur : {stats.last_error}")
    return "\n".join(lines)


#: Below this much sending time, an average rate means nothing and is not shown.
MIN_AVERAGE_S = 1.0


def _average_line(stats: ProducerStats) -> str:
    target = f"cible : {_fr_rate(stats.target_rate)}"
    if stats.state == "running":
        target += f", actuel : {_fr_rate(stats.current_rate)}"
    if stats.elapsed_s < MIN_AVERAGE_S:
        current = f" ; actuel : {_fr_rate(stats.current_rate)}" if stats.state == "running" else ""
        return (
            "Débit moyen : pas encore mesurable (moins d'une seconde d'envoi). "
            f"Débit cible : {_fr_rate(stats.target_rate)}{current}."
        )
    return (
        f"Débit moyen : {_fr_rate(stats.average_rate)} sur {fr_float(stats.elapsed_s)} s "
        f"({target})."
    )


def publish_history(
    bootstrap: str,
    topic: str,
    *,
    days: int,
    events_per_day: int,
    seed: int | None,
    end: datetime | None = None,
) -> tuple[ProducerStats | None, str]:
    """Publish ``days`` of history with `backfill`, unless none is asked or already there.

    A topic that already holds sales (notebook run again) is left as it is: every send
    creates new sales, so a second history would double the first.

    Returns:
        The backfill's stats (``None`` when nothing was sent) and a French line saying what
        was done.
    """
    if not days:
        return None, "pas d'historique demandé ici (backfill_days=0) : `make run` l'a déjà publié"
    if topic_has_records(bootstrap, topic):
        return None, "le topic contient déjà des ventes : l'historique n'est pas republié"
    history = backfill(
        bootstrap, topic, days=days, events_per_day=events_per_day, seed=seed, end=end
    )
    return history, (
        f"historique : {fr_plural(history.acked, 'vente')} sur {fr_plural(days, 'jour')} "
        f"({fr_plural(history.failed, 'échec')})"
    )


def clock_text(clock: object) -> str:
    """The French label of a generator's clock: real time, or the catch-up clock's speed."""
    if isinstance(clock, SimulatedClock):
        paused = " (arrêtée pendant la pause)" if clock.paused else ""
        return (
            f"Horloge de rattrapage ×{fr_float(clock.speedup, 0)} : une seconde réelle = "
            f"{fr_plural(clock.speedup / 60, 'minute')} de ventes, jamais au-delà de "
            f"l'heure actuelle · heure des ventes {clock():%d/%m %H:%M} UTC{paused}"
        )
    return "Horloge réelle : les ventes portent l'heure actuelle"


def sparkline(values: list[float]) -> str:
    """Return a text sparkline of ``values`` (one block character each, 0 at the bottom)."""
    top = max(values, default=0.0)
    if top <= 0:
        return _SPARK_BARS[0] * len(values)
    last = len(_SPARK_BARS) - 1
    return "".join(_SPARK_BARS[min(last, round(v / top * last))] for v in values)


def _counters_html(stats: ProducerStats, note: str | None) -> str:
    colour = _STATE_COLOURS[stats.state]
    cells = [
        ("Envoyés", fr_int(stats.sent)),
        ("Valides", fr_int(stats.valid_sent)),
        ("Malformés", fr_int(stats.bad_sent)),
        ("Acquittés", fr_int(stats.acked)),
        ("En échec", fr_int(stats.failed)),
        ("En attente", fr_int(stats.in_flight)),
    ]
    parts = [badge(_STATE_LABELS[stats.state], colour), counters(cells)]
    parts += [warning(message) for message in (stats.last_error, note) if message]
    return "".join(parts)


def _events_html(events: list[SaleEvent]) -> str:
    if not events:
        return "<i>Aucun événement envoyé pour l'instant.</i>"
    header = (
        "Heure (UTC)",
        "Produit",
        "Catégorie",
        "Région",
        "Ville",
        "Qté",
        "Prix unit.",
        "Montant",
        "Canal",
    )
    head = "".join(f"<th style='text-align:left;padding:0 6px'>{h}</th>" for h in header)
    rows = []
    for e in events:
        cells = (
            f"{e.ts:%H:%M:%S}",
            e.product,
            e.category,
            e.region,
            e.city,
            str(e.quantity),
            f"{fr_float(e.unit_price, 2)} €",
            f"{fr_float(e.amount, 2)} €",
            e.channel,
        )
        rows.append(
            "<tr>"
            + "".join(f"<td style='padding:0 6px'>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _slider_rate(rate: float) -> float:
    return min(max(rate, RATE_MIN), RATE_MAX)


class ProducerPanel(widgets.VBox):
    """The producer's control panel; see `producer_panel`.

    Attributes:
        start_button: Starts the thread (or resumes it when paused).
        pause_button: Pauses, or resumes a paused thread.
        stop_button: Stops the thread (returns within 2 s).
        rate_slider: Target rate, log scale from `RATE_MIN` to `RATE_MAX` ev/s.
        bad_box: Percentage of malformed messages, typed as ``5``, ``5 %`` or ``2,5``.
        clock: The sale clock: real time or the simulated clock and its speed.
        counters: State badge, counters and the last error.
        rate_line: Sparkline of the measured rate and target vs measured rate.
        events: Table of the latest valid events, newest first.
    """

    def __init__(self, thread: ProducerThread, *, refresh_s: float = 0.5) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self.thread = thread
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._rates: deque[float] = deque(maxlen=SPARK_POINTS)
        self._note: str | None = None
        self.start_button = widgets.Button(
            description="Démarrer", icon="play", button_style="success"
        )
        self.pause_button = widgets.Button(description="Pause", icon="pause")
        self.stop_button = widgets.Button(description="Arrêter", icon="stop", button_style="danger")
        self.rate_slider = widgets.FloatLogSlider(
            value=_slider_rate(thread.rate),
            base=10,
            min=math.log10(RATE_MIN),
            max=math.log10(RATE_MAX),
            step=0.01,
            description="Débit (év./s)",
            readout_format=RATE_READOUT,
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="420px"),
        )
        self.bad_box = widgets.Text(
            value=fr_float(thread.bad_ratio * 100, 1),
            description="Malformés (%)",
            placeholder="ex. 5 ou 2,5 %",
            continuous_update=False,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="220px"),
        )
        self.clock = widgets.HTML()
        self.counters = widgets.HTML()
        self.rate_line = widgets.HTML()
        self.events = widgets.HTML()
        self.start_button.on_click(self._on_start)
        self.pause_button.on_click(self._on_pause)
        self.stop_button.on_click(self._on_stop)
        self.rate_slider.observe(self._on_rate, names="value")
        self.bad_box.observe(self._on_bad_ratio, names="value")
        super().__init__(
            [
                widgets.HBox([self.start_button, self.pause_button, self.stop_button]),
                widgets.HBox([self.rate_slider, self.bad_box]),
                self.clock,
                self.counters,
                self.rate_line,
                self.events,
            ]
        )
        self.refresh()
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="producer-panel", daemon=True
        )
        self._refresher.start()

    def refresh(self) -> ProducerStats:
        """Redraw counters, rate line, events table and button states; return the stats."""
        with self._lock:
            stats = self.thread.stats
            self._rates.append(stats.current_rate)
            self.clock.value = f"<small>{html.escape(clock_text(self.thread.clock))}</small>"
            self.counters.value = _counters_html(stats, self._note)
            self.rate_line.value = (
                f"<code style='font-size:1.3em'>{sparkline(list(self._rates))}</code> "
                f"mesuré : <b>{_fr_rate(stats.current_rate)}</b> · "
                f"cible : {_fr_rate(stats.target_rate)}"
            )
            self.events.value = _events_html(self.thread.recent(EVENT_ROWS))
            self.rate_slider.value = _slider_rate(stats.target_rate)  # also when set in code
            active = stats.state in ("running", "paused")
            self.start_button.disabled = stats.state == "running"
            self.pause_button.disabled = not active
            self.stop_button.disabled = not active
            paused = stats.state == "paused"
            self.pause_button.description = "Reprendre" if paused else "Pause"
            self.pause_button.icon = "play" if paused else "pause"
            return stats

    def close(self) -> None:
        """Stop refreshing and close the widgets (the producer thread keeps its state)."""
        self._closed.set()
        if self._refresher is not threading.current_thread():
            self._refresher.join(self._refresh_s + 1.0)
        for row in self.children:
            for child in getattr(row, "children", ()):
                child.close()
            row.close()
        super().close()

    @property
    def refreshing(self) -> bool:
        """Whether the background refresher is running."""
        return self._refresher.is_alive()

    def _refresh_loop(self) -> None:
        while not self._closed.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception:
                log.exception("refreshing the producer panel failed")

    def _act(self, action: Callable[[], object]) -> None:
        self._note = None
        try:
            action()
        except RuntimeError as exc:  # restart while the last run is still settling
            self._note = str(exc)
        self.refresh()

    def _on_start(self, _button: widgets.Button) -> None:
        self._act(self.thread.start)

    def _on_pause(self, _button: widgets.Button) -> None:
        thread = self.thread
        self._act(thread.resume if thread.stats.state == "paused" else thread.pause)

    def _on_stop(self, _button: widgets.Button) -> None:
        self._act(self.thread.stop)

    def _on_rate(self, change: dict[str, Any]) -> None:
        self.thread.rate = float(change["new"])

    def _on_bad_ratio(self, change: dict[str, Any]) -> None:
        try:
            self.thread.bad_ratio = parse_percent(str(change["new"]))
        except ValueError as exc:
            self._note = str(exc)
        else:
            self._note = None
        self.refresh()


def producer_panel(thread: ProducerThread, *, refresh_s: float = 0.5) -> ProducerPanel:
    """Return a live control panel of ``thread`` (display it as the cell's last value).

    Args:
        thread: The producer to control; it may be idle, running or paused.
        refresh_s: Seconds between two refreshes of the counters (background thread).

    Raises:
        ValueError: If ``refresh_s`` is not positive.
    """
    return ProducerPanel(thread, refresh_s=refresh_s)
