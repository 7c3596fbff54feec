"""Static PNG charts (matplotlib, no GUI backend) of the three dashboard views, from real data.

Used by ``make run``, the report and the committed notebook outputs; the interactive
versions are in :mod:`sales_stream.ui.dashboard` (plotly).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

CHART_FILES = {
    "time": "ca_dans_le_temps.png",
    "regions": "ventes_par_region.png",
    "products": "top_produits.png",
}
_EUR = FuncFormatter(lambda value, _pos: f"{value:,.0f} €".replace(",", " "))
_SOURCE = "Données générées par sales-stream (ventes fictives), lues dans MongoDB"


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
        live.xaxis.set_major_formatter(DateFormatter("%H:%M"))
        live.grid(alpha=0.3)
    _caption(fig)
    return fig


def _line(ax: Axes, frame: pd.DataFrame, title: str, *, colour: str = "#1f77b4") -> None:
    ax.plot(frame["bucket"], frame["revenue"], color=colour, linewidth=1.4)
    ax.fill_between(frame["bucket"], frame["revenue"], alpha=0.15, color=colour)
    ax.set_title(title)
    ax.yaxis.set_major_formatter(_EUR)
    ax.grid(alpha=0.3)


def sales_by_region_figure(frame: pd.DataFrame) -> Figure:
    """Bubble map on lat/lon plus a bar chart (columns ``region, revenue, sales, lat, lon``)."""
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    ax_map, ax_bar = fig.subplots(1, 2, width_ratios=[1, 1.1])
    sizes = 2000 * frame["revenue"] / max(frame["revenue"].max(), 1.0)
    ax_map.scatter(frame["lon"], frame["lat"], s=sizes, alpha=0.55, color="#d62728")
    for row in frame.itertuples():
        ax_map.annotate(row.region, (row.lon, row.lat), fontsize=7, ha="center", va="center")
    ax_map.set(xlim=(-5.5, 10), ylim=(41, 51.5), xlabel="longitude", ylabel="latitude")
    ax_map.set_aspect(1.45)
    ax_map.set_title("Ventes par région (taille = chiffre d'affaires)")
    ax_map.grid(alpha=0.3)
    ordered = frame.sort_values("revenue")
    ax_bar.barh(ordered["region"], ordered["revenue"], color="#d62728", alpha=0.8)
    ax_bar.xaxis.set_major_formatter(_EUR)
    ax_bar.set_title("Chiffre d'affaires par région")
    ax_bar.tick_params(axis="y", labelsize=8)
    _caption(fig)
    return fig


def top_products_figure(frame: pd.DataFrame) -> Figure:
    """Horizontal bar chart of the top products (columns ``product``, ``revenue``)."""
    ordered = frame.sort_values("revenue")
    fig = Figure(figsize=(10, 0.45 * len(ordered) + 1.5), layout="constrained")
    ax = fig.subplots()
    ax.barh(ordered["product"], ordered["revenue"], color="#2ca02c", alpha=0.85)
    ax.xaxis.set_major_formatter(_EUR)
    ax.set_title(f"Top {len(ordered)} produits par chiffre d'affaires")
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
        by_region: Revenue per region with lat/lon.
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


def _caption(fig: Figure) -> None:
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    fig.text(0.995, 0.005, _SOURCE, ha="right", va="bottom", fontsize=7, color="#666666")
