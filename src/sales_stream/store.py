"""The MongoDB store: database, collection and rollup names, the indexes, transient errors.

The one place the writers (`sales_stream.sinks`) and the readers (queries, dashboard views,
the SQL schema) share; light to import (the driver is loaded when an error is classified).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pymongo.database import Database

#: The default database (`sales_stream.config.Settings.db`).
DATABASE = "sales_db"
SALES = "sales"
DEAD_LETTERS = "dead_letters"
#: Field of a sale document: the ``incarnation:partition:offset`` that first stored it.
SOURCE_FIELD = "src"
DUPLICATE_KEY = 11000
#: Server codes of failures that pass (shutdown, not primary, timeouts, network).
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 112, 117}
)
#: Server codes of a document that is too large.
TOO_LARGE_CODES = frozenset({10334, 17419, 2_000_000})
#: Collection of the fences: ``_id`` a `fence_key`, ``next`` the next offset not counted,
#: ``moved_to`` the value the last flush set (another value in ``next``: moved outside a flush).
FENCES = "rollup_fences"


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


#: Revenue over time and per region (the map), any period filter on whole UTC hours.
HOURLY = Rollup("ventes_par_heure", "hour", ("region",))
#: Top products, with region and product filters, any period filter on whole UTC days.
DAILY = Rollup("ventes_par_jour", "day", ("region", "product", "category"))
DEFAULT_ROLLUPS: tuple[Rollup, ...] = (HOURLY, DAILY)

_ASCENDING = 1
DEAD_LETTER_INDEXES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("received_at", _ASCENDING),),
    (("reason", _ASCENDING),),
)


def ensure_indexes(db: Database) -> None:
    """Create the indexes of ``dead_letters`` (idempotent); ``sales`` keeps only ``_id``."""
    for keys in DEAD_LETTER_INDEXES:
        db[DEAD_LETTERS].create_index(list(keys))


def is_transient(exc: BaseException) -> bool:
    """Whether a MongoDB error may pass by itself (retry) rather than be about the data."""
    from pymongo.errors import (
        BulkWriteError,
        ConnectionFailure,
        ExecutionTimeout,
        OperationFailure,
        WriteConcernError,
        WTimeoutError,
    )

    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | WriteConcernError):
        return True
    if isinstance(exc, BulkWriteError):
        details = exc.details or {}
        errors = details.get("writeErrors", [])
        return bool(details.get("writeConcernErrors")) or any(
            e.get("code") in TRANSIENT_CODES for e in errors
        )
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES
