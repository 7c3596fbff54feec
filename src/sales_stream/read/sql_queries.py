"""The dashboard's aggregations through the PostgreSQL endpoint, as `mongo_queries` does.

Same signatures (a connection instead of a database), same `Filters`, same DataFrames: a
notebook or a test can compare the two side by side. Each query reads the smallest table that
answers it exactly (`sales_stream.sql.schema`):

* ``ventes_par_heure`` (hour × region) when no product filter is set and the period bounds
  are whole UTC hours;
* ``ventes_par_jour`` (day × region × product) when the bounds are whole UTC days;
* ``sales`` (one row per sale) otherwise: minutes, or bounds inside an hour (or a day, for
  products).

The rollups only count sales consumed through a `sales_stream.sinks.rollups.RollupSink`; a cell may
have several rows between two compactions, which every query sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import psycopg

from sales_stream.frames import region_frame, top_frame
from sales_stream.read.mongo_queries import UNITS, Filters, Unit, filled, row_count
from sales_stream.store import DAILY, HOURLY, SALES


@dataclass(frozen=True)
class _Source:
    """A table and how it expresses time and counts."""

    table: str
    time: str
    granularity: str | None
    sales: str
    has_products: bool


_SALES = _Source(SALES, "ts", None, "COUNT(*)", has_products=True)
_HOURLY = _Source(HOURLY.collection, HOURLY.time_field, "hour", "SUM(sales)", has_products=False)
_DAILY = _Source(DAILY.collection, DAILY.time_field, "day", "SUM(sales)", has_products=True)


def revenue_over_time(
    conn: psycopg.Connection, *, unit: Unit = "hour", filters: Filters | None = None
) -> pd.DataFrame:
    """Revenue and number of sales per UTC ``minute``, ``hour`` or ``day``.

    Returns:
        Columns ``bucket`` (UTC start), ``revenue``, ``sales``; sorted by bucket, zero-filled
        (`sales_stream.read.mongo_queries.filled`).

    Raises:
        ValueError: If ``unit`` is not one of `sales_stream.read.mongo_queries.UNITS`.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    candidates = {"minute": (), "hour": (_HOURLY,), "day": (_HOURLY, _DAILY)}[unit]
    source = _choose(filters, candidates)
    if source is _SALES or (source is _HOURLY and unit == "day"):
        bucket = f"date_trunc('{unit}', {source.time})"
    else:
        bucket = source.time
    where, params = _where(source, filters)
    rows = conn.execute(
        f"SELECT {bucket} AS bucket, SUM(amount) AS revenue, {source.sales} AS sales "
        f"FROM {source.table}{where} GROUP BY 1 ORDER BY 1",
        params,
    ).fetchall()
    frame = pd.DataFrame(
        {
            "bucket": pd.to_datetime(pd.Series([r[0] for r in rows], dtype=object), utc=True),
            "revenue": _revenue([r[1] for r in rows]),
            "sales": pd.Series([r[2] for r in rows], dtype="int64"),
        }
    )
    return filled(frame, unit, filters)


def revenue_by_region(conn: psycopg.Connection, *, filters: Filters | None = None) -> pd.DataFrame:
    """Revenue, sales and units per region, with the region's map position.

    Returns:
        Columns ``region``, ``revenue``, ``sales``, ``quantity``, ``lat``, ``lon``; largest
        revenue first.
    """
    source = _choose(filters, (_HOURLY, _DAILY))
    where, params = _where(source, filters)
    rows = conn.execute(
        f"SELECT region, SUM(amount) AS revenue, {source.sales} AS sales, "
        f"SUM(quantity) AS quantity FROM {source.table}{where} "
        "GROUP BY region ORDER BY revenue DESC, region",
        params,
    ).fetchall()
    return region_frame(
        [r[0] for r in rows],
        revenue=[r[1] for r in rows],
        sales=[r[2] for r in rows],
        quantity=[r[3] for r in rows],
    )


def top_products(
    conn: psycopg.Connection, *, n: int = 10, filters: Filters | None = None
) -> pd.DataFrame:
    """`sales_stream.read.mongo_queries.top_products` through the endpoint (same ``n``, frame)."""
    limit = row_count(n)
    source = _choose(filters, (_DAILY,))
    where, params = _where(source, filters)
    rows = conn.execute(
        f"SELECT product, MIN(category) AS category, SUM(amount) AS revenue, "
        f"{source.sales} AS sales, SUM(quantity) AS quantity FROM {source.table}{where} "
        f"GROUP BY product ORDER BY revenue DESC, product LIMIT {limit}",
        params,
    ).fetchall()
    return top_frame(
        [r[0] for r in rows],
        category=[r[1] for r in rows],
        revenue=[float(r[2]) for r in rows],
        sales=[r[3] for r in rows],
        quantity=[r[4] for r in rows],
    )


def _choose(filters: Filters | None, candidates: Sequence[_Source]) -> _Source:
    """The first candidate that answers ``filters`` exactly, else the raw sales."""
    for source in candidates:
        if filters is None:
            return source
        if filters.products is not None and not source.has_products:
            continue
        if all(_aligned(bound, source.granularity) for bound in (filters.start, filters.end)):
            return source
    return _SALES


def _aligned(bound: datetime | None, granularity: str | None) -> bool:
    if bound is None:
        return True
    utc = bound.astimezone(UTC)
    if utc.minute or utc.second or utc.microsecond:
        return False
    return granularity == "hour" or utc.hour == 0


def _where(source: _Source, filters: Filters | None) -> tuple[str, list[Any]]:
    if filters is None:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (("region", filters.regions), ("product", filters.products)):
        if values is None:
            continue
        if not values:
            clauses.append("FALSE")
            continue
        clauses.append(f"{column} IN ({', '.join(['%s'] * len(values))})")
        params.extend(values)
    for op, bound in ((">=", filters.start), ("<", filters.end)):
        if bound is not None:
            clauses.append(f"{source.time} {op} %s")
            params.append(bound.astimezone(UTC))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _revenue(values: list[Any]) -> pd.Series:
    return pd.Series([float(v) for v in values], dtype="float64").round(2)
