"""The result frames shared by every store (MongoDB, the SQL endpoint, the Parquet lake)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

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
        ``lat``, ``lon`` (the region's map position); largest revenue first, ties by name.
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
    return frame.sort_values(["revenue", "region"], ascending=[False, True], ignore_index=True)


def events_frame(events: Sequence[SaleEvent]) -> pd.DataFrame:
    """Sale events as a frame with the contract's fields (``ts`` an aware UTC datetime).

    An empty sequence gives an empty frame with the same columns.
    """
    frame = pd.DataFrame([e.to_dict() for e in events], columns=list(FIELDS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame
