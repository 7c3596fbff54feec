"""The MongoDB sink: sales and dead letters, idempotent, transient and permanent errors split.

A sale is keyed by its event id (``_id``), a dead letter by its position (incarnation, topic,
partition, offset). A batch goes in with one ``insert_many(ordered=False)`` per collection.
A duplicate key (code 11000) is read back and classified:

* the stored sale came from the same position (``src``): a batch re-read after a crash — the
  sale belongs to this record, so it is *kept* for the next sinks of the chain;
* same content from another position: an exact re-send, a counted duplicate, not kept;
* different content: a ``conflicting_duplicate`` dead letter with both versions' hashes.

Errors: connection failures, timeouts, not-primary and write-concern errors are transient
(`SinkUnavailable`, retried by the runtime). A document the server can never take (too large,
unencodable) is permanent: a sale becomes a dead letter, a dead letter falls back to its
minimal form (`DeadLetter.minimal`), and the batch moves on.

The hot ``sales`` collection carries no secondary index (each costs about one insert on the
embedded server): dashboards and SQL read the rollups (`sales_stream.sinks.rollups`, the next sink
of the consumer's chain, which counts the sales this sink keeps), the Hyper extract is fed by
its own runtime. Every sale also gets ``ingested_at`` (the sink's UTC clock at the write, for
freshness) and ``src`` (the position that first stored it): a batch re-read with other
boundaries keeps the same sales.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from bson.errors import BSONError
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    InvalidDocument,
    OperationFailure,
    PyMongoError,
)

from sales_stream.contract import INGESTED_AT
from sales_stream.deadletters import (
    TOO_LARGE,
    UNENCODABLE,
    DeadLetter,
    conflict_letter,
    dead_letter,
)
from sales_stream.events import encode, event_from_document
from sales_stream.identity import event_hash, kafka_key
from sales_stream.sinks.mongo_errors import unavailable
from sales_stream.store import (
    DEAD_LETTERS,
    DUPLICATE_KEY,
    SALES,
    SOURCE_FIELD,
    TOO_LARGE_CODES,
    ensure_indexes,
    is_transient,
)
from sales_stream.stream.batch import Batch
from sales_stream.stream.sink import Prepared, SinkResult

#: ``$in`` lists longer than this are split (SecantusDB's cost grows with the list's square).
IN_CHUNK = 100


def _permanent_reason(exc: BaseException | int | None) -> str:
    if isinstance(exc, DocumentTooLarge) or exc in TOO_LARGE_CODES:
        return TOO_LARGE
    if isinstance(exc, OperationFailure) and exc.code in TOO_LARGE_CODES:
        return TOO_LARGE
    return UNENCODABLE


_PERMANENT = (InvalidDocument, DocumentTooLarge, BSONError, UnicodeError, OverflowError, ValueError)


def insert_documents(
    collection: Collection, documents: list[dict[str, Any]]
) -> tuple[list[int], list[int], dict[int, tuple[str, str]]]:
    """Insert unordered; return ``(inserted, duplicate, refused)`` indexes.

    ``refused`` maps an index to ``(reason, detail)`` for a document the server can never
    store (too large, unencodable).

    Raises:
        SinkUnavailable: On a transient failure (nothing about the data).
        PyMongoError: On an unexpected server error.
    """
    if not documents:
        return [], [], {}
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        if is_transient(exc):
            raise unavailable(exc) from exc
        duplicate: list[int] = []
        refused: dict[int, tuple[str, str]] = {}
        for error in exc.details.get("writeErrors", []):
            if error["code"] == DUPLICATE_KEY:
                duplicate.append(error["index"])
            else:
                reason = _permanent_reason(error["code"])
                refused[error["index"]] = (reason, error.get("errmsg", ""))
        failed = set(duplicate) | set(refused)
        return [i for i in range(len(documents)) if i not in failed], duplicate, refused
    except _PERMANENT:
        return _insert_one_by_one(collection, documents)
    except PyMongoError as exc:
        if is_transient(exc):
            raise unavailable(exc) from exc
        if isinstance(exc, OperationFailure) and exc.code in TOO_LARGE_CODES:
            return _insert_one_by_one(collection, documents)
        raise
    return list(range(len(documents))), [], {}


def _insert_one_by_one(
    collection: Collection, documents: list[dict[str, Any]]
) -> tuple[list[int], list[int], dict[int, tuple[str, str]]]:
    """Find which documents of a refused batch are the problem (rare: poison only)."""
    inserted: list[int] = []
    duplicate: list[int] = []
    refused: dict[int, tuple[str, str]] = {}
    for index, document in enumerate(documents):
        try:
            collection.insert_one(document)
        except DuplicateKeyError:
            duplicate.append(index)
        except _PERMANENT as exc:
            refused[index] = (_permanent_reason(exc), f"{type(exc).__name__}: {exc}")
        except PyMongoError as exc:
            if is_transient(exc):
                raise unavailable(exc) from exc
            if isinstance(exc, OperationFailure):
                refused[index] = (_permanent_reason(exc), f"{type(exc).__name__}: {exc}")
                continue
            raise
        else:
            inserted.append(index)
    return inserted, duplicate, refused


def chunks(items: list[str]) -> Iterator[list[str]]:
    """``items`` in lists of at most `IN_CHUNK` (for ``$in`` queries)."""
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def _documents(batch: Batch) -> list[dict[str, Any]]:
    """The sales of ``batch`` as documents, with ``src`` (``ingested_at`` is set at the write)."""
    docs = []
    incarnation = batch.incarnation
    for event, (partition, offset) in zip(batch.events, batch.positions, strict=True):
        doc = event.to_document()
        doc[SOURCE_FIELD] = source_id(incarnation, partition, offset)
        docs.append(doc)
    return docs


def source_id(incarnation: str, partition: int, offset: int) -> str:
    """The ``src`` value of the record at a position."""
    return f"{incarnation}:{partition}:{offset}"


class MongoSink:
    """Writes the sales and dead letters of each batch (`sales_stream.stream.Sink`).

    Args:
        db: Target database (a client from `sales_stream.clients.mongo_client`: journaled).
        clock: Returns the aware UTC time stamped as ``ingested_at``.
    """

    name = "mongodb"

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self._db = db
        self._sales = db[SALES]
        self._dead_letters = db[DEAD_LETTERS]
        self._clock = clock or (lambda: datetime.now(UTC))
        self._indexed = False
        self._prepared: Prepared[list[dict[str, Any]]] = Prepared()

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Nothing to load: MongoDB itself is the state."""

    def close(self) -> None:
        """The database's client belongs to the caller."""

    def prepare(self, batch: Batch) -> None:
        """Build the batch's documents ahead of `write` (on the runtime's loop thread)."""
        self._prepared.put(batch, _documents(batch))

    def write(self, batch: Batch) -> SinkResult:
        """Write one batch; see the module doc.

        Raises:
            SinkUnavailable: MongoDB is unreachable or not writable for now.
        """
        if not self._indexed:
            try:
                ensure_indexes(self._db)
            except PyMongoError as exc:
                raise (unavailable(exc) if is_transient(exc) else exc) from exc
            self._indexed = True
        now = self._clock()
        events = batch.events
        docs = self._prepared.take(batch)
        if docs is None:
            docs = _documents(batch)
        for doc in docs:
            doc[INGESTED_AT] = now
        inserted, duplicate, refused = insert_documents(self._sales, docs)
        dead = list(batch.dead)
        for index, (reason, detail) in refused.items():
            partition, offset = batch.positions[index]
            value = encode(events[index])
            dead.append(
                dead_letter(
                    topic=batch.topic,
                    partition=partition,
                    offset=offset,
                    key=kafka_key(events[index]),
                    value=value,
                    reason=reason,
                    detail=f"the sale cannot be stored in MongoDB: {detail}",
                    incarnation=batch.incarnation,
                    now=now,
                )
            )
        owned, duplicates, conflicts = self._classify(batch, docs, duplicate, now)
        dead.extend(conflicts)
        self._write_dead_letters(dead)
        keep = sorted([*inserted, *owned])
        return SinkResult(
            stored=len(inserted),
            duplicates=len(owned) + duplicates,
            dead_lettered=len(dead),
            kept=batch.with_events(keep),
        )

    def _classify(
        self, batch: Batch, docs: list[dict[str, Any]], duplicate: list[int], now: datetime
    ) -> tuple[list[int], int, list[DeadLetter]]:
        """Split duplicates into owned replays, exact re-sends and conflicts."""
        if not duplicate:
            return [], 0, []
        ids = sorted({docs[i]["_id"] for i in duplicate})
        stored: dict[str, dict[str, Any]] = {}
        try:
            for chunk in chunks(ids):
                for doc in self._sales.find({"_id": {"$in": chunk}}):
                    stored[doc["_id"]] = doc
        except PyMongoError as exc:
            raise (unavailable(exc) if is_transient(exc) else exc) from exc
        owned: list[int] = []
        exact = 0
        conflicts: list[DeadLetter] = []
        for index in duplicate:
            event = batch.events[index]
            existing = stored.get(event.event_id)
            if existing is None:
                exact += 1  # deleted since: nothing to compare with
                continue
            existing_hash = event_hash(event_from_document(existing))
            if existing_hash != event_hash(event):
                conflicts.append(
                    conflict_letter(
                        topic=batch.topic,
                        incarnation=batch.incarnation,
                        position=batch.positions[index],
                        event=event,
                        stored_hash=existing_hash,
                        now=now,
                    )
                )
            elif existing.get(SOURCE_FIELD) == docs[index][SOURCE_FIELD]:
                owned.append(index)
            else:
                exact += 1
        return owned, exact, conflicts

    def _write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        _, _, refused = insert_documents(
            self._dead_letters, [letter.to_document() for letter in letters]
        )
        if not refused:
            return
        minimal = [
            letters[i].minimal(f"dead letter refused by MongoDB ({reason}): {detail}")
            for i, (reason, detail) in refused.items()
        ]
        _, _, still = insert_documents(self._dead_letters, [m.to_document() for m in minimal])
        if still:
            first = minimal[next(iter(still))]
            raise RuntimeError(
                f"MongoDB refuses even the minimal dead letter {first.dead_letter_id}: "
                f"{still[next(iter(still))][1]}"
            )
