"""Parquet data lake sink: the sales topic consumed into the lake (`sales_stream.lake`).

The sink is a consumer group of its own (``sales-lake``), so the lake and MongoDB never
wait for each other. Each record goes through the event contract's ``decode``: valid events
are buffered per directory ``sales/date=…/region=…``, malformed records become dead letters
(the same record as the MongoDB sink's) in ``_dead_letters``. A flush happens every
``flush_events`` records or ``flush_seconds`` seconds.

Every record is written once, although a flush spans several files and nothing makes
several files appear at once:

* A file holds the rows of one Kafka topic-partition for one directory, and its name gives
  the offsets of its first and last rows.
* A file is written under a temporary name in its directory, then moved into place; offsets
  are committed only after all the files of a flush are written.
* For a given directory and topic-partition, files are written in offset order and each one
  holds all the buffered rows for that directory. So the rows of a topic-partition in a
  directory are exactly those at or below the highest last offset named there, even when
  a crash stops a flush halfway through its files. On each partition assignment the sink
  lists the lake and skips the records at or below that offset for their directory. A
  restart with different batch boundaries never writes a record twice and never skips
  one that is missing.
* Compaction keeps the topic-partition and the covered offset range in the merged file's
  name, so the same rule holds after compaction.

A failed write (filesystem or HDFS outage) is retried with exponential backoff, without
committing; records of partitions revoked by a rebalance are dropped uncommitted, for their
new owner to read again.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata, TopicPartition

from sales_stream.clients import consumer_config
from sales_stream.deadletters import DeadLetter, dead_letter
from sales_stream.events import SaleEvent, decode
from sales_stream.lake import (
    DEAD_LETTERS_DIR,
    dead_letters_table,
    events_table,
    open_lake,
    parse_part,
    part_name,
    partition_dir,
    temp_target,
    walk_files,
    write_table_atomic,
)

log = logging.getLogger(__name__)

#: Backoff between retries of a failed file write (doubling up to the maximum).
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
#: Longest wait in one poll, so that a stop request or a timed flush is never late.
POLL_MAX_S = 0.5


@dataclass(frozen=True, slots=True)
class LakeStats:
    """A snapshot of a lake sink's counters.

    Attributes:
        consumed: Records read from Kafka (valid, malformed or already in the lake).
        events: Valid events written to the lake.
        dead_letters: Malformed records written to ``_dead_letters``.
        skipped: Records found already in the lake (written before a crash or a restart).
        files: Files written.
        bytes: Bytes written.
        flushes: Flushes completed, each followed by an offset commit.
        write_errors: File writes that failed and were retried.
        commit_failures: Commits refused because of a rebalance (the records are read
            again and skipped).
        partitions: Kafka partitions currently assigned to this sink.
        elapsed_s: Seconds since the run started.
        active_s: Seconds from the first record read to the end of the last flush.
    """

    consumed: int
    events: int
    dead_letters: int
    skipped: int
    files: int
    bytes: int
    flushes: int
    write_errors: int
    commit_failures: int
    partitions: int
    elapsed_s: float
    active_s: float

    @property
    def rate(self) -> float:
        """Events written per second of activity."""
        return self.events / self.active_s if self.active_s > 0 else 0.0


@dataclass(slots=True)
class _Batch:
    first: int
    last: int
    rows: list


_BatchKey = tuple[str, TopicPartition]


class _Rebalance(ConsumerRebalanceListener):
    """Notes assignment changes (on the client's IO thread); the sink applies them."""

    def __init__(self, sink: LakeSink) -> None:
        self._sink = sink

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._sink._note_assignment(revoked=revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._sink._note_assignment(assigned=assigned)


class LakeSink:
    """Consume the sales topic into the Parquet lake, in its own consumer group.

    Args:
        bootstrap: Kafka bootstrap address.
        topic: Topic to consume.
        lake_url: Lake root: a local path or a filesystem URL (see `open_lake`).
        group_id: Consumer group (its own offsets, independent of the MongoDB consumer).
        flush_events: Flush once this many records are waiting.
        flush_seconds: Flush once the oldest waiting record is this old.

    Raises:
        ValueError: A flush threshold is not positive, or the URL scheme is unknown.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        lake_url: str | Path,
        *,
        group_id: str = "sales-lake",
        flush_events: int = 10_000,
        flush_seconds: float = 30.0,
    ) -> None:
        if flush_events < 1:
            raise ValueError(f"flush_events must be >= 1, got {flush_events}")
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be > 0, got {flush_seconds}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.flush_events = flush_events
        self.flush_seconds = flush_seconds
        self.lake = open_lake(lake_url)
        self._lock = threading.Lock()
        self._directories: dict[tuple[date, str], str] = {}
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self._batches: dict[_BatchKey, _Batch] = {}
        self._written: dict[_BatchKey, int] = {}
        self._next_offsets: dict[TopicPartition, int] = {}
        self._pending = 0
        self._pending_since: float | None = None
        self._assigned: set[TopicPartition] = set()
        self._revoked: set[TopicPartition] = set()
        self._reload = False
        self._active_at: float | None = None
        self._started = now
        self._first_record: float | None = None
        self._last_flush: float | None = None
        self._counts = dict.fromkeys(
            (
                "consumed",
                "events",
                "dead_letters",
                "skipped",
                "files",
                "bytes",
                "flushes",
                "write_errors",
                "commit_failures",
            ),
            0,
        )

    @property
    def stats(self) -> LakeStats:
        """A consistent snapshot of the counters of the current (or last) run."""
        with self._lock:
            now = time.monotonic()
            first, last = self._first_record, self._last_flush
            active = last - first if first is not None and last is not None else 0.0
            return LakeStats(
                **self._counts,
                partitions=len(self._assigned),
                elapsed_s=now - self._started,
                active_s=active,
            )

    def run(
        self,
        *,
        until_idle: float | None = None,
        max_events: int | None = None,
        stop: threading.Event | None = None,
    ) -> LakeStats:
        """Consume and write until stopped; flush and commit what was read before returning.

        Args:
            until_idle: Return after this many seconds without a new record (counted from
                the partition assignment); ``None`` runs until ``stop``.
            max_events: Return after this many records (valid, malformed or skipped).
            stop: Set it (from another thread) to return after a final flush.

        Returns:
            The counters of this run.

        Raises:
            ValueError: ``until_idle`` or ``max_events`` is negative.
        """
        if until_idle is not None and until_idle < 0:
            raise ValueError(f"until_idle must be >= 0, got {until_idle}")
        if max_events is not None and max_events < 0:
            raise ValueError(f"max_events must be >= 0, got {max_events}")
        stop = stop or threading.Event()
        with self._lock:
            self._reset(time.monotonic())
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=f"sales-stream-lake-{self.group_id}",
            **consumer_config(),
        )
        try:
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            if self._consume(consumer, until_idle, max_events, stop):
                self._flush(consumer, stop)
        finally:
            consumer.close(autocommit=False)
        return self.stats

    def _consume(
        self,
        consumer: KafkaConsumer,
        until_idle: float | None,
        max_events: int | None,
        stop: threading.Event,
    ) -> bool:
        """The poll loop; ``False`` if it ended on a write that could not complete."""
        while not stop.is_set():
            limit = self.flush_events - self._pending  # a flush takes exactly flush_events
            if max_events is not None:
                limit = min(limit, max_events - self._counts["consumed"])
                if limit <= 0:
                    break
            polled = consumer.poll(timeout_ms=self._poll_timeout_ms(), max_records=limit)
            now = time.monotonic()
            self._apply_assignment(now)
            if polled:
                self._add_all(polled, now)
            if self._flush_due(now) and not self._flush(consumer, stop):
                return False
            if (
                until_idle is not None
                and not polled
                and self._active_at is not None
                and now - self._active_at >= until_idle
            ):
                break
        return True

    def _poll_timeout_ms(self) -> int:
        wait = POLL_MAX_S
        if self._pending_since is not None:
            due = self._pending_since + self.flush_seconds - time.monotonic()
            wait = min(wait, max(due, 0.0))
        return int(wait * 1000)

    def _note_assignment(
        self,
        *,
        assigned: set[TopicPartition] | None = None,
        revoked: set[TopicPartition] | None = None,
    ) -> None:
        with self._lock:
            if revoked:
                self._assigned -= revoked
                self._revoked |= revoked
            if assigned:  # a partition revoked then assigned again restarts from its commit
                self._assigned |= assigned
                self._reload = True

    def _apply_assignment(self, now: float) -> None:
        """Drop what was read from revoked partitions; reconcile with the lake on assignment.

        Dropped records were not committed: their new owner reads them again.
        """
        with self._lock:
            revoked, self._revoked = self._revoked, set()
            reload, self._reload = self._reload, False
            assigned = set(self._assigned)
        for key in [k for k in self._batches if k[1] in revoked]:
            del self._batches[key]
        for tp in revoked:
            self._next_offsets.pop(tp, None)
        if revoked and not self._next_offsets:
            self._pending, self._pending_since = 0, None
        if reload:
            self._written = self._reconcile(assigned)
            self._active_at = now

    def _reconcile(self, assigned: set[TopicPartition]) -> dict[_BatchKey, int]:
        """Highest offset in the lake per directory and partition; remove stale temp files."""
        written: dict[_BatchKey, int] = {}
        for directory, name, size in walk_files(self.lake, ""):
            part = parse_part(directory, name, size)
            if part is not None:
                key = (directory, TopicPartition(part.topic, part.partition))
                written[key] = max(written.get(key, -1), part.last)
                continue
            target_name = temp_target(name)
            target = None if target_name is None else parse_part(directory, target_name, 0)
            if target is not None and TopicPartition(target.topic, target.partition) in assigned:
                with suppress(FileNotFoundError):
                    self.lake.fs.delete_file(self.lake.path(directory, name))
        return written

    def _add_all(self, polled: dict[TopicPartition, list[ConsumerRecord]], now: float) -> None:
        consumed = skipped = 0
        for tp, records in polled.items():
            for record in records:
                consumed += 1
                skipped += not self._add(tp, record)
            self._next_offsets[tp] = records[-1].offset + 1
        self._pending += consumed
        if self._pending_since is None:
            self._pending_since = now
        self._active_at = now
        with self._lock:
            if self._first_record is None:
                self._first_record = now
            self._counts["consumed"] += consumed
            self._counts["skipped"] += skipped

    def _add(self, tp: TopicPartition, record: ConsumerRecord) -> bool:
        """Buffer one record; ``False`` if the lake (or the batch) already holds it."""
        result = decode(record.value)
        row: SaleEvent | DeadLetter
        if type(result) is SaleEvent:
            row = result
            day_region = (result.ts.date(), result.region)
            directory = self._directories.get(day_region)
            if directory is None:
                directory = self._directories[day_region] = partition_dir(*day_region)
        else:
            directory = DEAD_LETTERS_DIR
            row = dead_letter(
                topic=tp.topic,
                partition=tp.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                invalid=result,
            )
        key = (directory, tp)
        batch = self._batches.get(key)
        if record.offset <= (self._written.get(key, -1) if batch is None else batch.last):
            return False  # already in the lake (or, if delivered twice, in the batch)
        if batch is None:
            self._batches[key] = _Batch(record.offset, record.offset, [row])
        else:
            batch.last = record.offset
            batch.rows.append(row)
        return True

    def _flush_due(self, now: float) -> bool:
        return self._pending >= self.flush_events or (
            self._pending_since is not None and now - self._pending_since >= self.flush_seconds
        )

    def _flush(self, consumer: KafkaConsumer, stop: threading.Event) -> bool:
        """Write every batch, then commit; ``False`` if stopped while writes were failing."""
        if self._pending == 0:
            return True
        if not self._write_batches(stop):
            return False
        offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in self._next_offsets.items()}
        committed = True
        try:
            consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            log.warning("lake: offsets not committed (%s); the records will be skipped", exc)
            committed = False
        self._next_offsets.clear()
        self._pending, self._pending_since = 0, None
        with self._lock:
            self._counts["flushes" if committed else "commit_failures"] += 1
            self._last_flush = time.monotonic()
        return True

    def _write_batches(self, stop: threading.Event) -> bool:
        delay = RETRY_FIRST_S
        while self._batches:
            key, batch = next(iter(self._batches.items()))
            directory, tp = key
            dead = directory == DEAD_LETTERS_DIR
            table = dead_letters_table(batch.rows) if dead else events_table(batch.rows)
            name = part_name(tp.topic, tp.partition, batch.first, batch.last)
            try:
                size = write_table_atomic(self.lake, directory, name, table)
            except OSError as exc:
                with self._lock:
                    self._counts["write_errors"] += 1
                log.warning(
                    "lake: cannot write %s/%s (%s), retry in %.1f s", directory, name, exc, delay
                )
                if stop.wait(delay):
                    return False
                delay = min(2 * delay, RETRY_MAX_S)
                continue
            del self._batches[key]
            self._written[key] = batch.last
            with self._lock:
                self._counts["dead_letters" if dead else "events"] += len(batch.rows)
                self._counts["files"] += 1
                self._counts["bytes"] += size
        return True


class LakeThread:
    """A `LakeSink` running in a background thread (for notebooks).

    Args:
        bootstrap: Kafka bootstrap address.
        topic: Topic to consume.
        lake_url: Lake root (see `open_lake`).
        group_id: Consumer group.
        flush_events: Flush once this many records are waiting.
        flush_seconds: Flush once the oldest waiting record is this old.
        until_idle: End the run after this many seconds without a new record.
        max_events: End the run after this many records.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        lake_url: str | Path,
        *,
        group_id: str = "sales-lake",
        flush_events: int = 10_000,
        flush_seconds: float = 30.0,
        until_idle: float | None = None,
        max_events: int | None = None,
    ) -> None:
        self.sink = LakeSink(
            bootstrap,
            topic,
            lake_url,
            group_id=group_id,
            flush_events=flush_events,
            flush_seconds=flush_seconds,
        )
        self._until_idle = until_idle
        self._max_events = max_events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start consuming in a daemon thread.

        Raises:
            RuntimeError: Already started (a `LakeThread` runs once).
        """
        if self._thread is not None:
            raise RuntimeError("this LakeThread was already started; create a new one")
        self._thread = threading.Thread(
            target=self._run, name=f"lake-{self.sink.group_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self.sink.run(until_idle=self._until_idle, max_events=self._max_events, stop=self._stop)
        except Exception as exc:
            log.exception("lake sink failed")
            self._error = exc

    def stop(self, timeout: float = 30.0) -> LakeStats:
        """Ask for a final flush and commit, and wait for the thread.

        Returns:
            The final counters.

        Raises:
            TimeoutError: The thread is still running after ``timeout`` seconds.
            Exception: The error that ended the run, if it failed.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the lake sink did not stop within {timeout:.0f} s")
        if self._error is not None:
            raise self._error
        return self.stats

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to end by itself (``until_idle``/``max_events``); ``True`` if over."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        """The error that ended the run, if any."""
        return self._error

    @property
    def stats(self) -> LakeStats:
        """A snapshot of the counters."""
        return self.sink.stats
