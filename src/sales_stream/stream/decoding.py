"""Records of a poll → a `Batch`: valid events and storable dead letters; never raises."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sales_stream.deadletters import MISSING_KEY, DeadLetter, dead_letter, invalid_letter
from sales_stream.events import SaleEvent, decode
from sales_stream.stream.batch import Batch


class Record(Protocol):
    """What the runtime reads of a Kafka record (kafka-python's ``ConsumerRecord`` fits)."""

    offset: int
    key: bytes | None
    value: bytes | None


def decode_records(
    topic: str,
    incarnation: str,
    records: Mapping[int, Sequence[Record]] | Iterable[tuple[int, Sequence[Record]]],
    *,
    now: datetime,
) -> Batch:
    """Validate records (partition → records in offset order) into a `Batch`.

    A record is dead-lettered if its value fails `sales_stream.events.decode`, or, with
    reason ``missing_key``, if its value is valid but it has no key.
    """
    events: list[SaleEvent] = []
    positions: list[tuple[int, int]] = []
    dead: list[DeadLetter] = []
    first_offsets: dict[int, int] = {}
    next_offsets: dict[int, int] = {}
    add_event, add_position = events.append, positions.append
    items = records.items() if isinstance(records, Mapping) else records
    for partition, partition_records in items:
        if not partition_records:
            continue
        for record in partition_records:
            result = decode(record.value)
            if type(result) is SaleEvent and record.key is not None:
                add_event(result)
                add_position((partition, record.offset))
                continue
            common = {
                "topic": topic,
                "partition": partition,
                "offset": record.offset,
                "key": record.key,
                "value": record.value,
                "incarnation": incarnation,
                "now": now,
            }
            if type(result) is SaleEvent:
                letter = dead_letter(
                    **common,
                    reason=MISSING_KEY,
                    detail="message key is None: sales are keyed by their region",
                )
            else:
                letter = invalid_letter(**common, invalid=result)
            dead.append(letter)
        first_offsets.setdefault(partition, partition_records[0].offset)
        next_offsets[partition] = partition_records[-1].offset + 1
    return Batch(topic, incarnation, events, positions, dead, first_offsets, next_offsets)
