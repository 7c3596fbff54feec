"""The result frames shared by every store (MongoDB, the SQL endpoint, the Parquet lake)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from sales_stream.collation import fr_series_key
from sales_stream.events import FIELDS, SaleEvent
from sales_stream.reference import REGION_BY_NAME


def region_frame(
    regions: Sequence[str],
    *,
    revenue: Sequence[float],
    sales: Sequence[int],
    quantity: Sequence[int],
) -> pd.DataFrame:
    """The per-region frame every store returns (MongoDB, SQL endpoint, lake).

    Returns:
        Columns ``region``, ``revenue`` (rounded to the cent), ``sales``, ``quantity``,
        ``lat``, ``lon`` (the region's map position); largest revenue first, ties by name
        in French order.
    """
    places = [REGION_BY_NAME.get(name) for name in regions]
    frame = pd.DataFrame(
        {
            "region": pd.Series(list(regions), dtype=object),
            "revenue": pd.Series([float(v) for v in revenue], dtype="float64").round(2),
            "sales": pd.Series(list(sales), dtype="int64"),
            "quantity": pd.Series(list(quantity), dtype="int64"),
            "lat": pd.Series([p.lat if p else None for p in places], dtype="float64"),
            "lon": pd.Series([p.lon if p else None for p in places], dtype="float64"),
        }
    )
    return frame.sort_values(
        ["revenue", "region"], ascending=[False, True], ignore_index=True, key=fr_series_key
    )


def top_frame(
    products: Sequence[str],
    *,
    category: Sequence[str],
    revenue: Sequence[float],
    sales: Sequence[int],
    quantity: Sequence[int],
) -> pd.DataFrame:
    """The top-products frame every store returns.

    Returns:
        Columns ``product``, ``category``, ``revenue`` (rounded to the cent), ``sales``,
        ``quantity``; largest revenue first, ties by product name in French order.
    """
    frame = pd.DataFrame(
        {
            "product": pd.Series(list(products), dtype=object),
            "category": pd.Series(list(category), dtype=object),
            "revenue": pd.Series([float(v) for v in revenue], dtype="float64").round(2),
            "sales": pd.Series(list(sales), dtype="int64"),
            "quantity": pd.Series(list(quantity), dtype="int64"),
        }
    )
    return frame.sort_values(
        ["revenue", "product"], ascending=[False, True], ignore_index=True, key=fr_series_key
    )


def events_frame(events: Sequence[SaleEvent]) -> pd.DataFrame:
    """Sale events as a frame with the contract's fields (``ts`` an aware UTC datetime).

    An empty sequence gives an empty frame with the same columns.
    """
    frame = pd.DataFrame([e.to_dict() for e in events], columns=list(FIELDS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame


#: pandas frequency of each time bucket unit of `sales_stream.read.mongo_queries.UNITS`.
BUCKET_FREQ = {"minute": "min", "hour": "h", "day": "D"}


def zero_filled(
    frame: pd.DataFrame,
    unit: str,
    *,
    start: datetime | pd.Timestamp | None = None,
    end: datetime | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Every ``unit`` bucket from ``start`` to ``end``, a bucket without sales at 0.

    A curve then drops to zero over hours without sales instead of drawing a straight line
    from one sale to the next.

    Args:
        frame: Columns ``bucket`` (aware UTC), ``revenue``, ``sales``, sorted by bucket.
        unit: ``"minute"``, ``"hour"`` or ``"day"``.
        start: First instant covered (its bucket is the first); default the first bucket.
        end: Last instant covered, included (its bucket is the last); default the last bucket.
    """
    freq = BUCKET_FREQ[unit]
    first = pd.Timestamp(start).floor(freq) if start is not None else None
    last = pd.Timestamp(end).floor(freq) if end is not None else None
    if frame.empty and (first is None or last is None):
        return frame
    first = frame["bucket"].min() if first is None else first
    last = frame["bucket"].max() if last is None else last
    buckets = pd.date_range(first, last, freq=freq, name="bucket").as_unit("ns")
    filled = frame.set_index("bucket").reindex(buckets, fill_value=0).reset_index()
    filled["revenue"] = filled["revenue"].astype("float64")
    filled["sales"] = filled["sales"].astype("int64")
    return filled[["bucket", "revenue", "sales"]]
