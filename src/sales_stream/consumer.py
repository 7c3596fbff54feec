"""Kafka → MongoDB consume loop: poll a batch, validate, write idempotently, then commit.

Delivery semantics: at-least-once from Kafka plus idempotent writes (`sales_stream.sinks.mongo`)
gives effectively-once storage. Offsets are committed manually, and only for a batch whose
sales and dead letters are durably written (journaled) and whose ``after_write`` hooks have
run. A crash anywhere re-reads at most the uncommitted batches, which the writes absorb as
duplicates.

The loop is a two-stage pipeline: while a writer thread stores batch *n*, the loop thread
polls and decodes batch *n + 1* (never more than `PIPELINE_DEPTH` batches in memory). Only
the loop thread touches the Kafka consumer; batches are committed in order.

Faults:

* MongoDB unreachable (or any write/hook error): the same batch is retried with bounded
  exponential backoff and jitter; nothing is committed, nothing is dropped, the status reads
  ``"waiting for MongoDB since 8 s"``. The partitions are paused and the loop keeps polling,
  so the consumer stays in its group (heartbeats and ``max_poll_interval_ms``).
* Rebalance: batches are never dropped; after a rebalance only the offsets of partitions still
  assigned are committed. A partition that moved away is re-read by its new owner from the
  last commit, and the idempotent writes absorb the overlap.
* Graceful stop: writes and commits what was already polled (unless MongoDB is failing),
  then closes the consumer, which leaves the group.

``after_write`` hooks (e.g. incremental rollups) run on the writer thread with the `Batch`,
after the durable write and before the commit. A failing hook is retried like a MongoDB
failure (the write is not repeated). Like the writes, hooks may see a batch more than once
(after a crash or a rebalance), so they must be idempotent.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from pymongo.errors import PyMongoError

from sales_stream.clients import consumer_config, mongo_client
from sales_stream.deadletters import MAX_KEPT_BYTES, DeadLetter, dead_letter
from sales_stream.events import SaleEvent, decode
from sales_stream.sinks.mongo import MongoSink, WriteResult, ensure_indexes

DEFAULT_GROUP = "sales-mongo"
#: Dead-letter reason of a valid payload without a key (the contract keys sales by region).
MISSING_KEY = "missing_key"
#: Batches held in memory: one being written, one polled ahead.
PIPELINE_DEPTH = 2
#: How often the loop polls (partitions paused) while it waits for a write or a retry.
MEMBERSHIP_POLL_S = 1.0
#: Time a graceful stop may spend writing what was already polled.
DRAIN_TIMEOUT_S = 8.0
#: The loop polls at least every `MEMBERSHIP_POLL_S`, so a short limit is safe; it is also
#: the rebalance timeout, i.e. how long a rebalance can wait for a member that died mid-join.
MAX_POLL_INTERVAL_MS = 30_000
#: A hung MongoDB must not block a write attempt forever.
SOCKET_TIMEOUT_MS = 60_000
_WAIT_SLICE_S = 0.2
_ERROR_MAX_CHARS = 300

Hook = Callable[["Batch"], None]


@dataclass(frozen=True, slots=True)
class Batch:
    """The decoded records of one poll.

    Attributes:
        topic: Kafka topic.
        events: Valid events, in partition then offset order.
        positions: ``(partition, offset)`` of each event (same order as ``events``).
        dead: Rejected records as dead letters.
        first_offsets: Partition → offset of its first record in the batch.
        next_offsets: Partition → offset to commit (its last record's offset + 1).
    """

    topic: str
    events: list[SaleEvent]
    positions: list[tuple[int, int]]
    dead: list[DeadLetter]
    first_offsets: dict[int, int]
    next_offsets: dict[int, int]

    @property
    def size(self) -> int:
        """Number of records in the batch (valid and rejected)."""
        return len(self.events) + len(self.dead)


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """Snapshot of a consumer's progress (counters cover every run of the instance).

    Attributes:
        status: ``"joining group"``, ``"running"``, ``"idle"``, ``"waiting for MongoDB since
            8 s"``, ``"retrying the batch since 3 s (ValueError)"``, ``"stopping"``,
            ``"stopped"`` or ``"failed: <error>"``.
        consumed: Records whose batch is written (``stored + duplicates + dead_lettered``).
        stored: Sale documents inserted.
        duplicates: Sales already present (re-sent or re-read events).
        dead_lettered: Rejected records recorded in ``dead_letters``.
        batches: Batches written.
        lag: Partition → records in Kafka not yet written and committed by this consumer.
        last_commit: When offsets were last committed (UTC).
        mongo_down_since: Since when writes have been failing with a MongoDB error.
        last_error: The last error seen (write, hook, commit or fatal), if any.
        idle_s: Seconds since the consumer caught up (0 unless ``status == "idle"``).
    """

    status: str
    consumed: int
    stored: int
    duplicates: int
    dead_lettered: int
    batches: int
    lag: dict[int, int]
    last_commit: datetime | None
    mongo_down_since: datetime | None
    last_error: str | None
    idle_s: float = 0.0

    @property
    def total_lag(self) -> int:
        """Lag summed over partitions."""
        return sum(self.lag.values())


class Backoff:
    """Bounded exponential backoff with jitter: ``initial × 2ⁿ``, capped, times U(0.5, 1).

    Args:
        initial: First delay in seconds.
        cap: Largest delay in seconds.
        rng: Random source of the jitter.
    """

    def __init__(
        self, *, initial: float = 0.2, cap: float = 5.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"need 0 < initial <= cap, got initial={initial}, cap={cap}")
        self._initial = initial
        self._cap = cap
        self._rng = rng or random.Random()
        self._attempts = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt and advance the exponent."""
        delay = min(self._cap, self._initial * 2**self._attempts)
        self._attempts = min(self._attempts + 1, 32)
        return delay * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self._attempts = 0


def decode_records(
    topic: str,
    records: Mapping[TopicPartition, Sequence[ConsumerRecord]],
    *,
    now: datetime,
) -> Batch:
    """Validate the records of one poll into a `Batch`; never raises on bad input.

    A record is dead-lettered if its value fails `sales_stream.events.decode`, or, with
    reason `MISSING_KEY`, if its value is valid but it has no key.
    """
    events: list[SaleEvent] = []
    positions: list[tuple[int, int]] = []
    dead: list[DeadLetter] = []
    first_offsets: dict[int, int] = {}
    next_offsets: dict[int, int] = {}
    add_event, add_position = events.append, positions.append
    for tp, partition_records in records.items():
        if not partition_records:
            continue
        partition = tp.partition
        for record in partition_records:
            result = decode(record.value)
            if type(result) is SaleEvent and record.key is not None:
                add_event(result)
                add_position((partition, record.offset))
            elif type(result) is SaleEvent:
                dead.append(_missing_key(topic, partition, record, now))
            else:
                letter = dead_letter(
                    topic=topic,
                    partition=partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    invalid=result,
                    now=now,
                )
                dead.append(letter)
        first_offsets[partition] = partition_records[0].offset
        next_offsets[partition] = partition_records[-1].offset + 1
    return Batch(topic, events, positions, dead, first_offsets, next_offsets)


def _missing_key(topic: str, partition: int, record: ConsumerRecord, now: datetime) -> DeadLetter:
    value: bytes = record.value
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=record.offset,
        key=None,
        raw=bytes(value[:MAX_KEPT_BYTES]),
        raw_size=len(value),
        reason=MISSING_KEY,
        detail="message key is None: sales are keyed by their region",
        received_at=now,
    )


@dataclass(slots=True)
class _Pending:
    """A polled batch on its way to MongoDB (``result`` is set once it is written)."""

    batch: Batch
    result: WriteResult | None = None


@dataclass(slots=True)
class _Counters:
    phase: str = "created"
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    lag: dict[int, int] = field(default_factory=dict)
    last_commit: datetime | None = None
    failing_since: datetime | None = None
    failing_is_mongo: bool = False
    failing_error: str = ""
    last_error: str | None = None
    idle_since: float | None = None


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_MAX_CHARS else text[: _ERROR_MAX_CHARS - 1] + "…"


class MongoConsumer:
    """Consumes the sales topic into MongoDB within a consumer group.

    Args:
        bootstrap: Kafka bootstrap servers.
        topic: Topic to consume.
        mongo_uri: MongoDB connection string.
        db: Database name.
        group_id: Kafka consumer group.
        max_batch: Most records per poll (and per write).
        poll_timeout_ms: How long a poll waits for records.
        after_write: Hooks run with each batch after it is written and before it is
            committed; see the module docstring.
        create_indexes: Create the dashboard indexes (`ensure_indexes`) before the first
            write; turn off where indexes are managed elsewhere or not allowed.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        mongo_uri: str,
        *,
        db: str = "sales_db",
        group_id: str = DEFAULT_GROUP,
        max_batch: int = 5000,
        poll_timeout_ms: int = 200,
        after_write: Sequence[Hook] = (),
        create_indexes: bool = True,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if poll_timeout_ms < 0:
            raise ValueError(f"poll_timeout_ms must be >= 0, got {poll_timeout_ms}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.db_name = db
        self.max_batch = max_batch
        self.poll_timeout_ms = poll_timeout_ms
        self._mongo_uri = mongo_uri
        self._after_write = tuple(after_write)
        self.create_indexes = create_indexes
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._running = threading.Lock()

    @property
    def stats(self) -> ConsumerStats:
        """A consistent snapshot of the counters and status (safe from any thread)."""
        with self._lock:
            c = self._counters
            status = c.phase
            if c.failing_since is not None and c.phase in ("running", "idle"):
                waited = int((datetime.now(UTC) - c.failing_since).total_seconds())
                status = (
                    f"waiting for MongoDB since {waited} s"
                    if c.failing_is_mongo
                    else f"retrying the batch since {waited} s ({c.failing_error})"
                )
            idle_s = 0.0
            if c.phase == "idle" and c.idle_since is not None:
                idle_s = time.monotonic() - c.idle_since
            return ConsumerStats(
                status=status,
                consumed=c.consumed,
                stored=c.stored,
                duplicates=c.duplicates,
                dead_lettered=c.dead_lettered,
                batches=c.batches,
                lag=dict(c.lag),
                last_commit=c.last_commit,
                mongo_down_since=c.failing_since if c.failing_is_mongo else None,
                last_error=c.last_error,
                idle_s=idle_s,
            )

    def run(
        self,
        *,
        until_idle: float | None = None,
        max_events: int | None = None,
        stop: threading.Event | None = None,
    ) -> ConsumerStats:
        """Consume in the calling thread until stopped, idle or ``max_events`` are written.

        Args:
            until_idle: Return once caught up with no new record for this many seconds
                (counted from the first partition assignment).
            max_events: Return once this many records are written and committed (a few more
                if a rebalance hands over records while the loop waits on a write).
            stop: Set it (from another thread or a signal handler) for a graceful stop.

        Returns:
            The final stats.

        Raises:
            ValueError: If an argument is out of range.
            RuntimeError: If this instance is already running.
            KafkaError: If Kafka cannot be reached when starting.
        """
        if until_idle is not None and until_idle < 0:
            raise ValueError(f"until_idle must be >= 0, got {until_idle}")
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        if not self._running.acquire(blocking=False):
            raise RuntimeError("this consumer is already running")
        try:
            self._set_phase("joining group")
            session = _Session(self)
            try:
                session.loop(
                    until_idle=until_idle, max_events=max_events, stop=stop or threading.Event()
                )
                self._set_phase("stopping")
                session.drain(DRAIN_TIMEOUT_S)
            finally:
                session.close()
        except BaseException as exc:
            with self._lock:
                self._counters.phase = f"failed: {_describe(exc)}"
                self._counters.last_error = _describe(exc)
            raise
        finally:
            self._running.release()
        self._set_phase("stopped")
        return self.stats

    # Updates from the loop thread.

    def _set_phase(self, phase: str) -> None:
        with self._lock:
            self._counters.phase = phase
            if phase != "idle":
                self._counters.idle_since = None

    def _set_idle(self) -> None:
        with self._lock:
            c = self._counters
            if c.phase != "idle":
                c.phase = "idle"
                c.idle_since = time.monotonic()

    def _record_written(self, result: WriteResult, batch: Batch, *, committed: bool) -> None:
        with self._lock:
            c = self._counters
            c.consumed += batch.size
            c.stored += result.stored
            c.duplicates += result.duplicates
            c.dead_lettered += result.dead_lettered
            c.batches += 1
            if committed:
                c.last_commit = datetime.now(UTC)
            c.failing_since = None
            c.failing_is_mongo = False

    def _record_failure(self, exc: BaseException) -> None:
        with self._lock:
            c = self._counters
            if c.failing_since is None:
                c.failing_since = datetime.now(UTC)
            c.failing_is_mongo = isinstance(exc, PyMongoError)
            c.failing_error = type(exc).__name__
            c.last_error = _describe(exc)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._counters.last_error = _describe(exc)

    def _set_lag(self, lag: dict[int, int]) -> None:
        with self._lock:
            self._counters.lag = lag


class _Session:
    """One run: the Kafka consumer, the MongoDB client, the writer thread and the backlog."""

    def __init__(self, owner: MongoConsumer) -> None:
        self._owner = owner
        self._topic = owner.topic
        self._consumer = KafkaConsumer(
            owner.topic,
            bootstrap_servers=owner.bootstrap,
            client_id=f"{owner.group_id}-mongo",
            **consumer_config(
                group_id=owner.group_id,
                max_poll_records=owner.max_batch,
                max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            ),
        )
        self._client = mongo_client(owner._mongo_uri, socketTimeoutMS=SOCKET_TIMEOUT_MS)
        self._db = self._client[owner.db_name]
        self._sink = MongoSink(self._db)
        self._indexed = not owner.create_indexes
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mongo-writer")
        self._backlog: deque[_Pending] = deque()
        self._inflight: Future[WriteResult] | None = None
        self._failed = False
        self._retry_at = 0.0
        self._backoff = Backoff()
        self._fetched = 0
        self._paused = False
        self._last_poll = time.monotonic()
        self._idle_since: float | None = None

    def loop(
        self, *, until_idle: float | None, max_events: int | None, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            self._harvest()
            if max_events is not None and self._fetched >= max_events and not self._backlog:
                return
            self._submit()
            room = len(self._backlog) < PIPELINE_DEPTH
            if max_events is not None:
                room = room and self._fetched < max_events
            if not room:
                self._wait(stop)
                continue
            limit = self._owner.max_batch
            if max_events is not None:
                limit = min(limit, max_events - self._fetched)
            self._fetch(limit)
            if (
                until_idle is not None
                and self._idle_since is not None
                and time.monotonic() - self._idle_since >= until_idle
            ):
                return

    def drain(self, timeout: float) -> None:
        """Write and commit what was already polled, unless MongoDB is failing."""
        deadline = time.monotonic() + timeout
        while self._backlog:
            if self._inflight is None:
                if self._failed:
                    return
                self._inflight = self._writer.submit(self._persist, self._backlog[0])
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not wait([self._inflight], timeout=remaining).done:
                return
            self._harvest()

    def close(self) -> None:
        self._writer.shutdown(wait=False, cancel_futures=True)
        try:
            self._consumer.close(autocommit=False, timeout_ms=5000)
        except KafkaError as exc:
            self._owner._record_error(exc)
        if self._inflight is None or self._inflight.done():
            self._client.close()

    # The pipeline.

    def _persist(self, pending: _Pending) -> WriteResult:
        """Writer thread: write the batch (once), then run the hooks."""
        if not self._indexed:
            ensure_indexes(self._db)
            self._indexed = True
        result = pending.result
        if result is None:
            result = pending.result = self._sink.write(pending.batch.events, pending.batch.dead)
        for hook in self._owner._after_write:
            hook(pending.batch)
        return result

    def _submit(self) -> None:
        if self._inflight is None and self._backlog and time.monotonic() >= self._retry_at:
            self._inflight = self._writer.submit(self._persist, self._backlog[0])

    def _harvest(self) -> None:
        future = self._inflight
        if future is None or not future.done():
            return
        self._inflight = None
        exc = future.exception()
        if exc is not None:
            self._failed = True
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            self._owner._record_failure(exc)
            return
        self._failed = False
        self._backoff.reset()
        batch = self._backlog.popleft().batch
        committed = self._commit(batch)
        self._owner._record_written(future.result(), batch, committed=committed)
        self._refresh_lag()

    def _commit(self, batch: Batch) -> bool:
        consumer = self._consumer
        assigned = consumer.assignment()
        offsets = {}
        for partition, offset in batch.next_offsets.items():
            tp = TopicPartition(batch.topic, partition)
            if tp in assigned:
                offsets[tp] = OffsetAndMetadata(offset, "", -1)
        if not offsets:
            return False
        try:
            consumer.commit(offsets)
        except KafkaError as exc:  # e.g. a rebalance: the batch is written, re-reading is safe
            self._owner._record_error(exc)
            return False
        return True

    def _fetch(self, limit: int) -> None:
        consumer = self._consumer
        if self._paused:
            consumer.resume(*consumer.paused())
            self._paused = False
        records = consumer.poll(timeout_ms=self._owner.poll_timeout_ms, max_records=limit)
        self._last_poll = time.monotonic()
        if records:
            self._add(records)
            return
        if not consumer.assignment():
            return  # still joining the group
        if self._backlog:
            self._owner._set_phase("running")
        else:
            if self._idle_since is None:
                self._idle_since = time.monotonic()
            self._owner._set_idle()
        self._refresh_lag()

    def _wait(self, stop: threading.Event) -> None:
        """Wait for the write in flight or the next retry, keeping the group membership."""
        consumer = self._consumer
        if not self._paused:
            consumer.pause(*consumer.assignment())
            self._paused = True
        if self._inflight is not None:
            wait([self._inflight], timeout=_WAIT_SLICE_S)
        else:
            stop.wait(min(_WAIT_SLICE_S, max(0.0, self._retry_at - time.monotonic())))
        if time.monotonic() - self._last_poll >= MEMBERSHIP_POLL_S:
            consumer.pause(*consumer.assignment())  # partitions newly assigned by a rebalance
            records = consumer.poll(timeout_ms=0)
            self._last_poll = time.monotonic()
            if records:
                self._add(records)

    def _add(self, records: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        batch = decode_records(self._topic, records, now=datetime.now(UTC))
        self._backlog.append(_Pending(batch))
        self._fetched += batch.size
        self._idle_since = None
        self._owner._set_phase("running")

    def _refresh_lag(self) -> None:
        consumer = self._consumer
        first: dict[int, int] = {}
        for pending in self._backlog:
            for partition, offset in pending.batch.first_offsets.items():
                first.setdefault(partition, offset)
        lag = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            start = first.get(tp.partition)
            if start is None:
                start = consumer.position(tp, timeout_ms=0)
            if highwater is not None and start is not None:
                lag[tp.partition] = max(0, highwater - start)
        self._owner._set_lag(lag)


class ConsumerThread:
    """Runs a `MongoConsumer` in a background thread (for notebooks); restartable.

    Takes the same arguments as `MongoConsumer`.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        mongo_uri: str,
        *,
        db: str = "sales_db",
        group_id: str = DEFAULT_GROUP,
        max_batch: int = 5000,
        poll_timeout_ms: int = 200,
        after_write: Sequence[Hook] = (),
        create_indexes: bool = True,
    ) -> None:
        self.consumer = MongoConsumer(
            bootstrap,
            topic,
            mongo_uri,
            db=db,
            group_id=group_id,
            max_batch=max_batch,
            poll_timeout_ms=poll_timeout_ms,
            after_write=after_write,
            create_indexes=create_indexes,
        )
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def stats(self) -> ConsumerStats:
        """Live stats of the consumer."""
        return self.consumer.stats

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start consuming in the background.

        Raises:
            RuntimeError: If it is already running.
        """
        if self.running:
            raise RuntimeError("the consumer thread is already running")
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"consumer-{self.consumer.group_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> ConsumerStats:
        """Stop gracefully: write and commit what was polled, leave the group.

        Args:
            timeout: Seconds to wait for the thread to finish.

        Returns:
            The stats after the stop (status ``"stopping"`` if the timeout expired first).
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.stats

    def wait_idle(self, *, idle_s: float = 2.0, timeout: float = 60.0) -> ConsumerStats:
        """Block until the consumer has been caught up for ``idle_s`` seconds.

        Raises:
            TimeoutError: If that does not happen within ``timeout`` seconds.
            RuntimeError: If the consumer is not running.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats
            if stats.status == "idle" and stats.idle_s >= idle_s:
                return stats
            if not self.running:
                raise RuntimeError(f"the consumer is not running (status: {stats.status})")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"consumer not idle after {timeout:.0f} s "
                    f"(status: {stats.status}, lag: {stats.total_lag})"
                )
            time.sleep(0.1)

    def _run(self) -> None:
        try:
            self.consumer.run(stop=self._stop)
        except Exception:  # recorded in stats (status "failed: ..." and last_error)
            return
