"""Compaction: the files of a closed partition merged into one per Kafka topic-partition.

The merged file is published (atomically) before its inputs are deleted, and is named after
the whole offset range it covers; an input still present (compaction interrupted) lies inside
that range, so readers leave it out (`sales_stream.lake.layout.live_parts`) and the next
compaction deletes it.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import unquote

import pyarrow as pa

from sales_stream.lake.files import num_rows, read_part, write_table_atomic
from sales_stream.lake.layout import (
    SALES_DIR,
    Lake,
    LakeLocation,
    PartFile,
    date_of_dir,
    list_parts,
    live_parts,
    open_lake,
    part_name,
    partition_dir,
)


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What compacting one partition did.

    Attributes:
        date: The partition's date.
        region: The partition's region.
        files_before: Data files in the partition before.
        files_after: Data files after (one per Kafka topic-partition).
        rows: Rows in the partition (unchanged by compaction).
    """

    date: date
    region: str
    files_before: int
    files_after: int
    rows: int


def today_utc() -> date:
    """The current UTC date: partitions of earlier dates are closed."""
    return datetime.now(UTC).date()


def _as_day(value: str | date) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"date must be a date or 'YYYY-MM-DD', got datetime {value.isoformat()}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"date must be 'YYYY-MM-DD', got {value!r}") from None


def _compact_dir(
    lake: Lake, directory: str, parts: list[PartFile], day: date, region: str
) -> CompactionResult:
    live = live_parts(parts)
    for part in set(parts) - set(live):  # inputs left by an interrupted compaction
        with suppress(FileNotFoundError):
            lake.fs.delete_file(lake.path(part.relpath))
    groups: dict[tuple[str, str, int], list[PartFile]] = defaultdict(list)
    for part in live:
        groups[part.stream].append(part)
    rows = 0
    for (incarnation, topic, partition), files in sorted(groups.items()):
        if len(files) == 1:
            rows += num_rows(lake, files[0])
            continue
        files.sort(key=lambda p: p.first)
        merged = pa.concat_tables([read_part(lake, f) for f in files])
        merged = merged.unify_dictionaries().combine_chunks()
        name = part_name(topic, partition, files[0].first, files[-1].last, incarnation)
        write_table_atomic(lake, directory, name, merged)
        for part in files:
            lake.fs.delete_file(lake.path(part.relpath))
        rows += merged.num_rows
    return CompactionResult(day, region, len(parts), len(groups), rows)


def compact_partition(lake_url: LakeLocation, *, date: str | date, region: str) -> CompactionResult:
    """Merge the files of a closed partition into one file per Kafka topic-partition.

    The merged file is written atomically and named after the offset range it covers, so a
    sink restarted later still finds where it stopped; then the inputs are deleted (an
    interrupted compaction leaves inputs that readers ignore and the next run deletes).

    Args:
        lake_url: Lake root (see `sales_stream.lake.layout.open_lake`).
        date: The partition's date, before today (UTC).
        region: The partition's region name.

    Returns:
        Files before and after, and the partition's row count.

    Raises:
        ValueError: The date is invalid or not closed yet, or the partition does not exist.
    """
    day = _as_day(date)
    today = today_utc()
    if day >= today:
        raise ValueError(
            f"partition date={day} is still open (today UTC is {today}): "
            "only earlier dates can be compacted"
        )
    lake = open_lake(lake_url)
    directory = partition_dir(day, region)
    parts = list_parts(lake, directory)
    if not parts:
        raise ValueError(f"no partition date={day} region={region!r} in {lake.url}")
    return _compact_dir(lake, directory, parts, day, region)


def compact(lake_url: LakeLocation, *, before: date | None = None) -> list[CompactionResult]:
    """Compact every partition dated before ``before`` (default: today UTC).

    Returns:
        One result per partition inspected, in date and region order.

    Raises:
        ValueError: ``before`` is after today (UTC): today's partitions are still open.
    """
    today = today_utc()
    if before is None:
        before = today
    elif before > today:
        raise ValueError(f"before={before} is after today UTC ({today}): partitions stay open")
    lake = open_lake(lake_url)
    by_dir: dict[str, list[PartFile]] = defaultdict(list)
    for part in list_parts(lake, SALES_DIR):
        by_dir[part.directory].append(part)
    results = []
    for directory, parts in sorted(by_dir.items()):
        _, date_dir, region_dir = [*directory.split("/"), "", ""][:3]
        day = date_of_dir(date_dir)
        if day is None or day >= before or not region_dir.startswith("region="):
            continue
        region = unquote(region_dir.removeprefix("region="))
        results.append(_compact_dir(lake, directory, parts, day, region))
    return results
