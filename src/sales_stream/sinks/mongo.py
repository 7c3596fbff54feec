"""Idempotent bulk writes of sale events and dead letters into MongoDB.

Delivery is at-least-once from Kafka, so every write here is idempotent: a sale is keyed by
its event id (``_id``), a dead letter by ``topic:partition:offset``. A batch goes in with one
``insert_many(ordered=False)`` per collection; duplicate-key errors (code 11000) mean "already
written" (a re-sent event, or a batch re-read after a crash) and are counted, never raised.
Any other error is raised, so that the caller retries the same batch and commits nothing.

Every sale document also gets ``ingested_at``: the sink's UTC clock when the batch was written
(one value per write attempt, shared by the batch). It measures freshness (``ingested_at - ts``)
and is not part of the event contract (`sales_stream.events.event_from_document` ignores it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from sales_stream.contract import INGESTED_AT
from sales_stream.deadletters import DeadLetter
from sales_stream.events import SaleEvent

SALES = "sales"
DEAD_LETTERS = "dead_letters"
DUPLICATE_KEY = 11000

#: Indexes of the dashboard queries (`sales_stream.queries`): period, region or product
#: filters, and the latest sales. Each index costs insert throughput on SecantusDB.
SALES_INDEXES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("ts", ASCENDING),),
    (("region", ASCENDING), ("ts", ASCENDING)),
    (("product", ASCENDING), ("ts", ASCENDING)),
)
DEAD_LETTER_INDEXES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("received_at", ASCENDING),),
    (("reason", ASCENDING),),
)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one `MongoSink.write`.

    Attributes:
        stored: Sale documents inserted by this write.
        duplicates: Sales whose ``_id`` was already present (re-sent events, re-read batches,
            or documents inserted by an interrupted earlier attempt of the same batch).
        dead_lettered: Dead letters of the batch now recorded (new or already present).
    """

    stored: int
    duplicates: int
    dead_lettered: int


def ensure_indexes(db: Database) -> None:
    """Create the indexes of the ``sales`` and ``dead_letters`` collections (idempotent)."""
    for keys in SALES_INDEXES:
        db[SALES].create_index(list(keys))
    for keys in DEAD_LETTER_INDEXES:
        db[DEAD_LETTERS].create_index(list(keys))


def insert_idempotent(collection: Collection, documents: list[dict[str, Any]]) -> tuple[int, int]:
    """Insert ``documents`` unordered; return ``(inserted, already_present)``.

    Raises:
        BulkWriteError: If any error other than a duplicate key occurred.
        PyMongoError: On any other failure (e.g. the server is unreachable).
    """
    if not documents:
        return 0, 0
    try:
        result = collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        details = exc.details
        errors = details.get("writeErrors", [])
        if details.get("writeConcernErrors") or any(e["code"] != DUPLICATE_KEY for e in errors):
            raise
        return details["nInserted"], len(errors)
    return len(result.inserted_ids), 0


class MongoSink:
    """Writes batches of events and dead letters; safe to call again with the same batch.

    Args:
        db: Target database (use a client from `sales_stream.clients.mongo_client`, whose
            writes are journaled).
        clock: Returns the aware UTC time stamped as ``ingested_at``.
    """

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._sales = db[SALES]
        self._dead_letters = db[DEAD_LETTERS]
        self._clock = clock or (lambda: datetime.now(UTC))

    def write(self, events: Sequence[SaleEvent], dead: Sequence[DeadLetter]) -> WriteResult:
        """Write one batch; duplicates are counted, any other error is raised.

        Args:
            events: Valid events (``_id`` = event id).
            dead: Rejected messages (``_id`` = topic:partition:offset).

        Returns:
            What the write inserted and what was already there.
        """
        stored = duplicates = 0
        if events:
            now = self._clock()
            docs = [event.to_document() for event in events]
            for doc in docs:
                doc[INGESTED_AT] = now
            stored, duplicates = insert_idempotent(self._sales, docs)
        if dead:
            insert_idempotent(self._dead_letters, [letter.to_document() for letter in dead])
        return WriteResult(stored=stored, duplicates=duplicates, dead_lettered=len(dead))
