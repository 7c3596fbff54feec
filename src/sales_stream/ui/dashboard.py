"""Live dashboard in the notebook: the three Tableau views with period/region/product filters.

Reads through :mod:`sales_stream.queries` (the same aggregations as the report and the Hyper
checks) and refreshes on a background thread while the pipeline runs.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import ipywidgets as widgets
import plotly.graph_objects as go
from pymongo.database import Database

from sales_stream import queries
from sales_stream.reference import CATALOGUE, REGIONS

PERIODS = (
    ("Tout l'historique", None),
    ("Dernière heure", timedelta(hours=1)),
    ("24 dernières heures", timedelta(days=1)),
    ("7 derniers jours", timedelta(days=7)),
)


class LiveDashboard:
    """Three plotly figures and three filter widgets, refreshed every ``refresh_s`` seconds."""

    def __init__(
        self, db: Database, *, unit: str = "hour", top_n: int = 10, refresh_s: float = 5.0
    ) -> None:
        self._db = db
        self._unit = unit
        self._top_n = top_n
        self._refresh_s = refresh_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.period = widgets.Dropdown(options=PERIODS, value=None, description="Période")
        self.regions = widgets.SelectMultiple(
            options=[r.name for r in REGIONS], rows=6, description="Régions"
        )
        self.products = widgets.SelectMultiple(
            options=sorted(p.name for p in CATALOGUE), rows=6, description="Produits"
        )
        self.status = widgets.HTML()
        self.time_fig = go.FigureWidget(
            go.Scatter(mode="lines", line={"width": 2}),
            layout={
                "title": "CA dans le temps (UTC)",
                "height": 320,
                "width": 1200,
                "yaxis_title": "€",
            },
        )
        # Plain lon/lat axes rather than a geo base map: those tiles come from a CDN, which
        # an offline machine cannot reach.
        self.map_fig = go.FigureWidget(
            go.Scatter(mode="markers+text", textposition="top center", marker={"opacity": 0.6}),
            layout={
                "title": "Ventes par région (taille = CA)",
                "height": 460,
                "width": 560,
                "xaxis": {"title": "longitude", "range": [-5.5, 10]},
                "yaxis": {"title": "latitude", "range": [41, 51.5], "scaleanchor": "x"},
            },
        )
        self.top_fig = go.FigureWidget(
            go.Bar(orientation="h"),
            layout={
                "title": f"Top {top_n} produits",
                "height": 460,
                "width": 640,
                "xaxis_title": "€",
                "margin": {"l": 220},
            },
        )
        for control in (self.period, self.regions, self.products):
            control.observe(lambda _change: self.refresh(), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.period, self.regions, self.products]),
                self.status,
                self.time_fig,
                widgets.HBox([self.map_fig, self.top_fig]),
            ]
        )

    def filters(self) -> queries.Filters:
        """The filters currently selected in the widgets."""
        span = self.period.value
        return queries.Filters(
            start=datetime.now(UTC) - span if span else None,
            end=None,
            regions=list(self.regions.value) or None,
            products=list(self.products.value) or None,
        )

    def refresh(self) -> dict[str, float]:
        """Query MongoDB with the current filters and redraw the three figures."""
        with self._lock:
            filters = self.filters()
            over_time = queries.revenue_over_time(self._db, unit=self._unit, filters=filters)
            by_region = queries.revenue_by_region(self._db, filters=filters)
            top = queries.top_products(self._db, n=self._top_n, filters=filters)
            with self.time_fig.batch_update():
                self.time_fig.data[0].x = list(over_time["bucket"])
                self.time_fig.data[0].y = list(over_time["revenue"])
            biggest = max(by_region["revenue"].max(), 1.0) if len(by_region) else 1.0
            with self.map_fig.batch_update():
                marker = self.map_fig.data[0]
                marker.y = list(by_region["lat"])
                marker.x = list(by_region["lon"])
                marker.text = list(by_region["region"])
                marker.marker.size = [8 + 40 * v / biggest for v in by_region["revenue"]]
            ordered = top.sort_values("revenue")
            with self.top_fig.batch_update():
                self.top_fig.data[0].x = list(ordered["revenue"])
                self.top_fig.data[0].y = list(ordered["product"])
            revenue = float(by_region["revenue"].sum()) if len(by_region) else 0.0
            sales = int(by_region["sales"].sum()) if len(by_region) else 0
            now = datetime.now(UTC).strftime("%H:%M:%S")
            self.status.value = (
                f"<b>{sales:,}</b> ventes, <b>{revenue:,.2f} €</b> — mis à jour à {now} UTC"
            ).replace(",", " ")
            return {"sales": sales, "revenue": revenue}

    def start(self) -> None:
        """Refresh now, then every ``refresh_s`` seconds in the background."""
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="live-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refresh."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._refresh_s + 5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # shown in the panel, retried next tick
                self.status.value = f"<span style='color:#b00'>erreur : {exc}</span>"
