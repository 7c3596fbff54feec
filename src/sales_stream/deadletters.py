"""Dead letters: a rejected Kafka message kept with where it came from and why.

The Mongo sink and the Parquet lake build the same record from the same validation, so
nothing invalid is ever silently dropped, whichever sink reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sales_stream.events import InvalidEvent

#: Raw payloads are kept up to this size; a longer payload keeps its head and its length.
MAX_KEPT_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected message.

    Attributes:
        topic: Kafka topic.
        partition: Kafka partition.
        offset: Offset in the partition (with topic and partition, the record's identity).
        key: Message key as text (None if absent).
        raw: The payload bytes (truncated to ``MAX_KEPT_BYTES``), None for a null value.
        raw_size: Size of the full payload in bytes.
        reason: Stable reason code (``InvalidReason`` value).
        detail: Human-readable explanation naming the field and value.
        received_at: When the sink rejected it (UTC).
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    raw: bytes | None
    raw_size: int
    reason: str
    detail: str
    received_at: datetime

    @property
    def dead_letter_id(self) -> str:
        """Deterministic id, so that re-processing a record after a crash never duplicates it."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def raw_text(self) -> str | None:
        """The payload decoded as UTF-8 with replacement characters (for display)."""
        return None if self.raw is None else self.raw.decode("utf-8", errors="replace")

    def to_document(self) -> dict[str, Any]:
        """The MongoDB document (``_id`` = topic:partition:offset)."""
        return {
            "_id": self.dead_letter_id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "raw": self.raw,
            "raw_text": self.raw_text(),
            "raw_size": self.raw_size,
            "reason": self.reason,
            "detail": self.detail,
            "received_at": self.received_at,
        }


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    invalid: InvalidEvent,
    now: datetime | None = None,
) -> DeadLetter:
    """Build the dead letter of a Kafka record that failed validation."""
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else key.decode("utf-8", errors="replace"),
        raw=None if value is None else bytes(value[:MAX_KEPT_BYTES]),
        raw_size=0 if value is None else len(value),
        reason=str(invalid.reason),
        detail=invalid.detail,
        received_at=now or datetime.now(UTC),
    )
