"""Static and interactive region maps drawn from the shipped boundary file."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from sales_stream import charts, geo
from sales_stream.reference import REGIONS

NAMES = sorted(region.name for region in REGIONS)


def revenue_frame() -> pd.DataFrame:
    return pd.DataFrame({"region": NAMES, "revenue": [1000.0 * (i + 1) for i in range(len(NAMES))]})


def test_the_shipped_boundaries_are_the_13_reference_regions():
    assert sorted(region.name for region in geo.regions()) == NAMES
    assert "IGN" in (Path(geo.__file__).parent / "data" / "SOURCE.md").read_text()


def test_the_choropleth_png_names_all_13_regions_without_overlap(tmp_path: Path):
    figure = charts.sales_by_region_figure(revenue_frame())
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    labels = figure.axes[0].texts
    assert sorted(t.get_text().replace("-\n", "-") for t in labels) == NAMES
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
    overlaps = [(a, b) for (a, x), (b, y) in itertools.combinations(boxes, 2) if x.overlaps(y)]
    assert overlaps == []
    assert len(figure.axes[0].patches) >= 13  # one filled polygon per region at least
    figure.savefig(tmp_path / "regions.png")
    assert (tmp_path / "regions.png").read_bytes().startswith(b"\x89PNG")


def test_save_charts_writes_the_region_map(tmp_path: Path):
    hours = pd.date_range("2026-01-01", periods=4, freq="h", tz="UTC")
    paths = charts.save_charts(
        over_time=pd.DataFrame({"bucket": hours, "revenue": [1.0, 2.0, 3.0, 4.0]}),
        by_region=revenue_frame(),
        top=pd.DataFrame({"product": ["a", "b"], "revenue": [2.0, 1.0]}),
        out_dir=tmp_path,
    )
    assert paths["regions"].is_file()


def test_the_plotly_choropleth_covers_every_region():
    figure = charts.region_choropleth_plotly(revenue_frame())
    [trace] = figure.data
    assert trace.type == "choroplethmap"
    assert figure.layout.map.style == "white-bg"  # no tiles to fetch: draws offline
    assert sorted(trace.locations) == NAMES
    assert trace.featureidkey == "properties.nom"
    features = {f["properties"]["nom"] for f in trace.geojson["features"]}
    assert features == set(NAMES)
