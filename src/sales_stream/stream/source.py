"""Where the runtime reads records: a Kafka consumer group, or an in-memory log for tests.

A source reports assignment changes through a `RebalanceListener` (from any thread).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sales_stream.stream.decoding import Record


class CommitRejected(Exception):
    """The group refused a commit (a rebalance): the records will be read again."""


class RebalanceListener(Protocol):
    """Told by the source about partitions leaving and joining this member.

    kafka-python calls it from its IO thread, inside or outside `Source.poll`.
    """

    def revoked(self, partitions: set[int]) -> None:
        """Partitions leave this member (finish their writes, drop their unwritten records)."""

    def assigned(self, partitions: set[int]) -> None:
        """Partitions join this member (sinks reload their state before the next write)."""


class Source(Protocol):
    """The subset of a Kafka consumer the runtime uses (partitions are ints of one topic)."""

    topic: str

    def subscribe(self, listener: RebalanceListener) -> None:
        """Subscribe to the topic; rebalances are reported to ``listener``."""

    def incarnation(self) -> str:
        """The identity of the topic's current incarnation (``""`` if unknown)."""

    def poll(self, *, timeout_ms: int, max_records: int) -> dict[int, Sequence[Record]]:
        """Records of unpaused assigned partitions: partition → records in offset order."""

    def assignment(self) -> set[int]:
        """Partitions assigned to this member."""

    def pause(self, partitions: Iterable[int]) -> None:
        """Stop fetching ``partitions`` (the member stays in its group)."""

    def resume_all(self) -> None:
        """Fetch every assigned partition again."""

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit partition → next offset; `CommitRejected` on a rebalance."""

    def highwater(self, partition: int) -> int | None:
        """The partition's end offset, as last fetched (``None`` if unknown)."""

    def position(self, partition: int) -> int | None:
        """The next offset this member will read, if known."""

    def connected(self) -> bool:
        """Whether the broker answers."""

    def close(self) -> None:
        """Leave the group and close the connection."""


def incarnation_of(cluster_id: str | None, topic_id: object = None) -> str:
    """A short, file-name-safe id of a topic incarnation (cluster id and topic id, hashed)."""
    if not cluster_id and not topic_id:
        return ""
    text = f"{cluster_id or ''}/{topic_id or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class KafkaSource:
    """A kafka-python consumer in a group, subscribed to one topic, manual commits.

    Args:
        bootstrap: Kafka bootstrap servers.
        topic: Topic to consume.
        group_id: Consumer group.
        config: Extra kafka-python options (see `sales_stream.clients.consumer_config`).
    """

    def __init__(self, bootstrap: str, topic: str, *, group_id: str, **config: Any) -> None:
        from kafka import KafkaConsumer

        from sales_stream.clients import consumer_config

        self.topic = topic
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=f"sales-stream-{group_id}",
            **consumer_config(group_id=group_id, **config),
        )
        self._incarnation: str | None = None

    def subscribe(self, listener: RebalanceListener) -> None:
        """Subscribe to the topic; rebalances are reported to ``listener``."""
        from kafka import ConsumerRebalanceListener

        source = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                listener.revoked({tp.partition for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                previous = source._incarnation
                source._incarnation = None  # a broker restart forces a new assignment
                if previous is not None and assigned and source.incarnation() != previous:
                    # Positions of the old incarnation mean nothing in the new one (the
                    # memory-only broker restarts offsets at 0): read it from its start;
                    # re-read records are duplicates the sinks absorb.
                    source._consumer.seek_to_beginning(*assigned)
                listener.assigned({tp.partition for tp in assigned})

        self._consumer.subscribe([self.topic], listener=_Listener())

    def incarnation(self) -> str:
        """The broker's cluster id, hashed (fresh per start of the memory-only embedded broker)."""
        if self._incarnation is None:
            cluster = self._consumer._client.cluster
            if cluster.cluster_id is None:
                self._consumer.topics()  # fetch metadata
            self._incarnation = incarnation_of(cluster.cluster_id)
        return self._incarnation

    def poll(self, *, timeout_ms: int, max_records: int) -> dict[int, Sequence[Record]]:
        """Records of unpaused assigned partitions: partition → records in offset order."""
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return {tp.partition: records for tp, records in polled.items() if records}

    def assignment(self) -> set[int]:
        """Partitions assigned to this member."""
        return {tp.partition for tp in self._consumer.assignment()}

    def pause(self, partitions: Iterable[int]) -> None:
        """Stop fetching ``partitions`` (the member stays in its group)."""
        self._consumer.pause(*self._tps(partitions))

    def resume_all(self) -> None:
        """Fetch every assigned partition again."""
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit partition → next offset; `CommitRejected` on a rebalance."""
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        try:
            self._consumer.commit(
                {
                    TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )
        except KafkaError as exc:
            raise CommitRejected(f"{type(exc).__name__}: {exc}") from exc

    def highwater(self, partition: int) -> int | None:
        """The partition's end offset, as last fetched (``None`` if unknown)."""
        return self._consumer.highwater(self._tp(partition))

    def position(self, partition: int) -> int | None:
        """The next offset this member will read, if known."""
        return self._consumer.position(self._tp(partition), timeout_ms=0)

    def connected(self) -> bool:
        """Whether the group coordinator is known (false while the broker is unreachable)."""
        return not self._consumer._coordinator.coordinator_unknown()

    def close(self) -> None:
        """Leave the group and close the connection."""
        from kafka.errors import KafkaError

        with contextlib.suppress(KafkaError):
            self._consumer.close(autocommit=False, timeout_ms=5000)

    def _tp(self, partition: int) -> Any:
        from kafka.structs import TopicPartition

        return TopicPartition(self.topic, partition)

    def _tps(self, partitions: Iterable[int]) -> list[Any]:
        return [self._tp(p) for p in partitions]


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    """A record of a `MemoryLog`."""

    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class MemoryLog:
    """An in-memory topic shared by `MemorySource` instances (fast tests of the runtime).

    Attributes:
        partitions: Partition → its records, offsets 0, 1, 2...
        committed: Partition → committed offset of the (single) group.
        incarnation: Identity of this log (change it to simulate a broker restart).
    """

    partitions: dict[int, list[MemoryRecord]] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    incarnation: str = "mem0"

    def append(self, partition: int, key: bytes | None, value: bytes | None) -> int:
        """Append a record; return its offset."""
        records = self.partitions.setdefault(partition, [])
        records.append(MemoryRecord(len(records), key, value))
        return len(records) - 1


class MemorySource:
    """A `Source` reading a `MemoryLog` as the only member of its group."""

    def __init__(self, log: MemoryLog, *, topic: str = "sales") -> None:
        self.topic = topic
        self._log = log
        self._listener: RebalanceListener | None = None
        self._assigned: set[int] = set()
        self._positions: dict[int, int] = {}
        self._paused: set[int] = set()
        self.commit_error: Exception | None = None

    def subscribe(self, listener: RebalanceListener) -> None:
        """Subscribe to the topic; rebalances are reported to ``listener``."""
        self._listener = listener

    def incarnation(self) -> str:
        """The identity of the topic's current incarnation (``""`` if unknown)."""
        return self._log.incarnation

    def poll(self, *, timeout_ms: int, max_records: int) -> dict[int, Sequence[Record]]:
        """Records of unpaused assigned partitions: partition → records in offset order."""
        if not self._assigned and self._log.partitions:
            self._assigned = set(self._log.partitions)
            self._positions = {p: self._log.committed.get(p, 0) for p in self._assigned}
            if self._listener is not None:
                self._listener.assigned(set(self._assigned))
        out: dict[int, Sequence[Record]] = {}
        room = max_records
        for partition in sorted(self._assigned - self._paused):
            if room <= 0:
                break
            start = self._positions[partition]
            records = self._log.partitions[partition][start : start + room]
            if records:
                out[partition] = records
                self._positions[partition] = start + len(records)
                room -= len(records)
        return out

    def assignment(self) -> set[int]:
        """Partitions assigned to this member."""
        return set(self._assigned)

    def pause(self, partitions: Iterable[int]) -> None:
        """Stop fetching ``partitions`` (the member stays in its group)."""
        self._paused |= set(partitions)

    def resume_all(self) -> None:
        """Fetch every assigned partition again."""
        self._paused.clear()

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit partition → next offset; `CommitRejected` on a rebalance."""
        if self.commit_error is not None:
            raise CommitRejected(str(self.commit_error))
        self._log.committed.update(offsets)

    def highwater(self, partition: int) -> int | None:
        """The partition's end offset, as last fetched (``None`` if unknown)."""
        return len(self._log.partitions.get(partition, []))

    def position(self, partition: int) -> int | None:
        """The next offset this member will read, if known."""
        return self._positions.get(partition)

    def connected(self) -> bool:
        """Whether the broker answers."""
        return True

    def close(self) -> None:
        """Leave the group and close the connection."""
        self._assigned.clear()
