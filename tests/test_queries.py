"""The dashboard aggregations, checked against pandas over the same documents."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from sales_stream.deadletters import invalid_letter
from sales_stream.events import InvalidEvent, SaleEvent, decode
from sales_stream.produce.badevents import EXPECTED_REASON, BadEventKind, make_bad_payload
from sales_stream.produce.generator import SaleGenerator
from sales_stream.read import mongo_queries as queries
from sales_stream.read.mongo_queries import Filters
from sales_stream.reference import REGION_BY_NAME
from sales_stream.sinks.mongo import MongoSink
from sales_stream.store import ensure_indexes
from sales_stream.stream import Batch

END = datetime(2024, 6, 1, tzinfo=UTC)
UNIT_FREQ = {"minute": "min", "hour": "h", "day": "D"}


@pytest.fixture(scope="module")
def events() -> list[SaleEvent]:
    return list(SaleGenerator(7).backfill(3, end=END, events_per_day=700))


@pytest.fixture(scope="module")
def frame(events: list[SaleEvent]) -> pd.DataFrame:
    rows = [{**e.to_dict(), "ts": e.ts} for e in events]
    out = pd.DataFrame(rows)
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    return out


@pytest.fixture(scope="module")
def store(mongo: MongoClient, events: list[SaleEvent]) -> Iterator[Database]:
    name = f"d_queries_{uuid.uuid4().hex[:8]}"
    db = mongo[name]
    ensure_indexes(db)
    rng = random.Random(3)
    dead = []
    for offset, kind in enumerate(list(BadEventKind) * 2):
        value, _ = make_bad_payload(rng, base=events[offset], kind=kind)
        invalid = decode(value)
        assert isinstance(invalid, InvalidEvent)
        dead.append(
            invalid_letter(
                topic="sales",
                partition=offset % 3,
                offset=offset,
                key=b"Bretagne",
                value=value,
                invalid=invalid,
                now=datetime.now(UTC) - timedelta(seconds=100 - offset),
            )
        )
    MongoSink(db).write(Batch.of(events, dead))
    yield db
    mongo.drop_database(name)


def _subset(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    if filters.start is not None:
        mask &= frame["ts"] >= filters.start
    if filters.end is not None:
        mask &= frame["ts"] < filters.end
    if filters.regions is not None:
        mask &= frame["region"].isin(filters.regions)
    if filters.products is not None:
        mask &= frame["product"].isin(filters.products)
    return frame[mask]


FILTERS = [
    Filters(),
    Filters(start=END - timedelta(days=1), end=END - timedelta(hours=6)),
    Filters(regions=["Île-de-France", "Bretagne"]),
    Filters(start=END - timedelta(days=2), products=["Clavier mécanique", "Smartphone premium"]),
]


@pytest.mark.parametrize("unit", ["minute", "hour", "day"])
@pytest.mark.parametrize("filters", FILTERS, ids=range(len(FILTERS)))
def test_revenue_over_time_matches_pandas(
    store: Database, frame: pd.DataFrame, unit: str, filters: Filters
) -> None:
    got = queries.revenue_over_time(store, unit=unit, filters=filters)  # type: ignore[arg-type]
    sub = _subset(frame, filters)
    freq = UNIT_FREQ[unit]
    grouped = sub.groupby(sub["ts"].dt.floor(freq)).agg(
        revenue=("amount", "sum"), sales=("amount", "size")
    )
    # every bucket of the period, 0 where nothing was sold (the filters' bounds, else the data's)
    first = pd.Timestamp(filters.start).floor(freq) if filters.start else grouped.index.min()
    end = pd.Timestamp(filters.end) - pd.Timedelta(1, "us") if filters.end else None
    last = end.floor(freq) if end is not None else grouped.index.max()
    every = pd.date_range(first, last, freq=freq)
    expected = grouped.reindex(every, fill_value=0).rename_axis("bucket").reset_index()
    if unit == "minute":
        assert (expected["sales"] == 0).any()  # there were gaps to fill
    assert list(got.columns) == ["bucket", "revenue", "sales"]
    assert list(got["bucket"]) == list(expected["bucket"])
    assert list(got["sales"]) == list(expected["sales"])
    assert list(got["revenue"]) == pytest.approx(list(expected["revenue"]), abs=0.006)
    assert str(got["bucket"].dtype) == "datetime64[ns, UTC]" or got["bucket"].dt.tz is not None


@pytest.mark.parametrize("filters", FILTERS, ids=range(len(FILTERS)))
def test_revenue_by_region_matches_pandas(
    store: Database, frame: pd.DataFrame, filters: Filters
) -> None:
    got = queries.revenue_by_region(store, filters=filters)
    sub = _subset(frame, filters)
    expected = sub.groupby("region").agg(
        revenue=("amount", "sum"), sales=("amount", "size"), quantity=("quantity", "sum")
    )
    assert list(got.columns) == ["region", "revenue", "sales", "quantity", "lat", "lon"]
    assert set(got["region"]) == set(expected.index)
    assert list(got["revenue"]) == sorted(got["revenue"], reverse=True)
    for row in got.itertuples():
        assert row.revenue == pytest.approx(expected.loc[row.region, "revenue"], abs=0.006)
        assert row.sales == expected.loc[row.region, "sales"]
        assert row.quantity == expected.loc[row.region, "quantity"]
        place = REGION_BY_NAME[row.region]
        assert (row.lat, row.lon) == (place.lat, place.lon)


@pytest.mark.parametrize("filters", FILTERS, ids=range(len(FILTERS)))
def test_top_products_matches_pandas(
    store: Database, frame: pd.DataFrame, filters: Filters
) -> None:
    got = queries.top_products(store, n=5, filters=filters)
    sub = _subset(frame, filters)
    expected = (
        sub.groupby("product")
        .agg(
            category=("category", "first"),
            revenue=("amount", "sum"),
            sales=("amount", "size"),
            quantity=("quantity", "sum"),
        )
        .reset_index()
        .assign(revenue=lambda f: f["revenue"].round(2))
        .sort_values(["revenue", "product"], ascending=[False, True])
        .head(5)
        .reset_index(drop=True)
    )
    assert list(got.columns) == ["product", "category", "revenue", "sales", "quantity"]
    assert list(got["product"]) == list(expected["product"])
    assert list(got["category"]) == list(expected["category"])
    assert list(got["sales"]) == list(expected["sales"])
    assert list(got["quantity"]) == list(expected["quantity"])
    assert list(got["revenue"]) == pytest.approx(list(expected["revenue"]), abs=0.006)


def test_totals_match_pandas(store: Database, frame: pd.DataFrame) -> None:
    for filters in FILTERS:
        sub = _subset(frame, filters)
        got = queries.totals(store, filters=filters)
        assert got["sales"] == len(sub)
        assert got["revenue"] == pytest.approx(sub["amount"].sum(), abs=0.006)
        assert got["first_ts"] == sub["ts"].min().to_pydatetime()
        assert got["last_ts"] == sub["ts"].max().to_pydatetime()
        assert got["first_ts"].tzinfo is not None


def test_filters_that_match_nothing_give_empty_results(store: Database) -> None:
    nothing = Filters(start=datetime(2030, 1, 1, tzinfo=UTC))
    assert queries.totals(store, filters=nothing) == {
        "revenue": 0.0,
        "sales": 0,
        "first_ts": None,
        "last_ts": None,
    }
    over_time = queries.revenue_over_time(store, filters=nothing)
    assert over_time.empty
    assert list(over_time.columns) == ["bucket", "revenue", "sales"]
    assert queries.revenue_by_region(store, filters=Filters(regions=[])).empty
    assert queries.top_products(store, filters=Filters(products=["Inconnu"])).empty


def test_latest_sales_are_the_newest_by_ts(store: Database, frame: pd.DataFrame) -> None:
    got = queries.latest_sales(store, n=7)
    expected = frame.sort_values("ts", ascending=False).head(7)
    assert list(got["ts"]) == list(expected["ts"])
    assert set(got["event_id"]) <= set(frame["event_id"])
    assert list(got.columns)[:2] == ["event_id", "ts"]
    assert got["ingested_at"].notna().all()


def test_latest_sales_finds_live_events_first(db: Database) -> None:
    now = datetime.now(UTC)
    old = SaleGenerator(1).events(5, ts=now - timedelta(days=30))
    generator = SaleGenerator(2)
    live = [generator.next_event(ts=now - timedelta(seconds=s)) for s in (1, 2, 3)]
    MongoSink(db).write(Batch.of(old + live))
    got = queries.latest_sales(db, n=3)
    assert list(got["event_id"]) == [e.event_id for e in live]
    assert len(queries.latest_sales(db, n=50)) == 8


def test_dead_letter_queries(store: Database) -> None:
    by_reason = queries.dead_letters_by_reason(store)
    expected = pd.Series([str(EXPECTED_REASON[k]) for k in BadEventKind] * 2).value_counts()
    assert dict(zip(by_reason["reason"], by_reason["count"], strict=True)) == expected.to_dict()
    assert list(by_reason["count"]) == sorted(by_reason["count"], reverse=True)
    latest = queries.latest_dead_letters(store, n=4)
    assert list(latest.columns) == list(queries.DEAD_LETTER_COLUMNS)
    assert list(latest["offset"]) == [27, 26, 25, 24]
    assert latest["received_at"].is_monotonic_decreasing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": datetime(2024, 1, 1)}, "Filters.start must be timezone-aware"),  # noqa: DTZ001
        (
            {"start": datetime(2024, 2, 1, tzinfo=UTC), "end": datetime(2024, 1, 1, tzinfo=UTC)},
            "must be before end",
        ),
        ({"regions": "Bretagne"}, "Filters.regions must be a sequence of names"),
    ],
)
def test_filters_reject_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Filters(**kwargs)


def test_queries_reject_bad_arguments(store: Database) -> None:
    with pytest.raises(ValueError, match="unit must be one of minute, hour, day"):
        queries.revenue_over_time(store, unit="week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be >= 1"):
        queries.top_products(store, n=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        queries.latest_sales(store, n=0)
