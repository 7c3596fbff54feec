"""Queries over the lake: events and revenue with partition pruning, and the dead letters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from sales_stream.events import FIELDS
from sales_stream.frames import region_frame
from sales_stream.lake.layout import (
    DEAD_LETTERS_DIR,
    PARTITIONING,
    SALES_DIR,
    Lake,
    LakeLocation,
    PartFile,
    date_of_dir,
    list_parts,
    live_parts,
    open_lake,
    region_dirname,
)
from sales_stream.lake.tables import DATASET_SCHEMA, DEAD_LETTER_SCHEMA, TS_TYPE

_DAY = timedelta(days=1)

DateBound = date | datetime | None


def _utc_bound(value: DateBound, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
        return value.astimezone(UTC)
    return datetime.combine(value, clock_time.min, tzinfo=UTC)


def _bounds(
    start: DateBound, end: DateBound, regions: Iterable[str] | None
) -> tuple[datetime | None, datetime | None]:
    """Validate a query's filters; return its bounds as aware UTC datetimes."""
    if isinstance(regions, str):
        raise ValueError(f"regions must be a sequence of names, not a string: {regions!r}")
    lo, hi = _utc_bound(start, "start"), _utc_bound(end, "end")
    if lo is not None and hi is not None and lo >= hi:
        raise ValueError(f"start ({lo.isoformat()}) must be before end ({hi.isoformat()})")
    return lo, hi


def _select(
    lake: Lake, start: datetime | None, end: datetime | None, regions: Iterable[str] | None
) -> list[PartFile]:
    """Live event files of the partitions that may hold rows in ``[start, end)`` and regions.

    Only the matching directories are listed, and no file is opened.
    """
    region_dirs = None if regions is None else sorted({region_dirname(r) for r in regions})
    selector = pafs.FileSelector(lake.path(SALES_DIR), allow_not_found=True)
    parts: list[PartFile] = []
    for info in lake.fs.get_file_info(selector):
        day = date_of_dir(info.base_name)
        if info.type != pafs.FileType.Directory or day is None:
            continue
        midnight = datetime.combine(day, clock_time.min, tzinfo=UTC)
        if (start is not None and midnight + _DAY <= start) or (
            end is not None and midnight >= end
        ):
            continue
        date_dir = f"{SALES_DIR}/{info.base_name}"
        if region_dirs is None:
            parts.extend(list_parts(lake, date_dir))
        else:
            for region_dir in region_dirs:
                parts.extend(list_parts(lake, f"{date_dir}/{region_dir}"))
    return live_parts(parts)


def lake_files(
    lake_url: LakeLocation,
    *,
    start: DateBound = None,
    end: DateBound = None,
    regions: Iterable[str] | None = None,
) -> list[PartFile]:
    """The event files a query over ``[start, end)`` and ``regions`` reads (partition pruning).

    Args:
        lake_url: Lake root (see `sales_stream.lake.layout.open_lake`).
        start: Inclusive lower bound of ``ts``: an aware datetime, or a date (UTC midnight).
        end: Exclusive upper bound of ``ts``, same types.
        regions: Region names to keep; ``None`` for all.

    Raises:
        ValueError: A bound is naive, start is not before end, or regions is a string.
    """
    lo, hi = _bounds(start, end, regions)
    return _select(open_lake(lake_url), lo, hi, regions)


def _events(
    lake_url: LakeLocation,
    columns: list[str],
    start: DateBound,
    end: DateBound,
    regions: Iterable[str] | None,
) -> pa.Table:
    lake = open_lake(lake_url)
    lo, hi = _bounds(start, end, regions)
    parts = _select(lake, lo, hi, regions)
    dataset = ds.dataset(
        [lake.path(p.relpath) for p in parts],
        schema=DATASET_SCHEMA,
        format="parquet",
        filesystem=lake.fs,
        partitioning=PARTITIONING,
        partition_base_dir=lake.path(SALES_DIR),
    )
    condition = None
    if lo is not None:
        condition = ds.field("ts") >= pa.scalar(lo, TS_TYPE)
    if hi is not None:
        below = ds.field("ts") < pa.scalar(hi, TS_TYPE)
        condition = below if condition is None else condition & below
    return _plain_strings(dataset.to_table(columns=columns, filter=condition))


def _plain_strings(table: pa.Table) -> pa.Table:
    """Cast dictionary-encoded columns to plain strings (what MongoDB's frames hold)."""
    schema = pa.schema(
        [
            f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
            for f in table.schema
        ]
    )
    return table.cast(schema)


def read_lake(
    lake_url: LakeLocation,
    *,
    start: DateBound = None,
    end: DateBound = None,
    regions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The events of the lake, one row per event, in ``ts`` order.

    Only the files of `lake_files` are read (same arguments, same errors).

    Returns:
        The columns of `sales_stream.events.SaleEvent` in contract order; ``ts`` is
        ``datetime64[ms, UTC]``.
    """
    table = _events(lake_url, list(FIELDS), start, end, regions)
    return table.sort_by([("ts", "ascending"), ("event_id", "ascending")]).to_pandas()


def revenue_by_region_lake(
    lake_url: LakeLocation,
    *,
    start: DateBound = None,
    end: DateBound = None,
    regions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Revenue, sales and units per region over the lake, with the region's map position.

    The same frame as `sales_stream.read.mongo_queries.revenue_by_region` over MongoDB (columns,
    dtypes, order, revenue rounded to the cent), so the two stores compare directly.

    Returns:
        Columns ``region``, ``revenue``, ``sales``, ``quantity``, ``lat``, ``lon``; sorted by
        revenue, largest first (ties by region name).
    """
    table = _events(lake_url, ["region", "amount", "quantity"], start, end, regions)
    grouped = table.group_by("region").aggregate(
        [("amount", "sum"), ("amount", "count"), ("quantity", "sum")]
    )
    return region_frame(
        grouped["region"].to_pylist(),
        revenue=grouped["amount_sum"].to_pylist(),
        sales=grouped["amount_count"].to_pylist(),
        quantity=grouped["quantity_sum"].to_pylist(),
    )


def read_dead_letters(lake_url: LakeLocation) -> pd.DataFrame:
    """The dead letters of the lake, in topic, partition and offset order.

    The columns are the fields of `sales_stream.deadletters.DeadLetter`, those MongoDB stores.
    """
    lake = open_lake(lake_url)
    parts = live_parts(list_parts(lake, DEAD_LETTERS_DIR))
    dataset = ds.dataset(
        [lake.path(p.relpath) for p in parts],
        schema=DEAD_LETTER_SCHEMA,
        format="parquet",
        filesystem=lake.fs,
    )
    table = _plain_strings(dataset.to_table())
    order = [("topic", "ascending"), ("partition", "ascending"), ("offset", "ascending")]
    return table.sort_by(order).to_pandas()
