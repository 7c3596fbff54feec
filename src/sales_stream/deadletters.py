"""Dead letters: a rejected Kafka message kept with where it came from and why.

Every sink builds the same record from the same validation, so nothing invalid is ever
silently dropped, whichever sink reads it. A dead letter is always storable: every text field
is valid UTF-8 (anything else is backslash-escaped) and bounded, the payload is truncated to
`MAX_KEPT_BYTES`, and the SHA-256 of the full original payload is kept. If a store still
refuses it, `DeadLetter.minimal` keeps only the position, the reason, the sizes and the hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, get_type_hints

from sales_stream.events import InvalidEvent, SaleEvent, encode
from sales_stream.identity import kafka_key

if TYPE_CHECKING:
    import pyarrow as pa

#: Raw payloads are kept up to this size; a longer payload keeps its head and its length.
MAX_KEPT_BYTES = 4096
#: Longest key kept, in characters (the full key's size and hash are kept too).
MAX_KEY_CHARS = 512
#: Longest detail kept, in characters.
MAX_DETAIL_CHARS = 600

#: Reasons decided by the sinks rather than by `sales_stream.events.decode`.
MISSING_KEY = "missing_key"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
UNENCODABLE = "unencodable"
TOO_LARGE = "too_large"

#: Field metadata: low-cardinality text, dictionary-encoded in the lake.
_CODE = {"arrow": "dictionary"}
#: Field metadata: a 32-bit integer in the lake (a Kafka partition).
_INT32 = {"arrow": "int32"}


def storable_text(text: str, limit: int) -> str:
    """``text`` as valid UTF-8 (lone surrogates escaped), at most ``limit`` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def sha256_hex(data: bytes | None) -> str:
    """Hex SHA-256 of ``data`` (of the empty string for ``None``)."""
    return hashlib.sha256(data or b"").hexdigest()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected message.

    Attributes:
        topic: Kafka topic.
        partition: Kafka partition.
        offset: Offset in the partition.
        key: Message key as storable text (None if absent).
        raw: The payload bytes (truncated to ``MAX_KEPT_BYTES``), None for a null value.
        raw_size: Size of the full payload in bytes.
        reason: Stable reason code (``InvalidReason`` value or one of this module's).
        detail: Human-readable explanation naming the field and value.
        received_at: When the sink rejected it (UTC).
        incarnation: The topic incarnation (with topic, partition and offset, the identity).
        key_size: Size of the full key in bytes.
        raw_sha256: SHA-256 of the full original payload.
    """

    topic: str = field(metadata=_CODE)
    partition: int = field(metadata=_INT32)
    offset: int
    key: str | None
    raw: bytes | None
    raw_size: int
    reason: str = field(metadata=_CODE)
    detail: str
    received_at: datetime
    incarnation: str = field(default="", metadata=_CODE)
    key_size: int = 0
    raw_sha256: str = ""

    @property
    def dead_letter_id(self) -> str:
        """Deterministic id, so that re-processing a record after a crash never duplicates it."""
        return position_id(self.incarnation, self.topic, self.partition, self.offset)

    def raw_text(self) -> str | None:
        """The payload decoded as UTF-8 with replacement characters (for display)."""
        return None if self.raw is None else self.raw.decode("utf-8", errors="replace")

    def to_document(self) -> dict[str, Any]:
        """The MongoDB document: every field, plus ``_id`` and ``raw_text``.

        ``_id`` is incarnation:topic:partition:offset (`dead_letter_id`).
        """
        document: dict[str, Any] = {"_id": self.dead_letter_id}
        document |= {f.name: getattr(self, f.name) for f in fields(self)}
        document["raw_text"] = self.raw_text()
        return document

    def minimal(self, why: str) -> DeadLetter:
        """The last-resort record: position, reason, sizes and hash only."""
        return replace(self, key=None, raw=None, detail=storable_text(why, MAX_DETAIL_CHARS))


def arrow_schema() -> pa.Schema:
    """The Arrow schema of the lake's dead-letter files: the fields of `DeadLetter`, in order.

    Text is ``string`` (``dictionary`` where a field's metadata says so), integers ``int64``
    (``int32`` likewise), ``raw`` ``binary``, ``received_at`` ``timestamp[ms, tz=UTC]``; all
    nullable, so files written before a field existed read it as null.
    """
    import pyarrow as pa

    by_type = {
        str: pa.string(),
        int: pa.int64(),
        bytes: pa.binary(),
        datetime: pa.timestamp("ms", tz="UTC"),
    }
    named = {"dictionary": pa.dictionary(pa.int32(), pa.string()), "int32": pa.int32()}
    hints = get_type_hints(DeadLetter)
    columns = []
    for f in fields(DeadLetter):
        declared = hints[f.name]
        base = next(t for t in (str, int, bytes, datetime) if declared in (t, t | None))
        arrow = f.metadata.get("arrow")
        columns.append((f.name, by_type[base] if arrow is None else named[arrow]))
    return pa.schema(columns)


def position_id(incarnation: str, topic: str, partition: int, offset: int) -> str:
    """The id of a Kafka record across topic incarnations (a dead letter's ``_id``)."""
    position = f"{topic}:{partition}:{offset}"
    return f"{incarnation}:{position}" if incarnation else position


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str,
    incarnation: str = "",
    now: datetime | None = None,
) -> DeadLetter:
    """Build the storable dead letter of one Kafka record."""
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=None
        if key is None
        else storable_text(key[: MAX_KEY_CHARS * 4].decode("utf-8", "replace"), MAX_KEY_CHARS),
        raw=None if value is None else bytes(value[:MAX_KEPT_BYTES]),
        raw_size=0 if value is None else len(value),
        reason=storable_text(str(reason), 64),
        detail=storable_text(detail, MAX_DETAIL_CHARS),
        received_at=now or datetime.now(UTC),
        incarnation=incarnation,
        key_size=0 if key is None else len(key),
        raw_sha256=sha256_hex(value),
    )


def invalid_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    invalid: InvalidEvent,
    incarnation: str = "",
    now: datetime | None = None,
) -> DeadLetter:
    """The dead letter of a record that failed `sales_stream.events.decode`."""
    return dead_letter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        reason=str(invalid.reason),
        detail=invalid.detail,
        incarnation=incarnation,
        now=now,
    )


def conflict_letter(
    *,
    topic: str,
    incarnation: str,
    position: tuple[int, int],
    event: SaleEvent,
    stored_hash: str,
    now: datetime | None = None,
) -> DeadLetter:
    """The dead letter of a sale whose id is already stored with different content."""
    value = encode(event)
    new_hash = sha256_hex(value)
    return dead_letter(
        topic=topic,
        partition=position[0],
        offset=position[1],
        key=kafka_key(event),
        value=value,
        reason=CONFLICTING_DUPLICATE,
        detail=(
            f"event_id {event.event_id} is already stored with different content "
            f"(stored sha256 {stored_hash}, this one {new_hash})"
        ),
        incarnation=incarnation,
        now=now,
    )
