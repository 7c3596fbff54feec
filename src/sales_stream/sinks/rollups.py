"""Incremental rollups of the sales, in the consumer's chain: insert-only, exact, compacted.

Two collections (also SQL tables), named in `sales_stream.store`: ``HOURLY`` (hour × region)
and ``DAILY`` (day × region × product). A row holds ``sales``, ``quantity``, ``amount``, the
UTC start of its bucket, its dimensions and the region's ``lat``/``lon``; a cell may have
several rows for a while, which readers sum (SQL ``SUM … GROUP BY``, Tableau, the dashboard).

`RollupSink` follows `sales_stream.sinks.mongo.MongoSink` and receives only the sales it kept
(no re-send, conflict or dead letter). It is *deferred*: `write` adds a batch to memory,
`flush` (before each commit, every `Settings.rollup_flush_s`) inserts one row per cell touched
and partition in one transaction with each partition's **fence** (``FENCES``: the next offset
not yet counted), moved only from the value it read, so every offset is counted once whatever
crashes, replays or rebalances do. A fence no flush wrote (moved outside one, or beyond its
partition's end at assignment) is logged and kept in `RollupSink.anomaly`, shown in the status.
Compaction rewrites the buckets written since, one row per cell, in one transaction, once the
deltas reach the rows of the last compaction (at least `COMPACT_EVERY`).

Sums are exact (int64, and decimal128 of cent-rounded amounts), whatever the order or the
batching, equal to `sales_stream.read.mongo_queries`'s revenue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from bson import Decimal128, Int64
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from sales_stream.events import SaleEvent
from sales_stream.reference import REGION_BY_NAME
from sales_stream.sinks.mongo_errors import unavailable
from sales_stream.store import DEFAULT_ROLLUPS, FENCES, Rollup, is_transient
from sales_stream.stream.batch import Batch
from sales_stream.stream.sink import Prepared, SinkResult

#: Flush transactions tried before the flush fails (a fence moved by another member, a
#: write conflict): the next attempt reads the fences again.
MAX_ATTEMPTS = 5
#: Deltas written since the last compaction that trigger the next one (at least).
COMPACT_EVERY = 2000
_KEY_SEPARATOR = "|"
#: Separates a cell key from the rest of a delta's ``_id`` (a compacted row's is the key).
DELTA_SEPARATOR = "#"
_MEASURES = ("sales", "quantity", "amount")


logger = logging.getLogger(__name__)


#: Per cell group (fence key, bucket, dimensions): [a sale of it, sales, quantity, cents].
_Sums = dict[tuple[Any, ...], list[Any]]


def _merge(into: _Sums, sums: _Sums, parts: set[str]) -> None:
    for group, (first, sales, quantity, amount) in sums.items():
        if group[0] not in parts:
            continue
        cell = into.get(group)
        if cell is None:
            into[group] = [first, sales, quantity, amount]
        else:
            cell[1] += sales
            cell[2] += quantity
            cell[3] += amount


def _cell(rollup: Rollup, event: SaleEvent) -> tuple[str, dict[str, Any]]:
    """The cell of ``event``: its key (a compacted row's ``_id``) and identifying fields."""
    bucket = rollup.bucket(event.ts)
    values = {name: getattr(event, name) for name in rollup.dimensions}
    key = _KEY_SEPARATOR.join([bucket.strftime("%Y-%m-%dT%H"), *values.values()])
    fields: dict[str, Any] = {rollup.time_field: bucket, **values}
    if "region" in rollup.dimensions:
        region = REGION_BY_NAME[event.region]
        fields["lat"], fields["lon"] = region.lat, region.lon
    return key, fields


def _deltas(rollup: Rollup, sums: _Sums, starts: dict[str, int]) -> list[dict[str, Any]]:
    """One row per cell and partition: ``_id`` the cell key, the partition and its start."""
    docs = []
    for (part, *_), (first, sales, quantity, amount) in sums.items():
        key, fields = _cell(rollup, first)
        suffix = f"{part}:{starts[part]}"
        docs.append(
            {
                "_id": f"{key}{DELTA_SEPARATOR}{suffix}",
                **fields,
                **_sums(sales, quantity, amount),
            }
        )
    return docs


def _sums(sales: int, quantity: int, cents: int) -> dict[str, Any]:
    return {
        "sales": Int64(sales),
        "quantity": Int64(quantity),
        "amount": Decimal128(Decimal(cents).scaleb(-2)),
    }


@dataclass
class _Span:
    """One partition's records held since the last flush: offsets ``[start, next)``."""

    start: int
    next: int


class _FenceMoved(Exception):
    """Another writer moved a fence since this flush read it."""


class RollupSink:
    """Keeps the rollups of one database up to date (`sales_stream.stream.DeferredSink`).

    Args:
        db: The database holding ``sales`` (use `sales_stream.clients.mongo_client`).
        rollups: The rollups to maintain.
        compact_every: Deltas written between two compactions (at least).
    """

    name = "rollups"

    def __init__(
        self,
        db: Database,
        *,
        rollups: Sequence[Rollup] = DEFAULT_ROLLUPS,
        compact_every: int = COMPACT_EVERY,
    ) -> None:
        if not rollups:
            raise ValueError("rollups must not be empty")
        if compact_every < 1:
            raise ValueError(f"compact_every must be >= 1, got {compact_every}")
        self._db = db
        self._fences = db[FENCES]
        self._rollups = tuple(rollups)
        self._compact_every = compact_every
        self._spans: dict[str, _Span] = {}  # fence key → offsets held
        self._held: list[tuple[Batch, list[_Sums] | None]] = []  # with their prepared sums
        self._prepared: Prepared[list[_Sums]] = Prepared()  # by the batch's ``events``
        self._since_compaction = 0
        self._compact_at = 0  # deltas that trigger a compaction: the first flush compacts
        self._oldest: dict[str, datetime] = {}  # rollup → oldest bucket with deltas
        self.anomaly: str | None = None  # the last fence found moved or beyond its end

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Nothing to load: each flush reads the fences it moves."""

    def check_ends(self, topic: str, incarnation: str, ends: dict[int, int]) -> None:
        """Report (status and log) a fence beyond its partition's end, at assignment.

        ``ends`` maps a newly assigned partition to the highwater of a fetch. No writer can
        have counted an offset that does not exist yet, and the partition's previous owner read
        no further than this fetch, so a fence above it was not written by a flush: the sales
        below it would be skipped.

        Raises:
            SinkUnavailable: MongoDB is unreachable for now.
        """
        keys = {fence_key(incarnation, topic, p): end for p, end in ends.items()}
        try:
            docs = list(self._fences.find({"_id": {"$in": list(keys)}}))
        except PyMongoError as exc:
            raise (unavailable(exc) if is_transient(exc) else exc) from exc
        for doc in sorted(docs, key=lambda d: d["_id"]):
            end = keys[doc["_id"]]
            if int(doc["next"]) > end:
                self._report(
                    f"rollup fence {doc['_id']} is beyond the partition's end: next={doc['next']}, "
                    f"the partition ends at {end}; sales below it are not counted"
                )

    def close(self) -> None:
        """The database's client belongs to the caller (unflushed sales are read again)."""

    @property
    def pending(self) -> int:
        """Sales held for the next flush."""
        return sum(len(batch.events) for batch, _ in self._held)

    def prepare(self, batch: Batch) -> None:
        """Sum a sealed batch per cell ahead of `write` (on the runtime's loop thread).

        Used if the batch reaches `write` whole (the MongoDB sink kept every sale: the same
        ``events`` list); otherwise `flush` sums the kept sales itself.
        """
        self._prepared.put(batch.events, _sum_batch(self._rollups, batch, None))

    def write(self, batch: Batch) -> SinkResult:
        """Hold the batch's sales for the next flush.

        A partition whose records do not follow the ones held (read again after a rebalance,
        or after a gap) flushes everything held first.

        Raises:
            SinkUnavailable: That flush found MongoDB unreachable; the batch is not held.
        """
        parts = {p: fence_key(batch.incarnation, batch.topic, p) for p in batch.first_offsets}
        if any(
            (span := self._spans.get(parts[p])) is not None and first != span.next
            for p, first in batch.first_offsets.items()
        ):
            self._flush()
        for partition, first in batch.first_offsets.items():
            span = self._spans.setdefault(parts[partition], _Span(first, first))
            span.next = batch.next_offsets[partition]
        if batch.events:
            self._held.append((batch, self._prepared.take(batch.events)))
        return SinkResult(stored=len(batch.events))

    def flush(self) -> None:
        """Write the held sales: one delta per cell and partition, fences moved, atomically.

        Raises:
            SinkUnavailable: MongoDB is unreachable for now; the sales stay held.
            RuntimeError: The fences kept moving under `MAX_ATTEMPTS` transactions.
        """
        if self._compact_at == 0:  # first flush: compact what earlier runs left, if any
            self._compact()
        self._flush()
        if self._since_compaction >= self._compact_at:
            self._compact()

    def _flush(self) -> None:
        if not self._spans:
            return
        for _ in range(MAX_ATTEMPTS):
            try:
                written = self._flush_once()
            except (_FenceMoved, DuplicateKeyError):
                continue  # read the fences again
            except PyMongoError as exc:
                if exc.has_error_label("TransientTransactionError"):
                    continue
                raise (unavailable(exc) if is_transient(exc) else exc) from exc
            self._spans, self._held = {}, []
            self._since_compaction += written
            return
        raise RuntimeError(
            f"rollup fences {sorted(self._spans)[:3]} kept moving during {MAX_ATTEMPTS} flushes"
        )

    def _flush_once(self) -> int:
        """One transaction: read the fences, insert the deltas above them, move them."""
        spans = self._spans
        with self._db.client.start_session() as session, session.start_transaction():
            docs = list(self._fences.find({"_id": {"$in": list(spans)}}, session=session))
            self._check_fences(docs)
            fences = {doc["_id"]: int(doc["next"]) for doc in docs}
            starts: dict[str, int] = {}  # part → first offset not counted yet
            for part, span in spans.items():
                fence = fences.get(part)
                if fence is None or fence < span.next:
                    starts[part] = span.start if fence is None else max(fence, span.start)
                    self._move(session, part, fence, span.next)
            sums = self._sums(starts)
            docs = {
                rollup.collection: _deltas(rollup, cells, starts)
                for rollup, cells in zip(self._rollups, sums, strict=True)
            }
            for collection, deltas in docs.items():
                if deltas:
                    self._db[collection].insert_many(deltas, session=session)
        for rollup in self._rollups:  # committed: these buckets have deltas to compact
            buckets = [doc[rollup.time_field] for doc in docs[rollup.collection]]
            if buckets:
                oldest = min(buckets)
                known = self._oldest.get(rollup.collection)
                self._oldest[rollup.collection] = oldest if known is None else min(known, oldest)
        return sum(len(deltas) for deltas in docs.values())

    def _check_fences(self, docs: list[dict[str, Any]]) -> None:
        """Report (status and log) a fence whose ``next`` is not what the last flush set."""
        for doc in docs:
            moved_to = doc.get("moved_to")
            if moved_to is not None and int(moved_to) != int(doc["next"]):
                self._report(
                    f"rollup fence {doc['_id']} moved outside a flush: next={doc['next']}, "
                    f"the last flush left {moved_to}; sales below it are not counted"
                )

    def _report(self, anomaly: str) -> None:
        """Log ``anomaly`` once and keep it in `anomaly`, which the runtime shows."""
        if anomaly != self.anomaly:
            logger.error("%s", anomaly)
        self.anomaly = anomaly

    def _sums(self, starts: dict[str, int]) -> list[_Sums]:
        """Each rollup's sums of the held sales not counted yet (at or above ``starts``)."""
        totals: list[_Sums] = [{} for _ in self._rollups]
        for batch, prepared in self._held:
            parts = {
                fence_key(batch.incarnation, batch.topic, p): f
                for p, f in batch.first_offsets.items()
            }
            whole = {
                part for part, first in parts.items() if part in starts and starts[part] <= first
            }
            if prepared is not None and len(whole) == len(parts):
                for total, sums in zip(totals, prepared, strict=True):
                    _merge(total, sums, whole)
                continue
            for total, sums in zip(totals, _sum_batch(self._rollups, batch, starts), strict=True):
                _merge(total, sums, set(starts))
        return totals

    def _move(self, session: ClientSession, part: str, fence: int | None, end: int) -> None:
        if fence is None:
            doc = {"_id": part, "next": Int64(end), "moved_to": Int64(end)}
            self._fences.insert_one(doc, session=session)
            return
        moved = self._fences.update_one(
            {"_id": part, "next": fence},
            {"$set": {"next": Int64(end), "moved_to": Int64(end)}},
            session=session,
        )
        if moved.matched_count != 1:
            raise _FenceMoved(part)

    def _compact(self) -> None:
        """Rewrite the buckets with deltas from this sink (all at first) one row per cell.

        The next compaction comes once the deltas match the rows rewritten.
        """
        first = self._compact_at == 0
        try:
            rows = 0
            for rollup in self._rollups:
                oldest = self._oldest.get(rollup.collection)
                if first or oldest is not None:
                    since = None if first else (rollup.time_field, oldest)
                    rows += compact(self._db[rollup.collection], since=since)
                    self._oldest.pop(rollup.collection, None)
        except PyMongoError as exc:  # the deltas are exact: compaction can wait
            logger.warning("rollup compaction deferred: %s", exc)
            return
        self._since_compaction = 0
        self._compact_at = max(self._compact_every, rows, 1)


def compact(collection: Collection, *, since: tuple[str, datetime] | None = None) -> int:
    """Rewrite rows with one per cell, in one transaction (readers see before or after).

    Deleting by a list of ids costs the embedded database more than rewriting every row of a
    range, so every row of the buckets at or after ``since`` (time field, UTC start) is
    rewritten; every row of the rollup if ``since`` is ``None``.

    Returns:
        The rows left in the range (one per cell).
    """
    where = {} if since is None else {since[0]: {"$gte": since[1]}}
    with collection.database.client.start_session() as session, session.start_transaction():
        by_cell: dict[str, list[dict[str, Any]]] = {}
        for doc in collection.find(where, session=session):
            by_cell.setdefault(doc["_id"].split(DELTA_SEPARATOR, 1)[0], []).append(doc)
        if all(len(docs) == 1 and docs[0]["_id"] == key for key, docs in by_cell.items()):
            return len(by_cell)
        collection.delete_many(where, session=session)
        collection.insert_many(
            [_merged(key, docs) for key, docs in by_cell.items()], session=session
        )
    return len(by_cell)


def _merged(key: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    fields = {k: v for k, v in docs[0].items() if k != "_id" and k not in _MEASURES}
    sales = sum(int(doc["sales"]) for doc in docs)
    quantity = sum(int(doc["quantity"]) for doc in docs)
    cents = sum(int(doc["amount"].to_decimal().scaleb(2)) for doc in docs)
    return {"_id": key, **fields, **_sums(sales, quantity, cents)}


def _sum_batch(
    rollups: Sequence[Rollup], batch: Batch, starts: dict[str, int] | None
) -> list[_Sums]:
    """Each rollup's sums of the batch's sales at or above ``starts`` (all if ``None``).

    One pass over the sales for every rollup: this runs for each batch.
    """
    parts = {p: fence_key(batch.incarnation, batch.topic, p) for p in batch.first_offsets}
    keyers = [(attrgetter(*r.dimensions), r.unit == "hour", {}) for r in rollups]
    for event, (partition, offset) in zip(batch.events, batch.positions, strict=True):
        part = parts[partition]
        if starts is not None and (part not in starts or offset < starts[part]):
            continue
        cents = round(event.amount * 100)
        quantity = event.quantity
        ts = event.ts
        year, month, day, hour = ts.year, ts.month, ts.day, ts.hour
        for dimensions, hourly, sums in keyers:
            group = (part, year, month, day, hour if hourly else 0, dimensions(event))
            cell = sums.get(group)
            if cell is None:
                sums[group] = [event, 1, quantity, cents]
            else:
                cell[1] += 1
                cell[2] += quantity
                cell[3] += cents
    return [sums for _, _, sums in keyers]


def fence_key(incarnation: str, topic: str, partition: int) -> str:
    """A partition's fence id in one topic incarnation."""
    name = f"{incarnation}:{topic}" if incarnation else topic
    return f"{name}:{partition}"


def totals(db: Database, rollup: Rollup) -> tuple[int, Decimal]:
    """The number of sales and the revenue summed over every row of ``rollup``."""
    rows = list(
        db[rollup.collection].aggregate(
            [{"$group": {"_id": None, "sales": {"$sum": "$sales"}, "amount": {"$sum": "$amount"}}}]
        )
    )
    if not rows:
        return 0, Decimal(0)
    return int(rows[0]["sales"]), rows[0]["amount"].to_decimal()
