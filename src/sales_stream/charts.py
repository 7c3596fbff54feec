"""Static PNG charts (matplotlib, no GUI backend) of the three dashboard views, from real data.

Used by ``make run``, the report and the committed notebook outputs; the interactive
versions are in :mod:`sales_stream.ui.dashboard` (plotly).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MaxNLocator

from sales_stream import geo

CHART_FILES = {
    "time": "ca_dans_le_temps.png",
    "regions": "ventes_par_region.png",
    "products": "top_produits.png",
}
#: Beyond this span the history's ticks are days (« 25/11 »), below it hours (« 25/11 14h »).
_DAY_LABELS = pd.Timedelta(days=2)
_EUR = FuncFormatter(lambda value, _pos: f"{value:,.0f} €".replace(",", " "))
_SOURCE = "Données générées par sales-stream (ventes fictives), lues dans MongoDB"
# Label moves (degrees) so that small or crowded regions keep their names readable.
_LABEL_OFFSETS = {
    "Grand Est": (0.9, 0.0),
    "Corse": (-1.5, 0.0),
    "Hauts-de-France": (0.0, 0.25),
    "Centre-Val de Loire": (0.0, -0.35),
}


def revenue_over_time_figure(frame: pd.DataFrame, *, recent: pd.DataFrame | None = None) -> Figure:
    """Revenue per hour (columns ``bucket``, ``revenue``), plus the last hour per minute.

    A live stream puts far more sales in the current hour than any hour of history, so the
    history stops before the current hour and ``recent`` (per minute) gets its own panel.
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    if recent is None or recent.empty:
        axes = [fig.subplots()]
    else:
        axes = fig.subplots(1, 2, width_ratios=[2.2, 1])
    history = frame
    if len(axes) == 2:
        history = frame[frame["bucket"] < recent["bucket"].min().floor("h")]
    _line(axes[0], history, "Historique : chiffre d'affaires par heure (UTC)")
    if len(axes) == 2:
        live = axes[1]
        live.bar(recent["bucket"], recent["revenue"], width=1 / 1440, color="#ff7f0e")
        live.set_title("Dernière heure : par minute (UTC)")
        live.yaxis.set_major_formatter(_EUR)
        live.xaxis.set_major_locator(AutoDateLocator(minticks=3, maxticks=6))
        live.xaxis.set_major_formatter(DateFormatter("%H:%M"))
        live.grid(alpha=0.3)
    _caption(fig)
    return fig


def _line(ax: Axes, frame: pd.DataFrame, title: str, *, colour: str = "#1f77b4") -> None:
    ax.plot(frame["bucket"], frame["revenue"], color=colour, linewidth=1.4)
    ax.fill_between(frame["bucket"], frame["revenue"], alpha=0.15, color=colour)
    ax.set_title(title)
    ax.yaxis.set_major_formatter(_EUR)
    # Numeric French dates, few enough ticks that labels never overlap.
    span = frame["bucket"].max() - frame["bucket"].min() if len(frame) else pd.Timedelta(0)
    ax.xaxis.set_major_locator(AutoDateLocator(minticks=3, maxticks=8))
    ax.xaxis.set_major_formatter(DateFormatter("%d/%m" if span > _DAY_LABELS else "%d/%m %Hh"))
    ax.grid(alpha=0.3)


def sales_by_region_figure(frame: pd.DataFrame) -> Figure:
    """Choropleth of the 13 regions plus a bar chart (columns ``region``, ``revenue``).

    The map is drawn from the shipped boundary file (`sales_stream.geo`), every region named
    by its label; regions without sales are grey.
    """
    fig = Figure(figsize=(12, 5.8), layout="constrained")
    ax_map, ax_bar = fig.subplots(1, 2, width_ratios=[1, 1.1])
    draw_choropleth(ax_map, dict(zip(frame["region"], frame["revenue"], strict=True)))
    ax_map.set_title("Chiffre d'affaires par région")
    ordered = frame.sort_values("revenue")
    ax_bar.barh(ordered["region"], ordered["revenue"], color="#b2182b", alpha=0.8)
    ax_bar.xaxis.set_major_formatter(_EUR)
    ax_bar.xaxis.set_major_locator(MaxNLocator(4))  # room for « 600 000 € » labels
    ax_bar.set_title("Chiffre d'affaires par région")
    ax_bar.tick_params(axis="y", labelsize=8)
    _caption(fig, f"{_SOURCE} · {geo.ATTRIBUTION}")
    return fig


def draw_choropleth(ax: Axes, values: dict[str, float]) -> dict[str, Text]:
    """Fill each region of ``ax`` by its value (sequential reds) and name it; return the labels.

    Args:
        ax: Axes to draw on (its aspect is set for a lon/lat plot at France's latitude).
        values: Value per region name; a missing region is drawn in grey.
    """
    top = max((v for v in values.values() if v > 0), default=1.0)
    cmap = colormaps["Reds"]
    labels: dict[str, Text] = {}
    for region in geo.regions():
        value = values.get(region.name)
        colour = "#dddddd" if value is None else cmap(0.15 + 0.8 * value / top)
        for ring in region.rings:
            ax.add_patch(Polygon(ring, closed=True, facecolor=colour, edgecolor="white", lw=0.8))
        x, y = region.label_point
        dx, dy = _LABEL_OFFSETS.get(region.name, (0.0, 0.0))
        leader = math.hypot(dx, dy) > 1.0
        arrow = {"arrowstyle": "-", "color": "#333333", "lw": 0.6} if leader else None
        labels[region.name] = ax.annotate(
            region.name.replace("-", "-\n", 1) if len(region.name) > 16 else region.name,
            (x, y),
            xytext=(x + dx, y + dy),
            ha="center",
            va="center",
            fontsize=7,
            arrowprops=arrow,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
        )
    ax.set(xlim=(-5.6, 10.2), ylim=(41.2, 51.3))
    ax.set_aspect(1 / math.cos(math.radians(46.5)))
    ax.set_axis_off()
    norm = Normalize(vmin=0, vmax=top / 0.95)
    colorbar = ax.figure.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.6, pad=0.01)
    colorbar.ax.yaxis.set_major_formatter(_EUR)
    return labels


def region_choropleth_plotly(frame: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Plotly choropleth of revenue by region (columns ``region``, ``revenue``), for widgets.

    The shipped boundaries on a blank MapLibre map (``white-bg``: no tiles, nothing fetched),
    so it draws offline; a ``geo`` choropleth would fetch plotly's world outline from its CDN
    first and stay blank without network. Hover shows name and revenue.
    """
    figure = go.Figure(
        go.Choroplethmap(
            geojson=geo.feature_collection(),
            featureidkey="properties.nom",
            locations=frame["region"],
            z=frame["revenue"],
            colorscale="Reds",
            marker_line_color="white",
            colorbar={"title": {"text": "CA (€)"}, "ticksuffix": " €", "exponentformat": "none"},
            hovertemplate="%{location}<br>%{z:,.0f} €<extra></extra>",
        )
    )
    figure.update_layout(
        title=title or "Chiffre d'affaires par région",
        map={"style": "white-bg", "center": {"lat": 46.4, "lon": 2.4}, "zoom": 4.1},
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
        separators=", ",
    )
    return figure


def top_products_title(count: int) -> str:
    """« Top 10 produits », « Top 1 produit »."""
    return f"Top {count} produit{'s' if count > 1 else ''}"


def top_products_figure(frame: pd.DataFrame) -> Figure:
    """Horizontal bar chart of the top products (columns ``product``, ``revenue``)."""
    ordered = frame.sort_values("revenue")
    fig = Figure(figsize=(10, 0.45 * len(ordered) + 1.5), layout="constrained")
    ax = fig.subplots()
    ax.barh(ordered["product"], ordered["revenue"], color="#2ca02c", alpha=0.85)
    ax.xaxis.set_major_formatter(_EUR)
    ax.set_title(f"{top_products_title(len(ordered))} par chiffre d'affaires")
    ax.grid(axis="x", alpha=0.3)
    _caption(fig)
    return fig


def save_charts(
    *,
    over_time: pd.DataFrame,
    by_region: pd.DataFrame,
    top: pd.DataFrame,
    out_dir: Path,
    recent: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write the three PNGs into ``out_dir``; return their paths by chart name.

    Args:
        over_time: Revenue per hour.
        by_region: Revenue per region.
        top: Top products.
        out_dir: Destination folder.
        recent: Revenue per minute over the last hour (a live panel), if any.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "time": revenue_over_time_figure(over_time, recent=recent),
        "regions": sales_by_region_figure(by_region),
        "products": top_products_figure(top),
    }
    paths = {}
    for name, fig in figures.items():
        paths[name] = out_dir / CHART_FILES[name]
        fig.savefig(paths[name], dpi=110)
    return paths


def _caption(fig: Figure, text: str = _SOURCE) -> None:
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    fig.text(0.995, 0.005, text, ha="right", va="bottom", fontsize=7, color="#666666")
