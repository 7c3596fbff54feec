"""Where things are in the lake: its root, the directories and the data files' names.

A data file is named after the Kafka topic-partition, first and last offsets and topic
incarnation of its rows (`part_name`, `PartFile`); `live_parts` leaves out the files that a
compacted file supersedes; `partition_dir` gives the hive directory of a date and region.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from sales_stream.lake.tables import PARTITION_SCHEMA

SALES_DIR = "sales"
DEAD_LETTERS_DIR = "_dead_letters"
#: URL schemes that pyarrow opens natively; any other scheme goes through fsspec.
ARROW_SCHEMES = frozenset({"file", "hdfs", "viewfs", "s3", "gs", "gcs", "abfs", "abfss"})
#: The hive partitioning of the event directories (``date=…/region=…``).
PARTITIONING = ds.partitioning(PARTITION_SCHEMA, flavor="hive")

_PART_NAME = re.compile(r"part-(.+)-(\d+)-(\d+)-(\d+)(?:\.([0-9a-f]{1,32}))?\.parquet")
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


#: Where a lake is: a local path, a URL, or a `Lake` already opened (e.g. on the embedded store).
LakeLocation = str | Path | Lake


def open_lake(lake_url: LakeLocation) -> Lake:
    """Resolve a lake location: a local path, a pyarrow URL (``hdfs://``) or an fsspec URL.

    A `Lake` is returned as it is (`sales_stream.app.Stack.lake_location` opens the lake of
    the embedded object store with its credentials).

    Raises:
        ValueError: The URL scheme is known to neither pyarrow nor fsspec.
    """
    if isinstance(lake_url, Lake):
        return lake_url
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


def part_name(topic: str, partition: int, first: int, last: int, incarnation: str = "") -> str:
    """File name of the rows of ``topic``/``partition`` from offset ``first`` to ``last``.

    ``incarnation`` (hex, `sales_stream.stream.source.incarnation_of`) tells apart the offsets
    of two incarnations of the topic (the memory-only embedded broker restarts them at 0).
    """
    suffix = f".{incarnation}" if incarnation else ""
    return f"part-{topic}-{partition}-{first}-{last}{suffix}.parquet"


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
        incarnation: The topic incarnation of the offsets (``""`` for files without one).
    """

    directory: str
    topic: str
    partition: int
    first: int
    last: int
    size: int
    incarnation: str = ""

    @property
    def stream(self) -> tuple[str, str, int]:
        """``(incarnation, topic, partition)``: where its offsets are unique."""
        return (self.incarnation, self.topic, self.partition)

    @property
    def name(self) -> str:
        """The file name."""
        return part_name(self.topic, self.partition, self.first, self.last, self.incarnation)

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
    topic, partition, first, last, incarnation = match.groups()
    return PartFile(
        directory, topic, int(partition), int(first), int(last), size, incarnation or ""
    )


def list_parts(lake: Lake, directory: str = "") -> list[PartFile]:
    """Every data file under ``directory`` (recursive); other names are ignored."""
    found = (parse_part(*entry) for entry in walk_files(lake, directory))
    return sorted((p for p in found if p is not None), key=lambda p: (p.relpath, p.first))


def live_parts(parts: Iterable[PartFile]) -> list[PartFile]:
    """The files not superseded by a compacted file covering their offset range.

    Compaction publishes the merged file before deleting its inputs; an input still there
    (compaction interrupted) lies inside the merged file's range and is left out.
    """
    ordered = sorted(parts, key=lambda p: (p.directory, p.stream, p.first, -p.last))
    live: list[PartFile] = []
    reach: dict[tuple[str, tuple[str, str, int]], int] = {}
    for part in ordered:
        key = (part.directory, part.stream)
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


def temp_target(name: str) -> str | None:
    """The data file name a temporary file ``.part-….parquet.<hex>.tmp`` was written for."""
    match = _TEMP_NAME.fullmatch(name)
    return None if match is None else match.group(1)


def date_of_dir(name: str) -> date | None:
    """The date of a ``date=YYYY-MM-DD`` directory name, ``None`` for any other name."""
    if not name.startswith("date="):
        return None
    try:
        return date.fromisoformat(name.removeprefix("date="))
    except ValueError:
        return None
