"""Sale records to a Kafka topic: the client that sends them, and what the broker settled.

`Sender` keys each record by its sale's region (`sales_stream.identity.kafka_key`: per-region
order), sends it to the partition Kafka's default partitioner gives that key, and flushes
within a bound; `DeliveryTally` counts what the records' futures report, so once they settle
``acked + failed == sent``; `describe_error` says a Kafka error in one line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
from sales_stream.identity import kafka_key

if TYPE_CHECKING:
    from kafka.producer.future import FutureRecordMetadata

    from sales_stream.events import SaleEvent

#: Client settings of the live producer: failures visible within seconds, and batches of
#: up to 250 ms (``linger_ms``). Each batch is one object in the durable broker's store, and
#: every fetch that is not at the tail lists all of its partition's objects (Tansu's S3
#: engine, ``dynostore.rs`` ``fetch``), so a fetch costs more as objects pile up: at 1,000
#: sales/s on 3 partitions, batches of 50 ms make up to 60 objects/s (the hour's soak fell
#: behind after 24 minutes, ``docs/bench/soak.txt``), batches of 250 ms up to 12.
#: Idempotence is off: kafka-python 3.0 stops expiring batches of an idempotent producer
#: that lost its broker (it waits for a new producer id first), so they would never fail;
#: one request in flight per connection keeps the per-region order through retries, and the
#: Mongo sink is idempotent on ``event_id`` anyway.
LIVE_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": False,
    "max_in_flight_requests_per_connection": 1,
    "linger_ms": 250,
    "batch_size": 256 * 1024,
    "max_block_ms": 2_000,
    "request_timeout_ms": 3_000,
    "delivery_timeout_ms": 6_000,
    "bootstrap_timeout_ms": 5_000,
    "reconnect_backoff_max_ms": 1_000,
}
#: Seconds a flush waits beyond ``delivery_timeout_ms``, within which every record settles.
CLOSE_GRACE_S = 5.0

_UNREACHABLE = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NetworkExceptionError,
    NodeNotReadyError,
    RequestTimedOutError,
)


def describe_error(bootstrap: str, exc: BaseException) -> str:
    """Return a one-line message for a Kafka error, naming the bootstrap address."""
    text = str(exc) or type(exc).__name__
    if not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    if isinstance(exc, _UNREACHABLE):
        return f"Kafka unreachable at {bootstrap}: {text}"
    return f"Kafka error at {bootstrap}: {text}"


class DeliveryTally:
    """Thread-safe counts of the records the broker acknowledged or failed.

    Args:
        bootstrap: The Kafka address, named in `last_error`.
    """

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._lock = threading.Lock()
        self.acked = 0
        self.failed = 0
        self.last_error: str | None = None

    def track(self, future: FutureRecordMetadata) -> None:
        """Count the outcome of a sent record when the broker settles it."""
        future.add_callback(self.ack)
        future.add_errback(self.fail)

    def ack(self, _metadata: object) -> None:
        """One record acknowledged."""
        with self._lock:
            self.acked += 1

    def fail(self, exc: BaseException) -> None:
        """One record failed; its reason becomes `last_error`."""
        message = describe_error(self._bootstrap, exc)
        with self._lock:
            self.failed += 1
            self.last_error = message

    def settled(self) -> int:
        """Records acknowledged or failed."""
        with self._lock:
            return self.acked + self.failed

    def snapshot(self) -> tuple[int, int, str | None]:
        """``(acked, failed, last_error)``, read together."""
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
        self._topic = topic
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes) -> int:
        """Return the partition of ``key``; raises `KafkaTimeoutError` without metadata."""
        count = len(self._producer.partitions_for(self._topic))
        partition = self._cache.get((key, count))
        if partition is None:
            partition = self._cache[key, count] = (murmur2(key) & 0x7FFFFFFF) % count
        return partition


class Sender:
    """A Kafka client sending sale records to one topic.

    Args:
        config: kafka-python options, ``bootstrap_servers`` and ``delivery_timeout_ms`` included.
        topic: The topic (must exist, see `sales_stream.clients.ensure_topic`).
        client: Builds the client from ``config`` (unit tests pass an in-memory one).

    Raises:
        InfraError: If the client cannot be created (Kafka unreachable, `describe_error`).
    """

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        *,
        client: Callable[..., KafkaProducer] = KafkaProducer,
    ) -> None:
        try:
            self._client = client(**config)
        except KafkaError as exc:
            raise InfraError(describe_error(config["bootstrap_servers"], exc)) from exc
        self.topic = topic
        #: Every record settles within ``delivery_timeout_ms``; the grace guards against a
        #: client bug leaving a flush (and whoever waits for it) stuck.
        self.flush_timeout_s = config["delivery_timeout_ms"] / 1000 + CLOSE_GRACE_S
        self._partition_of = _KeyPartitioner(self._client, topic)

    def send(
        self, event: SaleEvent, value: bytes | None, *, timestamp_ms: int | None = None
    ) -> FutureRecordMetadata:
        """Queue ``value`` keyed by ``event``'s region; return the future of its delivery.

        Raises:
            KafkaError: If it cannot be queued (`KafkaTimeoutError`: no topic metadata).
        """
        key = kafka_key(event)
        return self._client.send(
            self.topic,
            key=key,
            value=value,
            partition=self._partition_of(key),
            timestamp_ms=timestamp_ms,
        )

    def flush(self) -> None:
        """Wait until every record sent is settled, at most `flush_timeout_s`.

        Raises:
            KafkaTimeoutError: If records are still unsettled then.
        """
        self._client.flush(timeout=self.flush_timeout_s)

    def close(self) -> None:
        """Close the client; records still unsettled are abandoned."""
        self._client.close(timeout=1.0)
