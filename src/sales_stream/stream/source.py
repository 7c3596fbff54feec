"""Where the runtime reads records: a Kafka consumer group (`sales_stream.stream.memory` for tests).

A source reports assignment changes through a `RebalanceListener` (from any thread).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sales_stream.stream.decoding import Record

log = logging.getLogger(__name__)

#: A member still rebalancing this long after its JoinGroup succeeded is considered hung
#: (the SyncGroup that follows takes milliseconds on a healthy broker).
SYNC_STUCK_S = 15.0
#: Longest wait for the group's commits of the partitions to rewind (then tried again later).
REWIND_TIMEOUT_MS = 5000


class JoinWatch:
    """Tells when a rebalance is stuck after its JoinGroup succeeded (in SyncGroup).

    It watches the member's generation: the rebalance starts with the previous one (or
    none); a successful JoinGroup installs a new generation with an id ≥ 0.
    """

    def __init__(self) -> None:
        self._start: object = None
        self._joined_at: float | None = None

    def observe(
        self, *, rebalancing: bool, generation: object, generation_id: int, now: float
    ) -> bool:
        """Record one observation; return whether the join is hung."""
        if not rebalancing:
            self._start, self._joined_at = None, None
            return False
        if self._start is None:
            self._start = generation
        elif self._joined_at is None and generation is not self._start and generation_id >= 0:
            self._joined_at = now
        return self._joined_at is not None and now - self._joined_at >= SYNC_STUCK_S


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

    def rewind(self, partitions: Iterable[int]) -> set[int]:
        """Read ``partitions`` again from the group's commit (the beginning without one).

        Returns:
            The partitions not rewound (the broker did not answer): to try again.
        """

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
        from sales_stream.clients import consumer_config

        self.topic = topic
        self._options = {
            "bootstrap_servers": bootstrap,
            "client_id": f"sales-stream-{group_id}",
            **consumer_config(group_id=group_id, **config),
        }
        self._consumer = self._new_consumer()
        self._incarnation: str | None = None
        self._kafka_listener: Any = None
        self._from_start: set[int] = set()  # sent to the start by the last assignment
        self._join_watch = JoinWatch()
        #: How many times a stuck group join made this source rebuild its consumer.
        self.rebuilds = 0

    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(**self._options)

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
                source._from_start = set()
                if previous is not None and assigned and source.incarnation() != previous:
                    # Positions of the old incarnation mean nothing in the new one (the
                    # memory-only broker restarts offsets at 0): read it from its start;
                    # re-read records are duplicates the sinks absorb.
                    source._consumer.seek_to_beginning(*assigned)
                    source._from_start |= {tp.partition for tp in assigned}
                listener.assigned({tp.partition for tp in assigned})

        self._kafka_listener = _Listener()
        self._consumer.subscribe([self.topic], listener=self._kafka_listener)

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
        self._watch_join()
        return {tp.partition: records for tp, records in polled.items() if records}

    def _watch_join(self) -> None:
        """Rebuild the consumer when its group join hangs after JoinGroup succeeded.

        After a restart of the memory-only broker, kafka-python's join was seen to stop
        after « Successfully joined group »: the SyncGroup never completes and is never
        retried. A new member then joins afresh (its old partitions are revoked on close,
        so nothing unwritten is kept). A member is never rebuilt while JoinGroup itself
        waits: the broker may legitimately hold that for the other members.
        """
        from kafka.coordinator.base import MemberState

        coordinator = self._consumer._coordinator
        generation = coordinator._generation
        hung = self._join_watch.observe(
            rebalancing=coordinator.state is MemberState.REBALANCING,
            generation=generation,
            generation_id=generation.generation_id,
            now=time.monotonic(),
        )
        if hung and self.connected():
            log.warning(
                "group join of %s stuck after JoinGroup for %.0f s: rebuilding the consumer",
                self._options["group_id"], SYNC_STUCK_S,
            )  # fmt: skip
            self.rebuild()

    def rebuild(self) -> None:
        """Leave the group and join it again with a new consumer (same options)."""
        self.close()
        self._consumer = self._new_consumer()
        if self._kafka_listener is not None:
            self._consumer.subscribe([self.topic], listener=self._kafka_listener)
        self._incarnation = None
        self._join_watch = JoinWatch()
        self.rebuilds += 1

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

    def rewind(self, partitions: Iterable[int]) -> set[int]:
        """Read ``partitions`` again from the group's commit (the beginning without one).

        A partition a new incarnation sent back to its start stays there.

        Returns:
            The partitions not rewound (the group's commits could not be read): to try again.
        """
        from kafka.errors import KafkaError

        failed: set[int] = set()
        for partition in partitions:
            if partition in self._from_start:
                self._from_start.discard(partition)
                continue
            tp = self._tp(partition)
            try:
                offset = self._consumer.committed(tp, timeout_ms=REWIND_TIMEOUT_MS)
                if offset is None:
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, offset)
            except (KafkaError, ValueError) as exc:  # no answer, or revoked meanwhile
                log.warning("cannot rewind %s to its commit: %s", tp, exc)
                failed.add(partition)
        return failed

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
