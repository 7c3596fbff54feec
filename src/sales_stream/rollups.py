"""Incremental rollups of the sales: a sink of the runtime, exact under at-least-once delivery.

Two collections, also SQL tables (`sales_stream.sql.schema`), answer the dashboard from a few
thousand cells instead of every sale: `HOURLY` (``ventes_par_heure``: hour × region) and
`DAILY` (``ventes_par_jour``: day × region × product). A cell holds ``sales`` (number of
sales), ``quantity``, ``amount`` (revenue), the UTC start of its bucket (``hour_start`` /
``day_start``), its dimensions and the region's ``lat``/``lon`` (its capital, as
`sales_stream.queries.revenue_by_region`), and is indexed on (region, bucket start).

`RollupSink` runs in its own runtime (`sales_stream.app.Stack.rollups`, its own consumer
group), behind `sales_stream.sinks.mongo.StoredSales`: it receives only the sales the consumer
stored from these very records — never a re-send, a conflicting version or a dead letter.
A checkpoint (every two seconds, less often under load: an update costs the embedded database
about 1-2 ms per cell, so `sales_stream.app.ROLLUP_WRITE_SHARE` bounds the share of the time
spent writing) is aggregated in memory and written as one upsert per cell (not per sale), in
bulks of `BULK_CELLS`, so the consumer's own write path stays one ``insert_many``. It may see a
batch again after a crash or a rebalance, with other boundaries; each sale still counts once
thanks to **offset fences**: a cell holds ``fence.<incarnation>:<topic>:<partition>``, the last
offset of that partition already added to it. The incarnation
(`sales_stream.stream.source.incarnation_of`: the broker's cluster id, fresh per start of the
memory-only embedded broker) makes the fence survive a broker restart that starts offsets again
at 0. Partitions are consumed in offset order from the last commit, so every offset at or below
the fence is in the sums and every offset above it is not. One single-document update adds a
batch's contribution and moves the fence, so a crash leaves each cell either before or after
the batch. The normal path is unordered bulks of upserts guarded by ``fence < the batch's first
offset in the cell``; a guard that fails (a replay) sends the cell to a compare-and-set on the
fence it reads, which adds only the offsets above it.

Sums are exact: ``sales`` and ``quantity`` are int64, ``amount`` is a decimal128 sum of the
sales' amounts rounded to the cent, so any order and any batching give the same value, equal to
the cent-rounded revenue of `sales_stream.queries`. Buckets are UTC, like `queries`.

Limits: only sales that went through the sink are counted; buckets are whole UTC hours (by
region) and whole UTC days (by region and product).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, Literal

from bson import Decimal128, Int64
from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from sales_stream.events import SaleEvent
from sales_stream.reference import REGION_BY_NAME
from sales_stream.sinks.mongo import DUPLICATE_KEY, chunks, is_transient, unavailable
from sales_stream.stream.batch import Batch
from sales_stream.stream.sink import SinkResult

#: Compare-and-set attempts on one cell before the batch is failed (and retried whole).
MAX_CAS_ATTEMPTS = 5
#: Cells per bulk write: a checkpoint's hundreds of cells go in several short requests, not
#: one that ran 1.3-2.3 s under the soak's load (an update costs the embedded database 1-2 ms).
BULK_CELLS = 50
_KEY_SEPARATOR = "|"


@dataclass(frozen=True)
class Rollup:
    """One rollup collection: sums of the sales per time bucket and dimension values.

    Attributes:
        collection: MongoDB collection of the rollup (also its SQL table).
        unit: UTC time bucket, ``"hour"`` or ``"day"``.
        dimensions: Sale fields that, with the bucket, identify a cell.
    """

    collection: str
    unit: Literal["hour", "day"]
    dimensions: tuple[str, ...]

    @property
    def time_field(self) -> str:
        """Field holding the UTC start of a cell's bucket: ``hour_start`` or ``day_start``."""
        return f"{self.unit}_start"

    def bucket(self, ts: datetime) -> datetime:
        """The UTC start of the bucket holding ``ts``."""
        start = ts.replace(minute=0, second=0, microsecond=0)
        return start.replace(hour=0) if self.unit == "day" else start

    def cell(self, event: SaleEvent) -> tuple[str, dict[str, Any]]:
        """The cell of ``event``: its document id and its identifying fields."""
        bucket = self.bucket(event.ts)
        values = {name: getattr(event, name) for name in self.dimensions}
        key = _KEY_SEPARATOR.join([bucket.strftime("%Y-%m-%dT%H"), *values.values()])
        fields: dict[str, Any] = {self.time_field: bucket, **values}
        if "region" in self.dimensions:
            region = REGION_BY_NAME[event.region]
            fields["lat"], fields["lon"] = region.lat, region.lon
        return key, fields

    def ensure_indexes(self, db: Database) -> None:
        """Index the region filter of the dashboard, alone or with a period (idempotent)."""
        db[self.collection].create_index([("region", ASCENDING), (self.time_field, ASCENDING)])


#: Revenue over time and per region (the map), any period filter on whole UTC hours.
HOURLY = Rollup("ventes_par_heure", "hour", ("region",))
#: Top products, with region and product filters, any period filter on whole UTC days.
DAILY = Rollup("ventes_par_jour", "day", ("region", "product", "category"))
DEFAULT_ROLLUPS: tuple[Rollup, ...] = (HOURLY, DAILY)


#: One sale as the rollups count it: (fence key, offset, quantity, amount in cents).
_Row = tuple[str, int, int, int]


def _rows(batch: Batch) -> list[_Row]:
    """Each event's row, computed once for every rollup."""
    fences = {
        partition: fence_key(batch.incarnation, batch.topic, partition)
        for partition in {partition for partition, _ in batch.positions}
    }
    return [
        (fences[partition], offset, event.quantity, round(event.amount * 100))
        for event, (partition, offset) in zip(batch.events, batch.positions, strict=True)
    ]


@dataclass
class _Cell:
    """A batch's contribution to one rollup document, kept per sale for partial replays."""

    fields: dict[str, Any]
    rows: list[_Row] = field(default_factory=list)
    key: str = ""

    def fences(self) -> dict[str, tuple[int, int]]:
        """Fence key → (first, last) offset of this cell's rows in the batch."""
        spans: dict[str, tuple[int, int]] = {}
        for fence, offset, _, _ in self.rows:
            first, _last = spans.get(fence, (offset, offset))
            spans[fence] = (first, offset)
        return spans


class RollupSink:
    """Keeps the rollups of one database up to date (`sales_stream.stream.Sink`).

    Args:
        db: The database holding ``sales`` (use `sales_stream.clients.mongo_client`).
        rollups: The rollups to maintain.
    """

    name = "rollups"

    def __init__(self, db: Database, *, rollups: Sequence[Rollup] = DEFAULT_ROLLUPS) -> None:
        if not rollups:
            raise ValueError("rollups must not be empty")
        self._db = db
        self._rollups = tuple(rollups)
        self._indexed = False

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Nothing to load: the fences are in the cells."""

    def close(self) -> None:
        """The database's client belongs to the caller."""

    def write(self, batch: Batch) -> SinkResult:
        """Add the batch's sales to every rollup, skipping what is already counted.

        Raises:
            SinkUnavailable: MongoDB is unreachable for now; applying the batch again is safe.
            RuntimeError: A cell kept changing under a compare-and-set.
        """
        try:
            if not self._indexed:
                for rollup in self._rollups:
                    rollup.ensure_indexes(self._db)
                self._indexed = True
            rows = _rows(batch)
            applied = [self._apply_rollup(rollup, batch.events, rows) for rollup in self._rollups]
        except PyMongoError as exc:
            raise (unavailable(exc) if is_transient(exc) else exc) from exc
        counted = applied[0]
        return SinkResult(stored=counted, duplicates=len(batch.events) - counted)

    def _apply_rollup(self, rollup: Rollup, events: list[SaleEvent], rows: list[_Row]) -> int:
        # Grouped on a cheap tuple first; a cell's id and fields are built once per cell.
        groups: dict[tuple[Any, ...], _Cell] = {}
        dimensions = attrgetter(*rollup.dimensions)
        hourly = rollup.unit == "hour"
        for event, row in zip(events, rows, strict=True):
            ts = event.ts
            group = (ts.year, ts.month, ts.day, ts.hour if hourly else 0, dimensions(event))
            cell = groups.get(group)
            if cell is None:
                key, fields = rollup.cell(event)
                cell = groups[group] = _Cell(fields, key=key)
            cell.rows.append(row)
        if not groups:
            return 0
        cells = {cell.key: cell for cell in groups.values()}
        collection = self._db[rollup.collection]
        keys = list(cells)
        replayed: set[str] = set()
        for start in range(0, len(keys), BULK_CELLS):
            part = keys[start : start + BULK_CELLS]
            try:
                collection.bulk_write([_guarded_upsert(k, cells[k]) for k in part], ordered=False)
            except BulkWriteError as exc:
                replayed.update(part[i] for i in _duplicate_key_indexes(exc))
        applied = sum(len(cells[key].rows) for key in keys if key not in replayed)
        if replayed:
            applied += self._compare_and_set(collection, {k: cells[k] for k in replayed})
        return applied

    def _compare_and_set(self, collection: Collection, cells: dict[str, _Cell]) -> int:
        """Add to each cell only the rows above its fence; return how many were added."""
        applied = 0
        pending = dict(cells)
        for _ in range(MAX_CAS_ATTEMPTS):
            fences = _read_fences(collection, list(pending))
            for key, cell in list(pending.items()):
                current = fences.get(key, {})
                rows = [row for row in cell.rows if row[1] > current.get(row[0], -1)]
                if not rows:
                    del pending[key]
                    continue
                new = _Cell(cell.fields, rows)
                condition = {
                    f"fence.{fence}": current.get(fence, {"$exists": False})
                    for fence in cell.fences()
                }
                try:
                    result = collection.update_one(
                        {"_id": key, **condition}, _increment(new), upsert=True
                    )
                except DuplicateKeyError:
                    continue  # changed since read: read again
                if result.matched_count or result.upserted_id is not None:
                    applied += len(rows)
                    del pending[key]
            if not pending:
                return applied
        raise RuntimeError(
            f"{collection.name}: cells {sorted(pending)[:3]} changed during "
            f"{MAX_CAS_ATTEMPTS} compare-and-set attempts"
        )


def fence_key(incarnation: str, topic: str, partition: int) -> str:
    """Field name of a partition's fence in one topic incarnation (no dots: not a path)."""
    name = f"{incarnation}:{topic}" if incarnation else topic
    return f"{name.replace('%', '%25').replace('.', '%2E')}:{partition}"


def _increment(cell: _Cell) -> dict[str, Any]:
    """The update adding ``cell``'s rows and moving its fences to their last offsets."""
    quantity = sum(row[2] for row in cell.rows)
    cents = sum(row[3] for row in cell.rows)
    return {
        "$inc": {
            "sales": Int64(len(cell.rows)),
            "quantity": Int64(quantity),
            "amount": Decimal128(Decimal(cents).scaleb(-2)),
        },
        "$max": {f"fence.{fence}": Int64(last) for fence, (_, last) in cell.fences().items()},
        "$setOnInsert": cell.fields,
    }


def _guarded_upsert(key: str, cell: _Cell) -> UpdateOne:
    """Upsert ``cell`` if none of its offsets are in yet; a duplicate-key error otherwise."""
    guard = {
        f"fence.{fence}": {"$not": {"$gte": first}} for fence, (first, _) in cell.fences().items()
    }
    return UpdateOne({"_id": key, **guard}, _increment(cell), upsert=True)


def _duplicate_key_indexes(exc: BulkWriteError) -> list[int]:
    """Indexes of the operations that hit an existing ``_id``; re-raise any other error."""
    details = exc.details
    errors = details.get("writeErrors", [])
    if details.get("writeConcernErrors") or any(e["code"] != DUPLICATE_KEY for e in errors):
        raise exc
    return [e["index"] for e in errors]


def _read_fences(collection: Collection, keys: list[str]) -> dict[str, dict[str, int]]:
    fences: dict[str, dict[str, int]] = {}
    for chunk in chunks(keys):
        for doc in collection.find({"_id": {"$in": chunk}}, {"fence": 1}):
            fences[doc["_id"]] = {k: int(v) for k, v in doc.get("fence", {}).items()}
    return fences


def totals(db: Database, rollup: Rollup) -> tuple[int, Decimal]:
    """The number of sales and the revenue summed over every cell of ``rollup``."""
    rows = list(
        db[rollup.collection].aggregate(
            [{"$group": {"_id": None, "sales": {"$sum": "$sales"}, "amount": {"$sum": "$amount"}}}]
        )
    )
    if not rows:
        return 0, Decimal(0)
    return int(rows[0]["sales"]), rows[0]["amount"].to_decimal()
