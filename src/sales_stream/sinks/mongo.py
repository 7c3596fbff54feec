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
embedded server): dashboards and SQL read the rollups (`sales_stream.rollups`, their own
runtime behind `StoredSales`), the Hyper extract is fed by its own runtime. Every sale also
gets ``ingested_at`` (the sink's UTC clock at the write, for freshness) and ``src`` (the
position that first stored it).

Once a batch's sales and dead letters are durable, the sink logs each of its partitions'
offset ranges in ``stored_ranges`` (`STORED_RANGES`: one small document per partition and
checkpoint) with the offsets it did not keep (re-sends, conflicts, dead letters), so
`StoredSales` learns what the consumer kept from a few documents instead of reading every
sale back (on the embedded server a read by ``_id`` costs about four inserts). What a range
says follows from ``src``, fixed when a sale is first stored, so the ranges of a batch
re-read with other boundaries agree with the first ones.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from bson.errors import BSONError
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidDocument,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
    WTimeoutError,
)

from sales_stream.contract import INGESTED_AT
from sales_stream.deadletters import (
    TOO_LARGE,
    UNENCODABLE,
    DeadLetter,
    conflict_letter,
    dead_letter,
    event_hash,
)
from sales_stream.events import encode, event_from_document
from sales_stream.stream.batch import Batch
from sales_stream.stream.sink import CONSUMER_SERVICE, MONGODB_SERVICE, SinkResult, SinkUnavailable

SALES = "sales"
DEAD_LETTERS = "dead_letters"
#: The consumer's log of the offset ranges it wrote, and which offsets it did not keep.
STORED_RANGES = "stored_ranges"
DUPLICATE_KEY = 11000
#: Field of a sale document: the ``incarnation:partition:offset`` that first stored it.
SOURCE_FIELD = "src"
#: Server codes of failures that pass (shutdown, not primary, timeouts, network).
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 112, 117}
)
#: Server codes of a document that is too large.
TOO_LARGE_CODES = frozenset({10334, 17419, 2_000_000})
DEAD_LETTER_INDEXES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("received_at", ASCENDING),),
    (("reason", ASCENDING),),
)
#: Index of `STORED_RANGES`: a stream's partition, then the end of a range.
STORED_RANGES_INDEX: tuple[tuple[str, int], ...] = (("part", ASCENDING), ("next", ASCENDING))
#: How soon `StoredSales` looks again for sales the consumer has not written yet.
CONSUMER_BEHIND_RETRY_S = 0.3
#: ``$in`` lists longer than this are split (SecantusDB's cost grows with the list's square).
IN_CHUNK = 100


def ensure_indexes(db: Database) -> None:
    """Create the indexes of ``dead_letters`` and ``stored_ranges`` (idempotent).

    ``sales`` keeps only ``_id``.
    """
    for keys in DEAD_LETTER_INDEXES:
        db[DEAD_LETTERS].create_index(list(keys))
    db[STORED_RANGES].create_index(list(STORED_RANGES_INDEX))


def stream_part(incarnation: str, topic: str, partition: int) -> str:
    """The ``part`` of a `STORED_RANGES` document: one partition of one topic incarnation."""
    return f"{incarnation}:{topic}:{partition}"


def is_transient(exc: BaseException) -> bool:
    """Whether a MongoDB error may pass by itself (retry) rather than be about the data."""
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | WriteConcernError):
        return True
    if isinstance(exc, BulkWriteError):
        details = exc.details or {}
        errors = details.get("writeErrors", [])
        return bool(details.get("writeConcernErrors")) or any(
            e.get("code") in TRANSIENT_CODES for e in errors
        )
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


def unavailable(exc: PyMongoError) -> SinkUnavailable:
    """The runtime's transient error for a MongoDB failure."""
    return SinkUnavailable(MONGODB_SERVICE, exc)


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
        self._ranges = db[STORED_RANGES]
        self._clock = clock or (lambda: datetime.now(UTC))
        self._indexed = False

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Nothing to load: MongoDB itself is the state."""

    def close(self) -> None:
        """The database's client belongs to the caller."""

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
        docs = []
        for event, (partition, offset) in zip(events, batch.positions, strict=True):
            doc = event.to_document()
            doc[INGESTED_AT] = now
            doc[SOURCE_FIELD] = source_id(batch.incarnation, partition, offset)
            docs.append(doc)
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
                    key=events[index].region.encode(),
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
        self._log_ranges(batch, keep)
        return SinkResult(
            stored=len(inserted),
            duplicates=len(owned) + duplicates,
            dead_lettered=len(dead),
            kept=batch.with_events(keep),
        )

    def _log_ranges(self, batch: Batch, keep: list[int]) -> None:
        """Log each partition's offset range and the offsets of its events not kept."""
        kept = set(keep)
        skipped: dict[int, list[int]] = {partition: [] for partition in batch.first_offsets}
        for index, (partition, offset) in enumerate(batch.positions):
            if index not in kept:
                skipped[partition].append(offset)
        docs = []
        for partition, first in batch.first_offsets.items():
            part = stream_part(batch.incarnation, batch.topic, partition)
            end = batch.next_offsets[partition]
            docs.append(
                {
                    "_id": f"{part}:{first}-{end}",
                    "part": part,
                    "first": first,
                    "next": end,
                    "skipped": skipped[partition],
                }
            )
        try:
            _, _, refused = insert_documents(self._ranges, docs)  # a duplicate: logged already
        except PyMongoError as exc:
            raise (unavailable(exc) if is_transient(exc) else exc) from exc
        if refused:
            reason, detail = next(iter(refused.values()))
            raise RuntimeError(f"MongoDB refuses a stored range ({reason}): {detail}")

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


class StoredSales:
    """Keeps the sales MongoDB stored from these very records (`sales_stream.stream.Sink`).

    Put first in the chain of a runtime that follows the consumer in its own group (the
    rollups): a sale counts only if the consumer kept it (`MongoSink` logs its ranges in
    `STORED_RANGES`), so a re-send, a conflicting version or a dead letter is skipped, as the
    consumer skipped it. A record the consumer has not written yet makes the batch wait
    (`SinkUnavailable`, retried with backoff). One query per partition of the batch; the
    sales themselves are not read. The ranges below the follower's confirmed commit
    (`Batch.committed`) are deleted: no one reads them again (the follower is their only
    reader), so `STORED_RANGES` stays a few documents per partition.

    Args:
        db: The database the consumer writes.
    """

    name = "stored"

    def __init__(self, db: Database) -> None:
        self._ranges = db[STORED_RANGES]

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Nothing to load."""

    def close(self) -> None:
        """The database's client belongs to the caller."""

    def write(self, batch: Batch) -> SinkResult:
        """Keep the events the consumer kept at their own position; see the class doc."""
        try:
            return self._keep(batch)
        except PyMongoError as exc:
            raise (unavailable(exc) if is_transient(exc) else exc) from exc

    def _keep(self, batch: Batch) -> SinkResult:
        offsets: dict[int, list[int]] = {}
        for partition, offset in batch.positions:
            offsets.setdefault(partition, []).append(offset)
        logged = {p: self._logged(batch, p, min(o), max(o)) for p, o in offsets.items()}
        keep: list[int] = []
        waiting: list[tuple[int, int]] = []
        for index, (partition, offset) in enumerate(batch.positions):
            starts, ranges, skipped = logged[partition]
            at = bisect_right(starts, offset) - 1
            if at < 0 or offset >= ranges[at][1]:
                waiting.append((partition, offset))
            elif offset not in skipped:
                keep.append(index)
        if waiting:
            partition, offset = waiting[0]
            raise SinkUnavailable(
                CONSUMER_SERVICE,
                LookupError(
                    f"{len(waiting)} sales not stored in MongoDB yet, "
                    f"first at {batch.topic}:{partition}:{offset}"
                ),
                retry_after=CONSUMER_BEHIND_RETRY_S,
            )
        for partition, committed in batch.committed.items():  # once, not on every retry
            self._prune(batch, partition, committed)
        return SinkResult(
            stored=len(keep),
            duplicates=len(batch.events) - len(keep),
            kept=batch.with_events(keep),
        )

    def _prune(self, batch: Batch, partition: int, committed: int) -> None:
        """Forget the ranges wholly below the follower's confirmed commit (`Batch.committed`).

        Its group never reads there again in this topic incarnation.
        """
        part = stream_part(batch.incarnation, batch.topic, partition)
        self._ranges.delete_many({"part": part, "next": {"$lte": committed}})

    def _logged(
        self, batch: Batch, partition: int, low: int, high: int
    ) -> tuple[list[int], list[tuple[int, int]], set[int]]:
        """The logged ranges over ``[low, high]``, merged: starts, ranges, skipped offsets."""
        part = stream_part(batch.incarnation, batch.topic, partition)
        found = self._ranges.find({"part": part, "next": {"$gt": low}, "first": {"$lte": high}})
        ranges: list[tuple[int, int]] = []
        skipped: set[int] = set()
        for doc in sorted(found, key=lambda d: d["first"]):
            skipped.update(doc["skipped"])
            first, end = doc["first"], doc["next"]
            if ranges and first <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
            else:
                ranges.append((first, end))
        return [first for first, _ in ranges], ranges, skipped
