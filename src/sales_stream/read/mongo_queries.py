"""The dashboard and report aggregations over MongoDB, as pandas DataFrames.

One implementation, reused by the notebook dashboards, the Hyper export checks, the report and
the SQL comparison. Every query works on SecantusDB and on MongoDB (>= 5.0, for
``$dateTrunc``), and every filter is served by an index of `sales_stream.store`.

Revenue is the sum of ``amount`` rounded to the cent; time buckets are UTC. Only non-empty
buckets are returned (like SQL ``GROUP BY date_trunc``).

On SecantusDB a sort with a limit still reads the whole index range it sorts, so
`latest_sales` and `latest_dead_letters` look back over widening windows (1 minute, ×4 each
step) from now until ``n`` documents are found: their cost grows with the window, not the
collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import pandas as pd
from pymongo.collection import Collection
from pymongo.database import Database

from sales_stream.contract import INGESTED_AT
from sales_stream.events import FIELDS, TS_MIN
from sales_stream.frames import region_frame, top_frame, zero_filled
from sales_stream.store import DEAD_LETTERS, SALES

Unit = Literal["minute", "hour", "day"]
UNITS: tuple[str, ...] = get_args(Unit)

SALE_COLUMNS: tuple[str, ...] = (*FIELDS, INGESTED_AT)
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "received_at",
    "reason",
    "detail",
    "topic",
    "partition",
    "offset",
    "key",
    "raw_text",
    "raw_size",
)
_FIRST_WINDOW = timedelta(minutes=1)
_WINDOW_GROWTH = 4


@dataclass(frozen=True)
class Filters:
    """Which sales an aggregation covers; ``None`` means no restriction.

    Attributes:
        start: Aware lower bound of ``ts`` (inclusive).
        end: Aware upper bound of ``ts`` (exclusive).
        regions: Regions to keep (an empty sequence keeps nothing).
        products: Products to keep (an empty sequence keeps nothing).
    """

    start: datetime | None = None
    end: datetime | None = None
    regions: Sequence[str] | None = None
    products: Sequence[str] | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"Filters.{name} must be timezone-aware, got {value!r}")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"Filters.start ({self.start}) must be before end ({self.end})")
        for name in ("regions", "products"):
            if isinstance(getattr(self, name), str):
                raise ValueError(f"Filters.{name} must be a sequence of names, not a string")

    def match(self) -> dict[str, Any]:
        """The ``$match`` document of these filters (``{}`` when unrestricted)."""
        match: dict[str, Any] = {}
        if self.regions is not None:
            match["region"] = {"$in": list(self.regions)}
        if self.products is not None:
            match["product"] = {"$in": list(self.products)}
        ts: dict[str, datetime] = {}
        if self.start is not None:
            ts["$gte"] = self.start.astimezone(UTC)
        if self.end is not None:
            ts["$lt"] = self.end.astimezone(UTC)
        if ts:
            match["ts"] = ts
        return match


def _aggregate(
    db: Database, filters: Filters | None, stages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    match = filters.match() if filters is not None else {}
    pipeline = ([{"$match": match}] if match else []) + stages
    return list(db[SALES].aggregate(pipeline))


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def revenue_over_time(
    db: Database, *, unit: Unit = "hour", filters: Filters | None = None
) -> pd.DataFrame:
    """Revenue and number of sales per UTC ``minute``, ``hour`` or ``day``.

    Returns:
        Columns ``bucket`` (UTC start of the bucket), ``revenue``, ``sales``; sorted by
        bucket, every bucket of the period present (0 without sales, `filled`).

    Raises:
        ValueError: If ``unit`` is not one of `UNITS`.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    rows = _aggregate(
        db,
        filters,
        [
            {
                "$group": {
                    "_id": {"$dateTrunc": {"date": "$ts", "unit": unit}},
                    "revenue": {"$sum": "$amount"},
                    "sales": {"$sum": 1},
                }
            },
            {"$sort": {"_id": 1}},
        ],
    )
    frame = pd.DataFrame(
        {
            "bucket": _utc(pd.Series([r["_id"] for r in rows], dtype=object)),
            "revenue": pd.Series([r["revenue"] for r in rows], dtype="float64").round(2),
            "sales": pd.Series([r["sales"] for r in rows], dtype="int64"),
        }
    )
    return filled(frame, unit, filters)


def filled(frame: pd.DataFrame, unit: Unit, filters: Filters | None) -> pd.DataFrame:
    """``frame`` zero-filled over the filters' period (else from its first to its last bucket)."""
    start = filters.start if filters else None
    end = filters.end - timedelta(microseconds=1) if filters and filters.end else None
    return zero_filled(frame, unit, start=start, end=end)


def revenue_by_region(db: Database, *, filters: Filters | None = None) -> pd.DataFrame:
    """Revenue, sales and units per region, with the region's map position.

    Returns:
        Columns ``region``, ``revenue``, ``sales``, ``quantity``, ``lat``, ``lon``; sorted by
        revenue, largest first.
    """
    rows = _aggregate(
        db,
        filters,
        [
            {
                "$group": {
                    "_id": "$region",
                    "revenue": {"$sum": "$amount"},
                    "sales": {"$sum": 1},
                    "quantity": {"$sum": "$quantity"},
                }
            },
            {"$sort": {"revenue": -1, "_id": 1}},
        ],
    )
    return region_frame(
        [r["_id"] for r in rows],
        revenue=[r["revenue"] for r in rows],
        sales=[r["sales"] for r in rows],
        quantity=[r["quantity"] for r in rows],
    )


def row_count(n: int) -> int:
    """``n``, the most rows a query returns (`top_products`, `latest_sales`…), checked.

    Raises:
        ValueError: If ``n`` is < 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return int(n)


def top_products(db: Database, *, n: int = 10, filters: Filters | None = None) -> pd.DataFrame:
    """The ``n`` products with the largest revenue (`row_count`).

    Returns:
        Columns ``product``, ``category``, ``revenue``, ``sales``, ``quantity``; largest
        revenue first (ties by product name).

    Raises:
        ValueError: If ``n`` is < 1.
    """
    limit = row_count(n)
    rows = _aggregate(
        db,
        filters,
        [
            {
                "$group": {
                    "_id": "$product",
                    "category": {"$first": "$category"},
                    "revenue": {"$sum": "$amount"},
                    "sales": {"$sum": 1},
                    "quantity": {"$sum": "$quantity"},
                }
            },
            {"$sort": {"revenue": -1, "_id": 1}},
            {"$limit": limit},
        ],
    )
    return top_frame(
        [r["_id"] for r in rows],
        category=[r["category"] for r in rows],
        revenue=[r["revenue"] for r in rows],
        sales=[r["sales"] for r in rows],
        quantity=[r["quantity"] for r in rows],
    )


def totals(db: Database, *, filters: Filters | None = None) -> dict[str, Any]:
    """Overall revenue, number of sales, and first and last sale times.

    Returns:
        ``{"revenue": float, "sales": int, "first_ts": datetime | None, "last_ts": ...}``
        (aware UTC datetimes; ``None`` when no sale matches).
    """
    rows = _aggregate(
        db,
        filters,
        [
            {
                "$group": {
                    "_id": None,
                    "revenue": {"$sum": "$amount"},
                    "sales": {"$sum": 1},
                    "first_ts": {"$min": "$ts"},
                    "last_ts": {"$max": "$ts"},
                }
            }
        ],
    )
    if not rows:
        return {"revenue": 0.0, "sales": 0, "first_ts": None, "last_ts": None}
    row = rows[0]
    return {
        "revenue": round(float(row["revenue"]), 2),
        "sales": int(row["sales"]),
        "first_ts": _aware(row["first_ts"]),
        "last_ts": _aware(row["last_ts"]),
    }


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _latest(collection: Collection, field: str, n: int) -> list[dict[str, Any]]:
    """The ``n`` documents with the largest ``field``, looking back over widening windows."""
    n = row_count(n)
    now = datetime.now(UTC)
    window = _FIRST_WINDOW
    while True:
        since = max(now - window, TS_MIN)
        docs = list(collection.find({field: {"$gte": since}}).sort(field, -1).limit(n))
        if len(docs) >= n or since == TS_MIN:
            return docs
        window *= _WINDOW_GROWTH


def latest_sales(db: Database, *, n: int = 20) -> pd.DataFrame:
    """The ``n`` most recent sales by ``ts``, newest first.

    Returns:
        The contract fields (``event_id`` first) and ``ingested_at``.

    Raises:
        ValueError: If ``n`` is < 1.
    """
    docs = _latest(db[SALES], "ts", n)
    frame = pd.DataFrame(docs, columns=["_id", *SALE_COLUMNS[1:]])
    frame = frame.rename(columns={"_id": "event_id"})
    for column in ("ts", INGESTED_AT):
        frame[column] = _utc(frame[column])
    return frame


def dead_letters_by_reason(db: Database) -> pd.DataFrame:
    """Dead letters counted by reason.

    Returns:
        Columns ``reason``, ``count``, ``last_received_at``; most frequent first.
    """
    rows = list(
        db[DEAD_LETTERS].aggregate(
            [
                {
                    "$group": {
                        "_id": "$reason",
                        "count": {"$sum": 1},
                        "last_received_at": {"$max": "$received_at"},
                    }
                },
                {"$sort": {"count": -1, "_id": 1}},
            ]
        )
    )
    return pd.DataFrame(
        {
            "reason": pd.Series([r["_id"] for r in rows], dtype=object),
            "count": pd.Series([r["count"] for r in rows], dtype="int64"),
            "last_received_at": _utc(
                pd.Series([r["last_received_at"] for r in rows], dtype=object)
            ),
        }
    )


def latest_dead_letters(db: Database, *, n: int = 20) -> pd.DataFrame:
    """The ``n`` most recently received dead letters, newest first.

    Returns:
        Columns of `DEAD_LETTER_COLUMNS` (the raw payload as text, not bytes).

    Raises:
        ValueError: If ``n`` is < 1.
    """
    docs = _latest(db[DEAD_LETTERS], "received_at", n)
    frame = pd.DataFrame(docs, columns=list(DEAD_LETTER_COLUMNS))
    frame["received_at"] = _utc(frame["received_at"])
    return frame
