"""The Parquet data lake: layout, Arrow schemas, filesystems, reading, compaction.

Layout under the lake root (a local directory, or any pyarrow or fsspec filesystem URL such
as ``hdfs://namenode:8020/lake`` or ``webhdfs://127.0.0.1:9870/lake``)::

    sales/date=YYYY-MM-DD/region=<name>/part-<topic>-<partition>-<first>-<last>.parquet
    _dead_letters/part-<topic>-<partition>-<first>-<last>.parquet

``date`` is the UTC date of ``ts``. Region names are percent-encoded exactly as pyarrow's
hive partitioning encodes them (``region=%C3%8Ele-de-France``), so
``pyarrow.dataset.dataset(..., partitioning="hive")`` and ``pandas.read_parquet`` give back
the exact names. As usual with hive partitioning, ``date`` and ``region`` live in the
directory names only, not inside the files. Readers (pyarrow, Spark) ignore names starting
with ``.`` or ``_``: hence ``_dead_letters`` and the ``.part-….tmp`` temporary files.

A file holds the rows of one Kafka topic-partition for one directory, and its name gives the
offsets of its first and last rows (the sink's exactly-once rule relies on it, see
`sales_stream.sinks.parquet`). Compaction merges the files of a closed partition into one
file per topic-partition named after the whole range it covers: it publishes the merged
file before deleting its inputs, and an input still present (compaction interrupted) lies
inside the merged file's range, so readers leave it out (`live_parts`) and the next
compaction deletes it.

Schema: ``ts`` is ``timestamp[ms, tz=UTC]``; low-cardinality strings are dictionary-encoded;
money is ``float64``, the values of the event contract and of MongoDB, so the lake's sums
match MongoDB's; files are zstd-compressed.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sales_stream.contract import lake_file_schema, lake_partition_schema
from sales_stream.deadletters import DeadLetter
from sales_stream.events import FIELDS, SaleEvent
from sales_stream.frames import region_frame

SALES_DIR = "sales"
DEAD_LETTERS_DIR = "_dead_letters"
COMPRESSION = "zstd"
#: URL schemes that pyarrow opens natively; any other scheme goes through fsspec.
ARROW_SCHEMES = frozenset({"file", "hdfs", "viewfs", "s3", "gs", "gcs", "abfs", "abfss"})

_DICT = pa.dictionary(pa.int32(), pa.string())

#: Columns of an event file (``date`` and ``region`` are in the directory names).
EVENT_SCHEMA = lake_file_schema()
TS_TYPE = EVENT_SCHEMA.field("ts").type
#: The hive partition columns, from the directory names.
PARTITION_SCHEMA = lake_partition_schema()
PARTITIONING = ds.partitioning(PARTITION_SCHEMA, flavor="hive")
#: Columns of a dead-letter file: the fields of `sales_stream.deadletters.DeadLetter`.
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("topic", _DICT),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.string()),
        ("raw", pa.binary()),
        ("raw_size", pa.int64()),
        ("reason", _DICT),
        ("detail", pa.string()),
        ("received_at", TS_TYPE),
    ]
)

_PART_NAME = re.compile(r"part-(.+)-(\d+)-(\d+)-(\d+)\.parquet")
_TEMP_NAME = re.compile(r"\.(part-.+\.parquet)\.[0-9a-f]+\.tmp")


@dataclass(frozen=True)
class Lake:
    """The root of a data lake on a filesystem.

    Attributes:
        url: The location as given.
        fs: The pyarrow filesystem holding it.
        root: Path of the root on ``fs``, without a trailing slash.
    """

    url: str
    fs: pafs.FileSystem
    root: str

    def path(self, *parts: str) -> str:
        """The path on ``fs`` of ``parts`` joined under the root."""
        return "/".join((self.root, *(p for p in parts if p)))


def open_lake(lake_url: str | Path) -> Lake:
    """Resolve a lake location: a local path, a pyarrow URL (``hdfs://``) or an fsspec URL.

    Raises:
        ValueError: The URL scheme is known to neither pyarrow nor fsspec.
    """
    text = str(lake_url)
    scheme, sep, _ = text.partition("://")
    if not sep:
        return Lake(text, pafs.LocalFileSystem(), Path(text).resolve().as_posix())
    if scheme in ARROW_SCHEMES:
        fs, path = pafs.FileSystem.from_uri(text)
    else:
        spec_fs, path = fsspec.core.url_to_fs(text)
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(spec_fs))
    return Lake(text, fs, path.rstrip("/"))


def part_name(topic: str, partition: int, first: int, last: int) -> str:
    """File name of the rows of ``topic``/``partition`` from offset ``first`` to ``last``."""
    return f"part-{topic}-{partition}-{first}-{last}.parquet"


@dataclass(frozen=True, slots=True)
class PartFile:
    """A data file of the lake, as described by its path.

    Attributes:
        directory: Directory relative to the lake root (``sales/date=…/region=…``).
        topic: Kafka topic of its rows.
        partition: Kafka partition of its rows.
        first: Offset of its first row.
        last: Offset of its last row.
        size: Size in bytes.
    """

    directory: str
    topic: str
    partition: int
    first: int
    last: int
    size: int

    @property
    def name(self) -> str:
        """The file name."""
        return part_name(self.topic, self.partition, self.first, self.last)

    @property
    def relpath(self) -> str:
        """Path relative to the lake root."""
        return f"{self.directory}/{self.name}"


def walk_files(lake: Lake, directory: str) -> Iterator[tuple[str, str, int]]:
    """Yield ``(directory, name, size)`` of every file under ``directory``, recursively."""
    base = lake.path(directory)
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    cut = len(lake.root) + 1
    for info in lake.fs.get_file_info(selector):
        if info.type == pafs.FileType.File:
            parent, _, name = info.path[cut:].rpartition("/")
            yield parent, name, info.size or 0


def parse_part(directory: str, name: str, size: int) -> PartFile | None:
    """The `PartFile` of a file name, ``None`` if the name is not a data file's."""
    match = _PART_NAME.fullmatch(name)
    if match is None:
        return None
    topic, partition, first, last = match.groups()
    return PartFile(directory, topic, int(partition), int(first), int(last), size)


def list_parts(lake: Lake, directory: str = "") -> list[PartFile]:
    """Every data file under ``directory`` (recursive); other names are ignored."""
    found = (parse_part(*entry) for entry in walk_files(lake, directory))
    return sorted((p for p in found if p is not None), key=lambda p: (p.relpath, p.first))


def live_parts(parts: Iterable[PartFile]) -> list[PartFile]:
    """The files not superseded by a compacted file covering their offset range.

    Compaction publishes the merged file before deleting its inputs; an input still there
    (compaction interrupted) lies inside the merged file's range and is left out.
    """
    ordered = sorted(parts, key=lambda p: (p.directory, p.topic, p.partition, p.first, -p.last))
    live: list[PartFile] = []
    reach: dict[tuple[str, str, int], int] = {}
    for part in ordered:
        key = (part.directory, part.topic, part.partition)
        if part.last > reach.get(key, -1):
            live.append(part)
            reach[key] = part.last
    return live


@lru_cache(maxsize=4096)
def partition_dir(day: date, region: str) -> str:
    """Directory of the events of ``day`` (UTC) and ``region``, relative to the lake root."""
    expression = (ds.field("date") == pa.scalar(day, pa.date32())) & (ds.field("region") == region)
    return f"{SALES_DIR}/{PARTITIONING.format(expression)[0]}"


def region_dirname(region: str) -> str:
    """The ``region=…`` directory name of ``region`` (percent-encoded as pyarrow does)."""
    return partition_dir(date(2000, 1, 1), region).rpartition("/")[2]


def _sync_local(path: str) -> None:
    """Flush a local file or directory to disk (directories only where the OS can open them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):  # a directory on Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table_atomic(lake: Lake, directory: str, name: str, table: pa.Table) -> int:
    """Write ``table`` to ``directory/name`` via a temporary file moved in place.

    On a local disk the file and then its directory are synced, so a file that has its
    final name survives a power loss; on HDFS, closing a file waits for the datanodes.

    Returns:
        The size of the file in bytes.

    Raises:
        OSError: The filesystem refused a step; no partial file is left under ``name``.
    """
    folder = lake.path(directory)
    local = isinstance(lake.fs, pafs.LocalFileSystem)
    lake.fs.create_dir(folder, recursive=True)
    temp = f"{folder}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with lake.fs.open_output_stream(temp) as out:
            pq.write_table(table, out, compression=COMPRESSION)
            size = out.tell()
        if local:
            _sync_local(temp)
        lake.fs.move(temp, f"{folder}/{name}")
    except BaseException:
        with suppress(OSError):
            lake.fs.delete_file(temp)
        raise
    if local:
        _sync_local(folder)
    return size


def read_part(lake: Lake, part: PartFile) -> pa.Table:
    """The rows of one data file, with its stored schema (no partition columns)."""
    with lake.fs.open_input_file(lake.path(part.relpath)) as source:
        return pq.ParquetFile(source).read()


def events_table(events: Sequence[SaleEvent]) -> pa.Table:
    """The Arrow table of ``events`` in `EVENT_SCHEMA` (``region`` left to the directory)."""
    return pa.Table.from_arrays(
        [
            pa.array([e.event_id for e in events], pa.string()),
            pa.array([round(e.ts.timestamp() * 1000) for e in events], pa.int64()).cast(TS_TYPE),
            pa.array([e.product for e in events], _DICT),
            pa.array([e.category for e in events], _DICT),
            pa.array([e.city for e in events], _DICT),
            pa.array([e.lat for e in events], pa.float64()),
            pa.array([e.lon for e in events], pa.float64()),
            pa.array([e.quantity for e in events], pa.int32()),
            pa.array([e.unit_price for e in events], pa.float64()),
            pa.array([e.amount for e in events], pa.float64()),
            pa.array([e.currency for e in events], _DICT),
            pa.array([e.channel for e in events], _DICT),
            pa.array([e.schema_version for e in events], pa.int16()),
        ],
        schema=EVENT_SCHEMA,
    )


def dead_letters_table(letters: Sequence[DeadLetter]) -> pa.Table:
    """The Arrow table of ``letters`` in `DEAD_LETTER_SCHEMA`."""
    return pa.Table.from_arrays(
        [
            pa.array([d.topic for d in letters], _DICT),
            pa.array([d.partition for d in letters], pa.int32()),
            pa.array([d.offset for d in letters], pa.int64()),
            pa.array([d.key for d in letters], pa.string()),
            pa.array([d.raw for d in letters], pa.binary()),
            pa.array([d.raw_size for d in letters], pa.int64()),
            pa.array([d.reason for d in letters], _DICT),
            pa.array([d.detail for d in letters], pa.string()),
            pa.array([round(d.received_at.timestamp() * 1000) for d in letters], pa.int64()).cast(
                TS_TYPE
            ),
        ],
        schema=DEAD_LETTER_SCHEMA,
    )


def temp_target(name: str) -> str | None:
    """The data file name a temporary file ``.part-….parquet.<hex>.tmp`` was written for."""
    match = _TEMP_NAME.fullmatch(name)
    return None if match is None else match.group(1)


def today_utc() -> date:
    """The current UTC date: partitions of earlier dates are closed."""
    return datetime.now(UTC).date()


# --- reading ------------------------------------------------------------------------------

#: Schema of the event dataset: the file columns plus the partition columns.
DATASET_SCHEMA = pa.schema([*EVENT_SCHEMA, *PARTITION_SCHEMA])
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


def _dir_date(name: str) -> date | None:
    """The date of a ``date=YYYY-MM-DD`` directory name, ``None`` for any other name."""
    if not name.startswith("date="):
        return None
    try:
        return date.fromisoformat(name.removeprefix("date="))
    except ValueError:
        return None


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
        day = _dir_date(info.base_name)
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
    lake_url: str | Path,
    *,
    start: DateBound = None,
    end: DateBound = None,
    regions: Iterable[str] | None = None,
) -> list[PartFile]:
    """The event files a query over ``[start, end)`` and ``regions`` reads (partition pruning).

    Args:
        lake_url: Lake root (see `open_lake`).
        start: Inclusive lower bound of ``ts``: an aware datetime, or a date (UTC midnight).
        end: Exclusive upper bound of ``ts``, same types.
        regions: Region names to keep; ``None`` for all.

    Raises:
        ValueError: A bound is naive, start is not before end, or regions is a string.
    """
    lo, hi = _bounds(start, end, regions)
    return _select(open_lake(lake_url), lo, hi, regions)


def _events(
    lake_url: str | Path,
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
    lake_url: str | Path,
    *,
    start: DateBound = None,
    end: DateBound = None,
    regions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The events of the lake, one row per event, in ``ts`` order (partition pruning).

    Args:
        lake_url: Lake root (see `open_lake`).
        start: Inclusive lower bound of ``ts``: an aware datetime, or a date (UTC midnight).
        end: Exclusive upper bound of ``ts``, same types.
        regions: Region names to keep; ``None`` for all.

    Returns:
        The columns of `sales_stream.events.SaleEvent` in contract order; ``ts`` is
        ``datetime64[ms, UTC]``.

    Raises:
        ValueError: A bound is naive, start is not before end, or regions is a string.
    """
    table = _events(lake_url, list(FIELDS), start, end, regions)
    return table.sort_by([("ts", "ascending"), ("event_id", "ascending")]).to_pandas()


def revenue_by_region_lake(
    lake_url: str | Path,
    *,
    start: DateBound = None,
    end: DateBound = None,
    regions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Revenue, sales and units per region over the lake, with the region's map position.

    The same frame as `sales_stream.queries.revenue_by_region` over MongoDB (columns,
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


def read_dead_letters(lake_url: str | Path) -> pd.DataFrame:
    """The dead letters of the lake, in topic, partition and offset order."""
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


# --- compaction ---------------------------------------------------------------------------


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


def _as_day(value: str | date) -> date:
    if isinstance(value, datetime):
        raise ValueError(f"date must be a date or 'YYYY-MM-DD', got datetime {value.isoformat()}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"date must be 'YYYY-MM-DD', got {value!r}") from None


def _num_rows(lake: Lake, part: PartFile) -> int:
    with lake.fs.open_input_file(lake.path(part.relpath)) as source:
        return pq.read_metadata(source).num_rows


def _compact_dir(
    lake: Lake, directory: str, parts: list[PartFile], day: date, region: str
) -> CompactionResult:
    live = live_parts(parts)
    for part in set(parts) - set(live):  # inputs left by an interrupted compaction
        with suppress(FileNotFoundError):
            lake.fs.delete_file(lake.path(part.relpath))
    groups: dict[tuple[str, int], list[PartFile]] = defaultdict(list)
    for part in live:
        groups[(part.topic, part.partition)].append(part)
    rows = 0
    for (topic, partition), files in sorted(groups.items()):
        if len(files) == 1:
            rows += _num_rows(lake, files[0])
            continue
        files.sort(key=lambda p: p.first)
        merged = pa.concat_tables([read_part(lake, f) for f in files])
        merged = merged.unify_dictionaries().combine_chunks()
        name = part_name(topic, partition, files[0].first, files[-1].last)
        write_table_atomic(lake, directory, name, merged)
        for part in files:
            lake.fs.delete_file(lake.path(part.relpath))
        rows += merged.num_rows
    return CompactionResult(day, region, len(parts), len(groups), rows)


def compact_partition(lake_url: str | Path, *, date: str | date, region: str) -> CompactionResult:
    """Merge the files of a closed partition into one file per Kafka topic-partition.

    The merged file is written atomically and named after the offset range it covers, so a
    sink restarted later still finds where it stopped; then the inputs are deleted (an
    interrupted compaction leaves inputs that readers ignore and the next run deletes).

    Args:
        lake_url: Lake root (see `open_lake`).
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


def compact(lake_url: str | Path, *, before: date | None = None) -> list[CompactionResult]:
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
        day = _dir_date(date_dir)
        if day is None or day >= before or not region_dir.startswith("region="):
            continue
        region = unquote(region_dir.removeprefix("region="))
        results.append(_compact_dir(lake, directory, parts, day, region))
    return results


# --- inspection ---------------------------------------------------------------------------


def lake_stats(lake_url: str | Path) -> dict[str, int]:
    """Totals of the lake's live files.

    Returns:
        ``files``, ``rows``, ``bytes`` and ``partitions`` of the events, and the number of
        ``dead_letters``.
    """
    lake = open_lake(lake_url)
    parts = live_parts(list_parts(lake, SALES_DIR))
    letters = live_parts(list_parts(lake, DEAD_LETTERS_DIR))
    return {
        "files": len(parts),
        "rows": sum(_num_rows(lake, p) for p in parts),
        "bytes": sum(p.size for p in parts),
        "partitions": len({p.directory for p in parts}),
        "dead_letters": sum(_num_rows(lake, p) for p in letters),
    }


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


@dataclass
class _Node:
    dirs: dict[str, _Node] = field(default_factory=dict)
    files: list[PartFile] = field(default_factory=list)

    def totals(self) -> tuple[int, int]:
        count, size = len(self.files), sum(f.size for f in self.files)
        for child in self.dirs.values():
            c, s = child.totals()
            count, size = count + c, size + s
        return count, size

    def summary(self) -> str:
        count, size = self.totals()
        return f"({count} file{'s' if count != 1 else ''}, {_human(size)})"


def _render(node: _Node, prefix: str, lines: list[str]) -> None:
    dirs = sorted(node.dirs.items(), key=lambda item: unquote(item[0]))
    entries: list[tuple[str, _Node | PartFile]] = [*dirs]
    files = sorted(node.files, key=lambda f: (f.topic, f.partition, f.first))
    entries += [(f.name, f) for f in files]
    for i, (name, entry) in enumerate(entries):
        last = i == len(entries) - 1
        branch = "└── " if last else "├── "
        if isinstance(entry, _Node):
            decoded = unquote(name)
            shown = (
                f"{name}/  = {decoded.partition('=')[2]!r} " if decoded != name else f"{name}/  "
            )
            lines.append(f"{prefix}{branch}{shown}{entry.summary()}")
            _render(entry, prefix + ("    " if last else "│   "), lines)
        else:
            lines.append(f"{prefix}{branch}{name}  ({_human(entry.size)})")


def partition_tree(lake_url: str | Path, *, max_lines: int = 40) -> str:
    """A text tree of the lake's directories and live files, with sizes.

    Percent-encoded region directories are followed by their decoded name.

    Args:
        lake_url: Lake root (see `open_lake`).
        max_lines: Longest output; the rest is counted on a last line.

    Raises:
        ValueError: ``max_lines`` is below 2.
    """
    if max_lines < 2:
        raise ValueError(f"max_lines must be >= 2, got {max_lines}")
    lake = open_lake(lake_url)
    root = _Node()
    for part in live_parts(list_parts(lake)):
        node = root
        for name in part.directory.split("/"):
            node = node.dirs.setdefault(name, _Node())
        node.files.append(part)
    lines = [f"{lake.url.rstrip('/')}/  {root.summary()}"]
    _render(root, "", lines)
    if len(lines) > max_lines:
        hidden = len(lines) - max_lines + 1
        lines = [*lines[: max_lines - 1], f"… {hidden} more lines"]
    return "\n".join(lines)
