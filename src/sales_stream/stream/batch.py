"""A batch of decoded records: what the runtime hands to every sink."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sales_stream.deadletters import DeadLetter
from sales_stream.events import SaleEvent


@dataclass(frozen=True, slots=True)
class Batch:
    """The decoded records of one checkpoint, in partition then offset order.

    Attributes:
        topic: Kafka topic.
        incarnation: Identity of the topic's current incarnation (see `sales_stream.stream`):
            a Kafka position is unique only together with it.
        events: Valid events.
        positions: ``(partition, offset)`` of each event (same order as ``events``).
        dead: Rejected records as dead letters.
        first_offsets: Partition → offset of its first record in the batch.
        next_offsets: Partition → offset to commit (its last record's offset + 1).
        committed: Partition → the group's last commit this run had confirmed when the
            batch was sealed: this group never reads below it again in this incarnation
            (partitions without a confirmed commit are absent).
    """

    topic: str
    incarnation: str
    events: list[SaleEvent]
    positions: list[tuple[int, int]]
    dead: list[DeadLetter]
    first_offsets: dict[int, int]
    next_offsets: dict[int, int]
    committed: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        events: Sequence[SaleEvent],
        dead: Sequence[DeadLetter] = (),
        *,
        topic: str = "sales",
        incarnation: str = "",
        partition: int = 0,
    ) -> Batch:
        """A batch of ``events`` at offsets 0, 1, 2... of one partition (tests, benchmarks)."""
        return cls(
            topic,
            incarnation,
            list(events),
            [(partition, offset) for offset in range(len(events))],
            list(dead),
            {partition: 0},
            {partition: len(events)},
        )

    @property
    def size(self) -> int:
        """Number of records in the batch (valid and rejected)."""
        return len(self.events) + len(self.dead)

    def with_events(self, keep: list[int]) -> Batch:
        """The same batch holding only the events at indexes ``keep`` (and no dead letters).

        ``keep`` lists distinct indexes in order.
        """
        if len(keep) == len(self.events):
            return replace(self, dead=[])
        return replace(
            self,
            events=[self.events[i] for i in keep],
            positions=[self.positions[i] for i in keep],
            dead=[],
        )

    def without_partitions(self, partitions: set[int]) -> Batch | None:
        """The batch minus the records of ``partitions``; ``None`` if nothing is left."""
        keep = [i for i, (p, _) in enumerate(self.positions) if p not in partitions]
        dead = [d for d in self.dead if d.partition not in partitions]
        if not keep and not dead:
            return None
        return replace(
            self,
            events=[self.events[i] for i in keep],
            positions=[self.positions[i] for i in keep],
            dead=dead,
            first_offsets={p: o for p, o in self.first_offsets.items() if p not in partitions},
            next_offsets={p: o for p, o in self.next_offsets.items() if p not in partitions},
            committed={p: o for p, o in self.committed.items() if p not in partitions},
        )
