"""Incremental rollups of the sales, kept exact by the consumer under at-least-once delivery.

Two collections, also SQL tables (`sales_stream.sql.schema`), answer the dashboard from a few
thousand cells instead of every sale: `HOURLY` (``ventes_par_heure``: hour × region) and
`DAILY` (``ventes_par_jour``: day × region × product). A cell holds ``sales`` (number of
sales), ``quantity``, ``amount`` (revenue), the UTC start of its bucket (``hour_start`` /
``day_start``), its dimensions and the region's ``lat``/``lon`` (its capital, as
`sales_stream.queries.revenue_by_region`), and is indexed on (region, bucket start).

`RollupWriter.apply` is an ``after_write`` hook of `sales_stream.consumer.MongoConsumer`: it
runs after a batch is durably in ``sales`` and before its offsets are committed, so it may see
a batch again after a crash or a rebalance, with other boundaries. Each sale still counts once:

1. **Claims** (event level). ``rollup_claims`` maps each event id to the Kafka position that
   first carried it (``_id`` = event id; ``topic``, ``partition``, ``offset``), inserted with
   ``insert_many(ordered=False)``. A position counts its event only if it owns the claim: an
   event re-sent at another offset (a producer re-run with the same seed) is skipped, as the
   ``sales`` sink skips it; a batch re-read at the same positions still owns its claims.
2. **Offset fences** (cell level). A cell also holds ``fence.<topic>:<partition>``: the last
   offset of that partition already added to it. Partitions are consumed in offset order from
   the last commit, so every offset at or below the fence is in the sums and every offset
   above it is not. One single-document update adds a batch's contribution and moves the
   fence, so a crash leaves each cell either before or after the batch, never half-way. The
   normal path is one unordered bulk of upserts guarded by ``fence < the batch's first offset
   in the cell``; a guard that fails (a replay) sends the cell to a compare-and-set on the
   fence it reads, which adds only the offsets above it.

Kafka keys sales by region, so a region lives in one partition and a cell's fence map has one
entry; cells fed by several partitions stay exact too (one fence per partition).

Sums are exact: ``sales`` and ``quantity`` are int64, ``amount`` is a decimal128 sum of the
sales' amounts rounded to the cent, so any order and any batching give the same value, equal to
the cent-rounded revenue of `sales_stream.queries` (a decimal also reads as SQL ``numeric``
with no per-row conversion). Buckets are UTC, like `queries`.

Cost: about 0.1 ms per sale on the embedded server (a claim, and one upsert per cell touched
by the batch), which roughly halves the consumer's throughput; see ``bench/sql_live.py``.

Limits:

* A rollup is bound to the topic offsets it was built from: a topic deleted and re-created
  under the same name restarts its offsets below the fences, and those sales would be
  skipped. Drop the two rollup collections and ``rollup_claims`` (and re-consume) then.
* Only sales that went through the hook are counted: sales written before the hook was
  installed are not in the rollups.
* Two sales with one event id are assumed identical (the sink keeps the first one stored;
  the rollups count the first position claimed, which is the same sale).
* Buckets are whole UTC hours (by region) and whole UTC days (by region and product): a
  period filter is exact on the rollups only at those boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from bson import Decimal128, Int64
from pymongo import ASCENDING, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from sales_stream.events import SaleEvent
from sales_stream.reference import REGION_BY_NAME
from sales_stream.sinks.mongo import DUPLICATE_KEY

if TYPE_CHECKING:
    from sales_stream.config import Settings
    from sales_stream.consumer import Batch
    from sales_stream.infra import Endpoints

CLAIMS = "rollup_claims"
#: ``$in`` lists longer than this are split: SecantusDB's cost grows with the list's square.
IN_CHUNK = 100
#: Compare-and-set attempts on one cell before the batch is failed (and retried whole).
MAX_CAS_ATTEMPTS = 5
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


@dataclass(frozen=True)
class RollupResult:
    """What one `RollupWriter.apply` did.

    Attributes:
        events: Valid events in the batch.
        duplicates: Events whose id was first carried by another Kafka position (skipped).
        applied: Rollup collection → events added now (the others were already in).
    """

    events: int
    duplicates: int
    applied: dict[str, int]


@dataclass
class _Cell:
    """A batch's contribution to one rollup document, kept per event for partial replays."""

    fields: dict[str, Any]
    rows: list[tuple[str, int, int, int]] = field(default_factory=list)

    def fences(self) -> dict[str, tuple[int, int]]:
        """Fence key → (first, last) offset of this cell's rows in the batch."""
        spans: dict[str, tuple[int, int]] = {}
        for fence, offset, _, _ in self.rows:
            first, _last = spans.get(fence, (offset, offset))
            spans[fence] = (first, offset)
        return spans


class RollupWriter:
    """Keeps the rollups of one database up to date from consumed batches.

    Args:
        db: The database holding ``sales`` (use `sales_stream.clients.mongo_client`).
        rollups: The rollups to maintain.

    Use ``RollupWriter(db).apply`` as an ``after_write`` hook of the consumer.
    """

    def __init__(self, db: Database, *, rollups: Sequence[Rollup] = DEFAULT_ROLLUPS) -> None:
        if not rollups:
            raise ValueError("rollups must not be empty")
        self._db = db
        self._claims = db[CLAIMS]
        self._rollups = tuple(rollups)
        self._indexed = False

    def apply(self, batch: Batch) -> RollupResult:
        """Add the batch's sales to every rollup, skipping what is already counted.

        Raises:
            PyMongoError: On any MongoDB failure; applying the same batch again is safe.
            RuntimeError: If a cell kept changing under a compare-and-set.
        """
        if not self._indexed:
            for rollup in self._rollups:
                rollup.ensure_indexes(self._db)
            self._indexed = True
        owned = self._claim(batch.topic, batch.events, batch.positions)
        applied = {
            rollup.collection: self._apply_rollup(rollup, batch.topic, owned)
            for rollup in self._rollups
        }
        return RollupResult(
            events=len(batch.events),
            duplicates=len(batch.events) - len(owned),
            applied=applied,
        )

    def _claim(
        self, topic: str, events: Sequence[SaleEvent], positions: Sequence[tuple[int, int]]
    ) -> list[tuple[SaleEvent, int, int]]:
        """Claim each event id for its position; return the events this batch owns."""
        if not events:
            return []
        docs = [
            {"_id": event.event_id, "topic": topic, "partition": partition, "offset": offset}
            for event, (partition, offset) in zip(events, positions, strict=True)
        ]
        taken = _insert_claims(self._claims, docs)
        owners: dict[str, tuple[str, int, int]] = {}
        for chunk in _chunks(sorted({docs[i]["_id"] for i in taken})):
            for doc in self._claims.find({"_id": {"$in": chunk}}):
                owners[doc["_id"]] = (doc["topic"], doc["partition"], doc["offset"])
        owned = []
        for index, (event, (partition, offset)) in enumerate(zip(events, positions, strict=True)):
            if index not in taken or owners.get(event.event_id) == (topic, partition, offset):
                owned.append((event, partition, offset))
        return owned

    def _apply_rollup(
        self, rollup: Rollup, topic: str, owned: Sequence[tuple[SaleEvent, int, int]]
    ) -> int:
        cells: dict[str, _Cell] = {}
        for event, partition, offset in owned:
            key, fields = rollup.cell(event)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = _Cell(fields)
            cents = round(event.amount * 100)
            cell.rows.append((_fence_key(topic, partition), offset, event.quantity, cents))
        if not cells:
            return 0
        collection = self._db[rollup.collection]
        keys = list(cells)
        guarded = [_guarded_upsert(key, cells[key]) for key in keys]
        replayed: set[str] = set()
        try:
            collection.bulk_write(guarded, ordered=False)
        except BulkWriteError as exc:
            replayed = {keys[i] for i in _duplicate_key_indexes(exc)}
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


def _fence_key(topic: str, partition: int) -> str:
    """Field name of a partition's fence (dots would be read as a path)."""
    return f"{topic.replace('%', '%25').replace('.', '%2E')}:{partition}"


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


def _insert_claims(claims: Collection, docs: list[dict[str, Any]]) -> set[int]:
    """Insert claims unordered; return the indexes of those already taken."""
    try:
        claims.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        return set(_duplicate_key_indexes(exc))
    return set()


def _duplicate_key_indexes(exc: BulkWriteError) -> list[int]:
    """Indexes of the operations that hit an existing ``_id``; re-raise any other error."""
    details = exc.details
    errors = details.get("writeErrors", [])
    if details.get("writeConcernErrors") or any(e["code"] != DUPLICATE_KEY for e in errors):
        raise exc
    return [e["index"] for e in errors]


def _read_fences(collection: Collection, keys: list[str]) -> dict[str, dict[str, int]]:
    fences: dict[str, dict[str, int]] = {}
    for chunk in _chunks(keys):
        for doc in collection.find({"_id": {"$in": chunk}}, {"fence": 1}):
            fences[doc["_id"]] = {k: int(v) for k, v in doc.get("fence", {}).items()}
    return fences


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


def consumer_hooks(
    db: Database, *, endpoints: Endpoints, settings: Settings
) -> list[Callable[[Batch], RollupResult]]:
    """The consumer's ``after_write`` hooks: the rollups, where a SQL endpoint reads them.

    On where there is a SQL endpoint (embedded mode) unless ``SALES_STREAM_SQL_ROLLUPS=false``:
    they double the writes per sale, which matters on the single-process embedded server at
    high rates (see ``bench/end_to_end.py``).
    """
    enabled = endpoints.sql_uri is not None and settings.sql_rollups
    return [RollupWriter(db).apply] if enabled else []
