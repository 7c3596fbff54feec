"""MongoDB → Tableau Hyper extract: full export, incremental refresh, atomic publication.

The extract holds one table, ``"Extract"."Extract"`` (what Tableau expects of a single-table
extract), one row per sale, every column ``NOT NULL``:

========== ============== =====================================================
column     Hyper type     meaning
========== ============== =====================================================
event_id   TEXT           the event id (Mongo ``_id``)
ts         TIMESTAMP      sale time in **UTC** (Hyper timestamps carry no zone)
date       DATE           UTC date of ``ts``
hour       SMALLINT       UTC hour of ``ts`` (0–23)
product    TEXT
category   TEXT
region     TEXT
city       TEXT
lat, lon   DOUBLE         coordinates of the city (Tableau latitude/longitude)
quantity   INT
unit_price DOUBLE         EUR
amount     DOUBLE         EUR, ``quantity × unit_price`` (a measure Tableau sums)
currency   TEXT
channel    TEXT
========== ============== =====================================================

**Watermark.** The sink (`sales_stream.sinks.mongo`) stamps every document with
``ingested_at``, its clock when the batch was written, once per write attempt. Event time
(``ts``) is no watermark: the consumer writes events out of ``ts`` order (partitions are
consumed unevenly, a backfill arrives after live sales), so a ``ts`` watermark would skip late
events for good. The exporter keeps ``watermark`` = a time such that every document stamped at
or before it has been exported, and each refresh reads ``ingested_at > watermark``. A
document becomes visible a little after its stamp (the duration of its batch's ``insert_many``,
plus any clock skew between the sink and the exporter); ``late_window_s``
bounds that delay. So after a read that started at time ``r`` (exporter clock), the new
watermark is ``max(watermark, r - late_window_s)``: the last ``late_window_s`` seconds of
ingestion are read again at the next refresh and deduplicated on ``event_id`` (an anti-join
in Hyper against the whole extract, plus an in-memory set of the ids exported within the
window, so that an idle refresh writes nothing). The watermark is stored inside the extract,
in the one-row table ``"sales_stream"."export_state"``, and published atomically with the
rows: an exporter restarted on an existing extract carries on without duplicates or gaps.
That table also names the extract's one writer (`Writer`): the exporter refuses to continue
the live extract, whose sink keeps no watermark, and the sink refuses an exported one
(`ExtractOwnedError`).
Documents without ``ingested_at`` (not written by the sink) are only picked up by
`HyperExporter.full_export`.

**No index on ``sales``.** The hot collection carries only ``_id`` (each secondary index costs
about one insert per sale, see `sales_stream.sinks.mongo`), so a refresh is one server-side scan
of ``sales`` that returns only the new documents: fine for the occasional export of the CLI
(``python -m sales_stream export``), not for a live extract. The live extract is
`sales_stream.export.extract_sink.HyperSink`, fed from Kafka by its own runtime
(`sales_stream.app.Stack.hyper_worker`), which never reads MongoDB.

**Atomic publication.** A refresh copies the published file to a temporary file in the same
folder, appends to the copy and moves it over the target with `os.replace`: a reader opens
either the previous or the next complete version, never a half-written file, and never one
with fewer rows. (On Windows, ``os.replace`` fails while another program holds the target
open; the write then fails and is retried: at the next ``export --watch`` tick, or by the
live extract's runtime.) Only one writer may write a given extract.

**Speed.** Reading: ``find`` without projection or sort (both measured slower on the embedded
server), large batches, converted to Arrow column by column while the next batch is fetched.
Writing: the Arrow table goes to a temporary Parquet file that Hyper loads with ``COPY``
(about as fast as `pantab.frame_to_hyper`, but through one `HyperProcess` kept for the
exporter's lifetime). See ``bench/hyper_export.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import pandas as pd
import pantab
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pymongo.cursor import Cursor
from tableauhyperapi import (
    NOT_NULLABLE,
    NULLABLE,
    Connection,
    CreateMode,
    HyperProcess,
    SqlType,
    TableDefinition,
    TableName,
    Telemetry,
    escape_string_literal,
)

from sales_stream.clients import mongo_client
from sales_stream.contract import INGESTED_AT, extract_arrow_schema, hyper_columns
from sales_stream.errors import SalesStreamError
from sales_stream.store import DATABASE, SALES

__all__ = [
    "ARROW_SCHEMA",
    "EXTRACT_TABLE",
    "HYPER_PARAMETERS",
    "STATE_TABLE",
    "WATERMARK_FIELD",
    "ExtractOwnedError",
    "HyperExporter",
    "RefreshResult",
    "Writer",
    "append_to_extract",
    "documents_to_arrow",
    "extract_writer",
    "layout_matches",
    "naive_utc",
    "read_extract",
    "scratch_name",
    "start_hyper",
    "write_extract",
]

log = logging.getLogger(__name__)

EXTRACT_TABLE = TableName("Extract", "Extract")
STATE_TABLE = TableName("sales_stream", "export_state")
WATERMARK_FIELD = INGESTED_AT
DEFAULT_LATE_WINDOW_S = 5.0
DEFAULT_BATCH_SIZE = 10_000

#: Arrow schema of the extract's rows, in table order.
ARROW_SCHEMA = extract_arrow_schema()
_DEFINITION = TableDefinition(
    EXTRACT_TABLE,
    [
        TableDefinition.Column(name, sql, NULLABLE if nullable else NOT_NULLABLE)
        for name, sql, nullable in hyper_columns()
    ],
)
_STATE_DEFINITION = TableDefinition(
    STATE_TABLE,
    [
        TableDefinition.Column("writer", SqlType.text(), NOT_NULLABLE),
        TableDefinition.Column("watermark", SqlType.timestamp(), NULLABLE),
        TableDefinition.Column("updated_at", SqlType.timestamp(), NOT_NULLABLE),
    ],
)
# Document fields copied as they are (all but ``event_id``, ``ts`` and the derived columns).
_COPIED = tuple((field.name, field.type) for field in ARROW_SCHEMA)[4:]
_COLUMN_LIST = ", ".join(f'"{name}"' for name in ARROW_SCHEMA.names)
#: Options of every Hyper process started here: no hyperd.log in the working directory.
HYPER_PARAMETERS = {"log_config": ""}
_DONE = object()


class Writer(StrEnum):
    """Who writes an extract; only its owner continues it."""

    MONGODB = "mongodb"  # HyperExporter: polls MongoDB, keeps an ``ingested_at`` watermark
    STREAM = "stream"  # the live extract's HyperSink: fed from Kafka, no watermark
    SNAPSHOT = "snapshot"  # a generated, finished workbook extract


class ExtractOwnedError(SalesStreamError):
    """An extract written by one writer was handed to another."""

    def __init__(self, path: Path, owner: str, writer: Writer) -> None:
        super().__init__(
            f"{path} is written by the {owner} writer, not the {writer} one: "
            "give this one another path or delete the file"
        )


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """Outcome of one refresh or full export.

    Attributes:
        rows_added: Rows appended to the extract (all rows for a full export).
        total_rows: Rows in the published extract afterwards.
        duration_s: Wall time of the call.
        watermark: Every document stamped (``ingested_at``) at or before it is in the
            extract (aware UTC), given the late window (see the module doc).
        full: Whether the extract was rebuilt from scratch.
        skipped: Documents read but not exportable (a missing or mistyped field), logged
            with their ids; none come from the sink, which validates every event.
    """

    rows_added: int
    total_rows: int
    duration_s: float
    watermark: datetime
    full: bool = False
    skipped: int = 0


def documents_to_arrow(docs: list[dict[str, Any]]) -> tuple[pa.Table, int]:
    """Convert sale documents to rows of the extract; skip (and log) the malformed ones.

    Args:
        docs: Documents as stored by the sink, ``ts`` as a naive UTC datetime (a client with
            ``tz_aware=False``) or an aware one.

    Returns:
        The table (schema `ARROW_SCHEMA`) and the number of documents skipped.
    """
    try:
        return _columns(docs), 0
    except (KeyError, TypeError, ValueError, pa.ArrowException):
        good = [doc for doc in docs if _exportable(doc)]
        bad = [str(doc.get("_id")) for doc in docs if not _exportable(doc)]
        log.warning("skipped %d malformed sale document(s): %s", len(bad), ", ".join(bad[:20]))
        return _columns(good), len(bad)


def _columns(docs: list[dict[str, Any]]) -> pa.Table:
    ts = pa.array([d["ts"] for d in docs], pa.timestamp("us", tz=None))
    arrays = [
        pa.array([d["_id"] for d in docs], pa.string()),
        ts,
        pc.cast(ts, pa.date32()),
        pc.cast(pc.hour(ts), pa.int16()),
    ]
    arrays.extend(pa.array([d[name] for d in docs], kind) for name, kind in _COPIED)
    if any(array.null_count for array in arrays):
        raise ValueError("null value in a NOT NULL column")
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def _exportable(doc: dict[str, Any]) -> bool:
    try:
        _columns([doc])
    except (KeyError, TypeError, ValueError, pa.ArrowException):
        return False
    return True


def read_extract(path: Path | str) -> pd.DataFrame:
    """Read the ``"Extract"."Extract"`` table of a Hyper file (tests, notebooks).

    Returns:
        One row per sale; ``ts`` is naive and means UTC, ``date`` holds `datetime.date`.
    """
    table = pantab.frame_from_hyper(Path(path), table=EXTRACT_TABLE, return_type="pyarrow")
    return pa.table(table).to_pandas()


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as a naive datetime meaning UTC (Hyper timestamps carry no zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _timestamp_literal(moment: datetime) -> str:
    return f"TIMESTAMP {escape_string_literal(naive_utc(moment).isoformat(sep=' '))}"


def write_extract(
    hyper: HyperProcess,
    path: Path,
    table: pa.Table,
    *,
    writer: Writer,
    watermark: datetime | None = None,
) -> None:
    """Create (or replace) the extract ``path`` with the rows of ``table``, owned by ``writer``.

    The rows go through a temporary Parquet file beside ``path`` that Hyper loads with
    ``COPY``. ``path`` is written in place: publish it with `os.replace`.

    Args:
        hyper: A running Hyper process (reused across calls).
        path: The ``.hyper`` file to create.
        table: Rows with the schema `ARROW_SCHEMA`.
        writer: The extract's owner, stored in `STATE_TABLE`.
        watermark: Stored in `STATE_TABLE` (aware UTC); only the MongoDB writer has one.
    """
    with Connection(hyper.endpoint, path, CreateMode.CREATE_AND_REPLACE) as conn:
        for definition in (_DEFINITION, _STATE_DEFINITION):
            conn.catalog.create_schema_if_not_exists(definition.table_name.schema_name)
            conn.catalog.create_table(definition)
        if table.num_rows:
            with _parquet(path, table) as source:
                conn.execute_command(
                    f"COPY {EXTRACT_TABLE} FROM {source} WITH (FORMAT => 'parquet')"
                )
        _store_state(conn, writer, watermark)


def append_to_extract(
    hyper: HyperProcess,
    path: Path,
    table: pa.Table,
    *,
    writer: Writer,
    watermark: datetime | None = None,
    skip_known: bool = True,
) -> int:
    """Append the rows of ``table`` whose ``event_id`` the extract lacks; store the state.

    Args:
        hyper: A running Hyper process.
        path: An extract written by `write_extract` (modified in place).
        table: Rows with the schema `ARROW_SCHEMA`, one per ``event_id``.
        writer: The extract's owner.
        watermark: The new watermark (aware UTC), if ``writer`` keeps one.
        skip_known: Leave out the rows whose ``event_id`` the extract holds (an anti-join
            that scans the whole table). ``False`` appends every row: only for rows known
            to be new.

    Returns:
        The number of rows added.
    """
    anti_join = (
        f" WHERE NOT EXISTS (SELECT 1 FROM {EXTRACT_TABLE} AS e WHERE e.event_id = s.event_id)"
        if skip_known
        else ""
    )
    with Connection(hyper.endpoint, path) as conn, _parquet(path, table) as source:
        added = conn.execute_command(
            f"INSERT INTO {EXTRACT_TABLE} ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} "
            f"FROM external({source}, FORMAT => 'parquet') AS s{anti_join}"
        )
        _store_state(conn, writer, watermark)
    return added


@contextlib.contextmanager
def _parquet(path: Path, table: pa.Table) -> Iterator[str]:
    """Write ``table`` to a Parquet file beside ``path``; yield its path as a SQL literal."""
    parquet = path.with_suffix(".parquet")
    try:
        pq.write_table(table, parquet, compression="none")
        yield escape_string_literal(str(parquet))
    finally:
        parquet.unlink(missing_ok=True)


def scratch_name(path: Path, tag: str) -> str:
    """Name of a temporary file published over ``path`` (``tag``: unique, or a glob)."""
    return f".{path.stem}.{tag}.tmp.hyper"


def start_hyper() -> HyperProcess:
    """A Hyper process for this module's writers (close it when done)."""
    return HyperProcess(Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters=HYPER_PARAMETERS)


def _store_state(conn: Connection, writer: Writer, watermark: datetime | None) -> None:
    stored = "NULL" if watermark is None else _timestamp_literal(watermark)
    conn.execute_command(f"DELETE FROM {STATE_TABLE}")
    conn.execute_command(
        f"INSERT INTO {STATE_TABLE} VALUES ({escape_string_literal(writer)}, "
        f"{stored}, {_timestamp_literal(datetime.now(UTC))})"
    )


def extract_writer(conn: Connection, path: Path, writer: Writer) -> bool:
    """Whether ``writer`` may continue the attached extract ``path``.

    Returns:
        False for another layout (to be rebuilt).

    Raises:
        ExtractOwnedError: The extract belongs to another writer.
    """
    if not layout_matches(conn):
        return False
    owner = conn.execute_scalar_query(f"SELECT MAX(writer) FROM {STATE_TABLE}")
    if owner is None:
        return False
    if owner != writer:
        raise ExtractOwnedError(path, owner, writer)
    return True


class HyperExporter:
    """Exports the ``sales`` collection to a Hyper extract and keeps it up to date.

    Not thread-safe by design of Hyper, so every call holds an internal lock: a watch loop
    and a reader may share one exporter. It creates no index on the collection (see the
    module doc: a refresh scans it). Use it as a context manager or call
    `close` (which stops its `HyperProcess`).

    Args:
        mongo_uri: MongoDB connection string.
        hyper_path: The published extract (``.hyper``); its folder is created if needed.
        db: Database name.
        collection: Collection written by the sink.
        late_window_s: Longest delay between a document's ``ingested_at`` stamp and the moment
            it is visible to readers (one ``insert_many`` plus clock skew); see the module doc.
        batch_size: Documents per Mongo batch.
        clock: Returns the aware UTC time (injectable for tests).

    Raises:
        ValueError: ``hyper_path`` is not a ``.hyper`` file, or a numeric option is out of range.
    """

    def __init__(
        self,
        mongo_uri: str,
        hyper_path: Path | str,
        *,
        db: str = DATABASE,
        collection: str = SALES,
        late_window_s: float = DEFAULT_LATE_WINDOW_S,
        batch_size: int = DEFAULT_BATCH_SIZE,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        path = Path(hyper_path)
        if path.suffix != ".hyper":
            raise ValueError(f"hyper_path must end with .hyper, got {path}")
        if late_window_s < 0:
            raise ValueError(f"late_window_s must be >= 0, got {late_window_s}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.path = path.resolve()
        self.late_window = timedelta(seconds=late_window_s)
        self._batch_size = batch_size
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client = mongo_client(mongo_uri, tz_aware=False)
        self._collection = self._client[db][collection]
        self._lock = threading.Lock()
        self._process: HyperProcess | None = None
        self._closed = False
        # Known state of the published extract (None until read or written by this exporter).
        self._watermark: datetime | None = None
        self._total_rows = 0
        self._loaded = False
        self._recent: dict[str, datetime] = {}  # ids exported with a stamp > watermark

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the Hyper process and close the Mongo client (idempotent)."""
        with self._lock:
            self._closed = True
            if self._process is not None:
                self._process.close()
                self._process = None
            self._client.close()

    @property
    def watermark(self) -> datetime | None:
        """Every document stamped at or before this aware UTC time is in the extract."""
        return self._watermark

    def refresh(self) -> RefreshResult:
        """Append the documents ingested since the watermark; a full export the first time.

        The first call on an existing extract reads its stored watermark; an extract without
        one (written by something else, or of another layout) is rebuilt.

        Returns:
            What was added; nothing is rewritten when nothing is new.
        """
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            if not self._loaded:
                self._load_state()
            if self._watermark is None:
                return self._full_export(started)
            return self._incremental(started, self._watermark)

    def full_export(self) -> RefreshResult:
        """Rebuild the extract from every document of the collection and publish it."""
        with self._lock:
            self._check_open()
            return self._full_export(time.perf_counter())

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the exporter is closed")

    def _hyper(self) -> HyperProcess:
        if self._process is None:
            self._process = start_hyper()
        return self._process

    def _full_export(self, started: float) -> RefreshResult:
        read_at = self._clock()
        watermark = read_at - self.late_window
        table, skipped, recent = self._read_all(naive_utc(watermark))
        with self._scratch(copy_published=False) as scratch:
            write_extract(self._hyper(), scratch, table, writer=Writer.MONGODB, watermark=watermark)
            self._publish(scratch)
        self._watermark, self._total_rows, self._loaded = watermark, table.num_rows, True
        self._recent = recent
        return RefreshResult(
            rows_added=table.num_rows,
            total_rows=table.num_rows,
            duration_s=time.perf_counter() - started,
            watermark=watermark,
            full=True,
            skipped=skipped,
        )

    def _incremental(self, started: float, previous: datetime) -> RefreshResult:
        read_at = self._clock()
        query = {WATERMARK_FIELD: {"$gt": naive_utc(previous)}}
        docs = list(self._collection.find(query, batch_size=self._batch_size))
        watermark = max(previous, read_at - self.late_window)
        fresh = [doc for doc in docs if str(doc["_id"]) not in self._recent]
        rows_added = skipped = 0
        if fresh:
            table, skipped = documents_to_arrow(fresh)
            if table.num_rows:
                with self._scratch(copy_published=True) as scratch:
                    rows_added = append_to_extract(
                        self._hyper(), scratch, table, writer=Writer.MONGODB, watermark=watermark
                    )
                    self._publish(scratch)
                self._total_rows += rows_added
        self._watermark = watermark
        limit = naive_utc(watermark)
        self._recent.update((str(doc["_id"]), doc[WATERMARK_FIELD]) for doc in fresh)
        self._recent = {key: stamp for key, stamp in self._recent.items() if stamp > limit}
        return RefreshResult(
            rows_added=rows_added,
            total_rows=self._total_rows,
            duration_s=time.perf_counter() - started,
            watermark=watermark,
            skipped=skipped,
        )

    # Mongo side ---------------------------------------------------------------------------

    def _read_all(self, recent_after: datetime) -> tuple[pa.Table, int, dict[str, datetime]]:
        """Read every document; also return the ids stamped after ``recent_after`` (naive)."""
        tables: list[pa.Table] = []
        skipped = 0
        recent: dict[str, datetime] = {}
        cursor = self._collection.find({}, batch_size=self._batch_size)
        for chunk in self._chunks(cursor):
            table, bad = documents_to_arrow(chunk)
            tables.append(table)
            skipped += bad
            for doc in chunk:
                stamp = doc.get(WATERMARK_FIELD)
                if isinstance(stamp, datetime) and stamp > recent_after:
                    recent[str(doc["_id"])] = stamp
        table = pa.concat_tables(tables) if tables else ARROW_SCHEMA.empty_table()
        return table, skipped, recent

    def _chunks(self, cursor: Cursor) -> Iterator[list[dict[str, Any]]]:
        """Yield lists of ``batch_size`` documents, fetched by a thread one chunk ahead.

        The fetch waits on the server most of the time (the GIL is free then), so the
        caller's conversion of one chunk overlaps the fetch of the next.
        """
        chunks: queue.Queue[object] = queue.Queue(maxsize=2)
        stop = threading.Event()
        size = self._batch_size

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    chunks.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def fetch() -> None:
            try:
                chunk: list[dict[str, Any]] = []
                for doc in cursor:
                    chunk.append(doc)
                    if len(chunk) == size:
                        if not put(chunk):
                            return
                        chunk = []
                if chunk and not put(chunk):
                    return
                put(_DONE)
            except BaseException as exc:  # handed over to the caller's thread
                put(exc)

        worker = threading.Thread(target=fetch, name="hyper-export-fetch", daemon=True)
        worker.start()
        try:
            while (item := chunks.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            worker.join()
            cursor.close()

    # Hyper side ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _scratch(self, *, copy_published: bool) -> Iterator[Path]:
        """A temporary ``.hyper`` path beside the target, removed unless published."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_name(scratch_name(self.path, uuid.uuid4().hex[:12]))
        try:
            if copy_published:
                shutil.copyfile(self.path, scratch)
            yield scratch
        finally:
            scratch.unlink(missing_ok=True)

    def _publish(self, scratch: Path) -> None:
        os.replace(scratch, self.path)

    def _load_state(self) -> None:
        """Read the watermark and row count of the published extract, if it has them."""
        if self.path.exists():
            with (
                self._scratch(copy_published=True) as scratch,
                Connection(self._hyper().endpoint, scratch) as conn,
            ):
                stored = None
                if extract_writer(conn, self.path, Writer.MONGODB):
                    stored = conn.execute_scalar_query(f"SELECT MAX(watermark) FROM {STATE_TABLE}")
                if stored is None:
                    log.warning("%s has another layout or no watermark: rebuilding it", self.path)
                else:
                    self._watermark = stored.to_datetime().replace(tzinfo=UTC)
                    self._total_rows = conn.execute_scalar_query(
                        f"SELECT COUNT(*) FROM {EXTRACT_TABLE}"
                    )
        self._loaded = True


def layout_matches(conn: Connection) -> bool:
    """Whether the attached extract has this module's table and state table."""
    catalog = conn.catalog
    return all(
        catalog.has_table(definition.table_name)
        and [
            (c.name.unescaped, c.type)
            for c in catalog.get_table_definition(definition.table_name).columns
        ]
        == [(c.name.unescaped, c.type) for c in definition.columns]
        for definition in (_DEFINITION, _STATE_DEFINITION)
    )
