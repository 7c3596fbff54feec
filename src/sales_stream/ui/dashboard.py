"""Live dashboard in the notebook: the three Tableau views with period/region/product filters.

The data comes from `sales_stream.read.dashboard_views` (the rollups plus the live window, read
once per refresh; filters applied in memory). Everything runs on one background worker
thread, never on the kernel's main thread:

* every ``refresh_s`` seconds it re-reads the snapshot and redraws;
* a filter change only wakes it up: it redraws from the snapshot it holds, and the latest
  selection wins (a selection superseded while it was computed is never shown).

The charts are plotly figures sent as plain JSON into standard ``ipywidgets.Output`` widgets
(no anywidget, no ``FigureWidget``): the browser draws them at the cell's width, and a page
reload redraws them from the kernel's widget state. The static snapshot left in the notebook
for readers without a kernel (`LiveDashboard.shown`) is the same view drawn by
`sales_stream.charts` (matplotlib PNGs, as in the report).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import pandas as pd
from matplotlib.figure import Figure
from pymongo.database import Database

from sales_stream import charts
from sales_stream.collation import fr_sorted
from sales_stream.frames import BUCKET_FREQ
from sales_stream.read.dashboard_views import (
    PERIODS,
    DashboardSnapshot,
    Selection,
    View,
    load_snapshot,
)
from sales_stream.reference import CATALOGUE, REGIONS
from sales_stream.ui.format import fr_day, fr_float, fr_int, fr_moment, fr_time
from sales_stream.ui.snapshot import displayed

log = logging.getLogger(__name__)

#: Resolution of the static snapshot's PNGs.
DPI = 80
PLOTLY_MIME = "application/vnd.plotly.v1+json"
_EURO_AXIS = {
    "ticksuffix": " €",
    "separatethousands": True,
    "exponentformat": "none",  # « 10 000 € », not « 10k € »
    "automargin": True,
}
_BASE_LAYOUT: dict[str, Any] = {
    "autosize": True,
    "separators": ", ",  # French: decimal comma, thin-space thousands
    "margin": {"l": 10, "r": 10, "t": 40, "b": 30},
    "template": "plotly_white",
}
# No modebar: it would sit over the titles, and its tooltips are English (plotly's French
# locale is a separate script the notebook renderers do not load). Drag zooms, a double-click
# resets, the mouse wheel zooms the map.
_PLOT_CONFIG = {"responsive": True, "displaylogo": False, "displayModeBar": False}


@dataclass(frozen=True)
class Timing:
    """How long the last redraw took, and whether it re-read the database."""

    selection: Selection
    read_s: float
    draw_s: float
    reread: bool

    @property
    def total_s(self) -> float:
        """Read plus draw time."""
        return self.read_s + self.draw_s


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _waiting(title: str) -> Figure:
    fig = Figure(figsize=(12, 1.6), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{title} : en attente de ventes pour cette sélection", ha="center")
    return fig


def _iso(values: Any) -> list[str]:
    return [v.isoformat() for v in values]


#: Tick spacings, finest first; `_time_axis` takes the first giving at most `_MAX_TICKS` ticks.
_TICK_STEPS = tuple(
    pd.Timedelta(step)
    for step in ("1min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "6h", "12h")
) + tuple(pd.Timedelta(days=d) for d in (1, 2, 7, 14, 28))
_MAX_TICKS = 8
_UNIT_LABELS = {"minute": "par minute", "hour": "par heure", "day": "par jour"}
_IN_PROGRESS = {
    "minute": "minute en cours (incomplète)",
    "hour": "heure en cours (incomplète)",
    "day": "jour en cours (incomplet)",
}


def _tick_label(tick: pd.Timestamp, step: pd.Timedelta, first: bool) -> str:
    if step >= pd.Timedelta(days=1):
        return fr_day(tick)
    clock = f"{tick.hour}h" if step >= pd.Timedelta(hours=1) else f"{tick:%H:%M}"
    return f"{fr_day(tick)} {clock}" if first or (tick.hour, tick.minute) == (0, 0) else clock


def _time_axis(buckets: pd.Series, unit: str) -> dict[str, Any]:
    """A date axis labelled in French by explicit ticks (« 25 nov. », « 14h », « 14:05 »).

    Plotly writes month names in English (« Nov 25 ») unless its French locale script is
    loaded, which JupyterLab's and nbconvert's renderers do not do: the ticks are computed
    here instead, aligned on round times.
    """
    if buckets.empty:
        return {}
    first, last = buckets.min(), buckets.max()
    step = next((s for s in _TICK_STEPS if (last - first) / s <= _MAX_TICKS - 1), _TICK_STEPS[-1])
    start = first.floor("D") if step >= pd.Timedelta(days=1) else first.floor(step)
    ticks = [t for t in pd.date_range(start, last, freq=step) if t >= first] or [first]
    return {
        "tickmode": "array",
        "tickvals": _iso(ticks),
        "ticktext": [_tick_label(t, step, i == 0) for i, t in enumerate(ticks)],
    }


def _hover(frame: pd.DataFrame, unit: str) -> list[list[str]]:
    """Per bucket: its French label and its number of sales (hover text)."""
    return [
        [fr_moment(bucket, unit), fr_int(sales)]
        for bucket, sales in zip(frame["bucket"], frame["sales"], strict=True)
    ]


def _layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    return {**_BASE_LAYOUT, "title": {"text": title}, "height": height, **extra}


def _time_traces(frame: pd.DataFrame, unit: str, latest: Any) -> list[dict[str, Any]]:
    """The revenue line; its last bucket, still filling at ``latest``, dotted and named so."""
    x, y = _iso(frame["bucket"]), list(frame["revenue"])
    hover = _hover(frame, unit)
    line = {
        "type": "scatter",
        "mode": "lines",
        "fill": "tozeroy",
        "customdata": hover,
        "hovertemplate": "%{customdata[0]}<br>%{y:,.2f} € (%{customdata[1]} ventes)<extra></extra>",
    }
    incomplete = len(frame) > 0 and frame["bucket"].iloc[-1] + pd.Timedelta(
        1, BUCKET_FREQ[unit]
    ) > pd.Timestamp(latest)
    done = len(frame) - 1 if incomplete else len(frame)
    traces = [{**line, "x": x[:done], "y": y[:done], "customdata": hover[:done],
               "name": f"CA {_UNIT_LABELS[unit]}"}]  # fmt: skip
    if incomplete:
        tail = slice(max(done - 1, 0), None)
        traces.append(
            {**line, "x": x[tail], "y": y[tail], "customdata": hover[tail],
             "name": _IN_PROGRESS[unit], "line": {"dash": "dot", "color": "#7f7f7f"},
             "fillcolor": "rgba(127,127,127,0.15)", "mode": "lines+markers"}
        )  # fmt: skip
    return traces


def figures(view: View) -> dict[str, dict[str, Any]]:
    """The dashboard's plotly figures of ``view``, as plain JSON-ready dicts (no validation)."""
    unit = _UNIT_LABELS[view.unit]
    legend = {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}
    time_fig = {
        "data": _time_traces(view.over_time, view.unit, view.latest),
        "layout": _layout(
            f"Chiffre d'affaires {unit} (UTC)",
            320,
            xaxis=_time_axis(view.over_time["bucket"], view.unit),
            yaxis=_EURO_AXIS,
            legend=legend,
        ),
    }
    live = view.live
    live_fig = {
        "data": [
            {
                "type": "bar",
                "x": _iso(live["bucket"]),
                "y": list(live["revenue"]),
                "marker": {"color": "#ff7f0e"},
                "customdata": _hover(live, "minute"),
                "hovertemplate": (
                    "%{customdata[0]}<br>%{y:,.2f} € (%{customdata[1]} ventes)<extra></extra>"
                ),
            }
        ],
        "layout": _layout(
            "En direct : dernière heure, par minute (UTC)",
            240,
            xaxis=_time_axis(live["bucket"], "minute"),
            yaxis=_EURO_AXIS,
        ),
    }
    map_fig = json.loads(charts.region_choropleth_plotly(view.by_region).to_json())
    map_fig["layout"] |= {"height": 420, "autosize": True}
    region_fig = _ranking(view.by_region, "region", "Ventes par région", "#d62728")
    top_fig = _ranking(view.top, "product", charts.top_products_title(len(view.top)), "#2ca02c")
    return {
        "time": time_fig,
        "live": live_fig,
        "map": map_fig,
        "regions": region_fig,
        "products": top_fig,
    }


def _ranking(frame: pd.DataFrame, label: str, title: str, colour: str) -> dict[str, Any]:
    """Horizontal bars of revenue by ``label``, largest at the top."""
    ordered = frame.sort_values("revenue")
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": list(ordered["revenue"]),
                "y": list(ordered[label]),
                "marker": {"color": colour},
                "customdata": list(ordered["sales"]),
                "hovertemplate": "%{y}<br>%{x:,.2f} € (%{customdata} ventes)<extra></extra>",
            }
        ],
        "layout": _layout(title, 420, xaxis=_EURO_AXIS, yaxis={"automargin": True}),
    }


def _output(figure: dict[str, Any]) -> dict[str, Any]:
    return {
        "output_type": "display_data",
        "data": {
            PLOTLY_MIME: {**figure, "config": _PLOT_CONFIG},
            "text/plain": figure["layout"]["title"]["text"],
        },
        "metadata": {},
    }


def render(view: View) -> dict[str, bytes]:
    """The dashboard's three PNGs of ``view``, drawn by `sales_stream.charts`.

    An empty selection gets a French « en attente » figure instead of an empty chart.
    """
    live = view.live if view.unit != "minute" and not view.live.empty else None
    time_fig = (
        charts.revenue_over_time_figure(view.over_time, recent=live)
        if len(view.over_time)
        else _waiting("Chiffre d'affaires dans le temps")
    )
    region_fig = (
        charts.sales_by_region_figure(view.by_region)
        if len(view.by_region)
        else _waiting("Ventes par région")
    )
    top_fig = charts.top_products_figure(view.top) if len(view.top) else _waiting("Top produits")
    return {"time": _png(time_fig), "regions": _png(region_fig), "products": _png(top_fig)}


class LiveDashboard:
    """Filter widgets and three charts, refreshed in the background; see the module doc.

    Args:
        db: The MongoDB database of the pipeline.
        refresh_s: Seconds between two reads of the data.
    """

    def __init__(self, db: Database, *, refresh_s: float = 5.0) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self._db = db
        self._refresh_s = refresh_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._snapshot: DashboardSnapshot | None = None
        self._thread: threading.Thread | None = None
        self.last_timing: Timing | None = None
        self.drawn = 0
        wide = {"description_width": "initial"}
        self.period = widgets.Dropdown(
            options=[(label, key) for key, (label, _span) in PERIODS.items()],
            value="all",
            description="Période",
            style=wide,
        )
        self.regions = widgets.SelectMultiple(
            options=fr_sorted(r.name for r in REGIONS), rows=6, description="Régions", style=wide
        )
        self.products = widgets.SelectMultiple(
            options=fr_sorted(p.name for p in CATALOGUE),
            rows=6,
            description="Produits",
            style=wide,
        )
        self.hint = widgets.HTML(
            "<small>Aucune région / aucun produit sélectionné = tous. "
            "Ctrl+clic pour en choisir plusieurs.</small>"
        )
        self.status = widgets.HTML("<i>chargement…</i>")
        self.charts = {
            name: widgets.Output(layout={"width": "100%"})
            for name in ("time", "live", "map", "regions", "products")
        }
        for control in (self.period, self.regions, self.products):
            control.observe(self._on_filter, names="value")
        controls = widgets.HBox(
            [self.period, self.regions, self.products],
            layout={"flex_flow": "row wrap"},
        )
        side_by_side = {"flex": "1 1 420px", "min_width": "320px"}
        for name in ("map", "regions", "products"):
            self.charts[name].layout = widgets.Layout(**side_by_side)
        self.widget = widgets.VBox(
            [
                controls,
                self.hint,
                self.status,
                self.charts["time"],
                self.charts["live"],
                widgets.HBox(
                    [self.charts["map"], self.charts["regions"]],
                    layout={"flex_flow": "row wrap", "width": "100%"},
                ),
                self.charts["products"],
            ],
            layout={"width": "100%"},
        )
        self._view: View | None = None

    def selection(self) -> Selection:
        """The selection currently in the widgets."""
        return Selection(
            period=self.period.value,
            regions=tuple(self.regions.value),
            products=tuple(self.products.value),
        )

    def refresh(self, *, reread: bool = True) -> Timing:
        """Redraw now (on the caller's thread), re-reading the data if ``reread``."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        return self._draw(generation, reread=reread)

    def _draw(self, generation: int, *, reread: bool) -> Timing:
        started = time.perf_counter()
        if reread or self._snapshot is None:
            self._snapshot = load_snapshot(self._db)
        read_s = time.perf_counter() - started
        selection = self.selection()
        view = self._snapshot.view(selection)
        specs = figures(view)
        with self._lock:
            if generation != self._generation:  # a newer selection is being drawn
                return Timing(selection, read_s, time.perf_counter() - started - read_s, reread)
            for name, spec in specs.items():
                self.charts[name].outputs = (_output(spec),)
            self.status.value = self._status_html(view, self._snapshot)
            self._view = view
            self.drawn += 1
            timing = Timing(selection, read_s, time.perf_counter() - started - read_s, reread)
            self.last_timing = timing
        return timing

    @staticmethod
    def _status_html(view: View, snapshot: DashboardSnapshot) -> str:
        source = (
            "agrégats par heure et par jour"
            if snapshot.source == "rollups"
            else "collection sales (pas d'agrégats : recalcul complet)"
        )
        granularity = {"minute": "par minute", "hour": "par heure", "day": "par jour"}[view.unit]
        return (
            f"<b>{fr_int(view.sales)}</b> ventes, <b>{fr_float(view.revenue, 2)} €</b> · "
            f"courbe {granularity} · dernière vente : {fr_time(snapshot.latest)} · "
            f"lu à {snapshot.read_at:%H:%M:%S} UTC · source : {source}"
        )

    def start(self) -> LiveDashboard:
        """Start the background worker (first draw included); returns ``self``."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="live-dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background worker."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._refresh_s + 10)
            self._thread = None

    @property
    def running(self) -> bool:
        """Whether the background worker is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _on_filter(self, _change: dict[str, Any]) -> None:
        with self._lock:
            self._generation += 1
            self._filter_pending = True
        self._wake.set()

    def _loop(self) -> None:
        next_read = 0.0
        self._filter_pending = False
        while not self._stop.is_set():
            now = time.monotonic()
            reread = now >= next_read
            with self._lock:
                self._filter_pending = False
                generation = self._generation
            if reread or self._snapshot is not None:
                try:
                    self._draw(generation, reread=reread)
                except Exception as exc:  # shown in the panel, retried next tick
                    log.exception("dashboard refresh failed")
                    self.status.value = f"<span style='color:#b00'>erreur : {exc}</span>"
            if reread:
                next_read = time.monotonic() + self._refresh_s
            self._wake.clear()
            with self._lock:
                pending = self._filter_pending
            if not pending:
                self._wake.wait(max(0.0, next_read - time.monotonic()))

    def wait_drawn(self, timeout_s: float = 60.0) -> bool:
        """Block until the first draw is shown (or ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        while self.drawn == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.drawn > 0

    def snapshot_html(self) -> str:
        """The current view as static HTML: status line and matplotlib PNGs of the charts."""
        view = self._view
        if view is None:
            return "<i>Tableau de bord : en attente de la première lecture des données.</i>"
        images = "".join(
            f"<img style='max-width:100%' alt='{name}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            for name, png in render(view).items()
        )
        return f"<div>{self.status.value}</div>{images}"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        self.wait_drawn()
        shown = displayed(self, self.widget)
        bundle = dict(shown._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/html"] = self.snapshot_html()
        bundle["text/plain"] = "(tableau de bord interactif : exécutez le notebook)"
        return bundle
