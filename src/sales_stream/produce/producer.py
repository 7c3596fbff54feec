"""Kafka producers of sale events: a controllable live `ProducerThread` and a fast `backfill`.

`ProducerThread` sends generated sales at a target rate from a daemon worker thread that a
notebook starts, pauses, resumes and stops while the kernel stays free; its schedule is
`send_schedule`, its counters and measured rate `send_meter`.

Kafka key = region (per-region order); value = `sales_stream.events.encode` of the event or,
at ``bad_ratio``, a malformed payload from `sales_stream.produce.badevents.make_bad_payload`.

Deliveries are counted by the producer's callbacks, so once records settle
``acked + failed == sent``. The client timeouts are short (`LIVE_CONFIG`): a broker that
goes away shows up within seconds as failures and a ``last_error`` while the worker keeps
running; a broker unreachable at start puts the thread in state ``"failed"`` with the
reason. The live worker never has more than `MAX_IN_FLIGHT` unsettled records.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kafka import KafkaProducer
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NetworkExceptionError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from kafka.partitioner.default import murmur2

from sales_stream.errors import InfraError
from sales_stream.events import SaleEvent, encode
from sales_stream.identity import kafka_key
from sales_stream.produce.badevents import make_bad_payload
from sales_stream.produce.generator import DEFAULT_EVENTS_PER_DAY, SaleGenerator, SimulatedClock
from sales_stream.produce.send_meter import SendMeter
from sales_stream.produce.send_schedule import MAX_BURST, SendSchedule

log = logging.getLogger(__name__)

State = Literal["idle", "running", "paused", "stopped", "failed"]

#: Highest accepted target rate (events/s); far above what one Python thread can send.
MAX_RATE = 1_000_000.0
#: Client settings of the live producer: failures visible within seconds, and batches of
#: up to 50 ms (``linger_ms``): the embedded broker's CPU per produce request grows with the
#: topic's length while consumers wait at its tail (probe, 4 consumers, ~1,000 records/s: 63 %
#: then 123 % of a core from 108k to 324k records with batches of 5 ms, 6-8 % with 50 ms).
#: Idempotence is off: kafka-python 3.0 stops expiring batches of an idempotent producer
#: that lost its broker (it waits for a new producer id first), so they would never fail;
#: one request in flight per connection keeps the per-region order through retries, and the
#: Mongo sink is idempotent on ``event_id`` anyway.
LIVE_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": False,
    "max_in_flight_requests_per_connection": 1,
    "linger_ms": 50,
    "batch_size": 64 * 1024,
    "max_block_ms": 2_000,
    "request_timeout_ms": 3_000,
    "delivery_timeout_ms": 6_000,
    "bootstrap_timeout_ms": 5_000,
    "reconnect_backoff_max_ms": 1_000,
}
#: Client settings of `backfill`: throughput first (see bench/producer_rate.py).
BACKFILL_CONFIG: dict[str, Any] = {
    **LIVE_CONFIG,
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
}
#: Records sent but not settled above which the live worker waits (back-pressure).
MAX_IN_FLIGHT = 5_000
#: Same bound for `backfill`, checked every `BACKFILL_CHECK_EVERY` records.
BACKFILL_MAX_IN_FLIGHT = 50_000
BACKFILL_CHECK_EVERY = 1_000
MIN_SLEEP_S = 0.001
PAUSED_POLL_S = 0.25
PAUSE_ACK_TIMEOUT_S = 1.0
CLOSE_GRACE_S = 5.0

_UNREACHABLE = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NetworkExceptionError,
    NodeNotReadyError,
    RequestTimedOutError,
)


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """A snapshot of a producer's counters.

    Attributes:
        state: ``"idle"``, ``"running"``, ``"paused"``, ``"stopped"`` or ``"failed"``.
        sent: Messages handed to Kafka (valid and malformed).
        acked: Messages acknowledged by the broker.
        failed: Messages that could not be delivered.
        valid_sent: Sent messages carrying a valid event.
        bad_sent: Sent messages deliberately malformed.
        target_rate: Requested events per second (``inf`` for a backfill).
        current_rate: Send rate measured over the last `RATE_WINDOW_S` seconds (0 unless
            running); for a backfill, its average rate.
        last_error: The latest delivery or connection error, if any.
        started_at: UTC time of the first start, ``None`` before.
        elapsed_s: Seconds spent sending, pauses excluded.
    """

    state: State
    sent: int
    acked: int
    failed: int
    valid_sent: int
    bad_sent: int
    target_rate: float
    current_rate: float
    last_error: str | None
    started_at: datetime | None
    elapsed_s: float

    @property
    def in_flight(self) -> int:
        """Messages sent but neither acknowledged nor failed yet."""
        return self.sent - self.acked - self.failed

    @property
    def average_rate(self) -> float:
        """Messages sent per second of sending time."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def describe_error(bootstrap: str, exc: BaseException) -> str:
    """Return a one-line message for a Kafka error, naming the bootstrap address."""
    text = str(exc) or type(exc).__name__
    if not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    if isinstance(exc, _UNREACHABLE):
        return f"Kafka unreachable at {bootstrap}: {text}"
    return f"Kafka error at {bootstrap}: {text}"


class _DeliveryTally:
    """Thread-safe acked/failed counters fed by the producer's delivery callbacks."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._lock = threading.Lock()
        self.acked = 0
        self.failed = 0
        self.last_error: str | None = None

    def ack(self, _metadata: object) -> None:
        with self._lock:
            self.acked += 1

    def fail(self, exc: BaseException) -> None:
        message = describe_error(self._bootstrap, exc)
        with self._lock:
            self.failed += 1
            self.last_error = message

    def settled(self) -> int:
        with self._lock:
            return self.acked + self.failed

    def snapshot(self) -> tuple[int, int, str | None]:
        with self._lock:
            return self.acked, self.failed, self.last_error


class _KeyPartitioner:
    """Kafka's default partition of a keyed record (murmur2 of the key), memoised per key.

    kafka-python hashes the key in pure Python on every send; with 13 region keys, hashing
    once per key makes the send loop about 1.5 times faster. Kafka numbers the partitions
    of a topic 0..n-1, so the result is the default partitioner's for any client.
    """

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes) -> int:
        """Return the partition of ``key``; raises `KafkaTimeoutError` without metadata."""
        count = len(self._producer.partitions_for(self.topic))
        partition = self._cache.get((key, count))
        if partition is None:
            partition = self._cache[key, count] = (murmur2(key) & 0x7FFFFFFF) % count
        return partition


def _check_rate(rate: float) -> float:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and 0 < rate <= MAX_RATE):
        raise ValueError(f"rate must be a number in (0, {MAX_RATE:g}] events/s, got {rate!r}")
    return float(rate)


def _check_ratio(ratio: float) -> float:
    if not (isinstance(ratio, int | float) and 0.0 <= ratio <= 1.0):
        raise ValueError(f"bad_ratio must be in [0, 1], got {ratio!r}")
    return float(ratio)


class ProducerThread:
    """Produces generated sales to a Kafka topic at a target rate, in the background.

    Args:
        bootstrap: Kafka bootstrap address, e.g. ``"127.0.0.1:9092"``.
        topic: Topic to produce to (must exist, see `sales_stream.clients.ensure_topic`).
        rate: Target events per second, in (0, `MAX_RATE`]; settable while running.
        bad_ratio: Fraction of deliberately malformed messages, in [0, 1]; settable.
        seed: Seeds the default generator and the malformed-message draws.
        max_events: Stop by itself after this many messages; ``None`` to run until `stop`.
        generator: Event source; defaults to ``SaleGenerator(seed)`` (``ts`` = now, UTC). A
            `SimulatedClock` of the generator stops while the producer is paused or stopped.
        producer_config: kafka-python options overriding `LIVE_CONFIG`.

    Raises:
        ValueError: If ``rate``, ``bad_ratio`` or ``max_events`` is out of range.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        rate: float = 50.0,
        bad_ratio: float = 0.0,
        seed: int | None = None,
        max_events: int | None = None,
        generator: SaleGenerator | None = None,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1 or None, got {max_events}")
        self._rate = _check_rate(rate)
        self._bad_ratio = _check_ratio(bad_ratio)
        self._bootstrap = bootstrap
        self._topic = topic
        self._max_events = max_events
        self._generator = generator if generator is not None else SaleGenerator(seed)
        self._bad_rng = random.Random(None if seed is None else f"bad-events:{seed}")
        self._config = {**LIVE_CONFIG, **(producer_config or {}), "bootstrap_servers": bootstrap}
        self._tally = _DeliveryTally(bootstrap)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._paused_ack = threading.Event()
        self._done = threading.Event()
        self._worker: threading.Thread | None = None
        self._state: State = "idle"
        self._stop_requested = False
        self._pause_requested = False
        self._fatal_error: str | None = None
        self._meter = SendMeter()

    @property
    def topic(self) -> str:
        """The topic produced to."""
        return self._topic

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock stamping the live sales: the wall clock or a `SimulatedClock`."""
        return self._generator.clock

    def _hold_clock(self, *, held: bool) -> None:
        """Stop a simulated clock while nothing is sent, restart it with the sending."""
        clock = self._generator.clock
        if isinstance(clock, SimulatedClock):
            if held:
                clock.pause()
            else:
                clock.resume()

    @property
    def rate(self) -> float:
        """Target events per second; setting it takes effect immediately."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._rate = _check_rate(value)
        self._wake.set()

    @property
    def bad_ratio(self) -> float:
        """Fraction of malformed messages; setting it takes effect immediately."""
        return self._bad_ratio

    @bad_ratio.setter
    def bad_ratio(self, value: float) -> None:
        self._bad_ratio = _check_ratio(value)

    def start(self) -> None:
        """Start sending (again after `stop` or a failure; counters keep adding up).

        Starting a running producer does nothing; starting a paused one resumes it.

        Raises:
            RuntimeError: If the previous run is still settling its last deliveries.
        """
        with self._lock:
            state = self._state
            if state == "running":
                return
            if state != "paused":
                if self._worker is not None and self._worker.is_alive():
                    raise RuntimeError(
                        "the previous run is still settling its last deliveries; "
                        "start again in a few seconds"
                    )
                self._begin_run()
        if state == "paused":
            self.resume()

    def _begin_run(self) -> None:
        now = time.monotonic()
        self._state = "running"
        self._stop_requested = self._pause_requested = False
        self._fatal_error = None
        self._done.clear()
        self._paused_ack.clear()
        self._meter.begin(now)
        self._hold_clock(held=False)
        self._worker = threading.Thread(
            target=self._run, name=f"producer-{self._topic}", daemon=True
        )
        self._worker.start()

    def pause(self) -> None:
        """Stop sending until `resume`; returns once the worker has stopped sending."""
        with self._lock:
            if self._state != "running":
                return
            self._state = "paused"
            self._pause_requested = True
            self._paused_ack.clear()
            self._meter.end(time.monotonic())
            self._hold_clock(held=True)
        self._wake.set()
        self._paused_ack.wait(PAUSE_ACK_TIMEOUT_S)

    def resume(self) -> None:
        """Resume sending after `pause`, on a fresh schedule at the current rate."""
        with self._lock:
            if self._state != "paused":
                return
            self._state = "running"
            self._pause_requested = False
            self._meter.resume(time.monotonic())
            self._hold_clock(held=False)
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> ProducerStats:
        """Stop sending, flush and join the worker; return within ``timeout`` seconds.

        Records the broker has not settled when ``timeout`` expires (broker down) keep
        resolving in the background: they are counted as acked or failed at the latest
        after the producer's ``delivery_timeout_ms``.

        Returns:
            The stats after the stop.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state in ("running", "paused"):
                self._meter.end(time.monotonic())
                self._state = "stopped"
            self._stop_requested = True
            self._hold_clock(held=True)
            worker = self._worker
        self._wake.set()
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._done.set()
        return self.stats

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is over: ``max_events`` sent and settled, `stop`, or failure.

        Returns:
            ``True`` if the run is over, ``False`` if ``timeout`` expired first.
        """
        return self._done.wait(timeout)

    def is_alive(self) -> bool:
        """Whether the worker thread is running (it outlives `stop` only while settling)."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    @property
    def stats(self) -> ProducerStats:
        """A consistent snapshot of the counters."""
        acked, failed, delivery_error = self._tally.snapshot()  # read before ``sent``
        now = time.monotonic()
        with self._lock:
            meter = self._meter
            return ProducerStats(
                state=self._state,
                sent=meter.sent,
                acked=acked,
                failed=failed,
                valid_sent=meter.valid_sent,
                bad_sent=meter.bad_sent,
                target_rate=self._rate,
                current_rate=meter.rate(now) if self._state == "running" else 0.0,
                last_error=self._fatal_error or delivery_error,
                started_at=meter.started_at,
                elapsed_s=meter.active(now),
            )

    def recent(self, n: int = 10) -> list[SaleEvent]:
        """Return up to ``n`` (at most `RECENT_CAPACITY`) latest valid events, newest first.

        Raises:
            ValueError: If ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._lock:
            return self._meter.recent(n)

    # --- worker side -------------------------------------------------------------------

    def _sample(self, now: float) -> None:
        with self._lock:
            self._meter.sample(now)

    def _fail(self, message: str) -> None:
        log.error("producer of topic %r failed: %s", self._topic, message)
        with self._lock:
            self._meter.end(time.monotonic())
            self._state = "failed"
            self._fatal_error = message
        self._paused_ack.set()
        self._done.set()

    def _run(self) -> None:
        try:
            producer = KafkaProducer(**self._config)
        except KafkaError as exc:
            self._fail(describe_error(self._bootstrap, exc))
            return
        except Exception as exc:
            self._fail(f"cannot create the Kafka producer: {type(exc).__name__}: {exc}")
            return
        try:
            self._send_loop(producer, _KeyPartitioner(producer, self._topic))
        except Exception as exc:
            log.exception("producer of topic %r crashed", self._topic)
            self._fail(f"producer crashed: {type(exc).__name__}: {exc}")
        finally:
            self._close(producer)

    def _close(self, producer: KafkaProducer) -> None:
        # Every record settles within delivery_timeout_ms; the bound guards against a client
        # bug leaving the worker (and any restart) stuck behind an endless flush.
        timeout = self._config["delivery_timeout_ms"] / 1000 + CLOSE_GRACE_S
        try:
            producer.flush(timeout=timeout)
            producer.close(timeout=1.0)
        except KafkaTimeoutError:
            acked, failed, _ = self._tally.snapshot()
            message = (
                f"{self._meter.sent - acked - failed} record(s) still unsettled {timeout:.0f} s "
                "after the last send; the Kafka client was abandoned"
            )
            log.error("producer of topic %r: %s", self._topic, message)
            with self._lock:
                self._fatal_error = message
        except Exception:
            log.exception("closing the producer of topic %r failed", self._topic)
        self._done.set()

    def _send_loop(self, producer: KafkaProducer, partition_of: _KeyPartitioner) -> None:
        schedule = SendSchedule()
        with self._lock:  # sending time starts now, not before the connection
            self._meter.restart(time.monotonic())
        while True:
            self._wake.clear()
            with self._lock:
                if self._stop_requested:
                    return
                paused, target = self._pause_requested, self._rate
                remaining = MAX_BURST
                if self._max_events is not None:
                    remaining = min(remaining, self._max_events - self._meter.sent)
                    if remaining <= 0:
                        self._meter.end(time.monotonic())
                        self._state = "stopped"
                        return
            now = time.monotonic()
            if paused:
                self._paused_ack.set()
                self._sample(now)
                self._wake.wait(PAUSED_POLL_S)
                schedule.reset()
                continue
            due = schedule.due(now, target)
            if due <= 0:
                self._wake.wait(max(schedule.wait(now), MIN_SLEEP_S))
                continue
            if self._meter.sent - self._tally.settled() >= MAX_IN_FLIGHT:
                self._wake.wait(MIN_SLEEP_S)  # the client lags behind: let it catch up
                continue
            burst = min(due, remaining)
            self._send_burst(producer, partition_of, burst)
            schedule.sent(burst)
            self._sample(time.monotonic())

    def _send_burst(
        self, producer: KafkaProducer, partition_of: _KeyPartitioner, count: int
    ) -> None:
        generator, rng, topic, tally = self._generator, self._bad_rng, self._topic, self._tally
        for _ in range(count):
            event = generator.next_event()
            bad = rng.random() < self._bad_ratio
            value = make_bad_payload(rng, base=event)[0] if bad else encode(event)
            key = kafka_key(event)
            try:
                future = producer.send(topic, key=key, value=value, partition=partition_of(key))
            except KafkaError as exc:
                self._count_sent(event, bad)
                tally.fail(exc)
                continue
            self._count_sent(event, bad)  # before the callbacks: acked + failed <= sent
            future.add_callback(tally.ack)
            future.add_errback(tally.fail)

    def _count_sent(self, event: SaleEvent, bad: bool) -> None:
        with self._lock:
            self._meter.count(event, bad=bad)


def backfill(
    bootstrap: str,
    topic: str,
    *,
    days: int,
    events_per_day: int = DEFAULT_EVENTS_PER_DAY,
    seed: int | None = None,
    end: datetime | None = None,
    producer_config: dict[str, Any] | None = None,
) -> ProducerStats:
    """Send ``days`` of valid history ending at ``end`` as fast as possible, then flush.

    Each record's Kafka timestamp is the sale time. Delivery failures are counted, not
    raised; a record that cannot even be queued (no topic metadata) aborts the backfill.

    Args:
        bootstrap: Kafka bootstrap address.
        topic: Topic to produce to (must exist).
        days: Length of the history in days, ``>= 1``.
        events_per_day: Average number of events per day, ``>= 1``.
        seed: Seed of the history's content (ids are always new). It is hashed first
            (`backfill_seed`) so the history does not repeat ``ProducerThread(seed=seed)``.
        end: Aware end of the history (exclusive); defaults to now.
        producer_config: kafka-python options overriding `BACKFILL_CONFIG`.

    Returns:
        The final stats (state ``"stopped"``).

    Raises:
        ValueError: If ``days`` or ``events_per_day`` is < 1 or ``end`` is naive.
        InfraError: If Kafka cannot be reached or the topic's metadata is unavailable.
    """
    generator = SaleGenerator(backfill_seed(seed))
    events = generator.backfill(days, end=end, events_per_day=events_per_day)
    config = {**BACKFILL_CONFIG, **(producer_config or {}), "bootstrap_servers": bootstrap}
    started_at = datetime.now(UTC)
    try:
        producer = KafkaProducer(**config)
    except KafkaError as exc:
        raise InfraError(describe_error(bootstrap, exc)) from exc
    tally = _DeliveryTally(bootstrap)
    start = time.monotonic()
    try:
        sent = _send_all(producer, _KeyPartitioner(producer, topic), events, tally)
        producer.flush(timeout=config["delivery_timeout_ms"] / 1000 + CLOSE_GRACE_S)
    except KafkaError as exc:
        raise InfraError(describe_error(bootstrap, exc)) from exc
    finally:
        with contextlib.suppress(KafkaError):  # records left unsettled by an interruption
            producer.close(timeout=1.0)
    elapsed = time.monotonic() - start
    acked, failed, last_error = tally.snapshot()
    return ProducerStats(
        state="stopped",
        sent=sent,
        acked=acked,
        failed=failed,
        valid_sent=sent,
        bad_sent=0,
        target_rate=math.inf,
        current_rate=sent / elapsed if elapsed > 0 else 0.0,
        last_error=last_error,
        started_at=started_at,
        elapsed_s=elapsed,
    )


def backfill_seed(seed: int | None) -> int | None:
    """Return the generator seed `backfill` uses for ``seed`` (``None`` stays random).

    Two generators with one seed draw from the same random stream, so a history and a live
    run seeded alike would repeat one sequence of products and places (their event ids
    differ anyway: ids are never seeded).
    """
    if seed is None:
        return None
    digest = hashlib.sha256(f"sales-stream-backfill:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _send_all(
    producer: KafkaProducer,
    partition_of: _KeyPartitioner,
    events: Iterable[SaleEvent],
    tally: _DeliveryTally,
) -> int:
    topic = partition_of.topic
    sent = 0
    for event in events:
        key = kafka_key(event)
        future = producer.send(
            topic,
            key=key,
            value=encode(event),
            partition=partition_of(key),
            timestamp_ms=round(event.ts.timestamp() * 1000),
        )
        sent += 1
        future.add_callback(tally.ack)
        future.add_errback(tally.fail)
        if sent % BACKFILL_CHECK_EVERY == 0:
            while sent - tally.settled() > BACKFILL_MAX_IN_FLIGHT:
                time.sleep(MIN_SLEEP_S)
    return sent


def topic_has_records(bootstrap: str, topic: str, *, timeout_s: float = 2.0) -> bool:
    """Whether ``topic`` already holds a record (read from the start; end offsets may lag).

    Notebook 02 asks this before a backfill, so re-running it never publishes the history twice.

    Raises:
        InfraError: If Kafka cannot be reached.
    """
    from kafka import KafkaConsumer, TopicPartition

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    except KafkaError as exc:
        raise InfraError(describe_error(bootstrap, exc)) from exc
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return False
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if consumer.poll(timeout_ms=250, max_records=1):
                return True
        return False
    finally:
        consumer.close()
