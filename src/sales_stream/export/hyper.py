"""MongoDB → Tableau extract, polled: `HyperExporter`, behind ``python -m sales_stream export``.

**Watermark.** The MongoDB sink stamps each document with ``ingested_at`` (event time is no
watermark: sales arrive out of ``ts`` order). Each refresh reads ``ingested_at > watermark``;
after a read started at ``r``, the watermark becomes ``max(watermark, r - late_window_s)``,
where ``late_window_s`` bounds how late a stamped document becomes visible. The window is read
again next time and deduplicated on ``event_id`` (an anti-join, plus the ids exported within
the window in memory, so an idle refresh writes nothing). The watermark is published inside
the extract with the rows (`sales_stream.extract`), so a restarted exporter carries on;
documents without ``ingested_at`` only come with `HyperExporter.full_export`.

**Cost.** ``sales`` carries only ``_id``, so a refresh is one server-side scan: fine for an
occasional export, not for a live extract, which is the Kafka-fed `sales_stream.sinks.hyper`
(and the file's one writer). Each refresh copies the published file, appends to the copy and
replaces the target with `os.replace`: readers see the previous or the next complete version.
See ``bench/hyper_export.py``.
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
from pathlib import Path
from typing import Any, Self

import pyarrow as pa
from pymongo.cursor import Cursor
from tableauhyperapi import Connection, HyperProcess

from sales_stream.clients import mongo_client
from sales_stream.contract import INGESTED_AT
from sales_stream.extract import (
    ARROW_SCHEMA,
    EXTRACT_TABLE,
    STATE_TABLE,
    Writer,
    append_to_extract,
    documents_to_arrow,
    extract_writer,
    naive_utc,
    scratch_name,
    start_hyper,
    write_extract,
)
from sales_stream.store import DATABASE, SALES

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LATE_WINDOW_S",
    "WATERMARK_FIELD",
    "HyperExporter",
    "RefreshResult",
]

log = logging.getLogger(__name__)

WATERMARK_FIELD = INGESTED_AT
DEFAULT_LATE_WINDOW_S = 5.0
DEFAULT_BATCH_SIZE = 10_000
_DONE = object()


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
        for chunk in _prefetched(cursor, self._batch_size):
            table, bad = documents_to_arrow(chunk)
            tables.append(table)
            skipped += bad
            for doc in chunk:
                stamp = doc.get(WATERMARK_FIELD)
                if isinstance(stamp, datetime) and stamp > recent_after:
                    recent[str(doc["_id"])] = stamp
        table = pa.concat_tables(tables) if tables else ARROW_SCHEMA.empty_table()
        return table, skipped, recent

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


def _prefetched(cursor: Cursor, size: int) -> Iterator[list[dict[str, Any]]]:
    """Yield lists of ``size`` documents, fetched by a thread one chunk ahead.

    The fetch waits on the server most of the time (the GIL is free then), so the
    caller's conversion of one chunk overlaps the fetch of the next.
    """
    chunks: queue.Queue[object] = queue.Queue(maxsize=2)
    stop = threading.Event()

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
