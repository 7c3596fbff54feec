"""The dashboard's three views from the rollups, filtered in memory: no rescan of ``sales``.

`load_snapshot` reads the two rollup collections of `sales_stream.sinks.rollups` (a few thousand
cells: hour × region and day × region × product) and the sales of the last `EXACT_WINDOW`
(24 hours) before the latest sale, read through the ``ts`` index. `DashboardSnapshot.view`
then answers any period / region / product selection from those frames in milliseconds, so a
filter change never queries the database and a refresh costs one read of the cells.

Exactness: « Dernière heure » and « 24 dernières heures » are computed from the sales
themselves, over exactly the last hour / 24 hours before the latest sale (per minute / per
hour). Longer periods come from the rollups: revenue over time per UTC hour (per UTC day when
products are filtered: only the daily rollup knows products), from the hour (day) holding the
period's start; the top products over whole UTC days. Every curve is zero-filled (an hour
without sales is at 0) up to the latest sale, whose bucket is still incomplete
(`View.latest`).

When the rollups are empty (no SQL endpoint, so the consumer does not maintain them) the
snapshot says so (``source == "sales"``) and the views come from `sales_stream.read.mongo_queries`
aggregations over ``sales`` instead: correct, but a rescan per refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import pandas as pd
from pymongo.database import Database

from sales_stream.frames import BUCKET_FREQ, region_frame, top_frame, zero_filled
from sales_stream.read import mongo_queries as queries
from sales_stream.store import DAILY, HOURLY, SALES

#: The live view: sales of the last hour before the latest sale, per minute.
LIVE_WINDOW = timedelta(hours=1)
#: The sales read by each refresh: the periods up to this span are exact (from the sales).
EXACT_WINDOW = timedelta(days=1)
#: Period choices of the dashboard: key → (French label, span before the latest sale).
PERIODS: dict[str, tuple[str, timedelta | None]] = {
    "all": ("Tout l'historique", None),
    "1h": ("Dernière heure", timedelta(hours=1)),
    "24h": ("24 dernières heures", timedelta(days=1)),
    "7d": ("7 derniers jours", timedelta(days=7)),
}
Source = Literal["rollups", "sales"]


@dataclass(frozen=True)
class Selection:
    """What the dashboard shows: a period key of `PERIODS`, regions and products (empty = all)."""

    period: str = "all"
    regions: tuple[str, ...] = ()
    products: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {self.period!r}")


@dataclass(frozen=True)
class View:
    """The frames of one selection.

    Attributes:
        over_time: ``bucket``, ``revenue``, ``sales`` per hour (per day with a product filter).
        unit: ``"minute"``, ``"hour"`` or ``"day"``: the bucket of ``over_time``.
        live: ``bucket``, ``revenue``, ``sales`` per minute over the live window.
        by_region: The `sales_stream.frames.region_frame` of the selection.
        top: ``product``, ``category``, ``revenue``, ``sales``, ``quantity``, largest first.
        sales: Number of sales selected; ``revenue`` their revenue.
        latest: The latest sale: the last bucket of ``over_time`` and ``live`` ends after it
            (incomplete, still filling).
    """

    over_time: pd.DataFrame
    unit: str
    live: pd.DataFrame
    by_region: pd.DataFrame
    top: pd.DataFrame
    sales: int
    revenue: float
    latest: datetime


def _empty_time() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket": pd.Series([], dtype="datetime64[ns, UTC]"),
            "revenue": pd.Series([], dtype="float64"),
            "sales": pd.Series([], dtype="int64"),
        }
    )


def _cells(db: Database, collection: str, time_field: str, dims: Sequence[str]) -> pd.DataFrame:
    fields = [time_field, *dims, "sales", "quantity", "amount"]
    docs = list(db[collection].find({}, dict.fromkeys(fields, 1) | {"_id": 0}))
    frame = pd.DataFrame(docs, columns=fields)
    frame["bucket"] = pd.to_datetime(frame.pop(time_field), utc=True)
    frame["revenue"] = pd.to_numeric(frame.pop("amount").map(str), errors="coerce").astype(float)
    frame["sales"] = frame["sales"].astype("int64")
    frame["quantity"] = frame["quantity"].astype("int64")
    return frame


def _live_sales(db: Database, since: datetime) -> pd.DataFrame:
    fields = ["ts", "region", "product", "category", "amount", "quantity"]
    docs = list(db[SALES].find({"ts": {"$gte": since}}, dict.fromkeys(fields, 1) | {"_id": 0}))
    frame = pd.DataFrame(docs, columns=fields)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["amount"] = frame["amount"].astype(float)
    frame["quantity"] = frame["quantity"].astype("int64")
    return frame


@dataclass(frozen=True)
class DashboardSnapshot:
    """Everything the dashboard needs, read once per refresh.

    Attributes:
        hourly: Hour × region cells (``bucket``, ``region``, ``sales``, ``quantity``,
            ``revenue``).
        daily: Day × region × product cells (same columns plus ``product``, ``category``).
        recent: The sales of the last `EXACT_WINDOW` (``ts``, ``region``, ``product``,
            ``category``, ``amount``, ``quantity``).
        latest: Reference time of the relative periods: the latest sale.
        source: ``"rollups"``, or ``"sales"`` when the rollups are empty.
        read_at: When it was read (UTC).
    """

    hourly: pd.DataFrame
    daily: pd.DataFrame
    recent: pd.DataFrame
    latest: datetime
    source: Source
    read_at: datetime
    db: Database | None = None

    def view(self, selection: Selection) -> View:
        """The frames of ``selection`` (in memory for the rollups)."""
        if self.source == "sales":
            return self._view_from_sales(selection)
        span = PERIODS[selection.period][1]
        start = None if span is None else self.latest - span
        recent = _select_recent(self.recent, selection, start)
        if span is not None and span <= EXACT_WINDOW:  # exact, from the sales themselves
            by_region, top = _from_recent(recent)
            unit = "minute" if span <= LIVE_WINDOW else "hour"
            over_time = _per(recent, unit)
        else:
            hourly = _select(self.hourly, selection, start, product_filter=False)
            daily = _select(self.daily, selection, start, product_filter=True, day=True)
            cells, unit = (daily, "day") if selection.products else (hourly, "hour")
            over_time = _sum_by(cells, "bucket")
            by_region = _region(cells)
            top = _top(daily)
        return View(
            over_time=zero_filled(over_time, unit, start=start, end=self.latest),
            unit=unit,
            live=self._live(selection),
            by_region=by_region,
            top=top,
            sales=int(by_region["sales"].sum()),
            revenue=round(float(by_region["revenue"].sum()), 2),
            latest=self.latest,
        )

    def _live(self, selection: Selection) -> pd.DataFrame:
        """Revenue per minute over the last `LIVE_WINDOW`, zero-filled."""
        start = self.latest - LIVE_WINDOW
        recent = _select_recent(self.recent, selection, start)
        return zero_filled(_per(recent, "minute"), "minute", start=start, end=self.latest)

    def _view_from_sales(self, selection: Selection) -> View:
        assert self.db is not None
        span = PERIODS[selection.period][1]
        filters = queries.Filters(
            start=None if span is None else self.latest - span,
            regions=list(selection.regions) or None,
            products=list(selection.products) or None,
        )
        by_region = queries.revenue_by_region(self.db, filters=filters)
        over_time = queries.revenue_over_time(self.db, unit="hour", filters=filters)
        return View(
            over_time=zero_filled(over_time, "hour", start=filters.start, end=self.latest),
            unit="hour",
            live=self._live(selection),
            by_region=by_region,
            top=queries.top_products(self.db, n=10, filters=filters),
            sales=int(by_region["sales"].sum()),
            revenue=round(float(by_region["revenue"].sum()), 2),
            latest=self.latest,
        )


def _select(
    cells: pd.DataFrame,
    selection: Selection,
    start: datetime | None,
    *,
    product_filter: bool,
    day: bool = False,
) -> pd.DataFrame:
    keep = pd.Series(True, index=cells.index)
    if start is not None:
        floor = pd.Timestamp(start).floor("D" if day else "h")
        keep &= cells["bucket"] >= floor
    if selection.regions:
        keep &= cells["region"].isin(selection.regions)
    if product_filter and selection.products:
        keep &= cells["product"].isin(selection.products)
    return cells[keep]


def _select_recent(
    recent: pd.DataFrame, selection: Selection, start: datetime | None
) -> pd.DataFrame:
    keep = pd.Series(True, index=recent.index)
    if start is not None:
        keep &= recent["ts"] >= pd.Timestamp(start)
    if selection.regions:
        keep &= recent["region"].isin(selection.regions)
    if selection.products:
        keep &= recent["product"].isin(selection.products)
    return recent[keep]


def _sum_by(cells: pd.DataFrame, key: str) -> pd.DataFrame:
    if cells.empty:
        return _empty_time()
    grouped = cells.groupby(key, as_index=False)[["revenue", "sales"]].sum()
    grouped["revenue"] = grouped["revenue"].round(2)
    return grouped.sort_values(key, ignore_index=True)


def _region(cells: pd.DataFrame) -> pd.DataFrame:
    grouped = cells.groupby("region", as_index=False)[["revenue", "sales", "quantity"]].sum()
    return region_frame(
        list(grouped["region"]),
        revenue=list(grouped["revenue"]),
        sales=list(grouped["sales"]),
        quantity=list(grouped["quantity"]),
    )


def _top(cells: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    grouped = cells.groupby(["product", "category"], as_index=False)[
        ["revenue", "sales", "quantity"]
    ].sum()
    ordered = top_frame(
        list(grouped["product"]),
        category=list(grouped["category"]),
        revenue=list(grouped["revenue"]),
        sales=list(grouped["sales"]),
        quantity=list(grouped["quantity"]),
    )
    return ordered.head(n)


def _from_recent(recent: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells = recent.rename(columns={"amount": "revenue"}).assign(sales=1)
    return _region(cells), _top(cells)


def _per(recent: pd.DataFrame, unit: str) -> pd.DataFrame:
    if recent.empty:
        return _empty_time()
    cells = pd.DataFrame(
        {
            "bucket": recent["ts"].dt.floor(BUCKET_FREQ[unit]),
            "revenue": recent["amount"],
            "sales": 1,
        }
    )
    return _sum_by(cells, "bucket")


def load_snapshot(db: Database, *, now: datetime | None = None) -> DashboardSnapshot:
    """Read the rollup cells and the sales of the last `EXACT_WINDOW` before the latest."""
    now = now or datetime.now(UTC)
    hourly = _cells(db, HOURLY.collection, HOURLY.time_field, HOURLY.dimensions)
    daily = _cells(db, DAILY.collection, DAILY.time_field, DAILY.dimensions)
    source: Source = "rollups" if len(hourly) else "sales"
    if len(hourly):  # the data's own time: a simulated clock may run ahead of ``now``
        data_end = hourly["bucket"].max().to_pydatetime() + timedelta(hours=1)
    else:
        data_end = queries.totals(db)["last_ts"] or now
    recent = _live_sales(db, data_end - EXACT_WINDOW - timedelta(hours=1))
    latest = recent["ts"].max().to_pydatetime() if len(recent) else data_end
    recent = recent[recent["ts"] >= pd.Timestamp(latest - EXACT_WINDOW)]
    return DashboardSnapshot(
        hourly=hourly,
        daily=daily,
        recent=recent.reset_index(drop=True),
        latest=latest,
        source=source,
        read_at=now,
        db=db,
    )
