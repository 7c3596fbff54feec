"""In-memory stream ends for fast tests: `MemoryLog` (a topic), `MemorySource`, `MemorySink`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sales_stream.stream.batch import Batch
from sales_stream.stream.decoding import Record
from sales_stream.stream.sink import SinkResult
from sales_stream.stream.source import CommitRejected, RebalanceListener


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

    def rebalance(self) -> None:
        """A rebalance that gives this member its partitions back, positions kept.

        As kafka-python (≥ 3) and the Java client do for a partition a member keeps: the
        listener is told of the revocation, then of the assignment; the next poll goes on
        where the last one stopped.
        """
        if self._listener is not None:
            self._listener.revoked(set(self._assigned))
            self._listener.assigned(set(self._assigned))

    def rewind(self, partitions: Iterable[int]) -> set[int]:
        """Read ``partitions`` again from the group's commit (the beginning without one)."""
        for partition in partitions:
            self._positions[partition] = self._log.committed.get(partition, 0)
        return set()

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


class MemorySink:
    """A `Sink` that keeps what it is given and fails on demand (fast tests of the runtime).

    Args:
        name: Its name in stats.
        keep_first: Hand only the first this many events to the next sink (default: all).
    """

    def __init__(self, name: str = "memory", *, keep_first: int | None = None) -> None:
        self.name = name
        self.batches: list[Batch] = []
        self.assigned: list[tuple[str, list[int]]] = []
        self.failures: list[BaseException] = []
        self.keep_first = keep_first

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Record the assignment."""
        self.assigned.append((incarnation, list(partitions)))

    def write(self, batch: Batch) -> SinkResult:
        """Keep ``batch``, or raise the next of ``failures``."""
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(batch)
        kept = None if self.keep_first is None else batch.with_events(list(range(self.keep_first)))
        return SinkResult(stored=len(batch.events), dead_lettered=len(batch.dead), kept=kept)

    def close(self) -> None:
        """Nothing to release."""

    @property
    def ids(self) -> list[str]:
        """The event ids written, in order."""
        return [e.event_id for b in self.batches for e in b.events]

    @property
    def dead(self) -> list[str]:
        """The reasons of the dead letters written, in order."""
        return [d.reason for b in self.batches for d in b.dead]
