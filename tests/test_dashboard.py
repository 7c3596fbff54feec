"""The notebook dashboard: views from the rollups equal the aggregations over ``sales``."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from kafka import KafkaProducer
from pymongo import MongoClient
from pymongo.database import Database

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.config import Settings
from sales_stream.events import encode
from sales_stream.infra.process import wait_until
from sales_stream.produce.generator import SaleGenerator
from sales_stream.read import mongo_queries as queries
from sales_stream.read.dashboard_views import DashboardSnapshot, Selection, load_snapshot
from sales_stream.ui.dashboard import _PLOT_CONFIG, PLOTLY_MIME, LiveDashboard, figures
from sales_stream.ui.format import fr_int

END = datetime(2026, 11, 20, 18, tzinfo=UTC)
PRODUCTS = ("Câble USB-C", "Smartphone premium")
REGIONS = ("Bretagne", "Corse")
REGION_COLUMNS = ["region", "revenue", "sales", "quantity"]
TOP_COLUMNS = ["product", "revenue", "sales", "quantity"]
TIME_COLUMNS = ["bucket", "revenue", "sales"]


@pytest.fixture(scope="module")
def filled(
    settings: Settings, endpoints: infra.Endpoints, mongo: MongoClient
) -> Iterator[tuple[Database, DashboardSnapshot]]:
    """Two days of history through Kafka and the consumer with the rollup hook."""
    name = f"dashboard_{datetime.now(UTC):%H%M%S%f}"
    from sales_stream.clients import ensure_topic

    ensure_topic(endpoints.kafka_bootstrap, name, partitions=3)
    events = list(itertools.islice(SaleGenerator(5).backfill(2, end=END, events_per_day=400), 5000))
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, linger_ms=20)
    for event in events:
        producer.send(name, key=event.region.encode(), value=encode(event))
    producer.flush()
    producer.close()
    db = mongo[name]
    stack = Stack(settings.model_copy(update={"topic": name, "db": name}), endpoints)
    assert stack.consumer(group_id=name).run(max_events=len(events)).stored == len(events)
    stack.close()
    yield db, load_snapshot(db)
    mongo.drop_database(name)


def _same(left: pd.DataFrame, right: pd.DataFrame, columns: list[str]) -> None:
    assert len(left) > 0
    pd.testing.assert_frame_equal(
        left[columns].reset_index(drop=True),
        right[columns].reset_index(drop=True),
        check_dtype=False,
    )


def test_reads_the_rollups_and_the_latest_sale(filled: tuple[Database, DashboardSnapshot]) -> None:
    db, snapshot = filled
    assert snapshot.source == "rollups"
    assert snapshot.latest == queries.totals(db)["last_ts"]
    assert int(snapshot.hourly["sales"].sum()) == queries.totals(db)["sales"]


@pytest.mark.parametrize("regions", [(), REGIONS])
def test_unfiltered_period_views_equal_the_aggregations(
    filled: tuple[Database, DashboardSnapshot], regions: tuple[str, ...]
) -> None:
    db, snapshot = filled
    view = snapshot.view(Selection(regions=regions))
    filters = queries.Filters(regions=list(regions) or None)
    _same(view.by_region, queries.revenue_by_region(db, filters=filters), REGION_COLUMNS)
    _same(view.top, queries.top_products(db, n=10, filters=filters), TOP_COLUMNS)
    expected = queries.revenue_over_time(db, unit="hour", filters=filters)
    _same(view.over_time, expected, TIME_COLUMNS)
    assert view.unit == "hour"
    assert view.sales == int(expected["sales"].sum())


def test_product_filter_uses_days(filled: tuple[Database, DashboardSnapshot]) -> None:
    db, snapshot = filled
    view = snapshot.view(Selection(products=PRODUCTS, regions=REGIONS))
    filters = queries.Filters(products=list(PRODUCTS), regions=list(REGIONS))
    assert view.unit == "day"
    _same(view.over_time, queries.revenue_over_time(db, unit="day", filters=filters), TIME_COLUMNS)
    _same(view.by_region, queries.revenue_by_region(db, filters=filters), REGION_COLUMNS)
    _same(view.top, queries.top_products(db, n=10, filters=filters), TOP_COLUMNS)


def test_last_hour_is_exact_per_minute(filled: tuple[Database, DashboardSnapshot]) -> None:
    db, snapshot = filled
    view = snapshot.view(Selection(period="1h"))
    filters = queries.Filters(start=snapshot.latest - timedelta(hours=1))
    assert view.unit == "minute"
    _same(
        view.over_time, queries.revenue_over_time(db, unit="minute", filters=filters), TIME_COLUMNS
    )
    _same(view.by_region, queries.revenue_by_region(db, filters=filters), REGION_COLUMNS)
    _same(view.live, view.over_time, TIME_COLUMNS)


def test_24_hours_are_exactly_the_last_24_hours(filled: tuple[Database, DashboardSnapshot]) -> None:
    db, snapshot = filled
    view = snapshot.view(Selection(period="24h"))
    filters = queries.Filters(start=snapshot.latest - timedelta(days=1))
    assert view.unit == "hour"
    _same(view.by_region, queries.revenue_by_region(db, filters=filters), REGION_COLUMNS)
    _same(view.top, queries.top_products(db, n=10, filters=filters), TOP_COLUMNS)
    _same(view.over_time, queries.revenue_over_time(db, unit="hour", filters=filters), TIME_COLUMNS)
    whole_days = queries.Filters(start=pd.Timestamp(filters.start).floor("D").to_pydatetime())
    assert view.sales < queries.totals(db, filters=whole_days)["sales"]  # not whole UTC days


def test_hours_without_sales_are_at_zero(filled: tuple[Database, DashboardSnapshot]) -> None:
    db, snapshot = filled
    view = snapshot.view(Selection(regions=("Corse",)))
    buckets = view.over_time["bucket"]
    assert (buckets.diff().dropna() == pd.Timedelta(hours=1)).all()  # every hour, no gap
    assert buckets.iloc[-1] == pd.Timestamp(snapshot.latest).floor("h")
    sold = queries.revenue_over_time(db, unit="hour", filters=queries.Filters(regions=["Corse"]))
    quiet = view.over_time[view.over_time["sales"] == 0]
    assert len(quiet) > 0
    assert (quiet["revenue"] == 0).all()
    assert not set(quiet["bucket"]) & set(sold.loc[sold["sales"] > 0, "bucket"])


def test_figures_are_french_with_the_map_and_the_day_in_progress(
    filled: tuple[Database, DashboardSnapshot],
) -> None:
    _, snapshot = filled
    view = snapshot.view(Selection(products=PRODUCTS))
    specs = figures(view)
    assert view.unit == "day"
    line, in_progress = specs["time"]["data"]
    assert in_progress["name"] == "jour en cours (incomplet)"
    assert in_progress["x"][-1] == view.over_time["bucket"].iloc[-1].isoformat()
    assert line["x"][-1] == in_progress["x"][0]  # the dotted part continues the line
    for name in ("time", "live"):
        axis = specs[name]["layout"]["xaxis"]
        assert axis["tickmode"] == "array"
        text = " ".join(axis["ticktext"])
        assert re.search(r"\b(nov\.|déc\.)", text), text
        assert not re.search(r"\b(Nov|Dec|Jan|Feb|Mon|Tue)\b", text), text
    hover = specs["time"]["data"][0]["customdata"][0][0]
    assert re.fullmatch(r"\d{1,2} (nov\.|déc\.) 2026", hover), hover
    [choropleth] = specs["map"]["data"]
    assert choropleth["type"] == "choroplethmap"
    assert sorted(choropleth["locations"]) == sorted(view.by_region["region"])
    assert specs["map"]["layout"]["map"]["style"] == "white-bg"
    assert _PLOT_CONFIG["displayModeBar"] is False  # no toolbar over the titles


def test_lists_are_in_french_order(filled: tuple[Database, DashboardSnapshot]) -> None:
    db, _ = filled
    dashboard = LiveDashboard(db, refresh_s=60)
    products = list(dashboard.products.options)
    assert products.index("Câble USB-C") < products.index("Coque de smartphone")
    assert products.index("Disque SSD externe 1 To") < products.index("Écouteurs sans fil")
    assert products.index("Écran 27 pouces") < products.index("Enceinte Bluetooth")
    regions = list(dashboard.regions.options)
    assert regions.index("Hauts-de-France") < regions.index("Île-de-France")
    assert regions.index("Île-de-France") < regions.index("Normandie")


def test_empty_selection_is_empty_not_an_error(filled: tuple[Database, DashboardSnapshot]) -> None:
    _, snapshot = filled
    view = snapshot.view(Selection(period="1h", regions=("Corse",), products=("Câble USB-C",)))
    assert view.sales >= 0
    with pytest.raises(ValueError, match="period"):
        Selection(period="forever")


def test_widget_redraws_in_the_background_and_the_latest_selection_wins(
    filled: tuple[Database, DashboardSnapshot],
) -> None:
    db, snapshot = filled
    total = int(snapshot.hourly["sales"].sum())
    corse = int(snapshot.view(Selection(regions=("Corse",))).sales)
    dashboard = LiveDashboard(db, refresh_s=60).start()
    try:
        assert wait_until(lambda: dashboard.drawn >= 1, timeout=30)
        assert f"<b>{fr_int(total)}</b> ventes" in dashboard.status.value
        outputs = dashboard.charts["time"].outputs
        assert PLOTLY_MIME in outputs[0]["data"]
        assert dashboard.period.label == "Tout l'historique"  # never blank
        dashboard.period.value = "24h"
        dashboard.products.value = PRODUCTS
        dashboard.products.value = ()
        dashboard.period.value = "all"
        dashboard.regions.value = ("Corse",)
        assert wait_until(
            lambda: f"<b>{fr_int(corse)}</b> ventes" in dashboard.status.value, timeout=15
        )
        assert wait_until(
            lambda: (
                dashboard.last_timing is not None
                and dashboard.last_timing.selection == dashboard.selection()
            ),
            timeout=15,
        )
        assert not dashboard.last_timing.reread  # a filter change reads nothing
        bundle = dashboard._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["text/html"].count("<img") == 3
        assert PLOTLY_MIME in dashboard.charts["map"].outputs[0]["data"]
    finally:
        dashboard.stop()
    assert not dashboard.running
