"""A history of sales sent to Kafka as fast as possible (`backfill`), once per topic.

Each record's Kafka timestamp is its sale's time. Notebook 02 asks `topic_has_records` first,
so re-running it never publishes the history twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kafka.errors import KafkaError

from sales_stream.errors import InfraError
from sales_stream.events import SaleEvent, encode
from sales_stream.produce.delivery import LIVE_CONFIG, DeliveryTally, Sender, describe_error
from sales_stream.produce.generator import DEFAULT_EVENTS_PER_DAY, SaleGenerator
from sales_stream.produce.stats import ProducerStats

#: Client settings of `backfill`: throughput first (see bench/producer_rate.py).
BACKFILL_CONFIG: dict[str, Any] = {
    **LIVE_CONFIG,
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
}
#: Records sent but not settled above which `backfill` waits, checked every
#: `BACKFILL_CHECK_EVERY` records.
BACKFILL_MAX_IN_FLIGHT = 50_000
BACKFILL_CHECK_EVERY = 1_000
_SETTLE_POLL_S = 0.001


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

    Delivery failures are counted, not raised; a record that cannot even be queued (no topic
    metadata) aborts the backfill.

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
    sender = Sender(config, topic)
    tally = DeliveryTally(bootstrap)
    start = time.monotonic()
    try:
        sent = _send_all(sender, events, tally)
        sender.flush()
    except KafkaError as exc:
        raise InfraError(describe_error(bootstrap, exc)) from exc
    finally:
        with contextlib.suppress(KafkaError):  # records left unsettled by an interruption
            sender.close()
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


def _send_all(sender: Sender, events: Iterable[SaleEvent], tally: DeliveryTally) -> int:
    sent = 0
    for event in events:
        future = sender.send(event, encode(event), timestamp_ms=round(event.ts.timestamp() * 1000))
        sent += 1
        tally.track(future)
        if sent % BACKFILL_CHECK_EVERY == 0:
            while sent - tally.settled() > BACKFILL_MAX_IN_FLIGHT:
                time.sleep(_SETTLE_POLL_S)
    return sent


def topic_has_records(bootstrap: str, topic: str, *, timeout_s: float = 2.0) -> bool:
    """Whether ``topic`` already holds a record (read from the start; end offsets may lag).

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
